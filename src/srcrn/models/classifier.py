"""Stage 2 model: ResNet-50 (or an EfficientNet-Lite), global average pooling and a new one-logit
melanoma head (batch normalisation of the pooled features, dropout, linear).

The backbone is frozen by default (the paper's transfer learning): its weights get no
gradient and its BatchNorm layers stay in eval mode, so their running statistics do not
drift either. ``finetune=True`` trains everything.
"""

from __future__ import annotations

from pathlib import Path

import torch
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
    """

    def __init__(
        self, weights: str | Path | None = None, finetune: bool = False, dropout: float = 0.0, encoder: str = "resnet50"
    ):
        """Build the backbone and head (see the class)."""
        super().__init__()
        check_encoder(encoder)
        self.encoder_name = encoder
        if encoder == "resnet50":
            backbone = resnet50_backbone(weights)
            backbone.fc = nn.Identity()  # conv1 .. layer4 + global average pooling -> 2048 features
            self.features = FEATURES
        else:
            if isinstance(weights, str) and weights.startswith(SRCRN_PREFIX):
                raise ConfigError(
                    f"--weights {weights}: an SRCRN encoder is a ResNet-50's; --encoder {encoder} takes imagenet, none or a file"
                )
            backbone = LitePooled(encoder, weights)
            self.features = backbone.features
        self.backbone = backbone
        self.finetune = finetune
        self.dropout = dropout
        self.head = self._new_head()
        self.backbone.requires_grad_(finetune)

    def _new_head(self) -> nn.Module:
        # BatchNorm first: pooled features of a frozen backbone can be of any scale (an SRCRN
        # encoder's are far from ImageNet's), and SGD at lr 0.01 on raw ones diverges.
        return nn.Sequential(nn.BatchNorm1d(self.features), nn.Dropout(self.dropout), nn.Linear(self.features, 1))

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
