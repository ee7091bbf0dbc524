"""``srcrn classify eval``: melanoma probabilities for every image, ISIC metrics, ROC.

Metrics follow the ISIC scorer: AUC of the probabilities; accuracy, sensitivity and
specificity of the decision probability > threshold (0.5 unless chosen otherwise);
balanced accuracy = mean of sensitivity and specificity. The AUC gets a seeded bootstrap
95 % interval (resampling images).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torchmetrics.functional.classification import binary_auroc, binary_roc

from srcrn.atomic import atomic_path, write_json
from srcrn.console import progress
from srcrn.data.transforms import normalize_batch
from srcrn.errors import SrcrnError
from srcrn.reporting.figures import roc_curve_figure

BOOTSTRAP_SAMPLES = 1000


@torch.inference_mode()
def predict_melanoma(model: torch.nn.Module, inputs: np.ndarray, batch_size: int = 64,
                     show_progress: bool = True) -> np.ndarray:
    model = model.eval()
    starts = range(0, len(inputs), batch_size)
    chunks = [torch.sigmoid(model(normalize_batch(inputs[s:s + batch_size]))).numpy()
              for s in progress(starts, len(starts), "classify", show_progress)]
    return np.concatenate(chunks) if chunks else np.zeros(0)


def auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    return float(binary_auroc(torch.as_tensor(probabilities, dtype=torch.float64), torch.as_tensor(labels).long()))


def bootstrap_auc(labels: np.ndarray, probabilities: np.ndarray, samples: int = BOOTSTRAP_SAMPLES,
                  seed: int = 0) -> tuple[float, float]:
    """2.5th and 97.5th percentiles of the AUC over resamplings that hold both classes."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        rows = rng.integers(0, len(labels), len(labels))
        if 0 < labels[rows].sum() < len(rows):
            values.append(auc(labels[rows], probabilities[rows]))
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict:
    labels, probabilities = np.asarray(labels, dtype=int), np.asarray(probabilities, dtype=float)
    decided = probabilities > threshold
    tp, tn = int((decided & (labels == 1)).sum()), int((~decided & (labels == 0)).sum())
    fp, fn = int((decided & (labels == 0)).sum()), int((~decided & (labels == 1)).sum())
    sensitivity = tp / (tp + fn) if tp + fn else 1.0  # the scorer's convention for an absent class
    specificity = tn / (tn + fp) if tn + fp else 1.0
    both = 0 < labels.sum() < len(labels)
    low, high = bootstrap_auc(labels, probabilities) if both else (float("nan"), float("nan"))
    return {
        "auc": auc(labels, probabilities) if both else float("nan"),
        "auc_ci95_low": low,
        "auc_ci95_high": high,
        "accuracy": (tp + tn) / len(labels),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "balanced_accuracy": (sensitivity + specificity) / 2,
        "threshold": threshold,
        "n_images": len(labels),
        "n_melanoma": int(labels.sum()),
        "n_benign": int(len(labels) - labels.sum()),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }


def write_classification_outputs(out: Path, ids: list[str], probabilities: np.ndarray, labels: np.ndarray | None,
                                 threshold: float = 0.5) -> dict:
    """``predictions.csv`` (image_id,melanoma), and with labels ``metrics.json``,
    ``per_image.csv`` and ``roc.png``."""
    out.mkdir(parents=True, exist_ok=True)
    predictions = pd.DataFrame({"image_id": ids, "melanoma": probabilities})
    with atomic_path(out / "predictions.csv") as temporary:
        predictions.to_csv(temporary, index=False)
    if labels is None or np.isnan(labels).any():
        return {}
    metrics = classification_metrics(labels, probabilities, threshold)
    write_json(out / "metrics.json", metrics)
    per_image = predictions.assign(truth=labels.astype(int), decision=(probabilities > threshold).astype(int))
    with atomic_path(out / "per_image.csv") as temporary:
        per_image.to_csv(temporary, index=False)
    if 0 < labels.sum() < len(labels):
        fpr, tpr, _ = binary_roc(torch.as_tensor(probabilities, dtype=torch.float64), torch.as_tensor(labels).long())
        roc_curve_figure(fpr.numpy(), tpr.numpy(), metrics, out / "roc.png")
    return metrics


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


def store_threshold(checkpoint: str | Path, threshold: float, target_sensitivity: float) -> None:
    """Write the operating threshold into a classifier checkpoint (atomically), where
    ``predict`` takes its default from."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state["hyper_parameters"]["threshold"] = threshold
    state["hyper_parameters"]["threshold_target_sensitivity"] = target_sensitivity
    with atomic_path(checkpoint) as temporary:
        torch.save(state, temporary)


def evaluate_classifier(task, data: str | Path, out: str | Path, *, ids: list[str] | None = None,
                        segmenter: str | None = None, cache: str | Path | None = None,
                        show_progress: bool = True, target_sensitivity: float | None = None,
                        checkpoint: str | Path | None = None) -> dict:
    """Predict every image of ``data`` (or ``ids``) with a trained ClassificationTask, built
    into inputs exactly as in its training (input mode, margin, size, segmenter). With
    ``target_sensitivity``, the threshold reaching it on these images is chosen, used for the
    metrics, and stored in ``checkpoint``."""
    from srcrn.inference.lesions import lesion_data

    settings = task.hparams
    segmenter = segmenter or settings.segmenter
    lesions = lesion_data(data, image_size=int(settings.image_size), input_mode=settings.input,
                          margin=float(settings.margin), segmenter=segmenter if settings.input != "full" else None,
                          require_labels=False, cache=cache, progress=show_progress)
    ids = list(ids) if ids is not None else lesions.prepared.ids
    rows = lesions.prepared.positions(ids)
    probabilities = predict_melanoma(task.model, lesions.inputs[rows], show_progress=show_progress)
    labels = lesions.prepared.melanoma[rows]
    threshold = float(settings.threshold)
    if target_sensitivity is not None:
        if np.isnan(labels).any():
            raise SrcrnError("--target-sensitivity needs labelled images")
        threshold = threshold_for_sensitivity(labels, probabilities, target_sensitivity)
        if checkpoint is not None:
            store_threshold(checkpoint, threshold, target_sensitivity)
    metrics = write_classification_outputs(Path(out), ids, probabilities, labels, threshold)
    if target_sensitivity is not None and metrics:
        metrics["target_sensitivity"] = target_sensitivity
        write_json(Path(out) / "metrics.json", metrics)
    return metrics
