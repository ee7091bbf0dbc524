"""Follow-up: two visits of one lesion compared (the "E", evolving, of ABCDE).

1. Registration, AFTER onto BEFORE: a similarity transform (rotation, scale, shift; and a
   mirror image tried too, for a flipped photo) from ORB keypoints of the whole image (skin,
   hairs, the dermoscope's field: not only the lesion, whose growth must not be absorbed into
   the scale), RANSAC over the matches (OpenCV's ``estimateAffinePartial2D``). Measured on
   known transformations of the dev images (docs/results/compare.md): same-lesion pairs keep
   0.8-0.99 of their matches as inliers, other lesions under 0.15.
2. The registration is judged: too few inliers, too small an inlier share, a scale change
   beyond the plausible or a poor correlation of the registered images make it unreliable, and
   then no change figure is reported as if measured.
3. Changes: area and longest diameter (%, and mm when both images have a scale), the ABCD
   components, colours that appeared or vanished, the melanoma probability; a picture with
   both contours in the BEFORE frame and a change map (grown, shrunk, colour changed).

torch-free: it works on two ``PipelineResult``s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from srcrn.bundle.card import ModelCard
from srcrn.morphology.measurements import lesion_region, nearest_colours

if TYPE_CHECKING:
    from srcrn.answers.results import PipelineResult

KEYPOINTS = 3000
RANSAC_PIXELS = 3.0  # reprojection error of an inlier, in working-image pixels
MIN_INLIERS = 20
MIN_INLIER_SHARE = 0.3
SCALE_RANGE = (0.5, 2.0)  # between two dermoscopic photos of one lesion
MIN_CORRELATION = 0.5  # of the registered grey images where both exist
GROWN, SHRUNK, RECOLOURED = (40, 200, 60), (220, 50, 50), (240, 200, 0)


@dataclass
class Registration:
    """AFTER's working image onto BEFORE's: ``matrix`` (2x3) maps AFTER pixels to BEFORE pixels
    (after a horizontal mirror of AFTER when ``mirrored``)."""

    matrix: np.ndarray = field(repr=False)
    rotation_degrees: float
    scale: float  # BEFORE working pixels per AFTER working pixel
    mirrored: bool
    inliers: int
    matches: int
    correlation: float
    reliable: bool
    problems: list[str]

    @property
    def inlier_share(self) -> float:
        """The share of matched keypoints that agree with the transform (0 without matches)."""
        return self.inliers / self.matches if self.matches else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The registration as JSON-ready values (the matrix as nested lists)."""
        values = asdict(self) | {"inlier_share": self.inlier_share}
        values["matrix"] = self.matrix.tolist()
        return values


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _estimate(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray | None, int, int]:
    orb = cv2.ORB_create(KEYPOINTS, fastThreshold=5)  # type: ignore[attr-defined]
    kb, db = orb.detectAndCompute(before, None)
    ka, da = orb.detectAndCompute(after, None)
    if db is None or da is None:
        return None, 0, 0
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(da, db)
    if len(matches) < 3:
        return None, 0, len(matches)
    source = np.array([ka[m.queryIdx].pt for m in matches], dtype=np.float32)
    target = np.array([kb[m.trainIdx].pt for m in matches], dtype=np.float32)
    matrix, inliers = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PIXELS
    )
    return matrix, int(inliers.sum()) if inliers is not None else 0, len(matches)


def _correlation(before: np.ndarray, warped: np.ndarray, valid: np.ndarray) -> float:
    a, b = before[valid].astype(float), warped[valid].astype(float)
    if a.size < 100 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def register(before: np.ndarray, after: np.ndarray) -> Registration:
    """AFTER (RGB) onto BEFORE (RGB): the better of AFTER and its mirror image, judged."""
    grey_before = _grey(before)
    height, width = grey_before.shape
    best = None
    for mirrored in (False, True):
        grey_after = _grey(after[:, ::-1] if mirrored else after)
        matrix, inliers, matches = _estimate(grey_before, grey_after)
        if best is None or inliers > best[1]:
            best = (matrix, inliers, matches, mirrored, grey_after)
    assert best is not None
    matrix, inliers, matches, mirrored, grey_after = best
    problems = []
    if matrix is None:
        matrix = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        problems.append("no transformation found between the images")
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    rotation = float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))
    warped = cv2.warpAffine(grey_after, matrix, (width, height))
    valid = cv2.warpAffine(np.ones_like(grey_after), matrix, (width, height)) > 0
    correlation = _correlation(grey_before, warped, valid)
    if inliers < MIN_INLIERS or (matches and inliers / matches < MIN_INLIER_SHARE):
        problems.append(f"too few matching points ({inliers} of {matches}): a different lesion, or images too unlike")
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        problems.append(f"implausible scale change x{scale:.2f}")
    if correlation < MIN_CORRELATION:
        problems.append(f"the registered images correlate poorly ({correlation:.2f})")
    return Registration(matrix, rotation, scale, mirrored, inliers, matches, correlation, not problems, problems)


COLOUR_BLUR = 2.0  # px (sigma): colours compared over small patches, not pixel by pixel
COLOUR_SPECK = 5  # px: recoloured patches smaller than this (interpolation noise) are not shown


def _colour_changed(before: np.ndarray, after: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Where in ``region`` the nearest ABCD reference colour differs between the two slightly
    blurred images (a registration's resampling shifts single pixels' colours); only the
    region's pixels are classified."""
    changed = np.zeros(region.shape, bool)
    labels = [nearest_colours(cv2.GaussianBlur(image, (0, 0), COLOUR_BLUR)[region]) for image in (before, after)]
    changed[region] = labels[0] != labels[1]
    return changed


def _percent(after: float, before: float) -> float | None:
    return 100.0 * (after - before) / before if before > 0 else None


@dataclass
class Comparison:
    """What changed from BEFORE to AFTER; change figures are None when the registration is
    unreliable (``registration.problems`` says why)."""

    before_id: str
    after_id: str
    registration: Registration
    area_change_percent: float | None
    diameter_change_percent: float | None
    area_change_mm2: float | None
    diameter_change_mm: float | None
    asymmetry_change: int | None  # ABCD components, AFTER - BEFORE
    border_change: int | None
    colours_change: int | None
    colours_appeared: list[str]
    colours_vanished: list[str]
    probability_before: float
    probability_after: float
    spread_before: tuple[float, float] | None  # each visit's P(melanoma) spread under rotation
    spread_after: tuple[float, float] | None
    grown_share: float | None  # of BEFORE's lesion area: new lesion pixels, in the registered frame
    shrunk_share: float | None
    recoloured_share: float | None  # of BEFORE's lesion area: another ABCD colour in the same place
    warnings: list[str]
    picture: np.ndarray = field(repr=False)  # RGB: BEFORE with both contours | change map

    card: ModelCard | None = field(default=None, repr=False)  # the model card of the pipeline that answered
    # False where the registration is unreliable (or a visit has no lesion): no change is given at
    # all, the probability's included; the picture shows the two visits side by side instead.
    measured: bool = True

    def report_pdf(self) -> bytes:
        """A one-page PDF of this comparison (``inference.report.comparison_pdf``)."""
        from srcrn.answers.pdf import comparison_pdf

        return comparison_pdf(self, self.card)

    @property
    def probability_change(self) -> float | None:
        """P(melanoma) after minus before; None where the visits could not be compared."""
        return self.probability_after - self.probability_before if self.measured else None

    @property
    def probability_change_measurable(self) -> bool | None:
        """Whether the change of P(melanoma) is more than the answers' own uncertainty: the two
        visits' spreads under rotation do not overlap. None where the visits were not compared
        (or a spread is unknown)."""
        if not self.measured or self.spread_before is None or self.spread_after is None:
            return None
        (low_b, high_b), (low_a, high_a) = self.spread_before, self.spread_after
        return low_a > high_b or high_a < low_b

    def to_dict(self) -> dict[str, Any]:
        """The comparison's numbers as JSON-ready values (no pictures)."""
        values = {k: v for k, v in asdict(self).items() if k not in ("picture", "registration", "card")}
        return values | {
            "registration": self.registration.to_dict(),
            "probability_change": self.probability_change,
            "probability_change_measurable": self.probability_change_measurable,
        }


def compare(before: PipelineResult, after: PipelineResult) -> Comparison:
    """BEFORE and AFTER (two answers of one pipeline, for two visits of one lesion) compared."""
    registration = register(before.working_image, after.working_image)
    height, width = before.working_mask.shape
    after_image = after.working_image[:, ::-1] if registration.mirrored else after.working_image
    after_mask = after.working_mask[:, ::-1] if registration.mirrored else after.working_mask
    warped_image = cv2.warpAffine(np.ascontiguousarray(after_image), registration.matrix, (width, height))
    warped_mask = (
        cv2.warpAffine(np.ascontiguousarray(after_mask).astype(np.uint8), registration.matrix, (width, height),
                       flags=cv2.INTER_NEAREST) > 0
    )  # fmt: skip
    region_before, _, _ = lesion_region(before.working_mask)
    region_after, _, _ = lesion_region(warped_mask)
    mb, ma = before.measurements, after.measurements
    # Original pixels of AFTER in original pixels of BEFORE: via both working sizes and the registration.
    before_factor = before.width / before.working_image.shape[1]
    after_factor = after.width / after.working_image.shape[1]
    scale = registration.scale * before_factor / after_factor
    warnings = list(registration.problems)
    if mb.empty_mask or ma.empty_mask:
        warnings.append("no lesion found in " + ("BEFORE" if mb.empty_mask else "AFTER"))
    measured = registration.reliable and not (mb.empty_mask or ma.empty_mask)
    colours_before, colours_after = set(mb.colours.split()), set(ma.colours.split())
    grown = region_after & ~region_before
    shrunk = region_before & ~region_after
    recoloured = np.zeros_like(grown)
    if measured:
        both = region_before & region_after
        changed = _colour_changed(before.working_image, warped_image, both)
        speck = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (COLOUR_SPECK, COLOUR_SPECK))
        recoloured = cv2.morphologyEx(changed.astype(np.uint8), cv2.MORPH_OPEN, speck) > 0
    picture = (
        _picture(before.working_image, region_before, region_after, grown, shrunk, recoloured, measured)
        if measured
        else _side_by_side(before.working_image, before.working_mask, after.working_image, after.working_mask)
    )
    both_scaled = mb.area_mm2 is not None and ma.area_mm2 is not None
    return Comparison(
        before_id=before.image_id,
        after_id=after.image_id,
        registration=registration,
        area_change_percent=_percent(ma.area_pixels * scale**2, mb.area_pixels) if measured else None,
        diameter_change_percent=(
            _percent(ma.longest_diameter_pixels * scale, mb.longest_diameter_pixels) if measured else None
        ),
        area_change_mm2=ma.area_mm2 - mb.area_mm2 if measured and both_scaled else None,  # type: ignore[operator]
        diameter_change_mm=(
            ma.longest_diameter_mm - mb.longest_diameter_mm if measured and both_scaled else None  # type: ignore[operator]
        ),
        asymmetry_change=ma.abcd_asymmetry - mb.abcd_asymmetry if measured else None,
        border_change=(
            ma.abcd_border - mb.abcd_border
            if measured and ma.abcd_border is not None and mb.abcd_border is not None
            else None
        ),
        colours_change=ma.abcd_colours - mb.abcd_colours if measured else None,
        colours_appeared=sorted(colours_after - colours_before) if measured else [],
        colours_vanished=sorted(colours_before - colours_after) if measured else [],
        probability_before=before.probability,
        probability_after=after.probability,
        spread_before=before.spread,
        spread_after=after.spread,
        grown_share=float(grown.sum() / max(1, region_before.sum())) if measured else None,
        shrunk_share=float(shrunk.sum() / max(1, region_before.sum())) if measured else None,
        recoloured_share=float(recoloured.sum() / max(1, region_before.sum())) if measured else None,
        warnings=warnings,
        picture=picture,
        card=before.card,
        measured=measured,
    )


def _side_by_side(before: np.ndarray, before_mask: np.ndarray, after: np.ndarray, after_mask: np.ndarray) -> np.ndarray:
    """The two visits as they are, each with its own contour (no warped contour, no change map):
    what an unreliable registration leaves to the clinician's eye."""
    height = before.shape[0]
    panels = []
    for image, mask in ((before, before_mask), (after, after_mask)):
        scale = height / image.shape[0]
        size = (max(1, round(image.shape[1] * scale)), height)
        image = np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(image, contours, -1, (0, 255, 255), max(1, round(image.shape[1] / 320)))
        panels.append(image)
    gap = np.full((height, 8, 3), 255, np.uint8)
    return np.concatenate([panels[0], gap, panels[1]], axis=1)


def _picture(
    image: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    grown: np.ndarray,
    shrunk: np.ndarray,
    recoloured: np.ndarray,
    measured: bool,
) -> np.ndarray:
    """BEFORE with its contour (cyan) and AFTER's registered contour (magenta) | the change map."""
    left = np.ascontiguousarray(image.copy())
    for mask, colour in ((before, (0, 255, 255)), (after, (255, 0, 255))):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(left, contours, -1, colour, max(1, round(image.shape[1] / 320)))
    right = (image.astype(float) * 0.35 + 255 * 0.65).astype(np.uint8)  # the image faded under the map
    if measured:
        for mask, colour in ((grown, GROWN), (shrunk, SHRUNK), (recoloured, RECOLOURED)):
            right[mask] = colour
    else:
        cv2.putText(right, "registration unreliable", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (200, 0, 0), 2)
    gap = np.full((image.shape[0], 8, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1)
