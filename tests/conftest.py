"""Shared fixtures: the embedded sample, writable copies of it, and the optional dev data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
