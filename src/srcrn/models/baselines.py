"""Same-protocol baselines: segmentation_models_pytorch U-Net and FPN on a ResNet-50 or an
EfficientNet-Lite encoder.

They are built here only so that one training and evaluation code path serves every
architecture. Encoder weights come from the same sources as SRCRN's (none, a local file,
``srcrn:CKPT``, ImageNet from the local cache or, for a Lite, the installed package): smp's own
``encoder_weights`` would download.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from srcrn.errors import ConfigError
from srcrn.models.encoders import ToSymmetricRange, constant_same_padding, load_lite_weights, timm_name
from srcrn.models.weights import resnet50_backbone

BASELINES = ("unet", "fpn")


class _SymmetricInput(nn.Module):
    """An smp model on a Lite encoder, fed ImageNet-normalised images like every srcrn network."""

    def __init__(self, model: nn.Module):
        """Prepend the [-1, 1] mapping to ``model``.

        Args:
            model: the smp model.
        """
        super().__init__()
        self.to_range = ToSymmetricRange()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the normalised batch ``x``."""
        return self.model(self.to_range(x))


def smp_baseline(arch: str, encoder_weights: str | Path | None = None, encoder: str = "resnet50") -> nn.Module:
    """A one-class smp ``Unet`` or ``FPN`` on ``encoder``, returning logits."""
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        raise ConfigError(f"--arch {arch} needs segmentation_models_pytorch: pip install 'srcrn[baselines]'") from None
    builder = {"unet": smp.Unet, "fpn": smp.FPN}[arch]
    if encoder == "resnet50":
        model = builder(encoder_name="resnet50", encoder_weights=None, in_channels=3, classes=1)
        if encoder_weights not in (None, "none"):
            # smp's ResNet encoder is torchvision's ResNet without its classifier: same tensor names.
            state = {
                k: v for k, v in resnet50_backbone(encoder_weights).state_dict().items() if not k.startswith("fc.")
            }
            model.encoder.load_state_dict(state)
        return model
    # smp's "tu-" encoders are timm's features_only networks: the same tensor names as timm's.
    model = builder(encoder_name=f"tu-{timm_name(encoder)}", encoder_weights=None, in_channels=3, classes=1)
    constant_same_padding(model)
    load_lite_weights(model.encoder.model, encoder, encoder_weights)
    return _SymmetricInput(model)
