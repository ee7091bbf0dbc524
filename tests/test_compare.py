"""Follow-up comparison on known transformations of real images (no two-visit set is public):
rotation, scale, shift, mirror, white balance, synthetic growth, and a different lesion. The
answers are built from the images' ground-truth masks, so these tests measure the comparison,
not the segmenter (experiments/compare_pairs.py measures both, end to end)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from helpers import run_cli
from srcrn.answers.compare import compare, register
from srcrn.answers.results import PipelineResult
from srcrn.morphology.measurements import measure_lesion
from srcrn.sample import sample_dir

SAMPLE = sample_dir()
IDS = sorted(p.stem for p in (SAMPLE / "images").glob("*.jpg"))


def _load(image_id: str) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(Image.open(SAMPLE / "images" / f"{image_id}.jpg").convert("RGB"))
    mask = np.asarray(Image.open(SAMPLE / "masks" / f"{image_id}_segmentation.png")) > 0
    return image, mask


def _answer(image: np.ndarray, mask: np.ndarray, name: str, mm_per_pixel: float | None = None) -> PipelineResult:
    """What the pipeline would answer had it segmented ``mask`` exactly."""
    height, width = mask.shape
    return PipelineResult(
        image_id=name, source=name, width=width, height=height, probability=0.3, decision="benign", threshold=0.5,
        mask=mask, measurements=measure_lesion(mask, image, mm_per_pixel=mm_per_pixel), working_image=image,
        working_mask=mask,
    )  # fmt: skip


def _transform(image: np.ndarray, mask: np.ndarray, angle: float, scale: float, shift=(0, 0), mirror=False):
    height, width = mask.shape
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
    matrix[:, 2] += shift
    if mirror:
        image, mask = image[:, ::-1], mask[:, ::-1]
    warp = lambda a, flags, border: cv2.warpAffine(np.ascontiguousarray(a), matrix, (width, height), flags=flags,  # noqa: E731
                                                   borderMode=border)  # fmt: skip
    # The image's border is mirrored (a photo has skin beyond its edge); the lesion is not.
    after_mask = warp(mask.astype(np.uint8), cv2.INTER_NEAREST, cv2.BORDER_CONSTANT) > 0
    return warp(image, cv2.INTER_LINEAR, cv2.BORDER_REFLECT), after_mask, matrix


def _grow(image: np.ndarray, mask: np.ndarray, pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """The lesion grown by ``pixels`` all round: new pigment of its own border colour, blended in."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    grown = cv2.dilate(mask.astype(np.uint8), kernel) > 0
    border = mask & ~(cv2.erode(mask.astype(np.uint8), kernel) > 0)
    colour = image[border].mean(axis=0)
    weight = cv2.GaussianBlur(grown.astype(float), (0, 0), 1.0)[..., None] * (grown & ~mask)[..., None]
    painted = image * (1 - weight) + colour * weight
    return painted.round().astype(np.uint8), grown


@pytest.mark.parametrize("image_id", IDS[:6])
@pytest.mark.parametrize(("angle", "scale", "mirror"), [(20, 1.1, False), (-35, 0.9, False), (10, 1.0, True)])
def test_a_rotated_scaled_or_mirrored_visit_is_registered(image_id, angle, scale, mirror):
    image, mask = _load(image_id)
    after, _, matrix = _transform(image, mask, angle, scale, shift=(6, -4), mirror=mirror)
    found = register(image, after)
    assert found.reliable and found.mirrored == mirror, found.problems
    assert found.correlation > 0.9  # the registered images agree
    if mirror:  # the mirror image of a rotation turns the other way
        assert abs(found.rotation_degrees) == pytest.approx(abs(angle), abs=1.0)
        assert found.scale == pytest.approx(1 / scale, rel=0.01)
        return
    # The recovered transform undoes the applied one: their composition is the identity.
    residual = found.matrix[:, :2] @ matrix[:, :2]
    assert np.degrees(np.arctan2(residual[1, 0], residual[0, 0])) == pytest.approx(0, abs=1.0)
    assert np.hypot(*residual[:, 0]) == pytest.approx(1.0, abs=0.01)


def test_a_white_balance_and_brightness_change_keeps_the_registration():
    image, mask = _load(IDS[7])
    after, _, _ = _transform(image, mask, 15, 1.05)
    after = np.clip(after * np.array([1.15, 1.0, 0.85]) + 12, 0, 255).astype(np.uint8)
    comparison = compare(_answer(image, mask, "before"), _answer(after, _transform(image, mask, 15, 1.05)[1], "after"))
    assert comparison.registration.reliable and abs(comparison.area_change_percent) < 3


@pytest.mark.parametrize("image_id", IDS[8:12])
def test_synthetic_growth_is_measured_within_three_points(image_id):
    image, mask = _load(image_id)
    painted, grown = _grow(image, mask, 3)
    truth = 100 * (grown.sum() / mask.sum() - 1)  # 7 to 30 % for these lesions
    after, after_mask, _ = _transform(painted, grown, 25, 0.92, shift=(5, 3))
    comparison = compare(_answer(image, mask, "before"), _answer(after, after_mask, "after"))
    assert comparison.registration.reliable
    assert comparison.area_change_percent == pytest.approx(truth, abs=3.0)
    assert comparison.grown_share > 0.5 * truth / 100 and comparison.shrunk_share < 0.05
    assert comparison.picture.shape[1] > 2 * image.shape[1]  # both panels


def test_a_different_lesion_is_flagged_and_no_change_is_given():
    image, mask = _load(IDS[0])
    other, other_mask = _load(IDS[20])
    other, other_mask = (
        cv2.resize(other, mask.shape[::-1]),
        cv2.resize(other_mask.astype(np.uint8), mask.shape[::-1]) > 0,
    )
    comparison = compare(_answer(image, mask, "before"), _answer(other, other_mask, "after"))
    assert not comparison.registration.reliable
    assert comparison.area_change_percent is None and comparison.diameter_change_percent is None
    assert comparison.colours_appeared == [] and "too few matching points" in comparison.warnings[0]
    assert comparison.probability_change is None  # each visit's probability is its own answer, not a change
    assert comparison.to_dict()["measured"] is False and comparison.to_dict()["probability_change"] is None
    # The two visits side by side, each with its own contour: no warped contour, no change map.
    assert comparison.picture.shape[0] == image.shape[0] and comparison.picture.shape[1] == 2 * image.shape[1] + 8


def test_with_both_scales_the_changes_are_in_millimetres():
    image, mask = _load(IDS[12])
    painted, grown = _grow(image, mask, 4)
    before, after = _answer(image, mask, "before", 0.02), _answer(painted, grown, "after", 0.02)
    comparison = compare(before, after)
    assert comparison.area_change_mm2 == pytest.approx(after.measurements.area_mm2 - before.measurements.area_mm2)
    assert comparison.diameter_change_mm > 0
    assert json.loads(json.dumps(comparison.to_dict()))["registration"]["reliable"] is True


@pytest.mark.slow
def test_the_compare_command_writes_the_comparison(tiny_bundle, tmp_path):
    image, mask = _load(IDS[3])
    after, _, _ = _transform(image, mask, 30, 1.0)
    Image.fromarray(after).save(tmp_path / "after.png")
    out = tmp_path / "out"
    run_cli("compare", str(SAMPLE / "images" / f"{IDS[3]}.jpg"), str(tmp_path / "after.png"), "--model",
            str(tiny_bundle), "--before-mm-per-pixel", "0.02", "--after-mm-per-pixel", "0.02", "--out", str(out),
            "--report")  # fmt: skip
    written = json.loads((out / "comparison.json").read_text())
    assert written["registration"]["reliable"] and written["registration"]["rotation_degrees"] == pytest.approx(
        30, abs=1
    )  # AFTER turned back onto BEFORE
    assert written["before_id"] == IDS[3] and written["after_id"] == "after"
    assert Image.open(out / "comparison.png").size[0] > 2 * image.shape[1]
    import shutil
    import subprocess

    assert (out / "comparison.pdf").read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext"):  # the one-page follow-up record says what was found
        text = " ".join(subprocess.run(["pdftotext", str(out / "comparison.pdf"), "-"], capture_output=True,
                                       text=True).stdout.split())  # fmt: skip
        assert (
            "Registration reliable: rotation 30.0 deg" in text
            or "Registration reliable: rotation 29.9" in text
            or ("Registration reliable: rotation 30.1" in text)
        )
        assert "Longest diameter" in text and "mm)" in text and "not a diagnosis" in text


@pytest.mark.slow
def test_the_service_compares_two_uploads(tiny_bundle, tmp_path):
    import io
    import time

    from fastapi.testclient import TestClient

    import srcrn
    from srcrn.serving.app import ServeSettings, create_app

    image, mask = _load(IDS[5])
    after, _, _ = _transform(image, mask, -20, 1.05)
    encoded = io.BytesIO()
    Image.fromarray(after).save(encoded, format="PNG")
    before_bytes = (SAMPLE / "images" / f"{IDS[5]}.jpg").read_bytes()
    other = (SAMPLE / "images" / f"{IDS[25]}.jpg").read_bytes()
    with TestClient(
        create_app(srcrn.Pipeline.from_bundle(tiny_bundle), ServeSettings()), base_url="http://127.0.0.1"
    ) as client:
        deadline = time.monotonic() + 60
        while client.get("/api/v1/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        files = {"before": ("visit1.jpg", before_bytes), "after": ("visit2.png", encoded.getvalue())}
        answer = client.post("/api/v1/compare", files=files, data={"before_mm_per_pixel": "0.02",
                                                                    "after_mm_per_pixel": "0.021"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["registration"]["reliable"] and body["registration"]["rotation_degrees"] == pytest.approx(
            -20, abs=1
        )
        assert body["filenames"] == ["visit1.jpg", "visit2.png"] and body["picture_png"]
        assert body["area_change_mm2"] is not None  # both scales given
        different = client.post("/api/v1/compare", files={"before": ("a.jpg", before_bytes), "after": ("b.jpg", other)})
        assert different.status_code == 200 and not different.json()["registration"]["reliable"]
        assert different.json()["area_change_percent"] is None
        missing = client.post("/api/v1/compare", files={"before": ("a.jpg", before_bytes)})
        assert missing.status_code == 400 and "no file in the field 'after'" in missing.json()["detail"]


def test_a_new_colour_patch_is_mapped_and_resampling_is_not():
    image, mask = _load(IDS[5])
    turned, turned_mask, _ = _transform(image, mask, 15, 1.0)
    plain = compare(_answer(image, mask, "before"), _answer(turned, turned_mask, "after"))
    rows, columns = np.nonzero(mask)
    y, x = int(rows.mean()), int(columns.mean())
    painted = image.copy()
    painted[y - 8 : y + 8, x - 8 : x + 8] = (110, 120, 145)  # a blue-grey patch of 16x16 px
    after, after_mask, _ = _transform(painted, mask, 15, 1.0)
    patched = compare(_answer(image, mask, "before"), _answer(after, after_mask, "after"))
    assert plain.recoloured_share < 0.002  # the rotation's resampling alone changes no colour
    assert patched.recoloured_share * mask.sum() == pytest.approx(256, rel=0.5)  # about the patch
