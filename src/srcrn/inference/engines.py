"""Where the two models run: eager PyTorch (checkpoints) or ONNX Runtime (an exported
bundle, no torch needed). Both take uint8 NHWC images and return probabilities as numpy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from srcrn.errors import ConfigError

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = "srcrn-bundle"
BUNDLE_VERSION = 1


class TorchEngine:
    def __init__(self, segmenter_task, classifier_task):
        self.segmenter, self.classifier = segmenter_task.model.eval(), classifier_task.model.eval()
        settings = classifier_task.hparams
        self.settings = {
            "segment_size": int(segmenter_task.hparams.image_size),
            "classify_size": int(settings.image_size),
            "input": settings.input,
            "margin": float(settings.margin),
            "threshold": float(settings.threshold),
        }

    @classmethod
    def from_checkpoints(cls, segmenter: str | Path, classifier: str | Path) -> "TorchEngine":
        from srcrn.training.classification import load_classifier
        from srcrn.training.segmentation import load_segmenter

        return cls(load_segmenter(segmenter), load_classifier(classifier))

    def segment(self, images: np.ndarray) -> np.ndarray:
        import torch

        from srcrn.data.transforms import normalize_batch

        with torch.inference_mode():
            return torch.sigmoid(self.segmenter(normalize_batch(images)))[:, 0].numpy()

    def classify(self, inputs: np.ndarray) -> np.ndarray:
        import torch

        from srcrn.data.transforms import normalize_batch

        with torch.inference_mode():
            return torch.sigmoid(self.classifier(normalize_batch(inputs))).numpy()


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-values))


class OnnxEngine:
    """The bundle written by ``srcrn export onnx``, run with onnxruntime."""

    def __init__(self, bundle: str | Path):
        import onnxruntime

        bundle = Path(bundle)
        manifest_path = bundle / BUNDLE_FILE
        if not manifest_path.is_file():
            raise ConfigError(f"{bundle}: not a model bundle (no {BUNDLE_FILE}); write one with 'srcrn export onnx'")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != BUNDLE_FORMAT or manifest.get("version", 0) > BUNDLE_VERSION:
            raise ConfigError(f"{manifest_path}: bundle format {manifest.get('format')} "
                              f"v{manifest.get('version')} is not one this srcrn reads (v{BUNDLE_VERSION})")
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        self.segmenter = onnxruntime.InferenceSession(str(bundle / manifest["segmenter"]["file"]), options,
                                                      providers=providers)
        self.classifier = onnxruntime.InferenceSession(str(bundle / manifest["classifier"]["file"]), options,
                                                       providers=providers)
        self.settings = {
            "segment_size": manifest["segmenter"]["image_size"],
            "classify_size": manifest["classifier"]["image_size"],
            "input": manifest["classifier"]["input"],
            "margin": manifest["classifier"]["margin"],
            "threshold": manifest["classifier"]["threshold"],
        }

    def segment(self, images: np.ndarray) -> np.ndarray:
        from srcrn.data.normalization import normalize_numpy

        return _sigmoid(self.segmenter.run(None, {"image": normalize_numpy(images)})[0])[:, 0]

    def classify(self, inputs: np.ndarray) -> np.ndarray:
        from srcrn.data.normalization import normalize_numpy

        return _sigmoid(self.classifier.run(None, {"image": normalize_numpy(inputs)})[0])


def export_onnx(segmenter: str | Path, classifier: str | Path, out: str | Path) -> Path:
    """Write ``segmenter.onnx``, ``classifier.onnx`` (logits; dynamic batch) and
    ``bundle.json``: preprocessing settings, the threshold and a format version."""
    import torch

    from srcrn import __version__
    from srcrn.atomic import atomic_path, write_json
    from srcrn.data.normalization import IMAGENET_MEAN, IMAGENET_STD

    import warnings

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # The input-size check in SRCRN.forward_features is Python control flow the tracer cannot
    # record; the exported graph takes any size the check would let through.
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    engine = TorchEngine.from_checkpoints(segmenter, classifier)
    settings = engine.settings
    for name, model, size, output in (("segmenter", engine.segmenter, settings["segment_size"], "logits"),
                                      ("classifier", engine.classifier, settings["classify_size"], "logit")):
        with atomic_path(out / f"{name}.onnx") as temporary:
            # The TorchScript-based exporter: exact for these plain convolutional graphs.
            torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(temporary), input_names=["image"],
                              output_names=[output], dynamic_axes={"image": {0: "batch"}, output: {0: "batch"}},
                              dynamo=False)
    write_json(out / BUNDLE_FILE, {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "srcrn_version": __version__,
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "scale": 1 / 255},
        "segmenter": {"file": "segmenter.onnx", "image_size": settings["segment_size"], "output": "logits",
                      "source": str(Path(segmenter).resolve())},
        "classifier": {"file": "classifier.onnx", "image_size": settings["classify_size"], "output": "logit",
                       "input": settings["input"], "margin": settings["margin"], "threshold": settings["threshold"],
                       "source": str(Path(classifier).resolve())},
    })
    return out
