"""Atomic file writes: outputs appear whole or not at all, so an interruption loses no work
and never leaves a truncated file that looks finished."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def current_umask() -> int:
    """The process's file-creation mask (read once: os.umask can only be read by setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = current_umask()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def clean_json(value: Any) -> Any:
    """JSON has no NaN or infinity: write null (the figure is undefined, e.g. an AUC without
    melanomas); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(payload: Any, indent: int | None = 2) -> str:
    """``payload`` as strict JSON text (no NaN or infinity: ``clean_json``)."""
    return json.dumps(clean_json(payload), indent=indent, allow_nan=False)


# The largest JSON file srcrn reads (a predictions.json of a million images is far below it).
JSON_LIMIT_BYTES = 256 * 2**20


class JsonRefused(ValueError):
    """A JSON file too large or nested too deeply to read (a ValueError, as a malformed one is)."""


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` that fails as a malformed file does (a ``ValueError``), never with Python's
    ``RecursionError``, on text nested thousands deep (a crafted card, manifest or table)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise JsonRefused("nested too deeply to be a srcrn file") from None


def read_json(path: str | Path) -> Any:
    """The JSON file at ``path``, bounded: larger than ``JSON_LIMIT_BYTES`` or nested too deeply
    is a ``JsonRefused`` (a ValueError); unreadable is an OSError, as ``Path.read_text``'s."""
    path = Path(path)
    if path.stat().st_size > JSON_LIMIT_BYTES:
        raise JsonRefused(f"larger than {JSON_LIMIT_BYTES // 2**20} MB")
    return parse_json(path.read_text(encoding="utf-8"))


def write_json(path: str | Path, payload: Any) -> None:
    """``payload`` as indented strict JSON at ``path`` (NaN and infinity as null), written atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json_text(payload))


def remove_leftovers(folder: str | Path) -> int:
    """Delete the temporary files of ``atomic_path`` that a killed process left in ``folder``
    (hidden, never mistaken for outputs, but they would pile up). Only for a folder no other
    process is writing into; returns how many were removed."""
    removed = 0
    for path in Path(folder).glob(".*.*"):
        stem = path.name[1:].rsplit(".", 1)[0] if path.suffix else path.name[1:]
        if path.is_file() and "." in stem:  # .<name>.<random><suffix>
            path.unlink(missing_ok=True)
            removed += 1
    return removed
