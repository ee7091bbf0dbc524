"""The batch-size study (paper Table 3): one classifier run per batch size, then a table and
a figure. Finished runs are skipped, so an interrupted sweep continues where it stopped."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from srcrn.atomic import atomic_path
from srcrn.console import console
from srcrn.data.splits import Split
from srcrn.evaluation.classification import evaluate_classifier
from srcrn.reporting.figures import sweep_curves
from srcrn.training.classification import load_classifier, train_classification
from srcrn.training.config import ClassificationConfig

COLUMNS = ("batch_size", "accuracy", "auc", "auc_ci95_low", "auc_ci95_high", "sensitivity", "specificity",
           "balanced_accuracy", "epochs", "seconds_per_epoch")


def train_and_evaluate(settings: ClassificationConfig, data: str | Path, run: Path, *, progress: bool = True) -> dict:
    """Train a classifier in ``run`` (resuming an interrupted run) and evaluate its best
    checkpoint on the run's validation split in ``run/eval``; both are skipped when done."""
    evaluation = run / "eval"
    if not (evaluation / "metrics.json").is_file():
        if not (run / "summary.json").is_file():
            console.print(f"training the classifier in {run}")
            train_classification(settings, data, run, resume=(run / "checkpoints" / "last.ckpt").is_file(),
                                 progress=progress)
        summary = json.loads((run / "summary.json").read_text())
        evaluate_classifier(load_classifier(summary["best_checkpoint"]), data, evaluation, ids=Split.load(run).val,
                            cache=settings.cache, show_progress=progress)
    else:
        console.print(f"{run}: finished earlier, reusing {evaluation / 'metrics.json'}")
    return {"summary": json.loads((run / "summary.json").read_text()),
            "metrics": json.loads((evaluation / "metrics.json").read_text())}


def batch_size_sweep(config: ClassificationConfig, data: str | Path, out: str | Path, batch_sizes: list[int], *,
                     progress: bool = True) -> pd.DataFrame:
    out = Path(out)
    rows = []
    for batch_size in batch_sizes:
        done = train_and_evaluate(dataclasses.replace(config, batch_size=batch_size), data,
                                  out / f"batch-{batch_size}", progress=progress)
        metrics, summary = done["metrics"], done["summary"]
        rows.append({"batch_size": batch_size, **{k: metrics[k] for k in COLUMNS[1:8]},
                     "epochs": summary["epochs"], "seconds_per_epoch": summary["seconds_per_epoch"]})
    table = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_path(out / "sweep.csv") as temporary:
        table.to_csv(temporary, index=False)
    with atomic_path(out / "sweep.md") as temporary:
        temporary.write_text(markdown_table(table))
    sweep_curves({b: out / f"batch-{b}" / "metrics.csv" for b in batch_sizes}, out / "sweep.png")
    return table


def markdown_table(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    cells = ["| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |"
             for row in table.itertuples(index=False)]
    return header + "\n".join(cells) + "\n"
