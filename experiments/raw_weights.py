"""Ablation helper: a copy of a checkpoint trained with ``--ema-decay`` whose model weights are
the raw (not averaged) ones, so ``srcrn segment eval`` can score both.

    python experiments/raw_weights.py RUN/checkpoints/best.ckpt RUN/raw-best.ckpt
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from srcrn.atomic import atomic_path


def main(source: str, target: str) -> None:
    checkpoint = torch.load(source, map_location="cpu", weights_only=False)
    if "current_model_state" not in checkpoint:
        sys.exit(f"{source}: holds no raw weights (was it trained with --ema-decay?)")
    checkpoint["state_dict"] = checkpoint.pop("current_model_state")
    checkpoint.pop("averaging_state", None)
    with atomic_path(Path(target)) as temporary:
        torch.save(checkpoint, temporary)
    print(f"{target}: raw weights of {source}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
