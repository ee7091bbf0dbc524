"""Where a network runs: eager PyTorch or ONNX Runtime. Both take normalised float32 NCHW
batches and return the network's raw output (logits) as numpy; everything before and after
(normalisation, TTA, resizing, thresholds) is shared, in ``predictor``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Runtime(Protocol):
    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchRuntime:
    """An ``nn.Module`` in eval mode under ``torch.inference_mode``."""

    def __init__(self, model: Any):
        self.model = model.eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(batch))).numpy()


class OnnxRuntime:
    """One ONNX model of a bundle, on the CPU, all graph optimisations on."""

    def __init__(self, path: str | Path):
        import onnxruntime

        from srcrn.errors import ConfigError

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own untyped errors for damaged files
            raise ConfigError(f"{path}: not a loadable ONNX model ({str(error).splitlines()[0][:160]})") from None
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: batch})[0]
