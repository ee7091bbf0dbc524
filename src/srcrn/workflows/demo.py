"""``srcrn demo``: both stages on the embedded real sample, offline, in a few CPU minutes.

A smoke run that shows every part working together: it is not a clinical model (a few
dozen training steps on 32 images). Returns what the CLI shows; prints nothing itself.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from srcrn.data.cache import prepare
from srcrn.data.isic import IsicDataset
from srcrn.data.splits import Split
from srcrn.inference.batch import predict_images
from srcrn.inference.pipeline import Pipeline, Prediction
from srcrn.sample import sample_dir
from srcrn.settings import ClassifyTrainSettings, SegmentTrainSettings, load_settings
from srcrn.workflows.classify import train_classifier
from srcrn.workflows.segment import evaluate_segmenter, train_segmenter

log = logging.getLogger(__name__)
DEMO_SEGMENTATION: dict[str, Any] = dict(image_size=128, batch_size=8, epochs=3, steps_per_epoch=10, augment="flip")
DEMO_CLASSIFICATION: dict[str, Any] = dict(
    image_size=128, batch_size=8, epochs=3, input="crop", balance="augment", augment="mix"
)


@dataclass
class DemoResult:
    metrics: dict
    predictions: list[Prediction]
    truth: dict[str, str]
    jaccard: dict[str, float]
    files: dict[str, list[Path]]


def run_demo(out: Path, progress: bool = True) -> DemoResult:
    out = Path(out)
    dataset = IsicDataset.from_dir(sample_dir(), require_masks=True, require_labels=True)
    log.info(
        "sample: %d ISIC 2017 images (%d melanoma) from %s (see ATTRIBUTION.md there)",
        len(dataset),
        int(dataset.melanoma().sum()),
        sample_dir(),
    )
    cache = out / "cache"
    prepare(dataset, DEMO_SEGMENTATION["image_size"], cache, show_progress=progress)

    for earlier in ("segmenter", "classifier", "segmentation-eval", "predictions"):
        if (out / earlier).exists():
            shutil.rmtree(out / earlier)  # the demo's own earlier output: each demo trains afresh
    run = out / "segmenter"
    steps = DEMO_SEGMENTATION["epochs"] * DEMO_SEGMENTATION["steps_per_epoch"]
    log.info("stage 1: training SRCRN-8s for %d steps on the CPU ...", steps)
    config = load_settings(SegmentTrainSettings, **DEMO_SEGMENTATION, cache=str(cache))
    summary = train_segmenter(config, sample_dir(), run, progress=progress)

    split = Split.load(run)
    segmenter = summary["best_checkpoint"]
    evaluation = out / "segmentation-eval"
    metrics = evaluate_segmenter(
        segmenter, sample_dir(), evaluation, ids=split.val, cache=cache, progress=progress
    ).metrics

    log.info(
        "stage 2: training the melanoma classifier (%d epochs, ResNet-50 backbone = the SRCRN encoder just "
        "trained, frozen; lesion crops; augmented melanoma copies) ...",
        DEMO_CLASSIFICATION["epochs"],
    )
    classifier_config = load_settings(
        ClassifyTrainSettings,
        **DEMO_CLASSIFICATION,
        weights=f"srcrn:{segmenter}",
        segmenter=segmenter,
        cache=str(cache),
    )
    classifier = train_classifier(classifier_config, sample_dir(), out / "classifier", progress=progress)

    log.info("both stages on the held-out images (srcrn predict) ...")
    pipeline = Pipeline.from_checkpoints(segmenter, classifier.get("model_checkpoint", classifier["best_checkpoint"]))
    held_out = [dataset.sample(image_id).image_path for image_id in split.val]
    results, _ = predict_images(pipeline, held_out, out / "predictions", show_progress=progress)
    per_image = pd.read_csv(evaluation / "per_image.csv")
    truth = {r.image_id: "melanoma" if dataset.sample(r.image_id).melanoma == 1 else "benign" for r in results}
    files = {
        "training curves": [run / "curves.png", out / "classifier" / "curves.png"],
        "overlays": [evaluation / "overlays.png", out / "predictions" / "overlays"],
        "predictions": [out / "predictions" / "predictions.csv"],
        "metrics": [evaluation / "metrics.json"],
    }
    return DemoResult(metrics, results, truth, dict(zip(per_image["image_id"], per_image["jaccard"])), files)
