"""``srcrn segment eval``: predict every image, score it at its original size, write ISIC files.

For each image the probability map (model input size) is upsampled bilinearly to the
image's original size and thresholded at 0.5; the mask is written as
``masks/<id>_segmentation.png`` (0/255) and scored against the truth exactly as the ISIC
scorer does. Outputs: ``metrics.json`` (macro averages + ``n_images``), ``per_image.csv``
and ``overlays.png`` (best, middling and worst cases).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from srcrn.atomic import write_json, write_mask
from srcrn.console import progress
from srcrn.data.cache import prepare
from srcrn.data.images import read_mask
from srcrn.data.isic import IsicDataset
from srcrn.data.transforms import normalize_batch
from srcrn.evaluation.metrics import SEGMENTATION_METRICS, segmentation_scores
from srcrn.inference.postprocess import keep_largest_region
from srcrn.reporting.figures import segmentation_overlays

OVERLAY_CASES = 4  # per row
TTA_FLIPS = ((3,), (2,), (2, 3))  # dims of NCHW to flip: horizontal, vertical, both


@torch.inference_mode()
def predict_probabilities(model: torch.nn.Module, images: np.ndarray, tta: bool = False) -> torch.Tensor:
    """Sigmoid probabilities [N, 1, S, S] for uint8 NHWC images; ``tta`` averages the four
    flips (none, horizontal, vertical, both), each mapped back before averaging."""
    batch = normalize_batch(images)
    probability = torch.sigmoid(model(batch))
    if tta:
        for dims in TTA_FLIPS:
            probability += torch.sigmoid(model(batch.flip(dims))).flip(dims)
        probability /= 1 + len(TTA_FLIPS)
    return probability


def evaluate_segmentation(
    model: torch.nn.Module,
    dataset: IsicDataset,
    out: str | Path,
    *,
    image_size: int,
    cache: str | Path,
    ids: list[str] | None = None,
    batch_size: int = 32,
    tta: bool = False,
    keep_largest: bool = False,
    show_progress: bool = True,
) -> dict:
    """``keep_largest``: keep only the largest predicted region, holes filled, at the original size."""
    out = Path(out)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    model = model.eval()
    # The cache always holds the whole folder (so training and evaluation share it); ``ids``
    # picks the images to evaluate, e.g. a run's validation split.
    prepared = prepare(dataset, image_size, cache, show_progress=show_progress)
    if ids is not None:
        dataset = dataset.subset(list(ids))
    scored = dataset.has_masks
    rows, overlay_cases = [], []
    batches = range(0, len(dataset), batch_size)
    for start in progress(batches, len(batches), "segment", show_progress):
        samples = dataset.samples[start:start + batch_size]
        positions = prepared.positions([s.image_id for s in samples])
        probabilities = predict_probabilities(model, prepared.images[positions], tta)
        for sample, position, probability in zip(samples, positions, probabilities):
            width, height = (int(v) for v in prepared.index.iloc[position][["width", "height"]])
            full = F.interpolate(probability[None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
            prediction = (full > 0.5).numpy()
            if keep_largest:
                prediction = keep_largest_region(prediction)
            write_mask(out / "masks" / f"{sample.image_id}_segmentation.png", prediction)
            row = {"image_id": sample.image_id, "width": width, "height": height,
                   "lesion_fraction": float(prediction.mean())}
            if scored:
                truth = read_mask(sample.mask_path, (width, height))
                row.update(segmentation_scores(prediction, truth))
                overlay_cases.append({"image_id": sample.image_id, "jaccard": row["jaccard"],
                                      "truth": truth, "prediction": prediction, "image": sample.image_path})
            rows.append(row)
    per_image = pd.DataFrame(rows)
    per_image.to_csv(out / "per_image.csv", index=False)
    metrics: dict = {"n_images": len(per_image), "image_size": image_size, "tta": tta, "keep_largest": keep_largest}
    if scored:
        metrics.update({name: float(per_image[name].mean()) for name in SEGMENTATION_METRICS})
        segmentation_overlays(overlay_cases, out / "overlays.png", per_row=OVERLAY_CASES)
    write_json(out / "metrics.json", metrics)
    return metrics
