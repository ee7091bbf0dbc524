"""The answer in a dermatologist's words, defined once for the API's JSON, the web page and the
PDF report: each measurement with its plain name, value (millimetres when the image has a scale)
and a one-line explanation; what the probability and the decision mean, from the model card; and
the model card's short form. torch-free."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from srcrn.bundle.card import Figure, ModelCard
from srcrn.morphology.measurements import LesionMeasurements


@dataclass(frozen=True)
class Reading:
    """One measurement as a clinician reads it: its name, its value in words and what it means."""

    name: str
    value: str
    explanation: str

    def to_dict(self) -> dict[str, str]:
        """The reading as JSON-ready values."""
        return asdict(self)


DIAMETER_FLAG_MM = 6.0  # the "D" of the ABCD rule


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def readings(m: LesionMeasurements) -> list[Reading]:
    """The measurements a dermatologist reads, in their order and words."""
    if m.empty_mask:
        return [Reading("Lesion", "none found", "The segmenter found no lesion in this image.")]
    if m.longest_diameter_mm is not None:
        flag = f" (over {DIAMETER_FLAG_MM:g} mm)" if m.longest_diameter_mm > DIAMETER_FLAG_MM else ""
        diameter = f"{m.longest_diameter_mm:.1f} mm{flag}"
    else:
        diameter = f"{m.longest_diameter_pixels:.0f} px (no scale)"
    area = f"{m.area_mm2:.1f} mm²" if m.area_mm2 is not None else f"{m.area_pixels:.0f} px² (no scale)"
    colours = ", ".join(c.replace("_", " ") for c in m.colours.split())
    border = "n/a" if m.abcd_border is None else f"{m.abcd_border} of 8 segments"
    partial = "n/a" if m.abcd_partial_score is None else f"{m.abcd_partial_score:.2f} + 0.5 × D"
    return [
        Reading(
            "Longest diameter",
            diameter,
            f"Longest distance across the lesion; the clinical ABCDE rule flags more than {DIAMETER_FLAG_MM:g} mm. "
            "Not the dermoscopic ABCD rule's D (differential structures), which the clinician judges.",
        ),
        Reading("Area", area, "The lesion's surface in the image."),
        Reading(
            "Asymmetry (A)",
            f"{m.abcd_asymmetry} of 2 axes",
            "Axes about which the outline is not mirror-symmetric (shape only, not colours or structures).",
        ),
        Reading("Border (B)", border, "Segments where the pigment ends abruptly instead of fading into the skin."),
        Reading(
            "Colours (C)",
            f"{m.abcd_colours} of 6" + (f": {colours}" if colours else ""),
            "Of white, red, light brown, dark brown, blue-grey and black.",
        ),
        Reading(
            "ABCD score, partial",
            partial,
            "1.3 A + 0.1 B + 0.5 C. The clinician adds the dermoscopic structures (D, 1-5, weight 0.5); "
            "a full score above 5.45 suggests melanoma.",
        ),
        Reading(
            "Border compactness",
            _number(m.compactness),
            "Perimeter² / (4π × area): 1 for a circle, larger for irregular borders.",
        ),
        Reading("Pieces in the mask", str(m.fragments), "1: one lesion region; more: the mask is fragmented."),
        Reading("Touches the image edge", _number(m.touches_border), "If yes, the lesion may extend beyond the image."),
    ]


def interval(figure: Figure | dict[str, Any] | None) -> str:
    """'0.846 (95 % CI 0.748-0.911)' of a card figure ``{value, ci95}``."""
    if isinstance(figure, Figure):
        figure = figure.model_dump()
    if not figure or not isinstance(figure.get("value"), (int, float)):
        return "n/a"
    low, high = (figure.get("ci95") or [None, None])[:2]
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        return f"{figure['value']:.3f} (95 % CI {low:.3f}-{high:.3f})"
    return f"{figure['value']:.3f}"


def meaning(
    decision: str, threshold: float, card: ModelCard | None, missing: tuple[str, ...] = (), advice: str | None = None
) -> str:
    """What the probability is and what the decision suggests, from the model card; with
    ``missing`` (clinical fields the model takes but the image came without), what that costs;
    ``advice`` (a verdict band's words, ``answers.bands``) replaces the one-threshold advice."""
    calibration = card.classifier.calibration if card else None
    calibrated = (
        f"a calibrated probability ({calibration['method']} scaling)"
        if calibration
        else "an uncalibrated model score, not a frequency"
    )
    shipped = card.about.classifier.threshold if card and card.about else None
    if shipped:
        chosen = (
            f", chosen on {shipped.chosen_on}; on the validation split it gave sensitivity "
            f"{interval(shipped.val_sensitivity)} and specificity {interval(shipped.val_specificity)}"
        )
    elif card and card.classifier.target_sensitivity:
        chosen = f", chosen for {100 * card.classifier.target_sensitivity:.0f} % sensitivity on validation images"
    else:
        chosen = ""
    advice = advice or (
        "Above the referral threshold: consider excision or biopsy by a clinician."
        if decision == "melanoma"
        else "Below the referral threshold: no referral suggested by the model; clinical judgement decides."
    )
    return f"{advice} The number is {calibrated}; threshold {threshold:.3f}{chosen}.{_without(missing, card)}"


def not_assessable(reasons: list[str]) -> str:
    """What a not-assessable answer means: why, and that it carries no verdict."""
    return (
        f"Not assessable: {'; '.join(reasons)}. The model gives no verdict on this image; its number is not "
        "to be read. Check the image (a sharp, colour dermoscopic photograph of one lesion, whole in the frame) "
        "and try again, or assess clinically."
    )


def _without(missing: tuple[str, ...], card: ModelCard | None) -> str:
    """' No age or site was given: ...' when the model takes context that the image came without."""
    if not missing:
        return ""
    shipped = card.about.classifier if card and card.about else None
    # The shipped model's own figure without context where the card has it; else the image-only model's.
    own = shipped.shipped_without_context.val_auc if shipped and shipped.shipped_without_context else None
    image_only = own or (shipped.image_only.val_auc if shipped and shipped.image_only else None)
    figure = f" (its validation AUC from the image alone: {interval(image_only)})" if image_only else ""
    names = " or ".join(missing)
    return (
        f" No {names} was given: the model scored this image without {'it' if len(missing) == 1 else 'them'}, "
        f"so it is as good as the model is without context{figure}; giving them may change the answer."
    )


def short_form(card: ModelCard | None) -> list[tuple[str, str]]:
    """The model card in a few lines (page, report): what the model is, what it was trained and
    validated on, how good it was there, and its limits. Empty without a shipped card."""
    about = card.about if card else None
    if not about:
        return []
    images = about.data.get("images") or {}

    def count(subset: str) -> int:
        return sum(s.get("images", 0) for s in (images.get(subset) or {}).values())

    segmentation = about.segmenter.get("val") or {}
    classifier = about.classifier
    image_only = classifier.image_only.val_auc if classifier.image_only else None
    return [
        ("Model", about.name),
        ("Intended use", about.intended_use),
        (
            "Trained on",
            f"{count('train')} images ({', '.join(images.get('train') or {})}); validated on {count('val')}",
        ),
        (
            "Lesion mask",
            f"validation Jaccard {interval(segmentation.get('jaccard'))}, Dice {interval(segmentation.get('dice'))}",
        ),
        (
            "Melanoma",
            f"validation AUC {interval(classifier.val_auc)} with clinical context; "
            f"{interval(image_only)} from the image alone",
        ),
        ("Clinical fields", ", ".join(classifier.clinical_fields) or "none"),
        ("Limits", "; ".join(about.limits)),
    ]


def quality(card: ModelCard | None) -> str:
    """One line of how good stage 2 was on held-out images, from the card."""
    if card is None:
        return ""
    shipped = card.about.classifier if card.about else None
    if shipped and shipped.val_auc:
        return f"Stage 2: validation AUC {interval(shipped.val_auc)}, out-of-fold AUC {interval(shipped.oof_auc)}."
    training = card.classifier.training or {}
    parts = [f"{card.classifier.kind} model"]
    if isinstance(training.get("val_auc"), (int, float)):
        parts.append(f"validation AUC {training['val_auc']:.3f}")
    if isinstance(training.get("n_train"), int):
        parts.append(f"trained on {training['n_train']} images")
    return f"Stage 2: {', '.join(parts)}."


def card_summary(card: ModelCard | None) -> dict[str, Any]:
    """What the page shows of the card: its short form and the quality line."""
    return {"short_form": [list(row) for row in short_form(card)], "quality": quality(card)}
