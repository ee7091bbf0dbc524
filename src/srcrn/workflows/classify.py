"""Stage 2 end to end: train and draw the curves; evaluate, store the operating threshold and
draw the ROC; the batch-size study (paper Table 3), resumable."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import torch
from torchmetrics.functional.classification import binary_roc

from srcrn.atomic import atomic_path
from srcrn.data.splits import Split
from srcrn.evaluation.classification import ClassificationEvaluation, evaluate_classifier
from srcrn.inference.checkpoints import store_extras
from srcrn.inference.predictor import Classifier
from srcrn.reporting.figures import roc_curve_figure, sweep_curves, training_curves
from srcrn.reporting.tables import markdown_table
from srcrn.settings import ClassifyTrainSettings
from srcrn.training.classification import LOGGED, train_classification

log = logging.getLogger(__name__)
SWEEP_COLUMNS = (
    "batch_size",
    "accuracy",
    "auc",
    "auc_ci95_low",
    "auc_ci95_high",
    "sensitivity",
    "specificity",
    "balanced_accuracy",
    "epochs",
    "seconds_per_epoch",
)


def train_classifier(
    settings: ClassifyTrainSettings, data: str | Path, out: str | Path, *, resume: bool = False, progress: bool = True
) -> dict:
    out = Path(out)
    summary = train_classification(settings, data, out, resume=resume, progress=progress)
    if summary and (out / "metrics.csv").is_file():
        training_curves(
            out / "metrics.csv",
            out / "curves.png",
            metrics=LOGGED[:4],
            title=f"classifier ({settings.input}, balance {settings.balance}, batch {settings.batch_size})",
        )
    return summary


def evaluate_classifier_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    ids: list[str] | None = None,
    segmenter: str | None = None,
    cache: str | Path | None = None,
    target_sensitivity: float | None = None,
    progress: bool = True,
) -> ClassificationEvaluation:
    """``classify eval``: predictions, metrics, ``roc.png``; with ``target_sensitivity`` the chosen
    threshold is stored in the checkpoint, where ``predict`` and the bundle take it from."""
    result = evaluate_classifier(
        Classifier.from_checkpoint(checkpoint),
        data,
        out,
        ids=ids,
        segmenter=segmenter,
        cache=cache,
        show_progress=progress,
        target_sensitivity=target_sensitivity,
    )
    metrics = result.metrics
    if target_sensitivity is not None and metrics:
        store_extras(checkpoint, threshold=metrics["threshold"], target_sensitivity=target_sensitivity)
    if metrics and 0 < metrics["n_melanoma"] < metrics["n_images"]:
        fpr, tpr, _ = binary_roc(
            torch.as_tensor(result.predictions["melanoma"].to_numpy(), dtype=torch.float64),
            torch.as_tensor(result.predictions["truth"].to_numpy()).long(),
        )
        roc_curve_figure(fpr.numpy(), tpr.numpy(), metrics, Path(out) / "roc.png")
    return result


def train_and_evaluate(settings: ClassifyTrainSettings, data: str | Path, run: Path, *, progress: bool = True) -> dict:
    """Train a classifier in ``run`` (resuming an interrupted run) and evaluate its best
    checkpoint on the run's validation split in ``run/eval``; both are skipped when done."""
    evaluation = run / "eval"
    if not (evaluation / "metrics.json").is_file():
        if not (run / "summary.json").is_file():
            log.info("training the classifier in %s", run)
            train_classifier(
                settings, data, run, resume=(run / "checkpoints" / "last.ckpt").is_file(), progress=progress
            )
        summary = json.loads((run / "summary.json").read_text())
        evaluate_classifier_checkpoint(
            summary["best_checkpoint"],
            data,
            evaluation,
            ids=Split.load(run).val,
            cache=settings.cache,
            progress=progress,
        )
    else:
        log.info("%s: finished earlier, reusing %s", run, evaluation / "metrics.json")
    return {
        "summary": json.loads((run / "summary.json").read_text()),
        "metrics": json.loads((evaluation / "metrics.json").read_text()),
    }


def batch_size_sweep(
    config: ClassifyTrainSettings, data: str | Path, out: str | Path, batch_sizes: list[int], *, progress: bool = True
) -> pd.DataFrame:
    out = Path(out)
    rows = []
    for batch_size in batch_sizes:
        done = train_and_evaluate(
            config.replace(batch_size=batch_size), data, out / f"batch-{batch_size}", progress=progress
        )
        metrics, summary = done["metrics"], done["summary"]
        rows.append(
            {
                "batch_size": batch_size,
                **{k: metrics[k] for k in SWEEP_COLUMNS[1:8]},
                "epochs": summary["epochs"],
                "seconds_per_epoch": summary["seconds_per_epoch"],
            }
        )
    table = pd.DataFrame(rows, columns=SWEEP_COLUMNS)
    with atomic_path(out / "sweep.csv") as temporary:
        table.to_csv(temporary, index=False)
    with atomic_path(out / "sweep.md") as temporary:
        temporary.write_text(markdown_table(table))
    sweep_curves({b: out / f"batch-{b}" / "metrics.csv" for b in batch_sizes}, out / "sweep.png")
    return table
