"""Run settings as dataclasses: defaults = the paper's recipe, then a YAML file, then flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from srcrn.errors import ConfigError


@dataclass
class RunSettings:
    """Settings every training run shares (the Lightning Trainer's, and housekeeping)."""

    image_size: int = 128
    epochs: int = 10
    seed: int = 0
    split: str = "paper"
    val_fraction: float = 0.2
    num_workers: int = 0
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    time_budget: str | None = None
    cache: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


@dataclass
class SegmentationConfig(RunSettings):
    """Paper 2.3.2: Adam 1e-3, binary cross-entropy, batch 8, 128x128, first 100 ids held out,
    steps of 300 iterations. The paper does not state the number of epochs."""

    recipe: str = "paper"
    arch: str = "srcrn"
    stride: int = 8
    score_channels: int = 2
    encoder_weights: str = "none"
    batch_size: int = 8
    steps_per_epoch: int | None = 300
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    loss: str = "bce"
    augment: str = "none"
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    ema_decay: float = 0.0
    tta: bool = False
    eval_batch_size: int = 32


@dataclass
class ClassificationConfig(RunSettings):
    """Paper 2.4: ImageNet ResNet-50, frozen, new head; SGD lr 0.01, Nesterov momentum 0.9,
    Keras-style inverse-time decay 5e-4 per update; 100 epochs; batch 32 (best of 4..64)."""

    epochs: int = 100
    weights: str = "imagenet"
    finetune: bool = False
    dropout: float = 0.0
    input: str = "full"
    margin: float = 0.1
    segmenter: str | None = None
    balance: str = "none"
    ratio: float = 1.0
    augment: str = "mix"
    extra: str | None = None
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    lr_decay: float = 5e-4
    weight_decay: float = 0.0
    eval_batch_size: int = 64


def read_settings_file(path: Path) -> dict[str, Any]:
    """The mapping in a YAML settings file, or one error line naming the file."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    return loaded


def load_config(cls, path: str | Path | None = None, **overrides):
    """Defaults of ``cls``, then those of the named recipe (when ``cls`` has recipes), updated
    from the YAML file at ``path``, then by the non-None ``overrides``. Unknown keys are
    refused with the file named."""
    values: dict[str, Any] = {}
    known = {f.name for f in fields(cls)}
    if path is not None:
        path = Path(path)
        loaded = read_settings_file(path)
        unknown = sorted(set(loaded) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
    if "recipe" in known:
        from srcrn.training.recipes import recipe_defaults

        # The recipe fills what neither the file nor the flags set.
        values = recipe_defaults(values.get("recipe", "paper")) | values
    return cls(**values)
