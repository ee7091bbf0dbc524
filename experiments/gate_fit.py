"""Issue 33: fit the input gate's "not dermoscopic" figure (``answers.gate.Typicality``) on the
training images of a default-model run, measure its false alarms on the validation images, and
store the gate in the bundles given.

The lesion-feature table of every image (the feature model's, ``morphology.features``: colour,
shape, texture, border of the SRCRN lesion crop) is standardised and projected on its first
COMPONENTS principal axes (scikit-learn's PCA, fitted on the training images only); an image's
distance is the Mahalanobis distance there. The threshold is the PERCENTILE-th percentile of the
training images' own distances: by construction about (100 - PERCENTILE) % of training images
lie beyond it, and the validation images measure it on images it was not fitted on.

    python experiments/gate_fit.py RUN OUT.json [BUNDLE ...]
RUN: a run folder of experiments/default_model.sh (its data view, cv-features split and config).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from srcrn.answers.gate import Gate, Typicality
from srcrn.bundle.schema import attach_gate
from srcrn.settings import ClassifyTrainSettings, load_settings
from srcrn.training.features import feature_lesions, lesion_feature_matrix

COMPONENTS = 20
PERCENTILE = 99.5


def main() -> None:
    """Fit, measure, print, write OUT.json and attach the gate to each BUNDLE."""
    run, out, bundles = Path(sys.argv[1]), Path(sys.argv[2]), [Path(b) for b in sys.argv[3:]]
    config = load_settings(ClassifyTrainSettings, run / "cv-features" / "config.yaml")
    lesions = feature_lesions(config, run / "data", progress=False)
    table, names = lesion_feature_matrix(lesions, show_progress=False)
    subsets = pd.read_csv(run / "cv-features" / "split.csv").set_index("image_id")["subset"]
    subset = np.array([subsets.get(i, "") for i in lesions.prepared.ids])
    train = table[subset == "train"]
    center, spread = train.mean(axis=0), train.std(axis=0)
    spread[spread == 0] = 1.0
    pca = PCA(COMPONENTS, random_state=0).fit((train - center) / spread)
    typicality = Typicality(
        names=names,
        center=center.tolist(),
        spread=spread.tolist(),
        components=pca.components_.tolist(),
        scales=np.sqrt(pca.explained_variance_).tolist(),
        threshold=1.0,
        fitted_on="",
    )
    distances = typicality.distance(table, names)
    threshold = float(np.percentile(distances[subset == "train"], PERCENTILE))
    val = distances[subset == "val"]
    typicality = typicality.model_copy(
        update={
            "threshold": threshold,
            "fitted_on": f"the lesion features of the {int((subset == 'train').sum())} training images of the "
            f"default model (first {COMPONENTS} principal axes, the {PERCENTILE:g}th percentile of their distances)",
        }
    )
    gate = Gate(typicality=typicality)
    out.write_text(json.dumps(gate.model_dump(), indent=1))
    print(f"threshold {threshold:.2f}; beyond it: train {(distances[subset == 'train'] > threshold).mean():.4f}, "
          f"val {(val > threshold).mean():.4f} ({int((val > threshold).sum())} of {len(val)})")  # fmt: skip
    for bundle in bundles:
        attach_gate(bundle, gate.model_dump())
        print(f"gate attached to {bundle}")


if __name__ == "__main__":
    main()
