"""The steps of one image through the pipeline, apart from the orchestration in ``pipeline``:
its identity, what the networks made of it, and the result built from that. torch-free."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from srcrn.answers.bands import Bands
from srcrn.answers.gate import NOT_ASSESSABLE, Gate, assess, image_feature_names
from srcrn.answers.readings import meaning, not_assessable
from srcrn.answers.results import PipelineResult
from srcrn.bundle.card import ModelCard
from srcrn.data.images import Box, ImageFile, ImageSource, decode_image_fit
from srcrn.data.lesion import crop_mask, lesion_box, lesion_input
from srcrn.data.metadata import NO_CONTEXT, ClinicalContext
from srcrn.errors import SrcrnError
from srcrn.morphology.measurements import measure_lesion
from srcrn.runtime.segmenter import Segmenter
from srcrn.shapes import ImageSize
from srcrn.stage2.spec import MelanomaModel
from srcrn.stage2.spec import probabilities as melanoma_probabilities

if TYPE_CHECKING:
    from srcrn.inference.pipeline import Pipeline

# Measurements and overlays use the image at this longer side at most (lengths are scaled
# back to original pixels): precise enough for a lesion, cheap even for 6700x4500 originals.
WORKING_SIDE = 1024
# The steps whose seconds a pipeline adds up (``Pipeline.seconds``).
STEPS = ("decode", "segment", "classify", "spread", "explain", "measure", "outputs")


def identity(image: ImageSource, image_id: str | None, position: int) -> tuple[str, str | None]:
    """(image id, name for error messages): a path's stem and path, else what the caller named,
    else one derived from the content (so two unnamed images are never saved under one name)."""
    if isinstance(image, (str, Path)):
        return image_id or Path(image).stem, None
    if image_id:
        return image_id, image_id
    return f"image-{content_digest(image)}", f"<image {position}>"


def content_digest(image: Any) -> str:
    """The first 12 hex digits of the SHA-256 of an in-memory image's bytes (or pixels)."""
    if isinstance(image, (bytes, bytearray)):
        content = bytes(image)
    elif isinstance(image, np.ndarray):
        content = np.ascontiguousarray(image).tobytes() + str(image.shape).encode()
    elif hasattr(image, "tobytes"):  # a Pillow image
        content = image.tobytes() + str(getattr(image, "size", "")).encode()
    else:
        content = repr(image).encode()
    return hashlib.sha256(content).hexdigest()[:12]


@dataclass
class Loaded:
    """An image decoded for the networks."""

    image: ImageSource
    identity: tuple[str, str | None]
    file: ImageFile
    at_size: dict[ImageSize, np.ndarray]  # the image at each network's input size
    context: ClinicalContext = NO_CONTEXT
    damage: str | None = None  # what the decoder reported of a damaged file (the input gate reads it)
    from_header: tuple[str, ...] = ()  # the context fields a DICOM header gave (none given explicitly)


@dataclass
class Modelled:
    """An image the networks have seen: what ``result_of`` turns into a ``PipelineResult``."""

    loaded: Loaded
    probability: np.ndarray
    score: float
    heatmap: np.ndarray | None
    box: Box | None
    typicality: float | None = None  # distance from the training images' lesion features (the gate)
    image_typicality: float | None = None  # and from their crops' pooled CNN features
    spread: tuple[float, float] | None = None  # lowest and highest P(melanoma) under rotation


def submit(pool: ThreadPoolExecutor | None, function: Callable, *args: Any) -> Future:
    """``function(*args)`` in the pool, or here and now without one (``workers=0``)."""
    if pool is not None:
        return pool.submit(function, *args)
    future: Future = Future()
    try:
        future.set_result(function(*args))
    except BaseException as error:  # handed to whoever reads the result, as the pool does
        future.set_exception(error)
    return future


def done(value: Any) -> Future:
    """A future that already holds ``value`` (an image that skips a step, e.g. a bad one)."""
    future: Future = Future()
    future.set_result(value)
    return future


def outcome_of(future: Future) -> Any:
    """A task's result, or the ``SrcrnError`` of a bad image (anything else propagates)."""
    try:
        return future.result()
    except SrcrnError as error:
        return error


def result_of(
    modelled: Modelled,
    segmenter: Segmenter,
    classifier: MelanomaModel,
    threshold: float,
    card: ModelCard | None,
    gate: Gate,
    bands: Bands | None = None,
) -> PipelineResult:
    """The result of an image the networks have seen: mask at the original size, measurements
    at the working size, the input gate's assessment, and the decision at ``threshold`` with
    what it means (none where the image is not assessable)."""
    item, probability = modelled.loaded, modelled.probability
    (image_id, name), (width, height) = item.identity, item.file.original
    work, _ = decode_image_fit(item.file, WORKING_SIDE)
    work_mask = segmenter.mask(probability, work.shape[1], work.shape[0])
    placed = None
    if modelled.heatmap is not None:
        from srcrn.answers.explain import place_heatmap

        placed = place_heatmap(modelled.heatmap, modelled.box, work.shape[1], work.shape[0])
    image = item.image
    used = tuple(f for f in classifier.clinical_fields if getattr(item.context, f) is not None)
    assessment = assess(gate, work, work_mask, mode=item.file.mode, damage=item.damage,
                        typicality=modelled.typicality, image_typicality=modelled.image_typicality)  # fmt: skip
    missing = tuple(f for f in classifier.clinical_fields if f not in used)
    band = bands.band(modelled.score) if bands is not None and assessment.assessed else None
    if assessment.assessed:
        decision = "melanoma" if modelled.score > threshold else "benign"
        said = meaning(decision, threshold, card, missing, bands.said(band) if bands and band else None)
    else:
        decision, said = NOT_ASSESSABLE, not_assessable(assessment.reasons)
    return PipelineResult(
        image_id=image_id,
        source=str(image) if isinstance(image, (str, Path)) else (name or image_id),
        width=width,
        height=height,
        probability=modelled.score,
        decision=decision,
        threshold=threshold,
        meaning=said,
        assessment=assessment,
        band=band,
        bytes_sha256=hashlib.sha256(image).hexdigest() if isinstance(image, (bytes, bytearray)) else "",
        card=card,
        mask=segmenter.mask(probability, width, height),
        measurements=measure_lesion(
            work_mask, work, scale=width / work.shape[1], mm_per_pixel=item.context.pixel_spacing_mm
        ),
        heatmap=placed,
        working_image=work,
        working_mask=work_mask,
        context=item.context,
        clinical_used=used,
        spread=modelled.spread if assessment.assessed else None,
        header=item.file.dicom,
        from_header=item.from_header,
    )


def lesion_of(
    item: Loaded, mask: np.ndarray, size: int, input_mode: str, margin: float, *, needs_mask: bool
) -> tuple[np.ndarray, Box | None, np.ndarray | None]:
    """The classifier's input of an image (a crop decoded from the original), given its mask at
    the classifier's ``size``: the input, its box, and the mask on it where the model reads it."""
    lesion = lesion_input(item.at_size[size], mask, input_mode, item.file, margin=margin, name=item.identity[1])
    box = lesion_box(mask, margin) if input_mode == "crop" else None
    input_mask = crop_mask(mask, input_mode, size, margin=margin) if needs_mask else None
    return lesion, box, input_mask


def run_networks(pipeline: Pipeline, loaded: list[Loaded | SrcrnError]) -> list[Modelled | SrcrnError]:
    """Both networks over a batch's good images (bad ones keep their error), each step timed in
    ``pipeline.seconds``; between them, in this thread, each image's lesion input is cut."""
    good = {i: item for i, item in enumerate(loaded) if isinstance(item, Loaded)}
    outcomes: list[Any] = list(loaded)
    if not good:
        return outcomes
    items = list(good.values())
    probabilities = pipeline._timed(
        "segment", pipeline.segmenter.probabilities, np.stack([item.at_size[pipeline.segment_size] for item in items])
    )
    lesions: dict[int, tuple] = {}
    for i, item, probability in zip(good, items, probabilities):  # in this thread: between the networks
        try:
            lesions[i] = pipeline._timed("decode", pipeline._lesion, item, probability)
        except SrcrnError as error:  # e.g. a file cut short where only the crop reads it
            outcomes[i] = error
    if not lesions:
        return outcomes
    keys = list(lesions)
    inputs = np.stack([lesions[i][0] for i in keys])
    masks = np.stack([lesions[i][2] for i in keys]) if pipeline.needs_masks else None
    contexts = [good[i].context for i in keys]
    scores = pipeline._timed("classify", melanoma_probabilities, pipeline.classifier, inputs, masks, contexts)
    # Before the spread: the gate reads the feature table the model just computed (morphology's memo).
    distances = typicality_of(pipeline.gate, inputs, masks) or [None] * len(keys)
    image_distances = pipeline._timed("classify", image_typicality_of, pipeline.gate, pipeline.classifier, inputs)
    scores, spreads = pipeline._timed("spread", spread_under_rotation, pipeline, inputs, masks, contexts, scores)
    heatmaps: list[np.ndarray | None] = [None] * len(keys)
    if pipeline.explain:
        from srcrn.answers.explain import grad_cam

        heatmaps = list(pipeline._timed("explain", grad_cam, pipeline.classifier, inputs))
    by_position = dict(zip(good, probabilities))
    for i, score, heatmap, distance, image_distance, spread in zip(
        keys, scores, heatmaps, distances, image_distances or [None] * len(keys), spreads
    ):
        outcomes[i] = Modelled(good[i], by_position[i], float(score), heatmap, lesions[i][1], distance,
                               image_distance, spread)  # fmt: skip
    return outcomes


def rotated(batch: np.ndarray, angle: float, *, mask: bool = False) -> np.ndarray:
    """Each image (or mask) of ``batch`` turned by ``angle`` degrees about its centre: images with
    their borders mirrored in (no black corners for the model to read), masks with nothing added."""
    size = batch.shape[1]
    matrix = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), angle, 1.0)
    flags = cv2.INTER_NEAREST if mask else cv2.INTER_LINEAR
    border = cv2.BORDER_CONSTANT if mask else cv2.BORDER_REFLECT_101
    pixels = batch.view(np.uint8) if batch.dtype == bool else batch  # OpenCV has no boolean images
    turned = [cv2.warpAffine(np.ascontiguousarray(item), matrix, (size, size), flags=flags, borderMode=border)
              for item in pixels]  # fmt: skip
    return np.stack(turned).view(bool) if batch.dtype == bool else np.stack(turned)


def turned_readings(
    classifier: MelanomaModel, inputs: np.ndarray, masks: np.ndarray | None, contexts: Any, angles: Sequence[float]
) -> np.ndarray:
    """float [len(angles), N]: P(melanoma) of each classifier input (and its mask) turned by each angle."""
    views = np.concatenate([rotated(inputs, a) for a in angles])
    view_masks = np.concatenate([rotated(masks, a, mask=True) for a in angles]) if masks is not None else None
    views_contexts = list(contexts) * len(angles) if contexts is not None else None
    turned = np.asarray(melanoma_probabilities(classifier, views, view_masks, views_contexts), dtype=float)
    return turned.reshape(len(angles), len(inputs))


def spread_under_rotation(
    pipeline: Pipeline, inputs: np.ndarray, masks: np.ndarray | None, contexts: list, scores: np.ndarray
) -> tuple[np.ndarray, list[tuple[float, float] | None]]:
    """Each answer over its classifier input as given and turned by each of
    ``pipeline.spread_angles`` (a photo's orientation on the skin is arbitrary): the mean
    P(melanoma) of these readings is the answer, their lowest and highest its spread. Averaged,
    the answer moves less with the photo's orientation (docs/results/invariance.md). Without
    angles: the answers as given, and no spread."""
    angles = pipeline.spread_angles
    if not angles:
        return np.asarray(scores, dtype=float), [None] * len(scores)
    every = np.vstack(
        [np.asarray(scores, dtype=float), turned_readings(pipeline.classifier, inputs, masks, contexts, angles)]
    )
    return every.mean(axis=0), [(float(low), float(high)) for low, high in zip(every.min(axis=0), every.max(axis=0))]


def image_typicality_of(gate: Gate, classifier: MelanomaModel, inputs: np.ndarray) -> list[float | None] | None:
    """Each input's distance from the training crops' pooled CNN features (``Gate.image_typicality``),
    where the gate has the figures and the classifier can say its features."""
    if gate.image_typicality is None:
        return None
    features = classifier.image_features(inputs)
    if features is None:
        return None
    distances = gate.image_typicality.distance(features, image_feature_names(features.shape[1]))
    return [None if np.isnan(d) else float(d) for d in distances]


def typicality_of(gate: Gate, inputs: np.ndarray, masks: np.ndarray | None) -> list[float | None] | None:
    """Each input's distance from the training images' lesion features (``Typicality``), where
    the gate has the figures and the lesion masks are at hand (a model that reads them)."""
    if gate.typicality is None or masks is None:
        return None
    from srcrn.morphology.features import feature_table

    table, names = feature_table(inputs, masks)
    return [None if np.isnan(d) else float(d) for d in gate.typicality.distance(table, names)]
