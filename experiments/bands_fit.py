"""Issue 33: the verdict bands of the shipped model: the two thresholds chosen on the shipped
stack's cross-fitted out-of-fold probabilities (``low_below`` for SENSITIVITY, ``high_above``
for SPECIFICITY), each band's melanomas measured on the validation split (Wilson intervals),
stored in the bundles given.

    python experiments/bands_fit.py RUN OUT.json [BUNDLE ...]
RUN: a run folder of experiments/default_model.sh (card.json names the shipped stage-2 model).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from srcrn.answers.bands import HIGH, INTERMEDIATE, LOW, BandFigure, Bands
from srcrn.bundle.schema import attach_bands
from srcrn.evaluation.classification import threshold_for_sensitivity
from srcrn.stats import proportion_interval

SENSITIVITY = 0.95
SPECIFICITY = 0.90


def main() -> None:
    """Choose, measure, print, write OUT.json and attach the bands to each BUNDLE."""
    run, out, bundles = Path(sys.argv[1]), Path(sys.argv[2]), [Path(b) for b in sys.argv[3:]]
    model = Path(json.loads((run / "card.json").read_text())["classifier"]["model"])
    folder = run / model.parent if (run / model.parent / "oof.csv").is_file() else run / model
    oof, val = pd.read_csv(folder / "oof.csv"), pd.read_csv(folder / "val.csv")
    truth, p = oof["truth"].to_numpy(int), oof["melanoma"].to_numpy(float)
    low = threshold_for_sensitivity(truth, p, SENSITIVITY)
    high = float(np.quantile(p[truth == 0], SPECIFICITY))
    bands = Bands(low_below=low, high_above=max(low, high), sensitivity=SENSITIVITY, specificity=SPECIFICITY,
                  chosen_on=f"the out-of-fold probabilities of the shipped stack ({len(p)} training images, "
                  f"{int(truth.sum())} melanomas): {SENSITIVITY:.0%} sensitivity below, {SPECIFICITY:.0%} specificity above")  # fmt: skip
    named = np.array([bands.band(x) for x in val["melanoma"]])
    figures = {}
    for band in (LOW, INTERMEDIATE, HIGH):
        inside = val["truth"].to_numpy(int)[named == band]
        low_ci, high_ci = proportion_interval(int(inside.sum()), len(inside))
        figures[band] = BandFigure(
            images=len(inside),
            melanomas=int(inside.sum()),
            share=float(inside.mean()) if len(inside) else None,
            ci95=[low_ci, high_ci] if low_ci is not None and high_ci is not None else None,
        )
        print(f"{band}: {len(inside)} validation images, {int(inside.sum())} melanomas", end="; ")
    bands = bands.model_copy(update={"validation": figures})
    print(f"low_below {bands.low_below:.4f}, high_above {bands.high_above:.4f}")
    out.write_text(json.dumps(bands.model_dump(), indent=1))
    for bundle in bundles:
        attach_bands(bundle, bands.model_dump())
        print(f"bands attached to {bundle}")


if __name__ == "__main__":
    main()
