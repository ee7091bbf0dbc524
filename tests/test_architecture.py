"""The package's shape holds: layers without cycles (import-linter contracts in pyproject.toml),
a torch-free base install, and library modules that log instead of printing."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "srcrn"
# The command line is the only place that writes to the terminal.
MAY_PRINT = {"cli.py"}


def lint(package_parent: Path | None = None) -> subprocess.CompletedProcess:
    """import-linter over the package (or over a copy of it under ``package_parent``), in its own
    process: it must not touch this process's modules or logging."""
    script = (
        "import sys\n"
        "if sys.argv[1]:\n"
        "    sys.path.insert(0, sys.argv[1])\n"
        "    sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__module__.lower()]\n"
        "from importlinter.cli import lint_imports\n"
        "sys.exit(lint_imports(config_filename=sys.argv[2], no_cache=True))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script, str(package_parent or ""), str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_import_contracts_hold():
    # Layers: cli > workflows > reporting > training > evaluation > inference > answers > bundle >
    # stage2 > runtime > data > models > core, no cycles between them nor inside any package; and
    # the modules of the ONNX path never import torch.
    finished = lint()
    assert finished.returncode == 0, finished.stdout[-3000:]
    assert "4 kept, 0 broken" in finished.stdout


def lint_with(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess:
    """import-linter over a copy of the package whose ``module`` (a path below srcrn/) gained ``line``."""
    copy = tmp_path / "src"
    shutil.copytree(
        PACKAGE, copy / "srcrn", ignore=shutil.ignore_patterns("images", "masks", "default_model", "__pycache__")
    )
    bad = copy / "srcrn" / module
    bad.write_text(bad.read_text() + f"\n{line}  # noqa\n")
    finished = lint(copy)
    assert finished.returncode == 1, finished.stdout[-2000:]
    return finished


def test_an_import_circle_inside_a_package_is_caught(tmp_path):
    """The no-circles contract is not vacuous: two answers modules importing each other break it."""
    finished = lint_with(tmp_path, "answers/readings.py", "from srcrn.answers import results")
    assert "No cycles are allowed in srcrn.answers" in finished.stdout


# The inference wing: where a kind of stage-2 model must never be named (the registry names them).
WING = ("inference", "answers", "bundle", "runtime", "serving", "evaluation", "workflows/quantize.py",
        "workflows/stacking.py", "workflows/model_choice.py")  # fmt: skip
KIND_NAME = re.compile(r"""(==|!=|\bin\b|Literal\[)[^\n#]*["'](cnn|features|stack)["']""")


def test_no_kind_switch_outside_the_registry():
    """Issue 31: export, bundle reading, quantize, eval, predict and serve go through
    ``stage2.registry`` for anything that differs by kind; none compares kind names itself."""
    offenders = []
    for place in WING:
        for path in sorted((PACKAGE / place).rglob("*.py")) if (PACKAGE / place).is_dir() else [PACKAGE / place]:
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if KIND_NAME.search(line):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not offenders, offenders
    assert KIND_NAME.search('if model.kind == "cnn":')  # the pattern finds what it is for


def test_the_inference_wing_stays_in_small_rooms_and_the_cli_thin():
    """Issue 31's "done when": no module of the rooms that replaced ``inference/`` over 350
    lines, and ``cli.py`` (parse, call, print) at most 450."""
    rooms = ("inference", "answers", "bundle", "runtime", "stage2")
    sizes = {path: len(path.read_text().splitlines()) for room in rooms for path in (PACKAGE / room).glob("*.py")}
    assert len(sizes) > 20  # the rooms are where this test looks
    assert not {str(p.relative_to(PACKAGE)): n for p, n in sizes.items() if n > 350}
    assert len((PACKAGE / "cli.py").read_text().splitlines()) <= 450


def test_a_layer_violation_is_caught(tmp_path):
    """The contract is not vacuous: a model importing from training breaks it."""
    finished = lint_with(tmp_path, "models/classifier.py", "from srcrn.training import runner")
    assert "srcrn.models.classifier -> srcrn.training.runner" in finished.stdout


def test_torch_is_not_a_base_requirement():
    requirements = importlib.metadata.requires("srcrn") or []
    base = [r for r in requirements if "extra ==" not in r]
    names = {re.split(r"[ <>=!~;\[]", r, maxsplit=1)[0].lower() for r in base}
    assert {"onnxruntime", "numpy", "pillow", "opencv-python-headless", "pydantic"} <= names
    assert {"scikit-learn", "scikit-image", "skops", "scipy"} <= names  # the shipped model's stage 2
    assert not names & {"torch", "torchvision", "lightning", "albumentations", "matplotlib"}, names
    train = [r for r in requirements if re.search(r"extra == .train.", r)]
    assert any(r.startswith("torch==") for r in train) and any(r.startswith("lightning") for r in train)


@pytest.mark.parametrize(
    "path",
    sorted(p for p in PACKAGE.rglob("*.py") if p.name not in MAY_PRINT),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_library_modules_log_and_never_print(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            function = node.func
            assert not (isinstance(function, ast.Name) and function.id == "print"), f"{path.name}:{node.lineno}"
            if isinstance(function, ast.Attribute) and function.attr == "print":
                owner = function.value
                # The console's own logging handler is the one place that draws a log record.
                allowed = path.name == "console.py"
                assert allowed or not (isinstance(owner, ast.Name) and owner.id == "console"), (
                    f"{path.name}:{node.lineno}"
                )


def test_warning_filters_are_restored_after_a_run():
    import warnings

    from srcrn.training.runner import quiet_lightning

    before = list(warnings.filters)
    with quiet_lightning():
        assert len(warnings.filters) > len(before)
    assert warnings.filters == before


def test_committed_results_hold_no_machine_paths():
    """Results in docs/ and the shipped model's card are read on other machines: paths in them are relative."""
    offenders = []
    shipped = ROOT / "src" / "srcrn" / "default_model" / "bundle.json"  # its card too: users read it anywhere
    for path in [*(ROOT / "docs").rglob("*"), shipped]:
        if path.is_file() and path.suffix in {".md", ".json", ".csv", ".yaml", ".html"}:
            text = path.read_text(errors="ignore")
            offenders += [f"{path.relative_to(ROOT)}: {m}" for m in re.findall(r"(?:/work|/root|/home|/tmp)/\S+", text)]
    assert not offenders, offenders[:5]
