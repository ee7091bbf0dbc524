"""Where a network runs: eager PyTorch or ONNX Runtime. Both take normalised float32 NCHW
batches and return the network's raw output (logits) as numpy; everything before and after
(normalisation, TTA, resizing, thresholds) is shared, in ``predictor``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Runtime(Protocol):
    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere PyTorch
    emulates it, more slowly than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class TorchRuntime:
    """An ``nn.Module`` in eval mode under ``torch.inference_mode``; with ``precision`` bf16,
    under CPU autocast to bfloat16 (outputs back in float32)."""

    def __init__(self, model: Any, precision: str = "fp32"):
        from srcrn.errors import ConfigError

        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"--precision: fp32 or bf16 (given {precision!r})")
        self.model, self.precision = model.eval(), precision

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=self.precision == "bf16"):
            return self.model(torch.from_numpy(np.ascontiguousarray(batch))).float().numpy()


class OnnxRuntime:
    """One ONNX model of a bundle, on the CPU. Session options chosen by measurement
    (``benchmarks/ort_options.py``, BENCHMARKS.md): all graph optimisations, sequential
    execution, ONNX Runtime's default intra-op threads (one per core), and no spinning: idle
    ORT threads sleep instead of busy-waiting (int8 networks 95.7 against 75.5 images/s in one
    run, fp32 equal), which leaves the cores to the pipeline's own threads in between."""

    def __init__(self, path: str | Path):
        import onnxruntime

        from srcrn.errors import ConfigError

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own untyped errors for damaged files
            raise ConfigError(f"{path}: not a loadable ONNX model ({str(error).splitlines()[0][:160]})") from None
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: batch})[0]
