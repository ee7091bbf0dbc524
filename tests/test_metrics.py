"""Our metric definitions against the official ISIC scorer's, edge cases included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from isic_challenge_scoring import metrics as official

from srcrn.evaluation.metrics import confusion_counts, scores_from_counts, segmentation_scores

OFFICIAL = {
    "accuracy": official.binary_accuracy,
    "sensitivity": official.binary_sensitivity,
    "specificity": official.binary_specificity,
    "jaccard": official.binary_jaccard,
    "dice": official.binary_dice,
    "threshold_jaccard": lambda cm: official.binary_threshold_jaccard(cm, threshold=0.65),
}


def _cases():
    rng = np.random.default_rng(0)
    truth = rng.random((30, 24)) > 0.6
    noisy = truth ^ (rng.random((30, 24)) > 0.9)
    empty, full = np.zeros_like(truth), np.ones_like(truth)
    return {
        "noisy": (noisy, truth),
        "perfect": (truth, truth),
        "both empty": (empty, empty),
        "both full": (full, full),
        "empty prediction": (empty, truth),
        "full prediction": (full, truth),
        "low overlap": (np.roll(truth, 7, axis=1), truth),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_per_image_scores_equal_the_official_scorer(case):
    prediction, truth = _cases()[case]
    ours = segmentation_scores(prediction, truth)
    tp, fp, tn, fn = (int(v) for v in confusion_counts(prediction, truth))
    cm = pd.Series({"TP": tp, "FP": fp, "TN": tn, "FN": fn})
    for name, reference in OFFICIAL.items():
        assert ours[name] == pytest.approx(float(reference(cm)), abs=1e-12), name


def test_torch_and_numpy_give_the_same_numbers():
    predictions = np.stack([p for p, _ in _cases().values()])
    truths = np.stack([t for _, t in _cases().values()])
    from_numpy = scores_from_counts(*confusion_counts(predictions, truths))
    from_torch = scores_from_counts(
        *(c.double() for c in confusion_counts(torch.from_numpy(predictions), torch.from_numpy(truths)))
    )
    for name, values in from_numpy.items():
        assert np.allclose(values, from_torch[name].numpy()), name
