"""Input normalisation, free of torch (the ONNX Runtime path must not need it)."""

from __future__ import annotations

import numpy as np

from srcrn.settings import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "normalize_numpy"]


def normalize_numpy(images) -> np.ndarray:
    """uint8 NHWC images to normalised float32 NCHW (C-contiguous): the one normalisation of
    training (both datasets), prediction (both runtimes), Grad-CAM and int8 calibration.

    Args:
        images: uint8 array-like of shape [N, H, W, 3], RGB.

    Returns:
        float32 [N, 3, H, W]: (pixel / 255 - mean) / std with ImageNet's mean and std.
    """
    # One float copy, normalised in place (NHWC: the channel is the last axis), then one
    # transposing copy: the arithmetic of before, without a temporary per step.
    batch = np.array(images, dtype=np.float32)
    batch /= 255.0
    batch -= np.asarray(IMAGENET_MEAN, dtype=np.float32)
    batch /= np.asarray(IMAGENET_STD, dtype=np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
