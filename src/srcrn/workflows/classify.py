"""Stage 2 end to end: train and draw the curves; evaluate, store the operating threshold and
draw the ROC; the batch-size study (paper Table 3), resumable."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torchmetrics.functional.classification import binary_roc

from srcrn.atomic import atomic_path, read_json
from srcrn.bundle.reading import bundle_models, names_a_bundle
from srcrn.commands import ClassifyEvalSettings
from srcrn.data.splits import Split
from srcrn.errors import ConfigError
from srcrn.evaluation.calibration import reliability_curve
from srcrn.evaluation.classification import ClassificationEvaluation, evaluate_classifier
from srcrn.reporting.figures import reliability_figure, roc_curve_figure, sweep_curves, training_curves
from srcrn.reporting.tables import markdown_table
from srcrn.settings import ClassifyTrainSettings
from srcrn.stage2.registry import load_melanoma_model
from srcrn.training.classification import LOGGED, train_classification
from srcrn.training.summary import read_summary

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
    """``classify train``: the CNN (curves drawn), the lesion-feature model, or the stack of
    finished ``classify cv`` folders."""
    out = Path(out)
    if settings.model == "features":
        from srcrn.training.features import train_feature_model

        return train_feature_model(settings, data, out, resume=resume, progress=progress)
    if settings.model == "ensemble":
        from srcrn.workflows.stacking import train_stack

        return train_stack(settings, out, data)
    summary = train_classification(settings, data, out, resume=resume, progress=progress)
    if summary and (out / "metrics.csv").is_file():
        training_curves(
            out / "metrics.csv",
            out / "curves.png",
            metrics=LOGGED[:4],
            title=f"classifier ({settings.input}, balance {settings.balance}, batch {settings.batch_size})",
        )
    return summary


# What classify eval writes into its --out.
EVAL_FILES = ClassifyEvalSettings.output_rule.writes


def evaluate_classifier_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    ids: list[str] | None = None,
    segmenter: str | None = None,
    cache: str | Path | None = None,
    target_sensitivity: float | None = None,
    calibrate: str | None = None,
    progress: bool = True,
    metadata: str | Path | None = None,
) -> ClassificationEvaluation:
    """``classify eval``: predictions, metrics (discrimination and calibration), ``roc.png`` and
    ``reliability.png``. A calibration fitted here (``calibrate``) and the threshold chosen for
    ``target_sensitivity`` are stored in the model, where ``predict`` and the bundle take them from."""
    stage1: Any = segmenter
    turns: tuple[float, ...] = ()
    if names_a_bundle(checkpoint):  # a bundle's own segmenter cuts the lesions, as predict does
        if segmenter is not None or target_sensitivity is not None or calibrate:
            raise ConfigError(
                f"--model {checkpoint}: a bundle is evaluated as it is (its own segmenter, threshold and "
                "calibration); --segmenter, --target-sensitivity and --calibrate are for checkpoints"
            )
        stage1, model, _ = bundle_models(checkpoint)
        from srcrn.inference.pipeline import SPREAD_ANGLES

        turns = SPREAD_ANGLES  # its answers as predict gives them: the mean over the lesion as given and turned
    else:
        model = load_melanoma_model(checkpoint)
    if segmenter is not None:  # checked even where the model's input mode would not use it
        from srcrn.runtime.checkpoints import read_checkpoint

        read_checkpoint(segmenter, expect="segmenter")
    result = evaluate_classifier(
        model,
        data,
        out,
        ids=ids,
        segmenter=stage1,
        metadata=metadata,
        cache=cache,
        show_progress=progress,
        target_sensitivity=target_sensitivity,
        calibrate=calibrate,
        turns=turns,
    )
    metrics = result.metrics
    extras: dict = {}
    if calibrate and metrics:
        c = result.calibration
        extras["calibration"] = {"method": c.method, "scale": c.scale, "bias": c.bias, "fitted_on": str(data)}
    if target_sensitivity is not None and metrics:
        extras |= {"threshold": metrics["threshold"], "target_sensitivity": target_sensitivity}
    if extras:
        model.store_extras(**extras)
    if metrics and 0 < metrics["n_melanoma"] < metrics["n_images"]:
        truth, probability = result.predictions["truth"].to_numpy(), result.predictions["melanoma"].to_numpy()
        fpr, tpr, _ = binary_roc(torch.as_tensor(probability, dtype=torch.float64), torch.as_tensor(truth).long())
        roc_curve_figure(fpr.numpy(), tpr.numpy(), metrics, Path(out) / "roc.png")
        name = "uncalibrated" if result.calibration.method == "none" else f"{result.calibration.method}-calibrated"
        reliability_figure(
            {f"{name} (ECE {metrics['ece']:.3f})": reliability_curve(truth, probability)},
            f"{metrics['n_melanoma']} melanoma, {metrics['n_benign']} benign",
            Path(out) / "reliability.png",
        )
    return result


def train_and_evaluate(settings: ClassifyTrainSettings, data: str | Path, run: Path, *, progress: bool = True) -> dict:
    """Train a classifier in ``run`` (resuming an interrupted run) and evaluate its best
    checkpoint on the run's validation split in ``run/eval``; both are skipped when done."""
    evaluation = run / "eval"
    if not (evaluation / "metrics.json").is_file():
        if not (run / "summary.json").is_file():
            log.info("training the classifier in %s", run)
            train_classifier(settings, data, run, resume=(run / "config.yaml").is_file(), progress=progress)
        evaluate_classifier_checkpoint(
            read_summary(run).model,
            data,
            evaluation,
            ids=Split.load(run).val,
            cache=settings.cache,
            progress=progress,
        )
    else:
        log.info("%s: finished earlier, reusing %s", run, evaluation / "metrics.json")
    return {
        "summary": read_json(run / "summary.json"),
        "metrics": read_json(evaluation / "metrics.json"),
    }


def batch_size_sweep(
    config: ClassifyTrainSettings, data: str | Path, out: str | Path, batch_sizes: list[int], *, progress: bool = True
) -> pd.DataFrame:
    """The batch-size study (paper Table 3): one run per size in ``out/batch-N`` (each resumed or reused when done), then sweep.csv, sweep.md and sweep.png.

    Returns:
        One row per batch size: validation metrics, epochs and wall time.
    """
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
