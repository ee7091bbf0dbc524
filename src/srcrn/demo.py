"""``srcrn demo``: the pipeline on the embedded real sample, offline, in a few CPU minutes.

A smoke run that shows every part working together: it is not a clinical model (a few
dozen training steps on 32 images).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rich.table import Table

from srcrn.console import console
from srcrn.data.cache import prepare
from srcrn.data.isic import IsicDataset
from srcrn.evaluation.segmentation import evaluate_segmentation
from srcrn.sample import sample_dir
from srcrn.training.config import SegmentationConfig
from srcrn.training.segmentation import load_segmenter, train_segmentation

DEMO_SEGMENTATION = dict(image_size=128, batch_size=8, epochs=3, steps_per_epoch=10, augment="flip")


def run_demo(out: Path, progress: bool = True) -> dict:
    out = Path(out)
    dataset = IsicDataset.from_dir(sample_dir(), require_masks=True, require_labels=True)
    console.print(f"sample: {len(dataset)} ISIC 2017 images ({int(dataset.melanoma().sum())} melanoma) "
                  f"from {sample_dir()} (see ATTRIBUTION.md there)", soft_wrap=True)
    cache = out / "cache"
    prepare(dataset, DEMO_SEGMENTATION["image_size"], cache, show_progress=progress)

    run = out / "segmenter"
    if run.exists():
        shutil.rmtree(run)  # the demo's own earlier output: each demo trains afresh
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

    table = Table(title=f"demo: SRCRN-8s on {metrics['n_images']} held-out sample images")
    for column in ("metric", "value"):
        table.add_column(column)
    for name in ("jaccard", "dice", "accuracy", "sensitivity", "specificity", "threshold_jaccard"):
        table.add_row(name, f"{metrics[name]:.3f}")
    console.print(table)
    console.print(f"training curves: {run / 'curves.png'}\noverlays:        {evaluation / 'overlays.png'}\n"
                  f"masks:           {evaluation / 'masks'}\nmetrics:         {evaluation / 'metrics.json'}")
    console.print("[bold yellow]This is a smoke run:[/] a few minutes of CPU training on a 40-image sample, "
                  "not a clinical model. Train on full ISIC data for real use.", soft_wrap=True)
    return metrics
