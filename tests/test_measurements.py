"""Lesion measurements on shapes with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from srcrn.morphology.measurements import DERMOSCOPIC_COLOURS, measure_lesion

Y, X = np.mgrid[:400, :400]
DISC = (X - 200) ** 2 + (Y - 200) ** 2 <= 100**2
SQUARE = (abs(X - 200) < 100) & (abs(Y - 200) < 100)
ELLIPSE = ((X - 200) / 150) ** 2 + ((Y - 200) / 60) ** 2 <= 1
TRIANGLE = (Y >= 100) & (Y < 300) & (X >= 100) & (X < 100 + (Y - 100))  # right triangle


def test_a_disc_is_symmetric_and_compact():
    m = measure_lesion(DISC)
    assert m.asymmetry_major_axis == pytest.approx(0, abs=0.01) and m.asymmetry_minor_axis == pytest.approx(0, abs=0.01)
    assert m.compactness == pytest.approx(1.0, abs=0.02)
    assert m.longest_diameter_pixels == pytest.approx(201, abs=1)
    assert m.area_pixels == pytest.approx(math.pi * 100**2, rel=0.01)
    assert not m.empty_mask and not m.touches_border


def test_a_squares_compactness_is_four_over_pi():
    m = measure_lesion(SQUARE)
    assert m.compactness == pytest.approx(4 / math.pi, rel=0.01)
    assert m.longest_diameter_pixels == pytest.approx(199 * math.sqrt(2) + 1, abs=1.5)  # the diagonal


def test_an_ellipse_matches_ramanujans_perimeter():
    a, b = 150, 60
    perimeter = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))
    assert measure_lesion(ELLIPSE).compactness == pytest.approx(
        perimeter**2 / (4 * math.pi * math.pi * a * b), rel=0.02
    )


def test_a_right_triangle_is_asymmetric_about_its_principal_axes():
    m = measure_lesion(TRIANGLE)
    assert max(m.asymmetry_major_axis, m.asymmetry_minor_axis) > 0.2


def test_scale_converts_to_original_pixels():
    small, scaled = measure_lesion(DISC), measure_lesion(DISC, scale=4.0)
    assert scaled.area_pixels == pytest.approx(16 * small.area_pixels)
    assert scaled.longest_diameter_pixels == pytest.approx(4 * small.longest_diameter_pixels)
    assert scaled.area_fraction == small.area_fraction


def test_empty_and_border_flags():
    assert measure_lesion(np.zeros((50, 50), bool)).empty_mask
    edge = np.zeros((50, 50), bool)
    edge[:10, 20:30] = True
    assert measure_lesion(edge).touches_border


def test_colour_count_of_a_two_colour_lesion():
    image = np.zeros((400, 400, 3), np.uint8)
    image[X < 200] = DERMOSCOPIC_COLOURS["dark_brown"]
    image[X >= 200] = DERMOSCOPIC_COLOURS["blue_grey"]
    m = measure_lesion(DISC, image)
    assert m.colour_count == 2 and m.colours == "dark_brown blue_grey"


# ---------------------------------------------------------------- millimetres, one region, ABCD

SKIN, PIGMENT = (200, 160, 140), (90, 55, 35)


def _painted(mask: np.ndarray, blur: float = 0.0) -> np.ndarray:
    """Skin with ``mask`` in dark brown; ``blur`` (pixels, Gaussian sigma) fades the border."""
    import cv2

    weight = mask.astype(float)
    if blur:
        weight = cv2.GaussianBlur(weight, (0, 0), blur)
    image = np.array(SKIN, float) * (1 - weight[..., None]) + np.array(PIGMENT, float) * weight[..., None]
    return image.round().astype(np.uint8)


@pytest.mark.parametrize(("radius_px", "mm_per_pixel"), [(100, 0.02), (50, 0.1), (150, 0.01)])
def test_a_disc_of_known_size_at_a_known_scale_measures_in_millimetres(radius_px, mm_per_pixel):
    disc = (X - 200) ** 2 + (Y - 200) ** 2 <= radius_px**2
    m = measure_lesion(disc, mm_per_pixel=mm_per_pixel)
    diameter_mm = (2 * radius_px + 1) * mm_per_pixel
    assert m.longest_diameter_mm == pytest.approx(diameter_mm, rel=0.01)
    assert m.area_mm2 == pytest.approx(math.pi * (radius_px * mm_per_pixel) ** 2, rel=0.02)
    assert m.mm_per_pixel == mm_per_pixel and not m.warnings


def test_measured_at_a_working_size_the_millimetres_are_the_originals():
    # The pipeline measures a half-size mask (scale 2 to the original pixels): same millimetres.
    small = ((X[::2, ::2] - 200) ** 2 + (Y[::2, ::2] - 200) ** 2) <= 100**2
    m = measure_lesion(small, scale=2.0, mm_per_pixel=0.05)
    assert m.longest_diameter_mm == pytest.approx(201 * 0.05, rel=0.02)
    assert m.area_mm2 == pytest.approx(math.pi * 5.0**2, rel=0.02)


def test_without_a_scale_the_output_says_so():
    m = measure_lesion(DISC)
    assert m.area_mm2 is None and m.longest_diameter_mm is None
    assert m.warnings == ["no scale: lengths in pixels only (give the image's mm per pixel for millimetres)"]


def test_every_measurement_describes_the_largest_region_with_its_holes_filled():
    ring_with_hole = DISC & ~((X - 200) ** 2 + (Y - 200) ** 2 <= 30**2)
    specks = np.zeros_like(DISC)
    specks[10:14, 10:14] = specks[380:384, 20:24] = True  # two 16-pixel fragments
    m = measure_lesion(ring_with_hole | specks, mm_per_pixel=0.1)
    whole = measure_lesion(DISC, mm_per_pixel=0.1)
    assert m.area_pixels == whole.area_pixels and m.longest_diameter_pixels == whole.longest_diameter_pixels
    assert m.asymmetry_major_axis == whole.asymmetry_major_axis  # not pulled by the far specks
    assert m.fragments == 3 and m.fragment_share == pytest.approx(32 / (ring_with_hole.sum() + 32))
    assert m.warnings[0].startswith("the mask is in 3 pieces: measured on the largest")


@pytest.mark.parametrize(
    ("shape", "axes"),
    [
        (DISC, 0),
        (ELLIPSE, 0),
        (SQUARE, 0),
        ((Y >= 100) & (Y < 300) & (abs(X - 200) < (Y - 100) / 2), 1),  # isosceles: symmetric about its height
        ((Y >= 100) & (Y < 300) & (X >= 100) & (X < 100 + (Y - 100) / 2), 2),  # legs 2:1, right angle
    ],
    ids=["disc", "ellipse", "square", "isosceles", "scalene"],
)
def test_the_abcd_asymmetry_counts_the_asymmetric_axes(shape, axes):
    m = measure_lesion(shape, _painted(shape))
    assert m.abcd_asymmetry == axes, (m.asymmetry_major_axis, m.asymmetry_minor_axis)


def test_the_abcd_border_counts_the_segments_that_end_abruptly():
    assert measure_lesion(DISC, _painted(DISC)).abcd_border == 8  # a cut-out: abrupt all round
    assert measure_lesion(DISC, _painted(DISC, blur=25)).abcd_border == 0  # pigment fading into skin
    half = _painted(DISC)
    half[:, :200] = _painted(DISC, blur=25)[:, :200]  # sharp on the right, faded on the left
    assert measure_lesion(DISC, half).abcd_border == 4


def test_the_partial_dermoscopy_score_weighs_a_b_c_as_stolz():
    image = _painted(DISC)
    m = measure_lesion(DISC, image)
    assert m.abcd_colours == m.colour_count == 1 and m.colours == "dark_brown"
    assert m.abcd_partial_score == pytest.approx(1.3 * m.abcd_asymmetry + 0.1 * m.abcd_border + 0.5 * 1)
