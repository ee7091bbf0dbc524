"""``srcrn demo``: both stages on the embedded real sample, offline, in a few CPU minutes.

A smoke run that shows every part working together: it is not a clinical model (a few
dozen training steps on 32 images).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from rich.table import Table

from srcrn.console import console
from srcrn.data.cache import prepare
from srcrn.data.isic import IsicDataset
from srcrn.evaluation.segmentation import evaluate_segmentation
from srcrn.sample import sample_dir
from srcrn.inference.pipeline import TwoStagePipeline, predict_images
from srcrn.training.classification import train_classification
from srcrn.training.config import ClassificationConfig, SegmentationConfig
from srcrn.training.segmentation import load_segmenter, train_segmentation

DEMO_SEGMENTATION = dict(image_size=128, batch_size=8, epochs=3, steps_per_epoch=10, augment="flip")
DEMO_CLASSIFICATION = dict(image_size=128, batch_size=8, epochs=3, input="crop", balance="augment", augment="mix")


def run_demo(out: Path, progress: bool = True) -> dict:
    out = Path(out)
    dataset = IsicDataset.from_dir(sample_dir(), require_masks=True, require_labels=True)
    console.print(f"sample: {len(dataset)} ISIC 2017 images ({int(dataset.melanoma().sum())} melanoma) "
                  f"from {sample_dir()} (see ATTRIBUTION.md there)", soft_wrap=True)
    cache = out / "cache"
    prepare(dataset, DEMO_SEGMENTATION["image_size"], cache, show_progress=progress)

    for earlier in ("segmenter", "classifier", "segmentation-eval", "predictions"):
        if (out / earlier).exists():
            shutil.rmtree(out / earlier)  # the demo's own earlier output: each demo trains afresh
    run = out / "segmenter"
    console.print(f"stage 1: training SRCRN-8s for {DEMO_SEGMENTATION['epochs'] * DEMO_SEGMENTATION['steps_per_epoch']} "
                  "steps on the CPU ...")
    config = SegmentationConfig(**DEMO_SEGMENTATION, cache=str(cache))
    summary = train_segmentation(config, sample_dir(), run, progress=progress)

    from srcrn.data.splits import Split

    split = Split.load(run)
    task = load_segmenter(summary["best_checkpoint"])
    evaluation = out / "segmentation-eval"
    metrics = evaluate_segmentation(task.model, dataset, evaluation, ids=split.val,
                                    image_size=config.image_size, cache=cache, show_progress=progress)

    table = Table(title=f"stage 1: SRCRN-8s on {metrics['n_images']} held-out sample images")
    for column in ("metric", "value"):
        table.add_column(column)
    for name in ("jaccard", "dice", "accuracy", "sensitivity", "specificity", "threshold_jaccard"):
        table.add_row(name, f"{metrics[name]:.3f}")
    console.print(table)

    segmenter = summary["best_checkpoint"]
    console.print(f"stage 2: training the melanoma classifier ({DEMO_CLASSIFICATION['epochs']} epochs, ResNet-50 "
                  "backbone = the SRCRN encoder just trained, frozen; lesion crops; augmented melanoma copies) ...")
    classifier_config = ClassificationConfig(**DEMO_CLASSIFICATION, weights=f"srcrn:{segmenter}",
                                             segmenter=segmenter, cache=str(cache))
    classifier = train_classification(classifier_config, sample_dir(), out / "classifier", progress=progress)

    console.print("both stages on the held-out images (srcrn predict) ...")
    pipeline = TwoStagePipeline.from_checkpoints(segmenter, classifier["best_checkpoint"])
    held_out = [dataset.sample(image_id).image_path for image_id in split.val]
    results, _ = predict_images(pipeline, held_out, out / "predictions", show_progress=progress)
    table = Table(title="stage 1 + 2 on the held-out images")
    for column in ("image", "truth", "P(melanoma)", "decision", "diameter px", "Jaccard"):
        table.add_column(column)
    jaccard = dict(zip(*[pd.read_csv(evaluation / "per_image.csv")[c] for c in ("image_id", "jaccard")]))
    for r in results:
        truth = "melanoma" if dataset.sample(r.image_id).melanoma == 1 else "benign"
        table.add_row(r.image_id, truth, f"{r.melanoma:.3f}", r.decision,
                      f"{r.measurements['longest_diameter_pixels']:.0f}", f"{jaccard[r.image_id]:.3f}")
    console.print(table)
    console.print(f"training curves: {run / 'curves.png'}, {out / 'classifier' / 'curves.png'}\n"
                  f"overlays:        {evaluation / 'overlays.png'}, {out / 'predictions' / 'overlays'}\n"
                  f"predictions:     {out / 'predictions' / 'predictions.csv'}\n"
                  f"metrics:         {evaluation / 'metrics.json'}", soft_wrap=True)
    console.print("[bold yellow]This is a smoke run:[/] a few minutes of CPU training on a 40-image sample, "
                  "not a clinical model. Train on full ISIC data for real use.", soft_wrap=True)
    return metrics
