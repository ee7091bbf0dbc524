"""Data stage: ISIC formats, validation, splits, the prepared cache and the DataModule."""

from __future__ import annotations

from typing import Any

__all__ = ["IsicDataset", "IsicSample", "read_labels"]


def __getattr__(name: str) -> Any:
    # The ISIC reader (and pandas with it) only when asked for: the prediction path imports
    # srcrn.data's small modules and must not pay pandas's import (issue 31's start-up).
    if name in __all__:
        from srcrn.data import isic

        return getattr(isic, name)
    raise AttributeError(f"module 'srcrn.data' has no attribute {name!r}")
