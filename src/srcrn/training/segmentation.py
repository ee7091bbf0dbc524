"""Stage 1 training: the LightningModule and ``train_segmentation`` (what the CLI calls)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import cast

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAUROC

from srcrn.atomic import write_json
from srcrn.data.cache import PreparedData, default_cache_dir, prepare
from srcrn.data.datamodule import IsicDataModule
from srcrn.data.isic import IsicDataset
from srcrn.data.splits import make_split
from srcrn.evaluation.metrics import confusion_counts, scores_from_counts
from srcrn.models import build_segmenter
from srcrn.models.srcrn import SRCRN
from srcrn.settings import SegmentTrainSettings
from srcrn.training.losses import segmentation_loss
from srcrn.training.runner import check_run_folder, fit, training_callbacks
from srcrn.training.task import STAGES, SrcrnTask

log = logging.getLogger(__name__)
LOGGED = ("loss", "accuracy", "jaccard", "dice")
MONITOR = "val/jaccard"


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


class SegmentationTask(SrcrnTask):
    """Trains any segmenter of ``build_segmenter`` with per-image (ISIC-style) metrics. Its
    checkpoints say what they hold (``srcrn`` entry: kind, version, settings), so that the
    prediction path can rebuild the model without this class."""

    SCHEMA = SegmentTrainSettings
    KIND = "segmenter"

    def __init__(self, settings: SegmentTrainSettings | dict):
        """Build the segmenter, its loss and meters from ``settings``.

        Args:
            settings: the run's settings (a dict: from a checkpoint).
        """
        super().__init__(settings)
        config: SegmentTrainSettings = self.settings
        self.model = build_segmenter(
            config.arch,
            stride=config.stride,
            score_channels=config.score_channels,
            encoder_weights=None if config.encoder_weights == "none" else config.encoder_weights,
            encoder=config.encoder,
        )
        self.loss_fn = segmentation_loss(config.loss)
        # MeanMetric averages per-image scores across batches and, under DDP, across processes.
        self.meters.update({f"{stage}_{name}": MeanMetric() for stage in STAGES for name in LOGGED})
        # Joint training (--aux-melanoma): a melanoma head on the pooled deepest encoder features,
        # outside ``model`` (the segmenter stays what it was; the encoder learns melanoma cues
        # that a classifier with weights srcrn:CKPT inherits).
        self.melanoma_head: torch.nn.Module | None = None
        if config.aux_melanoma:
            self.melanoma_head = torch.nn.Sequential(
                torch.nn.Dropout(0.2), torch.nn.Linear(cast(SRCRN, self.model).channels["c5"], 1)
            )
            for stage in STAGES:
                self.meters[f"{stage}_melanoma_auc"] = BinaryAUROC()

    def _melanoma_loss(self, features: dict[str, torch.Tensor], labels: torch.Tensor, stage: str) -> torch.Tensor:
        assert self.melanoma_head is not None
        known = ~torch.isnan(labels)  # unlabelled images teach the mask only
        melanoma = self.melanoma_head(features["c5"].mean(dim=(2, 3))).squeeze(1)
        if not known.any():
            return melanoma.sum() * 0.0
        loss = F.binary_cross_entropy_with_logits(melanoma[known], labels[known])
        meter = self._meter(f"{stage}_melanoma_auc")
        meter.update(torch.sigmoid(melanoma[known].detach()), labels[known].long())
        self.log(f"{stage}/melanoma_auc", meter, on_step=False, on_epoch=True, batch_size=int(known.sum()))
        return loss

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        if self.melanoma_head is None:
            logits = self(batch["image"])
            loss = self.loss_fn(logits, batch["mask"])
        else:
            model = cast(SRCRN, self.model)  # aux_melanoma is validated to need SRCRN
            features = model.forward_features(batch["image"])
            logits = model.forward_head(features)
            loss = self.loss_fn(logits, batch["mask"]) + self.settings.aux_melanoma * self._melanoma_loss(
                features, batch["label"], stage
            )
        with torch.no_grad():
            counts = confusion_counts((logits > 0)[:, 0], (batch["mask"] > 0.5)[:, 0])
            scores = scores_from_counts(*(c.double() for c in counts))
            size = len(logits)
            self._meter(f"{stage}_loss").update(loss.detach(), weight=size)
            for name in ("accuracy", "jaccard", "dice"):
                self._meter(f"{stage}_{name}").update(scores[name])
        self._log_meters(stage, LOGGED, ("loss", "jaccard"), size)
        return loss

    def configure_optimizers(self):
        """Adam or AdamW over every parameter (the paper: Adam, lr 1e-3)."""
        return OPTIMIZERS[self.settings.optimizer](
            self.parameters(), lr=self.settings.lr, weight_decay=self.settings.weight_decay
        )


def train_segmentation(
    config: SegmentTrainSettings, data: str | Path, out: str | Path, *, resume: bool = False, progress: bool = True
) -> dict:
    """Prepare the data, split it, train, checkpoint (best by validation Jaccard, and last)
    and log per-epoch metrics to ``metrics.csv``. Returns a summary (drawing the curves is
    the reporting layer's job)."""
    data, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    resume = check_run_folder(out, resume)
    L.seed_everything(config.seed, workers=True, verbose=False)

    dataset = IsicDataset.from_dir(data, require_masks=True)
    cache = Path(config.cache) if config.cache else default_cache_dir(data, config.image_size)
    prepared: PreparedData = prepare(dataset, config.image_size, cache, show_progress=progress)
    split = make_split(dataset, config.split, seed=config.seed, val_fraction=config.val_fraction)
    for note in split.notes:
        log.info("note: %s", note)
    split.save(out)
    config.save(out / "config.yaml")

    module = IsicDataModule(
        prepared,
        split,
        batch_size=config.batch_size,
        augment=config.augment,
        steps_per_epoch=config.steps_per_epoch,
        num_workers=config.num_workers,
        eval_batch_size=config.eval_batch_size,
        seed=config.seed,
    )
    task = SegmentationTask(config)
    summary = fit(
        task,
        module,
        config,
        out,
        monitor=MONITOR,
        resume=resume,
        progress=progress,
        callbacks=training_callbacks(config.schedule, config.warmup_epochs, config.ema_decay),
    )
    if not summary:
        return summary
    summary.update(n_train=len(split.train), n_val=len(split.val))
    write_json(out / "summary.json", summary)
    return summary
