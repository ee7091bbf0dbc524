"""Stage 1 end to end: train and draw the curves; evaluate and draw the overlays."""

from __future__ import annotations

from pathlib import Path

from srcrn.bundle.reading import bundle_models, names_a_bundle
from srcrn.commands import SegmentEvalSettings
from srcrn.data.cache import default_cache_dir
from srcrn.data.isic import IsicDataset
from srcrn.evaluation.segmentation import SegmentationEvaluation, evaluate_segmentation
from srcrn.reporting.figures import segmentation_overlays, training_curves
from srcrn.runtime.segmenter import Segmenter
from srcrn.settings import SegmentTrainSettings
from srcrn.training.segmentation import LOGGED, train_segmentation

OVERLAY_CASES = 4  # per row of overlays.png


def train_segmenter(
    settings: SegmentTrainSettings, data: str | Path, out: str | Path, *, resume: bool = False, progress: bool = True
) -> dict:
    """``segment train``: train (or resume) in ``out``, then draw the training curves; returns the run's summary."""
    out = Path(out)
    summary = train_segmentation(settings, data, out, resume=resume, progress=progress)
    if summary and (out / "metrics.csv").is_file():
        training_curves(
            out / "metrics.csv",
            out / "curves.png",
            metrics=LOGGED,
            title=f"{settings.arch} stride {settings.stride}: training curves",
        )
    return summary


EVAL_FILES = SegmentEvalSettings.output_rule.writes  # what segment eval writes


def evaluate_segmenter(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    ids: list[str] | None = None,
    tta: bool | None = None,
    keep_largest: bool | None = None,
    batch_size: int = 32,
    cache: str | Path | None = None,
    progress: bool = True,
) -> SegmentationEvaluation:
    """``segment eval``: masks, scores, and ``overlays.png`` of the best, middling and worst cases.
    ``checkpoint`` may name a bundle (or ``default``, the shipped model): its segmenter is scored
    as ``predict`` runs it (ONNX Runtime), so the README's figures can be measured again."""
    if names_a_bundle(checkpoint):
        segmenter = bundle_models(checkpoint)[0]
        segmenter.batch_size = batch_size
    else:
        segmenter = Segmenter.from_checkpoint(checkpoint, batch_size)
    data = Path(data)
    result = evaluate_segmentation(
        segmenter,
        IsicDataset.from_dir(data),
        out,
        ids=ids,
        tta=tta,
        keep_largest=keep_largest,
        show_progress=progress,
        cache=cache or default_cache_dir(data, segmenter.image_size),
    )
    if result.cases:
        segmentation_overlays(result.cases, Path(out) / "overlays.png", per_row=OVERLAY_CASES)
    return result
