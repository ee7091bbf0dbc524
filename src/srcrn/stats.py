"""Statistics shared by evaluation, ``reproduce`` and the experiment scripts: the AUC and
bootstrap confidence intervals (scipy.stats.bootstrap), unpaired and paired.

Intervals are BCa (bias-corrected and accelerated) where it applies; when BCa cannot be
computed (a degenerate statistic, e.g. a resample with one class only, or too few distinct
values), the percentile interval is used and the method actually used is returned with it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

DEFAULT_RESAMPLES = 1000


@dataclass(frozen=True)
class Interval:
    """A 95 % interval and how it was computed."""

    low: float
    high: float
    method: str  # "BCa", "percentile", or "none" (not computable)

    def as_tuple(self) -> tuple[float, float]:
        """(low, high)."""
        return self.low, self.high


NO_INTERVAL = Interval(float("nan"), float("nan"), "none")


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the Mann-Whitney U of melanoma vs benign scores over the number
    of pairs (ties count half), the same number as scikit-learn's ``roc_auc_score``, which the
    ISIC scorer uses. NaN when one class is absent."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=float)
    positives, negatives = scores[labels], scores[~labels]
    if len(positives) == 0 or len(negatives) == 0:
        return float("nan")
    statistic = stats.mannwhitneyu(positives, negatives, method="asymptotic").statistic
    return float(statistic / (len(positives) * len(negatives)))


def _bootstrap(
    data: tuple[np.ndarray, ...],
    statistic: Callable[..., Any],
    *,
    paired: bool,
    vectorized: bool,
    resamples: int,
    seed: int,
    confidence: float = 0.95,
) -> Interval:
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            # scipy warns, and returns NaN, when BCa's jackknife or a resample is degenerate:
            # we fall back to the percentile interval instead.
            warnings.simplefilter("ignore")
            result = stats.bootstrap(
                data,
                statistic,
                n_resamples=resamples,
                paired=paired,
                vectorized=vectorized,
                confidence_level=confidence,
                method=method,
                random_state=seed,
            )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if np.isfinite(low) and np.isfinite(high):
            return Interval(low, high, method)
    return NO_INTERVAL


def _mean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(values, axis=axis)


def mean_interval(values: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Interval:
    """95 % interval of the mean of per-image values (images resampled)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2 or np.ptp(values) == 0:
        return Interval(float(values.mean()), float(values.mean()), "none") if len(values) else NO_INTERVAL
    return _bootstrap((values,), _mean, paired=False, vectorized=True, resamples=resamples, seed=seed)


def paired_difference_interval(
    first: np.ndarray, second: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> Interval:
    """95 % interval of mean(first) - mean(second) over the same images (paired resampling)."""
    return mean_interval(np.asarray(first, dtype=float) - np.asarray(second, dtype=float), resamples, seed)


def auc_interval(labels: np.ndarray, scores: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Interval:
    """95 % interval of the AUC, resampling images (label and score together)."""
    labels, scores = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    if not 0 < labels.sum() < len(labels):
        return NO_INTERVAL
    return _bootstrap((labels, scores), auc, paired=True, vectorized=False, resamples=resamples, seed=seed)


def paired_auc_difference_interval(
    labels: np.ndarray, first: np.ndarray, second: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> Interval:
    """95 % interval of AUC(first) - AUC(second), two models scored on the same images."""
    labels = np.asarray(labels, dtype=int)
    if not 0 < labels.sum() < len(labels):
        return NO_INTERVAL
    return _bootstrap(
        (labels, np.asarray(first, float), np.asarray(second, float)),
        lambda y, a, b: auc(y, a) - auc(y, b),
        paired=True,
        vectorized=False,
        resamples=resamples,
        seed=seed,
    )


def rate_interval(hits: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Interval:
    """95 % interval of a proportion (accuracy, sensitivity, specificity) from 0/1 outcomes."""
    return mean_interval(np.asarray(hits, dtype=float), resamples, seed)


def proportion_interval(hits: int, total: int, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson score interval of ``hits / total`` (scipy's ``binomtest``): sound at the small counts
    and extreme rates of a sensitivity on a few dozen melanomas, where a bootstrap of 0/1
    outcomes collapses to a point. (None, None) for an empty denominator."""
    if total == 0:
        return None, None
    interval = stats.binomtest(int(hits), int(total)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)
