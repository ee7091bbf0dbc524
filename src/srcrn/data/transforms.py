"""Joint image + mask transforms (albumentations), named so configs can pick them."""

from __future__ import annotations

import albumentations as A
import numpy as np
import cv2
from albumentations.pytorch import ToTensorV2

from srcrn.errors import ConfigError

# The ResNet-50 encoders were designed (and, with ImageNet weights, trained) on these statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUGMENTATIONS = ("none", "flip", "strong")


def build_transform(augment: str = "none", *, train: bool = True) -> A.Compose:
    """``none``: normalise only (the paper's recipe); ``flip``: flips and 90-degree turns;
    ``strong``: flips, free rotation, scale/shift and colour jitter. Validation never augments."""
    if augment not in AUGMENTATIONS:
        raise ConfigError(f"unknown augmentation '{augment}'; choose one of {', '.join(AUGMENTATIONS)}")
    steps: list = []
    if train and augment in ("flip", "strong"):
        steps += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=0.5)]
    if train and augment == "strong":
        steps += [
            A.Affine(scale=(0.8, 1.2), translate_percent=(-0.08, 0.08), rotate=(-180, 180),
                     border_mode=cv2.BORDER_REFLECT_101, p=0.7),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.15, hue=0.03, p=0.7),
        ]
    steps += [A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD), ToTensorV2()]
    return A.Compose(steps)


def normalize_batch(images) -> "torch.Tensor":
    """uint8 NHWC images (numpy) to the float NCHW tensor the models take: the same
    arithmetic as ``A.Normalize`` in ``build_transform``, vectorised for inference."""
    import torch

    batch = torch.from_numpy(np.array(images, dtype=np.uint8))  # a writable copy.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (batch - mean) / std
