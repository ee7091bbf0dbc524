"""The deployment bundle of ``srcrn export onnx``: the segmenter (ONNX), the stage-2 model of
any kind (a CNN as ONNX, a lesion-feature model as ONNX trees, a stack of them with its stacker) and
``bundle.json``, whose schema is declared here (pydantic) and checked whenever a bundle is
read. torch-free."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from srcrn.atomic import JsonRefused, read_json
from srcrn.errors import ConfigError
from srcrn.settings import ClinicalField
from srcrn.shapes import ImageSize, as_image_size, height_width, size_text
from srcrn.stage2.registry import DEFAULT_KIND, KINDS

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = "srcrn-bundle"
BUNDLE_VERSION = 5  # 2: segmenter tta/keep_largest, classifier target_sensitivity; 3: classifier tta,
# calibration, sha256 of each model file; 4: classifier kind (cnn | features | stack), clinical
# fields, stack members and stacker; 5: a feature model as ONNX trees (v4: its skops file, still read)


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")

    file: str
    image_size: int = Field(ge=32, le=1024)  # what srcrn trains (128 by default); beyond: not a srcrn model
    source: str = ""
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")  # v3: checked on every load
    # What the model's training run recorded (data counts, validation scores), for model cards.
    training: dict[str, float | int | str | None] | None = None


class SegmenterPart(_Part):
    """bundle.json's segmenter: its ONNX file, its input size (a side, or [height, width]) and
    how it is run (TTA, largest region)."""

    image_size: ImageSize  # type: ignore[assignment]  # a segmenter may take height x width
    output: Literal["logits"] = "logits"
    tta: bool = False
    keep_largest: bool = False

    @field_validator("image_size", mode="before")
    @classmethod
    def _fits_the_strides(cls, value: Any) -> ImageSize:
        size = as_image_size(value)
        if not all(32 <= side <= 1024 and side % 32 == 0 for side in height_width(size)):
            raise ValueError(
                f"the segmenter's input {size_text(size)}: each side must be a multiple of 32 "
                "(SRCRN's coarsest stride) from 32 to 1024"
            )
        return size


class CalibrationPart(BaseModel):
    """A calibration as bundle.json holds it: P = sigmoid(scale * logit + bias)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    method: str
    scale: float = 1.0
    bias: float = 0.0


class MemberPart(BaseModel):
    """One member of a stack: its file (ONNX: a CNN's network or a feature model's trees; skops in v4)."""

    model_config = ConfigDict(extra="ignore")

    kind: str  # a registered kind of stage2.registry, not a stack
    file: str
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    tta: bool = False
    source: str = ""


class ClassifierPart(_Part):
    """bundle.json's stage-2 model of any kind, with its input, threshold, calibration and clinical fields."""

    kind: str = DEFAULT_KIND  # a registered kind of stage2.registry; v1-v3 bundles hold a CNN
    file: str = ""  # a stack's files are its members'
    output: Literal["logit"] = "logit"
    input: Literal["full", "masked", "crop"]
    margin: float = Field(ge=0)
    threshold: float = Field(ge=0, le=1)
    target_sensitivity: float | None = None
    tta: bool = False
    calibration: CalibrationPart | None = None  # method, scale, bias: P = sigmoid(scale * logit + bias)
    clinical: list[ClinicalField] = Field(default_factory=list)  # fields the model takes
    members: list[MemberPart] = Field(default_factory=list)  # stack: logit = intercept + weights . members'
    weights: list[float] = Field(default_factory=list)
    intercept: float = 0.0

    @field_validator("kind")
    @classmethod
    def _registered(cls, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown stage-2 kind {kind!r} (known: {', '.join(KINDS)})")
        return kind

    @model_validator(mode="after")
    def _files(self) -> ClassifierPart:
        if any(m.kind not in KINDS or m.kind == self.kind for m in self.members):
            raise ValueError(f"members of a {self.kind} must be of other registered kinds")
        if self.members and (len(self.members) < 2 or len(self.weights) != len(self.members)):
            raise ValueError(f"a {self.kind} needs two or more members and one weight each")
        if not self.members and not self.file:
            raise ValueError(f"a {self.kind} classifier needs its file or its members")
        return self

    def files(self) -> list[tuple[str, str | None]]:
        """(file, sha256) of every model file this part reads: its members' or its own."""
        return [(m.file, m.sha256) for m in self.members] or [(self.file, self.sha256)]


class Normalization(BaseModel):
    """The images' normalisation before the networks: (pixels / scale - mean) / std."""

    mean: list[float]
    std: list[float]
    scale: float


class BundleManifest(BaseModel):
    """The schema of bundle.json, checked whenever a bundle is read."""

    model_config = ConfigDict(extra="ignore")

    format: Literal["srcrn-bundle"]
    version: int = Field(ge=1, le=BUNDLE_VERSION)
    srcrn_version: str
    normalization: Normalization
    segmenter: SegmenterPart
    classifier: ClassifierPart
    precision: Literal["fp32", "int8"] = "fp32"
    parity: dict[str, Any] | None = None  # int8: scores against fp32 on held-out images (quantize.py)
    # What a shipped model says of itself (experiments/default_model.sh): training data and
    # licences, recipe, validation and out-of-fold figures, intended use and limits.
    card: dict[str, Any] | None = None
    # The input gate's thresholds (answers.gate.Gate: validated when a pipeline loads the bundle).
    gate: dict[str, Any] | None = None
    # The verdict bands (answers.bands.Bands: validated when a pipeline loads the bundle).
    bands: dict[str, Any] | None = None


def read_manifest(bundle: str | Path) -> BundleManifest:
    """``bundle``'s manifest, validated, each model file present, inside the bundle and of its recorded
    SHA-256 (which every file must have)."""
    bundle = Path(bundle)
    path = bundle / BUNDLE_FILE
    if not path.is_file():
        raise ConfigError(f"{bundle}: not a model bundle (no {BUNDLE_FILE}); write one with 'srcrn export onnx'")
    try:
        manifest = BundleManifest.model_validate(read_json(path))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except JsonRefused as error:
        raise ConfigError(f"{path}: refused: {error}") from None
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"{path}: {key}: {first['msg']} (this srcrn reads bundle format v1-v{BUNDLE_VERSION})"
        ) from None
    files = [(manifest.segmenter.file, manifest.segmenter.sha256), *manifest.classifier.files()]
    for name, sha256 in files:
        model = (bundle / name).resolve()
        if bundle.resolve() not in model.parents:
            raise ConfigError(f"{path}: model file {name!r} lies outside the bundle")
        if not model.is_file():
            raise ConfigError(f"{bundle / name}: model file of the bundle is missing")
        if sha256 is None:  # without it, a swapped file would load unseen: model files are what users share
            raise ConfigError(
                f"{path}: names {name} without its SHA-256 (a bundle of srcrn before format v3, or edited): "
                "export the bundle again"
            )
        if file_sha256(model) != sha256:
            raise ConfigError(
                f"{bundle / name}: differs from the file the bundle was written with (SHA-256 mismatch): "
                "damaged or replaced; export the bundle again"
            )
    return manifest


_HASHED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime): each model file read once


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, remembered per (path, size, modification time): loading a bundle
    verifies its files and a predict job's identity hashes the same files, in one read."""
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHED:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _HASHED[key] = digest.hexdigest()
    return _HASHED[key]


def read_card(path: str | Path) -> dict[str, Any]:
    """A model card to store in a bundle (``export onnx --card``): a JSON or YAML mapping."""
    import yaml

    path = Path(path)
    try:
        card = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the model card ({error.strerror})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not a JSON or YAML model card ({type(error).__name__})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a model card: nested too deeply") from None
    if not isinstance(card, dict):
        raise ConfigError(f"{path}: a model card is a mapping of fields, not {type(card).__name__}")
    return card


def attach_card(bundle: str | Path, card: dict[str, Any]) -> dict[str, Any]:
    """Store ``card`` in ``bundle``'s manifest, with the size and SHA-256 of every file the
    bundle holds (``card["files"]``): what the README lists and a user can check a download by.
    Returns the card as stored."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)  # a valid bundle, its files as written
    # The model files bundle.json names, nothing else the folder holds (the output manifest, a
    # staging folder's mark): the card lists what a user checks a download by.
    names = [manifest.segmenter.file, *(name for name, _ in manifest.classifier.files())]
    files = sorted(bundle / name for name in dict.fromkeys(names) if name)
    card = dict(card) | {"files": {p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in files}}
    _attach(bundle, "card", card)
    return card


def _attach(bundle: str | Path, key: str, value: dict[str, Any]) -> None:
    """Store ``value`` under ``key`` in a valid ``bundle``'s manifest (its model files untouched)."""
    from srcrn.atomic import write_json

    bundle = Path(bundle)
    read_manifest(bundle)
    manifest = read_json(bundle / BUNDLE_FILE)
    manifest[key] = value
    write_json(bundle / BUNDLE_FILE, manifest)


def attach_gate(bundle: str | Path, gate: dict[str, Any]) -> None:
    """Store the input gate's thresholds (``answers.gate.Gate`` as data) in ``bundle``'s manifest."""
    _attach(bundle, "gate", gate)


def attach_bands(bundle: str | Path, bands: dict[str, Any]) -> None:
    """Store the verdict bands (``answers.bands.Bands`` as data) in ``bundle``'s manifest."""
    _attach(bundle, "bands", bands)


Section = TypeVar("Section", bound=BaseModel)


def validated_section(schema: type[Section], values: dict[str, Any] | None, bundle: Path, name: str) -> Section | None:
    """A section of bundle.json (the gate, the bands) validated by its schema, None where the
    bundle has none, or one error line naming the bundle and the field."""
    if not values:
        return None
    try:
        return schema.model_validate(values)
    except ValidationError as error:
        problem = error.errors()[0]
        place = ".".join(str(p) for p in problem["loc"])
        raise ConfigError(f"{bundle}: bundle.json's {name} is not valid ({place}: {problem['msg']})") from None
