"""Classifier inputs from images and SRCRN masks: the ``full`` image, the lesion ``masked``
(background zeroed) or the lesion's bounding box, with a margin, as a ``crop``."""

from __future__ import annotations

import numpy as np

from srcrn.console import progress
from srcrn.data.cache import PreparedData
from srcrn.data.images import decode_crop
from srcrn.data.isic import IsicDataset
from srcrn.errors import ConfigError

INPUT_MODES = ("full", "masked", "crop")


def lesion_box(mask: np.ndarray, margin: float = 0.1) -> tuple[float, float, float, float] | None:
    """Bounding box of a boolean mask as fractions (left, top, right, bottom), grown by
    ``margin`` of its size on every side and clipped to the image; None if the mask is empty."""
    rows, columns = np.nonzero(mask)
    if rows.size == 0:
        return None
    height, width = mask.shape
    top, bottom = rows.min() / height, (rows.max() + 1) / height
    left, right = columns.min() / width, (columns.max() + 1) / width
    grow_x, grow_y = margin * (right - left), margin * (bottom - top)
    return (max(0.0, left - grow_x), max(0.0, top - grow_y), min(1.0, right + grow_x), min(1.0, bottom + grow_y))


def classifier_inputs(
    prepared: PreparedData,
    dataset: IsicDataset,
    mode: str,
    masks: np.ndarray | None = None,
    *,
    margin: float = 0.1,
    show_progress: bool = True,
) -> np.ndarray:
    """uint8 [N, S, S, 3] inputs in the order of ``prepared``. ``masks`` (uint8/bool
    [N, S, S], e.g. SRCRN's predictions) are needed by ``masked`` and ``crop``; an empty mask
    leaves the image whole, since zeroing or cropping it would leave nothing to classify."""
    if mode not in INPUT_MODES:
        raise ConfigError(f"unknown input '{mode}'; choose one of {', '.join(INPUT_MODES)}")
    images = np.asarray(prepared.images)
    if mode == "full":
        return np.array(images)
    if masks is None:
        raise ConfigError(f"input '{mode}' needs lesion masks: pass --segmenter CKPT")
    masks = np.asarray(masks).astype(bool)
    if mode == "masked":
        empty = ~masks.any(axis=(1, 2))
        return np.where((masks | empty[:, None, None])[..., None], images, 0).astype(np.uint8)
    size = prepared.size
    out = np.array(images)
    for position in progress(range(len(out)), len(out), "crop lesions", show_progress):
        box = lesion_box(masks[position], margin)
        if box is not None:
            out[position] = decode_crop(dataset.sample(prepared.ids[position]).image_path, box, size)
    return out
