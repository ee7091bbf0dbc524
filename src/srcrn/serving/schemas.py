"""The service's answers as typed models: what the OpenAPI document (``/docs``) shows for each
endpoint. The endpoints build their JSON from the answers' own ``to_dict`` (one source of the
numbers); these models describe it, and the tests validate real answers against them with
unknown fields forbidden, so that the document cannot drift from what is sent."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from srcrn.answers.readings import Reading
from srcrn.morphology.measurements import LesionMeasurements


class Answer(BaseModel):
    """Base: a field the service does not document is an error (in the tests)."""

    model_config = ConfigDict(extra="forbid")


class ErrorAnswer(Answer):
    """Every refusal: one line naming the file or field and the problem."""

    detail: str = Field(description="e.g. 'lesion.jpg: cannot read image: not a recognised image format, or corrupt'")


class HealthAnswer(Answer):
    """Liveness."""

    status: Literal["ok"]
    auth: Literal["bearer", "none"]


class ReadyAnswer(Answer):
    """Readiness: models loaded and warmed up (503 with Retry-After before)."""

    status: Literal["ready"]
    busy: int = Field(description="requests admitted now")
    capacity: int = Field(description="requests admitted at most (predicting and waiting)")


class ClinicalAnswer(Answer):
    """The clinical context of the answer."""

    given: dict[str, Any] = Field(description="age, sex, site, pixel_spacing_mm as given (null: not given)")
    used: list[str] = Field(description="the fields the model used (a model without clinical inputs: none)")
    from_dicom_header: list[str] = Field(description="the fields taken from a DICOM upload's header")


class PredictAnswer(Answer):
    """One image's answer (``PipelineResult.to_dict``) with the upload's name, the model and timings."""

    image_id: str
    width: int
    height: int
    probability: float = Field(description="P(melanoma), calibrated; not to be read when probability_readable is false")
    decision: str = Field(description="melanoma | benign | not assessable")
    threshold: float
    measurements: LesionMeasurements
    readings: list[Reading] = Field(description="the measurements in words, as the page shows them")
    status: Literal["assessed", "not assessable"] = Field(description="the input gate's answer")
    reasons: list[str] = Field(description="why not assessable")
    probability_readable: bool
    band: Literal["low", "intermediate", "high"] | None = Field(description="the verdict band (null: none)")
    probability_spread: list[float] | None = Field(
        description="[lowest, highest] P(melanoma) of the lesion as given and turned by -15 and +15 degrees (the "
        "answer is their mean; not a confidence interval); null when not assessable"
    )
    gate: dict[str, Any] = Field(description="the input gate's figures (sharpness, typicality, ...)")
    warnings: list[str]
    meaning: str = Field(description="what the number and the decision mean, from the model card")
    image_sha256: str
    clinical: ClinicalAnswer
    filename: str
    model: dict[str, Any] = Field(description="srcrn version, engine, model name and files")
    timings_ms: dict[str, float]
    mask_png: str | None = Field(None, description="base64 PNG, 0/255 at the original size (images=true)")
    overlay_png: str | None = Field(None, description="base64 PNG, the contour on the image (images=true)")
    explanation_png: str | None = Field(None, description="base64 PNG, Grad-CAM (models that give one)")


class RegistrationAnswer(Answer):
    """AFTER's image registered onto BEFORE's (a similarity transform), and whether to trust it."""

    matrix: list[list[float]] = Field(description="2x3: AFTER working pixels to BEFORE working pixels")
    rotation_degrees: float
    scale: float
    mirrored: bool
    inliers: int
    matches: int
    correlation: float
    reliable: bool
    problems: list[str]
    inlier_share: float


class CompareAnswer(Answer):
    """Two visits of one lesion (``Comparison.to_dict``): changes are null when the registration is unreliable."""

    before_id: str
    after_id: str
    registration: RegistrationAnswer
    area_change_percent: float | None
    diameter_change_percent: float | None
    area_change_mm2: float | None
    diameter_change_mm: float | None
    asymmetry_change: int | None
    border_change: int | None
    colours_change: int | None
    colours_appeared: list[str]
    colours_vanished: list[str]
    probability_before: float
    probability_after: float
    spread_before: list[float] | None
    spread_after: list[float] | None
    grown_share: float | None
    shrunk_share: float | None
    recoloured_share: float | None
    warnings: list[str]
    measured: bool
    probability_change: float | None
    probability_change_measurable: bool | None = Field(description="false: within both visits' spreads")
    picture_png: str = Field(description="base64 PNG: both contours | change map")
    filenames: list[str]


def documented(ok: type[BaseModel] | dict[str, Any], *refusals: int) -> dict[int | str, dict[str, Any]]:
    """An endpoint's OpenAPI ``responses``: its answer (a model, or a non-JSON content entry) and
    the refusals it gives (``ErrorAnswer``)."""
    answer = {"model": ok} if isinstance(ok, type) else ok
    shown: dict[int | str, dict[str, Any]] = {200: answer}
    for status in refusals:
        shown[status] = {"model": ErrorAnswer, "description": "one line: the file or field and the problem"}
    return shown
