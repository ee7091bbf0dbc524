"""``srcrn export onnx``: both stages for the torch-free engine, plus ``bundle.json``
(preprocessing, prediction settings, threshold, versions). The segmenter and every CNN become
ONNX models; a lesion-feature model's boosted trees become an ONNX ``TreeEnsemble`` (exact to
rounding, and a prediction then needs no scikit-learn: ``stage2.booster``); a stack is its
members' files plus its weights in ``bundle.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from srcrn.atomic import write_json
from srcrn.bundle.card import training_record
from srcrn.bundle.schema import BUNDLE_FILE, BUNDLE_FORMAT, BUNDLE_VERSION, file_sha256
from srcrn.runtime.checkpoints import export_onnx_file, read_checkpoint
from srcrn.shapes import as_image_size
from srcrn.stage2.registry import load_melanoma_model, write_into_bundle
from srcrn.stage2.spec import MelanomaModel


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
    part |= write_into_bundle(model, out, "classifier")  # each kind writes its own files
    for entry in [part, *part.get("members", [])]:
        if entry.get("file"):
            entry["sha256"] = file_sha256(out / entry["file"])
    return part


def export_onnx(segmenter: str | Path, classifier: str | Path, out: str | Path) -> Path:
    """Write ``segmenter.onnx`` (logits; dynamic batch), the stage-2 model's files and ``bundle.json``."""
    from srcrn import __version__
    from srcrn.data.normalization import IMAGENET_MEAN, IMAGENET_STD

    out = Path(out)
    seg = read_checkpoint(segmenter, expect="segmenter").settings
    model = load_melanoma_model(classifier)
    out.mkdir(parents=True, exist_ok=True)
    size = as_image_size(seg["image_size"])  # a side, or [height, width] as the checkpoint's JSON holds it
    export_onnx_file(segmenter, out / "segmenter.onnx", size, "logits")
    write_json(
        out / BUNDLE_FILE,
        {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "srcrn_version": __version__,
            "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "scale": 1 / 255},
            "segmenter": {
                "file": "segmenter.onnx",
                "image_size": size,
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
