"""Stage-1 candidates of issue 30 side by side (docs/results/encoders.md), read from their run
folders: each a ``segment train`` run with its ``eval-val`` (``segment eval --split-file RUN
--subset val``), so every number is one the runs wrote.

    python experiments/encoders_table.py RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import yaml

from srcrn.stats import mean_interval


def figure(values: pd.Series) -> str:
    interval = mean_interval(values.to_numpy())
    return f"{values.mean():.4f} ({interval.low:.4f}-{interval.high:.4f})"


def row(run: Path) -> str:
    config = yaml.safe_load((run / "config.yaml").read_text())
    summary = json.loads((run / "summary.json").read_text())
    per_image = pd.read_csv(run / "eval-val" / "per_image.csv")
    metrics = json.loads((run / "eval-val" / "metrics.json").read_text())
    attempts = summary.get("wall_seconds_all_attempts", summary["wall_seconds"])
    cells = [
        run.name,
        config["arch"],
        config.get("encoder", "resnet50"),
        config.get("encoder_weights", "none"),
        f"{config['image_size']} px",
        config["recipe"],
        str(summary["epochs"]),
        f"{attempts / 60:.1f}",
        f"{summary['global_step'] * config['batch_size'] / attempts:.1f}",
        "yes" if metrics.get("tta") else "no",
        str(len(per_image)),
        figure(per_image["jaccard"]),
        figure(per_image["dice"]),
        f"{per_image['accuracy'].mean():.4f}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    runs = parser.parse_args().runs
    print(
        "| run | arch | encoder | encoder weights | input | recipe | epochs | wall min | train img/s | TTA | "
        "val images | val Jaccard (95 % CI) | val Dice (95 % CI) | val accuracy |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(row(run))


if __name__ == "__main__":
    main()
