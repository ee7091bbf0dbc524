"""Shared fixtures: the embedded sample, writable copies of it, and the optional dev data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from srcrn.sample import sample_dir

DEV_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "isic-dev"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Tests never download: ``--weights imagenet`` without a cached file is a clear error."""
    monkeypatch.setenv("SRCRN_OFFLINE", "1")


@pytest.fixture(scope="session")
def sample() -> Path:
    return sample_dir()


@pytest.fixture(scope="session")
def tiny_segmenter(tmp_path_factory, sample) -> str:
    """A briefly trained SRCRN on the sample (64 px, two steps): masks and srcrn: weights."""
    from helpers import small_segmentation_config
    from srcrn.training.segmentation import train_segmentation

    out = tmp_path_factory.mktemp("tiny-segmenter")
    return train_segmentation(small_segmentation_config(out), sample, out / "run", progress=False)["last_checkpoint"]


@pytest.fixture
def isic_copy(tmp_path, sample) -> Path:
    """A writable copy of the embedded sample (simple layout), to break on purpose."""
    target = tmp_path / "data"
    shutil.copytree(sample, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


@pytest.fixture
def dev_data() -> Path:
    if not (DEV_DATA / "labels.csv").is_file():
        pytest.skip(f"dev data not present at {DEV_DATA} (a fresh clone has no ../shared)")
    return DEV_DATA


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory, sample, tiny_segmenter) -> str:
    """A classifier trained one epoch on the sample's SRCRN crops (64 px, random init)."""
    from helpers import small_classification_config
    from srcrn.training.classification import train_classification

    out = tmp_path_factory.mktemp("tiny-classifier")
    config = small_classification_config(out, weights="none", segmenter=tiny_segmenter, input="crop")
    return train_classification(config, sample, out / "run", progress=False)["model_checkpoint"]


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_segmenter, tiny_classifier) -> Path:
    """``srcrn export onnx`` of the tiny models (read-only for tests: copy it to damage it)."""
    from srcrn.bundle.export import export_onnx

    return export_onnx(tiny_segmenter, tiny_classifier, tmp_path_factory.mktemp("tiny-bundle") / "bundle")
