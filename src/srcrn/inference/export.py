"""``srcrn export onnx``: both stages for the torch-free engine, plus ``bundle.json``
(preprocessing, prediction settings, threshold, versions). The segmenter and every CNN become
ONNX models; a lesion-feature model is kept as its skops file (scikit-learn runs it: the
booster's trees are cheap beside the networks, and skops keeps it exact); a stack is its
members' files plus its weights in ``bundle.json``."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

from srcrn.atomic import atomic_path, write_json
from srcrn.inference.bundle import BUNDLE_FILE, BUNDLE_FORMAT, BUNDLE_VERSION, file_sha256
from srcrn.inference.card import training_record
from srcrn.inference.checkpoints import build_model, read_checkpoint
from srcrn.inference.melanoma import MelanomaModel, StackModel, load_melanoma_model


def _onnx(checkpoint: str | Path, path: Path, size: int, output: str) -> None:
    import torch

    stored = read_checkpoint(checkpoint)
    with atomic_path(path) as temporary, warnings.catch_warnings():
        # The input-size check in SRCRN.forward_features is Python control flow the tracer
        # cannot record; the exported graph takes any size the check would let through.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # The TorchScript-based exporter: exact for these plain convolutional graphs.
        torch.onnx.export(
            build_model(stored),
            (torch.zeros(1, 3, size, size),),
            str(temporary),
            input_names=["image"],
            output_names=[output],
            dynamic_axes={"image": {0: "batch"}, output: {0: "batch"}},
            dynamo=False,
        )


def _member_file(model: MelanomaModel, out: Path, stem: str) -> str:
    """Write one CNN (as ONNX) or feature model (its skops file) into the bundle; its name."""
    if model.kind == "cnn":
        name = f"{stem}.onnx"
        _onnx(model.source, out / name, model.image_size, "logit")
    else:
        name = f"{stem}.skops"
        with atomic_path(out / name) as temporary:
            shutil.copyfile(model.source, temporary)
    return name


def classifier_part(model: MelanomaModel, out: Path, source: str | Path) -> dict[str, Any]:
    """The bundle's ``classifier`` entry for a stage-2 model of any kind, its files written."""
    spec = model.spec
    part: dict[str, Any] = {
        "kind": model.kind,
        "image_size": spec.image_size,
        "output": "logit",
        "input": spec.input,
        "margin": spec.margin,
        "threshold": spec.threshold,
        "target_sensitivity": spec.target_sensitivity,
        "tta": spec.tta,
        "calibration": spec.calibration.to_dict() if spec.calibration.method != "none" else None,
        "clinical": list(model.clinical_fields),
        "source": Path(source).name,
        "training": training_record(source),
    }
    if isinstance(model, StackModel):
        members = []
        for index, member in enumerate(model.members):
            name = _member_file(member, out, f"classifier-member-{index}")
            members.append(
                {
                    "kind": member.kind,
                    "file": name,
                    "sha256": file_sha256(out / name),
                    "tta": member.spec.tta,
                    "source": Path(member.source).name,
                }
            )
        part |= {"file": "", "members": members, "weights": model.weights, "intercept": model.intercept}
    else:
        name = _member_file(model, out, "classifier")
        part |= {"file": name, "sha256": file_sha256(out / name)}
    return part


def export_onnx(segmenter: str | Path, classifier: str | Path, out: str | Path) -> Path:
    """Write ``segmenter.onnx`` (logits; dynamic batch), the stage-2 model's files and ``bundle.json``."""
    from srcrn import __version__
    from srcrn.data.normalization import IMAGENET_MEAN, IMAGENET_STD

    out = Path(out)
    seg = read_checkpoint(segmenter, expect="segmenter").settings
    model = load_melanoma_model(classifier)
    out.mkdir(parents=True, exist_ok=True)
    _onnx(segmenter, out / "segmenter.onnx", seg["image_size"], "logits")
    write_json(
        out / BUNDLE_FILE,
        {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "srcrn_version": __version__,
            "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "scale": 1 / 255},
            "segmenter": {
                "file": "segmenter.onnx",
                "image_size": seg["image_size"],
                # What the network is (its input convention is inside it: see srcrn.models.encoders).
                "arch": seg["arch"],
                "encoder": seg["encoder"],
                "output": "logits",
                "tta": seg["tta"],
                "keep_largest": seg["keep_largest"],
                "sha256": file_sha256(out / "segmenter.onnx"),
                "source": Path(segmenter).name,
                "training": training_record(segmenter),
            },
            "classifier": classifier_part(model, out, classifier),
        },
    )
    return out
