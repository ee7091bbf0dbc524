"""Stage 2's linear probe (``classify train --recipe probe``): the frozen backbone's head fitted to
convergence as an L2 logistic regression on the standardised pooled features, its C chosen by an
inner 5-fold CV on the training images, instead of trained by a few SGD epochs.

The fitted regression is written into the classifier's own head, so the result is an ordinary
stage-2 CNN checkpoint (export, int8, both engines, stacks): the head's BatchNorm holds the
standardisation (running mean = the features' mean, running variance + eps = their variance) and
its linear layer the coefficients. With ``tta`` the features are averaged over the four flips; the
head being affine, that is the average of the four flips' logits, which is how the model predicts.

scikit-learn fits the regression (``LogisticRegressionCV``); what is written here by hand is only
the copy of its numbers into the head, which no library does.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from srcrn.atomic import atomic_path
from srcrn.data.normalization import normalize_numpy
from srcrn.models import MelanomaClassifier
from srcrn.runtime.checkpoints import MODEL_PREFIX, checkpoint_entry
from srcrn.runtime.engines import TTA_FLIPS
from srcrn.settings import ClassifyTrainSettings
from srcrn.stats import auc

log = logging.getLogger(__name__)
C_GRID = np.logspace(-4, 0, 9)  # the inner CV's choices (docs/results/encoders.md: 0.001 chosen on every fold)
# Pooled features of the inputs one backbone has seen, by image content: the folds of a
# cross-validation share their images, and a frozen backbone gives each the same features. One
# backbone at a time (``key``: its weights' digest, resize and flips), so memory stays bounded.
_MEMO: dict[str, Any] = {"key": None, "features": {}}


def _backbone_key(model: MelanomaClassifier, tta: bool) -> bytes:
    """The backbone by content: the digest of its weights, with the input resize and the flips
    (two random initialisations, or two files under one name, are two backbones)."""
    digest = hashlib.blake2b(
        repr((model.encoder_name, model.backbone_size, model.pooling, tta)).encode(), digest_size=16
    )
    for name, tensor in model.backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.digest()


@torch.inference_mode()
def pooled_features(
    model: MelanomaClassifier, inputs: np.ndarray, *, tta: bool, remember: bool = False, batch_size: int = 32
) -> np.ndarray:
    """float64 [N, F] pooled backbone features of uint8 [N, S, S, 3] inputs (flip-averaged with
    ``tta``); with ``remember``, features this backbone computed before are reused."""
    model.eval()
    seen: dict[bytes, np.ndarray] = {}
    if remember:
        key = _backbone_key(model, tta)
        if _MEMO["key"] != key:
            _MEMO.update(key=key, features={})
        seen = _MEMO["features"]
    digests = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in inputs]
    missing = [i for i, d in enumerate(digests) if d not in seen]
    for start in range(0, len(missing), batch_size):
        rows = missing[start : start + batch_size]
        batch = np.asarray(inputs)[rows]
        views = [batch] + ([np.ascontiguousarray(np.flip(batch, axes)) for axes in TTA_FLIPS] if tta else [])
        features = np.mean([model.forward_features(torch.from_numpy(normalize_numpy(v))).numpy() for v in views], 0)
        for row, vector in zip(rows, features):
            seen[digests[row]] = vector.astype(np.float64)
    return np.stack([seen[d] for d in digests])


def fit_head(model: MelanomaClassifier, features: np.ndarray, labels: np.ndarray) -> Pipeline:
    """Fit the standardised L2 logistic regression (C by inner stratified 5-fold CV on AUC) and
    write it into ``model``'s head; the fitted scikit-learn pipeline."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scikit-learn's notices of LogisticRegressionCV's next API
        regression = make_pipeline(
            StandardScaler(), LogisticRegressionCV(Cs=C_GRID, cv=5, scoring="roc_auc", max_iter=3000)
        ).fit(features, labels)
    scaler, linear = regression[0], regression[-1]
    head = list(model.head.children())
    norm, layer = head[0], head[-1]  # BatchNorm1d, (Dropout: the identity when predicting), Linear
    assert isinstance(norm, torch.nn.BatchNorm1d) and isinstance(layer, torch.nn.Linear)
    assert norm.running_mean is not None and norm.running_var is not None
    with torch.no_grad():
        # (x - mean) / sqrt(var + eps) = (x - mean_) / scale_: var = scale_^2 - eps (scale_ is 1
        # where a feature does not vary, as StandardScaler leaves it).
        norm.running_mean.copy_(torch.as_tensor(scaler.mean_))
        norm.running_var.copy_(torch.as_tensor(scaler.scale_**2 - norm.eps))
        norm.weight.fill_(1.0)
        norm.bias.zero_()
        layer.weight.copy_(torch.as_tensor(linear.coef_))
        layer.bias.copy_(torch.as_tensor(linear.intercept_))
    return regression


def train_probe(
    config: ClassifyTrainSettings,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    out: Path,
) -> dict[str, Any]:
    """Fit the probe on ``train`` (uint8 inputs, 0/1 labels), score ``val``, and write
    ``checkpoints/last.ckpt`` into ``out``; the run's summary (as ``fit`` returns it)."""
    started = time.perf_counter()
    model = MelanomaClassifier(
        weights=None if config.weights == "none" else config.weights,
        dropout=config.dropout,
        encoder=config.encoder,
        backbone_size=config.backbone_size,
        pooling=config.pooling,
    )
    labels = np.asarray(train[1]).astype(int)
    regression = fit_head(model, pooled_features(model, train[0], tta=config.tta, remember=True), labels)
    chosen = float(regression[-1].C_[0])
    val_auc = None
    if len(val[1]) and 0 < val[1].sum() < len(val[1]):
        val_auc = auc(
            np.asarray(val[1]).astype(int),
            regression.decision_function(pooled_features(model, val[0], tta=config.tta, remember=True)),
        )
    checkpoint = out / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "state_dict": {MODEL_PREFIX + name: value for name, value in model.state_dict().items()},
        "srcrn": checkpoint_entry("classifier", config.to_dict()),
    }
    with atomic_path(checkpoint) as temporary:
        torch.save(state, temporary)
    wall = time.perf_counter() - started
    log.info("fitted the head as a logistic regression (C %.3g by inner 5-fold CV) in %.0fs", chosen, wall)
    return {
        "epochs": 0,
        "global_step": 0,
        "wall_seconds": round(wall, 1),
        "probe_c": chosen,
        "best_val_auc": val_auc,
        "best_checkpoint": str(checkpoint),
        "last_checkpoint": str(checkpoint),
        "model_checkpoint": str(checkpoint),
    }
