"""Mask post-processing. A dermoscopic image shows one lesion: a thresholded probability map
may add specks of skin texture or hair, and leave holes where the lesion is pale. Keeping
the largest connected region and filling its holes removes both. numpy + OpenCV only, so the
torch-free ONNX path can use it."""

from __future__ import annotations

import cv2
import numpy as np


def keep_largest_region(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected foreground region of a boolean mask, with its holes filled.
    An empty mask stays empty."""
    mask = np.asarray(mask, dtype=bool)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = labels == largest
    # Holes are the background parts not connected to the border (4-connected, the dual of 8).
    background = (~region).astype(np.uint8)
    _, outside = cv2.connectedComponents(np.pad(background, 1, constant_values=1), connectivity=4)
    return outside[1:-1, 1:-1] != outside[0, 0]
