"""A bundle end to end on the validation split: ``srcrn predict`` of the 143 validation images of
``experiments/default_model.sh``'s data view, with and without the metadata, scored against their
labels (docs/results/default-model.md).

    python experiments/default_model_end_to_end.py RUNS BUNDLE
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from srcrn.stats import auc, auc_interval


def main() -> None:
    runs, bundle = Path(sys.argv[1]), sys.argv[2]
    split = pd.read_csv(runs / "seg" / "split.csv", dtype={"image_id": str})
    val = split.loc[split["subset"] == "val", "image_id"].tolist()
    labels = pd.read_csv(runs / "data" / "labels.csv", dtype={"image_id": str}).set_index("image_id")["melanoma"]
    images = [str(runs / "data" / "images" / f"{i}.jpg") for i in val]
    for name, extra in (("with-metadata", ["--metadata", str(runs / "data" / "metadata.csv")]), ("image-only", [])):
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(scratch) / "out"
            started = time.perf_counter()
            subprocess.run(["srcrn", "predict", *images, "--model", bundle, "--out", str(out), "--no-overlays",
                            "--no-progress", *extra], check=True, capture_output=True)  # fmt: skip
            wall = time.perf_counter() - started
            table = pd.read_csv(out / "predictions.csv", dtype={"image_id": str})
        truth = labels.loc[table["image_id"]].to_numpy().astype(float)
        scores = table["melanoma"].to_numpy()
        interval = auc_interval(truth, scores)
        threshold = table["threshold"].iloc[0]
        decided = scores > threshold
        tp, fn = int((decided & (truth == 1)).sum()), int((~decided & (truth == 1)).sum())
        tn, fp = int((~decided & (truth == 0)).sum()), int((decided & (truth == 0)).sum())
        print(f"{name}: {len(table)} images, AUC {auc(truth, scores):.4f} (95 % CI {interval.low:.4f}-"
              f"{interval.high:.4f}); threshold {threshold:.4f}: sensitivity {tp}/{tp + fn} = {tp / (tp + fn):.3f}, "
              f"specificity {tn}/{tn + fp} = {tn / (tn + fp):.3f}; wall {wall:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
