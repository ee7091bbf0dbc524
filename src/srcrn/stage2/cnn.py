"""Kind ``cnn``: stage 2's convolutional network (``models.classifier.MelanomaClassifier``) as it
predicts, from a ``classify train`` checkpoint (PyTorch) or a bundle's ONNX file (ONNX Runtime).
It reads neither lesion masks nor clinical context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from srcrn.data.normalization import normalize_numpy
from srcrn.runtime.engines import TTA_FLIPS, Runtime, batched, torch_runtime
from srcrn.stage2.spec import Calibration, ClassifierSpec, with_extras


class CnnModel:
    """Stage 2's CNN: melanoma logits of classifier inputs (built by ``data.lesion``)."""

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
    def from_checkpoint(cls, path: str | Path, precision: str = "fp32", device: str = "cpu") -> CnnModel:
        """The CNN of a ``classify train`` checkpoint, run by PyTorch on ``device``."""
        runtime, stored = torch_runtime(path, "classifier", precision, device)
        s = stored.settings
        spec = ClassifierSpec(
            image_size=s["image_size"],
            input=s["input"],
            margin=float(s["margin"]),
            threshold=stored.threshold,
            segmenter=s.get("segmenter"),
            target_sensitivity=stored.extras.get("target_sensitivity"),
            tta=bool(s.get("tta", False)),
            calibration=Calibration.from_dict(stored.extras.get("calibration")),
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

        return batched(run, inputs, self.batch_size)

    def image_features(self, inputs: np.ndarray) -> np.ndarray | None:
        """float [N, F] pooled backbone features of uint8 classifier inputs as given (no flips),
        where the runtime can say them (a bundle exported with them, or a checkpoint); else None."""
        if not getattr(self.runtime, "has_features", False):  # e.g. a bundle exported before the output
            return None
        features = self.runtime.features  # type: ignore[attr-defined]
        return batched(
            lambda batch: np.asarray(features(normalize_numpy(batch)), np.float64),
            np.asarray(inputs, dtype=np.uint8),
            self.batch_size,
        )

    def store_extras(self, **extras: Any) -> None:
        """Record a threshold or calibration in the checkpoint (needs torch; bundles are written whole)."""
        from srcrn.runtime.checkpoints import store_extras

        store_extras(self.source, **extras)
        self.spec = with_extras(self.spec, extras)

    @classmethod
    def from_onnx(cls, path: Path, spec: ClassifierSpec) -> CnnModel:
        """The CNN of a bundle's ONNX file, run by ONNX Runtime as ``spec`` (from ``bundle.json``) says."""
        from srcrn.runtime.engines import OnnxRuntime

        return cls(OnnxRuntime(path), spec, str(path))

    def write_into(self, out: Path, stem: str) -> str:
        """Export the CNN into a bundle folder as ONNX (``stem.onnx``); the file's name."""
        from srcrn.runtime.checkpoints import export_onnx_file

        name = f"{stem}.onnx"
        export_onnx_file(self.source, out / name, self.image_size, "logit", features=True)
        return name
