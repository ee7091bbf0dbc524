"""What the shipped model itself gives when no clinical context comes with the images: its
validation AUC and its operating point with every image's context left out, written into the
card (``classifier.shipped_without_context``). The card's ``image_only`` figures are those of a
model trained on the images alone; this is the one a user gets from the shipped model.

    python experiments/default_model_no_context.py RUNS BUNDLE CARD.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from srcrn.atomic import write_json
from srcrn.inference.pipeline import Pipeline
from srcrn.stats import auc, auc_interval, proportion_interval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("card", type=Path)
    arguments = parser.parse_args()
    runs = arguments.runs
    split = pd.read_csv(runs / "seg" / "split.csv", dtype={"image_id": str})
    val = sorted(split.loc[split["subset"] == "val", "image_id"])
    labels = pd.read_csv(runs / "data" / "labels.csv", dtype={"image_id": str}).set_index("image_id")["melanoma"]
    pipeline = Pipeline.from_bundle(arguments.bundle)
    results = pipeline.predict_many([runs / "data" / "images" / f"{i}.jpg" for i in val], batch_size=16)
    truth = labels.loc[val].to_numpy().astype(float)
    scores = np.array([r.probability for r in results])
    interval = auc_interval(truth, scores)
    decided = scores > pipeline.threshold
    tp, fn = int((decided & (truth == 1)).sum()), int((~decided & (truth == 1)).sum())
    tn, fp = int((~decided & (truth == 0)).sum()), int((decided & (truth == 0)).sum())
    card = json.loads(arguments.card.read_text())
    card["classifier"]["shipped_without_context"] = {
        "val_auc": {"value": auc(truth, scores), "ci95": [interval.low, interval.high]},
        "threshold": pipeline.threshold,
        "val_sensitivity": {"value": tp / (tp + fn), "ci95": list(proportion_interval(tp, tp + fn))},
        "val_specificity": {"value": tn / (tn + fp), "ci95": list(proportion_interval(tn, tn + fp))},
        "val_counts": {"tp": tp, "fn": fn, "tn": tn, "fp": fp},
        "how": "the shipped bundle on the validation images with no age, sex or site given",
    }
    write_json(arguments.card, card)
    print(json.dumps(card["classifier"]["shipped_without_context"], indent=2))


if __name__ == "__main__":
    main()
