"""The recipes experiment's tables (docs/results/recipes.md), read from the run folders, so
every number in the document is one that the runs wrote.

    python experiments/recipes_table.py [runs/recipes [FIGURE.png]]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

RUNS = ("srcrn-paper", "unet-paper", "srcrn-strong", "unet-strong")
FOLLOW_UP = ("srcrn-strong-bf16",)  # the strong recipe with --precision bf16-mixed
ABLATIONS = (
    ("srcrn-paper", "eval-val-tta", "paper recipe + TTA"),
    ("unet-paper", "eval-val-tta", "paper recipe + TTA"),
    ("srcrn-strong", "eval-val-notta", "strong recipe without TTA"),
    ("unet-strong", "eval-val-notta", "strong recipe without TTA"),
    ("srcrn-strong", "eval-val-raw", "strong recipe, raw weights instead of the EMA"),
    ("srcrn-strong", "eval-val-largest", "strong recipe + largest region kept"),
    ("unet-strong", "eval-val-largest", "strong recipe + largest region kept"),
    ("srcrn-paper", "eval-val-largest", "paper recipe + largest region kept"),
    ("unet-paper", "eval-val-largest", "paper recipe + largest region kept"),
)


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _row(name: str, label: str, metrics: dict, summary: dict | None) -> str:
    cells = [
        name,
        label,
        f"{metrics['jaccard']:.4f}",
        f"{metrics['dice']:.4f}",
        f"{metrics['accuracy']:.4f}",
        f"{metrics['threshold_jaccard']:.4f}",
        "yes" if metrics.get("tta") else "no",
    ]
    if summary:
        cells += [
            str(summary["epochs"]),
            str(summary["global_step"]),
            f"{summary['wall_seconds']:.0f}",
            f"{summary['global_step'] * summary['batch_size'] / summary['wall_seconds']:.1f}",
            f"{summary['best_val_jaccard']:.4f}" if summary.get("best_val_jaccard") else "—",
        ]
    else:
        cells += ["—"] * 5
    return "| " + " | ".join(cells) + " |"


PAIRS = (
    ("srcrn-strong", "unet-paper"),
    ("srcrn-strong", "srcrn-paper"),
    ("srcrn-strong", "unet-strong"),
    ("srcrn-paper", "unet-paper"),
    ("unet-strong", "unet-paper"),
    ("srcrn-strong-bf16", "srcrn-strong"),
)


def paired_differences(root: Path, resamples: int = 10000, seed: int = 0) -> None:
    """Per-image Jaccard differences between two runs on the same validation images: mean,
    95 % paired bootstrap interval (resampling images), share of images where the first wins."""
    import numpy as np
    import pandas as pd

    from srcrn.stats import paired_difference_interval

    print("| A | B | mean Jaccard A - B | 95 % paired bootstrap (BCa) | images where A > B |")
    print("|---|---|---|---|---|")
    for first, second in PAIRS:
        paths = [root / name / "eval-val" / "per_image.csv" for name in (first, second)]
        if not all(path.is_file() for path in paths):
            continue
        a, b = (pd.read_csv(path).set_index("image_id")["jaccard"] for path in paths)
        b = b.reindex(a.index)
        difference = (a - b).to_numpy()
        low, high = paired_difference_interval(a.to_numpy(), b.to_numpy(), resamples, seed).as_tuple()
        print(
            f"| {first} | {second} | {difference.mean():+.4f} | {low:+.4f} to {high:+.4f} | "
            f"{np.mean(difference > 0):.0%} |"
        )


def curves(root: Path, target: Path) -> None:
    """Validation Jaccard (128 px, per epoch) of the four runs against training minutes (the
    step scaled by the run's wall time per step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    figure, axis = plt.subplots(figsize=(7, 4.2))
    for name in RUNS + FOLLOW_UP:
        summary = _load(root / name / "summary.json")
        if not summary:
            continue
        log = pd.read_csv(root / name / "metrics.csv").dropna(subset=["val/jaccard"])
        minutes = (log["step"] + 1) * summary["wall_seconds"] / summary["global_step"] / 60
        axis.plot(minutes, log["val/jaccard"], marker="o", markersize=3, label=name.replace("-", " / "))
    axis.axhline(0.765, color="grey", linestyle=":", label="ISIC 2017 winner (test set, published)")
    axis.set(
        xlabel="training wall time (minutes, 2 CPU cores)",
        ylabel="validation Jaccard (128 px)",
        ylim=(0.4, 0.8),
        title="Equal CPU time: 25 minutes per run",
    )
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(target, dpi=120)


def main(folder: str = "runs/recipes", figure: str | None = None) -> None:
    root = Path(folder)
    if figure:
        curves(root, Path(figure))
    header = (
        "| run | evaluation | Jaccard | Dice | accuracy | thresholded Jaccard | TTA | epochs | steps | "
        "wall s | train img/s | best val Jaccard at 128 px |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in RUNS + FOLLOW_UP:
        metrics, summary = _load(root / name / "eval-val" / "metrics.json"), _load(root / name / "summary.json")
        if summary:
            summary["batch_size"] = yaml.safe_load((root / name / "config.yaml").read_text())["batch_size"]
        if metrics:
            print(_row(name, "recipe default", metrics, summary))
    print()
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, evaluation, label in ABLATIONS:
        metrics = _load(root / name / evaluation / "metrics.json")
        if metrics:
            print(_row(name, label, metrics, None))
    print()
    paired_differences(root)


if __name__ == "__main__":
    main(*sys.argv[1:3])
