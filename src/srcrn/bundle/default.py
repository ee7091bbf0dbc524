"""The model shipped inside the package (``src/srcrn/default_model/``): what ``srcrn predict``,
``srcrn serve`` and ``srcrn.Pipeline.default()`` use when no model is named, as torchvision's
``weights="DEFAULT"`` does. It is a bundle like any other (``inference.bundle``), found through
``importlib.resources`` so that an installed wheel finds it as the source tree does. torch-free.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from srcrn.bundle.schema import BUNDLE_FILE
from srcrn.errors import ConfigError

DEFAULT_NAME = "default"  # `--model default`, `Pipeline.from_bundle("default")`
PACKAGE_FOLDER = "default_model"


def default_bundle_dir() -> Path:
    """Where the shipped bundle lies in this installation (it may hold none)."""
    return Path(str(resources.files("srcrn") / PACKAGE_FOLDER))


def default_bundle() -> Path:
    """The shipped bundle, or one error line saying how to get on without it."""
    folder = default_bundle_dir()
    if not (folder / BUNDLE_FILE).is_file():
        raise ConfigError(
            f"{folder}: this srcrn ships no default model yet (build one with experiments/default_model.sh); "
            "pass --model BUNDLE (srcrn export onnx), or --segmenter CKPT and --classifier MODEL"
        )
    return folder


def resolve_bundle(bundle: str | Path) -> Path:
    """``bundle`` itself, or the shipped bundle for the name ``default`` (unless a folder of that
    name exists here: a user's own folder wins)."""
    path = Path(bundle)
    if str(bundle) == DEFAULT_NAME and not path.exists():
        return default_bundle()
    return path
