"""Where a network runs: eager PyTorch or ONNX Runtime. Both take normalised float32 NCHW
batches and return the network's raw output (logits) as numpy; everything before and after
(normalisation, TTA, resizing, thresholds) is shared: ``runtime.segmenter`` and ``stage2.cnn``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

# Flip test-time augmentation: the image axes (of NHWC) to flip; each prediction is flipped
# back (axes of NHW are the same numbers) before the four are averaged.
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((2,), (1,), (1, 2))


class Runtime(Protocol):
    """Where a network runs: normalised float32 NCHW in, the raw output (logits) out, as numpy."""

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """The network's raw output for ``batch``."""
        ...


def sigmoid(values: np.ndarray) -> np.ndarray:
    """The logistic function, elementwise."""
    return (1.0 / (1.0 + np.exp(-np.asarray(values, dtype=np.float64)))).astype(np.float32)


def batched(run: Callable[[np.ndarray], np.ndarray], items: np.ndarray, batch_size: int) -> np.ndarray:
    """``run`` over ``items`` ``batch_size`` at a time, the outputs concatenated."""
    return (
        np.concatenate([run(items[i : i + batch_size]) for i in range(0, len(items), batch_size)])
        if len(items)
        else np.zeros((0,), np.float32)
    )


def torch_runtime(
    path: str | Path, kind: Literal["segmenter", "classifier"], precision: str = "fp32", device: str = "cpu"
) -> tuple[Runtime, Any]:
    """The eager model of a checkpoint of ``kind`` on ``device``, and the checkpoint's record
    (imported lazily: the ONNX path needs no torch)."""
    from srcrn.runtime.checkpoints import build_model, read_checkpoint

    stored = read_checkpoint(path, expect=kind)
    return TorchRuntime(build_model(stored), precision, device), stored


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere PyTorch
    emulates it, more slowly than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class TorchRuntime:
    """An ``nn.Module`` in eval mode on ``device`` under ``torch.inference_mode``; with
    ``precision`` bf16, under autocast to bfloat16 (outputs back in float32, on the CPU)."""

    def __init__(self, model: Any, precision: str = "fp32", device: str = "cpu"):
        """Put ``model`` on ``device`` in eval mode.

        Args:
            model: the ``nn.Module``.
            precision: ``fp32`` or ``bf16`` (autocast).
            device: a torch device, e.g. ``cpu``, ``cuda``, ``cuda:1``, ``mps``.

        Raises:
            ConfigError: an unknown precision, or a device this torch cannot use.
        """
        import torch

        from srcrn.errors import ConfigError

        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"--dtype: fp32 or bf16 (given {precision!r})")
        try:
            self.device = torch.device(device)
            model = model.to(self.device)
        except (RuntimeError, AssertionError) as error:  # e.g. "Torch not compiled with CUDA enabled"
            raise ConfigError(f"device {device!r}: cannot be used here ({error})") from None
        self.model, self.precision = model.eval(), precision

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """The network's raw output (float32, on the CPU) for a normalised float32 NCHW ``batch``."""
        import torch

        batch_on_device = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
            return self.model(batch_on_device).float().cpu().numpy()

    @property
    def has_features(self) -> bool:
        """Whether ``features`` answers: a stage-2 CNN (a segmenter's forward_features are its
        maps, not pooled features)."""
        return hasattr(self.model, "forward_features") and hasattr(self.model, "forward_head")

    def features(self, batch: np.ndarray) -> np.ndarray:
        """The network's pooled features, as its ONNX export's ``features`` output says them: the
        last layer's global average (a stage-2 CNN's first ``head_features`` columns of
        ``forward_features``; ``has_features``)."""
        import torch

        batch_on_device = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
            pooled = self.model.forward_features(batch_on_device)[:, : self.model.head_features]
            return pooled.float().cpu().numpy()


class OnnxRuntime:
    """One ONNX model of a bundle, on the CPU. Session options chosen by measurement
    (``benchmarks/ort_options.py``, BENCHMARKS.md): all graph optimisations, sequential
    execution, ONNX Runtime's default intra-op threads (one per core), and no spinning: idle
    ORT threads sleep instead of busy-waiting (int8 networks 95.7 against 75.5 images/s in one
    run, fp32 equal), which leaves the cores to the pipeline's own threads in between."""

    def __init__(self, path: str | Path):
        """An ONNX Runtime session (CPU) of the model at ``path``.

        Raises:
            ConfigError: the file is not a loadable ONNX model.
        """
        import onnxruntime

        from srcrn.errors import ConfigError
        from srcrn.runtime.checkpoints import FEATURES_OUTPUT

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own untyped errors for damaged files
            raise ConfigError(f"{path}: not a loadable ONNX model ({str(error).splitlines()[0][:160]})") from None
        self.input = self.session.get_inputs()[0].name
        self.outputs = [output.name for output in self.session.get_outputs()]
        # A stage-2 CNN exported with its pooled features as a second output (``features``).
        self.has_features = FEATURES_OUTPUT in self.outputs

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """The model's (first) output for a normalised float32 NCHW ``batch``."""
        return self.session.run(self.outputs[:1], {self.input: batch})[0]

    def features(self, batch: np.ndarray) -> np.ndarray:
        """The model's ``features`` output (``has_features``)."""
        return self.session.run(self.outputs[1:2], {self.input: batch})[0]
