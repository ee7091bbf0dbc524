"""Which pipeline answers: the one loader of ``predict``, ``serve`` and ``compare`` (the Python
API's ``Pipeline.from_bundle`` / ``from_checkpoints`` / ``default`` are what it calls)."""

from __future__ import annotations

import logging
from pathlib import Path

from srcrn.bundle.default import DEFAULT_NAME
from srcrn.commands import ModelSettings
from srcrn.errors import ConfigError
from srcrn.inference.pipeline import WORKERS, Pipeline

log = logging.getLogger(__name__)


def chosen_engine(choice: ModelSettings, engine: str = "torch") -> str:
    """The engine the model flags ``choice`` run on, checked before anything loads.

    Args:
        choice: the model flags.
        engine: ``torch`` or ``onnx`` as ``predict --engine`` says; ``auto`` (serve, compare):
            torch for checkpoints, else ONNX Runtime.

    Returns:
        ``torch`` (checkpoints) or ``onnx`` (a bundle, or the shipped model when none is named).

    Raises:
        ConfigError: flags that name no model, or two.
    """
    model, segmenter, classifier = choice.model, choice.segmenter, choice.classifier
    if model is not None and (segmenter is not None or classifier is not None):
        raise ConfigError("--model: give a bundle, or --segmenter and --classifier checkpoints, not both")
    if model is None and (segmenter is None) != (classifier is None) and engine == "auto":
        raise ConfigError("--model: needs a bundle folder (or --segmenter CKPT and --classifier CKPT)")
    if model is not None or (segmenter is None and classifier is None):
        return "onnx"  # a bundle (or the shipped one) is run by ONNX Runtime whatever --engine says
    if engine == "onnx":
        raise ConfigError("--engine onnx: needs --model DIR (a bundle written by 'srcrn export onnx')")
    if segmenter is None or classifier is None:
        raise ConfigError("--engine torch: needs --segmenter CKPT and --classifier CKPT")
    return "torch"


def load_pipeline(choice: ModelSettings, engine: str = "torch", *, workers: int | None = None) -> Pipeline:
    """The pipeline ``choice`` names: checkpoints (engine torch), a bundle (run by ONNX Runtime
    whatever ``engine`` says), or with no model named at all the one shipped with srcrn.

    Args:
        choice: the model flags (``--model``, ``--segmenter``, ``--classifier``, ``--threshold``,
            ``--explain``, ``--dtype``).
        engine: ``torch`` or ``onnx``, as ``predict --engine`` says; ``auto`` (serve, compare):
            torch for checkpoints, else ONNX Runtime.
        workers: threads beside the networks (default ``WORKERS``).

    Returns:
        The loaded pipeline.

    Raises:
        ConfigError: a combination of flags that names no model, or bf16 with a bundle.
    """
    workers = WORKERS if workers is None else workers
    engine = chosen_engine(choice, engine)
    model, segmenter, classifier = choice.model or Path(DEFAULT_NAME), choice.segmenter, choice.classifier
    if engine == "torch":
        assert segmenter is not None and classifier is not None  # chosen_engine checked it
        if choice.dtype == "bf16":
            from srcrn.runtime.engines import cpu_has_bf16

            if not cpu_has_bf16():
                log.warning("--dtype bf16: this CPU has no BF16 instructions; bf16 is emulated, slower than fp32")
        return Pipeline.from_checkpoints(
            segmenter,
            classifier,
            choice.threshold,
            explain=choice.explain,
            precision=choice.dtype,
            workers=workers,
            device=choice.device,
        )
    if choice.dtype != "fp32":
        raise ConfigError("--dtype: for --engine torch; an ONNX bundle has its own (export onnx --quantize)")
    if choice.device != "cpu":
        raise ConfigError("--device: for --engine torch; ONNX Runtime runs a bundle on the CPU")
    return Pipeline.from_bundle(model, choice.threshold, explain=choice.explain, workers=workers)
