"""A bundle loaded: its segmenter on ONNX Runtime and its stage-2 model read back by its kind
(``stage2.registry``), both run as ``bundle.json`` says. torch-free."""

from __future__ import annotations

from pathlib import Path

from srcrn.bundle.schema import BundleManifest, read_manifest
from srcrn.runtime.engines import OnnxRuntime
from srcrn.runtime.segmenter import Segmenter, SegmenterSpec
from srcrn.stage2.registry import read_from_bundle
from srcrn.stage2.spec import Calibration, ClassifierSpec, MelanomaModel


def load_bundle(bundle: str | Path) -> tuple[Segmenter, MelanomaModel, BundleManifest]:
    """The segmenter, the stage-2 model and the manifest of an ``srcrn export onnx`` bundle:
    networks and feature models' trees run with ONNX Runtime (a v4 feature model with scikit-learn)."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    seg, cls = manifest.segmenter, manifest.classifier
    segmenter = Segmenter(
        OnnxRuntime(bundle / seg.file), SegmenterSpec(seg.image_size, seg.tta, seg.keep_largest), str(bundle / seg.file)
    )
    spec = ClassifierSpec(
        image_size=cls.image_size,
        input=cls.input,
        margin=cls.margin,
        threshold=cls.threshold,
        target_sensitivity=cls.target_sensitivity,
        tta=cls.tta,
        calibration=Calibration.from_dict(cls.calibration.model_dump() if cls.calibration else None),
    )
    return segmenter, read_from_bundle(bundle, cls, spec), manifest


def names_a_bundle(model: str | Path) -> bool:
    """Whether ``model`` names a bundle (a folder with bundle.json, or ``default``: the shipped one)
    rather than a checkpoint: what ``segment eval`` and ``classify eval`` take either of."""
    from srcrn.bundle.default import DEFAULT_NAME

    path = Path(model)
    return str(model) == DEFAULT_NAME or (path.is_dir() and (path / "bundle.json").is_file())


def bundle_models(model: str | Path) -> tuple[Segmenter, MelanomaModel, BundleManifest]:
    """``load_bundle`` of a bundle folder or of ``default`` (the shipped model)."""
    from srcrn.bundle.default import resolve_bundle

    return load_bundle(resolve_bundle(model))
