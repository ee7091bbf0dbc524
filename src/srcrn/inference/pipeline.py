"""Both stages for any dermoscopic image: mask at the original size, measurements, melanoma
probability and decision, and an overlay a clinician can check at a glance.

Preprocessing is exactly the training one: the segmenter sees the image decoded and
resized as ``srcrn prepare`` does; the classifier sees ``lesion_input`` of the predicted
mask, with the input mode, margin and size stored in its checkpoint (or bundle). This module
imports no torch: with the ONNX Runtime engine, torch is not needed at all.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from srcrn.atomic import atomic_path, write_mask
from srcrn.data.images import ImageSource, decode_image, decode_image_fit
from srcrn.data.lesion import crop_mask, lesion_box, lesion_input
from srcrn.errors import ConfigError, SrcrnError
from srcrn.inference.card import model_card, training_records
from srcrn.inference.measurements import LesionMeasurements, measure_lesion
from srcrn.inference.predictor import Classifier, Segmenter, from_bundle

# Measurements and overlays use the image at this longer side at most (lengths are scaled
# back to original pixels): precise enough for a lesion, cheap even for 6700x4500 originals.
WORKING_SIDE = 1024
log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """What ``srcrn predict`` records of one image: the numbers and the files it wrote."""

    image_id: str
    source: str
    width: int
    height: int
    melanoma: float
    decision: str
    threshold: float
    measurements: dict = field(default_factory=dict)
    mask: str = ""
    overlay: str = ""
    explanation: str = ""


@dataclass
class PipelineResult:
    """Both stages' answer for one image, in memory. ``mask`` is at the image's original size
    (EXIF orientation applied); the measurements are in original pixels."""

    image_id: str
    source: str
    width: int
    height: int
    probability: float  # P(melanoma), calibrated when the classifier carries a calibration
    decision: str  # "melanoma" when probability > threshold, else "benign"
    threshold: float
    mask: np.ndarray = field(repr=False)  # bool, height x width
    measurements: LesionMeasurements
    heatmap: np.ndarray | None = field(default=None, repr=False)  # Grad-CAM on the working image
    # The image and mask at the working size (longer side WORKING_SIDE at most), for overlays.
    working_image: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 3), np.uint8), repr=False)
    working_mask: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool), repr=False)

    @property
    def caption(self) -> str:
        return f"P(melanoma) {self.probability:.3f} -> {self.decision} (threshold {self.threshold:.3f})"

    def overlay(self, *, caption: bool = True) -> np.ndarray:
        """The image (at the working size) with the lesion contour and, with ``caption``, the
        decision in a band on top (enlarged to 640 px wide at least, for legibility), RGB uint8."""
        return render_overlay(self.working_image, self.working_mask, self.caption if caption else None)

    def mask_png(self) -> bytes:
        """The mask as an ISIC mask file (0/255 PNG, original size)."""
        return encode_png(self.mask.astype(np.uint8) * 255)

    def overlay_png(self, *, caption: bool = True) -> bytes:
        return encode_png(self.overlay(caption=caption))

    def explanation(self) -> np.ndarray | None:
        """The Grad-CAM heatmap blended over the image (RGB), when asked for."""
        if self.heatmap is None:
            return None
        from srcrn.inference.explain import heatmap_overlay

        return heatmap_overlay(self.working_image, self.heatmap)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready numbers (no arrays; NaN as None)."""
        return clean_json(
            {
                "image_id": self.image_id,
                "width": self.width,
                "height": self.height,
                "probability": self.probability,
                "decision": self.decision,
                "threshold": self.threshold,
                "measurements": self.measurements.to_dict(),
            }
        )

    def save(self, out: str | Path, *, overlay: bool = True) -> Prediction:
        """Write what ``srcrn predict`` writes for this image under ``out``:
        ``masks/<id>_segmentation.png``, ``overlays/<id>_overlay.png`` (unless ``overlay`` is
        False) and, with a heatmap, ``explanations/<id>_gradcam.png`` (each atomically)."""
        out = Path(out)
        mask_path = out / "masks" / f"{self.image_id}_segmentation.png"
        write_mask(mask_path, self.mask)
        overlay_path = out / "overlays" / f"{self.image_id}_overlay.png" if overlay else None
        if overlay_path is not None:
            write_png(overlay_path, self.overlay())
        explanation_path = ""
        explanation = self.explanation()
        if explanation is not None:
            explanation_path = str(out / "explanations" / f"{self.image_id}_gradcam.png")
            write_png(Path(explanation_path), explanation)
        return Prediction(
            self.image_id,
            self.source,
            self.width,
            self.height,
            self.probability,
            self.decision,
            self.threshold,
            self.measurements.to_dict(),
            str(mask_path),
            str(overlay_path or ""),
            explanation_path,
        )


def _identity(image: ImageSource, image_id: str | None, position: int) -> tuple[str, str | None]:
    """(image id, name for error messages): a path's stem and path, else what the caller named."""
    if isinstance(image, (str, Path)):
        return image_id or Path(image).stem, None
    return image_id or f"image-{position}", image_id or f"<image {position}>"


class Pipeline:
    """Both stages for any dermoscopic image, over the one prediction path (``predictor``),
    whatever runs the networks (eager PyTorch or ONNX Runtime): every step before and after
    them is shared, so both engines give the same outputs, and the masks are those
    ``segment eval`` scores.

    >>> pipeline = Pipeline.from_bundle("bundle")            # doctest: +SKIP
    >>> result = pipeline.predict("ISIC_0000000.jpg")        # doctest: +SKIP
    >>> result.probability, result.decision, result.mask.shape  # doctest: +SKIP
    """

    def __init__(
        self,
        segmenter: Segmenter,
        classifier: Any,
        threshold: float | None = None,
        *,
        explain: bool = False,
        card: dict[str, Any] | None = None,
    ):
        self.segmenter, self.classifier, self.explain = segmenter, classifier, explain
        self.needs_masks = not isinstance(classifier, Classifier)
        self.segment_size, self.classify_size = segmenter.image_size, classifier.image_size
        self.input_mode, self.margin = classifier.spec.input, classifier.spec.margin
        self.threshold = float(classifier.spec.threshold if threshold is None else threshold)
        self.card = card or {}
        self.seconds = dict.fromkeys(STEPS, 0.0)

    @classmethod
    def from_checkpoints(
        cls,
        segmenter: str | Path,
        classifier: str | Path,
        threshold: float | None = None,
        *,
        explain: bool = False,
        precision: str = "fp32",
    ) -> Pipeline:
        """Eager models (needs ``srcrn[train]``): a segmenter checkpoint, and a classifier
        checkpoint (.ckpt) or a lesion feature model (.skops, scored from the lesion and its
        mask; no Grad-CAM). ``precision`` bf16 runs both networks under bfloat16 autocast."""
        if Path(classifier).suffix == ".skops":
            from srcrn.inference.feature_model import FeatureModel  # scikit-learn: only when used

            if explain:
                raise ConfigError(f"{classifier}: --explain shows a CNN's evidence; a feature model has none to show")
            model: Any = FeatureModel.load(classifier)
        else:
            model = Classifier.from_checkpoint(classifier, precision)
        pipeline = cls(Segmenter.from_checkpoint(segmenter, precision=precision), model, threshold, explain=explain)
        pipeline.card = model_card(pipeline, "torch", training_records(segmenter, classifier), WORKING_SIDE)
        return pipeline

    @classmethod
    def from_bundle(cls, bundle: str | Path, threshold: float | None = None, *, explain: bool = False) -> Pipeline:
        """The ONNX models of an ``srcrn export onnx`` bundle (torch-free)."""
        if explain:
            raise ConfigError(
                "--explain needs the torch engine: ONNX models carry no gradients for Grad-CAM "
                "(pass --segmenter and --classifier checkpoints instead of --model)"
            )
        segmenter, classifier, manifest = from_bundle(bundle)
        pipeline = cls(segmenter, classifier, threshold)
        records = {"segmenter": manifest.segmenter.training, "classifier": manifest.classifier.training}
        pipeline.card = model_card(pipeline, "onnx", records, WORKING_SIDE, exported_with=manifest.srcrn_version)
        return pipeline

    def _decode(self, image: ImageSource, name: str | None) -> tuple[dict[int, np.ndarray], tuple[int, int]]:
        """The image at each size the models need, each decoded once, and its original size."""
        decoded: dict[int, np.ndarray] = {}
        original = (0, 0)
        for size in dict.fromkeys((self.segment_size, self.classify_size)):
            decoded[size], original = decode_image(image, size, name=name)
        return decoded, original

    def predict(self, image: ImageSource, *, image_id: str | None = None) -> PipelineResult:
        """One image: a path, the bytes of an image file, a Pillow image or an HxWx3 uint8
        array. A bad image raises ``DataError`` naming it."""
        return self.predict_many([image], image_ids=[image_id] if image_id else None)[0]

    def predict_many(
        self, images: Sequence[ImageSource], *, batch_size: int = 8, image_ids: Sequence[str] | None = None
    ) -> list[PipelineResult]:
        """Many images, ``batch_size`` at a time through the networks; the first bad image
        raises ``DataError`` (``srcrn predict`` instead skips bad files: ``predict_images``)."""
        if image_ids is not None and len(image_ids) != len(images):
            raise ConfigError(f"image_ids: {len(image_ids)} ids for {len(images)} images")
        identities = [_identity(image, image_ids[i] if image_ids else None, i) for i, image in enumerate(images)]
        results: list[PipelineResult] = []
        for start in range(0, len(images), batch_size):
            results += self._predict_batch(images[start : start + batch_size], identities[start : start + batch_size])
        return results

    def model_inputs(self, images: Sequence[ImageSource]) -> tuple[np.ndarray, np.ndarray]:
        """What each network is given for ``images``: the segmenter's uint8 images and the
        classifier's lesion inputs (from this pipeline's masks), e.g. to calibrate int8 models."""
        identities = [_identity(image, None, i) for i, image in enumerate(images)]
        decoded, _, inputs, _, _ = self._stage_inputs(images, identities)
        return np.stack([d[self.segment_size] for d, _ in decoded]), np.stack(inputs)

    def _stage_inputs(self, images: Sequence[ImageSource], identities: list[tuple[str, str | None]]) -> tuple:
        started = time.perf_counter()
        decoded = [self._decode(image, name) for image, (_, name) in zip(images, identities)]
        self.seconds["decode"] += time.perf_counter() - started
        started = time.perf_counter()
        probabilities = self.segmenter.probabilities(np.stack([d[self.segment_size] for d, _ in decoded]))
        self.seconds["segment"] += time.perf_counter() - started
        started = time.perf_counter()
        inputs, boxes, input_masks = [], [], []
        for image, (images_at, _), probability, (_, name) in zip(images, decoded, probabilities, identities):
            mask = self.segmenter.mask(probability, self.classify_size, self.classify_size)
            at_size = images_at[self.classify_size]
            inputs.append(lesion_input(at_size, mask, self.input_mode, image, margin=self.margin, name=name))
            boxes.append(lesion_box(mask, self.margin) if self.input_mode == "crop" else None)
            if self.needs_masks:
                input_masks.append(crop_mask(mask, self.input_mode, self.classify_size, margin=self.margin))
        self.seconds["decode"] += time.perf_counter() - started
        return decoded, probabilities, inputs, boxes, input_masks

    def _predict_batch(
        self, images: Sequence[ImageSource], identities: list[tuple[str, str | None]]
    ) -> list[PipelineResult]:
        decoded, probabilities, inputs, boxes, input_masks = self._stage_inputs(images, identities)
        started = time.perf_counter()
        if self.needs_masks:  # the lesion-feature model reads the lesion's mask too
            melanoma = self.classifier.probabilities(np.stack(inputs), np.stack(input_masks))
        else:
            melanoma = self.classifier.probabilities(np.stack(inputs))
        self.seconds["classify"] += time.perf_counter() - started
        heatmaps: list[np.ndarray | None] = [None] * len(images)
        if self.explain:
            from srcrn.inference.explain import grad_cam

            started = time.perf_counter()
            heatmaps = list(grad_cam(self.classifier, np.stack(inputs)))
            self.seconds["explain"] += time.perf_counter() - started
        started = time.perf_counter()
        results = [
            self._finish(image, identity, size, probability, float(score), heatmap, box)
            for image, identity, (_, size), probability, score, heatmap, box in zip(
                images, identities, decoded, probabilities, melanoma, heatmaps, boxes
            )
        ]
        self.seconds["measure"] += time.perf_counter() - started
        return results

    def _finish(
        self,
        image: ImageSource,
        identity: tuple[str, str | None],
        size: tuple[int, int],
        probability: np.ndarray,
        score: float,
        heatmap: np.ndarray | None,
        box: tuple[float, float, float, float] | None,
    ) -> PipelineResult:
        (width, height), (image_id, name) = size, identity
        work, _ = decode_image_fit(image, WORKING_SIDE, name=name)
        work_mask = self.segmenter.mask(probability, work.shape[1], work.shape[0])
        placed = None
        if heatmap is not None:
            from srcrn.inference.explain import place_heatmap

            placed = place_heatmap(heatmap, box, work.shape[1], work.shape[0])
        return PipelineResult(
            image_id=image_id,
            source=str(image) if isinstance(image, (str, Path)) else (name or image_id),
            width=width,
            height=height,
            probability=score,
            decision="melanoma" if score > self.threshold else "benign",
            threshold=self.threshold,
            mask=self.segmenter.mask(probability, width, height),
            measurements=measure_lesion(work_mask, work, scale=width / work.shape[1]),
            heatmap=placed,
            working_image=work,
            working_mask=work_mask,
        )

    def predict_each(
        self, images: Sequence[ImageSource], *, image_ids: Sequence[str] | None = None
    ) -> list[PipelineResult | SrcrnError]:
        """``images`` as one batch; when one of them is bad, each on its own, so that only the
        bad ones fail: their entry is the error (``srcrn predict`` and ``srcrn serve`` report
        it and go on)."""
        try:
            return list(self.predict_many(images, batch_size=max(1, len(images)), image_ids=image_ids))
        except SrcrnError:
            pass
        outcomes: list[PipelineResult | SrcrnError] = []
        for i, image in enumerate(images):
            try:
                outcomes.append(self.predict(image, image_id=image_ids[i] if image_ids else None))
            except SrcrnError as error:
                outcomes.append(error)
        return outcomes


STEPS = ("decode", "segment", "classify", "explain", "measure", "outputs")


OVERLAY_MIN_WIDTH = 640


def render_overlay(image: np.ndarray, mask: np.ndarray, caption: str | None) -> np.ndarray:
    """The image with the lesion contour and, with a ``caption``, a caption band on top, RGB
    (small images are then enlarged so that the caption stays legible)."""
    factor = max(1.0, OVERLAY_MIN_WIDTH / image.shape[1]) if caption is not None else 1.0
    if factor > 1.0:
        size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    canvas = np.ascontiguousarray(image[..., ::-1])  # OpenCV draws in BGR
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    # Without a caption the image is not enlarged, so a small one gets a thinner line.
    cv2.drawContours(
        canvas, contours, -1, (0, 255, 255), max(1 if caption is None else 2, round(canvas.shape[1] / 320))
    )
    if caption is None:
        return np.ascontiguousarray(canvas[..., ::-1])
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, canvas.shape[1] / 900
    (text_width, text_height), _ = cv2.getTextSize(caption, font, scale, 1)
    scale *= min(1.0, (canvas.shape[1] - 16) / text_width)  # shrink the caption to fit the width
    band = int(text_height * 2.2)
    canvas = cv2.copyMakeBorder(canvas, band, 0, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    cv2.putText(
        canvas, caption, (8, int(band * 0.7)), font, scale, (255, 255, 255), max(1, round(scale * 2)), cv2.LINE_AA
    )
    return np.ascontiguousarray(canvas[..., ::-1])


# Light compression: at the default level, PNG encoding of a photo took most of predict's time.
PNG_COMPRESS_LEVEL = 1


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of an RGB (or single-channel) uint8 image. OpenCV's encoder: about 30 % faster
    than Pillow's at the same level on our overlays, which matters per request in a service."""
    bgr = pixels[..., ::-1] if pixels.ndim == 3 else pixels
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(bgr), [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESS_LEVEL])
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {pixels.shape}")
    return encoded.tobytes()


def write_png(path: Path, pixels: np.ndarray) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(encode_png(pixels))


def clean_json(value: Any) -> Any:
    """JSON has no NaN or infinity: write null; numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
