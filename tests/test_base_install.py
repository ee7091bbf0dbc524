"""``pip install srcrn`` without extras, in a virtual environment of its own: the default model
predicts, and every command that needs an extra names it instead of ending in a traceback.

The environment is built offline: a fresh venv whose site-packages holds the srcrn wheel built
from this tree and exactly the distributions its base requirements resolve to (found through
``importlib.metadata`` and linked from the test environment, where pip installed them from the
same wheels). torch, FastAPI and the other extras' packages are simply not there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[1]
SAMPLE = ROOT / "src" / "srcrn" / "sample"


def _base_closure(requirements: list[str]) -> set[str]:
    """The distributions that ``requirements`` (no extras asked) pull in, recursively."""
    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # an extra's requirement, or another platform's
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        todo += metadata.distribution(name).requires or []
    return seen


def _link_distribution(name: str, site: Path) -> None:
    """Link the top-level entries of an installed distribution into ``site``."""
    distribution = metadata.distribution(name)
    top = {Path(str(f)).parts[0] for f in distribution.files or [] if not str(f).startswith("..")}
    origin = Path(str(distribution.locate_file("")))
    for entry in top:
        if (origin / entry).exists() and not (site / entry).exists():
            (site / entry).symlink_to(origin / entry)


@pytest.fixture(scope="module")
def base_python(tmp_path_factory) -> Path:
    """The interpreter of a fresh venv holding srcrn's base install only."""
    root = tmp_path_factory.mktemp("base-install")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(root.glob("srcrn-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    site = Path(purelib)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    requirements = metadata.Distribution.at(next(site.glob("srcrn-*.dist-info"))).requires or []
    for name in sorted(_base_closure(requirements)):
        _link_distribution(name, site)
    assert sysconfig.get_paths()["purelib"] != purelib
    return python


def _srcrn(python: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [python, "-m", "srcrn", *argv], capture_output=True, text=True, timeout=300, cwd=cwd, env=environment
    )


@pytest.mark.slow
def test_the_base_install_has_no_extras_and_predicts_with_the_default_model(base_python, tmp_path):
    probe = subprocess.run(
        [base_python, "-c", "import importlib.util as u; print([m for m in ('torch', 'fastapi', 'lightning', "
                            "'uvicorn', 'matplotlib') if u.find_spec(m)])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() == "[]"  # the extras' packages are not importable there
    image = next((SAMPLE / "images").glob("*.jpg"))
    finished = _srcrn(base_python, "predict", str(image), "--out", str(tmp_path / "out"), "--no-progress", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert (tmp_path / "out" / "predictions.csv").is_file()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["serve"], "srcrn serve: needs the 'serve' extra"),
        (["segment", "train", "--data", "SAMPLE", "--out", "OUT"], "srcrn segment train: needs the 'train' extra"),
        (["classify", "train", "--data", "SAMPLE", "--out", "OUT"], "srcrn classify train: needs the 'train' extra"),
        (["demo", "--train", "--out", "OUT"], "srcrn demo: needs the 'train' extra"),
        (
            ["predict", "IMAGE", "--segmenter", "SEG", "--classifier", "CLS", "--out", "OUT"],
            "checkpoint needs PyTorch: pip install 'srcrn[train]'",
        ),
        (
            ["export", "onnx", "--segmenter", "SEG", "--classifier", "CLS", "--out", "OUT"],
            "srcrn export onnx: needs the 'train' extra",
        ),
    ],
)
def test_a_command_needing_an_extra_names_it(base_python, tmp_path, argv, extra, tiny_segmenter, tiny_classifier):
    image = next((SAMPLE / "images").glob("*.jpg"))
    values = {"SAMPLE": str(SAMPLE), "OUT": str(tmp_path / "out"), "IMAGE": str(image)}
    values |= {"SEG": tiny_segmenter, "CLS": tiny_classifier}  # real checkpoints: torch needed to read them
    finished = _srcrn(base_python, *[values.get(a, a) for a in argv], cwd=tmp_path)
    assert finished.returncode == 2, (finished.stdout[-1000:], finished.stderr[-2000:])
    assert extra in finished.stderr and "pip install 'srcrn[" in finished.stderr, finished.stderr
    assert "Traceback" not in finished.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was written
