"""Stage 2 as one interface: every melanoma model (the CNN, the lesion-feature model, their
stack) is a ``MelanomaModel``, found by one registry of kinds and loaded by one function,
``load_melanoma_model`` (as timm's ``create_model`` or smp's encoder registry do). Every caller
(eval, cv, ensemble, predict, serve, the API, export) goes through it; ``probabilities`` is the
one place where a logit becomes a (calibrated) probability.

A model's kind is recognised by what a file holds, not by its name: a PyTorch checkpoint is a
zip holding ``data.pkl``, a skops file one holding ``schema.json``, a stack a folder with
``stack.json``. torch-free: the CNN's loader imports torch only when a checkpoint is loaded.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from srcrn.atomic import atomic_path, write_json
from srcrn.data.metadata import CLINICAL_FIELDS, ClinicalContext
from srcrn.errors import ConfigError
from srcrn.inference.predictor import Calibration, ClassifierSpec

STACK_FILE = "stack.json"
STACK_FORMAT = "srcrn-stack"
Contexts = Sequence[ClinicalContext | None] | None


@runtime_checkable
class MelanomaModel(Protocol):
    """What every stage-2 model offers. ``inputs`` are uint8 [N, S, S, 3] lesion inputs built
    from the stage-1 mask (``data.lesion``, with ``spec``'s size, input mode and margin);
    ``masks`` the boolean lesion masks on them (needed when ``needs_masks``); ``contexts``
    each image's clinical context (used when ``clinical_fields``; None = unknown)."""

    kind: str  # "cnn" | "features" | "stack"
    source: str  # the file (or folder) it was loaded from

    @property
    def spec(self) -> ClassifierSpec:
        """Input size and mode, margin, threshold, calibration."""
        ...

    @property
    def image_size(self) -> int:
        """The side of the square input the model takes."""
        ...

    @property
    def needs_masks(self) -> bool:
        """Whether ``logits`` needs the lesion masks on the inputs."""
        ...

    @property
    def clinical_fields(self) -> tuple[str, ...]:
        """The clinical fields (age, sex, site) the model takes."""
        ...

    def logits(self, inputs: np.ndarray, masks: np.ndarray | None = None, contexts: Contexts = None) -> np.ndarray:
        """float64 [N] uncalibrated melanoma logits."""
        ...

    def store_extras(self, **extras: Any) -> None:
        """Record ``threshold``, ``target_sensitivity`` or ``calibration`` in the model's file."""
        ...


def probabilities(
    model: MelanomaModel, inputs: np.ndarray, masks: np.ndarray | None = None, contexts: Contexts = None
) -> np.ndarray:
    """float64 [N] P(melanoma): the model's logits through its calibration (identity without one)."""
    return model.spec.calibration(model.logits(inputs, masks, contexts)).astype(np.float64)


def with_extras(spec: ClassifierSpec, extras: dict[str, Any]) -> ClassifierSpec:
    """``spec`` with what ``store_extras`` recorded: threshold, target sensitivity, calibration."""
    changes: dict[str, Any] = {}
    if "threshold" in extras:
        changes["threshold"] = float(extras["threshold"])
    if "target_sensitivity" in extras:
        changes["target_sensitivity"] = extras["target_sensitivity"]
    if "calibration" in extras:
        changes["calibration"] = Calibration.from_dict(extras["calibration"])
    return replace(spec, **changes)


# ---------------------------------------------------------------- the registry of kinds


@dataclass(frozen=True)
class Kind:
    """One kind of stage-2 model: how its files are recognised and loaded."""

    name: str
    recognises: Callable[[Path], bool]
    load: Callable[[Path, str, str], MelanomaModel]  # (path, precision, device)
    description: str


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


def _load_cnn(path: Path, precision: str, device: str) -> MelanomaModel:
    if importlib.util.find_spec("torch") is None:
        raise ConfigError(
            f"{path}: a CNN checkpoint needs PyTorch: pip install 'srcrn[train]' (or export it to a bundle "
            "with 'srcrn export onnx' and predict with --engine onnx)"
        )
    from srcrn.inference.predictor import Classifier

    return Classifier.from_checkpoint(path, precision, device)


def _load_features(path: Path, precision: str, device: str) -> MelanomaModel:
    from srcrn.inference.feature_model import FeatureModel

    return FeatureModel.load(path)


def _load_stack(path: Path, precision: str, device: str) -> MelanomaModel:
    return StackModel.load(path.parent if path.name == STACK_FILE else path, precision, device)


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("cnn", _is_checkpoint, _load_cnn, "a CNN checkpoint of 'srcrn classify train' (.ckpt)"),
        Kind("features", _is_skops, _load_features, "a lesion-feature model of 'classify train --model features'"),
        Kind("stack", _is_stack, _load_stack, "a stack of 'classify train --model ensemble' (a folder)"),
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


# ---------------------------------------------------------------- the stack


class StackModel:
    """A logistic regression on its members' logits (fitted on their out-of-fold logits by
    ``classify train --model ensemble``): logit = intercept + sum(weight_i x logit_i). Its
    probability is the stacker's, already calibrated on out-of-fold scores; its members share
    one lesion input (size, mode, margin), so each image is cut once for all of them."""

    kind = "stack"

    def __init__(
        self,
        members: list[MelanomaModel],
        weights: Sequence[float],
        intercept: float,
        *,
        source: str = "",
        extras: dict[str, Any] | None = None,
        names: Sequence[str] = (),
    ):
        """A stack of stage-2 models.

        Args:
            members: the member models (two or more, of one input size and mode).
            weights: the stacker's weight of each member's logit.
            intercept: the stacker's intercept.
            source: the stack's folder, for messages.
            extras: threshold, calibration, target sensitivity.
            names: the members' names.

        Raises:
            ConfigError: fewer than two members, a weight count that differs, or members whose lesion
                inputs (mode, size, margin) differ.
        """
        if len(members) != len(weights) or len(members) < 2:
            raise ConfigError(f"{source or 'stack'}: needs two or more members, one weight each")
        first = members[0].spec
        for member in members[1:]:
            s = member.spec
            if (s.image_size, s.input, s.margin) != (first.image_size, first.input, first.margin):
                raise ConfigError(
                    f"{member.source}: its lesion input ({s.input}, {s.image_size} px, margin {s.margin:g}) differs "
                    f"from {members[0].source}'s ({first.input}, {first.image_size} px, margin {first.margin:g}): "
                    "stack members must see the same input (same --input, --image-size, --margin)"
                )
        self.members, self.weights, self.intercept = list(members), [float(w) for w in weights], float(intercept)
        self.names = list(names) or [m.kind for m in members]
        self.source, self.extras = source, dict(extras or {})
        base = ClassifierSpec(
            first.image_size,
            first.input,
            first.margin,
            0.5,
            first.segmenter,
            None,
            False,
            Calibration("stacker"),  # sigmoid of the stacker's logit, fitted out of fold
        )
        self.spec = with_extras(base, self.extras)

    @property
    def image_size(self) -> int:
        """The side of the square input the stack takes (its spec's, from its members)."""
        return self.spec.image_size

    @property
    def needs_masks(self) -> bool:
        """Whether any member needs the lesion masks."""
        return any(m.needs_masks for m in self.members)

    @property
    def clinical_fields(self) -> tuple[str, ...]:
        """The clinical fields any member takes."""
        fields = {f for m in self.members for f in m.clinical_fields}
        return tuple(f for f in CLINICAL_FIELDS if f in fields)

    def member_logits(
        self, inputs: np.ndarray, masks: np.ndarray | None = None, contexts: Contexts = None
    ) -> np.ndarray:
        """float64 [N, members]: each member's uncalibrated logits."""
        return np.stack([m.logits(inputs, masks, contexts) for m in self.members], axis=1)

    def combine(self, member_logits: np.ndarray) -> np.ndarray:
        """The stack's logit: intercept + the members' logits weighted by the stacker."""
        return self.intercept + np.asarray(member_logits, dtype=np.float64) @ np.asarray(self.weights)

    def logits(self, inputs: np.ndarray, masks: np.ndarray | None = None, contexts: Contexts = None) -> np.ndarray:
        """float64 [N] stacked logits (uncalibrated) of the inputs, their masks and contexts."""
        return self.combine(self.member_logits(inputs, masks, contexts))

    def store_extras(self, **extras: Any) -> None:
        """Store ``extras`` (threshold, calibration, ...) in the stack's manifest and apply them."""
        self.extras |= extras
        self.spec = with_extras(self.spec, extras)
        folder = Path(self.source)
        manifest = json.loads((folder / STACK_FILE).read_text())
        manifest["extras"] = self.extras
        write_json(folder / STACK_FILE, manifest)

    @staticmethod
    def write(
        out: Path, member_files: Sequence[Path], weights: Sequence[float], intercept: float, names: Sequence[str]
    ) -> Path:
        """A self-contained stack folder: each member's model file copied in, and ``stack.json``."""
        out.mkdir(parents=True, exist_ok=True)
        entries = []
        for index, (source, name) in enumerate(zip(member_files, names)):
            kind = kind_of(source)
            if kind == "stack":
                raise ConfigError(f"{source}: a stack cannot be a member of a stack")
            target = f"member-{index}-{kind}{'.ckpt' if kind == 'cnn' else '.skops'}"
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

    @classmethod
    def load(cls, folder: Path, precision: str = "fp32", device: str = "cpu") -> StackModel:
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
            manifest = json.loads(path.read_text())
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
        return cls(
            members,
            weights,
            intercept,
            source=str(folder),
            extras=manifest.get("extras") or {},
            names=[str(e.get("name", e.get("kind", ""))) for e in entries],
        )
