"""Lesion measurements from a mask (and the image, for colour): what a clinician reads off
a lesion (the ABCD rule's asymmetry, border, colour and diameter), made explicit.

All lengths are in pixels of the image the mask belongs to; callers scale them when the mask
was measured at another resolution. These are descriptive numbers for review, not a diagnosis.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

# Reference colours of the ABCD rule (white, red, light brown, dark brown, blue-grey, black),
# in RGB. A lesion "shows" a colour when at least COLOUR_SHARE of its pixels are nearest to it.
DERMOSCOPIC_COLOURS = {
    "white": (230, 225, 225),
    "red": (190, 60, 60),
    "light_brown": (190, 130, 90),
    "dark_brown": (110, 65, 40),
    "blue_grey": (110, 120, 145),
    "black": (35, 30, 30),
}
COLOUR_SHARE = 0.05


@dataclass
class LesionMeasurements:
    area_pixels: float
    area_fraction: float
    asymmetry_major_axis: float
    asymmetry_minor_axis: float
    compactness: float
    longest_diameter_pixels: float
    colour_count: int
    colours: str
    empty_mask: bool
    touches_border: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _largest_contour(mask: np.ndarray):
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return max(contours, key=cv2.contourArea) if contours else None


def asymmetry(mask: np.ndarray) -> tuple[float, float]:
    """Share of lesion pixels whose mirror image, across the major (then the minor) principal
    axis through the centroid, falls outside the lesion: 0 for a shape symmetric about it."""
    rows, columns = np.nonzero(mask)
    if rows.size < 3:
        return 0.0, 0.0
    points = np.stack([columns, rows], axis=1).astype(float)
    centre = points.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov((points - centre).T))
    major, minor = eigenvectors[:, np.argmax(eigenvalues)], eigenvectors[:, np.argmin(eigenvalues)]
    height, width = mask.shape
    result = []
    for axis in (major, minor):
        # Reflection across the line through ``centre`` along ``axis``: p' = c + R (p - c).
        reflection = 2 * np.outer(axis, axis) - np.eye(2)
        mirrored = np.rint((points - centre) @ reflection.T + centre).astype(int)
        inside = (mirrored[:, 0] >= 0) & (mirrored[:, 0] < width) & (mirrored[:, 1] >= 0) & (mirrored[:, 1] < height)
        hit = np.zeros(len(points), bool)
        hit[inside] = mask[mirrored[inside, 1], mirrored[inside, 0]]
        result.append(float(1.0 - hit.mean()))
    return result[0], result[1]


def compactness(mask: np.ndarray) -> float:
    """Perimeter^2 / (4 pi area) of the largest region: 1 for a disc, 4/pi for a square,
    larger for ragged borders."""
    contour = _largest_contour(mask)
    if contour is None or len(contour) < 3:
        return float("nan")
    # A pixel staircase is longer than the border it approximates (a disc would score 1.12):
    # simplify it to within one pixel first. The area is the one the traced contour encloses,
    # so perimeter and area refer to the same curve. Disc 1.00, square 1.27, 5:2 ellipse 1.35.
    area = cv2.contourArea(contour)
    perimeter = cv2.arcLength(cv2.approxPolyDP(contour, 1.0, closed=True), closed=True)
    return float(perimeter**2 / (4 * math.pi * area)) if area > 0 else float("nan")


def longest_diameter(mask: np.ndarray) -> float:
    """The largest distance between two lesion pixels (Feret diameter), via the convex hull."""
    contour = _largest_contour(mask)
    if contour is None:
        return 0.0
    hull = cv2.convexHull(contour).reshape(-1, 2).astype(float)
    if len(hull) < 2:
        return 1.0
    distances = np.sqrt(((hull[:, None, :] - hull[None, :, :]) ** 2).sum(-1))
    return float(distances.max() + 1.0)  # + 1: from pixel edge to pixel edge, not centre to centre


def colour_shares(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Share of the lesion's pixels nearest to each ABCD reference colour (zeros if empty)."""
    pixels = image[mask.astype(bool)].astype(float)
    references = np.array(list(DERMOSCOPIC_COLOURS.values()), dtype=float)
    if len(pixels) == 0:
        return np.zeros(len(references))
    nearest = np.argmin(((pixels[:, None, :] - references[None]) ** 2).sum(-1), axis=1)
    return np.bincount(nearest, minlength=len(references)) / len(pixels)


def colours_present(image: np.ndarray, mask: np.ndarray) -> list[str]:
    """The ABCD reference colours that at least COLOUR_SHARE of the lesion's pixels are nearest to."""
    if not mask.any():
        return []
    return [name for name, share in zip(DERMOSCOPIC_COLOURS, colour_shares(image, mask)) if share >= COLOUR_SHARE]


def measure_lesion(mask: np.ndarray, image: np.ndarray | None = None, scale: float = 1.0) -> LesionMeasurements:
    """Measurements of the boolean ``mask`` (and colours of ``image``, same size). ``scale``
    converts this mask's pixels to the original image's (lengths x scale, areas x scale^2)."""
    mask = mask.astype(bool)
    area = float(mask.sum())
    if area == 0:
        return LesionMeasurements(0.0, 0.0, 0.0, 0.0, float("nan"), 0.0, 0, "", True, False)
    major, minor = asymmetry(mask)
    touches = bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
    colours = colours_present(image, mask) if image is not None else []
    return LesionMeasurements(
        area_pixels=area * scale**2,
        area_fraction=area / mask.size,
        asymmetry_major_axis=major,
        asymmetry_minor_axis=minor,
        compactness=compactness(mask),
        longest_diameter_pixels=longest_diameter(mask) * scale,
        colour_count=len(colours),
        colours=" ".join(colours),
        empty_mask=False,
        touches_border=touches,
    )
