"""ResNet-50 weights: torchvision's ImageNet weights, a local file, or none.

``imagenet`` behaves as torchvision does: the weights come from torch hub's cache, and are
downloaded into it when missing and the network is there. Offline, or with ``SRCRN_OFFLINE``
set (the tests and the demo set it: they never download), a missing file is one clear error
that says where to put it."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.error import URLError

import torch
from torch import nn
from torchvision.models import ResNet50_Weights, resnet50

from srcrn.errors import ConfigError

IMAGENET = ResNet50_Weights.IMAGENET1K_V1
OFFLINE_VARIABLE = "SRCRN_OFFLINE"


def imagenet_weights_file() -> Path:
    """Where torchvision looks for the ImageNet ResNet-50 weights before downloading them."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(IMAGENET.url).name


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file (a Lightning checkpoint included)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


SRCRN_PREFIX = "srcrn:"
SRCRN_ENCODER_KEY = "model.encoder."  # where a SegmentationTask checkpoint keeps the encoder


def srcrn_encoder_state(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """The ResNet-50 weights of a trained SRCRN's encoder, from its ``segment train`` checkpoint."""
    state = load_state_dict_file(checkpoint)
    encoder = {k[len(SRCRN_ENCODER_KEY) :]: v for k, v in state.items() if k.startswith(SRCRN_ENCODER_KEY)}
    if not encoder:
        raise ConfigError(f"{checkpoint}: holds no SRCRN encoder (expected a checkpoint of 'srcrn segment train')")
    return encoder


def resnet50_backbone(weights: str | Path | None = None) -> nn.Module:
    """torchvision ResNet-50 with ``weights``: None/"none" (random init), "imagenet",
    "srcrn:CKPT" (the encoder of a trained SRCRN, which works offline), or a weights file."""
    if isinstance(weights, str) and weights.startswith(SRCRN_PREFIX):
        model = resnet50(weights=None)
        missing, _ = model.load_state_dict(srcrn_encoder_state(weights[len(SRCRN_PREFIX) :]), strict=False)
        if set(missing) - {"fc.weight", "fc.bias"}:  # SRCRN has no fc: everything else must load
            raise ConfigError(f"{weights}: encoder lacks {len(missing)} ResNet-50 tensors, e.g. {missing[0]}")
        return model
    if weights in (None, "none"):
        return resnet50(weights=None)
    if weights == "imagenet":
        cached = imagenet_weights_file()
        advice = (
            f"put {Path(IMAGENET.url).name} (from {IMAGENET.url}) at {cached}, or pass a local weights file instead"
        )
        if not cached.is_file() and os.environ.get(OFFLINE_VARIABLE):
            raise ConfigError(f"ImageNet weights are not available offline: {advice} ({OFFLINE_VARIABLE} is set)")
        try:
            return resnet50(weights=IMAGENET)  # torchvision: from the cache, else downloaded into it
        except (OSError, URLError) as error:  # no network, a proxy, a full disk...
            raise ConfigError(
                f"ImageNet weights are not available offline: {advice} (download failed: {error})"
            ) from None
    model = resnet50(weights=None)
    state = load_state_dict_file(weights)
    missing, _unexpected = model.load_state_dict(state, strict=False)
    if len(missing) == len(model.state_dict()):
        raise ConfigError(f"{weights}: holds no ResNet-50 weights (none of its keys match)")
    return model
