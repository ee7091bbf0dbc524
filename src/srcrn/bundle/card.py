"""The model card a pipeline (and ``srcrn serve``'s ``/api/v1/model``, ``srcrn model-card``) shows,
typed (as torchvision's ``WeightsEnum.meta`` or MONAI's bundle metadata): versions,
preprocessing, the operating threshold and the sensitivity it was chosen for, calibration, what
each model was trained and validated on, and a shipped model's own description (``about``).
Built once by the pipeline, read by attribute everywhere, validated when read from a file.
torch-free."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from srcrn.atomic import read_json
from srcrn.errors import ConfigError
from srcrn.shapes import ImageSize


def training_records(segmenter: str | Path, classifier: str | Path) -> dict[str, dict[str, Any] | None]:
    """What each model's training run recorded (``summary.json`` beside its ``checkpoints/``
    folder), for the model card."""
    return {"segmenter": training_record(segmenter), "classifier": training_record(classifier)}


# The parts of a run's summary.json a model card shows: data counts and validation scores.
CARD_KEYS = ("n_train", "n_train_melanoma", "n_train_benign", "n_augmented", "n_val", "epochs", "global_step")


def training_record(model: str | Path) -> dict[str, Any] | None:
    """The training figures of a model's run (its summary.json beside or above the file), or None."""
    model = Path(model)
    for summary in (model.parent.parent / "summary.json", model.parent / "summary.json"):
        if summary.is_file():
            try:
                values = read_json(summary)
            except (OSError, ValueError):
                return None
            return {k: v for k, v in values.items() if k in CARD_KEYS or k.startswith(("best_val", "val_"))}
    return None


CARD_VERSION: Literal[1] = 1


class Figure(BaseModel):
    """A figure with its 95 % interval, as a shipped card states it."""

    model_config = ConfigDict(extra="allow")

    value: float
    ci95: list[float] | None = None


class ThresholdChoice(BaseModel):
    """How a shipped model's threshold was chosen, and what it gave on validation images."""

    model_config = ConfigDict(extra="allow")

    chosen_on: str = ""
    val_sensitivity: Figure | None = None
    val_specificity: Figure | None = None


class AucFigures(BaseModel):
    """A model's AUC on validation images (and out of fold where measured)."""

    model_config = ConfigDict(extra="allow")

    val_auc: Figure | None = None
    oof_auc: Figure | None = None


class AboutClassifier(AucFigures):
    """A shipped model's stage 2 as its card describes it (more keys are kept as they are)."""

    image_only: AucFigures | None = None  # the best image-only model of the same selection
    shipped_without_context: AucFigures | None = None  # the shipped model itself, given no context
    threshold: ThresholdChoice | None = None
    clinical_fields: list[str] = Field(default_factory=list)


class About(BaseModel):
    """A shipped model's own description (``export onnx --card``): name, intended use, data and
    licences, validation figures, limits. Keys the short form does not read are kept as they are."""

    model_config = ConfigDict(extra="allow")

    name: str = ""
    intended_use: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    segmenter: dict[str, Any] = Field(default_factory=dict)
    classifier: AboutClassifier = Field(default_factory=AboutClassifier)
    limits: list[str] = Field(default_factory=list)


class SegmenterCard(BaseModel):
    """Stage 1 as the pipeline runs it."""

    source: str = ""
    image_size: ImageSize  # a side, or (height, width)
    tta: bool = False
    keep_largest: bool = False
    training: dict[str, Any] | None = None  # what its run's summary.json recorded


class ClassifierCard(BaseModel):
    """Stage 2 as the pipeline runs it."""

    source: str = ""
    kind: str
    members: list[str] = Field(default_factory=list)
    clinical_fields: list[str] = Field(default_factory=list)  # age, sex, site: what the model takes
    image_size: int
    input: str
    margin: float
    threshold: float
    target_sensitivity: float | None = None
    calibration: dict[str, Any] | None = None
    training: dict[str, Any] | None = None


class ModelCard(BaseModel):
    """The card of a pipeline: built once, read by attribute, written by ``to_dict``."""

    model_config = ConfigDict(populate_by_name=True)

    card_version: Literal[1] = CARD_VERSION
    srcrn_version: str
    exported_with: str | None = None
    engine: str
    segmenter: SegmenterCard
    classifier: ClassifierCard
    working_side: int
    gate: dict[str, Any] | None = None  # the input gate's thresholds (answers.gate.Gate, without its arrays)
    bands: dict[str, Any] | None = None  # the verdict bands (answers.bands.Bands) where the model has them
    about: About | None = Field(None, alias="model_card")  # a shipped model's own description

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready data (the shipped description under ``model_card``)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=False)

    @classmethod
    def from_dict(cls, values: Any, where: str = "model card") -> ModelCard:
        """A card from data, validated: one error line naming ``where`` and the first problem."""
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            first = error.errors()[0]
            place = ".".join(str(p) for p in first["loc"]) or "the card"
            raise ConfigError(f"{where}: not a srcrn model card ({place}: {first['msg']})") from None

    @classmethod
    def from_file(cls, path: str | Path) -> ModelCard:
        """A card written by ``srcrn model-card > card.json``, validated."""
        path = Path(path)
        try:
            values = read_json(path)
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise ConfigError(f"{path}: not a readable model card ({type(error).__name__})") from None
        return cls.from_dict(values, str(path))


def model_card(
    pipeline: Any,
    engine: str,
    training: dict[str, Any],
    working_side: int,
    *,
    exported_with: str | None = None,
    about: dict[str, Any] | None = None,
) -> ModelCard:
    """The card of ``pipeline``: versions, preprocessing, threshold and the sensitivity it was
    chosen for, calibration, what each model was trained on, and a shipped model's ``about``."""
    from srcrn import __version__

    classifier = pipeline.classifier
    calibration = classifier.spec.calibration
    return ModelCard(
        srcrn_version=__version__,
        exported_with=exported_with,
        engine=engine,
        segmenter=SegmenterCard(
            source=Path(pipeline.segmenter.source).name,
            image_size=pipeline.segment_size,
            tta=pipeline.segmenter.spec.tta,
            keep_largest=pipeline.segmenter.spec.keep_largest,
            training=training.get("segmenter"),
        ),
        classifier=ClassifierCard(
            source=Path(classifier.source or "").name,
            kind=classifier.kind,
            members=[m.kind for m in getattr(classifier, "members", [])],
            clinical_fields=list(classifier.clinical_fields),
            image_size=pipeline.classify_size,
            input=pipeline.input_mode,
            margin=pipeline.margin,
            threshold=pipeline.threshold,
            target_sensitivity=classifier.spec.target_sensitivity,
            calibration=calibration.to_dict() if calibration.method != "none" else None,
            training=training.get("classifier"),
        ),
        working_side=working_side,
        about=About.model_validate(about) if about else None,
    )
