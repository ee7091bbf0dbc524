"""The one prediction path: every mask and every melanoma probability srcrn gives (``segment
eval``, ``classify eval``, stage 2's cached lesion masks, ``predict`` with either engine, the
Python API) comes from ``Segmenter`` and ``Classifier`` here.

A model's own settings decide how it predicts: input size, flip test-time augmentation and
keeping the largest region for the segmenter; input mode, crop margin and operating
threshold for the classifier. They travel in the checkpoint and in ``bundle.json``.
torch-free: the torch runtime imports torch only when it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from srcrn.data.normalization import normalize_numpy
from srcrn.errors import ConfigError
from srcrn.inference.postprocess import keep_largest_region
from srcrn.inference.runtimes import Runtime

MASK_THRESHOLD = 0.5
# Flip test-time augmentation: the image axes (of NHWC) to flip; each prediction is flipped
# back (axes of NHW are the same numbers) before the four are averaged.
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((2,), (1,), (1, 2))


def sigmoid(values: np.ndarray) -> np.ndarray:
    """The logistic function, elementwise."""
    return (1.0 / (1.0 + np.exp(-np.asarray(values, dtype=np.float64)))).astype(np.float32)


def resize_probability(probability: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a probability map, pixel centres aligned (torch's ``align_corners=False``)."""
    if probability.shape == (height, width):
        return probability
    return cv2.resize(np.asarray(probability, dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def _batched(run: Callable[[np.ndarray], np.ndarray], items: np.ndarray, batch_size: int) -> np.ndarray:
    return (
        np.concatenate([run(items[i : i + batch_size]) for i in range(0, len(items), batch_size)])
        if len(items)
        else np.zeros((0,), np.float32)
    )


def _torch_runtime(
    path: str | Path, kind: Literal["segmenter", "classifier"], precision: str = "fp32", device: str = "cpu"
) -> tuple[Runtime, Any]:
    """The eager model of a checkpoint of ``kind`` on ``device`` (imported lazily: the ONNX
    path needs no torch)."""
    from srcrn.inference.checkpoints import build_model, read_checkpoint
    from srcrn.inference.runtimes import TorchRuntime

    stored = read_checkpoint(path, expect=kind)
    return TorchRuntime(build_model(stored), precision, device), stored


@dataclass(frozen=True)
class SegmenterSpec:
    """How a segmenter is run: its input side, flip TTA, keep-largest."""

    image_size: int
    tta: bool = False
    keep_largest: bool = False


class Segmenter:
    """Stage 1: lesion probabilities at the model's size, and masks at any size."""

    def __init__(self, runtime: Runtime, spec: SegmenterSpec, source: str = "", batch_size: int = 32):
        """A segmenter on ``runtime``, run as ``spec`` says, ``batch_size`` images at a time."""
        self.runtime, self.spec, self.source, self.batch_size = runtime, spec, source, batch_size

    @property
    def image_size(self) -> int:
        """The side of the square input the segmenter takes."""
        return self.spec.image_size

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, batch_size: int = 32, precision: str = "fp32", device: str = "cpu"
    ) -> Segmenter:
        """The segmenter of a ``segment train`` checkpoint, run by PyTorch on ``device``."""
        runtime, stored = _torch_runtime(path, "segmenter", precision, device)
        s = stored.settings
        spec = SegmenterSpec(s["image_size"], bool(s["tta"]), bool(s["keep_largest"]))
        return cls(runtime, spec, str(path), batch_size)

    def _probabilities(self, images: np.ndarray) -> np.ndarray:
        return sigmoid(self.runtime(normalize_numpy(images))[:, 0])

    def probabilities(self, images: np.ndarray, *, tta: bool | None = None) -> np.ndarray:
        """float32 [N, S, S] lesion probabilities for uint8 [N, S, S, 3] images at the model's size.
        ``tta`` (default: the model's own setting) averages the four flips."""
        images = np.asarray(images, dtype=np.uint8)
        tta = self.spec.tta if tta is None else tta

        def run(batch: np.ndarray) -> np.ndarray:
            probability = self._probabilities(batch)
            if tta:
                for axes in TTA_FLIPS:
                    probability = probability + np.flip(self._probabilities(np.flip(batch, axes)), axes)
                probability = probability / (1 + len(TTA_FLIPS))
            return probability

        return _batched(run, images, self.batch_size)

    def mask(self, probability: np.ndarray, width: int, height: int, *, keep_largest: bool | None = None) -> np.ndarray:
        """Boolean mask at width x height: the probability resized bilinearly, thresholded at 0.5,
        and (as the model's settings say) reduced to its largest region with holes filled."""
        mask = resize_probability(probability, width, height) > MASK_THRESHOLD
        if self.spec.keep_largest if keep_largest is None else keep_largest:
            mask = keep_largest_region(mask)
        return mask

    def masks(self, images: np.ndarray, size: int) -> np.ndarray:
        """uint8 0/1 masks [N, size, size] of images at the model's size."""
        return (
            np.stack([self.mask(p, size, size) for p in self.probabilities(images)]).astype(np.uint8)
            if len(images)
            else np.zeros((0, size, size), np.uint8)
        )


@dataclass(frozen=True)
class Calibration:
    """Calibrated P(melanoma) = sigmoid(scale * logit + bias): temperature scaling is
    scale = 1 / T, bias = 0; Platt scaling fits both. Identity when not calibrated."""

    method: str = "none"
    scale: float = 1.0
    bias: float = 0.0

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of ``logits`` (computed in float64, so large logits keep their order)."""
        # float64: float32 rounds large logits to exactly 0 or 1, which would tie images (and
        # change the AUC) that the logits still rank.
        return 1.0 / (1.0 + np.exp(-(self.scale * np.asarray(logits, dtype=np.float64) + self.bias)))

    def to_dict(self) -> dict[str, Any]:
        """The calibration as stored in a checkpoint or bundle."""
        return {"method": self.method, "scale": self.scale, "bias": self.bias}

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Calibration:
        """The calibration stored as ``values`` (None or empty: none)."""
        return cls(**{k: values[k] for k in ("method", "scale", "bias") if k in values}) if values else cls()


@dataclass(frozen=True)
class ClassifierSpec:
    """How a stage-2 model is run: input side, input mode and margin, threshold, the segmenter it was trained on, target sensitivity, TTA, calibration."""

    image_size: int
    input: str = "full"
    margin: float = 0.1
    threshold: float = 0.5
    segmenter: str | None = None
    target_sensitivity: float | None = None
    tta: bool = False
    calibration: Calibration = Calibration()


class Classifier:
    """Stage 2's CNN (kind ``cnn`` of ``inference.melanoma``): melanoma logits of classifier
    inputs (built by ``data.lesion``); it reads neither lesion masks nor clinical context."""

    kind = "cnn"
    needs_masks = False
    clinical_fields: tuple[str, ...] = ()

    def __init__(self, runtime: Runtime, spec: ClassifierSpec, source: str = "", batch_size: int = 64):
        """A CNN classifier on ``runtime``, run as ``spec`` says, ``batch_size`` inputs at a time."""
        self.runtime, self.spec, self.source, self.batch_size = runtime, spec, source, batch_size

    @property
    def image_size(self) -> int:
        """The side of the square input the classifier takes."""
        return self.spec.image_size

    @classmethod
    def from_checkpoint(cls, path: str | Path, precision: str = "fp32", device: str = "cpu") -> Classifier:
        """The CNN of a ``classify train`` checkpoint, run by PyTorch on ``device``."""
        runtime, stored = _torch_runtime(path, "classifier", precision, device)
        s = stored.settings
        spec = ClassifierSpec(
            s["image_size"],
            s["input"],
            float(s["margin"]),
            stored.threshold,
            s.get("segmenter"),
            stored.extras.get("target_sensitivity"),
            bool(s.get("tta", False)),
            Calibration.from_dict(stored.extras.get("calibration")),
        )
        return cls(runtime, spec, str(path))

    def logits(
        self, inputs: np.ndarray, masks: np.ndarray | None = None, contexts: Any = None, *, tta: bool | None = None
    ) -> np.ndarray:
        """float [N] melanoma logits (uncalibrated) for uint8 [N, S, S, 3] classifier inputs;
        ``tta`` (default: the model's own setting) averages the logits of the four flips.
        ``masks`` and ``contexts`` are accepted for the common interface and not read."""
        inputs = np.asarray(inputs, dtype=np.uint8)
        tta = self.spec.tta if tta is None else tta

        def run(batch: np.ndarray) -> np.ndarray:
            logits = self.runtime(normalize_numpy(batch)).reshape(-1).astype(np.float64)
            if tta:
                for axes in TTA_FLIPS:
                    logits = logits + self.runtime(normalize_numpy(np.flip(batch, axes))).reshape(-1)
                logits = logits / (1 + len(TTA_FLIPS))
            return logits

        return _batched(run, inputs, self.batch_size)

    def store_extras(self, **extras: Any) -> None:
        """Record a threshold or calibration in the checkpoint (needs torch; bundles are written whole)."""
        from srcrn.inference.checkpoints import store_extras

        store_extras(self.source, **extras)
        from srcrn.inference.melanoma import with_extras

        self.spec = with_extras(self.spec, extras)


def from_bundle(bundle: str | Path) -> tuple[Segmenter, Any, Any]:
    """The segmenter and the stage-2 model (``inference.melanoma``) of an ``srcrn export onnx``
    bundle: CNNs run with ONNX Runtime, feature models with scikit-learn (``srcrn[features]``)."""
    from srcrn.inference.bundle import read_manifest
    from srcrn.inference.runtimes import OnnxRuntime

    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    seg, cls = manifest.segmenter, manifest.classifier
    segmenter = Segmenter(
        OnnxRuntime(bundle / seg.file), SegmenterSpec(seg.image_size, seg.tta, seg.keep_largest), str(bundle / seg.file)
    )
    spec = ClassifierSpec(
        cls.image_size,
        cls.input,
        cls.margin,
        cls.threshold,
        None,
        cls.target_sensitivity,
        cls.tta,
        Calibration.from_dict(cls.calibration),
    )
    if cls.kind == "stack":
        from srcrn.inference.melanoma import StackModel

        members = [
            _bundle_member(bundle, m.kind, m.file, replace(spec, tta=m.tta, calibration=Calibration()))
            for m in cls.members
        ]
        model: Any = StackModel(members, cls.weights, cls.intercept, source=str(bundle))
        model.spec = spec
    else:
        model = _bundle_member(bundle, cls.kind, cls.file, spec)
    return segmenter, model, manifest


def _bundle_member(bundle: Path, kind: str, file: str, spec: ClassifierSpec) -> Any:
    if kind == "cnn":
        from srcrn.inference.runtimes import OnnxRuntime

        return Classifier(OnnxRuntime(bundle / file), spec, str(bundle / file))
    try:
        from srcrn.inference.feature_model import FeatureModel
    except ModuleNotFoundError as error:
        raise ConfigError(
            f"{bundle / file}: a lesion-feature model needs the 'features' extra: pip install 'srcrn[features]' "
            f"({error.name} is missing)"
        ) from None
    model = FeatureModel.load(bundle / file)
    model.extras = {"threshold": spec.threshold, "target_sensitivity": spec.target_sensitivity,
                    "calibration": spec.calibration.to_dict()}  # fmt: skip
    return model
