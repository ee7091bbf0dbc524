"""The one-page PDF report (PipelineResult.report_pdf, predict --report, POST /api/v1/report):
rendered to PNG with poppler's pdftoppm, its text read with pdftotext, and checked against
the answer it records."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import srcrn
from helpers import run_cli

pytestmark = pytest.mark.slow
POPPLER = shutil.which("pdftoppm") and shutil.which("pdftotext")


def _text_and_render(pdf: bytes, tmp_path: Path) -> tuple[str, Path]:
    if not POPPLER:
        pytest.skip("poppler-utils (pdftoppm, pdftotext) not installed; make test installs it when run as root")
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-singlefile", str(path), str(tmp_path / "page")], check=True)
    return text, tmp_path / "page.png"


@pytest.fixture(scope="module")
def pipeline(tiny_bundle):
    return srcrn.Pipeline.from_bundle(tiny_bundle)


def test_the_report_records_the_answer_on_one_page(pipeline, sample, tmp_path):
    from PIL import Image

    photo = sorted((sample / "images").glob("*.jpg"))[0]
    result = pipeline.predict(photo, age=60, sex="female", site="lower extremity", mm_per_pixel=0.025)
    pdf = result.report_pdf()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") == 1
    text, png = _text_and_render(pdf, tmp_path)
    flat = " ".join(text.split())
    assert "srcrn lesion report" in flat and f"Image {photo.stem}" in flat
    assert hashlib.sha256(photo.read_bytes()).hexdigest() in flat  # the file it describes
    assert f"P(melanoma) {result.probability:.3f} (threshold {result.threshold:.3f})" in flat
    assert "Research software: not a diagnosis, and not a medical device." in flat
    m = result.measurements
    assert f"{m.longest_diameter_mm:.1f} mm" in flat and f"{m.area_mm2:.1f} mm" in flat
    assert "Clinical context given: age 60, sex female, site lower extremity" in flat
    assert result.meaning.split(":")[0] in flat  # the verdict's meaning, from the card
    page = Image.open(png)
    assert page.size[0] < page.size[1] and len(set(page.convert("L").getdata())) > 50  # A4 portrait, the photos


def test_predict_writes_a_report_per_image(tiny_bundle, sample, tmp_path):
    images = sorted((sample / "images").glob("*.jpg"))[:2]
    out = tmp_path / "out"
    run_cli("predict", *map(str, images), "--model", str(tiny_bundle), "--report", "--mm-per-pixel", "0.02",
            "--out", str(out), "--no-progress")  # fmt: skip
    import pandas as pd

    table = pd.read_csv(out / "predictions.csv")
    for image, report, diameter in zip(images, table["report"], table["longest_diameter_mm"]):
        assert Path(report) == out / "reports" / f"{image.stem}_report.pdf"
        text, _ = _text_and_render(Path(report).read_bytes(), tmp_path)
        assert f"{diameter:.1f} mm" in text and image.stem in text
        assert "Scale: 0.02 mm per pixel (given)" in text and "(UTC" in text  # the scale used, local time + offset


def test_the_service_answers_a_report_as_a_pdf(pipeline, sample, tmp_path):
    from fastapi.testclient import TestClient

    from srcrn.serving.app import ServeSettings, create_app

    photo = sorted((sample / "images").glob("*.jpg"))[0]
    with TestClient(create_app(pipeline, ServeSettings()), base_url="http://127.0.0.1") as client:
        deadline = time.monotonic() + 60
        while client.get("/api/v1/ready").status_code != 200:  # the warm-up prediction
            assert time.monotonic() < deadline, "the service never became ready"
            time.sleep(0.05)
        answer = client.post("/api/v1/report", files={"image": ("lesion.jpg", photo.read_bytes())},
                             data={"mm_per_pixel": "0.02"})  # fmt: skip
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/pdf"
        assert answer.headers["content-disposition"] == 'attachment; filename="lesion_report.pdf"'
        assert answer.content.startswith(b"%PDF")
        text, _ = _text_and_render(answer.content, tmp_path)  # an upload's record names its bytes' SHA-256
        assert hashlib.sha256(photo.read_bytes()).hexdigest() in " ".join(text.split())
        bad = client.post("/api/v1/report", files={"image": ("bad.jpg", b"not an image")})
        assert bad.status_code == 422 and "bad.jpg" in bad.json()["detail"]
        scale = client.post("/api/v1/report", files={"image": ("lesion.jpg", photo.read_bytes())},
                            data={"mm_per_pixel": "25"})  # fmt: skip
        assert scale.status_code == 422 and "pixels per mm given instead?" in scale.json()["detail"]
        assert "/api/v1/report" in client.get("/openapi.json").json()["paths"]
