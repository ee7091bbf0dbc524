"""The page of ``srcrn serve`` in a real headless Chromium (Debian's ``chromium`` package, driven
by Playwright; no browser is downloaded): a sample image gives its probability, decision and
overlay; a bad file shows its error in the page; the page fits a phone's width.

Screenshots go to ``$SRCRN_SCREENSHOTS`` when set (the README's come from there, with
``$SRCRN_SCREENSHOT_BUNDLE`` naming a trained bundle instead of the tests' two-step models),
else to the test's temporary folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import srcrn
from helpers import serve_process

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags a sandboxed, offline machine needs: no background connections, no GPU, and no
# sandbox when running as root (CI containers).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return Path(os.environ.get("SRCRN_SCREENSHOT_BUNDLE") or tiny_bundle)


@pytest.fixture(scope="module")
def server(bundle):
    with serve_process("--model", str(bundle)) as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium installed (apt-get install chromium); make test installs it when run as root")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SRCRN_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_upload_shows_probability_decision_and_overlay(server, browser, bundle, sample, tmp_path):
    photo = sorted((sample / "images").glob("*.jpg"))[0]
    pipeline = srcrn.Pipeline.from_bundle(bundle)
    expected = pipeline.predict(photo, age=65, sex="male", site="posterior torso", mm_per_pixel=0.02)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(server)
    page.fill("#mm_per_pixel", "0.02")
    page.fill("#age", "65")
    page.select_option("#sex", "male")
    page.select_option("#site", "posterior torso")
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert page.is_hidden("#stale")  # the fields were set before the upload: the answer is for them
    meaning = page.text_content("#meaning")  # the verdict in words, from the model card
    above = expected.decision == "melanoma"
    if expected.band:  # a model with verdict bands (the shipped one) answers in them
        assert meaning.startswith(expected.band.capitalize() + ":")
    else:
        assert meaning.startswith("Above the referral threshold" if above else "Below the referral threshold")
    calibration = pipeline.card.classifier.calibration
    assert (f"a calibrated probability ({calibration['method']} scaling)" if calibration else "uncalibrated") in meaning
    assert page.get_attribute("#verdict", "aria-live") == "polite"  # announced to screen readers
    assert "not a diagnosis" in page.text_content(".notice")
    used = page.text_content("#clinical-used")
    if pipeline.classifier.clinical_fields:  # the fields went with the upload and the model took them
        assert used == "Clinical context used: age, sex, site."
    else:
        assert used.startswith("No clinical context used")
    shown = {"low": "Low", "intermediate": "Intermediate: review", "high": "High"}.get(expected.band or "")
    assert page.text_content("#decision") == (
        shown or ("Melanoma suspected" if expected.decision == "melanoma" else "Benign")
    )
    assert f"P(melanoma) {expected.probability:.3f}" in page.text_content("#probability")
    overlay = page.eval_on_selector("#photo", "img => [img.complete, img.naturalWidth, img.src.slice(0, 22)]")
    assert overlay[0] and overlay[1] == expected.width and overlay[2] == "data:image/png;base64,"
    rows = page.eval_on_selector_all("#measurements tr", "rows => rows.map(r => r.cells[0].textContent + '=' + "
                                     "r.cells[1].textContent)")  # fmt: skip
    m = expected.measurements
    assert f"Longest diameter={m.longest_diameter_mm:.1f} mm" in rows[0]  # the scale went with the upload
    assert f"Area={m.area_mm2:.1f} mm²" in rows and f"Asymmetry (A)={m.abcd_asymmetry} of 2 axes" in rows
    assert f"Pieces in the mask={m.fragments}" in rows and len(rows) == 9
    page.check("#show-mask")
    page.wait_for_selector("#mask-layer[data-drawn='1']", timeout=10_000)
    assert page.is_visible("#mask-layer")
    # The layer covers the lesion: translucent cyan inside the mask, clear outside.
    alpha = page.evaluate(
        "() => { const c = document.getElementById('mask-layer'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4)"
        " n += d[i] > 0; return n / (c.width * c.height); }"
    )
    assert alpha == pytest.approx(expected.mask.mean(), abs=0.05)  # the whole mask, all its pieces
    if page.is_visible("#about"):  # a model with a card: its short form open in the screenshot
        page.click("#about summary")
    page.screenshot(path=str(_shots(tmp_path) / "serve-result.png"), full_page=True)
    page.close()


def test_a_bad_file_shows_its_error_in_the_page(server, browser, tmp_path):
    bad = tmp_path / "holiday.jpg"
    bad.write_text("not a picture")
    page = browser.new_page(viewport={"width": 1100, "height": 600})
    page.goto(server)
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    message = page.text_content("#error")
    assert message.startswith("not a usable image: holiday.jpg: cannot read image"), message
    assert page.is_hidden("#result")
    page.screenshot(path=str(_shots(tmp_path) / "serve-error.png"), full_page=True)
    page.close()


def test_a_white_page_and_a_damaged_jpeg_get_no_verdict_on_the_page(server, browser, sample, tmp_path):
    """Issue 33: 'not assessable' with its reasons, and neither 'Benign' nor 'Melanoma' anywhere in the verdict."""
    from PIL import Image

    white = tmp_path / "white.png"
    Image.new("RGB", (400, 300), "white").save(white)
    damaged = tmp_path / "damaged.jpg"
    data = bytearray(sorted((sample / "images").glob("*.jpg"))[0].read_bytes())
    data[800:2000] = bytes(1200)
    damaged.write_bytes(bytes(data))
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(server)
    for given, reason in ((white, "blank"), (damaged, "damaged")):
        page.set_input_files("#file", str(given))
        shown = f"document.querySelector('#probability').textContent.includes('{reason}')"
        page.wait_for_function(shown, timeout=60_000)
        verdict = page.text_content("#verdict")
        assert page.text_content("#decision") == "Not assessable"
        assert "Benign" not in verdict and "Melanoma suspected" not in verdict
        assert page.text_content("#meaning").startswith("Not assessable:")
    page.screenshot(path=str(_shots(tmp_path) / "serve-not-assessable.png"), full_page=True)
    page.close()


def test_a_field_changed_after_the_answer_marks_it_stale_and_the_report_is_the_answers(
    server, browser, sample, tmp_path
):
    """Issue 33: one state on the page: editing the age after an answer says the answer is for the
    earlier values and withholds the PDF; a new upload clears the mark."""
    photo = sorted((sample / "images").glob("*.jpg"))[0]
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(server)
    page.fill("#age", "65")
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert page.is_hidden("#stale") and page.is_enabled("#download-report")
    page.fill("#age", "25")
    assert page.is_visible("#stale") and page.is_disabled("#download-report")
    page.screenshot(path=str(_shots(tmp_path) / "serve-stale.png"), full_page=True)
    page.set_input_files("#file", str(sorted((sample / "images").glob("*.jpg"))[1]))
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert page.is_hidden("#stale") and page.is_enabled("#download-report")
    page.close()


def test_a_new_upload_clears_the_previous_answer_first(server, browser, sample, tmp_path):
    good = sorted((sample / "images").glob("*.jpg"))[2]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(good.read_bytes()[:300])  # a JPEG cut short
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    page.goto(server)
    page.set_input_files("#file", str(good))
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert page.is_hidden("#result")  # no verdict of the previous image beside this one's error
    assert "bad.jpg" in page.text_content("#error")
    page.set_input_files("#file", str(good))
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert page.is_hidden("#error")
    page.close()


def test_the_api_docs_render_without_the_internet(server, browser):
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(server + "/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)  # Swagger UI drew the operations
    assert "/api/v1/predict" in page.text_content("body")
    assert all(url.startswith(server) for url in requested), [u for u in requested if not u.startswith(server)]
    page.close()


def test_the_page_fits_a_phone(server, browser, sample, tmp_path):
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    page.goto(server)
    page.set_input_files("#file", str(sorted((sample / "images").glob("*.jpg"))[1]))
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the screen
    page.screenshot(path=str(_shots(tmp_path) / "serve-phone.png"), full_page=True)
    page.close()


def test_the_heatmap_has_a_legend_and_the_layers_an_opacity(browser, tiny_segmenter, tiny_classifier, sample, tmp_path):
    explaining = serve_process("--segmenter", tiny_segmenter, "--classifier", tiny_classifier, "--explain")
    with explaining as (url, _):
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(url)
        page.set_input_files("#file", str(sorted((sample / "images").glob("*.jpg"))[0]))
        page.wait_for_selector("#heat-toggle:not([hidden])", timeout=60_000)
        assert page.is_hidden("#heat-legend")
        page.check("#show-heat")
        assert page.is_visible("#heat-legend") and "low" in page.text_content("#heat-legend")
        page.fill("#opacity", "40")
        page.dispatch_event("#opacity", "input")
        assert page.eval_on_selector("#heat-layer", "e => e.style.opacity") == "0.4"
        assert page.eval_on_selector("#mask-layer", "e => e.style.opacity") == "0.4"
        page.screenshot(path=str(_shots(tmp_path) / "serve-heatmap.png"), full_page=True)
        page.close()


def test_a_model_card_shows_its_short_form_and_the_thresholds_meaning(browser, bundle, sample, tmp_path):
    from srcrn.bundle.schema import attach_card

    carded = tmp_path / "carded"
    shutil.copytree(bundle, carded)
    figure = {"value": 0.81, "ci95": [0.74, 0.88]}
    attach_card(carded, {
        "name": "test card", "intended_use": "Research only. Not a medical device.", "limits": ["tiny model"],
        "data": {"images": {"train": {"isic2017": {"images": 30, "melanoma": 9}}, "val": {"ph2": {"images": 10}}}},
        "segmenter": {"val": {"jaccard": figure, "dice": figure}},
        "classifier": {"val_auc": figure, "oof_auc": figure, "image_only": {"val_auc": figure}, "clinical_fields": [],
                       "threshold": {"chosen_on": "out-of-fold calibrated probabilities for 90% sensitivity",
                                     "val_sensitivity": figure, "val_specificity": figure}},
    })  # fmt: skip
    with serve_process("--model", str(carded)) as (url, _):
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(url)
        page.wait_for_selector("#about:not([hidden])", timeout=30_000)
        page.click("#about summary")
        about = page.text_content("#about-fields")
        assert "Research only. Not a medical device." in about and "30 images (isic2017); validated on 10" in about
        assert "validation Jaccard 0.810 (95 % CI 0.740-0.880)" in about and "tiny model" in about
        page.set_input_files("#file", str(sorted((sample / "images").glob("*.jpg"))[0]))
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        assert "chosen on out-of-fold calibrated probabilities for 90% sensitivity" in page.text_content("#meaning")
        assert "sensitivity 0.810 (95 % CI 0.740-0.880)" in page.text_content("#meaning")
        assert page.text_content("#model-quality").startswith("Stage 2: validation AUC 0.810")
        with page.expect_download(timeout=60_000) as report:  # the one-page PDF of the image on screen
            page.click("#download-report")
        pdf = Path(report.value.path()).read_bytes()
        assert report.value.suggested_filename.endswith("_report.pdf") and pdf.startswith(b"%PDF")
        if shutil.which("pdftotext"):  # the report carries the card's short form (tests/test_report.py: the rest)
            text = subprocess.run(["pdftotext", report.value.path(), "-"], capture_output=True, text=True).stdout
            assert "Model: test card" in text
        page.screenshot(path=str(tmp_path / "serve-test-card.png"), full_page=True)  # a made-up card: not for docs
        page.close()


def test_the_follow_up_view_compares_two_visits(server, browser, sample, tmp_path):
    import cv2
    import numpy as np
    from PIL import Image

    earlier = sorted((sample / "images").glob("*.jpg"))[5]
    image = np.asarray(Image.open(earlier).convert("RGB"))
    height, width = image.shape[:2]
    turned = cv2.warpAffine(image, cv2.getRotationMatrix2D((width / 2, height / 2), 15, 1.0), (width, height),
                            borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    later = tmp_path / "later.png"
    Image.fromarray(turned).save(later)
    page = browser.new_page(viewport={"width": 1100, "height": 1400})
    page.goto(server)
    page.set_input_files("#before-file", str(earlier))
    page.set_input_files("#after-file", str(later))
    page.fill("#before_mm_per_pixel", "0.02")
    page.fill("#after_mm_per_pixel", "0.02")
    page.click("#compare")
    page.wait_for_selector("#comparison:not([hidden])", timeout=60_000)
    changes = page.text_content("#changes")
    assert (
        "Registered: rotation 15.0°" in changes
        or "Registered: rotation 14.9°" in changes
        or ("Registered: rotation 15.1°" in changes)
    )
    assert "mm)" in changes and "P(melanoma)" in changes
    assert page.eval_on_selector("#comparison-picture", "img => img.complete && img.naturalWidth") > 2 * width
    page.screenshot(path=str(_shots(tmp_path) / "serve-compare.png"), full_page=True)
    # A different lesion: flagged, no change measured.
    page.set_input_files("#after-file", str(sorted((sample / "images").glob("*.jpg"))[30]))
    page.click("#compare")
    page.wait_for_selector("#comparison:not([hidden])", timeout=60_000)
    assert "Registration unreliable" in page.text_content("#changes")
    page.close()


def test_the_api_key_is_kept_as_typed_across_a_reload(browser, bundle, sample):
    photo = str(sorted((sample / "images").glob("*.jpg"))[0])
    with serve_process("--model", str(bundle), "--api-key", "s3cret-key") as (url, _):
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(url)
        page.wait_for_selector("#token-row:not([hidden])", timeout=30_000)
        page.fill("#token", "s3cret-key")
        page.set_input_files("#file", photo)
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        assert page.evaluate("() => sessionStorage.getItem('srcrn-token')") == "s3cret-key"  # the text, not the field
        page.reload()
        page.set_input_files("#file", photo)  # nothing typed this time: the kept key goes with it
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        assert not page.is_visible("#error")
        page.close()
