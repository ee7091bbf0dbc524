"""Reading and writing what a checkpoint of ``segment train`` / ``classify train`` holds,
without Lightning: the kind of model, the settings it was trained with, the weights, and
what evaluation stored later (the operating threshold).

A checkpoint carries a ``srcrn`` entry (kind, srcrn version, settings), written by the
training tasks; checkpoints from before that entry are identified by their settings.
Loading uses ``torch.load(weights_only=True)``: a checkpoint is data, never code to run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from srcrn.atomic import atomic_path
from srcrn.errors import ConfigError
from srcrn.settings import ClassifyTrainSettings, SegmentTrainSettings
from srcrn.shapes import ImageSize, height_width

Kind = Literal["segmenter", "classifier"]
SCHEMAS: dict[str, type[SegmentTrainSettings] | type[ClassifyTrainSettings]] = {
    "segmenter": SegmentTrainSettings,
    "classifier": ClassifyTrainSettings,
}
WHAT_WRITES = {"segmenter": "srcrn segment train", "classifier": "srcrn classify train"}
MODEL_PREFIX = "model."  # where the training tasks keep the network in their state dict


@dataclass
class StoredModel:
    """A checkpoint as the prediction path reads it: its kind, the settings it was trained with, the weights, and the extras stored since (threshold, calibration, target sensitivity)."""

    path: Path
    kind: Kind
    settings: dict[str, Any]
    weights: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)  # threshold, target_sensitivity

    @property
    def threshold(self) -> float:
        """The stored decision threshold (0.5 when none was chosen)."""
        return float(self.extras.get("threshold", 0.5))


def _legacy_kind(hparams: dict[str, Any]) -> Kind | None:
    if "stride" in hparams or "arch" in hparams:
        return "segmenter"
    if "lr_decay" in hparams or "input" in hparams:
        return "classifier"
    return None


def _load(path: Path) -> dict[str, Any]:
    import torch

    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file; all mean the same here
        raise ConfigError(f"{path}: not a readable checkpoint ({type(error).__name__})") from None


def read_checkpoint(path: str | Path, expect: Kind | None = None) -> StoredModel:
    """The model stored at ``path``; one error line when it is missing, unreadable, or not the
    ``expect``-ed kind."""
    path = Path(path)
    return _parse(path, _load(path), expect)


def _parse(path: Path, state: Any, expect: Kind | None) -> StoredModel:
    if not isinstance(state, dict) or "state_dict" not in state:
        raise ConfigError(f"{path}: not a checkpoint of srcrn (no state_dict)")
    info = state.get("srcrn")
    if isinstance(info, dict):
        kind, settings, extras = info.get("kind"), dict(info.get("settings", {})), dict(info.get("extras", {}))
    else:  # written before checkpoints said what they are
        hparams = dict(state.get("hyper_parameters", {}))
        kind, settings = _legacy_kind(hparams), hparams
        extras = {k: hparams[k] for k in ("threshold", "threshold_target_sensitivity") if k in hparams}
        if "threshold_target_sensitivity" in extras:
            extras["target_sensitivity"] = extras.pop("threshold_target_sensitivity")
    if kind not in SCHEMAS:
        raise ConfigError(f"{path}: not a checkpoint of srcrn (it does not say what model it holds)")
    if expect is not None and kind != expect:
        raise ConfigError(
            f"{path}: holds a {kind} (of '{WHAT_WRITES[kind]}'), but a {expect} is needed here "
            f"(a checkpoint of '{WHAT_WRITES[expect]}')"
        )
    schema = SCHEMAS[kind]
    known = {k: v for k, v in settings.items() if k in schema.model_fields}
    weights = {k[len(MODEL_PREFIX) :]: v for k, v in state["state_dict"].items() if k.startswith(MODEL_PREFIX)}
    return StoredModel(path, kind, schema.model_validate(known).to_dict(), weights, extras)


def build_model(stored: StoredModel):
    """The torch module of ``stored``, with its weights, in eval mode."""
    from srcrn.models import MelanomaClassifier, build_segmenter

    s = stored.settings
    if stored.kind == "segmenter":
        model = build_segmenter(
            s["arch"],
            stride=s["stride"],
            score_channels=s["score_channels"],
            encoder_weights=None,
            encoder=s["encoder"],
        )
    else:
        model = MelanomaClassifier(
            weights=None,
            finetune=s["finetune"],
            dropout=s["dropout"],
            encoder=s["encoder"],
            backbone_size=s.get("backbone_size"),
            pooling=s["pooling"],  # read_checkpoint validated the settings: an older checkpoint gets "mean"
        )
    try:
        model.load_state_dict(stored.weights)
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        raise ConfigError(f"{stored.path}: its weights do not fit its settings ({first})") from None
    return model.eval()


def checkpoint_entry(kind: Kind, settings: dict[str, Any], extras: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``srcrn`` entry the training tasks add to every checkpoint they save."""
    from srcrn import __version__

    return {"kind": kind, "version": __version__, "settings": dict(settings), "extras": dict(extras or {})}


def store_extras(path: str | Path, **extras: Any) -> None:
    """Add ``extras`` (e.g. the operating threshold) to a checkpoint, atomically."""
    import torch

    path = Path(path)
    state = _load(path)  # read once: the entry is rebuilt from it and the rest is written back as is
    stored = _parse(path, state, None)
    state["srcrn"] = checkpoint_entry(stored.kind, stored.settings, stored.extras | extras)
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


FEATURES_OUTPUT = "features"  # a classifier's second ONNX output: its pooled backbone features


def export_onnx_file(
    checkpoint: str | Path, path: Path, size: ImageSize, output: str, *, features: bool = False
) -> None:
    """The network of ``checkpoint`` as an ONNX file at ``path`` (written atomically): input
    ``image`` [batch, 3, height, width] of ``size`` (a side, or height x width), output ``output``, dynamic batch; with ``features`` (a
    classifier), also its pooled backbone features as ``features`` [batch, F] (what the input
    gate measures an image's likeness to the training images on)."""
    import warnings

    import torch

    stored = read_checkpoint(checkpoint)
    model = build_model(stored)
    outputs = [output]
    if features:
        model, outputs = with_features(model), [output, FEATURES_OUTPUT]
    with atomic_path(path) as temporary, warnings.catch_warnings():
        # The input-size check in SRCRN.forward_features is Python control flow the tracer
        # cannot record; the exported graph takes any size the check would let through.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # The TorchScript-based exporter: exact for these plain convolutional graphs.
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, *height_width(size)),),
            str(temporary),
            input_names=["image"],
            output_names=outputs,
            dynamic_axes={"image": {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
            dynamo=False,
        )


def with_features(model: Any) -> Any:
    """``model`` answering its logits and, beside them, its pooled features (one graph; the
    class is built here because this module imports torch only when it runs)."""
    import torch

    class WithFeatures(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> tuple[Any, Any]:
            pooled = self.inner.forward_features(x)
            # The gate's features: the last layer's global average (the first columns; a
            # levels-pooled backbone's mid-level summaries follow them and stay the head's).
            return self.inner.forward_head(pooled), pooled[:, : self.inner.head_features]

    return WithFeatures(model).eval()
