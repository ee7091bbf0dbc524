"""Lesion measurements on shapes with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from srcrn.inference.measurements import DERMOSCOPIC_COLOURS, measure_lesion

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
