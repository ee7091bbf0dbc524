"""The recipes experiment's tables (docs/results/recipes.md), read from the run folders, so
every number in the document is one that the runs wrote.

    python experiments/recipes_table.py [runs/recipes]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

RUNS = ("srcrn-paper", "unet-paper", "srcrn-strong", "unet-strong")
ABLATIONS = (("srcrn-paper", "eval-val-tta", "paper recipe + TTA"),
             ("unet-paper", "eval-val-tta", "paper recipe + TTA"),
             ("srcrn-strong", "eval-val-notta", "strong recipe without TTA"),
             ("unet-strong", "eval-val-notta", "strong recipe without TTA"),
             ("srcrn-strong", "eval-val-raw", "strong recipe, raw weights instead of the EMA"),
             ("srcrn-strong", "eval-val-largest", "strong recipe + largest region kept"),
             ("unet-strong", "eval-val-largest", "strong recipe + largest region kept"),
             ("srcrn-paper", "eval-val-largest", "paper recipe + largest region kept"),
             ("unet-paper", "eval-val-largest", "paper recipe + largest region kept"))


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _row(name: str, label: str, metrics: dict, summary: dict | None) -> str:
    cells = [name, label, f"{metrics['jaccard']:.4f}", f"{metrics['dice']:.4f}", f"{metrics['accuracy']:.4f}",
             f"{metrics['threshold_jaccard']:.4f}", "yes" if metrics.get("tta") else "no"]
    if summary:
        best_epoch = Path(summary["best_checkpoint"]).name
        cells += [str(summary["epochs"]), str(summary["global_step"]), f"{summary['wall_seconds']:.0f}",
                  f"{summary['global_step'] * summary['batch_size'] / summary['wall_seconds']:.1f}",
                  f"{summary['best_val_jaccard']:.4f}" if summary.get("best_val_jaccard") else "—"]
    else:
        cells += ["—"] * 5
    return "| " + " | ".join(cells) + " |"


def main(folder: str = "runs/recipes") -> None:
    root = Path(folder)
    header = ("| run | evaluation | Jaccard | Dice | accuracy | thresholded Jaccard | TTA | epochs | steps | "
              "wall s | train img/s | best val Jaccard at 128 px |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in RUNS:
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


if __name__ == "__main__":
    main(*sys.argv[1:2])
