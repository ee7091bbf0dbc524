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
# Fitted on data (issue 33): of 0.005-0.15, 0.005 ranks melanomas highest on the ISIC 2017
# training split's predicted masks (AUC 0.582; 0.542 at the 0.05 set by hand before; validation
# 0.562 vs 0.547), experiments/abcd_bc_thresholds.py. The grid's floor: below it a "colour" is a
# few pixels of compression noise or skin at the mask's edge.
COLOUR_SHARE = 0.005


@dataclass
class LesionMeasurements:
    """What ``measure_lesion`` reads off one lesion region (see there). Lengths in pixels of the
    original image; in millimetres too when the image has a scale (None without one)."""

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
    fragments: int = 0  # connected regions in the predicted mask; > 1: in pieces (see fragment_share)
    fragment_share: float = 0.0  # share of the mask's area outside the measured region
    mm_per_pixel: float | None = None  # the image's scale; None: no scale, lengths in pixels only
    area_mm2: float | None = None
    longest_diameter_mm: float | None = None
    # The ABCD rule's components on their own scales (Stolz 1994), as far as an image shows them:
    abcd_asymmetry: int = 0  # 0-2: axes about which the shape is not symmetric
    abcd_border: int | None = None  # 0-8: segments whose pigment ends abruptly (None: no image)
    abcd_colours: int = 0  # 1-6: colours present
    # 1.3 A + 0.1 B + 0.5 C: the total dermoscopy score without D (differential structures, 1-5,
    # weight 0.5), which the clinician adds; a full TDS above 5.45 suggests melanoma.
    abcd_partial_score: float | None = None

    def to_dict(self) -> dict:
        """The measurements as a flat dict (the columns of predictions.csv)."""
        return asdict(self)

    @property
    def warnings(self) -> list[str]:
        """Plain-language cautions a reader needs beside the numbers."""
        notes = []
        if self.fragments > 1:
            notes.append(
                f"the mask is in {self.fragments} pieces: measured on the largest, which holds "
                f"{100 * (1 - self.fragment_share):.0f} % of the masked area"
            )
        if self.touches_border:
            notes.append("the lesion touches the image border: its size and shape may be cut off")
        if self.mm_per_pixel is None and not self.empty_mask:
            notes.append("no scale: lengths in pixels only (give the image's mm per pixel for millimetres)")
        return notes


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


def nearest_colours(pixels: np.ndarray) -> np.ndarray:
    """The index (in ``DERMOSCOPIC_COLOURS``) of the reference colour nearest to each RGB pixel
    of ``pixels`` [N, 3] (the lesion features and measurements, and follow-up's change map)."""
    references = np.array(list(DERMOSCOPIC_COLOURS.values()), dtype=float)
    return ((np.asarray(pixels, dtype=float)[:, None, :] - references[None]) ** 2).sum(-1).argmin(1)


def colour_shares(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Share of the lesion's pixels nearest to each ABCD reference colour (zeros if empty)."""
    pixels = image[mask.astype(bool)]
    if len(pixels) == 0:
        return np.zeros(len(DERMOSCOPIC_COLOURS))
    return np.bincount(nearest_colours(pixels), minlength=len(DERMOSCOPIC_COLOURS)) / len(pixels)


def colours_present(image: np.ndarray, mask: np.ndarray) -> list[str]:
    """The ABCD reference colours that at least COLOUR_SHARE of the lesion's pixels are nearest to."""
    if not mask.any():
        return []
    return [name for name, share in zip(DERMOSCOPIC_COLOURS, colour_shares(image, mask)) if share >= COLOUR_SHARE]


# An axis counts as asymmetric (ABCD "A") when more than this share of the region's pixels has
# no mirror image in the region across it: a disc, an ellipse or a rectangle scores 0 on both
# axes, an isosceles triangle 1 (its height), a crescent 2. A shape-only reading; dermoscopic
# asymmetry also weighs colours and structures. Fitted on data (issue 33): of 0.03-0.15, 0.05
# ranks melanomas highest on the ISIC 2017 training split's predicted masks (AUC 0.674, 0.557 at
# the 0.15 chosen by shape before; validation 0.659), experiments/abcd_thresholds.py.
ASYMMETRY_AXIS = 0.05
BORDER_SEGMENTS = 8
# Border ("B"): a segment's pigment ends abruptly when at least ABRUPT_SHARE of the lightness step
# from lesion to skin happens within a narrow band at the border (BORDER_BAND of the lesion's
# diameter on each side) rather than across a wide one (3x as wide). Fitted on data (issue 33): of
# bands 0.02-0.10 and shares 0.3-0.7, 0.06 and 0.4 rank melanomas highest on the ISIC 2017 training
# split's predicted masks (AUC 0.643; 0.533 at the 0.03 and 0.6 set by hand before; validation
# 0.673 vs 0.584), experiments/abcd_bc_thresholds.py.
BORDER_BAND = 0.06
ABRUPT_SHARE = 0.4


def lesion_region(mask: np.ndarray) -> tuple[np.ndarray, int, float]:
    """The one region every measurement uses: the largest connected component, holes filled;
    with the number of components and the share of the mask's area outside that region."""
    mask = mask.astype(bool)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask, 0, 0.0
    areas = stats[1:, cv2.CC_STAT_AREA]
    largest = labels == 1 + int(np.argmax(areas))
    contours, _ = cv2.findContours(largest.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool), count - 1, float(1 - areas.max() / areas.sum())


def border_steps(image: np.ndarray, region: np.ndarray, band_share: float = BORDER_BAND) -> np.ndarray:
    """float [BORDER_SEGMENTS]: for each angular segment around the centroid, the share of the
    lightness (Lab L) step from lesion to skin across a wide band (3x) that happens within the
    narrow band (``band_share`` of the lesion's diameter on each side of the border); NaN where a
    segment is not judged (it runs off the image, or its skin is not lighter than the lesion)."""
    rows, columns = np.nonzero(region)
    diameter = longest_diameter(region)
    narrow = max(1, round(band_share * diameter))
    lightness = cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_RGB2LAB)[..., 0].astype(float)
    region_u8 = region.astype(np.uint8)
    # Euclidean distance of each pixel to the border, inside and outside (one transform each).
    inside = cv2.distanceTransform(region_u8, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - region_u8, cv2.DIST_L2, 5)

    def band(distance: np.ndarray, offset: int = 0) -> np.ndarray:
        """The strip ``offset`` to ``offset + narrow`` pixels from the border on one side."""
        return (distance > offset) & (distance <= offset + narrow)

    inner_narrow, outer_narrow = band(inside), band(outside)
    inner_wide, outer_wide = band(inside, 2 * narrow), band(outside, 2 * narrow)
    centre_y, centre_x = rows.mean(), columns.mean()

    def segment_means(band_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean lightness of the band's pixels in each angular segment, and their counts: only
        the band's pixels are visited (a thin ring, not the whole image)."""
        ys, xs = np.nonzero(band_mask)
        angle = np.arctan2(ys - centre_y, xs - centre_x)
        segment = ((angle + np.pi) / (2 * np.pi) * BORDER_SEGMENTS).astype(int) % BORDER_SEGMENTS
        counts = np.bincount(segment, minlength=BORDER_SEGMENTS)
        sums = np.bincount(segment, weights=lightness[ys, xs], minlength=BORDER_SEGMENTS)
        return sums / np.maximum(counts, 1), counts

    (inner, n1), (outer, n2), (inner_far, n3), (outer_far, n4) = (
        segment_means(b) for b in (inner_narrow, outer_narrow, inner_wide, outer_wide)
    )
    judged = (n1 > 0) & (n2 > 0) & (n3 > 0) & (n4 > 0)  # a segment running off the image is not judged
    step = outer - inner  # skin is lighter than pigment
    whole = outer_far - inner_far
    judged &= whole > 0
    return np.where(judged, step / np.where(judged, whole, 1.0), np.nan)


def border_score(image: np.ndarray, region: np.ndarray) -> int:
    """ABCD "B": the segments (``border_steps``) where at least ABRUPT_SHARE of the lightness step
    happens within the narrow band: the pigment ends abruptly."""
    steps = border_steps(image, region)
    return int((np.nan_to_num(steps, nan=-1.0) >= ABRUPT_SHARE).sum())


def measure_lesion(
    mask: np.ndarray, image: np.ndarray | None = None, scale: float = 1.0, mm_per_pixel: float | None = None
) -> LesionMeasurements:
    """Measurements of the boolean ``mask`` (and colours and border of ``image``, same size), all
    on one region: its largest connected component with holes filled (``lesion_region``), so
    that area, diameter, shape and colours describe the same lesion; ``fragments`` says how
    many pieces the mask had. ``scale`` converts this mask's pixels to the original image's
    (lengths x scale, areas x scale^2); ``mm_per_pixel`` is the original image's scale."""
    mask = mask.astype(bool)
    if not mask.any():
        return LesionMeasurements(0.0, 0.0, 0.0, 0.0, float("nan"), 0.0, 0, "", True, False, mm_per_pixel=mm_per_pixel)
    region, fragments, fragment_share = lesion_region(mask)
    area = float(region.sum())
    major, minor = asymmetry(region)
    touches = bool(region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any())
    colours = colours_present(image, region) if image is not None else []
    diameter = longest_diameter(region) * scale
    a_score = int(major > ASYMMETRY_AXIS) + int(minor > ASYMMETRY_AXIS)
    b_score = border_score(image, region) if image is not None else None
    c_score = len(colours)
    return LesionMeasurements(
        area_pixels=area * scale**2,
        area_fraction=area / mask.size,
        asymmetry_major_axis=major,
        asymmetry_minor_axis=minor,
        compactness=compactness(region),
        longest_diameter_pixels=diameter,
        colour_count=c_score,
        colours=" ".join(colours),
        empty_mask=False,
        touches_border=touches,
        fragments=fragments,
        fragment_share=fragment_share,
        mm_per_pixel=mm_per_pixel,
        area_mm2=area * scale**2 * mm_per_pixel**2 if mm_per_pixel is not None else None,
        longest_diameter_mm=diameter * mm_per_pixel if mm_per_pixel is not None else None,
        abcd_asymmetry=a_score,
        abcd_border=b_score,
        abcd_colours=c_score,
        abcd_partial_score=1.3 * a_score + 0.1 * b_score + 0.5 * c_score if b_score is not None else None,
    )
