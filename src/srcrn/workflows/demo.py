"""``srcrn demo``: both stages on the embedded real sample (40 ISIC 2017 images), offline.

- ``run_shipped_demo``: the model shipped inside the package (``inference.default``), which
  never saw these 40 images, predicts them in seconds: their Jaccard against the masks, the
  AUC, the table of probabilities and decisions, overlays written. What ``srcrn demo`` does.
- ``run_demo`` (``srcrn demo --train``): a smoke run that trains both stages for a few dozen
  steps on 32 of the images and predicts the other 8: every part working together, not a
  clinical model.

Both return what the CLI shows and print nothing themselves.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from srcrn.answers.results import Prediction
from srcrn.atomic import write_json
from srcrn.commands import DemoSettings
from srcrn.data.images import read_mask
from srcrn.data.isic import IsicDataset
from srcrn.inference.batch import predict_images
from srcrn.inference.pipeline import Pipeline
from srcrn.sample import sample_dir

log = logging.getLogger(__name__)
DEMO_SEGMENTATION: dict[str, Any] = dict(image_size=128, batch_size=8, epochs=3, steps_per_epoch=10, augment="flip")
DEMO_CLASSIFICATION: dict[str, Any] = dict(
    image_size=128, batch_size=8, epochs=3, input="crop", balance="augment", augment="mix"
)


@dataclass
class DemoResult:
    """What a demo measured and wrote: stage-1 metrics, stage-2 figures (with labels), per-image rows, truth, Jaccard per image, the files."""

    metrics: dict
    predictions: list[Prediction]
    truth: dict[str, str]
    jaccard: dict[str, float]
    files: dict[str, list[Path]]
    classification: dict | None = None  # the shipped model's AUC and operating point on the sample
    model: str = "trained"  # "shipped" or "trained"


def run_shipped_demo(out: Path, progress: bool = True) -> DemoResult:
    """The shipped model on the 40 embedded images, with their clinical context: scored against
    their masks (ISIC scorer's per-image Jaccard) and melanoma labels. torch-free."""
    from srcrn.bundle.default import default_bundle
    from srcrn.evaluation.classification import classification_metrics
    from srcrn.evaluation.metrics import segmentation_scores

    out = Path(out)
    dataset = IsicDataset.from_dir(sample_dir(), require_masks=True, require_labels=True)
    pipeline = Pipeline.from_bundle(default_bundle())
    log.info("the shipped model (%s) on the %d embedded images, which it never saw ...", default_bundle(), len(dataset))
    images = [dataset.sample(i).image_path for i in dataset.ids]
    results, errors = predict_images(
        pipeline, images, out / "predictions", show_progress=progress, metadata=sample_dir() / "metadata.csv"
    )
    if errors:
        raise RuntimeError(f"the embedded sample failed to predict: {errors[0]}")
    scores = {}
    for r in results:
        expected = read_mask(Path(str(dataset.sample(r.image_id).mask_path)), (r.width, r.height))
        scores[r.image_id] = segmentation_scores(read_mask(Path(r.mask), (r.width, r.height)), expected)
    segmentation = {
        metric: float(np.mean([s[metric] for s in scores.values()])) for metric in next(iter(scores.values()))
    } | {"n_images": len(scores)}
    labels = np.array([dataset.sample(r.image_id).melanoma for r in results], dtype=int)
    probability = np.array([r.probability for r in results])
    classification = classification_metrics(labels, probability, threshold=pipeline.threshold)
    truth = {r.image_id: "melanoma" if label else "benign" for r, label in zip(results, labels)}
    write_json(out / "metrics.json", {"segmentation": segmentation, "classification": classification})
    files = {
        "overlays": [out / "predictions" / "overlays"],
        "predictions": [out / "predictions" / "predictions.csv"],
        "metrics": [out / "metrics.json"],
    }
    jaccard = {i: s["jaccard"] for i, s in scores.items()}
    return DemoResult(segmentation, results, truth, jaccard, files, classification, "shipped")


def run_demo(out: Path, progress: bool = True) -> DemoResult:
    """``srcrn demo --train``: a toy pair of models trained on the sample's training part, then both stages on its held-out images."""
    # Training needs torch (srcrn[train]); the shipped-model demo above does not.
    from srcrn.data.cache import prepare
    from srcrn.data.splits import Split
    from srcrn.settings import ClassifyTrainSettings, SegmentTrainSettings, load_settings
    from srcrn.training.summary import kept_model
    from srcrn.workflows.classify import train_classifier
    from srcrn.workflows.segment import evaluate_segmenter, train_segmenter

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
    pipeline = Pipeline.from_checkpoints(segmenter, kept_model(classifier))
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


def demo_command(given: DemoSettings) -> tuple[DemoResult, bool]:
    """``srcrn demo``: the shipped model on the sample (or, with --train or without a shipped
    model, a toy pair trained first); the result and whether the shipped model answered."""
    from srcrn.bundle.default import default_bundle_dir
    from srcrn.bundle.schema import BUNDLE_FILE
    from srcrn.outputs import claim_output

    shipped = not given.train and (default_bundle_dir() / BUNDLE_FILE).is_file()
    if not given.train and not shipped:
        log.info("this srcrn ships no default model: training a toy pair of models instead (srcrn demo --train)")
    # A rerun replaces the demo's own earlier output. A folder without the demo's manifest is
    # not taken over by the name of a file in it: the toy demo deletes its subfolders first.
    with claim_output(given.out, DemoSettings.output_rule):
        run = run_shipped_demo if shipped else run_demo
        return run(given.out, progress=given.progress), shipped
