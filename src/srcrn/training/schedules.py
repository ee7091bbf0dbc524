"""Learning-rate schedules that also respect a time budget.

A cosine or one-cycle schedule must reach its end when training does. With ``--epochs`` that
is a known number of steps; with ``--time-budget`` it is a wall time, and the number of steps
it allows depends on the machine. ``BudgetedSchedule`` therefore measures progress as the
larger of (steps done / steps planned) and (time used / time budget), so the learning rate
anneals to its floor just as Lightning's ``max_time`` stops the run. Warm-up is in steps.
"""

from __future__ import annotations

import math
from typing import get_args

import lightning as L
from lightning.pytorch.callbacks import Callback, Timer

from srcrn.errors import ConfigError
from srcrn.settings import Schedule

SCHEDULES = get_args(Schedule)
ONECYCLE_START = 1 / 25  # torch OneCycleLR's div_factor
ONECYCLE_END = 1 / 25 / 1e4  # and final_div_factor


def lr_factor(schedule: str, step: int, warmup_steps: int, progress: float) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based), when the
    run is ``progress`` (0..1) of the way through its steps or its time budget."""
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "constant":
        return min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    if schedule == "cosine":
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "onecycle":
        if step < warmup_steps:
            rise = 0.5 * (1.0 - math.cos(math.pi * (step + 1) / warmup_steps))
            return ONECYCLE_START + (1.0 - ONECYCLE_START) * rise
        return ONECYCLE_END + (1.0 - ONECYCLE_END) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ConfigError(f"unknown learning-rate schedule '{schedule}'; choose one of {', '.join(SCHEDULES)}")


class BudgetedSchedule(Callback):
    """Sets every parameter group's learning rate before each training step and logs it."""

    def __init__(self, schedule: str, warmup_epochs: float = 0.0):
        """The learning-rate ``schedule`` after ``warmup_epochs`` of linear warm-up.

        Raises:
            ConfigError: an unknown schedule or a negative warm-up.
        """
        lr_factor(schedule, 0, 0, 0.0)  # refuse an unknown name before training starts
        if warmup_epochs < 0:
            raise ConfigError(f"warm-up of {warmup_epochs} epochs: must be zero or more")
        self.schedule, self.warmup_epochs = schedule, warmup_epochs
        self.base_lrs: list[float] | None = None

    def progress(self, trainer: L.Trainer, warmup_steps: int) -> float:
        """How far through the schedule training is (0..1): by steps, or by the time budget when it runs out sooner."""
        max_epochs = trainer.max_epochs or 0
        planned = int(max_epochs * trainer.num_training_batches) if max_epochs > 0 else 0
        steps = (trainer.global_step - warmup_steps) / max(1, planned - warmup_steps) if planned else 0.0
        timer = next((c for c in getattr(trainer, "callbacks", []) if isinstance(c, Timer)), None)
        remaining = timer.time_remaining("train") if timer is not None else None
        if timer is None or remaining is None:
            return steps
        elapsed = timer.time_elapsed("train")
        spent = elapsed / max(1e-9, elapsed + remaining)
        return max(steps, spent)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        """Set each parameter group's learning rate for this step and log it."""
        optimizer = trainer.optimizers[0]
        if self.base_lrs is None:
            self.base_lrs = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
            for group, base in zip(optimizer.param_groups, self.base_lrs):
                group["initial_lr"] = base
        warmup_steps = round(self.warmup_epochs * trainer.num_training_batches)
        progress = self.progress(trainer, warmup_steps)
        if getattr(trainer, "world_size", 1) > 1:
            # Each process reads its own clock: use rank 0's progress everywhere, or the
            # processes would step with different learning rates and their weights drift apart.
            progress = trainer.strategy.broadcast(progress, src=0)
        factor = lr_factor(self.schedule, trainer.global_step, warmup_steps, progress)
        for group, base in zip(optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        pl_module.log("lr", self.base_lrs[0] * factor, on_step=False, on_epoch=True)
