"""What every stage-2 model shares, a leaf of the package: how a model is run (``ClassifierSpec``:
input side, input mode and margin, threshold, calibration), the ``MelanomaModel`` protocol every
kind implements, and ``probabilities``, the one place where a logit becomes a (calibrated)
probability."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from srcrn.data.metadata import ClinicalContext

Contexts = Sequence[ClinicalContext | None] | None


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


@runtime_checkable
class MelanomaModel(Protocol):
    """What every stage-2 model offers. ``inputs`` are uint8 [N, S, S, 3] lesion inputs built
    from the stage-1 mask (``data.lesion``, with ``spec``'s size, input mode and margin);
    ``masks`` the boolean lesion masks on them (needed when ``needs_masks``); ``contexts``
    each image's clinical context (used when ``clinical_fields``; None = unknown)."""

    kind: str  # "cnn" | "features" | "stack"
    source: str  # the file (or folder) it was loaded from

    @property
    def spec(self) -> ClassifierSpec:
        """Input size and mode, margin, threshold, calibration."""
        ...

    @property
    def image_size(self) -> int:
        """The side of the square input the model takes."""
        ...

    @property
    def needs_masks(self) -> bool:
        """Whether ``logits`` needs the lesion masks on the inputs."""
        ...

    @property
    def clinical_fields(self) -> tuple[str, ...]:
        """The clinical fields (age, sex, site) the model takes."""
        ...

    def logits(self, inputs: np.ndarray, masks: np.ndarray | None = None, contexts: Contexts = None) -> np.ndarray:
        """float64 [N] uncalibrated melanoma logits."""
        ...

    def store_extras(self, **extras: Any) -> None:
        """Record ``threshold``, ``target_sensitivity`` or ``calibration`` in the model's file."""
        ...

    def image_features(self, inputs: np.ndarray) -> np.ndarray | None:
        """float [N, F] the pooled features of a CNN's backbone for the inputs as given (the input
        gate measures an image's likeness to the training images on them), or None."""
        ...


def probabilities(
    model: MelanomaModel, inputs: np.ndarray, masks: np.ndarray | None = None, contexts: Contexts = None
) -> np.ndarray:
    """float64 [N] P(melanoma): the model's logits through its calibration (identity without one)."""
    return model.spec.calibration(model.logits(inputs, masks, contexts)).astype(np.float64)


def with_extras(spec: ClassifierSpec, extras: dict[str, Any]) -> ClassifierSpec:
    """``spec`` with what ``store_extras`` recorded: threshold, target sensitivity, calibration."""
    changes: dict[str, Any] = {}
    if "threshold" in extras:
        changes["threshold"] = float(extras["threshold"])
    if "target_sensitivity" in extras:
        changes["target_sensitivity"] = extras["target_sensitivity"]
    if "calibration" in extras:
        changes["calibration"] = Calibration.from_dict(extras["calibration"])
    return replace(spec, **changes)
