"""The answer in a dermatologist's words, defined once for the API's JSON, the web page and the
PDF report: each measurement with its plain name, value (millimetres when the image has a scale)
and a one-line explanation; what the probability and the decision mean, from the model card; and
the model card's short form. torch-free."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

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
    area = f"{m.area_mm2:.1f} mm²" if m.area_mm2 is not None else f"{m.area_pixels:.0f} px (no scale)"
    colours = ", ".join(c.replace("_", " ") for c in m.colours.split())
    border = "n/a" if m.abcd_border is None else f"{m.abcd_border} of 8 segments"
    partial = "n/a" if m.abcd_partial_score is None else f"{m.abcd_partial_score:.2f} + 0.5 × D"
    return [
        Reading(
            "Diameter (D)",
            diameter,
            f"Longest distance across the lesion; the ABCD rule flags more than {DIAMETER_FLAG_MM:g} mm.",
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


def interval(figure: dict[str, Any] | None) -> str:
    """'0.846 (95 % CI 0.748-0.911)' of a card figure ``{value, ci95}``."""
    if not figure or not isinstance(figure.get("value"), (int, float)):
        return "n/a"
    low, high = (figure.get("ci95") or [None, None])[:2]
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        return f"{figure['value']:.3f} (95 % CI {low:.3f}-{high:.3f})"
    return f"{figure['value']:.3f}"


def meaning(decision: str, threshold: float, card: dict[str, Any], missing: tuple[str, ...] = ()) -> str:
    """What the probability is and what the decision suggests, from the model card; with
    ``missing`` (clinical fields the model takes but the image came without), what that costs."""
    classifier = card.get("classifier") or {}
    calibration = classifier.get("calibration")
    calibrated = (
        f"a calibrated probability ({calibration['method']} scaling)"
        if calibration
        else "an uncalibrated model score, not a frequency"
    )
    shipped = ((card.get("model_card") or {}).get("classifier") or {}).get("threshold")
    if shipped:
        chosen = (
            f", chosen on {shipped['chosen_on']}; on the validation split it gave sensitivity "
            f"{interval(shipped.get('val_sensitivity'))} and specificity {interval(shipped.get('val_specificity'))}"
        )
    elif classifier.get("target_sensitivity"):
        chosen = f", chosen for {100 * classifier['target_sensitivity']:.0f} % sensitivity on validation images"
    else:
        chosen = ""
    advice = (
        "Above the referral threshold: consider excision or biopsy by a clinician."
        if decision == "melanoma"
        else "Below the referral threshold: no referral suggested by the model; clinical judgement decides."
    )
    return f"{advice} The number is {calibrated}; threshold {threshold:.3f}{chosen}.{_without(missing, card)}"


def _without(missing: tuple[str, ...], card: dict[str, Any]) -> str:
    """' No age or site was given: ...' when the model takes context that the image came without."""
    if not missing:
        return ""
    shipped = (card.get("model_card") or {}).get("classifier") or {}
    # The shipped model's own figure without context where the card has it; else the image-only model's.
    own = (shipped.get("shipped_without_context") or {}).get("val_auc")
    image_only = own or (shipped.get("image_only") or {}).get("val_auc")
    figure = f" (its validation AUC from the image alone: {interval(image_only)})" if image_only else ""
    names = " or ".join(missing)
    return (
        f" No {names} was given: the model scored this image without {'it' if len(missing) == 1 else 'them'}, "
        f"so it is as good as the model is without context{figure}; giving them may change the answer."
    )


def short_form(card: dict[str, Any]) -> list[tuple[str, str]]:
    """The model card in a few lines (page, report): what the model is, what it was trained and
    validated on, how good it was there, and its limits. Empty without a shipped card."""
    about = card.get("model_card")
    if not about:
        return []
    images = (about.get("data") or {}).get("images") or {}

    def count(subset: str) -> int:
        return sum(s.get("images", 0) for s in (images.get(subset) or {}).values())

    segmentation = (about.get("segmenter") or {}).get("val") or {}
    classifier = about.get("classifier") or {}
    image_only = (classifier.get("image_only") or {}).get("val_auc")
    return [
        ("Model", str(about.get("name", ""))),
        ("Intended use", str(about.get("intended_use", ""))),
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
            f"validation AUC {interval(classifier.get('val_auc'))} with clinical context; "
            f"{interval(image_only)} from the image alone",
        ),
        ("Clinical fields", ", ".join(classifier.get("clinical_fields") or []) or "none"),
        ("Limits", "; ".join(about.get("limits") or [])),
    ]


def quality(card: dict[str, Any]) -> str:
    """One line of how good stage 2 was on held-out images, from the card."""
    shipped = (card.get("model_card") or {}).get("classifier") or {}
    if shipped.get("val_auc"):
        return (
            f"Stage 2: validation AUC {interval(shipped['val_auc'])}, "
            f"out-of-fold AUC {interval(shipped.get('oof_auc'))}."
        )
    classifier = card.get("classifier") or {}
    training = classifier.get("training") or {}
    parts = [f"{classifier['kind']} model"] if classifier.get("kind") else []
    if isinstance(training.get("val_auc"), (int, float)):
        parts.append(f"validation AUC {training['val_auc']:.3f}")
    if isinstance(training.get("n_train"), int):
        parts.append(f"trained on {training['n_train']} images")
    return f"Stage 2: {', '.join(parts)}." if parts else ""


def card_summary(card: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of the card: its short form and the quality line."""
    return {"short_form": [list(row) for row in short_form(card)], "quality": quality(card)}
