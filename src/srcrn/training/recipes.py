"""Named training recipes for stage 1: each is a documented set of defaults that sits between
the dataclass defaults (the paper) and a YAML file or flags (which still override any part).

* ``paper``: the paper's recipe, section 2.3.2: Adam 1e-3, binary cross-entropy, batch 8,
  no augmentation, constant learning rate, 2-channel score maps, no weight averaging.
* ``strong``: what a practitioner would use for a short from-scratch CPU budget: image and
  mask augmented together (flips, 90-degree and free rotation, scale/shift, colour), BCE +
  soft Dice (the loss then also sees the overlap that Jaccard scores), AdamW with one epoch
  of linear warm-up then cosine decay to zero (by steps, or by the time budget when it is
  the tighter limit), 64-channel score maps, an exponential moving average of the weights
  and flip test-time augmentation at evaluation.
"""

from __future__ import annotations

from typing import Any

from srcrn.errors import ConfigError

RECIPES: dict[str, dict[str, Any]] = {
    "paper": {},
    "strong": {
        "augment": "strong",
        "loss": "bce+dice",
        "optimizer": "adamw",
        "weight_decay": 1e-2,
        "schedule": "cosine",
        "warmup_epochs": 1.0,
        "score_channels": 64,
        "ema_decay": 0.998,
        "tta": True,
    },
}


def recipe_defaults(name: str) -> dict[str, Any]:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe '{name}'; choose one of {', '.join(RECIPES)}")
    return dict(RECIPES[name])
