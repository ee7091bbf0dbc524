"""The ``srcrn`` command line: parse, call the library, print. No logic of its own.

Every command's flags are generated from its settings schema (``srcrn.settings`` for the
trainings, ``srcrn.commands`` for the others, ``srcrn.serving.settings`` for the service) by
``cli_schema``; positional arguments (images, folders) are declared here. Every failure a user
can cause ends as one line ``error: <file or flag>: <problem>`` and exit status 2.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from srcrn.cli_schema import with_schema_options
from srcrn.commands import (
    DEPRECATED_FLAGS,
    ClassifyEvalSettings,
    CompareSettings,
    CrossValidationSettings,
    DemoSettings,
    DicomServeSettings,
    ExportSettings,
    MergeSettings,
    ModelCardSettings,
    ModelSettings,
    PredictSettings,
    PrepareSettings,
    ReproduceCommandSettings,
    SegmentEvalSettings,
    SplitSettings,
    SweepSettings,
    TrainCommandSettings,
    command_settings,
)
from srcrn.console import configure_logging, console
from srcrn.errors import SrcrnError, missing_extra
from srcrn.serving.settings import ServeSettings
from srcrn.settings import ClassifyTrainSettings, SegmentTrainSettings
from srcrn.shapes import height_width

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


def _command(args: list[str]) -> str:
    """The command an argument list runs, e.g. ``segment eval``."""
    return " ".join(args[:2] if args and args[0] in COMMAND_GROUPS else args[:1])


def _renamed(args: list[str]) -> list[str]:
    """``args`` with a deprecated flag spelling replaced by today's (``commands.DEPRECATED_FLAGS``),
    saying so once: kept for one release so that users' commands keep working."""
    renames = DEPRECATED_FLAGS.get(_command(args), {})
    result = []
    for arg in args:
        flag, equals, value = arg.partition("=")
        if flag in renames:
            log.warning("%s %s is deprecated: say %s", _command(args), flag, renames[flag])
            arg = renames[flag] + equals + value
        result.append(arg)
    return result


def main(argv: list[str] | None = None) -> None:
    """Entry point: every SrcrnError, usage error and operating-system refusal (a folder that
    cannot be written, a file where a folder is needed...) becomes one red line and exit
    status 2. ``--debug`` (anywhere on the line) shows the traceback instead."""
    configure_logging()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args
    args = _renamed([a for a in args if a != DEBUG_FLAG])
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
        message = missing_extra(error, _command(args))
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


@app.command()
@with_schema_options(PrepareSettings)
def prepare(
    data: Annotated[Path, typer.Argument(help="ISIC-layout data folder")],
    flags: Optional[dict] = None,
) -> None:
    """Decode every image once at reduced scale into a memory-mapped cache for training."""
    from srcrn.workflows.runs import prepare_command

    given = command_settings(PrepareSettings, flags or {})
    prepared = prepare_command(data, given)
    height, width = height_width(given.image_size)
    log.info("prepared %d images at %dx%d (height x width) in %s", len(prepared.ids), height, width, prepared.folder)


@app.command()
@with_schema_options(SplitSettings)
def split(
    data: Annotated[Path, typer.Argument(help="ISIC-layout data folder")],
    flags: Optional[dict] = None,
) -> None:
    """Write the train/validation split that training would use."""
    from srcrn.workflows.runs import split_command

    chosen, path = split_command(data, command_settings(SplitSettings, flags or {}))
    log.info("%s split: %d train, %d val -> %s", chosen.method, len(chosen.train), len(chosen.val), path)


segment_app = typer.Typer(help="Stage 1: SRCRN lesion segmentation.", no_args_is_help=True)
app.add_typer(segment_app, name="segment")


@segment_app.command("train")
@with_schema_options(SegmentTrainSettings)
@with_schema_options(TrainCommandSettings, into="run")
def segment_train(run: Optional[dict] = None, flags: Optional[dict] = None) -> None:
    """Train SRCRN (or a baseline) with a named recipe: the paper's by default, or 'strong';
    every part of a recipe can be overridden by --config or a flag."""
    from srcrn.workflows.runs import segment_train_command

    summary = segment_train_command(command_settings(TrainCommandSettings, run or {}), flags or {})
    if summary:
        best = summary["best_val_jaccard"]
        log.info("trained %s epochs in %.0fs; best val Jaccard %s; checkpoint %s", summary["epochs"],
                 summary["wall_seconds"], "n/a" if best is None else best, summary["best_checkpoint"])  # fmt: skip


@segment_app.command("eval")
@with_schema_options(SegmentEvalSettings)
def segment_eval(flags: Optional[dict] = None) -> None:
    """Predict masks at the original size and score them as the ISIC challenge does."""
    from srcrn.workflows.runs import rounded, segment_eval_command

    given = command_settings(SegmentEvalSettings, flags or {})
    result = segment_eval_command(given)
    if result.scored:
        log.info("%s: %s", given.out / "metrics.json", rounded(result.metrics))
    else:
        log.info("%s: %d masks written; no image had a mask, so nothing was scored", given.out / "masks",
                 len(result.per_image))  # fmt: skip


classify_app = typer.Typer(help="Stage 2: melanoma classification of SRCRN-segmented lesions.", no_args_is_help=True)
app.add_typer(classify_app, name="classify")


@classify_app.command("train")
@with_schema_options(ClassifyTrainSettings)
@with_schema_options(TrainCommandSettings, into="run")
def classify_train(run: Optional[dict] = None, flags: Optional[dict] = None) -> None:
    """Train the melanoma classifier with the paper's recipe (every part overridable)."""
    from srcrn.training.summary import kept_model
    from srcrn.workflows.runs import classify_train_command

    summary, settings = classify_train_command(command_settings(TrainCommandSettings, run or {}), flags or {})
    if summary and settings.model == "cnn":
        log.info("trained %s epochs in %.0fs; best val AUC %s; checkpoint %s", summary["epochs"],
                 summary["wall_seconds"], summary["best_val_auc"], kept_model(summary))  # fmt: skip


@classify_app.command("cv")
@with_schema_options(ClassifyTrainSettings)
@with_schema_options(CrossValidationSettings, into="cv")
def classify_cv(cv: Optional[dict] = None, flags: Optional[dict] = None) -> None:
    """Cross-validate a stage-2 recipe on the training split: per-fold and pooled out-of-fold
    AUC with a bootstrap interval; choose recipes by this, not by the small validation split.
    Interrupted runs continue where they stopped (finished folds are kept)."""
    from srcrn.cli_tables import cv_lines
    from srcrn.settings import load_settings
    from srcrn.workflows.cross_validation import cross_validate_command
    from srcrn.workflows.runs import run_inputs

    command = command_settings(CrossValidationSettings, cv or {})
    settings = load_settings(ClassifyTrainSettings, command.config, flags=flags or {})
    result = cross_validate_command(command, settings, run_inputs(command.data, settings))
    for line in cv_lines(result, command.folds, command.out):
        log.info("%s", line)


@classify_app.command("eval")
@with_schema_options(ClassifyEvalSettings)
def classify_eval(flags: Optional[dict] = None) -> None:
    """Melanoma probabilities for every image; AUC (bootstrap 95 % CI), accuracy, sensitivity...,
    Brier score and expected calibration error, ROC and reliability diagram. --model is a
    CNN checkpoint, a feature model or a stack folder. With --target-sensitivity, also pick the
    operating threshold (on calibrated probabilities) and store it in the model."""
    from srcrn.workflows.runs import classify_eval_command, rounded

    given = command_settings(ClassifyEvalSettings, flags or {})
    result = classify_eval_command(given)
    scores = f"; {given.out / 'metrics.json'}: {rounded(result.metrics)}" if result.metrics else ""
    log.info("%s%s", given.out / "predictions.csv", scores)


@classify_app.command("sweep")
@with_schema_options(ClassifyTrainSettings)
@with_schema_options(SweepSettings, into="sweep")
def classify_sweep(sweep: Optional[dict] = None, flags: Optional[dict] = None) -> None:
    """The batch-size study (paper Table 3): one run per batch size, a table and a figure.
    Every other setting comes from --config and the flags (the classify train schema)."""
    from srcrn.reporting.tables import markdown_table
    from srcrn.workflows.runs import classify_sweep_command

    command = command_settings(SweepSettings, sweep or {})
    table = classify_sweep_command(command, flags or {})
    console.print(markdown_table(table), soft_wrap=True, markup=False)
    out = command.out
    log.info("table: %s, %s; figure: %s", out / "sweep.csv", out / "sweep.md", out / "sweep.png")


@app.command()
@with_schema_options(PredictSettings)
def predict(
    inputs: Annotated[list[Path], typer.Argument(help="images and/or folders of images")],
    flags: Optional[dict] = None,
) -> None:
    """Both stages for each image: lesion mask (original size), measurements, melanoma
    probability (calibrated when the classifier carries a calibration) and decision, overlay,
    and with --explain a Grad-CAM heatmap. A bad file is reported and skipped; a killed job
    continues with --resume; N machines split an archive with --shard K/N."""
    from srcrn.cli_tables import prediction_table
    from srcrn.workflows.predict import predict_inputs

    given = command_settings(PredictSettings, flags or {})
    out = given.out
    results, errors = predict_inputs(inputs, given)
    console.print(prediction_table(results, errors))
    log.info(
        "%s, %s, masks in %s%s%s",
        out / "predictions.csv",
        out / "predictions.json",
        out / "masks",
        f", overlays in {out / 'overlays'}" if given.overlays else "",
        f", Grad-CAM heatmaps in {out / 'explanations'}" if given.explain else "",
    )


@app.command("merge-predictions")
@with_schema_options(MergeSettings)
def merge_predictions_command(
    folders: Annotated[list[Path], typer.Argument(help="output folders of predict --shard K/N runs")],
    flags: Optional[dict] = None,
) -> None:
    """Join the tables of sharded predict runs (masks and overlays stay in the shards' folders)."""
    from srcrn.workflows.predict import merge_command

    given = command_settings(MergeSettings, flags or {})
    predictions, errors = merge_command(folders, given)
    log.info("%s: %d predictions, %d skipped inputs, from %d folders", given.out / "predictions.csv", predictions,
             errors, len(folders))  # fmt: skip


@app.command()
@with_schema_options(ServeSettings)
@with_schema_options(ModelSettings, into="choice")
def serve(choice: Optional[dict] = None, flags: Optional[dict] = None) -> None:
    """The pipeline as a REST service (/api/v1/predict, /report, /compare, /dicom, /health,
    /ready, /model; OpenAPI at /docs) and a web page at /. Uploads stay in memory and are never
    stored or logged. Every setting below may also come from the environment as SRCRN_<NAME>
    (e.g. SRCRN_PORT, SRCRN_API_KEY); a flag wins."""
    from srcrn.serving.run import run_service
    from srcrn.serving.settings import serve_settings
    from srcrn.workflows.model_choice import chosen_engine, load_pipeline

    model = command_settings(ModelSettings, choice or {})
    settings = serve_settings(flags)  # a bad flag or variable is refused before anything loads
    chosen_engine(model, "auto")  # flags naming no model are refused before the port is taken
    run_service(lambda: load_pipeline(model, "auto"), settings)


dicom_app = typer.Typer(help="DICOM: a node that answers a PACS with SEG and SR objects.", no_args_is_help=True)
app.add_typer(dicom_app, name="dicom")


@dicom_app.command("serve")
@with_schema_options(DicomServeSettings)
def dicom_serve(flags: Optional[dict] = None) -> None:
    """A DICOM node: C-ECHO, and C-STORE of dermoscopic photographs (Dermoscopic Photography, VL
    Photographic, Secondary Capture), each predicted and answered with its SEG and SR (TID 1500),
    sent to --forward; what cannot be sent yet waits in --spool and is retried, never lost."""
    from srcrn.serving.dicom_node import run_node
    from srcrn.workflows.model_choice import load_pipeline

    given = command_settings(DicomServeSettings, flags or {})
    run_node(given, lambda: load_pipeline(given, "auto"))


export_app = typer.Typer(help="Export trained models for deployment.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("onnx")
@with_schema_options(ExportSettings)
def export_onnx_command(flags: Optional[dict] = None) -> None:
    """Both stages for the torch-free engine (networks and a feature model's trees as ONNX, a stack
    with its weights) with their preprocessing and prediction settings, threshold and version:
    run them with `srcrn predict --engine onnx --model DIR` (no torch needed)."""
    from srcrn.workflows.export import export_bundle

    given = command_settings(ExportSettings, flags or {})
    out = given.out
    parity = export_bundle(given)
    if parity is None:
        log.info("bundle written: %s (%s)", out, ", ".join(sorted(p.name for p in out.iterdir())))
        return
    shown = {k: round(v, 4) for k, v in parity.items() if isinstance(v, float)}
    log.info("int8 bundle written: %s; parity on %d held-out images: %s", out, parity["images"], shown)


@app.command()
@with_schema_options(CompareSettings)
def compare(
    before: Annotated[Path, typer.Argument(help="the earlier image of the lesion")],
    after: Annotated[Path, typer.Argument(help="the later image of the same lesion")],
    flags: Optional[dict] = None,
) -> None:
    """Two visits of one lesion: AFTER registered onto BEFORE (similarity transform, judged),
    then the change in area, diameter, ABCD components, colours and melanoma probability, with
    a picture of both contours and a change map. An unreliable registration gives no change
    figures, only the reason."""
    from srcrn.cli_tables import comparison_lines
    from srcrn.workflows.follow_up import compare_visits

    given = command_settings(CompareSettings, flags or {})
    out = given.out
    comparison = compare_visits(before, after, given)
    for level, line in comparison_lines(comparison):
        getattr(log, level)("%s", line)
    within = (
        " (no measurable change: within the answers' spread)"
        if comparison.probability_change_measurable is False
        else ""
    )
    log.info("P(melanoma): earlier %.3f, later %.3f%s; %s and %s", comparison.probability_before,
             comparison.probability_after, within, out / "comparison.json", out / "comparison.png")  # fmt: skip


@app.command("model-card")
@with_schema_options(ModelCardSettings)
def model_card_command(flags: Optional[dict] = None) -> None:
    """What a bundle's model is: training data and licences, recipe, figures, threshold,
    calibration, the clinical fields it takes, intended use and limits (JSON on stdout)."""
    import json

    from srcrn.atomic import clean_json
    from srcrn.inference.pipeline import Pipeline

    given = command_settings(ModelCardSettings, flags or {})
    card = Pipeline.from_bundle(given.model, workers=0).card
    typer.echo(
        json.dumps(clean_json(card.to_dict() if card else {}), indent=2)
    )  # stdout: `srcrn model-card > card.json`


@app.command()
@with_schema_options(ReproduceCommandSettings)
def reproduce(flags: Optional[dict] = None) -> None:
    """The paper's experiments (Tables 1-3, figures) as one resumable command, with a report."""
    from srcrn.workflows.runs import reproduce_command

    report = reproduce_command(command_settings(ReproduceCommandSettings, flags or {}))
    log.info("report: %s and %s", report, report.with_suffix(".html"))


@app.command()
@with_schema_options(DemoSettings)
def demo(flags: Optional[dict] = None) -> None:
    """Run the pipeline offline on the embedded real sample (40 ISIC 2017 images): the model
    shipped with srcrn, which never saw them; --train trains a toy pair of models first."""
    from srcrn.cli_tables import demo_notice, demo_tables
    from srcrn.workflows.demo import demo_command

    result, shipped = demo_command(command_settings(DemoSettings, flags or {}))
    for table in demo_tables(result, shipped):
        console.print(table)
    for what, paths in result.files.items():
        console.print(f"{what + ':':17s}{', '.join(str(p) for p in paths)}", soft_wrap=True, markup=False)
    console.print(demo_notice(shipped), soft_wrap=True)


if __name__ == "__main__":
    main()
