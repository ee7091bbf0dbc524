"""Figures: training curves (paper Fig. 4) and segmentation overlays (paper Fig. 5)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from srcrn.atomic import atomic_path  # noqa: E402


def save_figure(figure, path: Path) -> Path:
    """Write atomically: a reader never sees half a PNG."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return Path(path)


def training_curves(metrics_csv: Path, out: Path, metrics=("loss", "accuracy", "jaccard", "dice"), title: str = "") -> Path:
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
    if title:
        figure.suptitle(title)
    return save_figure(figure, out)


def segmentation_overlays(cases: list[dict], out: Path, per_row: int = 4) -> Path:
    """Rows of best, middling and worst cases: the image with the truth (green) and the
    prediction (red) contours. Each case: image (HxWx3 uint8, or its path: only the images
    drawn are decoded), truth, prediction (bool HxW), image_id, jaccard."""
    from srcrn.data.images import read_image

    ranked = sorted(cases, key=lambda case: case["jaccard"], reverse=True)
    middle = max(0, len(ranked) // 2 - per_row // 2)
    rows = [("best", ranked[:per_row]), ("middling", ranked[middle:middle + per_row]), ("worst", ranked[-per_row:])]
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
