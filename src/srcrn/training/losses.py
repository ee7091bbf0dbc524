"""Segmentation losses on logits."""

from __future__ import annotations

from typing import get_args

import torch
import torch.nn.functional as F

from srcrn.errors import ConfigError
from srcrn.settings import Loss

LOSSES = get_args(Loss)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per image, averaged (smoothed so empty masks stay finite)."""
    probability = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    overlap = (probability * target).sum(1)
    return (1 - (2 * overlap + eps) / (probability.sum(1) + target.sum(1) + eps)).mean()


def segmentation_loss(name: str):
    """The segmentation loss named ``name`` (``bce``, ``bce+dice``) as ``loss(logits, target)``.

    Raises:
        ConfigError: an unknown name.
    """
    if name == "bce":
        return F.binary_cross_entropy_with_logits
    if name == "bce+dice":
        return lambda logits, target: (
            F.binary_cross_entropy_with_logits(logits, target) + soft_dice_loss(logits, target)
        )
    raise ConfigError(f"unknown loss '{name}'; choose one of {', '.join(LOSSES)}")
