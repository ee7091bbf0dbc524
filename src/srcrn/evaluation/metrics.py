"""Segmentation metrics defined exactly as the official ISIC scorer (isic-challenge-scoring).

Per image: threshold prediction and truth, count TP/FP/TN/FN at the image's original size,
then accuracy, sensitivity, specificity, Jaccard, Dice and thresholded Jaccard (Jaccard, or 0
below 0.65). A ratio whose denominator is 0 counts as 1.0, as the scorer does. The reported
figure is the macro average over images.

The functions take numpy arrays or torch tensors alike, so training-time validation and
``srcrn segment eval`` share one definition.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SEGMENTATION_METRICS = ("accuracy", "sensitivity", "specificity", "jaccard", "threshold_jaccard", "dice")
THRESHOLD_JACCARD = 0.65


def confusion_counts(prediction: Any, truth: Any) -> tuple[Any, Any, Any, Any]:
    """TP, FP, TN, FN of boolean masks, summed over the last two axes (per image)."""
    prediction_negative, truth_negative = ~prediction, ~truth
    axes = (-2, -1)

    def count(mask):
        return mask.sum(axis=axes) if isinstance(mask, np.ndarray) else mask.sum(dim=axes)

    return (
        count(prediction & truth),
        count(prediction & truth_negative),
        count(prediction_negative & truth_negative),
        count(prediction_negative & truth),
    )


def _ratio(numerator, denominator):
    undefined = denominator == 0
    return numerator / (denominator + undefined) * ~undefined + undefined * 1.0


def scores_from_counts(tp, fp, tn, fn) -> dict[str, Any]:
    """Per-image metrics from per-image counts (arrays or tensors of equal shape)."""
    jaccard = _ratio(tp, tp + fp + fn)
    return {
        "accuracy": (tp + tn) / (tp + tn + fp + fn),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "jaccard": jaccard,
        "threshold_jaccard": jaccard * (jaccard >= THRESHOLD_JACCARD),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def segmentation_scores(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Metrics of one image's boolean prediction against its boolean truth."""
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} differ in size")
    return {k: float(v) for k, v in scores_from_counts(*confusion_counts(prediction, truth)).items()}
