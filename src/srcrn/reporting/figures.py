"""Figures: training curves (paper Fig. 4) and segmentation overlays (paper Fig. 5)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from srcrn.atomic import atomic_path


def save_figure(figure, path: Path) -> Path:
    """Write atomically: a reader never sees half a PNG."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return Path(path)


def training_curves(
    metrics_csv: Path, out: Path, metrics=("loss", "accuracy", "jaccard", "dice"), title: str = ""
) -> Path:
    """One panel per metric, train and validation per epoch, from Lightning's CSV log."""
    table = pd.read_csv(metrics_csv)
    figure, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2))
    for axis, name in zip(np.atleast_1d(axes), metrics):
        for stage, style in (("train", "-o"), ("val", "-s")):
            column = f"{stage}/{name}"
            if column in table:
                series = table[["epoch", column]].dropna().groupby("epoch")[column].last()
                axis.plot(series.index + 1, series.values, style, markersize=3, label=stage)
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend()
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        figure.suptitle(title, y=1.03)
    return save_figure(figure, out)


def segmentation_overlays(cases: list[dict], out: Path, per_row: int = 4) -> Path:
    """Rows of best, middling and worst cases: the image with the truth (green) and the
    prediction (red) contours. Each case: image (HxWx3 uint8, or its path: only the images
    drawn are decoded), truth, prediction (bool HxW), image_id, jaccard."""
    from srcrn.data.images import read_image

    ranked = sorted(cases, key=lambda case: case["jaccard"], reverse=True)
    per_row = max(1, min(per_row, len(ranked) // 3))  # few cases: no image shown twice
    middle = max(0, len(ranked) // 2 - per_row // 2)
    rows = [("best", ranked[:per_row]), ("middling", ranked[middle : middle + per_row]), ("worst", ranked[-per_row:])]
    rows = [(label, row) for label, row in rows if row]
    figure, axes = plt.subplots(len(rows), per_row, figsize=(3.2 * per_row, 2.8 * len(rows)), squeeze=False)
    for (label, row), row_axes in zip(rows, axes):
        for column, axis in enumerate(row_axes):
            axis.axis("off")
            if column >= len(row):
                continue
            case = row[column]
            image = case["image"]
            axis.imshow(read_image(image) if isinstance(image, (str, Path)) else image)
            for mask, colour in ((case["truth"], "lime"), (case["prediction"], "red")):
                if mask.any() and not mask.all():
                    axis.contour(mask.astype(float), levels=[0.5], colors=colour, linewidths=1.2)
            axis.set_title(f"{label}: {case['image_id']}\nJaccard {case['jaccard']:.3f}", fontsize=8)
    figure.suptitle("truth (green) and prediction (red)", fontsize=10)
    return save_figure(figure, out)


def roc_curve_figure(fpr: np.ndarray, tpr: np.ndarray, metrics: dict, out: Path) -> Path:
    """The ROC curve with its AUC and interval, as a PNG at ``out``; returns ``out``."""
    figure, axis = plt.subplots(figsize=(4.2, 4.2))
    axis.plot(
        fpr,
        tpr,
        lw=2,
        label=f"AUC {metrics['auc']:.3f} (95% CI {metrics['auc_ci95_low']:.3f}-{metrics['auc_ci95_high']:.3f})",
    )
    axis.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    axis.scatter(
        [1 - metrics["specificity"]],
        [metrics["sensitivity"]],
        color="red",
        zorder=3,
        label=f"threshold {metrics['threshold']:.2f}",
    )
    axis.set_xlabel("1 - specificity")
    axis.set_ylabel("sensitivity")
    axis.set_title(f"melanoma ROC ({metrics['n_melanoma']} melanoma, {metrics['n_benign']} benign)", fontsize=9)
    axis.legend(loc="lower right", fontsize=8)
    axis.grid(alpha=0.3)
    return save_figure(figure, out)


def reliability_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], counts: str, out: Path) -> Path:
    """Reliability diagram: observed melanoma rate against mean predicted probability per bin,
    one line per named set of probabilities (e.g. before and after calibration)."""
    figure, axis = plt.subplots(figsize=(4.2, 4.2))
    axis.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfectly calibrated")
    for name, (predicted, observed) in curves.items():
        axis.plot(predicted, observed, "o-", lw=1.5, ms=4, label=name)
    axis.set_xlabel("mean predicted P(melanoma)")
    axis.set_ylabel("observed melanoma rate")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_title(f"reliability ({counts})", fontsize=9)
    axis.legend(loc="upper left", fontsize=8)
    axis.grid(alpha=0.3)
    return save_figure(figure, out)


def sweep_curves(runs: dict[int, Path], out: Path, metrics=("loss", "auc", "accuracy", "sensitivity")) -> Path:
    """Validation curves of every batch size of a sweep, one panel per metric (paper Fig. 6)."""
    figure, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2))
    for batch_size, path in runs.items():
        if not Path(path).is_file():
            continue
        table = pd.read_csv(path)
        for axis, name in zip(axes, metrics):
            column = f"val/{name}"
            if column in table:
                series = table[["epoch", column]].dropna().groupby("epoch")[column].last()
                axis.plot(series.index + 1, series.values, "-o", markersize=3, label=f"batch {batch_size}")
    for axis, name in zip(axes, metrics):
        axis.set_title(f"validation {name}")
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    return save_figure(figure, out)
