"""SRCRN: a ResNet-50 encoder whose stride-32, -16 and -8 score maps are fused by transposed
convolutions into a full-size lesion map ("stride regulation", FCN-8s style).

Encoder blocks (torchvision ``resnet50``): the end of ``layer2`` (block 7, stride 8, 512
channels), ``layer3`` (block 13, stride 16, 1024) and ``layer4`` (block 16, stride 32, 2048).
``encoder="efficientnet-lite0|1|2"`` puts the same decoder on an EfficientNet-Lite's stride-8,
-16 and -32 maps (``srcrn.models.encoders``): the paper's idea on a pretrained, lighter encoder.
``stride`` picks the decoder of the paper's section 3.1 ablation:

* 32: C5 only, one transposed convolution x32;
* 16: C5 upsampled x2 + a 1x1 score of C4, then x16;
* 8 (default): as 16, upsampled x2 again + a 1x1 score of C3, then x8.

``forward`` returns logits (one channel, the input's size); the sigmoid belongs to the loss
and to prediction.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import torch
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter

from srcrn.errors import ConfigError
from srcrn.models.encoders import LiteFeatures, check_encoder
from srcrn.models.weights import resnet50_backbone
from srcrn.settings import Architecture

STRIDES = (8, 16, 32)
ENCODER_LAYERS = {"layer2": "c3", "layer3": "c4", "layer4": "c5"}
ENCODER_CHANNELS = {"c3": 512, "c4": 1024, "c5": 2048}  # ResNet-50's
INPUT_MULTIPLE = 32


def _upsample(in_channels: int, out_channels: int, factor: int) -> nn.ConvTranspose2d:
    """A transposed convolution that multiplies height and width by exactly ``factor``."""
    return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2 * factor, stride=factor, padding=factor // 2)


class StrideRegulationDecoder(nn.Module):
    """The paper's decoder: the stride-32 prediction map, fused with the stride-16 and stride-8
    ones by transposed convolutions (up to ``stride``), upsampled to the input size.

    Args:
        stride: 32, 16 or 8: the finest encoder stride fused.
        score_channels: channels of the intermediate score maps.
        channels: the encoder's c3/c4/c5 channels (default: ResNet-50's).
    """

    def __init__(self, stride: int = 8, score_channels: int = 2, channels: dict[str, int] | None = None):
        """Build the decoder of ``stride`` (see the class)."""
        super().__init__()
        if stride not in STRIDES:
            raise ConfigError(f"stride must be one of {STRIDES}, got {stride}")
        self.stride = stride
        k = score_channels
        c = channels or ENCODER_CHANNELS
        if stride == 32:
            self.final = _upsample(c["c5"], 1, 32)
            return
        self.up32 = _upsample(c["c5"], k, 2)
        self.score16 = nn.Conv2d(c["c4"], k, kernel_size=1)
        if stride == 16:
            self.final = _upsample(k, 1, 16)
            return
        self.up16 = _upsample(k, k, 2)
        self.score8 = nn.Conv2d(c["c3"], k, kernel_size=1)
        self.final = _upsample(k, 1, 8)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Lesion logits [N, 1, H, W] from the encoder's c3/c4/c5 features."""
        if self.stride == 32:
            return self.final(features["c5"])
        y = self.up32(features["c5"]) + self.score16(features["c4"])
        if self.stride == 8:
            y = self.up16(y) + self.score8(features["c3"])
        return self.final(y)


class SRCRN(nn.Module):
    """Encoder + stride-regulation decoder. ``forward_features`` / ``forward_head`` split it
    the timm way, so the encoder can be reused (e.g. as a classifier backbone)."""

    channels: dict[str, int]  # the encoder's c3/c4/c5 channels

    def __init__(
        self,
        stride: int = 8,
        score_channels: int = 2,
        encoder_weights: str | Path | None = None,
        encoder: str = "resnet50",
    ):
        """SRCRN of ``stride`` on ``encoder``.

        Args:
            stride: 32, 16 or 8.
            score_channels: channels of the intermediate score maps.
            encoder_weights: the encoder's weights (``imagenet``, a file; None: random).
            encoder: resnet50 (the paper's) or efficientnet-lite0/1/2.
        """
        super().__init__()
        check_encoder(encoder)
        self.stride = stride
        self.encoder_name = encoder
        if encoder == "resnet50":
            self.encoder: nn.Module = IntermediateLayerGetter(
                resnet50_backbone(encoder_weights), return_layers=ENCODER_LAYERS
            )
            self.channels = dict(ENCODER_CHANNELS)
        else:
            lite = LiteFeatures(encoder, encoder_weights)
            self.encoder, self.channels = lite, lite.channels
        self.decoder = StrideRegulationDecoder(stride, score_channels, self.channels)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The encoder's c3, c4 and c5 features.

        Raises:
            ValueError: input sides that are not multiples of 32.
        """
        height, width = x.shape[-2:]
        if height % INPUT_MULTIPLE or width % INPUT_MULTIPLE:
            raise ValueError(
                f"SRCRN input sides must be multiples of {INPUT_MULTIPLE}; got {height}x{width} "
                f"(resize or pad, e.g. to {128}x{128})"
            )
        return self.encoder(x)

    def forward_head(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Lesion logits [N, 1, H, W] from the encoder's features."""
        return self.decoder(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Lesion logits [N, 1, H, W] of a normalised batch [N, 3, H, W]."""
        return self.forward_head(self.forward_features(x))


ARCHITECTURES = get_args(Architecture)


def check_architecture(arch: str) -> None:
    """Refuse an unknown segmentation architecture (one line naming the choices)."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown segmentation architecture '{arch}'; choose one of {', '.join(ARCHITECTURES)}")


def build_segmenter(
    arch: str = "srcrn",
    stride: int = 8,
    score_channels: int = 2,
    encoder_weights: str | Path | None = None,
    encoder: str = "resnet50",
) -> nn.Module:
    """Every segmentation model by name, built the same way (the training code sees only this).
    ``stride`` and ``score_channels`` shape SRCRN's decoder; the baselines have their own;
    ``encoder`` is any of ``srcrn.models.encoders.ENCODERS`` for all three."""
    check_architecture(arch)
    check_encoder(encoder)
    if arch == "srcrn":
        return SRCRN(stride=stride, score_channels=score_channels, encoder_weights=encoder_weights, encoder=encoder)
    from srcrn.models.baselines import smp_baseline

    return smp_baseline(arch, encoder_weights, encoder)
