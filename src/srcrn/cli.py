"""The ``srcrn`` command line: parse, call the library, print. No logic of its own."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from srcrn.console import console
from srcrn.errors import SrcrnError

app = typer.Typer(
    name="srcrn",
    help="Two-stage melanoma detection: SRCRN lesion segmentation + ResNet-50 classification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_error(error: Exception) -> None:
    # One line, never wrapped and never parsed as markup: paths may hold brackets.
    console.print(Text("error: ", style="bold red") + Text(str(error)), soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every SrcrnError becomes one red line and exit status 2."""
    try:
        app(args=argv, standalone_mode=True)
    except SrcrnError as error:
        _print_error(error)
        sys.exit(2)


@app.command()
def prepare(
    data: Annotated[Path, typer.Argument(help="ISIC-layout data folder")],
    out: Annotated[Path, typer.Option("--out", help="cache folder to write (reused when inputs are unchanged)")],
    size: Annotated[int, typer.Option("--size", help="side of the square images in the cache")] = 128,
    workers: Annotated[Optional[int], typer.Option(help="decoding processes (default: all cores)")] = None,
    require_masks: Annotated[bool, typer.Option(help="refuse images without a mask")] = False,
    require_labels: Annotated[bool, typer.Option(help="refuse images without a label")] = False,
) -> None:
    """Decode every image once at reduced scale into a memory-mapped cache for training."""
    from srcrn.data.cache import prepare as prepare_cache
    from srcrn.data.isic import IsicDataset

    if not 16 <= size <= 4096:
        raise SrcrnError(f"--size {size}: choose a side between 16 and 4096 pixels")
    dataset = IsicDataset.from_dir(data, require_masks=require_masks, require_labels=require_labels)
    if not dataset.has_masks:
        with_masks = sum(s.mask_path is not None for s in dataset)
        console.print(f"note: {with_masks} of {len(dataset)} images have masks; masks are not cached")
    prepared = prepare_cache(dataset, size, out, workers=workers)
    console.print(f"prepared {len(prepared.ids)} images at {size}x{size} in {prepared.folder}")


@app.command()
def split(
    data: Annotated[Path, typer.Argument(help="ISIC-layout data folder")],
    out: Annotated[Path, typer.Option("--out", help="folder to write split.csv and split.json into")],
    method: Annotated[str, typer.Option("--method", help="paper | official | random")] = "paper",
    seed: Annotated[int, typer.Option(help="seed of the random split")] = 0,
) -> None:
    """Write the train/validation split that training would use."""
    from srcrn.data.isic import IsicDataset
    from srcrn.data.splits import make_split

    chosen = make_split(IsicDataset.from_dir(data), method, seed=seed)
    for note in chosen.notes:
        console.print(f"note: {note}", soft_wrap=True)
    path = chosen.save(out)
    console.print(f"{chosen.method} split: {len(chosen.train)} train, {len(chosen.val)} val -> {path}")


segment_app = typer.Typer(help="Stage 1: SRCRN lesion segmentation.", no_args_is_help=True)
app.add_typer(segment_app, name="segment")


@segment_app.command("train")
def segment_train(
    data: Annotated[Path, typer.Option("--data", help="ISIC-layout folder with images, masks (labels optional)")],
    out: Annotated[Path, typer.Option("--out", help="run folder: checkpoints, metrics.csv, curves.png, split")],
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML file of settings (flags override it)")] = None,
    recipe: Annotated[Optional[str], typer.Option(help="paper (default) | strong: named defaults, see docs")] = None,
    arch: Annotated[Optional[str], typer.Option(help="srcrn | unet | fpn (smp baselines, same protocol)")] = None,
    stride: Annotated[Optional[int], typer.Option(help="decoder stride: 8, 16 or 32 (paper 3.1)")] = None,
    score_channels: Annotated[Optional[int], typer.Option(help="channels of the stride score maps (paper: 2)")] = None,
    encoder_weights: Annotated[Optional[str], typer.Option(help="none | imagenet | PATH")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="epochs (default 10)")] = None,
    steps_per_epoch: Annotated[Optional[int], typer.Option(help="training batches per epoch (paper: 300); 0 = one pass")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="batch size (paper: 8)")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="square input side, a multiple of 32 (paper: 128)")] = None,
    lr: Annotated[Optional[float], typer.Option(help="learning rate (paper: Adam 1e-3)")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="adam | adamw")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="weight decay (decoupled with adamw)")] = None,
    schedule: Annotated[Optional[str], typer.Option(help="constant | cosine | onecycle (ends with --epochs or --time-budget)")] = None,
    warmup_epochs: Annotated[Optional[float], typer.Option(help="linear warm-up, in epochs (fractions allowed)")] = None,
    ema_decay: Annotated[Optional[float], typer.Option(help="moving average of the weights, e.g. 0.998; 0 = off")] = None,
    loss: Annotated[Optional[str], typer.Option(help="bce | bce+dice")] = None,
    augment: Annotated[Optional[str], typer.Option(help="none | flip | strong")] = None,
    tta: Annotated[Optional[bool], typer.Option("--tta/--no-tta", help="default of segment eval for this model")] = None,
    split: Annotated[Optional[str], typer.Option(help="paper | official | random")] = None,
    seed: Annotated[Optional[int], typer.Option(help="seed of everything random")] = None,
    num_workers: Annotated[Optional[int], typer.Option(help="data-loading processes")] = None,
    accelerator: Annotated[Optional[str], typer.Option(help="auto | cpu | gpu")] = None,
    devices: Annotated[Optional[str], typer.Option(help="number of devices, or auto")] = None,
    num_nodes: Annotated[Optional[int], typer.Option(help="machines (DDP)")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="auto | ddp | ...")] = None,
    precision: Annotated[Optional[str], typer.Option(help="32-true | bf16-mixed | ...")] = None,
    time_budget: Annotated[Optional[str], typer.Option(help="stop after this wall time, e.g. 25m")] = None,
    cache: Annotated[Optional[Path], typer.Option(help="prepared-cache folder (default: under ~/.cache/srcrn)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --out from its last checkpoint")] = False,
    progress_bar: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Train SRCRN (or a baseline) with a named recipe: the paper's by default, or 'strong';
    every part of a recipe can be overridden by --config or a flag."""
    from srcrn.training.config import SegmentationConfig, load_config
    from srcrn.training.segmentation import train_segmentation

    if resume and config is None and (out / "config.yaml").is_file():
        config = out / "config.yaml"  # resume with the settings the run started with
    settings = load_config(
        SegmentationConfig, config, recipe=recipe, arch=arch, stride=stride, score_channels=score_channels,
        encoder_weights=encoder_weights, epochs=epochs,
        steps_per_epoch=None if steps_per_epoch is None else (steps_per_epoch or None),
        batch_size=batch_size, image_size=image_size, lr=lr, optimizer=optimizer, weight_decay=weight_decay,
        schedule=schedule, warmup_epochs=warmup_epochs, ema_decay=ema_decay, loss=loss, augment=augment, tta=tta,
        split=split, seed=seed, num_workers=num_workers, accelerator=accelerator, devices=devices,
        num_nodes=num_nodes, strategy=strategy, precision=precision, time_budget=time_budget,
        cache=str(cache) if cache else None,
    )
    if settings.image_size % 32:
        raise SrcrnError(f"--image-size {settings.image_size}: SRCRN needs a multiple of 32 (e.g. 128)")
    summary = train_segmentation(settings, data, out, resume=resume, progress=progress_bar)
    if summary:
        console.print(
            f"trained {summary['epochs']} epochs in {summary['wall_seconds']:.0f}s; best val Jaccard "
            f"{summary['best_val_jaccard'] if summary['best_val_jaccard'] is not None else 'n/a'}; "
            f"checkpoint {summary['best_checkpoint']}", soft_wrap=True)


@segment_app.command("eval")
def segment_eval(
    model: Annotated[Path, typer.Option("--model", help="checkpoint (.ckpt) of segment train")],
    data: Annotated[Path, typer.Option("--data", help="ISIC-layout folder; masks give the scores")],
    out: Annotated[Path, typer.Option("--out", help="folder for masks/, per_image.csv, metrics.json")],
    split_file: Annotated[Optional[Path], typer.Option("--split", help="split.csv (or its run folder) to pick images from")] = None,
    subset: Annotated[str, typer.Option(help="with --split: train | val")] = "val",
    batch_size: Annotated[int, typer.Option(help="inference batch size")] = 32,
    tta: Annotated[Optional[bool], typer.Option(
        "--tta/--no-tta", help="average the four flips (default: as the model's recipe says)")] = None,
    keep_largest: Annotated[bool, typer.Option(
        "--keep-largest", help="keep the largest predicted region, holes filled (one lesion per image)")] = False,
    cache: Annotated[Optional[Path], typer.Option(help="prepared-cache folder")] = None,
    progress_bar: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Predict masks at the original size and score them as the ISIC challenge does."""
    from srcrn.data.isic import IsicDataset
    from srcrn.evaluation.segmentation import evaluate_segmentation
    from srcrn.data.cache import default_cache_dir
    from srcrn.training.segmentation import load_segmenter

    task = load_segmenter(model)
    dataset = IsicDataset.from_dir(data)
    ids = _split_ids(split_file, subset)
    size = int(task.hparams.image_size)
    if tta is None:
        tta = bool(task.hparams.get("tta", False))
    metrics = evaluate_segmentation(task.model, dataset, out, image_size=size, ids=ids,
                                    cache=cache or default_cache_dir(data, size), batch_size=batch_size,
                                    tta=tta, keep_largest=keep_largest, show_progress=progress_bar)
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
    console.print(f"{out / 'metrics.json'}: {shown}", soft_wrap=True)


classify_app = typer.Typer(help="Stage 2: melanoma classification of SRCRN-segmented lesions.", no_args_is_help=True)
app.add_typer(classify_app, name="classify")


def _classification_settings(config, **flags):
    from srcrn.training.config import ClassificationConfig, load_config

    return load_config(ClassificationConfig, config, **flags)


ClassifyData = Annotated[Path, typer.Option("--data", help="ISIC-layout folder with images and labels")]
ClassifyOut = Annotated[Path, typer.Option("--out", help="run folder")]
Segmenter = Annotated[Optional[Path], typer.Option("--segmenter", help="SRCRN checkpoint giving the lesion masks")]
Input = Annotated[Optional[str], typer.Option("--input", help="full | masked | crop")]
Balance = Annotated[Optional[str], typer.Option(help="none | augment | extra")]
Weights = Annotated[Optional[str], typer.Option(help="imagenet | none | PATH | srcrn:CKPT")]


@classify_app.command("train")
def classify_train(
    data: ClassifyData,
    out: ClassifyOut,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML file of settings (flags override it)")] = None,
    segmenter: Segmenter = None,
    input: Input = None,
    margin: Annotated[Optional[float], typer.Option(help="crop margin, a fraction of the lesion box")] = None,
    balance: Balance = None,
    ratio: Annotated[Optional[float], typer.Option(help="target melanoma : benign ratio")] = None,
    augment: Annotated[Optional[str], typer.Option(help="geometry | colour | axis | mix (balance augment)")] = None,
    extra: Annotated[Optional[Path], typer.Option(help="labelled extra images (balance extra)")] = None,
    weights: Weights = None,
    finetune: Annotated[Optional[bool], typer.Option("--finetune/--frozen", help="train the backbone too")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="batch size (paper best: 32)")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="epochs (paper: 100)")] = None,
    lr: Annotated[Optional[float], typer.Option(help="SGD learning rate (paper: 0.01)")] = None,
    lr_decay: Annotated[Optional[float], typer.Option(help="inverse-time decay per update (paper: 5e-4)")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="L2 weight decay (default 0)")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="square input side (paper: 128)")] = None,
    split: Annotated[Optional[str], typer.Option(help="paper | official | random")] = None,
    seed: Annotated[Optional[int], typer.Option(help="seed of everything random")] = None,
    num_workers: Annotated[Optional[int], typer.Option(help="data-loading processes")] = None,
    accelerator: Annotated[Optional[str], typer.Option(help="auto | cpu | gpu")] = None,
    devices: Annotated[Optional[str], typer.Option(help="number of devices, or auto")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="auto | ddp | ...")] = None,
    time_budget: Annotated[Optional[str], typer.Option(help="stop after this wall time, e.g. 25m")] = None,
    cache: Annotated[Optional[Path], typer.Option(help="prepared-cache folder")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --out")] = False,
    progress_bar: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Train the melanoma classifier with the paper's recipe (every part overridable)."""
    from srcrn.training.classification import train_classification

    if resume and config is None and (out / "config.yaml").is_file():
        config = out / "config.yaml"
    settings = _classification_settings(
        config, segmenter=str(segmenter) if segmenter else None, input=input, margin=margin, balance=balance,
        ratio=ratio, augment=augment, extra=str(extra) if extra else None, weights=weights, finetune=finetune,
        batch_size=batch_size, epochs=epochs, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
        image_size=image_size, split=split, seed=seed, num_workers=num_workers, accelerator=accelerator,
        devices=devices, strategy=strategy, time_budget=time_budget, cache=str(cache) if cache else None)
    summary = train_classification(settings, data, out, resume=resume, progress=progress_bar)
    if summary:
        console.print(f"trained {summary['epochs']} epochs in {summary['wall_seconds']:.0f}s; best val AUC "
                      f"{summary['best_val_auc']}; checkpoint {summary['best_checkpoint']}", soft_wrap=True)


@classify_app.command("eval")
def classify_eval(
    model: Annotated[Path, typer.Option("--model", help="checkpoint (.ckpt) of classify train")],
    data: ClassifyData,
    out: Annotated[Path, typer.Option("--out", help="folder for predictions.csv, metrics.json, roc.png")],
    segmenter: Segmenter = None,
    split_file: Annotated[Optional[Path], typer.Option("--split", help="split.csv (or its run folder) to pick images from")] = None,
    subset: Annotated[str, typer.Option(help="with --split: train | val")] = "val",
    target_sensitivity: Annotated[Optional[float], typer.Option(
        help="choose the threshold reaching this sensitivity on these images, and store it in --model")] = None,
    cache: Annotated[Optional[Path], typer.Option(help="prepared-cache folder")] = None,
    progress_bar: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Melanoma probabilities for every image; AUC (bootstrap 95 % CI), accuracy, sensitivity...
    With --target-sensitivity, also pick the operating threshold and store it in the checkpoint."""
    from srcrn.evaluation.classification import evaluate_classifier
    from srcrn.training.classification import load_classifier

    if target_sensitivity is not None and not 0 < target_sensitivity <= 1:
        raise SrcrnError(f"--target-sensitivity {target_sensitivity}: choose a value in (0, 1]")
    metrics = evaluate_classifier(load_classifier(model), data, out, ids=_split_ids(split_file, subset),
                                  segmenter=str(segmenter) if segmenter else None, cache=cache,
                                  show_progress=progress_bar, target_sensitivity=target_sensitivity,
                                  checkpoint=model)
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
    console.print(f"{out / 'predictions.csv'}" + (f"; {out / 'metrics.json'}: {shown}" if metrics else ""),
                  soft_wrap=True)


@classify_app.command("sweep")
def classify_sweep(
    data: ClassifyData,
    out: ClassifyOut,
    batch_sizes: Annotated[str, typer.Option(help="comma-separated batch sizes")] = "4,8,16,32,64",
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML file of settings")] = None,
    segmenter: Segmenter = None,
    input: Input = None,
    balance: Balance = None,
    weights: Weights = None,
    epochs: Annotated[Optional[int], typer.Option(help="epochs per run")] = None,
    cache: Annotated[Optional[Path], typer.Option(help="prepared-cache folder")] = None,
    progress_bar: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """The batch-size study (paper Table 3): one run per batch size, a table and a figure."""
    from srcrn.training.sweep import batch_size_sweep, markdown_table

    try:
        sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
    except ValueError:
        raise SrcrnError(f"--batch-sizes '{batch_sizes}': expected integers such as 4,8,16,32,64") from None
    settings = _classification_settings(config, segmenter=str(segmenter) if segmenter else None, input=input,
                                        balance=balance, weights=weights, epochs=epochs,
                                        cache=str(cache) if cache else None)
    table = batch_size_sweep(settings, data, out, sizes, progress=progress_bar)
    console.print(markdown_table(table), soft_wrap=True)
    console.print(f"table: {out / 'sweep.csv'}, {out / 'sweep.md'}; figure: {out / 'sweep.png'}")


@app.command()
def predict(
    inputs: Annotated[list[Path], typer.Argument(help="images and/or folders of images")],
    out: Annotated[Path, typer.Option("--out", help="folder for masks/, overlays/, predictions.csv/.json")],
    segmenter: Annotated[Optional[Path], typer.Option("--segmenter", help="SRCRN checkpoint (engine torch)")] = None,
    classifier: Annotated[Optional[Path], typer.Option("--classifier", help="classifier checkpoint (engine torch)")] = None,
    engine: Annotated[str, typer.Option(help="torch (checkpoints) | onnx (a bundle of srcrn export onnx)")] = "torch",
    model: Annotated[Optional[Path], typer.Option("--model", help="bundle folder (engine onnx)")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="decision threshold (default: the checkpoint's)")] = None,
    batch_size: Annotated[int, typer.Option(help="images per batch")] = 8,
    progress_bar: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Both stages for each image: lesion mask (original size), measurements, melanoma
    probability and decision, overlay. A bad file is reported and skipped."""
    from srcrn.inference.pipeline import TwoStagePipeline, predict_images

    if engine == "torch":
        if segmenter is None or classifier is None:
            raise SrcrnError("engine torch needs --segmenter CKPT and --classifier CKPT")
        pipeline = TwoStagePipeline.from_checkpoints(segmenter, classifier, threshold)
    elif engine == "onnx":
        if model is None:
            raise SrcrnError("engine onnx needs --model DIR (a bundle written by 'srcrn export onnx')")
        pipeline = TwoStagePipeline.from_bundle(model, threshold)
    else:
        raise SrcrnError(f"unknown engine '{engine}'; choose torch or onnx")
    results, errors = predict_images(pipeline, inputs, out, batch_size=batch_size, show_progress=progress_bar)
    table = Table(title=f"{len(results)} images predicted, {len(errors)} skipped")
    for column in ("image", "melanoma", "decision", "diameter px", "flags"):
        table.add_column(column, no_wrap=column == "image")
    for r in results[:20]:
        m = r.measurements
        flags = " ".join(f for f, on in (("empty", m["empty_mask"]), ("border", m["touches_border"])) if on)
        table.add_row(r.image_id, f"{r.melanoma:.3f}", r.decision, f"{m['longest_diameter_pixels']:.0f}", flags)
    if len(results) > 20:
        table.caption = f"first 20 of {len(results)}: all are in predictions.csv"
    console.print(table)
    console.print(f"{out / 'predictions.csv'}, {out / 'predictions.json'}, masks in {out / 'masks'}, "
                  f"overlays in {out / 'overlays'}", soft_wrap=True)


export_app = typer.Typer(help="Export trained models for deployment.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("onnx")
def export_onnx_command(
    segmenter: Annotated[Path, typer.Option("--segmenter", help="SRCRN checkpoint (segment train)")],
    classifier: Annotated[Path, typer.Option("--classifier", help="classifier checkpoint (classify train)")],
    out: Annotated[Path, typer.Option("--out", help="bundle folder: both models + bundle.json")],
) -> None:
    """Both stages as ONNX models with their preprocessing settings, threshold and version:
    run them with `srcrn predict --engine onnx --model DIR` (no torch needed)."""
    from srcrn.inference.engines import export_onnx

    folder = export_onnx(segmenter, classifier, out)
    console.print(f"bundle written: {folder} (segmenter.onnx, classifier.onnx, bundle.json)")


@app.command()
def reproduce(
    config: Annotated[Path, typer.Option("--config", help="YAML: configs/paper.yaml, dev.yaml or demo.yaml")],
    out: Annotated[Path, typer.Option("--out", help="folder for the runs and report.md / report.html")],
    data: Annotated[Optional[Path], typer.Option("--data", help="ISIC-layout folder (default: the embedded sample)")] = None,
    extra: Annotated[Optional[Path], typer.Option("--extra", help="labelled extra images for balance 'extra'")] = None,
    progress_bar: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """The paper's experiments (Tables 1-3, figures) as one resumable command, with a report."""
    from srcrn.reporting.reproduce import load_reproduce_config, reproduce as run_reproduction
    from srcrn.sample import sample_dir

    settings = load_reproduce_config(config)
    report = run_reproduction(settings, data or sample_dir(), out, extra=extra, config_path=config,
                              progress=progress_bar)
    console.print(f"report: {report} and {report.with_suffix('.html')}")


def _split_ids(split_file: Path | None, subset: str) -> list[str] | None:
    """Ids of ``subset`` in a run's split.csv (or None: every image)."""
    if split_file is None:
        return None
    import pandas as pd

    split_csv = split_file / "split.csv" if split_file.is_dir() else split_file
    if not split_csv.is_file():
        raise SrcrnError(f"{split_csv}: split file not found")
    table = pd.read_csv(split_csv, dtype=str)
    return table.loc[table["subset"] == subset, "image_id"].tolist()


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="folder for the demo's outputs")] = Path("demo-out"),
    progress_bar: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Run the pipeline offline on the embedded real sample (40 ISIC 2017 images)."""
    from srcrn.demo import run_demo

    run_demo(out, progress=progress_bar)


if __name__ == "__main__":
    main()
