"""Stage-1 evaluation: predict every image through the one prediction path, score it at its
original size exactly as the ISIC scorer does, and write ISIC files.

For each image, ``Segmenter.mask`` gives the mask at the original size (the model's TTA
and post-processing included); it is written as ``masks/<id>_segmentation.png`` (0/255)
and scored against the truth. Outputs: ``metrics.json`` (macro averages + ``n_images``) and
``per_image.csv``; a folder without masks gets masks and ``per_image.csv`` but no
``metrics.json`` (scoring never writes a metrics file without scores). The returned
``SegmentationEvaluation`` also holds the cases a report may draw (best, middling, worst):
drawing is the reporting layer's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from srcrn.answers.rendering import write_mask
from srcrn.atomic import atomic_path, write_json
from srcrn.console import progress
from srcrn.data.cache import prepare
from srcrn.data.images import read_mask
from srcrn.data.isic import IsicDataset
from srcrn.errors import DataError
from srcrn.evaluation.metrics import SEGMENTATION_METRICS, segmentation_scores
from srcrn.runtime.segmenter import Segmenter


@dataclass
class SegmentationEvaluation:
    """What ``segment eval`` measured: macro-averaged metrics, per-image rows, the cases worth drawing, and whether any image was scored."""

    metrics: dict[str, Any]
    per_image: pd.DataFrame
    cases: list[dict[str, Any]] = field(default_factory=list)  # image path, truth, prediction, jaccard
    scored: bool = True  # False: no image had a mask, so masks were written and nothing scored


def evaluate_segmentation(
    segmenter: Segmenter,
    dataset: IsicDataset,
    out: str | Path,
    *,
    cache: str | Path,
    ids: list[str] | None = None,
    tta: bool | None = None,
    keep_largest: bool | None = None,
    show_progress: bool = True,
) -> SegmentationEvaluation:
    """``tta`` and ``keep_largest`` default to the model's own settings. Every image to score
    must have its mask: a missing one is refused before anything is written."""
    out = Path(out)
    # The cache always holds the whole folder (so training and evaluation share it); ``ids``
    # picks the images to evaluate, e.g. a run's validation split.
    prepared = prepare(dataset, segmenter.image_size, cache, show_progress=show_progress)
    if ids is not None:
        dataset = dataset.subset(list(ids))
    with_masks = [s.mask_path is not None for s in dataset.samples]
    scored = any(with_masks)
    if scored and not all(with_masks):
        missing = next(s for s in dataset.samples if s.mask_path is None)
        raise DataError(
            missing.image_path,
            "has no mask, so the segmentation cannot be scored (give every "
            "evaluated image its mask, or none for masks only)",
        )
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rows, cases = [], []
    batches = range(0, len(dataset), segmenter.batch_size)
    for start in progress(batches, len(batches), "segment", show_progress):
        samples = dataset.samples[start : start + segmenter.batch_size]
        positions = prepared.positions([s.image_id for s in samples])
        probabilities = segmenter.probabilities(prepared.images[positions], tta=tta)
        for sample, position, probability in zip(samples, positions, probabilities):
            width, height = (int(v) for v in prepared.index.iloc[position][["width", "height"]])
            prediction = segmenter.mask(probability, width, height, keep_largest=keep_largest)
            write_mask(out / "masks" / f"{sample.image_id}_segmentation.png", prediction)
            row: dict[str, Any] = {
                "image_id": sample.image_id,
                "width": width,
                "height": height,
                "lesion_fraction": float(prediction.mean()),
            }
            if scored and sample.mask_path is not None:
                truth = read_mask(sample.mask_path, (width, height))
                row.update(segmentation_scores(prediction, truth))
                cases.append(
                    {
                        "image_id": sample.image_id,
                        "jaccard": row["jaccard"],
                        "truth": truth,
                        "prediction": prediction,
                        "image": sample.image_path,
                    }
                )
            rows.append(row)
    per_image = pd.DataFrame(rows)
    with atomic_path(out / "per_image.csv") as temporary:
        per_image.to_csv(temporary, index=False)
    metrics: dict[str, Any] = {
        "n_images": len(per_image),
        "image_size": segmenter.image_size,
        "tta": segmenter.spec.tta if tta is None else tta,
        "keep_largest": segmenter.spec.keep_largest if keep_largest is None else keep_largest,
    }
    if scored:
        metrics.update({name: float(per_image[name].mean()) for name in SEGMENTATION_METRICS})
        write_json(out / "metrics.json", metrics)
    else:
        # No truth, no scores: a metrics.json without scores would read as a scored run, so
        # none is written (and a stale one from an earlier scored run is removed).
        (out / "metrics.json").unlink(missing_ok=True)
    return SegmentationEvaluation(metrics, per_image, cases, scored=scored)
