"""Atomic file writes: outputs appear whole or not at all, so an interruption loses no work
and never leaves a truncated file that looks finished."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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


def write_json(path: str | Path, payload: dict) -> None:
    """``payload`` as indented JSON at ``path``, written atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2))


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
