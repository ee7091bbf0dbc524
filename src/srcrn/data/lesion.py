"""Classifier inputs from images and SRCRN masks: the ``full`` image, the lesion ``masked``
(background zeroed) or the lesion's bounding box, with a margin, as a ``crop``."""

from __future__ import annotations

from typing import TYPE_CHECKING, get_args

import cv2
import numpy as np

from srcrn.console import progress
from srcrn.data.images import Box, box_pixels, decode_crop
from srcrn.errors import ConfigError
from srcrn.settings import InputMode

if TYPE_CHECKING:  # types only: a prediction imports this module and must not pay pandas's import
    from srcrn.data.cache import PreparedData
    from srcrn.data.isic import IsicDataset

INPUT_MODES = get_args(InputMode)


def lesion_box(mask: np.ndarray, margin: float = 0.1) -> Box | None:
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


def lesion_input(
    image: np.ndarray,
    mask: np.ndarray | None,
    mode: str,
    image_path=None,
    *,
    margin: float = 0.1,
    name: str | None = None,
) -> np.ndarray:
    """One classifier input (uint8 S x S x 3) from the image and its lesion mask at that size.

    ``crop`` decodes the lesion's box again from ``image_path`` (any image source of
    ``decode_image``; ``name`` names it in errors) at reduced scale, so the crop
    keeps the detail a 128-px whole image has lost. An empty mask leaves the image whole:
    zeroing or cropping it would leave nothing to classify."""
    if mode not in INPUT_MODES:
        raise ConfigError(f"unknown input '{mode}'; choose one of {', '.join(INPUT_MODES)}")
    if mode == "full":
        return image
    if mask is None:
        raise ConfigError(f"input '{mode}' needs lesion masks: pass --segmenter CKPT")
    mask = np.asarray(mask).astype(bool)
    if not mask.any():
        return image
    if mode == "masked":
        return np.where(mask[..., None], image, 0).astype(np.uint8)
    box = lesion_box(mask, margin)
    if box is None or image_path is None:  # no lesion, or nothing to crop from: the whole image
        return image
    return decode_crop(image_path, box, image.shape[0], name=name)


def crop_mask(mask: np.ndarray, mode: str, size: int, *, margin: float = 0.1) -> np.ndarray:
    """The lesion mask as it lies on ``lesion_input``'s output (boolean size x size): for a
    ``crop``, the mask's part inside the lesion's box, resized; otherwise the mask resized."""
    mask = np.asarray(mask).astype(bool)
    box = lesion_box(mask, margin) if mode == "crop" else None
    if box is not None:
        x0, y0, x1, y1 = box_pixels(box, mask.shape[1], mask.shape[0])
        mask = mask[y0:y1, x0:x1]
    if mask.shape == (size, size):
        return mask
    return cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR) > 0.5


def classifier_inputs(
    prepared: PreparedData,
    dataset: IsicDataset,
    mode: str,
    masks: np.ndarray | None = None,
    *,
    margin: float = 0.1,
    show_progress: bool = True,
) -> np.ndarray:
    """``lesion_input`` for every image of a prepared cache: uint8 [N, S, S, 3] in its order.
    ``masks`` (uint8/bool [N, S, S], e.g. SRCRN's predictions) are needed by ``masked`` and
    ``crop``."""
    if mode not in INPUT_MODES:
        raise ConfigError(f"unknown input '{mode}'; choose one of {', '.join(INPUT_MODES)}")
    if mode != "full" and masks is None:
        raise ConfigError(f"input '{mode}' needs lesion masks: pass --segmenter CKPT")
    out = np.array(prepared.images)
    if mode == "full":
        return out
    assert masks is not None  # checked above
    for position in progress(range(len(out)), len(out), f"{mode} lesions", show_progress and mode == "crop"):
        path = dataset.sample(prepared.ids[position]).image_path
        out[position] = lesion_input(out[position], masks[position], mode, path, margin=margin)
    return out
