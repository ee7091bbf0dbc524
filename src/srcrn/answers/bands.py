"""Verdict bands instead of one line (issue 33): two thresholds on the melanoma probability,
chosen on out-of-fold probabilities, split answers into ``low``, ``intermediate`` (a clinician
reviews) and ``high``, each with the share of melanomas measured in it on validation images.
One threshold made every benign lesion above it a red "Melanoma suspected"; the middle band
says what the number can and cannot separate. The words are here, once, for the API, the page,
the PDF and the tables. torch-free."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

LOW, INTERMEDIATE, HIGH = "low", "intermediate", "high"
# What each band suggests; only ``high`` speaks of excision or biopsy.
ADVICE = {
    LOW: "Low: no referral suggested by the model; clinical judgement decides.",
    INTERMEDIATE: "Intermediate: the model cannot separate this lesion well; a clinician should review it "
    "(dermoscopic follow-up or a second opinion).",
    HIGH: "High: consider excision or biopsy by a clinician.",
}


class BandFigure(BaseModel):
    """A band's melanomas among the validation images that fell in it, with a Wilson interval."""

    images: int = Field(ge=0)
    melanomas: int = Field(ge=0)
    share: float | None = None
    ci95: list[float] | None = None


class Bands(BaseModel):
    """Below ``low_below``: low; above ``high_above``: high; between: intermediate."""

    model_config = ConfigDict(extra="forbid")

    low_below: float = Field(ge=0, le=1)  # chosen for this sensitivity on out-of-fold probabilities
    high_above: float = Field(ge=0, le=1)  # and this specificity
    sensitivity: float = Field(gt=0, le=1)
    specificity: float = Field(gt=0, le=1)
    chosen_on: str = ""
    validation: dict[str, BandFigure] = Field(default_factory=dict)  # low | intermediate | high

    @model_validator(mode="after")
    def _ordered(self) -> Bands:
        if self.low_below > self.high_above:
            raise ValueError("low_below must not lie above high_above")
        return self

    def band(self, probability: float) -> str:
        """The band of a probability."""
        if probability > self.high_above:
            return HIGH
        return INTERMEDIATE if probability > self.low_below else LOW

    def said(self, band: str) -> str:
        """The band's advice, with its measured share of melanomas on validation where known."""
        figure = self.validation.get(band)
        if figure is None or figure.share is None:
            return ADVICE[band]
        interval = f" (95 % CI {figure.ci95[0]:.2f}-{figure.ci95[1]:.2f})" if figure.ci95 else ""
        return (
            f"{ADVICE[band]} On validation images, {figure.melanomas} of {figure.images} lesions in this band were "
            f"melanomas: {100 * figure.share:.0f} %{interval}."
        )
