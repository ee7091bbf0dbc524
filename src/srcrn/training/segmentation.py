"""Stage 1 training: the LightningModule and ``train_segmentation`` (what the CLI calls)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torchmetrics import MeanMetric

from srcrn.atomic import write_json
from srcrn.console import console
from srcrn.data.cache import PreparedData, default_cache_dir, prepare
from srcrn.data.datamodule import IsicDataModule
from srcrn.data.isic import IsicDataset
from srcrn.data.splits import make_split
from srcrn.errors import ConfigError
from srcrn.evaluation.metrics import confusion_counts, scores_from_counts
from srcrn.models import build_segmenter
from srcrn.training.config import SegmentationConfig
from srcrn.reporting.figures import training_curves
from srcrn.training.losses import segmentation_loss
from srcrn.training.runner import check_run_folder, fit
from srcrn.training.schedules import BudgetedSchedule

LOGGED = ("loss", "accuracy", "jaccard", "dice")
MONITOR = "val/jaccard"


OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer '{name}'; choose {' or '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]


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
        recipe: str = "paper",
        tta: bool = False,
    ):
        """``recipe`` and ``tta`` are kept for evaluation: ``segment eval`` uses flip test-time
        augmentation by default when the recipe trained for it."""
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
        return optimizer_class(self.hparams.optimizer)(self.model.parameters(), lr=self.hparams.lr,
                                                       weight_decay=self.hparams.weight_decay)


def load_segmenter(checkpoint: str | Path) -> SegmentationTask:
    """A trained task from its checkpoint, on the CPU, in eval mode. Encoder weights come from
    the checkpoint, so no ImageNet file is needed."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ConfigError(f"{checkpoint}: checkpoint not found")
    task = SegmentationTask.load_from_checkpoint(checkpoint, map_location="cpu", encoder_weights=None)
    return task.eval()


def check_settings(config: SegmentationConfig) -> None:
    """Refuse unknown names and impossible values before any data is read."""
    from srcrn.data.transforms import build_transform
    from srcrn.models.srcrn import check_architecture

    check_architecture(config.arch)
    optimizer_class(config.optimizer)
    segmentation_loss(config.loss)
    build_transform(config.augment)
    training_callbacks(config)


def training_callbacks(config: SegmentationConfig) -> list[L.Callback]:
    """The learning-rate schedule and, when asked for, the moving average of the weights.
    With the average, validation and every checkpoint's ``state_dict`` hold the averaged
    weights; checkpoints saved during training also keep the raw ones, for resuming (Lightning
    copies the average into the model when training ends, so a final save holds it twice)."""
    callbacks: list[L.Callback] = []
    if config.schedule != "constant" or config.warmup_epochs:
        callbacks.append(BudgetedSchedule(config.schedule, config.warmup_epochs))
    if config.ema_decay:
        if not 0 < config.ema_decay < 1:
            raise ConfigError(f"ema_decay {config.ema_decay}: choose a value in (0, 1), e.g. 0.998, or 0 for none")
        from lightning.pytorch.callbacks import EMAWeightAveraging

        callbacks.append(EMAWeightAveraging(decay=config.ema_decay))
    return callbacks


def train_segmentation(
    config: SegmentationConfig, data: str | Path, out: str | Path, *, resume: bool = False, progress: bool = True
) -> dict:
    """Prepare the data, split it, train, checkpoint (best by validation Jaccard, and last),
    log per-epoch metrics to ``metrics.csv`` and draw the curves. Returns a summary."""
    data, out = Path(data), Path(out)
    check_settings(config)
    out.mkdir(parents=True, exist_ok=True)
    check_run_folder(out, resume)
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
                            weight_decay=config.weight_decay, loss=config.loss, image_size=config.image_size,
                            recipe=config.recipe, tta=config.tta)
    summary = fit(task, module, config, out, monitor=MONITOR, resume=resume, progress=progress,
                  callbacks=training_callbacks(config))
    if not summary:
        return summary
    summary.update(n_train=len(split.train), n_val=len(split.val))
    write_json(out / "summary.json", summary)
    if (out / "metrics.csv").is_file():
        training_curves(out / "metrics.csv", out / "curves.png", metrics=LOGGED,
                        title=f"{config.arch} stride {config.stride}: training curves")
    return summary
