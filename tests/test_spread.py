"""Each answer's spread (issue 33, item 3): P(melanoma) also with the lesion turned by -15 and +15
degrees, in every output; the follow-up view calls a change within the spreads no change."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import run_cli

SAMPLE = Path(__file__).parents[1] / "src" / "srcrn" / "sample" / "images"


@pytest.fixture(scope="module")
def pipeline():
    from srcrn import Pipeline

    return Pipeline.default()


def test_turning_is_a_rotation_about_the_centre_that_adds_no_lesion():
    from srcrn.inference.steps import rotated

    images = np.random.default_rng(0).integers(0, 256, (2, 33, 33, 3), dtype=np.uint8)
    assert np.array_equal(rotated(images, 0), images)
    assert np.array_equal(rotated(images, 90), np.rot90(images, 1, axes=(1, 2)))  # counter-clockwise
    masks = np.zeros((1, 33, 33), bool)
    masks[0, :, :4] = True  # a band at the left edge
    turned = rotated(masks, 45, mask=True)
    assert turned.dtype == bool and 0 < turned.sum() < masks.sum()  # corners come in empty, not mirrored


def test_every_answer_has_its_spread_around_it_in_every_output(tmp_path, pipeline):
    images = sorted(SAMPLE.glob("*.jpg"))[:3]
    results = pipeline.predict_many(images)
    for result in results:
        low, high = result.spread
        assert low <= result.probability <= high and high - low < 0.5
        assert result.to_dict()["probability_spread"] == [low, high]
    # The spread is the answers of the turned lesions: without angles there is none.
    from srcrn.inference.pipeline import SPREAD_ANGLES

    pipeline.spread_angles = ()
    try:
        assert pipeline.predict(images[0]).spread is None
    finally:
        pipeline.spread_angles = SPREAD_ANGLES
    run_cli("predict", *map(str, images), "--out", str(tmp_path / "out"), "--no-overlays", "--no-progress")
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert (table["spread_low"] <= table["melanoma"]).all() and (table["melanoma"] <= table["spread_high"]).all()
    assert table["spread_low"].tolist() == pytest.approx([r.spread[0] for r in results], abs=1e-9)
    run_cli("predict", str(images[0]), "--out", str(tmp_path / "fast"), "--no-spread", "--no-progress")
    record = json.loads((tmp_path / "fast" / "predictions.json").read_text())["predictions"][0]
    assert record["spread_low"] is None and record["spread_high"] is None


def test_a_change_within_the_spreads_is_no_measurable_change(pipeline):
    image = sorted(SAMPLE.glob("*.jpg"))[0]
    comparison = pipeline.compare(image, image)
    assert comparison.probability_change == pytest.approx(0.0, abs=1e-9)
    assert comparison.probability_change_measurable is False
    assert comparison.to_dict()["probability_change_measurable"] is False
    _, high = comparison.spread_before
    apart = dataclasses.replace(comparison, probability_after=high + 0.2, spread_after=(high + 0.1, high + 0.3))
    assert apart.probability_change_measurable is True
    unmeasured = dataclasses.replace(comparison, measured=False)
    assert unmeasured.probability_change_measurable is None
    assert "no measurable change" in _pdf_text(comparison.report_pdf())


def _pdf_text(pdf: bytes) -> str:
    import shutil
    import subprocess

    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext not installed (Debian's poppler-utils)")
    return subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()


def test_the_answer_is_the_mean_of_the_lesion_read_as_given_and_turned(pipeline):
    """Issue 33: averaged over the turns the spread reads anyway, the answer moves less with the
    photo's orientation. Read with one turn at a time, the three readings give the answer and its spread."""
    from srcrn.inference.pipeline import SPREAD_ANGLES

    image = sorted(SAMPLE.glob("*.jpg"))[1]
    answers = {}
    try:
        for angles in ((), (-15.0,), (15.0,), (-15.0, 15.0)):
            pipeline.spread_angles = angles
            answers[angles] = pipeline.predict(image)
    finally:
        pipeline.spread_angles = SPREAD_ANGLES
    given = answers[()].probability
    minus, plus = 2 * answers[(-15.0,)].probability - given, 2 * answers[(15.0,)].probability - given
    both = answers[(-15.0, 15.0)]
    assert both.probability == pytest.approx((given + minus + plus) / 3, abs=1e-9)
    assert both.spread == pytest.approx((min(given, minus, plus), max(given, minus, plus)), abs=1e-9)
    assert abs(minus - given) > 1e-4  # a turn does change the reading: the mean is not the answer as given
