"""Input normalisation, free of torch (the ONNX Runtime path must not need it)."""

from __future__ import annotations

import numpy as np

# The ResNet-50 encoders were designed (and, with ImageNet weights, trained) on these statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_numpy(images) -> np.ndarray:
    """uint8 NHWC images to normalised float32 NCHW (C-contiguous): the one normalisation of
    training (both datasets), prediction (both runtimes), Grad-CAM and int8 calibration.

    Args:
        images: uint8 array-like of shape [N, H, W, 3], RGB.

    Returns:
        float32 [N, 3, H, W]: (pixel / 255 - mean) / std with ImageNet's mean and std.
    """
    batch = np.asarray(images, dtype=np.float32).transpose(0, 3, 1, 2) / 255.0
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(IMAGENET_STD, dtype=np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((batch - mean) / std)
