"""Does P(melanoma) mean what it says? Calibration maps fitted on held-out logits, and the
measures of how well probabilities match outcomes.

- Temperature scaling (Guo et al. 2017): one parameter T, P = sigmoid(logit / T), fitted by
  minimising the negative log-likelihood; it never changes the ranking (AUC) or, with the
  threshold moved along, a decision.
- Platt scaling: P = sigmoid(a * logit + b), a logistic regression on the logit (scikit-learn).
- Brier score (scikit-learn), expected calibration error over equal-width bins and the
  reliability curve (scikit-learn's ``calibration_curve``).
"""

from __future__ import annotations

import logging
from typing import Any, get_args

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss

from srcrn.errors import ConfigError
from srcrn.settings import CalibrationMethod
from srcrn.stage2.spec import Calibration

METHODS = get_args(CalibrationMethod)
log = logging.getLogger(__name__)
BINS = 10


def _nll(labels: np.ndarray, logits: np.ndarray) -> float:
    # log(1 + exp(-z)) for positives and log(1 + exp(z)) for negatives, computed stably.
    signed = np.where(labels == 1, logits, -logits)
    return float(np.mean(np.logaddexp(0.0, -signed)))


def fit_calibration(labels: np.ndarray, logits: np.ndarray, method: str = "temperature") -> Calibration:
    """The calibration of ``method`` fitted on held-out ``logits`` with their 0/1 ``labels``."""
    labels, logits = np.asarray(labels, dtype=int), np.asarray(logits, dtype=np.float64)
    if method not in METHODS:
        raise ConfigError(f"unknown calibration '{method}'; choose one of {', '.join(METHODS)}")
    if labels.min() == labels.max():
        raise ConfigError("calibration needs held-out images of both classes")
    if method == "temperature":
        # Search log T: T stays positive and the objective is smooth in it.
        found = minimize_scalar(
            lambda log_t: _nll(labels, logits / np.exp(log_t)), bounds=(-4.0, 4.0), method="bounded"
        )
        return Calibration("temperature", float(np.exp(-found.x)), 0.0)
    platt = LogisticRegression(C=1e6).fit(logits[:, None], labels)  # C large: no shrinkage
    slope = float(platt.coef_[0, 0])
    if slope <= 0:  # it would reverse (or flatten) the model's ranking: no calibration at all
        log.warning(
            "calibration: Platt scaling fitted a slope of %.4f (<= 0: the logits rank the held-out images "
            "the wrong way round); no calibration is stored",
            slope,
        )
        return Calibration()
    return Calibration("platt", slope, float(platt.intercept_[0]))


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = BINS) -> float:
    """Sum over equal-width probability bins of (share of images) x |mean P - melanoma rate|
    (torchmetrics' binary calibration error, L1 norm)."""
    import torch
    from torchmetrics.functional.classification import binary_calibration_error

    return float(
        binary_calibration_error(
            torch.as_tensor(np.asarray(probabilities, dtype=np.float64)),
            torch.as_tensor(np.asarray(labels, dtype=np.int64)),
            n_bins=bins,
            norm="l1",
        )
    )


def calibration_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """Brier score, expected calibration error (10 bins) and log loss of ``probabilities`` against 0/1 ``labels``."""
    labels = np.asarray(labels, dtype=int)
    return {
        "brier": float(brier_score_loss(labels, probabilities)),
        "ece": expected_calibration_error(labels, probabilities),
        "log_loss": float(log_loss(labels, np.clip(probabilities, 1e-12, 1 - 1e-12), labels=[0, 1])),
    }


def reliability_curve(labels: np.ndarray, probabilities: np.ndarray, bins: int = BINS) -> tuple[np.ndarray, np.ndarray]:
    """(mean predicted probability, observed melanoma rate) of the non-empty bins."""
    observed, predicted = calibration_curve(np.asarray(labels, dtype=int), probabilities, n_bins=bins)
    return predicted, observed
