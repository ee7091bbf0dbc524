"""Issue 33, item 4: the per-axis threshold of ABCD "A" chosen on data. A ``srcrn predict`` run
over the dev images gives each lesion's two per-axis asymmetry shares (``asymmetry_major_axis``,
``asymmetry_minor_axis``); A counts the axes above the threshold. For each candidate threshold,
A's AUC against the melanoma label on the official ISIC 2017 training split (where the threshold
is chosen: the highest AUC) and on the validation split (reported, not used), and A's mean.

    srcrn predict DEV/images --out PREDICTED
    python experiments/abcd_thresholds.py DEV PREDICTED/predictions.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from srcrn.stats import auc

CANDIDATES = (0.15, 0.12, 0.10, 0.08, 0.06, 0.05, 0.04, 0.03)


def main() -> None:
    """Print the table and the threshold the training split chooses."""
    data, predicted = Path(sys.argv[1]), Path(sys.argv[2])
    table = pd.read_csv(predicted, dtype={"image_id": str}).merge(
        pd.read_csv(data / "labels.csv", dtype={"image_id": str}).rename(columns={"melanoma": "truth"}), on="image_id"
    )  # predictions.csv's own "melanoma" is the probability
    table = table.merge(pd.read_csv(data / "sources.csv", dtype={"image_id": str}), on="image_id")
    table = table[table["status"] == "assessed"]
    splits = {name: table[table["isic2017_split"] == name] for name in ("train", "val")}
    print(f"{len(table)} assessed dev images; training {len(splits['train'])}, validation {len(splits['val'])}")
    print("| per-axis threshold | AUC, training | AUC, validation | mean A, training |")
    print("|---|---|---|---|")
    best = (-1.0, 0.0)
    for threshold in CANDIDATES:
        figures = []
        for part in splits.values():
            a = (part["asymmetry_major_axis"] > threshold).astype(int) + (part["asymmetry_minor_axis"] > threshold)
            figures.append((auc(part["truth"].to_numpy(), a.to_numpy().astype(float)), float(np.mean(a))))
        (train_auc, train_mean), (val_auc, _) = figures
        best = max(best, (train_auc, threshold))
        print(f"| {threshold:.2f} | {train_auc:.3f} | {val_auc:.3f} | {train_mean:.2f} |")
    print(f"chosen on the training split: {best[1]:.2f} (AUC {best[0]:.3f})")


if __name__ == "__main__":
    main()
