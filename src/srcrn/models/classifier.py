"""Stage 2 model: ResNet-50 (or an EfficientNet-Lite), global average pooling and a new one-logit
melanoma head (batch normalisation of the pooled features, dropout, linear).

The backbone is frozen by default (the paper's transfer learning): its weights get no
gradient and its BatchNorm layers stay in eval mode, so their running statistics do not
drift either. ``finetune=True`` trains everything. ``backbone_size`` resizes the input before
the backbone: a frozen ImageNet encoder describes a 128-px lesion crop far better at the scale
it was trained at (224 px for Lite0) than at 128 px (docs/results/encoders.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from srcrn.errors import ConfigError
from srcrn.models.encoders import LitePooled, check_encoder
from srcrn.models.weights import SRCRN_PREFIX, resnet50_backbone

FEATURES = 2048  # ResNet-50's pooled features


class MelanomaClassifier(nn.Module):
    """The paper's classifier: an ImageNet ResNet-50 without its fc layer, frozen unless
    ``finetune``, and a new head (BatchNorm, dropout, one linear unit): melanoma logits.

    Args:
        weights: backbone weights (``imagenet``, a file, ``srcrn:CKPT``; None: random).
        finetune: train the backbone too (the paper freezes it).
        dropout: the head's dropout.
        encoder: resnet50 (the paper's) or efficientnet-lite0/1/2.
        backbone_size: resize the input to this square side (bilinear) before the backbone; None: as given.
        pooling: ``mean`` (global average of the last layer) or ``levels`` (a Lite's mid-level
            stages' means and deviations too: ``LitePooled``).
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        finetune: bool = False,
        dropout: float = 0.0,
        encoder: str = "resnet50",
        backbone_size: int | None = None,
        pooling: str = "mean",
    ):
        """Build the backbone and head (see the class)."""
        super().__init__()
        check_encoder(encoder)
        self.encoder_name = encoder
        self.backbone_size = backbone_size
        self.pooling = pooling
        if pooling not in ("mean", "levels"):
            raise ConfigError(f"--pooling {pooling}: choose mean or levels")
        if encoder == "resnet50":
            if pooling != "mean":
                raise ConfigError(
                    "--pooling levels needs an EfficientNet-Lite encoder (--encoder efficientnet-lite0/1/2)"
                )
            backbone = resnet50_backbone(weights)
            backbone.fc = nn.Identity()  # conv1 .. layer4 + global average pooling -> 2048 features
            self.features = self.head_features = FEATURES
        else:
            if isinstance(weights, str) and weights.startswith(SRCRN_PREFIX):
                raise ConfigError(
                    f"--weights {weights}: an SRCRN encoder is a ResNet-50's; --encoder {encoder} takes imagenet, none or a file"
                )
            backbone = LitePooled(encoder, weights, levels=pooling == "levels")
            self.features, self.head_features = backbone.features, backbone.head_features
        self.backbone = backbone
        self.finetune = finetune
        self.dropout = dropout
        self.head = self._new_head()
        self.backbone.requires_grad_(finetune)

    def _new_head(self) -> nn.Module:
        # BatchNorm first: pooled features of a frozen backbone can be of any scale (an SRCRN
        # encoder's are far from ImageNet's), and SGD at lr 0.01 on raw ones diverges.
        return nn.Sequential(nn.BatchNorm1d(self.features), nn.Dropout(self.dropout), nn.Linear(self.features, 1))

    @property
    def last_feature_map(self) -> nn.Module:
        """The backbone's last spatial layer, before pooling (where Grad-CAM looks)."""
        backbone: Any = self.backbone
        layer: nn.Module = backbone.layer4 if self.encoder_name == "resnet50" else backbone.body.bn2
        return layer  # timm's EfficientNet: conv_head, then bn2 (BatchNorm + ReLU6)

    def reset_classifier(self) -> None:
        """A new, untrained head (the backbone kept)."""
        self.head = self._new_head()

    def train(self, mode: bool = True) -> MelanomaClassifier:
        """Set training mode; a frozen backbone stays in eval mode (its BatchNorm statistics as loaded)."""
        super().train(mode)
        if not self.finetune:
            self.backbone.eval()  # frozen BatchNorm: running statistics stay as loaded
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled backbone features (without gradients when frozen and training)."""
        if self.backbone_size is not None:  # always (a same-size bilinear resize is the identity): one graph to export
            x = F.interpolate(x, size=(self.backbone_size, self.backbone_size), mode="bilinear", align_corners=False)
        if self.finetune or not self.training:
            return self.backbone(x)  # in eval mode the caller decides (Grad-CAM needs gradients)
        with torch.no_grad():  # frozen training: no activations kept for a backward pass
            return self.backbone(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Melanoma logits [N] of pooled features."""
        return self.head(features).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Melanoma logits, shape [N]."""
        return self.forward_head(self.forward_features(x))
