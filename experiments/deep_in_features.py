"""Issue 30, item 4: frozen ImageNet features as inputs of the lesion-feature model, beside the
lesion features (rather than as a member of their stack). On the default model's folds: the feature
model's own gradient boosting (``build_estimator``) on the lesion features (and age, sex, site),
alone and with the first K principal components of the pooled deep features (the PCA fitted on
each fold's training images only). Prints the out-of-fold AUC of each.

    python experiments/deep_in_features.py RUN DEEP.npz

RUN: the default-model run folder (``data``, ``cv-features``, ``cv-features-clinical``); DEEP.npz:
``experiments/deep_features.py``'s cache (ids, features).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from srcrn.settings import ClassifyTrainSettings, load_settings
from srcrn.stats import auc, auc_interval
from srcrn.training.features import build_estimator, feature_lesions, training_table

COMPONENTS = (0, 16, 64)


def main() -> None:
    """For each context and each K, the out-of-fold AUC."""
    run, deep_file = Path(sys.argv[1]), Path(sys.argv[2])
    cache = np.load(deep_file)
    deep = dict(zip(cache["ids"].tolist(), cache["features"]))
    for folder, context in (("cv-features", "none"), ("cv-features-clinical", "age, sex, site")):
        config = load_settings(ClassifyTrainSettings, run / folder / "config.yaml")
        lesions = feature_lesions(config, run / "data", progress=False)
        table, _ = training_table(config, run / "data", lesions, show_progress=False)
        oof = pd.read_csv(run / folder / "oof.csv", dtype={"image_id": str})
        rows = lesions.prepared.positions(list(oof["image_id"]))
        x, truth = table[rows], oof["truth"].to_numpy(int)
        d = np.stack([deep[i] for i in oof["image_id"]])
        for k in COMPONENTS:
            scores = np.zeros(len(oof))
            for fold in sorted(oof["fold"].unique()):
                held = (oof["fold"] == fold).to_numpy()
                fit_x, held_x = x[~held], x[held]
                if k:
                    pca = PCA(k, random_state=0).fit(d[~held])
                    fit_x = np.hstack([fit_x, pca.transform(d[~held])])
                    held_x = np.hstack([held_x, pca.transform(d[held])])
                model = build_estimator(seed=0, images=int((~held).sum())).fit(fit_x, truth[~held])
                scores[held] = model.predict_proba(held_x)[:, 1]
            interval = auc_interval(truth, scores)
            print(
                f"| {context} | {k} | {auc(truth, scores):.4f} ({interval.low:.4f}-{interval.high:.4f}) |", flush=True
            )


if __name__ == "__main__":
    main()
