"""The ``srcrn`` command line: parse, call the library, print. No logic of its own.

The training commands' options are generated from the settings schema (``cli_schema``);
every failure a user can cause ends as one line ``error: <file or flag>: <problem>`` and exit
status 2.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer
from rich.table import Table
from rich.text import Text

from srcrn.cli_schema import with_schema_options
from srcrn.console import configure_logging, console
from srcrn.errors import SrcrnError, missing_extra
from srcrn.serving.settings import ServeSettings
from srcrn.settings import ClassifyTrainSettings, SegmentTrainSettings

try:  # typer >= 0.29 carries its own copy of click, whose exceptions these are
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer on the real click
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

app = typer.Typer(
    name="srcrn",
    help="Two-stage melanoma detection: SRCRN lesion segmentation + ResNet-50 classification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
log = logging.getLogger("srcrn.cli")


def _print_version(value: bool) -> None:
    if value:
        from srcrn import __version__

        typer.echo(f"srcrn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Two-stage melanoma detection: SRCRN lesion segmentation + ResNet-50 classification."""


def _print_error(message: str) -> None:
    # One line, never wrapped and never parsed as markup: paths may hold brackets.
    console.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)


DEBUG_FLAG = "--debug"
COMMAND_GROUPS = ("segment", "classify", "export")  # commands of two words


def main(argv: list[str] | None = None) -> None:
    """Entry point: every SrcrnError, usage error and operating-system refusal (a folder that
    cannot be written, a file where a folder is needed...) becomes one red line and exit
    status 2. ``--debug`` (anywhere on the line) shows the traceback instead."""
    configure_logging()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args
    args = [a for a in args if a != DEBUG_FLAG]
    try:
        result = app(args=args, standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as error:
        console.print(error.format_message(), markup=False, highlight=False)
        sys.exit(0)
    except click_exceptions.UsageError as error:
        _print_error(error.format_message().replace("\n", " "))
        sys.exit(2)
    except SrcrnError as error:
        if debug:
            raise
        _print_error(str(error))
        sys.exit(getattr(error, "exit_code", 2))
    except ModuleNotFoundError as error:
        command = " ".join(args[:2] if args and args[0] in COMMAND_GROUPS else args[:1])
        message = missing_extra(error, command)
        if debug or message is None:
            raise
        _print_error(message)
        sys.exit(2)
    except OSError as error:
        if debug:
            raise
        where = error.filename if error.filename is not None else "error"
        _print_error(f"{where}: {error.strerror or error}")
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        _print_error("interrupted")
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)


Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="show progress bars")]
Config = Annotated[Optional[Path], typer.Option("--config", help="YAML file of settings (flags override it)")]
Resume = Annotated[bool, typer.Option("--resume", help="continue the run in --out from its last checkpoint")]
SplitFile = Annotated[Optional[Path], typer.Option("--split", help="split.csv (or its run folder) to pick images from")]
Subset = Annotated[Literal["train", "val"], typer.Option(help="with --split: which part")]


@app.command()
def prepare(
    data: Annotated[Path, typer.Argument(help="ISIC-layout data folder")],
    out: Annotated[Path, typer.Option("--out", help="cache folder to write (reused when inputs are unchanged)")],
    size: Annotated[int, typer.Option("--size", min=16, max=4096, help="side of the square images in the cache")] = 128,
    workers: Annotated[Optional[int], typer.Option(min=1, help="decoding processes (default: all cores)")] = None,
    require_masks: Annotated[bool, typer.Option(help="refuse images without a mask")] = False,
    require_labels: Annotated[bool, typer.Option(help="refuse images without a label")] = False,
) -> None:
    """Decode every image once at reduced scale into a memory-mapped cache for training."""
    from srcrn.data.cache import MANIFEST as CACHE_MANIFEST
    from srcrn.data.cache import prepare as prepare_cache
    from srcrn.data.isic import IsicDataset
    from srcrn.outputs import output_folder

    dataset = IsicDataset.from_dir(data, require_masks=require_masks, require_labels=require_labels)
    if not dataset.has_masks:
        with_masks = sum(s.mask_path is not None for s in dataset)
        log.info("note: %d of %d images have masks; masks are not cached", with_masks, len(dataset))
    # The cache stages itself and is reused when its fingerprint matches (a rerun continues it).
    with output_folder(out, "prepare", {"data folder": data}, adopt=(CACHE_MANIFEST,), resume=True):
        prepared = prepare_cache(dataset, size, out, workers=workers)
    log.info("prepared %d images at %dx%d in %s", len(prepared.ids), size, size, prepared.folder)


@app.command()
def split(
    data: Annotated[Path, typer.Argument(help="ISIC-layout data folder")],
    out: Annotated[Path, typer.Option("--out", help="folder to write split.csv and split.json into")],
    method: Annotated[Literal["paper", "official", "random"], typer.Option("--method", help="how to split")] = "paper",
    seed: Annotated[int, typer.Option(help="seed of the random split")] = 0,
) -> None:
    """Write the train/validation split that training would use."""
    from srcrn.data.isic import IsicDataset
    from srcrn.data.splits import make_split
    from srcrn.outputs import output_folder

    chosen = make_split(IsicDataset.from_dir(data), method, seed=seed)
    for note in chosen.notes:
        log.info("note: %s", note)
    with output_folder(out, "split", {"data folder": data}, writes=("split.csv", "split.json"), stage=True) as staging:
        path = chosen.save(staging)
    log.info("%s split: %d train, %d val -> %s", chosen.method, len(chosen.train), len(chosen.val), out / path.name)


segment_app = typer.Typer(help="Stage 1: SRCRN lesion segmentation.", no_args_is_help=True)
app.add_typer(segment_app, name="segment")


def _settings(schema: Any, out: Path, config: Path | None, resume: bool, flags: dict[str, Any]) -> Any:
    from srcrn.settings import load_settings

    if resume and config is None and (out / "config.yaml").is_file():
        config = out / "config.yaml"  # resume with the settings the run started with
    return load_settings(schema, config, flags=flags)


def _run_inputs(data: Path, settings: Any) -> dict[str, str | Path | None]:
    """A run's inputs, which its folder may never be, hold or lie in: the data folder, extra
    images, metadata, stack members."""
    inputs: dict[str, str | Path | None] = {"--data": data}
    inputs |= {f"--{key}": getattr(settings, key, None) for key in ("extra", "metadata")}
    return inputs | {f"member {m}": m for m in getattr(settings, "members", [])}


@segment_app.command("train")
@with_schema_options(SegmentTrainSettings)
def segment_train(
    data: Annotated[Path, typer.Option("--data", help="ISIC-layout folder with images, masks (labels optional)")],
    out: Annotated[Path, typer.Option("--out", help="run folder: checkpoints, metrics.csv, curves.png, split")],
    config: Config = None,
    resume: Resume = False,
    progress_bar: Progress = True,
    flags: Optional[dict] = None,
) -> None:
    """Train SRCRN (or a baseline) with a named recipe: the paper's by default, or 'strong';
    every part of a recipe can be overridden by --config or a flag."""
    from srcrn.outputs import output_folder
    from srcrn.training.runner import RUN_FILE
    from srcrn.workflows.segment import train_segmenter

    settings = _settings(SegmentTrainSettings, out, config, resume, flags or {})
    with output_folder(out, "segment train", _run_inputs(data, settings), adopt=(RUN_FILE,), resume=resume):
        summary = train_segmenter(settings, data, out, resume=resume, progress=progress_bar)
    if summary:
        best = summary["best_val_jaccard"]
        log.info(
            "trained %s epochs in %.0fs; best val Jaccard %s; checkpoint %s",
            summary["epochs"],
            summary["wall_seconds"],
            "n/a" if best is None else best,
            summary["best_checkpoint"],
        )


def _split_ids(split_file: Path | None, subset: str, data: Path) -> list[str] | None:
    """Ids of ``subset`` in a run's split.csv (or None: every image), each one in ``data``."""
    if split_file is None:
        return None
    from srcrn.data.isic import IsicDataset
    from srcrn.data.splits import split_ids

    return split_ids(split_file, subset, known=IsicDataset.from_dir(data).ids)


def _shown(metrics: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}


@segment_app.command("eval")
def segment_eval(
    model: Annotated[Path, typer.Option("--model", help="checkpoint (.ckpt) of segment train")],
    data: Annotated[Path, typer.Option("--data", help="ISIC-layout folder; masks give the scores")],
    out: Annotated[Path, typer.Option("--out", help="folder for masks/, per_image.csv, metrics.json")],
    split_file: SplitFile = None,
    subset: Subset = "val",
    batch_size: Annotated[int, typer.Option(min=1, help="inference batch size")] = 32,
    tta: Annotated[
        Optional[bool],
        typer.Option("--tta/--no-tta", help="average the four flips (default: as the model's recipe says)"),
    ] = None,
    keep_largest: Annotated[
        Optional[bool],
        typer.Option(
            "--keep-largest/--no-keep-largest",
            help="keep the largest predicted region, holes filled (default: as the model's recipe says)",
        ),
    ] = None,
    cache: Annotated[Optional[Path], typer.Option(help="prepared-cache folder")] = None,
    progress_bar: Progress = True,
) -> None:
    """Predict masks at the original size and score them as the ISIC challenge does."""
    from srcrn.outputs import output_folder
    from srcrn.workflows.segment import EVAL_FILES, evaluate_segmenter

    with output_folder(
        out, "segment eval", {"--data": data, "--model": model}, writes=EVAL_FILES, stage=True, replace=True
    ) as staging:
        result = evaluate_segmenter(
            model,
            data,
            staging,
            ids=_split_ids(split_file, subset, data),
            tta=tta,
            keep_largest=keep_largest,
            batch_size=batch_size,
            cache=cache,
            progress=progress_bar,
        )
    if result.scored:
        log.info("%s: %s", out / "metrics.json", _shown(result.metrics))
    else:
        log.info(
            "%s: %d masks written; no image had a mask, so nothing was scored", out / "masks", len(result.per_image)
        )


classify_app = typer.Typer(help="Stage 2: melanoma classification of SRCRN-segmented lesions.", no_args_is_help=True)
app.add_typer(classify_app, name="classify")
ClassifyData = Annotated[Path, typer.Option("--data", help="ISIC-layout folder with images and labels")]


@classify_app.command("train")
@with_schema_options(ClassifyTrainSettings)
def classify_train(
    data: ClassifyData,
    out: Annotated[Path, typer.Option("--out", help="run folder")],
    config: Config = None,
    resume: Resume = False,
    progress_bar: Progress = True,
    flags: Optional[dict] = None,
) -> None:
    """Train the melanoma classifier with the paper's recipe (every part overridable)."""
    from srcrn.outputs import output_folder
    from srcrn.training.runner import RUN_FILE
    from srcrn.training.summary import kept_model
    from srcrn.workflows.classify import train_classifier

    settings = _settings(ClassifyTrainSettings, out, config, resume, flags or {})
    with output_folder(out, "classify train", _run_inputs(data, settings), adopt=(RUN_FILE,), resume=resume):
        summary = train_classifier(settings, data, out, resume=resume, progress=progress_bar)
    if summary and settings.model == "cnn":
        log.info(
            "trained %s epochs in %.0fs; best val AUC %s; checkpoint %s",
            summary["epochs"],
            summary["wall_seconds"],
            summary["best_val_auc"],
            kept_model(summary),
        )


@classify_app.command("cv")
@with_schema_options(ClassifyTrainSettings)
def classify_cv(
    data: ClassifyData,
    out: Annotated[Path, typer.Option("--out", help="folder of the folds, oof.csv, val.csv, cv.json")],
    folds: Annotated[int, typer.Option(min=2, help="folds (stratified, near-duplicates kept together)")] = 5,
    final: Annotated[
        bool, typer.Option(help="also train on the whole training split, calibrate, score the validation split")
    ] = True,
    calibration: Annotated[
        str, typer.Option(help="calibration fitted on the out-of-fold logits: platt (measured best) | temperature")
    ] = "platt",
    target_sensitivity: Annotated[
        Optional[float],
        typer.Option(
            min=0.0,
            max=1.0,
            help="choose the threshold reaching this sensitivity on the out-of-fold calibrated probabilities "
            "and store it in the final model (the validation split only measures it)",
        ),
    ] = None,
    config: Config = None,
    progress_bar: Progress = True,
    flags: Optional[dict] = None,
) -> None:
    """Cross-validate a stage-2 recipe on the training split: per-fold and pooled out-of-fold
    AUC with a bootstrap interval; choose recipes by this, not by the small validation split.
    Interrupted runs continue where they stopped (finished folds are kept)."""
    from srcrn.outputs import output_folder
    from srcrn.settings import load_settings
    from srcrn.workflows.cross_validation import DATA_FILE, cross_validate

    settings = load_settings(ClassifyTrainSettings, config, flags=flags or {})
    # A rerun continues the folds (their identity is checked by content): always "resumed".
    adopt = (DATA_FILE, "cv.json", "config.yaml")  # an older srcrn's folder; its content is checked next
    with output_folder(out, "classify cv", _run_inputs(data, settings), adopt=adopt, resume=True):
        result = cross_validate(
            settings,
            data,
            out,
            folds=folds,
            final=final,
            calibration=calibration,
            target_sensitivity=target_sensitivity,
            progress=progress_bar,
        )
    oof = result["oof"]
    log.info(
        "out-of-fold AUC %.4f (95 %% CI %.4f-%.4f) over %d folds (per fold %s)",
        oof["auc"],
        oof["auc_ci95_low"],
        oof["auc_ci95_high"],
        folds,
        ", ".join(f"{a:.3f}" for a in result["per_fold_auc"]),
    )
    if "val" in result:
        val = result["val"]
        log.info(
            "validation AUC %.4f (95 %% CI %.4f-%.4f); ECE %.4f -> %.4f calibrated (%s); %s",
            val["auc"],
            val["auc_ci95_low"],
            val["auc_ci95_high"],
            val["ece_raw"],
            val["ece_calibrated"],
            result["calibration"]["method"],
            out / "cv.json",
        )
    if "threshold" in result and "val" in result["threshold"]:
        chosen = result["threshold"]
        log.info(
            "threshold %.4f (out-of-fold sensitivity %.3f); on the validation split: sensitivity %.3f, "
            "specificity %.3f",
            chosen["value"],
            chosen["oof"]["sensitivity"],
            chosen["val"]["sensitivity"],
            chosen["val"]["specificity"],
        )


@classify_app.command("eval")
def classify_eval(
    model: Annotated[
        Path,
        typer.Option("--model", help="stage-2 model of classify train: CNN checkpoint, feature model or stack folder"),
    ],
    data: ClassifyData,
    out: Annotated[Path, typer.Option("--out", help="folder for predictions.csv, metrics.json, roc.png")],
    metadata: Annotated[
        Optional[Path],
        typer.Option(help="clinical metadata CSV (default: DATA/metadata.csv), for models that take age/sex/site"),
    ] = None,
    segmenter: Annotated[
        Optional[Path],
        typer.Option(
            "--segmenter", help="SRCRN checkpoint giving the lesion masks (default: the one it was trained with)"
        ),
    ] = None,
    split_file: SplitFile = None,
    subset: Subset = "val",
    target_sensitivity: Annotated[
        Optional[float],
        typer.Option(
            min=0.0,
            max=1.0,
            help="choose the threshold reaching this sensitivity on these images, and store it in --model",
        ),
    ] = None,
    calibrate: Annotated[
        Optional[str],
        typer.Option(
            help="fit a calibration on these images (temperature | platt) and store it in --model; "
            "prefer 'classify cv', which fits it on out-of-fold scores"
        ),
    ] = None,
    cache: Annotated[Optional[Path], typer.Option(help="prepared-cache folder")] = None,
    progress_bar: Progress = True,
) -> None:
    """Melanoma probabilities for every image; AUC (bootstrap 95 % CI), accuracy, sensitivity...,
    Brier score and expected calibration error, ROC and reliability diagram. --model is a
    CNN checkpoint, a feature model or a stack folder. With --target-sensitivity, also pick the
    operating threshold (on calibrated probabilities) and store it in the model."""
    from srcrn.outputs import output_folder
    from srcrn.workflows.classify import EVAL_FILES, evaluate_classifier_checkpoint

    inputs = {"--data": data, "--model": model, "--metadata": metadata}
    with output_folder(out, "classify eval", inputs, writes=EVAL_FILES, stage=True, replace=True) as staging:
        result = evaluate_classifier_checkpoint(
            model,
            data,
            staging,
            ids=_split_ids(split_file, subset, data),
            segmenter=str(segmenter) if segmenter else None,
            cache=cache,
            target_sensitivity=target_sensitivity,
            calibrate=calibrate,
            progress=progress_bar,
            metadata=metadata,
        )
    log.info(
        "%s%s", out / "predictions.csv", f"; {out / 'metrics.json'}: {_shown(result.metrics)}" if result.metrics else ""
    )


@classify_app.command("sweep")
def classify_sweep(
    data: ClassifyData,
    out: Annotated[Path, typer.Option("--out", help="folder of the runs, sweep.csv/.md/.png")],
    batch_sizes: Annotated[str, typer.Option(help="comma-separated batch sizes")] = "4,8,16,32,64",
    config: Config = None,
    segmenter: Annotated[Optional[str], typer.Option("--segmenter", help="SRCRN checkpoint")] = None,
    input: Annotated[Optional[str], typer.Option("--input", help="full | masked | crop")] = None,
    balance: Annotated[Optional[str], typer.Option(help="none | augment | extra")] = None,
    weights: Annotated[Optional[str], typer.Option(help="imagenet | none | PATH | srcrn:CKPT")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="epochs per run")] = None,
    cache: Annotated[Optional[str], typer.Option(help="prepared-cache folder")] = None,
    progress_bar: Progress = True,
) -> None:
    """The batch-size study (paper Table 3): one run per batch size, a table and a figure.
    Every other setting comes from --config (the classify train schema)."""
    from srcrn.outputs import output_folder
    from srcrn.reporting.tables import markdown_table
    from srcrn.settings import load_settings
    from srcrn.workflows.classify import batch_size_sweep

    try:
        sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
    except ValueError:
        raise SrcrnError(f"--batch-sizes {batch_sizes!r}: expected integers such as 4,8,16,32,64") from None
    settings = load_settings(
        ClassifyTrainSettings,
        config,
        flags=dict(segmenter=segmenter, input=input, balance=balance, weights=weights, epochs=epochs, cache=cache),
    )
    with output_folder(out, "classify sweep", _run_inputs(data, settings)):
        table = batch_size_sweep(settings, data, out, sizes, progress=progress_bar)
    console.print(markdown_table(table), soft_wrap=True, markup=False)
    log.info("table: %s, %s; figure: %s", out / "sweep.csv", out / "sweep.md", out / "sweep.png")


def _load_pipeline(
    engine: str,
    model: Path | None,
    segmenter: Path | None,
    classifier: Path | None,
    threshold: float | None,
    explain: bool,
    precision: str = "fp32",
    workers: int | None = None,
) -> Any:
    """The pipeline of ``predict`` and ``serve``: checkpoints (engine torch), a bundle (onnx), or
    with no model named at all the one shipped with srcrn (``--model default``)."""
    from srcrn.inference.default import DEFAULT_NAME
    from srcrn.inference.pipeline import WORKERS, Pipeline

    workers = WORKERS if workers is None else workers
    if model is None and segmenter is None and classifier is None:
        engine, model = "onnx", Path(DEFAULT_NAME)
    elif model is not None and segmenter is None and classifier is None:
        engine = "onnx"  # a bundle is run by ONNX Runtime whatever --engine says

    if engine == "torch":
        if segmenter is None or classifier is None:
            raise SrcrnError("--engine torch: needs --segmenter CKPT and --classifier CKPT")
        if precision == "bf16":
            from srcrn.inference.runtimes import cpu_has_bf16

            if not cpu_has_bf16():
                log.warning("--precision bf16: this CPU has no BF16 instructions; bf16 is emulated, slower than fp32")
        return Pipeline.from_checkpoints(
            segmenter, classifier, threshold, explain=explain, precision=precision, workers=workers
        )
    if model is None:
        raise SrcrnError("--engine onnx: needs --model DIR (a bundle written by 'srcrn export onnx')")
    if precision != "fp32":
        raise SrcrnError("--precision: for --engine torch; an ONNX bundle has its own (export onnx --quantize)")
    return Pipeline.from_bundle(model, threshold, explain=explain, workers=workers)


@app.command()
def predict(
    inputs: Annotated[list[Path], typer.Argument(help="images and/or folders of images")],
    out: Annotated[Path, typer.Option("--out", help="folder for masks/, overlays/, predictions.csv/.json")],
    segmenter: Annotated[Optional[Path], typer.Option("--segmenter", help="SRCRN checkpoint (engine torch)")] = None,
    classifier: Annotated[
        Optional[Path],
        typer.Option("--classifier", help="stage-2 model (engine torch): CNN checkpoint, feature model, stack folder"),
    ] = None,
    metadata: Annotated[
        Optional[Path],
        typer.Option(
            help="metadata CSV per image id: age, sex, site (ISIC 2017/2019/2020 forms) and/or pixel_spacing_mm"
        ),
    ] = None,
    mm_per_pixel: Annotated[
        Optional[float],
        typer.Option(
            help="the images' scale (mm per pixel), for measurements in mm; a pixel_spacing_mm in --metadata wins"
        ),
    ] = None,
    engine: Annotated[
        Literal["torch", "onnx"], typer.Option(help="torch (checkpoints) | onnx (a bundle of srcrn export onnx)")
    ] = "torch",
    model: Annotated[
        Optional[Path],
        typer.Option(
            "--model", help="bundle folder (engine onnx); without any model flag: the model shipped with srcrn"
        ),
    ] = None,
    threshold: Annotated[
        Optional[float], typer.Option(min=0.0, max=1.0, help="decision threshold (default: the checkpoint's)")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="images per batch")] = 8,
    explain: Annotated[
        bool, typer.Option(help="also write a Grad-CAM heatmap of the classifier's evidence (engine torch)")
    ] = False,
    overlays: Annotated[bool, typer.Option(help="write overlays/<id>_overlay.png (--no-overlays: faster)")] = True,
    report: Annotated[
        bool, typer.Option("--report", help="also write reports/<id>_report.pdf: a one-page record of each image")
    ] = False,
    workers: Annotated[
        Optional[int],
        typer.Option(min=0, help="threads decoding and writing beside the networks (0: none) [default: 1]"),
    ] = None,
    precision: Annotated[
        Literal["fp32", "bf16"], typer.Option(help="engine torch: bf16 autocast (fast only on CPUs with BF16)")
    ] = "fp32",
    resume: Annotated[
        bool, typer.Option("--resume", help="keep the images an earlier (killed) run into --out finished")
    ] = False,
    shard: Annotated[
        Optional[str],
        typer.Option(
            help="K/N: only this machine's share of the images (by a hash of their ids); join with merge-predictions"
        ),
    ] = None,
    progress_bar: Progress = True,
) -> None:
    """Both stages for each image: lesion mask (original size), measurements, melanoma
    probability (calibrated when the classifier carries a calibration) and decision, overlay,
    and with --explain a Grad-CAM heatmap. A bad file is reported and skipped; a killed job
    continues with --resume; N machines split an archive with --shard K/N."""
    from srcrn.inference.batch import JOURNAL, OUTPUT_NAMES, parse_shard, predict_images
    from srcrn.outputs import output_folder, refuse_overlap

    part = parse_shard(shard) if shard is not None else None
    # An input folder's own masks/ or overlays/ must never be written over (files: only themselves).
    folders: dict[str, Path | None] = {f"input {p}": p for p in inputs if p.is_dir()}
    refuse_overlap(out, {f"input {p}": p for p in inputs if not p.is_dir()}, contains=False)
    # Not staged: the journal and atomic files are predict's staging (a killed run resumes).
    claimed = output_folder(
        out, "predict", folders | {"--metadata": metadata}, writes=OUTPUT_NAMES, adopt=(JOURNAL,), resume=resume
    )
    with claimed:
        pipeline = _load_pipeline(engine, model, segmenter, classifier, threshold, explain, precision, workers)
        results, errors = predict_images(
            pipeline,
            inputs,
            out,
            batch_size=batch_size,
            show_progress=progress_bar,
            overlays=overlays,
            resume=resume,
            shard=part,
            metadata=metadata,
            mm_per_pixel=mm_per_pixel,
            report=report,
        )
    if not results and part is not None and not errors:
        log.warning("%s: shard %s holds none of the images (empty tables written)", out, shard)
    elif not results:  # a run that produced nothing must not look like a success
        raise SrcrnError(
            f"{out / 'predictions.json'}: nothing predicted: {len(errors)} input(s) refused, first "
            f"{errors[0][0]}: {errors[0][1]}"
            if errors
            else f"{', '.join(map(str, inputs))}: nothing predicted: no image files found"
        )
    table = Table(title=f"{len(results)} images predicted, {len(errors)} skipped")
    for column in ("image", "melanoma", "decision", "diameter", "flags"):
        table.add_column(column, no_wrap=column == "image")
    for r in results[:20]:
        m = r.measurements
        marks = (("empty", m["empty_mask"]), ("border", m["touches_border"]), ("pieces", m.get("fragments", 0) > 1))
        flags = " ".join(f for f, on in marks if on)
        mm = m.get("longest_diameter_mm")
        diameter = f"{mm:.1f} mm" if mm is not None else f"{m['longest_diameter_pixels']:.0f} px"
        table.add_row(r.image_id, f"{r.probability:.3f}", r.decision, diameter, flags)
    if len(results) > 20:
        table.caption = f"first 20 of {len(results)}: all are in predictions.csv"
    console.print(table)
    log.info(
        "%s, %s, masks in %s%s%s",
        out / "predictions.csv",
        out / "predictions.json",
        out / "masks",
        f", overlays in {out / 'overlays'}" if overlays else "",
        f", Grad-CAM heatmaps in {out / 'explanations'}" if explain else "",
    )


@app.command("merge-predictions")
def merge_predictions_command(
    folders: Annotated[list[Path], typer.Argument(help="output folders of predict --shard K/N runs")],
    out: Annotated[Path, typer.Option("--out", help="folder for the joined predictions.csv/.json")],
    partial: Annotated[bool, typer.Option("--partial", help="join shards that do not cover the whole job")] = False,
) -> None:
    """Join the tables of sharded predict runs (masks and overlays stay in the shards' folders)."""
    from srcrn.inference.batch import TABLES, merge_predictions
    from srcrn.outputs import output_folder

    shards = {f"shard {f}": f for f in folders}  # a shard's own table is never replaced
    with output_folder(out, "merge-predictions", shards, contains=False, writes=TABLES, stage=True) as staging:
        predictions, errors = merge_predictions(folders, staging, partial=partial)
    log.info(
        "%s: %d predictions, %d skipped inputs, from %d folders",
        out / "predictions.csv",
        predictions,
        errors,
        len(folders),
    )


@app.command()
@with_schema_options(ServeSettings)
def serve(
    model: Annotated[
        Optional[Path],
        typer.Option("--model", help="bundle folder of srcrn export onnx (default: the model shipped with srcrn)"),
    ] = None,
    segmenter: Annotated[
        Optional[Path], typer.Option("--segmenter", help="SRCRN checkpoint (instead of --model)")
    ] = None,
    classifier: Annotated[
        Optional[Path],
        typer.Option("--classifier", help="stage-2 model: CNN checkpoint, feature model or stack (instead of --model)"),
    ] = None,
    threshold: Annotated[
        Optional[float], typer.Option(min=0.0, max=1.0, help="decision threshold (default: the model's)")
    ] = None,
    explain: Annotated[bool, typer.Option(help="add a Grad-CAM heatmap to each answer (checkpoints only)")] = False,
    flags: Optional[dict] = None,
) -> None:
    """The pipeline as a REST service (/api/v1/predict, /report, /compare, /health, /ready,
    /model; OpenAPI at /docs) and a web page at /. Uploads stay in memory and are never stored
    or logged. Every setting below may also come from the environment as SRCRN_<NAME>
    (e.g. SRCRN_PORT, SRCRN_API_KEY); a flag wins."""
    from srcrn.serving.settings import serve_settings

    settings = serve_settings(flags)  # a bad flag or variable is refused before anything loads
    import uvicorn

    from srcrn.serving.app import create_app, limit_malloc_arenas

    limit_malloc_arenas()
    if model is not None and (segmenter or classifier):
        raise SrcrnError("--model: give a bundle, or --segmenter and --classifier checkpoints, not both")
    if model is None and (segmenter is None) != (classifier is None):
        raise SrcrnError("--model: needs a bundle folder (or --segmenter CKPT and --classifier CKPT)")
    import socket

    host, port = settings.host, settings.port
    try:  # uvicorn would abort on a taken port after loading the models; say so first, in one line
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        raise SrcrnError(f"--port {port}: {host}:{port} is in use or cannot be bound ({error.strerror})") from None
    engine = "torch" if segmenter is not None else "onnx"  # neither: the model shipped with srcrn
    pipeline = _load_pipeline(engine, model, segmenter, classifier, threshold, explain)
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        log.warning("listening on %s without --api-key: anyone who reaches this address can use the service", host)
    log.info("serving on http://%s:%d (page /, API docs /docs)", host, port)
    uvicorn.run(create_app(pipeline, settings), host=host, port=port, log_level="warning", access_log=False)


export_app = typer.Typer(help="Export trained models for deployment.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("onnx")
def export_onnx_command(
    segmenter: Annotated[Path, typer.Option("--segmenter", help="SRCRN checkpoint (segment train)")],
    classifier: Annotated[
        Path, typer.Option("--classifier", help="stage-2 model of classify train: CNN, feature model or stack folder")
    ],
    out: Annotated[Path, typer.Option("--out", help="bundle folder: both stages' models + bundle.json")],
    quantize: Annotated[
        Optional[Literal["int8"]],
        typer.Option(help="int8: static quantization, parity measured, refused beyond tolerance"),
    ] = None,
    calibration: Annotated[
        Optional[Path],
        typer.Option(
            "--calibration-data", help="ISIC-layout folder for int8 calibration and parity (not the test split)"
        ),
    ] = None,
    old_calibration: Annotated[
        Optional[Path],
        typer.Option(
            "--calibration",
            hidden=True,
            help="deprecated spelling of --calibration-data (in classify cv, --calibration is a method)",
        ),
    ] = None,
    calibration_images: Annotated[int, typer.Option(min=8, help="images that calibrate the int8 ranges")] = 64,
    parity_images: Annotated[int, typer.Option(min=1, help="other images on which int8 is compared with fp32")] = 200,
    int8_classifier: Annotated[
        bool,
        typer.Option(help="--no-int8-classifier: quantize the segmenter only (when the stage-2 CNNs lose parity)"),
    ] = True,
    int8_ranges: Annotated[
        Literal["minmax", "percentile", "entropy"],
        typer.Option(help="how int8 activation ranges are calibrated (percentile: outliers clipped)"),
    ] = "minmax",
    card: Annotated[
        Optional[Path],
        typer.Option(
            help="JSON or YAML model card stored in the bundle (training data, licences, figures, intended use); "
            "the size and SHA-256 of each file are added"
        ),
    ] = None,
) -> None:
    """Both stages for the torch-free engine (networks as ONNX, a feature model as skops, a stack
    with its weights) with their preprocessing and prediction settings, threshold and version:
    run them with `srcrn predict --engine onnx --model DIR` (no torch needed)."""
    from srcrn.inference.bundle import BUNDLE_FILE, attach_card, read_card
    from srcrn.inference.export import export_onnx
    from srcrn.outputs import output_folder

    if old_calibration is not None:  # kept for one release; one name, one meaning across commands
        log.warning("export onnx --calibration is deprecated (classify cv's --calibration is a method): "
                    "say --calibration-data")  # fmt: skip
        calibration = calibration or old_calibration
    if quantize is not None and calibration is None:
        raise SrcrnError(
            "--quantize int8: needs --calibration-data DATA (images whose ranges calibrate the int8 models)"
        )
    inputs = {"--calibration-data": calibration, "--segmenter": segmenter, "--classifier": classifier, "--card": card}
    description = read_card(card) if card is not None else None  # refused before minutes of export
    # A bundle folder is wholly the export's: a new export replaces an earlier one (even one of
    # an older srcrn, known by its bundle.json), never a folder of other files.
    claimed = output_folder(out, "export onnx", inputs, adopt=(BUNDLE_FILE,), resume=True, stage=True, replace=True)
    with claimed as staging:
        if quantize is None:
            export_onnx(segmenter, classifier, staging)
        else:
            import tempfile

            from srcrn.workflows.quantize import quantize_bundle

            assert calibration is not None  # refused above

            with tempfile.TemporaryDirectory() as scratch:
                fp32 = export_onnx(segmenter, classifier, Path(scratch) / "fp32")
                _, parity = quantize_bundle(
                    fp32, staging, calibration, calibration_images, parity_images, classifier=int8_classifier,
                    ranges=int8_ranges, destination=out,
                )  # fmt: skip
        if description is not None:
            attach_card(staging, description)
    if quantize is None:
        log.info("bundle written: %s (%s)", out, ", ".join(sorted(p.name for p in out.iterdir())))
        return
    shown = {k: round(v, 4) for k, v in parity.items() if isinstance(v, float)}
    log.info("int8 bundle written: %s; parity on %d held-out images: %s", out, parity["images"], shown)


@app.command()
def compare(
    before: Annotated[Path, typer.Argument(help="the earlier image of the lesion")],
    after: Annotated[Path, typer.Argument(help="the later image of the same lesion")],
    out: Annotated[Path, typer.Option("--out", help="folder for comparison.json and comparison.png")],
    model: Annotated[
        Optional[Path], typer.Option("--model", help="bundle folder (default: the model shipped with srcrn)")
    ] = None,
    before_mm_per_pixel: Annotated[
        Optional[float], typer.Option(help="BEFORE's scale (mm per pixel): changes in mm with both scales")
    ] = None,
    after_mm_per_pixel: Annotated[Optional[float], typer.Option(help="AFTER's scale (mm per pixel)")] = None,
    report: Annotated[bool, typer.Option("--report", help="also write comparison.pdf: a one-page record")] = False,
) -> None:
    """Two visits of one lesion: AFTER registered onto BEFORE (similarity transform, judged),
    then the change in area, diameter, ABCD components, colours and melanoma probability, with
    a picture of both contours and a change map. An unreliable registration gives no change
    figures, only the reason."""
    from srcrn.atomic import write_json
    from srcrn.data.metadata import ClinicalContext
    from srcrn.inference.rendering import clean_json, write_png
    from srcrn.outputs import output_folder

    names = ("comparison.json", "comparison.png", "comparison.pdf")
    inputs = {"BEFORE": before, "AFTER": after}
    with output_folder(out, "compare", inputs, contains=False, writes=names, stage=True, replace=True) as staging:
        pipeline = _load_pipeline("onnx", model, None, None, None, False)
        comparison = pipeline.compare(
            before,
            after,
            before_context=ClinicalContext.of(pixel_spacing_mm=before_mm_per_pixel, where="--before-mm-per-pixel"),
            after_context=ClinicalContext.of(pixel_spacing_mm=after_mm_per_pixel, where="--after-mm-per-pixel"),
        )
        write_json(staging / "comparison.json", clean_json(comparison.to_dict()))
        write_png(staging / "comparison.png", comparison.picture)
        if report:
            (staging / "comparison.pdf").write_bytes(comparison.report_pdf())
    r = comparison.registration
    if not r.reliable:
        log.warning("registration unreliable: %s; no change figures given", "; ".join(r.problems))
    else:
        log.info(
            "registered: rotation %.1f deg, scale x%.3f%s, %d of %d points agree",
            r.rotation_degrees,
            r.scale,
            ", mirrored" if r.mirrored else "",
            r.inliers,
            r.matches,
        )
        mm = comparison.diameter_change_mm
        log.info(
            "area %+.1f %%, longest diameter %+.1f %%%s; colours appeared: %s, vanished: %s",
            comparison.area_change_percent,
            comparison.diameter_change_percent,
            f" ({mm:+.2f} mm)" if mm is not None else " (no scale for both: no mm)",
            ", ".join(comparison.colours_appeared) or "none",
            ", ".join(comparison.colours_vanished) or "none",
        )
    log.info(
        "P(melanoma) %.3f -> %.3f; %s and %s",
        comparison.probability_before,
        comparison.probability_after,
        out / "comparison.json",
        out / "comparison.png",
    )


@app.command("model-card")
def model_card_command(
    model: Annotated[
        Path, typer.Option("--model", help="bundle folder, or 'default' for the model shipped with srcrn")
    ] = Path("default"),
) -> None:
    """What a bundle's model is: training data and licences, recipe, figures, threshold,
    calibration, the clinical fields it takes, intended use and limits (JSON on stdout)."""
    import json

    from srcrn.inference.pipeline import Pipeline
    from srcrn.inference.rendering import clean_json

    card = Pipeline.from_bundle(model, workers=0).card
    typer.echo(json.dumps(clean_json(card), indent=2))  # stdout: `srcrn model-card > card.json`


@app.command()
def reproduce(
    config: Annotated[Path, typer.Option("--config", help="YAML: configs/paper.yaml, dev.yaml or demo.yaml")],
    out: Annotated[Path, typer.Option("--out", help="folder for the runs and report.md / report.html")],
    data: Annotated[
        Optional[Path], typer.Option("--data", help="ISIC-layout folder (default: the embedded sample)")
    ] = None,
    extra: Annotated[Optional[Path], typer.Option("--extra", help="labelled extra images for balance 'extra'")] = None,
    progress_bar: Progress = True,
) -> None:
    """The paper's experiments (Tables 1-3, figures) as one resumable command, with a report."""
    from srcrn.outputs import output_folder
    from srcrn.sample import sample_dir
    from srcrn.workflows.reproduce import load_reproduce_config
    from srcrn.workflows.reproduce import reproduce as run_reproduction

    settings = load_reproduce_config(config)
    # Resumable by nature: a rerun into its own folder skips the finished runs.
    with output_folder(out, "reproduce", {"--data": data, "--extra": extra, "--config": config}):
        report = run_reproduction(
            settings, data or sample_dir(), out, extra=extra, config_path=config, progress=progress_bar
        )
    log.info("report: %s and %s", report, report.with_suffix(".html"))


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="folder for the demo's outputs")] = Path("demo-out"),
    train: Annotated[
        bool,
        typer.Option(
            "--train", help="train both stages for a few dozen steps instead (a smoke run; needs srcrn[train])"
        ),
    ] = False,
    progress_bar: Progress = True,
) -> None:
    """Run the pipeline offline on the embedded real sample (40 ISIC 2017 images): the model
    shipped with srcrn, which never saw them; --train trains a toy pair of models first."""
    from srcrn.inference.bundle import BUNDLE_FILE
    from srcrn.inference.default import default_bundle_dir
    from srcrn.outputs import output_folder
    from srcrn.workflows.demo import run_demo, run_shipped_demo

    shipped = not train and (default_bundle_dir() / BUNDLE_FILE).is_file()
    if not train and not shipped:
        log.info("this srcrn ships no default model: training a toy pair of models instead (srcrn demo --train)")
    # A rerun replaces the demo's own earlier output (an older srcrn's too: its metrics.json).
    with output_folder(out, "demo", adopt=("metrics.json",), resume=True):
        result = run_shipped_demo(out, progress=progress_bar) if shipped else run_demo(out, progress=progress_bar)
    metrics = result.metrics
    held_out = "embedded" if shipped else "held-out"
    title = "the shipped model" if shipped else "SRCRN-8s (trained just now)"
    table = Table(title=f"stage 1: {title} on {metrics['n_images']} {held_out} sample images")
    for column in ("metric", "value"):
        table.add_column(column)
    for name in ("jaccard", "dice", "accuracy", "sensitivity", "specificity", "threshold_jaccard"):
        table.add_row(name, f"{metrics[name]:.3f}")
    if result.classification is not None:
        c = result.classification
        table.add_row("melanoma AUC", f"{c['auc']:.3f} (95 % CI {c['auc_ci95_low']:.3f}-{c['auc_ci95_high']:.3f})")
        table.add_row(
            f"at threshold {c['threshold']:.3f}",
            f"sensitivity {c['sensitivity']:.3f} ({c['tp']}/{c['tp'] + c['fn']}), "
            f"specificity {c['specificity']:.3f} ({c['tn']}/{c['tn'] + c['fp']})",
        )
    console.print(table)
    table = Table(title=f"stage 1 + 2 on the {held_out} images")
    for column in ("image", "truth", "P(melanoma)", "decision", "diameter px", "Jaccard"):
        table.add_column(column)
    for r in result.predictions:
        table.add_row(
            r.image_id,
            result.truth[r.image_id],
            f"{r.probability:.3f}",
            r.decision,
            f"{r.measurements['longest_diameter_pixels']:.0f}",
            f"{result.jaccard[r.image_id]:.3f}",
        )
    console.print(table)
    for what, paths in result.files.items():
        console.print(f"{what + ':':17s}{', '.join(str(p) for p in paths)}", soft_wrap=True, markup=False)
    if shipped:
        console.print(
            "[bold yellow]Research software, not a diagnosis.[/] 40 images give wide intervals; the model's "
            "validation figures and limits: srcrn model-card.",
            soft_wrap=True,
        )
    else:
        console.print(
            "[bold yellow]This is a smoke run:[/] a few minutes of CPU training on a 40-image sample, "
            "not a clinical model. Train on full ISIC data for real use.",
            soft_wrap=True,
        )


if __name__ == "__main__":
    main()
