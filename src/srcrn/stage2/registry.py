"""The one registry of stage-2 kinds (as timm's ``create_model`` or smp's encoder registry): every
melanoma model (the CNN, the lesion-feature model, their stack) is found, loaded from its file,
written into a bundle and read back from one through its ``Kind`` here. Callers (eval, cv,
ensemble, predict, serve, the API, export, quantize) hold no switch on kinds of their own.

A model's kind is recognised by what a file holds, not by its name: a PyTorch checkpoint is a
zip holding ``data.pkl``, a skops file one holding ``schema.json``, a stack a folder with
``stack.json``. torch-free: the CNN's loader imports torch only when a checkpoint is loaded.
"""

from __future__ import annotations

import importlib.util
import shutil
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from srcrn.atomic import atomic_path, read_json, write_json
from srcrn.errors import ConfigError
from srcrn.stage2.spec import Calibration, ClassifierSpec, MelanomaModel
from srcrn.stage2.stack import STACK_FILE, STACK_FORMAT, StackModel

DEFAULT_KIND = "cnn"  # what a bundle.json of versions 1-3 (without a kind) holds


@dataclass(frozen=True)
class Kind:
    """One kind of stage-2 model: how its files are recognised and loaded, and how it is written
    into a bundle folder and read back from one (``entry``: its part of ``bundle.json``)."""

    name: str
    recognises: Callable[[Path], bool]
    load: Callable[[Path, str, str], MelanomaModel]  # (path, precision, device)
    description: str
    write_into: Callable[[MelanomaModel, Path, str], dict[str, Any]]  # (model, bundle folder, stem)
    read_from: Callable[[Path, Any, ClassifierSpec], MelanomaModel]  # (bundle folder, entry, spec)
    suffix: str = ""  # of its model file when a stack copies it in
    runs_onnx: bool = False  # its bundle file is an ONNX network (int8 quantization applies)


def _zip_names(path: Path) -> list[str]:
    if not path.is_file() or not zipfile.is_zipfile(path):
        return []
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return []


def _is_checkpoint(path: Path) -> bool:
    return any(name.endswith("/data.pkl") or name == "data.pkl" for name in _zip_names(path))


def _is_skops(path: Path) -> bool:
    return "schema.json" in _zip_names(path)


def _is_stack(path: Path) -> bool:
    return (path / STACK_FILE).is_file() if path.is_dir() else path.name == STACK_FILE and path.is_file()


# ---------------------------------------------------------------- cnn


def _load_cnn(path: Path, precision: str, device: str) -> MelanomaModel:
    if importlib.util.find_spec("torch") is None:
        raise ConfigError(
            f"{path}: a CNN checkpoint needs PyTorch: pip install 'srcrn[train]' (or export it to a bundle "
            "with 'srcrn export onnx' and predict with --engine onnx)"
        )
    from srcrn.stage2.cnn import CnnModel

    return CnnModel.from_checkpoint(path, precision, device)


def _write_cnn(model: MelanomaModel, out: Path, stem: str) -> dict[str, Any]:
    from srcrn.stage2.cnn import CnnModel

    assert isinstance(model, CnnModel)
    return {"file": model.write_into(out, stem)}


def _read_cnn(folder: Path, entry: Any, spec: ClassifierSpec) -> MelanomaModel:
    from srcrn.stage2.cnn import CnnModel

    return CnnModel.from_onnx(folder / entry.file, spec)


# ---------------------------------------------------------------- features


def _feature_model_class(where: Path) -> Any:
    try:
        from srcrn.stage2.feature_model import FeatureModel
    except ModuleNotFoundError as error:
        raise ConfigError(
            f"{where}: a lesion-feature model needs the 'features' extra: pip install 'srcrn[features]' "
            f"({error.name} is missing)"
        ) from None
    return FeatureModel


def _load_features(path: Path, precision: str, device: str) -> MelanomaModel:
    model: MelanomaModel = _feature_model_class(path).load(path)
    return model


def _write_features(model: MelanomaModel, out: Path, stem: str) -> dict[str, Any]:
    # The booster's trees as ONNX (stage2.booster): exact, and run without scikit-learn;
    # bundle.json carries the threshold and calibration.
    name = f"{stem}.onnx"
    _feature_model_class(out).write_onnx(model, out / name)
    return {"file": name}


def _read_features(folder: Path, entry: Any, spec: ClassifierSpec) -> MelanomaModel:
    path = folder / entry.file
    feature_model = _feature_model_class(path)
    # A v4 bundle holds the skops file itself (scikit-learn runs it), recognised by its content.
    model = feature_model.load(path) if _is_skops(path) else feature_model.from_onnx(path)
    model.extras = {"threshold": spec.threshold, "target_sensitivity": spec.target_sensitivity,
                    "calibration": spec.calibration.to_dict()}  # fmt: skip
    result: MelanomaModel = model
    return result


# ---------------------------------------------------------------- stack


def _load_stack(path: Path, precision: str, device: str) -> MelanomaModel:
    return load_stack(path.parent if path.name == STACK_FILE else path, precision, device)


def _write_stack(model: MelanomaModel, out: Path, stem: str) -> dict[str, Any]:
    assert isinstance(model, StackModel)
    members = []
    for index, member in enumerate(model.members):
        kind = KINDS[member.kind]
        written = kind.write_into(member, out, f"{stem}-member-{index}")
        members.append({"kind": member.kind, **written, "tta": member.spec.tta, "source": Path(member.source).name})
    return {"file": "", "members": members, "weights": model.weights, "intercept": model.intercept}


def _read_stack(folder: Path, entry: Any, spec: ClassifierSpec) -> MelanomaModel:
    members = [
        KINDS[m.kind].read_from(folder, m, replace(spec, tta=m.tta, calibration=Calibration())) for m in entry.members
    ]
    stack = StackModel(members, entry.weights, entry.intercept, source=str(folder))
    stack.spec = spec  # the bundle's threshold and calibration, as exported
    return stack


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "cnn",
            _is_checkpoint,
            _load_cnn,
            "a CNN checkpoint of 'srcrn classify train' (.ckpt)",
            _write_cnn,
            _read_cnn,
            suffix=".ckpt",
            runs_onnx=True,
        ),
        Kind(
            "features",
            _is_skops,
            _load_features,
            "a lesion-feature model of 'classify train --model features'",
            _write_features,
            _read_features,
            suffix=".skops",
        ),
        Kind(
            "stack",
            _is_stack,
            _load_stack,
            "a stack of 'classify train --model ensemble' (a folder)",
            _write_stack,
            _read_stack,
        ),
    )
}


def kind_of(path: str | Path) -> str:
    """The registered kind whose files look like ``path``, or one error line."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: model file not found")
    for kind in KINDS.values():
        if kind.recognises(path):
            return kind.name
    known = "; ".join(k.description for k in KINDS.values())
    raise ConfigError(f"{path}: not a stage-2 model (expected {known})")


def load_melanoma_model(path: str | Path, precision: str = "fp32", device: str = "cpu") -> MelanomaModel:
    """Any stage-2 model from its file or folder (eager: the CNN runs in PyTorch)."""
    path = Path(path)
    return KINDS[kind_of(path)].load(path, precision, device)


def write_into_bundle(model: MelanomaModel, out: Path, stem: str = "classifier") -> dict[str, Any]:
    """Write ``model``'s files into the bundle folder ``out``; its kind's part of ``bundle.json``
    (``file``, and for a stack its members, weights and intercept)."""
    return KINDS[model.kind].write_into(model, out, stem)


def read_from_bundle(folder: Path, entry: Any, spec: ClassifierSpec) -> MelanomaModel:
    """The stage-2 model of a bundle's ``classifier`` entry, run as ``spec`` says."""
    return KINDS[entry.kind].read_from(folder, entry, spec)


def onnx_kinds() -> frozenset[str]:
    """The kinds whose bundle files are ONNX networks (what int8 quantization applies to)."""
    return frozenset(name for name, kind in KINDS.items() if kind.runs_onnx)


def write_stack(
    out: Path, member_files: Sequence[Path], weights: Sequence[float], intercept: float, names: Sequence[str]
) -> Path:
    """A self-contained stack folder: each member's model file copied in, and ``stack.json``."""
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, (source, name) in enumerate(zip(member_files, names)):
        kind = kind_of(source)
        if kind == "stack":
            raise ConfigError(f"{source}: a stack cannot be a member of a stack")
        target = f"member-{index}-{kind}{KINDS[kind].suffix}"
        with atomic_path(out / target) as temporary:
            shutil.copyfile(source, temporary)
        entries.append({"name": name, "kind": kind, "file": target, "copied_from": str(source)})
    write_json(
        out / STACK_FILE,
        {
            "format": STACK_FORMAT,
            "members": entries,
            "weights": [float(w) for w in weights],
            "intercept": float(intercept),
            "extras": {},
        },
    )
    return out


def load_stack(folder: Path, precision: str = "fp32", device: str = "cpu") -> StackModel:
    """The stack in ``folder`` (stack.json and its members' model files).

    Args:
        folder: a stack folder of ``classify train --model ensemble``.
        precision: the members' torch precision (``fp32`` or ``bf16``).
        device: the members' torch device.

    Returns:
        The stack.

    Raises:
        ConfigError: a missing or damaged stack.json, another format, or a member file outside
            the folder (a member's own load may refuse it too).
    """
    path = folder / STACK_FILE
    try:
        manifest = read_json(path)
        entries, weights, intercept = manifest["members"], manifest["weights"], manifest["intercept"]
        files = [folder / e["file"] for e in entries]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{path}: not a readable stack (expected members, weights, intercept)") from None
    if manifest.get("format") != STACK_FORMAT:
        raise ConfigError(f"{path}: not a stack of 'srcrn classify train --model ensemble'")
    for file in files:
        if folder.resolve() not in file.resolve().parents:
            raise ConfigError(f"{path}: member file {file.name!r} lies outside the stack's folder")
    members = [load_melanoma_model(file, precision, device) for file in files]
    return StackModel(
        members,
        weights,
        intercept,
        source=str(folder),
        extras=manifest.get("extras") or {},
        names=[str(e.get("name", e.get("kind", ""))) for e in entries],
    )
