"""Class balancing (paper 3.2, Table 2): which training rows, and which of them to augment.

* ``none``: the training rows as they are;
* ``augment``: melanoma rows are repeated, as augmented copies, until melanoma : benign
  reaches ``ratio``;
* ``extra``: melanoma images from another folder are added until the ratio is reached (the
  caller supplies them, already deduplicated against evaluation data; see ``deduplicate``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import get_args

import numpy as np

from srcrn.errors import ConfigError
from srcrn.settings import Balance

BALANCE_MODES = get_args(Balance)


@dataclass
class BalancedRows:
    """Training rows: ``source`` 0 = main data, 1 = extra data; ``row`` indexes that source's
    arrays; ``augmented`` marks the synthetic copies."""

    source: np.ndarray
    row: np.ndarray
    augmented: np.ndarray
    notes: list[str]


def melanoma_target(n_benign: int, ratio: float) -> int:
    """The melanoma count that makes ``ratio`` x ``n_benign`` (rounded)."""
    return round(ratio * n_benign)


def balance_rows(
    labels: np.ndarray,
    mode: str,
    *,
    ratio: float = 1.0,
    extra_labels: np.ndarray | None = None,
    seed: int = 0,
) -> BalancedRows:
    """``labels`` are the melanoma labels (0/1) of the training rows of the main data;
    ``extra_labels`` those of the (deduplicated) extra rows, for ``extra``."""
    if mode not in BALANCE_MODES:
        raise ConfigError(f"unknown balance '{mode}'; choose one of {', '.join(BALANCE_MODES)}")
    if ratio <= 0:
        raise ConfigError(f"ratio must be positive, got {ratio}")
    labels = np.asarray(labels)
    rows = np.arange(len(labels))
    source, augmented = np.zeros(len(rows), dtype=np.int64), np.zeros(len(rows), dtype=bool)
    melanoma = rows[labels == 1]
    n_benign = int((labels == 0).sum())
    missing = melanoma_target(n_benign, ratio) - len(melanoma)
    notes: list[str] = []
    rng = np.random.default_rng(seed)
    if mode == "none" or missing <= 0:
        if mode != "none":
            notes.append(f"no balancing needed: {len(melanoma)} melanoma for {n_benign} benign already reach {ratio}")
        return BalancedRows(source, rows, augmented, notes)
    if mode == "augment":
        if len(melanoma) == 0:
            raise ConfigError("balance 'augment' needs at least one melanoma image in training")
        # Every melanoma image is copied equally often (the remainder at random).
        copies = np.concatenate(
            [np.tile(melanoma, missing // len(melanoma)), rng.choice(melanoma, missing % len(melanoma), replace=False)]
        )
        notes.append(f"augment: {missing} augmented melanoma copies added to {len(melanoma)} originals")
        return BalancedRows(
            np.concatenate([source, np.zeros(missing, np.int64)]),
            np.concatenate([rows, copies]),
            np.concatenate([augmented, np.ones(missing, bool)]),
            notes,
        )
    extra_melanoma = np.flatnonzero(np.asarray(extra_labels if extra_labels is not None else []) == 1)
    chosen = rng.permutation(extra_melanoma)[:missing]
    if len(chosen) < missing:
        notes.append(f"extra: only {len(chosen)} extra melanoma images for the {missing} needed; ratio not reached")
    else:
        notes.append(f"extra: {len(chosen)} extra melanoma images added")
    return BalancedRows(
        np.concatenate([source, np.ones(len(chosen), np.int64)]),
        np.concatenate([rows, chosen]),
        np.concatenate([augmented, np.zeros(len(chosen), bool)]),
        notes,
    )


def pixel_hashes(images: np.ndarray) -> list[str]:
    """A hash of each image's (prepared) pixels: the same picture under two ids or two
    encodings to the same pixels gets the same hash."""
    return [hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest() for image in images]


def deduplicate(
    extra_ids: list[str], extra_images: np.ndarray, forbidden_ids: set[str], forbidden_images: np.ndarray
) -> tuple[np.ndarray, dict[str, int]]:
    """Rows of the extra data to keep: not an id, nor the pixels, of any forbidden image
    (validation and evaluation data), nor a repeat within the extra data."""
    forbidden_hashes = set(pixel_hashes(forbidden_images))
    seen: set[str] = set()
    keep, dropped = [], {"same_id": 0, "same_pixels": 0}
    for row, (image_id, digest) in enumerate(zip(extra_ids, pixel_hashes(extra_images))):
        if image_id in forbidden_ids:
            dropped["same_id"] += 1
        elif digest in forbidden_hashes or digest in seen:
            dropped["same_pixels"] += 1
        else:
            keep.append(row)
            seen.add(digest)
    return np.asarray(keep, dtype=np.int64), dropped
