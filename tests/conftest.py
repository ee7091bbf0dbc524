"""Shared fixtures: the embedded sample, writable copies of it, and the optional dev data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srcrn.sample import sample_dir

DEV_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "isic-dev"


@pytest.fixture(scope="session")
def sample() -> Path:
    return sample_dir()


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


def write_image(path: Path, size=(64, 48), seed=0, mode="RGB") -> Path:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).convert(mode).save(path)
    return path


def run_cli(*args: str) -> None:
    """``srcrn ARGS`` in-process; it must exit successfully."""
    from srcrn.cli import main

    with pytest.raises(SystemExit) as done:
        main(list(args))
    assert done.value.code in (0, None), done.value.code


def small_segmentation_config(tmp_path: Path, **changes):
    """Stage-1 settings for tests: 64 px, batch 4, one epoch of two steps, a private cache."""
    from srcrn.training.config import SegmentationConfig, load_config

    settings = dict(image_size=64, batch_size=4, epochs=1, steps_per_epoch=2, eval_batch_size=8,
                    cache=str(tmp_path / "cache"))
    settings.update(changes)
    return load_config(SegmentationConfig, **settings)
