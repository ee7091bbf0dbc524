"""Issue 33: which figure of the CNN's pooled ImageNet features, and which threshold rule, tells
a cat's or a coffee cup's crop from a lesion's without refusing dermoscopic images? On the
training crops of a default-model run (the bundle's CNN, as the pipeline runs it), for the first
COMPONENTS principal axes: the Mahalanobis distance inside them (threshold: the PERCENTILE-th
percentile of the training images' own distances), and the residual off them (threshold: the
PERCENTILE-th percentile, or the largest, of the training images' held-out residuals, 5-fold).
Prints, for each, the validation images beyond the threshold and scikit-image's cat (chelsea) and
coffee cup as multiples of the threshold (above 1: caught).

    python experiments/gate_image_measures.py RUN BUNDLE
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from gate_fit import COMPONENTS, PERCENTILE, axes, held_out
from PIL import Image
from skimage import data

from srcrn import Pipeline
from srcrn.answers.gate import image_feature_names
from srcrn.settings import ClassifyTrainSettings, load_settings
from srcrn.training.features import feature_lesions


def main() -> None:
    run, bundle = Path(sys.argv[1]), Path(sys.argv[2])
    config = load_settings(ClassifyTrainSettings, run / "cv-features" / "config.yaml")
    lesions = feature_lesions(config, run / "data", progress=False)
    subsets = pd.read_csv(run / "cv-features" / "split.csv").set_index("image_id")["subset"]
    subset = np.array([subsets.get(i, "") for i in lesions.prepared.ids])
    pipeline = Pipeline.from_bundle(bundle)
    features = pipeline.classifier.image_features(lesions.inputs)
    assert features is not None, f"{bundle}: its CNN was exported without its pooled features"
    names = image_feature_names(features.shape[1])
    odd = {}
    for name in ("chelsea", "coffee"):
        buffer = io.BytesIO()
        Image.fromarray(getattr(data, name)()).save(buffer, "PNG")
        _, crops = pipeline.model_inputs([buffer.getvalue()])  # cut as the pipeline cuts it
        odd[name] = pipeline.classifier.image_features(crops)
    rows, val = np.flatnonzero(subset == "train"), subset == "val"
    mahalanobis, residual = axes(features, names, rows), axes(features, names, rows, "residual")
    residuals = held_out(features, names, rows, "residual")
    rules = [
        (mahalanobis, f"{PERCENTILE:g}th percentile of the training distances",
         np.percentile(mahalanobis.distance(features[rows], names), PERCENTILE)),
        (residual, f"{PERCENTILE:g}th percentile of the held-out training residuals",
         np.percentile(residuals, PERCENTILE)),
        (residual, "the largest held-out training residual", residuals.max()),
    ]  # fmt: skip
    print(f"{len(rows)} training crops, {int(val.sum())} validation crops, first {COMPONENTS} principal axes")
    print("| measure | threshold | value | validation beyond | cat | coffee cup |")
    print("|---|---|---|---|---|---|")
    for typicality, rule, threshold in rules:
        beyond = int((typicality.distance(features[val], names) > threshold).sum())
        ratios = [float(typicality.distance(odd[name], names)[0] / threshold) for name in ("chelsea", "coffee")]
        print(f"| {typicality.measure} | {rule} | {threshold:.1f} | {beyond} of {int(val.sum())} | "
              f"{ratios[0]:.2f} | {ratios[1]:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
