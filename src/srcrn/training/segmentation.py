"""Stage 1 training: the LightningModule and ``train_segmentation`` (what the CLI calls)."""

from __future__ import annotations

import hashlib
import logging
import re
import warnings
import os
import time
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from torchmetrics import MeanMetric

from srcrn.atomic import atomic_path, write_json
from srcrn.console import console
from srcrn.data.cache import PreparedData, prepare
from srcrn.data.datamodule import IsicDataModule
from srcrn.data.isic import IsicDataset
from srcrn.data.splits import make_split
from srcrn.errors import ConfigError
from srcrn.evaluation.metrics import confusion_counts, scores_from_counts
from srcrn.models import build_segmenter
from srcrn.training.config import SegmentationConfig
from srcrn.training.losses import segmentation_loss

LOGGED = ("loss", "accuracy", "jaccard", "dice")
# Lightning noise that says nothing about the run (advertising, a deprecation inside
# Lightning itself, and the logging-interval hint for short epochs).
_NOISE = ("isinstance(treespec, LeafSpec)", "is smaller than the logging interval", "Tip: For seamless cloud",
          # we refuse to reuse a run folder without --resume, and keep earlier logs ourselves:
          "Experiment logs directory", "exists and is not empty")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in _NOISE)


def quiet_lightning() -> None:
    for handler in logging.getLogger("lightning.pytorch").handlers:
        handler.addFilter(_DropNoise())
    for text in _NOISE:
        warnings.filterwarnings("ignore", message=f".*{re.escape(text)}.*")
MONITOR = "val/jaccard"


class SegmentationTask(L.LightningModule):
    """Trains any segmenter of ``build_segmenter`` with per-image (ISIC-style) metrics."""

    def __init__(
        self,
        arch: str = "srcrn",
        stride: int = 8,
        score_channels: int = 2,
        encoder_weights: str | None = None,
        lr: float = 1e-3,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        loss: str = "bce",
        image_size: int = 128,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = build_segmenter(arch, stride=stride, score_channels=score_channels,
                                     encoder_weights=None if encoder_weights == "none" else encoder_weights)
        self.loss_fn = segmentation_loss(loss)
        # MeanMetric averages per-image scores across batches and, under DDP, across processes.
        self.meters = torch.nn.ModuleDict(
            {f"{stage}_{name}": MeanMetric() for stage in ("train", "val") for name in LOGGED}
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = self(batch["image"])
        loss = self.loss_fn(logits, batch["mask"])
        with torch.no_grad():
            counts = confusion_counts((logits > 0)[:, 0], (batch["mask"] > 0.5)[:, 0])
            scores = scores_from_counts(*(c.double() for c in counts))
            size = len(logits)
            self.meters[f"{stage}_loss"].update(loss.detach(), weight=size)
            for name in ("accuracy", "jaccard", "dice"):
                self.meters[f"{stage}_{name}"].update(scores[name])
        for name in LOGGED:
            self.log(f"{stage}/{name}", self.meters[f"{stage}_{name}"], on_step=False, on_epoch=True,
                     prog_bar=name in ("loss", "jaccard"), batch_size=size)
        return loss

    def training_step(self, batch, batch_index):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_index):
        self._step(batch, "val")

    def configure_optimizers(self):
        params = self.model.parameters()
        name = self.hparams.optimizer
        if name == "adam":
            return torch.optim.Adam(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if name == "adamw":
            return torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        raise ConfigError(f"unknown optimizer '{name}'; choose adam or adamw")


def load_segmenter(checkpoint: str | Path) -> SegmentationTask:
    """A trained task from its checkpoint, on the CPU, in eval mode. Encoder weights come from
    the checkpoint, so no ImageNet file is needed."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ConfigError(f"{checkpoint}: checkpoint not found")
    task = SegmentationTask.load_from_checkpoint(checkpoint, map_location="cpu", encoder_weights=None)
    return task.eval()


def default_cache_dir(data: Path, size: int) -> Path:
    """Per data folder and size, under $SRCRN_CACHE_DIR (default ~/.cache/srcrn/prepared)."""
    root = Path(os.environ.get("SRCRN_CACHE_DIR", Path.home() / ".cache" / "srcrn" / "prepared"))
    key = hashlib.sha1(str(data.resolve()).encode()).hexdigest()[:12]
    return root / f"{data.resolve().name}-{key}-{size}px"


def _parse_devices(devices: str):
    return int(devices) if str(devices).isdigit() else devices


def _max_time(budget: str | None):
    """'25m', '90s', '2h' or 'DD:HH:MM:SS' to Lightning's max_time."""
    if not budget:
        return None
    if ":" in budget:
        return budget
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        seconds = float(budget[:-1]) * units[budget[-1]] if budget[-1] in units else float(budget)
    except ValueError:
        raise ConfigError(f"time budget '{budget}': use e.g. 25m, 90s, 2h") from None
    return {"seconds": int(seconds)}


def _keep_earlier_logs(folder: Path) -> None:
    """Lightning's CSV logger deletes an existing metrics.csv: keep a resumed run's history."""
    current = folder / "metrics.csv"
    if current.is_file():
        attempt = len(list(folder.glob("metrics.part*.csv")))
        current.rename(folder / f"metrics.part{attempt:02d}.csv")


def _merge_logs(folder: Path, target: Path) -> bool:
    """All attempts' per-epoch rows, in step order, as one ``metrics.csv``."""
    parts = sorted(folder.glob("metrics.part*.csv")) + [p for p in [folder / "metrics.csv"] if p.is_file()]
    if not parts:
        return False
    merged = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True).sort_values(["epoch", "step"], kind="stable")
    with atomic_path(target) as temporary:
        merged.to_csv(temporary, index=False)
    return True


def train_segmentation(
    config: SegmentationConfig, data: str | Path, out: str | Path, *, resume: bool = False, progress: bool = True
) -> dict:
    """Prepare the data, split it, train, checkpoint (best by validation Jaccard, and last),
    log per-epoch metrics to ``metrics.csv`` and draw the curves. Returns a summary."""
    data, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    last = out / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise ConfigError(f"{last}: nothing to resume from")
    if not resume and last.is_file():
        raise ConfigError(f"{out}: already holds a run; pass --resume to continue it, or choose another --out")
    L.seed_everything(config.seed, workers=True, verbose=False)

    dataset = IsicDataset.from_dir(data, require_masks=True)
    cache = Path(config.cache) if config.cache else default_cache_dir(data, config.image_size)
    prepared: PreparedData = prepare(dataset, config.image_size, cache, show_progress=progress)
    split = make_split(dataset, config.split, seed=config.seed, val_fraction=config.val_fraction)
    for note in split.notes:
        console.print(f"note: {note}", soft_wrap=True)
    split.save(out)
    config.save(out / "config.yaml")

    module = IsicDataModule(prepared, split, batch_size=config.batch_size, augment=config.augment,
                            steps_per_epoch=config.steps_per_epoch, num_workers=config.num_workers,
                            eval_batch_size=config.eval_batch_size, seed=config.seed)
    task = SegmentationTask(arch=config.arch, stride=config.stride, score_channels=config.score_channels,
                            encoder_weights=config.encoder_weights, lr=config.lr, optimizer=config.optimizer,
                            weight_decay=config.weight_decay, loss=config.loss, image_size=config.image_size)
    quiet_lightning()
    checkpoints = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=MONITOR, mode="max",
                                  save_last=True, auto_insert_metric_name=False)
    trainer = L.Trainer(
        default_root_dir=out,
        max_epochs=config.epochs,
        max_time=_max_time(config.time_budget),
        accelerator=config.accelerator,
        devices=_parse_devices(config.devices),
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=config.precision,
        logger=CSVLogger(out, name="logs", version=""),
        callbacks=[checkpoints] + ([RichProgressBar(console_kwargs={"stderr": True})] if progress else []),
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=10,
        num_sanity_val_steps=0,
    )
    _keep_earlier_logs(out / "logs")
    started = time.perf_counter()
    trainer.fit(task, datamodule=module, ckpt_path=str(last) if resume else None)
    wall = time.perf_counter() - started
    if not last.is_file() or trainer.interrupted or trainer.current_epoch < config.epochs:
        # A time budget or an interruption can stop mid-epoch, before any epoch-end save.
        # (Every process calls this: under DDP it is a collective operation.)
        trainer.save_checkpoint(last)
    if not trainer.is_global_zero:
        return {}
    summary = {
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "wall_seconds": round(wall, 1),
        "best_checkpoint": checkpoints.best_model_path or str(last),
        "best_val_jaccard": float(checkpoints.best_model_score) if checkpoints.best_model_score is not None else None,
        "last_checkpoint": str(last),
        "n_train": len(split.train),
        "n_val": len(split.val),
    }
    write_json(out / "summary.json", summary)
    from srcrn.reporting.figures import training_curves

    if _merge_logs(out / "logs", out / "metrics.csv"):
        training_curves(out / "metrics.csv", out / "curves.png", metrics=LOGGED,
                        title=f"{config.arch} stride {config.stride}: training curves")
    return summary
