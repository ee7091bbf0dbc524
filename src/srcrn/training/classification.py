"""Stage 2 training: the melanoma classifier's LightningModule and ``train_classification``.

Inputs are built once (SRCRN masks predicted once and cached), then the head (or, with
``finetune``, the whole network) is trained. The paper's recipe: SGD, Nesterov momentum and
the Keras-style inverse-time learning-rate decay lr_t = lr0 / (1 + lr_decay * t), t = updates.
The ``strong`` recipe: AdamW with the backbone at a fraction of the head's learning rate,
warm-up and cosine decay to the time budget, label smoothing, class-balanced sampling,
augmentation of every image and a moving average of the weights.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryRecall, BinarySpecificity

from srcrn.atomic import write_json
from srcrn.data.lesion_dataset import LesionDataModule, LesionDataset
from srcrn.data.segmented import LesionData, lesion_data
from srcrn.data.splits import Split, make_split
from srcrn.models import MelanomaClassifier
from srcrn.runtime.segmenter import load_segmenter
from srcrn.settings import ClassifyTrainSettings
from srcrn.shapes import square_side
from srcrn.training.balance import balance_rows, deduplicate
from srcrn.training.runner import check_run_folder, fit, training_callbacks
from srcrn.training.task import STAGES, SrcrnTask

log = logging.getLogger(__name__)
LOGGED = ("loss", "accuracy", "auc", "sensitivity", "specificity")
MONITOR = "val/auc"


def inverse_time_decay(lr_decay: float):
    """Keras ``SGD(decay=...)``: the factor applied to lr0 after t updates."""
    return lambda step: 1.0 / (1.0 + lr_decay * step)


class ClassificationTask(SrcrnTask):
    """Trains the melanoma classifier. Its checkpoints say what they hold (``srcrn`` entry)."""

    SCHEMA = ClassifyTrainSettings
    KIND = "classifier"
    model: MelanomaClassifier

    def __init__(self, settings: ClassifyTrainSettings | dict, threshold: float = 0.5):
        """Build the classifier and its meters from ``settings``.

        Args:
            settings: the run's settings (a dict: from a checkpoint).
            threshold: the decision threshold of the accuracy, sensitivity and specificity meters.
        """
        super().__init__(settings)
        config: ClassifyTrainSettings = self.settings
        self.model = MelanomaClassifier(
            weights=None if config.weights == "none" else config.weights,
            finetune=config.finetune,
            dropout=config.dropout,
            encoder=config.encoder,
            backbone_size=config.backbone_size,
            pooling=config.pooling,
        )
        for stage in STAGES:
            self.meters[f"{stage}_loss"] = MeanMetric()
            self.meters[f"{stage}_accuracy"] = BinaryAccuracy(threshold=threshold)
            self.meters[f"{stage}_auc"] = BinaryAUROC()
            self.meters[f"{stage}_sensitivity"] = BinaryRecall(threshold=threshold)
            self.meters[f"{stage}_specificity"] = BinarySpecificity(threshold=threshold)

    def _step(self, batch, stage: str) -> torch.Tensor:
        logits = self(batch["image"])
        target = batch["label"]
        if stage == "train" and self.settings.label_smoothing:
            target = target * (1.0 - self.settings.label_smoothing) + self.settings.label_smoothing / 2
        loss = F.binary_cross_entropy_with_logits(logits, target)
        probability, target = torch.sigmoid(logits.detach()), batch["label"].long()
        self._meter(f"{stage}_loss").update(loss.detach(), weight=len(logits))
        for name in LOGGED[1:]:
            self._meter(f"{stage}_{name}").update(probability, target)
        self._log_meters(stage, LOGGED, ("loss", "auc"), len(logits))
        return loss

    def configure_optimizers(self):
        """SGD (Nesterov) or AdamW, the backbone at ``backbone_lr`` of the head's rate when it
        trains; the inverse-time decay per update (the paper's), other schedules by callback."""
        s = self.settings
        groups = [{"params": list(self.model.head.parameters()), "lr": s.lr}]
        backbone = [p for p in self.model.backbone.parameters() if p.requires_grad]
        if backbone:  # fine-tuning: the pretrained layers move more slowly than the new head
            groups.append({"params": backbone, "lr": s.lr * s.backbone_lr})
        optimizer: torch.optim.Optimizer
        if s.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                groups, lr=s.lr, momentum=s.momentum, nesterov=s.nesterov, weight_decay=s.weight_decay
            )
        else:
            optimizer = torch.optim.AdamW(groups, lr=s.lr, weight_decay=s.weight_decay)
        if s.schedule != "inverse-time":
            return optimizer  # the schedule is a callback (BudgetedSchedule): it follows the time budget
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, inverse_time_decay(s.lr_decay))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def classification_callbacks(settings: ClassifyTrainSettings) -> list[L.Callback]:
    """The Lightning callbacks of a stage-2 recipe: its schedule (the inverse-time decay is the optimizer's own), warm-up and weight averaging."""
    schedule = "constant" if settings.schedule == "inverse-time" else settings.schedule
    warmup = settings.warmup_epochs if settings.schedule != "inverse-time" else 0.0
    return training_callbacks(schedule, warmup, settings.ema_decay)


def train_classification(
    config: ClassifyTrainSettings,
    data: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    split: Split | None = None,
) -> dict:
    """Train on ``split`` (default: the settings' split of ``data``); checkpoints, ``metrics.csv``
    and ``summary.json`` (whose ``model_checkpoint`` is the one ``select`` keeps) in ``out``."""
    data, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    resume = check_run_folder(out, resume)
    L.seed_everything(config.seed, workers=True, verbose=False)
    need_masks = config.balance == "augment" and config.augment in ("axis", "mix")
    main = lesion_data(
        data,
        image_size=square_side(config.image_size),
        input_mode=config.input,
        margin=config.margin,
        segmenter=load_segmenter(config.segmenter),
        need_masks=need_masks,
        cache=config.cache,
        progress=progress,
    )
    if split is None:
        split = make_split(main.dataset, config.split, seed=config.seed, val_fraction=config.val_fraction)
    notes = list(split.notes)
    train_rows, val_rows = main.prepared.positions(split.train), main.prepared.positions(split.val)
    labels = main.prepared.melanoma

    extra: LesionData | None = None
    extra_rows, extra_labels = np.zeros(0, np.int64), None
    if config.balance == "extra" and config.extra:
        extra = lesion_data(
            config.extra,
            image_size=square_side(config.image_size),
            input_mode=config.input,
            margin=config.margin,
            segmenter=load_segmenter(config.segmenter),
            progress=progress,
        )
        # Never train on an image that is also evaluated: drop extra images sharing an id or
        # the pixels with any image of the main data (validation included).
        extra_rows, dropped = deduplicate(
            extra.prepared.ids,
            np.asarray(extra.prepared.images),
            set(main.prepared.ids),
            np.asarray(main.prepared.images),
        )
        extra_labels = extra.prepared.melanoma[extra_rows]
        notes.append(
            f"extra: {len(extra.prepared.ids)} images read, {dropped['same_id']} dropped for a shared id, "
            f"{dropped['same_pixels']} for shared pixel content, {len(extra_rows)} kept"
        )
    balanced = balance_rows(
        labels[train_rows], config.balance, ratio=config.ratio, extra_labels=extra_labels, seed=config.seed
    )
    notes += balanced.notes
    for note in notes:
        log.info("note: %s", note)

    def pick(source: int, kind: str) -> np.ndarray | None:
        rows = balanced.row[balanced.source == source]
        rows = train_rows[rows] if source == 0 else extra_rows[rows]
        origin = main if source == 0 or extra is None else extra
        if kind == "labels":
            return origin.prepared.melanoma[rows]
        array = origin.inputs if kind == "inputs" else origin.masks
        return None if array is None else np.asarray(array)[rows]

    sources = [0, 1] if extra is not None else [0]
    train_masks = [pick(s, "masks") for s in sources]
    present_masks = [m for m in train_masks if m is not None]
    train_set = LesionDataset(
        np.concatenate([cast(np.ndarray, pick(s, "inputs")) for s in sources]),
        np.concatenate([cast(np.ndarray, pick(s, "labels")) for s in sources]),
        np.concatenate([balanced.augmented[balanced.source == s] for s in sources]),
        np.concatenate(present_masks) if len(present_masks) == len(train_masks) else None,
        family=config.augment,
        seed=config.seed,
        train_augment=config.train_augment,
    )
    val_set = LesionDataset(main.inputs[val_rows], labels[val_rows])
    module = LesionDataModule(
        train_set,
        val_set,
        batch_size=config.batch_size,
        eval_batch_size=config.eval_batch_size,
        num_workers=config.num_workers,
        sampler=config.sampler,
        seed=config.seed,
    )

    split.save(out)
    config.save(out / "config.yaml")
    if config.probe:  # the head fitted once, to convergence: no epochs (training.probe)
        from srcrn.training.probe import train_probe

        summary = train_probe(config, (train_set.images, train_set.labels), (val_set.images, val_set.labels), out)
    else:
        task = ClassificationTask(config)
        summary = fit(
            task,
            module,
            config,
            out,
            monitor=MONITOR,
            resume=resume,
            progress=progress,
            callbacks=classification_callbacks(config),
        )
        if not summary:
            return summary
        summary["model_checkpoint"] = summary["best_checkpoint" if config.select == "best" else "last_checkpoint"]
    n_melanoma = int(train_set.labels.sum())
    summary.update(
        n_train=len(train_set),
        n_train_melanoma=n_melanoma,
        n_train_benign=len(train_set) - n_melanoma,
        n_augmented=int(train_set.augmented.sum()),
        n_val=len(val_set),
        notes=notes,
    )
    write_json(out / "summary.json", summary)
    return summary
