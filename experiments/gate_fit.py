"""Issue 33: fit the input gate's "not dermoscopic" figure (``answers.gate.Typicality``) on the
training images of a default-model run, measure its false alarms on the validation images, and
store the gate in the bundles given. With a bundle whose stage-2 CNN says its pooled features
(exported with them), a second figure is fitted on those features of the same crops
(``Gate.image_typicality``: the distance from their principal subspace, ``fit_residual``).

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
from sklearn.model_selection import KFold

from srcrn import Pipeline
from srcrn.answers.gate import Gate, Typicality, image_feature_names
from srcrn.bundle.schema import attach_gate
from srcrn.settings import ClassifyTrainSettings, load_settings
from srcrn.training.features import feature_lesions, lesion_feature_matrix

COMPONENTS = 20
PERCENTILE = 99.5


def axes(table: np.ndarray, names: list[str], rows: np.ndarray, measure: str = "mahalanobis") -> Typicality:
    """The first COMPONENTS principal axes of ``table``'s standardised ``rows`` (threshold not set)."""
    train = table[rows]
    center, spread = train.mean(axis=0), train.std(axis=0)
    spread[spread == 0] = 1.0
    pca = PCA(COMPONENTS, random_state=0).fit((train - center) / spread)
    return Typicality(names=names, center=center.tolist(), spread=spread.tolist(),
                      components=pca.components_.tolist(), scales=np.sqrt(pca.explained_variance_).tolist(),
                      threshold=1.0, measure=measure)  # fmt: skip


def held_out(table: np.ndarray, names: list[str], rows: np.ndarray, measure: str) -> np.ndarray:
    """Each of ``rows``' distance measured with axes fitted without it (5-fold)."""
    distances = np.zeros(len(rows))
    for inside, outside in KFold(5, shuffle=True, random_state=0).split(rows):
        distances[outside] = axes(table, names, rows[inside], measure).distance(table[rows[outside]], names)
    return distances


def settle(
    typicality: Typicality, threshold: float, fitted_on: str, table: np.ndarray, subset: np.ndarray, what: str
) -> tuple[Typicality, np.ndarray]:
    """``typicality`` with its threshold; prints how many training and validation rows lie beyond."""
    typicality = typicality.model_copy(update={"threshold": threshold, "fitted_on": fitted_on})
    distances = typicality.distance(table, typicality.names)
    val = distances[subset == "val"]
    print(f"{what}: threshold {threshold:.2f}; beyond it: train {(distances[subset == 'train'] > threshold).mean():.4f}, "
          f"val {(val > threshold).mean():.4f} ({int((val > threshold).sum())} of {len(val)})")  # fmt: skip
    return typicality, distances


def fit(table: np.ndarray, names: list[str], subset: np.ndarray, what: str) -> tuple[Typicality, np.ndarray]:
    """The Mahalanobis typicality of ``table``'s rows fitted on its training rows (threshold: the
    PERCENTILE-th percentile of their own distances), and every row's distance."""
    rows = np.flatnonzero(subset == "train")
    typicality = axes(table, names, rows)
    threshold = float(np.percentile(typicality.distance(table[rows], names), PERCENTILE))
    fitted_on = (f"the {what} of the {len(rows)} training images of the default model "
                 f"(first {COMPONENTS} principal axes, the {PERCENTILE:g}th percentile of their distances)")  # fmt: skip
    return settle(typicality, threshold, fitted_on, table, subset, what)


def fit_residual(features: np.ndarray, subset: np.ndarray) -> tuple[Typicality, np.ndarray]:
    """The residual typicality of the CNN's pooled features: the distance from the training
    features' first COMPONENTS principal axes. Its threshold is the largest residual of a training
    image whose features the axes were not fitted on (5-fold cross-validation on the training
    images): the residual of a new image is an out-of-sample figure, and in-sample residuals are
    smaller. (Other rules were tried: ``experiments/gate_image_measures.py``.)"""
    names = image_feature_names(features.shape[1])
    rows = np.flatnonzero(subset == "train")
    threshold = float(held_out(features, names, rows, "residual").max())
    fitted_on = (f"the crops' pooled ImageNet features (the stage-2 CNN's backbone) of the {len(rows)} "
                 f"training images of the default model (the distance from their first {COMPONENTS} principal axes; "
                 "the largest of the training images' own, each measured with axes fitted without it, 5-fold)")  # fmt: skip
    typicality = axes(features, names, rows, "residual")
    return settle(typicality, threshold, fitted_on, features, subset, "image features (residual)")


def main() -> None:
    """Fit, measure, print, write OUT.json and attach the gate to each BUNDLE."""
    run, out, bundles = Path(sys.argv[1]), Path(sys.argv[2]), [Path(b) for b in sys.argv[3:]]
    config = load_settings(ClassifyTrainSettings, run / "cv-features" / "config.yaml")
    lesions = feature_lesions(config, run / "data", progress=False)
    table, names = lesion_feature_matrix(lesions, show_progress=False)
    subsets = pd.read_csv(run / "cv-features" / "split.csv").set_index("image_id")["subset"]
    subset = np.array([subsets.get(i, "") for i in lesions.prepared.ids])
    typicality, lesion_distances = fit(table, names, subset, "lesion features")
    image_typicality, image_distances = None, None
    # The first bundle's CNN (a stack's member) on the same crops, as the pipeline runs it.
    features = Pipeline.from_bundle(bundles[0]).classifier.image_features(lesions.inputs) if bundles else None
    if features is not None:
        image_typicality, image_distances = fit_residual(features, subset)
        for name in ("train", "val"):
            rows = subset == name
            either = (lesion_distances[rows] > typicality.threshold) | (
                image_distances[rows] > image_typicality.threshold
            )
            print(f"either beyond its threshold: {name} {int(either.sum())} of {int(rows.sum())}")
    gate = Gate(typicality=typicality, image_typicality=image_typicality)
    out.write_text(json.dumps(gate.model_dump(), indent=1))
    for bundle in bundles:
        attach_gate(bundle, gate.model_dump())
        print(f"gate attached to {bundle}")


if __name__ == "__main__":
    main()
