"""The settings of every command that is not a training, declared once (pydantic), as
``srcrn.settings`` declares the trainings': the CLI generates each command's flags from its
schema (``cli_schema``), validates what was given with it (a bad value is one line naming the
flag), and the library functions take the validated object. Positional arguments (images,
folders) are the CLI's; everything given as ``--flag`` is here.

One name, one meaning: a flag name means the same in every command (``--model`` is always the
model to use, ``--split`` always a split method, ``--split-file`` a split.csv). Spellings
renamed for that are kept for one release as deprecated aliases (``DEPRECATED_FLAGS``).

Torch-free, like ``srcrn.settings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from srcrn.settings import (
    CalibrationMethod,
    ImageShape,
    Int8Ranges,
    OutputRule,
    Settings,
    SplitMethod,
    flag_name,
    validate,
)

Subset = Literal["train", "val"]
Engine = Literal["torch", "onnx"]
InferenceDtype = Literal["fp32", "bf16"]

# command -> {old spelling: new spelling}: accepted for one release, with a warning.
DEPRECATED_FLAGS: dict[str, dict[str, str]] = {
    "split": {"--method": "--split"},  # the training settings' name of the same choice
    "predict": {"--precision": "--dtype"},  # training's --precision is Lightning's (32-true, bf16-mixed)
    "export onnx": {"--calibration": "--calibration-data"},  # classify cv's --calibration is a method
    "prepare": {"--size": "--image-size"},  # the training settings' name of the same number
    "segment eval": {"--split": "--split-file"},  # training's --split is a method (paper, official)
    "classify eval": {"--split": "--split-file"},
}


class PrepareSettings(Settings):
    """``srcrn prepare DATA``: decode every image once into a memory-mapped cache."""

    output_rule = OutputRule(
        command="prepare", adopt=("manifest.json",), resume=True
    )  # reused when its fingerprint matches

    out: Path = Field(description="cache folder to write (reused when inputs are unchanged)")
    image_size: ImageShape = Field(128, description="size of the cached images: a side, or height x width (192x256)")
    workers: int | None = Field(None, ge=1, description="decoding processes (default: all cores)")
    require_masks: bool = Field(False, description="refuse images without a mask")
    require_labels: bool = Field(False, description="refuse images without a label")


class SplitSettings(Settings):
    """``srcrn split DATA``: the train/validation split training would use."""

    output_rule = OutputRule(command="split", writes=("split.csv", "split.json"), stage=True)

    out: Path = Field(description="folder to write split.csv and split.json into")
    split: SplitMethod = Field("paper", description="how to split")
    seed: int = Field(0, description="seed of the random split")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="validation share of a random split")


class EvalSettings(Settings):
    """What both evaluations share."""

    data: Path = Field(description="ISIC-layout folder; its masks or labels give the scores")
    split_file: Path | None = Field(None, description="split.csv (or its run folder) to pick images from")
    subset: Subset = Field("val", description="with --split-file: which part")
    cache: str | None = Field(None, description="prepared-cache folder (default: under ~/.cache/srcrn)")
    progress: bool = Field(True, description="show progress bars")


class SegmentEvalSettings(EvalSettings):
    """``srcrn segment eval``: masks at the original size, scored as the ISIC challenge does."""

    output_rule = OutputRule(
        command="segment eval",
        writes=("masks", "per_image.csv", "metrics.json", "overlays.png"),
        stage=True,
        replace=True,
    )

    model: Path = Field(description="checkpoint (.ckpt) of segment train")
    out: Path = Field(description="folder for masks/, per_image.csv, metrics.json")
    batch_size: int = Field(32, ge=1, description="inference batch size")
    tta: bool | None = Field(None, description="average the four flips (default: as the model's recipe says)")
    keep_largest: bool | None = Field(
        None, description="keep the largest predicted region, holes filled (default: as the model's recipe says)"
    )


class ClassifyEvalSettings(EvalSettings):
    """``srcrn classify eval``: probabilities, discrimination and calibration figures."""

    output_rule = OutputRule(
        command="classify eval",
        writes=("predictions.csv", "metrics.json", "per_image.csv", "roc.png", "reliability.png"),
        stage=True,
        replace=True,
    )

    model: Path = Field(description="stage-2 model of classify train: CNN checkpoint, feature model or stack folder")
    out: Path = Field(description="folder for predictions.csv, metrics.json, roc.png")
    metadata: Path | None = Field(
        None, description="clinical metadata CSV (default: DATA/metadata.csv), for models that take age/sex/site"
    )
    segmenter: Path | None = Field(
        None, description="SRCRN checkpoint giving the lesion masks (default: the one it was trained with)"
    )
    target_sensitivity: float | None = Field(
        None, gt=0, le=1, description="choose the threshold reaching this sensitivity here, and store it in --model"
    )
    calibrate: CalibrationMethod | None = Field(
        None,
        description="fit a calibration on these images and store it in --model; prefer classify cv, "
        "which fits it on out-of-fold scores",
    )


class RunCommandSettings(Settings):
    """What the training commands take besides the recipe's settings (``srcrn.settings``)."""

    data: Path = Field(description="ISIC-layout folder with images and masks or labels")
    config: Path | None = Field(None, description="YAML file of settings (flags override it)")
    progress: bool = Field(True, description="show progress bars")


class TrainCommandSettings(RunCommandSettings):
    """``srcrn segment train`` / ``classify train``: a run folder, resumable."""

    out: Path = Field(description="run folder: checkpoints, metrics.csv, curves.png, split")
    resume: bool = Field(False, description="continue the run in --out from its last checkpoint")


class CrossValidationSettings(RunCommandSettings):
    """``srcrn classify cv``'s own settings (the recipe's are ``ClassifyTrainSettings``)."""

    output_rule = OutputRule(  # a rerun continues the folds (their identity is checked by content)
        command="classify cv", adopt=("data.json", "cv.json", "config.yaml"), resume=True
    )

    out: Path = Field(description="folder of the folds, oof.csv, val.csv, cv.json")
    folds: int = Field(5, ge=2, description="folds (stratified, near-duplicates kept together)")
    final: bool = Field(True, description="also train on the whole training split, calibrate, score validation")
    calibration: CalibrationMethod = Field("platt", description="calibration fitted on the out-of-fold logits")
    target_sensitivity: float | None = Field(
        None,
        gt=0,
        le=1,
        description="choose the threshold reaching this sensitivity on the out-of-fold calibrated "
        "probabilities and store it in the final model (the validation split only measures it)",
    )


class SweepSettings(RunCommandSettings):
    """``srcrn classify sweep``'s own settings (each run's are ``ClassifyTrainSettings``)."""

    output_rule = OutputRule(command="classify sweep")

    out: Path = Field(description="folder of the runs, sweep.csv/.md/.png")
    batch_sizes: list[int] = Field([4, 8, 16, 32, 64], min_length=1, description="batch sizes, e.g. 4,8,16,32,64")

    @field_validator("batch_sizes", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        # `--batch-sizes 4,8,16` (the flag's spelling since the start) or a YAML list.
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [part.strip() for v in value for part in v.split(",") if part.strip()]
        return value


class ModelSettings(Settings):
    """Which model answers (predict, serve, compare): a bundle, checkpoints, or the shipped one."""

    model: Path | None = Field(
        None, description="bundle folder of srcrn export onnx (default, with no model flag: the shipped model)"
    )
    segmenter: Path | None = Field(None, description="SRCRN checkpoint (engine torch, instead of --model)")
    classifier: Path | None = Field(
        None, description="stage-2 model (engine torch): CNN checkpoint, feature model or stack folder"
    )
    threshold: float | None = Field(None, ge=0, le=1, description="decision threshold (default: the model's)")
    explain: bool = Field(False, description="also a Grad-CAM heatmap of the classifier's evidence (engine torch)")
    dtype: InferenceDtype = Field("fp32", description="engine torch: bf16 autocast (fast only on CPUs with BF16)")
    device: str = Field("cpu", description="engine torch: the torch device (cpu, cuda, cuda:1, mps)")


class PredictSettings(ModelSettings):
    """``srcrn predict IMAGES``: both stages for each image."""

    output_rule = OutputRule(  # not staged: the journal and atomic files are its staging, a killed run resumes
        command="predict",
        writes=(
            "predictions.csv",
            "predictions.json",
            "masks",
            "overlays",
            "explanations",
            "reports",
            "dicom",
            "predictions.partial.jsonl",
        ),
        adopt=("predictions.partial.jsonl", "predictions.json"),
    )

    out: Path = Field(description="folder for masks/, overlays/, predictions.csv/.json")
    engine: Engine = Field("torch", description="torch (checkpoints) | onnx (a bundle of srcrn export onnx)")
    metadata: Path | None = Field(
        None, description="metadata CSV per image id: age, sex, site (ISIC 2017/2019/2020 forms), pixel_spacing_mm"
    )
    mm_per_pixel: float | None = Field(
        None, description="the images' scale (mm per pixel), for measurements in mm; the metadata's wins"
    )
    batch_size: int = Field(8, ge=1, description="images per batch")
    overlays: bool = Field(True, description="write overlays/<id>_overlay.png (--no-overlays: faster)")
    report: bool = Field(False, description="also write reports/<id>_report.pdf: a one-page record of each image")
    spread: bool = Field(
        True,
        description="also read each lesion turned by -15 and +15 degrees: the answer is the mean of the three "
        "readings, its spread (spread_low, spread_high) their range; --no-spread: faster, the answer of the "
        "lesion as given and no spread",
    )
    dicom: bool = Field(
        False,
        description="also write dicom/<id>_seg.dcm (the mask, DICOM SEG) and <id>_sr.dcm (the findings, SR TID 1500); "
        "for a JPEG/PNG input, <id>_image.dcm, the Secondary Capture they refer to (needs srcrn[dicom])",
    )
    patient_id: str | None = Field(
        None, max_length=64, description="--dicom, JPEG/PNG inputs: the Patient ID of their study (else anonymous)"
    )
    patient_name: str | None = Field(
        None, max_length=64, description="--dicom, JPEG/PNG inputs: the Patient's Name, DICOM style (Family^Given)"
    )
    patient_birth_date: str | None = Field(
        None, pattern=r"^\d{8}$", description="--dicom, JPEG/PNG inputs: the Patient's Birth Date (YYYYMMDD)"
    )
    workers: int | None = Field(
        None, ge=0, description="threads decoding and writing beside the networks (0: none; default 1)"
    )
    resume: bool = Field(False, description="keep the images an earlier (killed) run into --out finished")
    shard: str | None = Field(
        None, description="K/N: only this machine's share of the images; join with merge-predictions"
    )
    progress: bool = Field(True, description="show progress bars")


class DicomServeSettings(ModelSettings):
    """``srcrn dicom serve``: a DICOM node that predicts what it receives and forwards SEG + SR."""

    output_rule = OutputRule(command="dicom serve", writes=("incoming", "outgoing", "failed"), resume=True)  # the spool

    ae_title: str = Field("SRCRN", min_length=1, max_length=16, description="this node's AE title")
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: every interface)")
    port: int = Field(11112, ge=1, le=65535, description="port to listen on (11112: DICOM's registered port)")
    forward: str | None = Field(
        None, description="HOST:PORT:AET that receives each answer's SEG and SR (a PACS); none: kept in the spool"
    )
    spool: Path = Field(
        Path("srcrn-dicom-spool"),
        description="folder of received images and unsent answers (kept across restarts, retried)",
    )
    retry_seconds: float = Field(
        30.0, gt=0, le=86400, description="seconds between tries of a destination that is down"
    )
    max_pending: int = Field(64, ge=1, description="received images waiting at most; more are refused (0xA700)")
    max_pixels: int = Field(
        40_000_000,
        ge=1_000_000,
        description="pixels a received image may have (as serve's --max-pixels); more: refused",
    )


class MergeSettings(Settings):
    """``srcrn merge-predictions SHARDS``: one table from sharded predict runs."""

    output_rule = OutputRule(
        command="merge-predictions", writes=("predictions.csv", "predictions.json"), stage=True, contains=False
    )

    out: Path = Field(description="folder for the joined predictions.csv/.json")
    partial: bool = Field(False, description="join shards that do not cover the whole job")


class ExportSettings(Settings):
    """``srcrn export onnx``: both stages as a torch-free bundle."""

    output_rule = OutputRule(  # a bundle folder is wholly the export's: a new export replaces an earlier one
        command="export onnx", adopt=("bundle.json",), resume=True, stage=True, replace=True
    )

    segmenter: Path = Field(description="SRCRN checkpoint (segment train)")
    classifier: Path = Field(description="stage-2 model of classify train: CNN, feature model or stack folder")
    out: Path = Field(description="bundle folder: both stages' models + bundle.json")
    quantize: Literal["int8"] | None = Field(
        None, description="int8: static quantization, parity measured, refused beyond tolerance"
    )
    calibration_data: Path | None = Field(
        None, description="ISIC-layout folder for int8 calibration and parity (not the test split)"
    )
    calibration_images: int = Field(64, ge=8, description="images that calibrate the int8 ranges")
    parity_images: int = Field(200, ge=1, description="other images on which int8 is compared with fp32")
    int8_classifier: bool = Field(
        True, description="--no-int8-classifier: quantize the segmenter only (when the stage-2 CNNs lose parity)"
    )
    int8_ranges: Int8Ranges = Field("minmax", description="how int8 activation ranges are calibrated")
    card: Path | None = Field(
        None,
        description="JSON or YAML model card stored in the bundle (training data, licences, figures, intended "
        "use); the size and SHA-256 of each file are added",
    )


class CompareSettings(Settings):
    """``srcrn compare BEFORE AFTER``: two visits of one lesion."""

    output_rule = OutputRule(
        command="compare",
        writes=("comparison.json", "comparison.png", "comparison.pdf"),
        stage=True,
        replace=True,
        contains=False,
    )

    out: Path = Field(description="folder for comparison.json and comparison.png")
    model: Path | None = Field(None, description="bundle folder (default: the model shipped with srcrn)")
    before_mm_per_pixel: float | None = Field(None, description="BEFORE's scale (mm per pixel)")
    after_mm_per_pixel: float | None = Field(None, description="AFTER's scale (mm per pixel)")
    report: bool = Field(False, description="also write comparison.pdf: a one-page record")


class ModelCardSettings(Settings):
    """``srcrn model-card``: what a bundle's model is."""

    model: Path = Field(Path("default"), description="bundle folder, or 'default' for the model shipped with srcrn")


class ReproduceCommandSettings(Settings):
    """``srcrn reproduce``: the paper's experiments (their settings: ``ReproduceSettings``)."""

    output_rule = OutputRule(command="reproduce")  # resumable by nature: a rerun skips the finished runs

    config: Path = Field(description="YAML: configs/paper.yaml, dev.yaml or demo.yaml")
    out: Path = Field(description="folder for the runs and report.md / report.html")
    data: Path | None = Field(None, description="ISIC-layout folder (default: the embedded sample)")
    extra: Path | None = Field(None, description="labelled extra images for balance 'extra'")
    progress: bool = Field(True, description="show progress bars")


class DemoSettings(Settings):
    """``srcrn demo``: the pipeline on the embedded sample, offline."""

    output_rule = OutputRule(command="demo")  # a rerun replaces the demo's own earlier output

    out: Path = Field(Path("demo-out"), description="folder for the demo's outputs")
    train: bool = Field(
        False, description="train both stages for a few dozen steps instead (a smoke run; needs srcrn[train])"
    )
    progress: bool = Field(True, description="show progress bars")


def command_settings(schema: type[Settings], flags: dict[str, Any]) -> Any:
    """``schema`` from the flags given (None = not given: the default); a problem is one line
    naming the flag.

    Raises:
        ConfigError: a value the schema refuses, or a required flag missing.
    """
    given = {name: value for name, value in flags.items() if value is not None}
    return validate(schema, given, {name: flag_name(name) for name in schema.model_fields})
