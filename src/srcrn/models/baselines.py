"""Same-protocol baselines: segmentation_models_pytorch U-Net and FPN on a ResNet-50 encoder.

They are built here only so that one training and evaluation code path serves every
architecture. Encoder weights come from the same sources as SRCRN's (none, a local file,
``srcrn:CKPT``, ImageNet from the local cache): smp's own ``encoder_weights`` would download.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from srcrn.errors import ConfigError
from srcrn.models.weights import resnet50_backbone

BASELINES = ("unet", "fpn")


def smp_baseline(arch: str, encoder_weights: str | Path | None = None) -> nn.Module:
    """A one-class smp ``Unet`` or ``FPN`` with a ResNet-50 encoder, returning logits."""
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        raise ConfigError(f"--arch {arch} needs segmentation_models_pytorch: pip install 'srcrn[baselines]'") from None
    builder = {"unet": smp.Unet, "fpn": smp.FPN}[arch]
    model = builder(encoder_name="resnet50", encoder_weights=None, in_channels=3, classes=1)
    if encoder_weights not in (None, "none"):
        # smp's ResNet encoder is torchvision's ResNet without its classifier: same tensor names.
        state = {k: v for k, v in resnet50_backbone(encoder_weights).state_dict().items() if not k.startswith("fc.")}
        model.encoder.load_state_dict(state)
    return model
