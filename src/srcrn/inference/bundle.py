"""The deployment bundle of ``srcrn export onnx``: two ONNX models and ``bundle.json``, whose
schema is declared here (pydantic) and checked whenever a bundle is read. torch-free."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from srcrn.errors import ConfigError

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = "srcrn-bundle"
BUNDLE_VERSION = 3  # 2: segmenter tta/keep_largest, classifier target_sensitivity; 3: classifier tta,
# calibration, sha256 of each model file


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")

    file: str
    image_size: int = Field(ge=16, le=4096)
    source: str = ""
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")  # v3: checked on every load
    # What the model's training run recorded (data counts, validation scores), for model cards.
    training: dict[str, float | int | str | None] | None = None


class SegmenterPart(_Part):
    output: Literal["logits"] = "logits"
    tta: bool = False
    keep_largest: bool = False


class ClassifierPart(_Part):
    output: Literal["logit"] = "logit"
    input: Literal["full", "masked", "crop"]
    margin: float = Field(ge=0)
    threshold: float = Field(ge=0, le=1)
    target_sensitivity: float | None = None
    tta: bool = False
    calibration: dict[str, float | str] | None = None  # method, scale, bias: P = sigmoid(scale * logit + bias)


class Normalization(BaseModel):
    mean: list[float]
    std: list[float]
    scale: float


class BundleManifest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: Literal["srcrn-bundle"]
    version: int = Field(ge=1, le=BUNDLE_VERSION)
    srcrn_version: str
    normalization: Normalization
    segmenter: SegmenterPart
    classifier: ClassifierPart
    precision: Literal["fp32", "int8"] = "fp32"
    parity: dict[str, Any] | None = None  # int8: scores against fp32 on held-out images (quantize.py)


def read_manifest(bundle: str | Path) -> BundleManifest:
    bundle = Path(bundle)
    path = bundle / BUNDLE_FILE
    if not path.is_file():
        raise ConfigError(f"{bundle}: not a model bundle (no {BUNDLE_FILE}); write one with 'srcrn export onnx'")
    try:
        manifest = BundleManifest.model_validate(json.loads(path.read_text()))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"{path}: {key}: {first['msg']} (this srcrn reads bundle format v1-v{BUNDLE_VERSION})"
        ) from None
    for part in (manifest.segmenter, manifest.classifier):
        model = (bundle / part.file).resolve()
        if bundle.resolve() not in model.parents:
            raise ConfigError(f"{path}: model file {part.file!r} lies outside the bundle")
        if not model.is_file():
            raise ConfigError(f"{bundle / part.file}: model file of the bundle is missing")
        if part.sha256 is not None and file_sha256(model) != part.sha256:
            raise ConfigError(
                f"{bundle / part.file}: differs from the file the bundle was written with (SHA-256 mismatch): "
                "damaged or replaced; export the bundle again"
            )
    return manifest


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
