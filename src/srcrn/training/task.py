"""What both training tasks share: settings in and recorded, checkpoints that say what they hold,
the step called for training and validation, and per-epoch logging of torchmetrics meters."""

from __future__ import annotations

from typing import Any, ClassVar, cast

import lightning as L
import torch
from torchmetrics import Metric

from srcrn.runtime.checkpoints import Kind, checkpoint_entry
from srcrn.settings import Settings

STAGES = ("train", "val")


class SrcrnTask(L.LightningModule):
    """Base of ``SegmentationTask`` and ``ClassificationTask``.

    A subclass names its settings schema (``SCHEMA``), the kind its checkpoints hold (``KIND``,
    read back by ``inference.checkpoints`` without this class), builds ``self.model`` and
    ``self.meters`` (``{stage}_{name}`` torchmetrics), and implements ``_step``.
    """

    SCHEMA: ClassVar[type[Settings]]
    KIND: ClassVar[Kind]
    model: torch.nn.Module

    def __init__(self, settings: Settings | dict) -> None:
        """Validate ``settings`` (a dict: from a checkpoint's hyperparameters) and record them.

        Args:
            settings: the run's settings, as the schema or as its dict.
        """
        super().__init__()
        if isinstance(settings, dict):
            settings = self.SCHEMA.model_validate(settings)
        self.settings: Any = settings
        self.save_hyperparameters({"settings": settings.to_dict()})
        self.meters = torch.nn.ModuleDict()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Add the ``srcrn`` entry (kind, version, settings) that the prediction path reads."""
        checkpoint["srcrn"] = checkpoint_entry(self.KIND, self.settings.to_dict())

    def _meter(self, name: str) -> Metric:
        return cast(Metric, self.meters[name])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The model's logits for a normalised batch."""
        return self.model(images)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        raise NotImplementedError

    def _log_meters(self, stage: str, names: tuple[str, ...], shown: tuple[str, ...], size: int) -> None:
        """Log the meters ``{stage}_{name}`` once per epoch as ``{stage}/{name}`` (``shown`` on
        the progress bar); ``size`` weighs the batch."""
        for name in names:
            self.log(
                f"{stage}/{name}",
                self._meter(f"{stage}_{name}"),
                on_step=False,
                on_epoch=True,
                prog_bar=name in shown,
                batch_size=size,
            )

    def training_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> torch.Tensor:
        """One training step: the loss."""
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        """One validation step (metrics only)."""
        self._step(batch, "val")
