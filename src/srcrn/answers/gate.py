"""The input gate: before any verdict, is this image one the model can assess? An answer is
``assessed``, or ``not assessable`` with its reasons, and then carries no verdict (the
probability stays in the JSON, marked not to be read). Dermatology AI treats "cannot assess"
as an answer of its own (ISIC 2019's "unknown" class); a verdict on a blank page or a broken
file is worse than none.

The reasons, each from a measured figure (thresholds in ``Gate``; a bundle stores its own,
``bundle.json``'s ``gate``, and the model card shows them):

- damaged: the JPEG decoder reported corrupt data (``data.images.jpeg_damage``);
- greyscale: no colour to read (dermoscopy's colours are half of what the model sees);
- blank or saturated: almost no contrast, or most pixels clipped;
- out of focus: the variance of the Laplacian at a fixed working side below the threshold;
- no lesion found, or the lesion fills the frame (the segmenter's mask);
- not dermoscopic: the lesion-feature table far from the training images' (a Mahalanobis
  distance in the whitened principal components of the training features, ``Typicality``), or
  the lesion crop's pooled ImageNet features (the stage-2 CNN's backbone) far from the training
  crops' (``image_typicality``, the same distance): hand-made colour and shape features of a
  cat's or a cup's crop can look like a lesion's; what an ImageNet network sees of them does not.

torch-free (numpy, OpenCV).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

ASSESSED = "assessed"
NOT_ASSESSABLE = "not assessable"
GATE_VERSION = 1
SHARPNESS_SIDE = 256  # the longer side at which sharpness is measured: the same figure at any upload size
# Pillow modes without colour: a greyscale photograph cannot show dermoscopy's colours.
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


class Typicality(BaseModel):
    """How far an image's features lie from the training images'. ``mahalanobis``: the
    Mahalanobis distance in the ``components`` (principal axes of the standardised training
    features), each divided by its standard deviation ``scales``. ``residual``: the length of
    what the components leave unexplained (the distance from their subspace): 1,280 ImageNet
    features of a cat's crop can project inside the lesions' first axes yet lie far off them.
    Above ``threshold`` (fitted on the training images' own figures) the image is not
    dermoscopic, or not like any the model learnt from."""

    model_config = ConfigDict(extra="forbid")

    names: list[str]  # the feature columns, in ``morphology.features`` order (or ``image_feature_names``)
    center: list[float]  # the training features' mean
    spread: list[float]  # and standard deviation (standardisation)
    components: list[list[float]]  # principal axes of the standardised features
    scales: list[float]  # the standard deviation along each axis
    threshold: float = Field(gt=0)
    fitted_on: str = ""  # what the figures were fitted on, for the card
    measure: Literal["mahalanobis", "residual"] = "mahalanobis"

    def distance(self, table: np.ndarray, names: list[str]) -> np.ndarray:
        """float [N] distances of a feature table whose columns are ``names``."""
        position = {name: i for i, name in enumerate(names)}
        columns = [position[name] for name in self.names if name in position]
        if len(columns) != len(self.names):  # another feature version: no figure rather than a wrong one
            return np.full(len(table), np.nan)
        standard = (np.asarray(table, np.float64)[:, columns] - np.asarray(self.center)) / np.asarray(self.spread)
        standard, components = np.nan_to_num(standard), np.asarray(self.components)
        if self.measure == "residual":
            return np.linalg.norm(standard - (standard @ components.T) @ components, axis=1)
        projected = standard @ components.T / np.asarray(self.scales)
        return np.sqrt((projected**2).sum(axis=1))


class Gate(BaseModel):
    """The gate's thresholds (defaults measured on the dev images: docs/results/input-gate.md)."""

    model_config = ConfigDict(extra="forbid")

    version: int = GATE_VERSION
    blank_std: float = Field(
        4.0, ge=0, description="grey-level standard deviation (0-255) below which an image is blank"
    )
    saturated_share: float = Field(0.6, gt=0, le=1, description="share of clipped pixels above which it is saturated")
    sharpness: float = Field(3.0, ge=0, description="variance of the Laplacian below which it is out of focus")
    lesion_min_share: float = Field(0.002, ge=0, lt=1, description="mask share below which no lesion is found")
    lesion_max_share: float = Field(0.95, gt=0, le=1, description="mask share above which the lesion fills the frame")
    typicality: Typicality | None = None  # on the lesion features
    image_typicality: Typicality | None = None  # on the stage-2 CNN's pooled ImageNet features

    def shown(self) -> dict[str, Any]:
        """The thresholds as the model card shows them (the typicalities' thresholds and what they
        were fitted on, not their arrays)."""
        shown = self.model_dump(exclude={"typicality", "image_typicality"})
        if self.typicality is not None:
            shown["not_dermoscopic_distance"] = self.typicality.threshold
            shown["fitted_on"] = self.typicality.fitted_on
        if self.image_typicality is not None:
            shown["not_dermoscopic_image_distance"] = self.image_typicality.threshold
            shown["image_fitted_on"] = self.image_typicality.fitted_on
        return shown


def image_feature_names(count: int) -> list[str]:
    """The column names of a CNN's pooled features (``MelanomaModel.image_features``)."""
    return [f"cnn_{i}" for i in range(count)]


@dataclass
class Assessment:
    """Whether an image is assessed, why not (sentences a clinician reads, and their codes),
    and warnings that do not stop the answer (a colour space converted)."""

    status: str = ASSESSED
    reasons: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    figures: dict[str, float | None] = field(default_factory=dict)

    @property
    def assessed(self) -> bool:
        """True when the model's answer may be read."""
        return self.status == ASSESSED


def sharpness(image: np.ndarray) -> float:
    """The variance of the Laplacian of the grey image at ``SHARPNESS_SIDE`` (its longer side)."""
    grey = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    scale = SHARPNESS_SIDE / max(grey.shape)
    if scale != 1:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def assess(
    gate: Gate,
    image: np.ndarray,
    mask: np.ndarray,
    *,
    mode: str = "RGB",
    damage: str | None = None,
    typicality: float | None = None,
    image_typicality: float | None = None,
) -> Assessment:
    """The gate's answer for an image (RGB uint8 at the working size) and its lesion mask there.

    Args:
        gate: the thresholds.
        image: the image at the working size.
        mask: the segmenter's lesion mask on it.
        mode: the file's Pillow mode (greyscale modes are refused, others converted and said so).
        damage: what the decoder reported of a damaged file, or None.
        typicality: the image's distance from the training images (``Typicality``), or None.
        image_typicality: the same on the CNN's pooled features (``Gate.image_typicality``), or None.
    """
    result = Assessment()

    def refuse(code: str, reason: str) -> None:
        result.codes.append(code)
        result.reasons.append(reason)

    if damage:
        refuse("damaged", f"the file is damaged: the decoder reported '{damage}'")
    pixels = np.asarray(image, dtype=np.float64)
    colour = float(np.abs(pixels - pixels.mean(axis=2, keepdims=True)).mean())
    if mode in GREY_MODES or colour < 1.0:
        refuse("greyscale", "a greyscale image: dermoscopy's colours cannot be read")
    elif mode not in ("RGB", "YCbCr"):
        result.warnings.append(f"colour converted from {mode} to RGB")
    contrast = float(pixels.mean(axis=2).std())
    clipped = float(((pixels >= 250).all(axis=2) | (pixels <= 5).all(axis=2)).mean())
    focus = sharpness(image)
    share = float(np.asarray(mask, bool).mean()) if np.asarray(mask).size else 0.0
    result.figures = {"contrast": contrast, "clipped_share": clipped, "sharpness": focus, "lesion_share": share,
                      "typicality": typicality, "image_typicality": image_typicality}  # fmt: skip
    if contrast < gate.blank_std:
        refuse("blank", f"a blank or uniform image (contrast {contrast:.1f} < {gate.blank_std:g})")
    elif clipped > gate.saturated_share:
        refuse("saturated", f"a saturated image ({100 * clipped:.0f} % of pixels clipped)")
    elif focus < gate.sharpness:
        refuse("out of focus", f"out of focus (sharpness {focus:.1f} < {gate.sharpness:g})")
    if share < gate.lesion_min_share:
        refuse("no lesion", "no lesion found by the segmenter")
    elif share > gate.lesion_max_share:
        refuse(
            "fills the frame", f"the lesion fills the frame ({100 * share:.0f} % of the image): its border is not seen"
        )
    far = [
        f"{what} distance {distance:.1f} > {figure.threshold:.1f}"
        for what, distance, figure in (("lesion features'", typicality, gate.typicality),
                                       ("image features'", image_typicality, gate.image_typicality))
        if distance is not None and figure is not None and distance > figure.threshold
    ]  # fmt: skip
    if far:
        refuse("not dermoscopic", f"not like the dermoscopic images the model learnt from ({' and '.join(far)})")
    if result.reasons:
        result.status = NOT_ASSESSABLE
    return result
