"""Stage-2 evaluation: melanoma probabilities for every image through the one prediction path,
and the ISIC metrics.

Metrics follow the ISIC scorer: AUC of the probabilities; accuracy, sensitivity and
specificity of the decision probability > threshold (0.5 unless chosen otherwise);
balanced accuracy = mean of sensitivity and specificity. The AUC gets a 95 % bootstrap
interval (``srcrn.stats``, BCa where it applies).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from srcrn.atomic import atomic_path, write_json
from srcrn.data.metadata import contexts_for, load_folder_metadata
from srcrn.errors import SrcrnError
from srcrn.evaluation.calibration import calibration_metrics, fit_calibration
from srcrn.runtime.segmenter import Segmenter, load_segmenter
from srcrn.stage2.spec import Calibration, MelanomaModel
from srcrn.stats import DEFAULT_RESAMPLES, auc, auc_interval, proportion_interval


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5, resamples: int = DEFAULT_RESAMPLES
) -> dict[str, Any]:
    """The ISIC challenge's classification metrics (AUC; accuracy, sensitivity, specificity and
    balanced accuracy at ``threshold``) with a bootstrap 95 % interval of the AUC and calibration.

    Args:
        labels: 0/1 truth per image.
        probabilities: P(melanoma) per image.
        threshold: the decision threshold.
        resamples: bootstrap resamples of the AUC's interval.

    Returns:
        lower_snake_case metrics, as metrics.json holds them.
    """
    labels, probabilities = np.asarray(labels, dtype=int), np.asarray(probabilities, dtype=float)
    decided = probabilities > threshold
    tp, tn = int((decided & (labels == 1)).sum()), int((~decided & (labels == 0)).sum())
    fp, fn = int((decided & (labels == 0)).sum()), int((~decided & (labels == 1)).sum())
    sensitivity = tp / (tp + fn) if tp + fn else 1.0  # the scorer's convention for an absent class
    specificity = tn / (tn + fp) if tn + fp else 1.0
    interval = auc_interval(labels, probabilities, resamples)
    # Wilson intervals of the proportions, beside the point figures (a bootstrap of 3 of 3
    # collapses to "1.000 (1.000-1.000)"; Wilson gives 0.44-1.00); None where a class is absent.
    proportions = {
        name: proportion_interval(hits, total)
        for name, hits, total in (
            ("accuracy", tp + tn, len(labels)),
            ("sensitivity", tp, tp + fn),
            ("specificity", tn, tn + fp),
        )
    }
    return {
        "auc": auc(labels, probabilities),
        "auc_ci95_low": interval.low,
        "auc_ci95_high": interval.high,
        "auc_ci_method": interval.method,
        "accuracy": (tp + tn) / len(labels),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "balanced_accuracy": (sensitivity + specificity) / 2,
        **{
            f"{name}_ci95_{end}": bound
            for name, (low, high) in proportions.items()
            for end, bound in (("low", low), ("high", high))
        },
        "proportion_ci_method": "Wilson",
        "threshold": threshold,
        "n_images": len(labels),
        "n_melanoma": int(labels.sum()),
        "n_benign": int(len(labels) - labels.sum()),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


@dataclass
class ClassificationEvaluation:
    """What ``classify eval`` measured: the metrics (empty without labels), the per-image table, the calibration used."""

    metrics: dict[str, Any]  # empty without labels
    predictions: pd.DataFrame  # image_id, melanoma (+ truth, decision with labels)
    calibration: Calibration = field(default_factory=Calibration)  # the one the probabilities went through


def write_classification_outputs(
    out: Path, ids: list[str], probabilities: np.ndarray, labels: np.ndarray | None, threshold: float = 0.5
) -> ClassificationEvaluation:
    """``predictions.csv`` (image_id,melanoma), and with labels ``metrics.json`` and ``per_image.csv``."""
    out.mkdir(parents=True, exist_ok=True)
    predictions = pd.DataFrame({"image_id": ids, "melanoma": probabilities})
    with atomic_path(out / "predictions.csv") as temporary:
        predictions.to_csv(temporary, index=False)
    if labels is None or np.isnan(labels).any():
        return ClassificationEvaluation({}, predictions)
    metrics = classification_metrics(labels, probabilities, threshold)
    write_json(out / "metrics.json", metrics)
    per_image = predictions.assign(truth=labels.astype(int), decision=(probabilities > threshold).astype(int))
    with atomic_path(out / "per_image.csv") as temporary:
        per_image.to_csv(temporary, index=False)
    return ClassificationEvaluation(metrics, per_image)


def threshold_for_sensitivity(labels: np.ndarray, probabilities: np.ndarray, target: float) -> float:
    """The highest threshold t whose decision ``probability > t`` reaches ``target``
    sensitivity: midway between the k-th most probable melanoma (k = ceil(target x melanomas))
    and the next lower probability of any image, so that these images sit clear of it."""
    melanoma = np.sort(probabilities[labels == 1])[::-1]
    if len(melanoma) == 0:
        raise ValueError("choosing a threshold for a sensitivity needs melanoma images")
    kth = melanoma[int(np.ceil(target * len(melanoma))) - 1]
    below = probabilities[probabilities < kth]
    return float((kth + below.max()) / 2 if len(below) else kth / 2)


def evaluate_classifier(
    classifier: MelanomaModel,
    data: str | Path,
    out: str | Path,
    *,
    ids: list[str] | None = None,
    segmenter: str | Segmenter | None = None,
    metadata: str | Path | None = None,
    cache: str | Path | None = None,
    show_progress: bool = True,
    target_sensitivity: float | None = None,
    calibrate: str | None = None,
    turns: Sequence[float] = (),
) -> ClassificationEvaluation:
    """Predict every image of ``data`` (or ``ids``), its inputs built exactly as in training
    (input mode, margin, size, segmenter); probabilities go through the model's calibration.
    With ``turns`` (a bundle's answers, as ``predict`` gives them), each probability is the mean
    over the input as given and turned by each angle.
    With ``calibrate`` (temperature | platt), a calibration is fitted on these images instead;
    with ``target_sensitivity``, the threshold reaching it on these images' (calibrated)
    probabilities is chosen and used for the metrics (``metrics['threshold']``). Storing
    either in the model is the caller's choice. A model that takes clinical context reads it
    from ``metadata`` or the folder's ``metadata.csv`` (images without a row have none)."""
    from srcrn.data.segmented import lesion_data

    spec = classifier.spec
    segmenter = segmenter or spec.segmenter
    lesions = lesion_data(
        data,
        image_size=spec.image_size,
        input_mode=spec.input,
        margin=spec.margin,
        segmenter=(
            None
            if spec.input == "full" and not classifier.needs_masks
            else segmenter
            if isinstance(segmenter, Segmenter)
            else load_segmenter(segmenter)
        ),
        need_masks=classifier.needs_masks,
        require_labels=False,
        cache=cache,
        progress=show_progress,
    )
    ids = list(ids) if ids is not None else lesions.prepared.ids
    rows = lesions.prepared.positions(ids)
    inputs = np.asarray(lesions.inputs[rows])
    masks = lesions.input_masks(rows) if classifier.needs_masks else None
    contexts = None
    if classifier.clinical_fields:
        contexts = contexts_for(ids, load_folder_metadata(data, metadata, lesions.prepared.ids))
    logits = classifier.logits(inputs, masks, contexts)
    labels = lesions.prepared.melanoma[rows]
    labelled = not np.isnan(labels).any()
    if (target_sensitivity is not None or calibrate) and not labelled:
        raise SrcrnError("--target-sensitivity and --calibrate need labelled images")
    calibration = fit_calibration(labels, logits, calibrate) if calibrate else spec.calibration
    probabilities = calibration(logits).astype(np.float64)
    if turns:
        from srcrn.inference.steps import turned_readings

        turned = turned_readings(classifier, inputs, masks, contexts, turns)
        probabilities = np.vstack([probabilities, turned]).mean(axis=0)
    threshold = spec.threshold
    if target_sensitivity is not None:
        threshold = threshold_for_sensitivity(labels, probabilities, target_sensitivity)
    result = write_classification_outputs(Path(out), ids, probabilities, labels, threshold)
    result.calibration = calibration
    if result.metrics:
        result.metrics |= calibration_metrics(labels, probabilities)
        result.metrics["calibration"] = calibration.method
        if calibrate:
            uncalibrated = spec.calibration(logits).astype(np.float64)
            result.metrics |= {f"{k}_before": v for k, v in calibration_metrics(labels, uncalibrated).items()}
        if target_sensitivity is not None:
            result.metrics["target_sensitivity"] = target_sensitivity
        write_json(Path(out) / "metrics.json", result.metrics)
    return result
