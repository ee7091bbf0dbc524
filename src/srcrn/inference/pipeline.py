"""Both stages for any dermoscopic image: mask at the original size, measurements, melanoma
probability and decision, and an overlay a clinician can check at a glance.

Preprocessing is exactly the training one: the segmenter sees the image decoded and
resized as ``srcrn prepare`` does; the classifier sees ``lesion_input`` of the predicted
mask, with the input mode, margin and size stored in its checkpoint (or bundle). This module
imports no torch: with the ONNX Runtime engine, torch is not needed at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from srcrn.answers.bands import Bands
from srcrn.answers.compare import Comparison, compare
from srcrn.answers.gate import Gate
from srcrn.answers.results import PipelineResult
from srcrn.bundle.card import ModelCard, model_card, training_records
from srcrn.bundle.reading import load_bundle
from srcrn.bundle.schema import validated_section
from srcrn.data.images import Box, ImageFile, ImageSource, as_source, decode_image, jpeg_damage
from srcrn.data.metadata import NO_CONTEXT, ClinicalContext
from srcrn.errors import ConfigError, SrcrnError
from srcrn.inference.steps import (
    STEPS,
    WORKING_SIDE,
    Loaded,
    Modelled,
    done,
    identity,
    lesion_of,
    outcome_of,
    result_of,
    run_networks,
    submit,
)
from srcrn.runtime.segmenter import Segmenter
from srcrn.stage2.cnn import CnnModel
from srcrn.stage2.registry import load_melanoma_model
from srcrn.stage2.spec import MelanomaModel

# Decoding and finishing (masks at the original size, measurements, overlays, PNG files) run
# in this many threads beside the networks: Pillow, OpenCV, NumPy and ONNX Runtime release
# the GIL, so they overlap. One, by measurement on 2 cores (benchmarks/overlap.py,
# BENCHMARKS.md): never slower than none, and two oversubscribe the cores the networks use.
WORKERS = 1
# The answer and its spread (PipelineResult.spread): a photo's orientation on the skin is
# arbitrary, and turning a dev image by 15 degrees moved its answer by 0.036 in median and 0.105
# at the 90th percentile (docs/results/invariance.md), so each lesion is also read turned both
# ways: the answer is the mean of the three readings, the spread their range.
SPREAD_ANGLES = (-15.0, 15.0)
log = logging.getLogger(__name__)


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
        classifier: MelanomaModel,
        threshold: float | None = None,
        *,
        explain: bool = False,
        card: ModelCard | None = None,
        workers: int = WORKERS,
        gate: Gate | None = None,
        bands: Bands | None = None,
    ):
        """Both stages (prefer ``from_bundle``, ``from_checkpoints`` or ``default``).

        Args:
            segmenter: stage 1.
            classifier: stage 2 (any ``MelanomaModel``).
            threshold: the decision threshold (default: the classifier's).
            explain: add Grad-CAM heatmaps (a CNN only).
            card: the model card.
            workers: threads decoding and finishing beside the networks (0: none).
            gate: the input gate's thresholds (default: ``Gate()``'s; a bundle brings its own).
            bands: the verdict bands (a bundle may bring them; without, one threshold decides).
        """
        self.segmenter, self.classifier, self.explain = segmenter, classifier, explain
        self.workers = workers  # threads that decode and finish images beside the networks (0: none)
        self._pool: ThreadPoolExecutor | None = None
        self._clock = threading.Lock()
        self.needs_masks = classifier.needs_masks  # the lesion-feature model reads the lesion's mask
        self.segment_size, self.classify_size = segmenter.image_size, classifier.image_size
        self.input_mode, self.margin = classifier.spec.input, classifier.spec.margin
        self.threshold = float(classifier.spec.threshold if threshold is None else threshold)
        self.card = card
        self.gate = gate or Gate()
        self.bands = bands
        # The answer's spread: P(melanoma) also with the lesion turned by these angles (degrees).
        self.spread_angles: tuple[float, ...] = SPREAD_ANGLES
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
        workers: int = WORKERS,
        device: str = "cpu",
    ) -> Pipeline:
        """Eager models (needs ``srcrn[train]``): a segmenter checkpoint, and any stage-2 model.

        Args:
            segmenter: a ``segment train`` checkpoint.
            classifier: a stage-2 model (``inference.melanoma``): CNN checkpoint, lesion-feature
                model or stack folder.
            threshold: the decision threshold (default: the model's).
            explain: also a Grad-CAM heatmap (CNN only).
            precision: ``fp32``, or ``bf16`` autocast.
            workers: threads decoding and finishing beside the networks (0: none).
            device: the torch device of the networks (``cpu``, ``cuda``, ``cuda:1``, ``mps``).

        Returns:
            The pipeline.

        Raises:
            ConfigError: a model file of the wrong kind, ``explain`` for a model without a
                CNN, or a device this torch cannot use.
        """
        model = load_melanoma_model(classifier, precision, device)
        if explain and not isinstance(model, CnnModel):
            raise ConfigError(f"{classifier}: --explain shows a CNN's evidence; a {model.kind} model has none to show")
        pipeline = cls(
            Segmenter.from_checkpoint(segmenter, precision=precision, device=device),
            model,
            threshold,
            explain=explain,
            workers=workers,
        )
        pipeline.card = model_card(pipeline, "torch", training_records(segmenter, classifier), WORKING_SIDE)
        pipeline.card.gate = pipeline.gate.shown()
        return pipeline

    @classmethod
    def from_bundle(
        cls, bundle: str | Path, threshold: float | None = None, *, explain: bool = False, workers: int = WORKERS
    ) -> Pipeline:
        """The models of an ``srcrn export onnx`` bundle (torch-free), or of the one shipped with
        srcrn for ``bundle="default"`` (``Pipeline.default()``)."""
        from srcrn.bundle.default import resolve_bundle

        bundle = resolve_bundle(bundle)
        if explain:
            raise ConfigError(
                "--explain needs the torch engine: ONNX models carry no gradients for Grad-CAM "
                "(pass --segmenter and --classifier checkpoints instead of --model)"
            )
        segmenter, classifier, manifest = load_bundle(bundle)
        gate = validated_section(Gate, manifest.gate, bundle, "gate")
        bands = validated_section(Bands, manifest.bands, bundle, "bands")
        pipeline = cls(segmenter, classifier, threshold, workers=workers, gate=gate, bands=bands)
        records = {"segmenter": manifest.segmenter.training, "classifier": manifest.classifier.training}
        # With a shipped model's own description (training data, licences, figures) as ``about``.
        pipeline.card = model_card(
            pipeline, "onnx", records, WORKING_SIDE, exported_with=manifest.srcrn_version, about=manifest.card
        )
        pipeline.card.gate = pipeline.gate.shown()
        pipeline.card.bands = bands.model_dump() if bands else None
        return pipeline

    @classmethod
    def default(cls, threshold: float | None = None, *, workers: int = WORKERS) -> Pipeline:
        """The model shipped inside the package (``srcrn model-card`` describes it): no files,
        no torch, no network. One error line where this srcrn ships none."""
        return cls.from_bundle("default", threshold, workers=workers)

    def predict(
        self,
        image: ImageSource,
        *,
        image_id: str | None = None,
        age: float | str | None = None,
        sex: str | None = None,
        site: str | None = None,
        mm_per_pixel: float | None = None,
        context: ClinicalContext | None = None,
    ) -> PipelineResult:
        """One image: a path, the bytes of an image file, a Pillow image or an HxWx3 uint8
        array, with the patient's approximate ``age`` (years), ``sex`` (male | female) and the
        lesion's body ``site`` (ISIC's anatomic sites, e.g. 'posterior torso') where known, or
        a ``context``. A model without clinical inputs ignores them. ``mm_per_pixel`` (the
        image's scale) adds millimetres to the measurements. A bad image or value raises
        ``DataError`` naming it."""
        if context is None:
            context = ClinicalContext.of(age, sex, site, pixel_spacing_mm=mm_per_pixel)
        return self.predict_many([image], image_ids=[image_id] if image_id else None, contexts=[context])[0]

    def compare(
        self,
        before: ImageSource,
        after: ImageSource,
        *,
        before_context: ClinicalContext | None = None,
        after_context: ClinicalContext | None = None,
    ) -> Comparison:
        """Two visits of one lesion: both predicted, AFTER registered onto BEFORE, and what
        changed (``inference.compare``); each image's scale (``pixel_spacing_mm`` of its
        context) gives the changes in mm."""
        first, second = self.predict_many([before, after], contexts=[before_context, after_context])
        return compare(first, second)

    def predict_many(
        self,
        images: Sequence[ImageSource],
        *,
        batch_size: int = 8,
        image_ids: Sequence[str] | None = None,
        contexts: Sequence[ClinicalContext | None] | None = None,
    ) -> list[PipelineResult]:
        """Many images (each with its clinical context, if any), ``batch_size`` at a time through
        the networks; the first bad image raises ``DataError`` (``predict_each`` and ``srcrn
        predict`` instead go on)."""
        results: list[PipelineResult] = []
        for batch in self.predict_stream(images, batch_size=batch_size, image_ids=image_ids, contexts=contexts):
            for outcome in batch:
                if isinstance(outcome, SrcrnError):
                    raise outcome
                results.append(outcome)
        return results

    def predict_each(
        self,
        images: Sequence[ImageSource],
        *,
        image_ids: Sequence[str] | None = None,
        contexts: Sequence[ClinicalContext | None] | None = None,
    ) -> list[PipelineResult | SrcrnError]:
        """``images`` as one batch; a bad image fails alone: its entry is the error (``srcrn
        predict`` and ``srcrn serve`` report it and go on)."""
        batches = self.predict_stream(images, batch_size=max(1, len(images)), image_ids=image_ids, contexts=contexts)
        return [outcome for batch in batches for outcome in batch]

    def predict_stream(
        self,
        images: Sequence[ImageSource],
        *,
        batch_size: int = 8,
        image_ids: Sequence[str] | None = None,
        then: Callable[[PipelineResult], Any] | None = None,
        contexts: Sequence[ClinicalContext | None] | None = None,
    ) -> Iterator[list[Any]]:
        """Every image, one list per batch in input order: its ``PipelineResult`` (or what
        ``then`` returned for it, e.g. the saved files), or the ``SrcrnError`` of a bad image.

        Overlapped: while the networks run on batch k (in this thread), the worker pool
        decodes batch k+1 and finishes batch k-1 (masks at the original size, measurements,
        ``then``). Each image is decoded once per DCT scale its uses need (``ImageFile``).
        The outputs are those of running the steps one after another (``workers=0``).
        """
        if image_ids is not None and len(image_ids) != len(images):
            raise ConfigError(f"image_ids: {len(image_ids)} ids for {len(images)} images")
        if contexts is not None and len(contexts) != len(images):
            raise ConfigError(f"contexts: {len(contexts)} clinical contexts for {len(images)} images")
        given = [(contexts[i] if contexts is not None else None) or NO_CONTEXT for i in range(len(images))]
        images = [as_source(image) for image in images]  # file-like objects read once, here
        identities = [identity(image, image_ids[i] if image_ids else None, i) for i, image in enumerate(images)]
        spans = [range(start, min(start + batch_size, len(images))) for start in range(0, len(images), batch_size)]
        pool = self._executor()

        def load(span: range) -> list[Future]:
            return [submit(pool, self._timed, "decode", self._load, images[i], identities[i], given[i]) for i in span]

        def finish(outcomes: list[Any]) -> list[Future]:
            return [
                submit(pool, self._finish_then, outcome, then) if isinstance(outcome, Modelled) else done(outcome)
                for outcome in outcomes
            ]

        pending: list[Future] | None = None
        loading = load(spans[0]) if spans else []
        for k in range(len(spans)):
            loaded = [outcome_of(future) for future in loading]
            loading = load(spans[k + 1]) if k + 1 < len(spans) else []  # decoded while the networks run
            finishing = finish(run_networks(self, loaded))
            if pending is not None:
                yield [future.result() for future in pending]
            pending = finishing
        if pending is not None:
            yield [future.result() for future in pending]

    def model_inputs(self, images: Sequence[ImageSource]) -> tuple[np.ndarray, np.ndarray]:
        """What each network is given for ``images``: the segmenter's uint8 images and the
        classifier's lesion inputs (from this pipeline's masks), e.g. to calibrate int8 models."""
        loaded = [self._load(image, identity(image, None, i), NO_CONTEXT) for i, image in enumerate(images)]
        probabilities = self.segmenter.probabilities(np.stack([item.at_size[self.segment_size] for item in loaded]))
        inputs = [self._lesion(item, probability)[0] for item, probability in zip(loaded, probabilities)]
        return np.stack([item.at_size[self.segment_size] for item in loaded]), np.stack(inputs)

    def _executor(self) -> ThreadPoolExecutor | None:
        if self.workers > 0 and self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="srcrn-pipeline")
        return self._pool

    def _timed(self, step: str, function: Callable, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            with self._clock:  # steps run in several threads at once: their seconds add up
                self.seconds[step] += time.perf_counter() - started

    def _load(self, image: ImageSource, identity: tuple[str, str | None], context: ClinicalContext) -> Loaded:
        """The image at each size the networks need (one decode for all where the sizes share a
        DCT scale) and its original size."""
        file = ImageFile(image, identity[1])
        at_size = {size: decode_image(file, size)[0] for size in dict.fromkeys((self.segment_size, self.classify_size))}
        taken: tuple[str, ...] = ()
        if file.dicom is not None:  # the header's scale and context where none was given
            context, taken = file.dicom.under(context)
        return Loaded(image, identity, file, at_size, context, jpeg_damage(file), taken)

    def _lesion(self, item: Loaded, probability: np.ndarray) -> tuple[np.ndarray, Box | None, np.ndarray | None]:
        return lesion_of(item, self.segmenter.mask(probability, self.classify_size, self.classify_size),
                         self.classify_size, self.input_mode, self.margin, needs_mask=self.needs_masks)  # fmt: skip

    def _finish_then(self, modelled: Modelled, then: Callable[[PipelineResult], Any] | None) -> Any:
        try:
            result = self._timed("measure", self._finish, modelled)
        except SrcrnError as error:
            return error
        if then is None:
            return result
        return self._timed("outputs", then, result)

    def _finish(self, modelled: Modelled) -> PipelineResult:
        return result_of(modelled, self.segmenter, self.classifier, self.threshold, self.card, self.gate, self.bands)
