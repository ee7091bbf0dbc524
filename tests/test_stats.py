"""Statistics in one place: the AUC equals scikit-learn's (the ISIC scorer's), and the bootstrap
intervals are scipy's, BCa where it applies, with an explicit fallback."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import roc_auc_score

from srcrn.stats import (
    auc,
    auc_interval,
    mean_interval,
    paired_auc_difference_interval,
    paired_difference_interval,
)


def test_auc_equals_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) + 0.3 * labels, 1)  # many ties
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert np.isnan(auc(np.ones(5), np.arange(5)))


def test_mean_interval_is_scipys_bca():
    rng = np.random.default_rng(1)
    values = rng.normal(0.7, 0.1, 148)
    ours = mean_interval(values, resamples=2000, seed=3)
    reference = scipy_stats.bootstrap((values,), np.mean, n_resamples=2000, method="BCa", random_state=3)
    assert ours.method == "BCa"
    assert (ours.low, ours.high) == pytest.approx(
        (reference.confidence_interval.low, reference.confidence_interval.high), abs=1e-12
    )
    assert ours.low < values.mean() < ours.high


def test_degenerate_inputs_fall_back_or_say_so():
    assert mean_interval(np.full(10, 0.5)).method == "none"  # no spread: no interval to compute
    assert np.isnan(auc_interval(np.zeros(10), np.arange(10)).low)  # one class: no AUC
    same = np.linspace(0, 1, 50)
    interval = paired_difference_interval(same, same)
    assert (interval.low, interval.high) == (0.0, 0.0)


def test_auc_intervals_cover_the_estimate_and_paired_differences_are_centred():
    rng = np.random.default_rng(2)
    labels = np.r_[np.ones(30), np.zeros(118)].astype(int)
    good = labels + rng.normal(0, 0.8, 148)
    worse = labels + rng.normal(0, 2.0, 148)
    interval = auc_interval(labels, good, resamples=500)
    assert interval.low < auc(labels, good) < interval.high and interval.method in ("BCa", "percentile")
    difference = paired_auc_difference_interval(labels, good, worse, resamples=500)
    assert difference.low < auc(labels, good) - auc(labels, worse) < difference.high
