"""``srcrn export onnx``: both stages as ONNX models plus ``bundle.json`` (preprocessing,
prediction settings, threshold, versions), for the torch-free ONNX Runtime engine."""

from __future__ import annotations

import warnings
from pathlib import Path

from srcrn.atomic import atomic_path, write_json
from srcrn.inference.bundle import BUNDLE_FILE, BUNDLE_FORMAT, BUNDLE_VERSION, file_sha256
from srcrn.inference.card import training_record
from srcrn.inference.checkpoints import build_model, read_checkpoint


def export_onnx(segmenter: str | Path, classifier: str | Path, out: str | Path) -> Path:
    """Write ``segmenter.onnx``, ``classifier.onnx`` (logits; dynamic batch) and ``bundle.json``."""
    import torch

    from srcrn import __version__
    from srcrn.data.normalization import IMAGENET_MEAN, IMAGENET_STD

    out = Path(out)
    stored_segmenter = read_checkpoint(segmenter, expect="segmenter")
    stored_classifier = read_checkpoint(classifier, expect="classifier")
    out.mkdir(parents=True, exist_ok=True)
    seg, cls = stored_segmenter.settings, stored_classifier.settings
    for name, stored, size, output in (
        ("segmenter", stored_segmenter, seg["image_size"], "logits"),
        ("classifier", stored_classifier, cls["image_size"], "logit"),
    ):
        with atomic_path(out / f"{name}.onnx") as temporary, warnings.catch_warnings():
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
                "output": "logits",
                "tta": seg["tta"],
                "keep_largest": seg["keep_largest"],
                "sha256": file_sha256(out / "segmenter.onnx"),
                "source": Path(segmenter).name,
                "training": training_record(segmenter),
            },
            "classifier": {
                "file": "classifier.onnx",
                "image_size": cls["image_size"],
                "output": "logit",
                "input": cls["input"],
                "margin": cls["margin"],
                "threshold": stored_classifier.threshold,
                "target_sensitivity": stored_classifier.extras.get("target_sensitivity"),
                "tta": cls.get("tta", False),
                "calibration": stored_classifier.extras.get("calibration"),
                "sha256": file_sha256(out / "classifier.onnx"),
                "source": Path(classifier).name,
                "training": training_record(classifier),
            },
        },
    )
    return out
