"""DICOM in and out (issue 34): dermoscopic DICOM images read with their header's scale and
context, refused in one line when srcrn cannot read them; ``predict --dicom`` writes a SEG and an
SR (TID 1500) that Debian's dciodvfy accepts, whose mask and probability are predict's own."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import cli_error, run_cli

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom", reason="srcrn[dicom] not installed")

SAMPLE = Path(__file__).parents[1] / "src" / "srcrn" / "sample" / "images"
DMS = "1.2.840.10008.5.1.4.1.1.77.1.7"


def _sample(index: int = 0) -> Path:
    return sorted(SAMPLE.glob("*.jpg"))[index]


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def dicom_photo(path: Path, pixels: np.ndarray, **header) -> Path:
    """A dermoscopic photograph as a DICOM file: a highdicom Secondary Capture made a Dermoscopic
    Photography object (SOP class, modality), with ``header``'s attributes set."""
    image = hd.sc.SCImage(
        pixel_array=pixels, photometric_interpretation="RGB", bits_allocated=8, coordinate_system="PATIENT",
        patient_orientation=("L", "F"), study_instance_uid=hd.UID(), series_instance_uid=hd.UID(), series_number=1,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test",
    )  # fmt: skip
    image.SOPClassUID = image.file_meta.MediaStorageSOPClassUID = DMS
    image.Modality = "DMS"
    for keyword, value in header.items():
        setattr(image, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save_as(path, enforce_file_format=True)
    return path


def _region(code: str, meaning: str):
    item = pydicom.Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, "SCT", meaning
    return item


def test_a_dicom_photograph_reads_as_its_pixels_with_the_headers_scale_and_context(tmp_path):
    from srcrn.data.images import ImageFile, decode_image

    pixels = _rgb(_sample())
    path = dicom_photo(tmp_path / "lesion.dcm", pixels, PixelSpacing=[0.02, 0.02], PatientAge="045Y",
                       PatientSex="F", AnatomicRegionSequence=[_region("77568009", "Back")])  # fmt: skip
    decoded, size = decode_image(path)
    assert np.array_equal(decoded, pixels) and size == (pixels.shape[1], pixels.shape[0])
    facts = ImageFile(path).dicom
    assert (facts.age, facts.sex, facts.site, facts.pixel_spacing_mm) == (45.0, "female", "posterior torso", 0.02)
    # A site code outside srcrn's table is read by its meaning; one that names no ISIC site is said.
    other = dicom_photo(tmp_path / "sole.dcm", pixels, AnatomicRegionSequence=[_region("57999000", "Sole of foot")])
    assert ImageFile(other).dicom.site == "palms/soles"
    eye = dicom_photo(tmp_path / "eye.dcm", pixels, AnatomicRegionSequence=[_region("81745001", "Eye")])
    assert ImageFile(eye).dicom.site is None
    assert "has no ISIC site" in ImageFile(eye).dicom.notes[0]


def test_the_dermoscopes_field_of_view_gives_the_scale_where_no_pixel_spacing_does(tmp_path):
    from srcrn.data.images import ImageFile

    pixels = _rgb(_sample())
    rows, columns = pixels.shape[:2]
    field = dicom_photo(tmp_path / "field.dcm", pixels, FieldOfViewDimensions=[rows // 10, columns // 10])
    assert ImageFile(field).dicom.pixel_spacing_mm == pytest.approx((rows // 10) / rows)
    round_field = dicom_photo(tmp_path / "round.dcm", pixels, FieldOfViewDimensions=25)  # a 25 mm contact plate
    assert ImageFile(round_field).dicom.pixel_spacing_mm == pytest.approx(25 / min(rows, columns))
    both = dicom_photo(tmp_path / "both.dcm", pixels, PixelSpacing=[0.02, 0.02], FieldOfViewDimensions=25)
    assert ImageFile(both).dicom.pixel_spacing_mm == 0.02  # the measured spacing wins over the nominal field
    skewed = dicom_photo(tmp_path / "skewed.dcm", pixels, FieldOfViewDimensions=[rows // 10, columns // 5])
    facts = ImageFile(skewed).dicom
    assert facts.pixel_spacing_mm is None and "is not square: no scale from the header" in facts.notes[0]


def test_the_headers_facts_flow_into_the_answer_and_a_given_value_wins(tmp_path):
    from srcrn import Pipeline

    pixels = _rgb(_sample())
    path = dicom_photo(tmp_path / "lesion.dcm", pixels, PixelSpacing=[0.02, 0.02], PatientAge="045Y", PatientSex="F")
    bare = dicom_photo(tmp_path / "bare.dcm", pixels)
    pipeline = Pipeline.default()
    from_header, given, none = pipeline.predict_many([path, path, bare], contexts=[None, _context(age=70), None])
    assert from_header.from_header == ("age", "sex", "pixel_spacing_mm")
    assert (from_header.context.age, from_header.context.sex) == (45.0, "female")
    assert from_header.measurements.mm_per_pixel == 0.02 and from_header.measurements.longest_diameter_mm is not None
    assert from_header.to_dict()["clinical"]["from_dicom_header"] == ["age", "sex", "pixel_spacing_mm"]
    assert given.context.age == 70 and given.from_header == ("sex", "pixel_spacing_mm")
    assert none.from_header == () and none.measurements.longest_diameter_mm is None
    # The DICOM's pixels are the JPEG's: the same mask as the JPEG given the same context.
    jpeg = pipeline.predict(_sample(), age=45, sex="female", mm_per_pixel=0.02)
    assert np.array_equal(jpeg.mask, from_header.mask)
    assert jpeg.probability == pytest.approx(from_header.probability, abs=1e-6)


def _context(**values):
    from srcrn.data.metadata import ClinicalContext

    return ClinicalContext(**values)


def test_jpeg_compressed_and_ybr_dicom_pixels_decode_to_rgb(tmp_path):
    import io

    from pydicom.encaps import encapsulate
    from pydicom.pixels import convert_color_space
    from pydicom.uid import JPEGBaseline8Bit

    from srcrn.data.images import decode_image

    pixels = _rgb(_sample())
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    path = dicom_photo(tmp_path / "jpeg.dcm", pixels)
    dataset = pydicom.dcmread(path)
    dataset.PixelData = encapsulate([buffer.getvalue()])
    dataset["PixelData"].VR = "OB"
    dataset.PhotometricInterpretation = "YBR_FULL_422"
    dataset.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    dataset.save_as(path)
    assert np.array_equal(decode_image(path)[0], np.asarray(Image.open(buffer).convert("RGB")))
    ybr = dicom_photo(tmp_path / "ybr.dcm", pixels)
    dataset = pydicom.dcmread(ybr)
    dataset.PixelData = convert_color_space(pixels, "RGB", "YBR_FULL").tobytes()
    dataset.PhotometricInterpretation = "YBR_FULL"
    dataset.save_as(ybr)
    assert np.abs(decode_image(ybr)[0].astype(int) - pixels).max() <= 2


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("ct", "not a photograph: SOP class 1.2.840.10008.5.1.4.1.1.2 (modality CT)"),
        ("no pixels", "the DICOM object has no pixel data"),
        ("frames", "a multi-frame DICOM object (2 frames)"),
        ("truncated", "cannot"),
        ("huge", "refused: absurd image size"),
    ],
)
def test_a_dicom_file_srcrn_cannot_read_is_one_line_naming_it(tmp_path, capsys, change, problem):
    path = dicom_photo(tmp_path / "bad.dcm", _rgb(_sample()))
    dataset = pydicom.dcmread(path)
    if change == "ct":
        dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        dataset.Modality = "CT"
    elif change == "no pixels":
        del dataset.PixelData
    elif change == "frames":
        dataset.NumberOfFrames = 2
    elif change == "huge":
        dataset.Rows = dataset.Columns = 20000
    if change == "truncated":
        path.write_bytes(path.read_bytes()[:2000])
    else:
        dataset.save_as(path)
    line = cli_error(capsys, "predict", str(path), "--out", str(tmp_path / "out"))
    assert str(path) in line and problem in line, line


def test_a_study_folders_stray_files_are_skipped_with_a_line_each(tmp_path, caplog):
    study = tmp_path / "study"
    study.mkdir()
    dicom_photo(study / "1.2.826.0.1.3680043.1", _rgb(_sample()))  # a PACS export's name: a UID, no suffix
    (study / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    run_cli("predict", str(study), "--out", str(out), "--no-overlays")
    table = json.loads((out / "predictions.json").read_text())
    assert [p["image_id"] for p in table["predictions"]] == ["1.2.826.0.1.3680043.1"]
    assert table["errors"] == [
        {"source": str(study / "notes.txt"), "problem": "neither an image nor a DICOM file: skipped"}
    ]


def _items(dataset):
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from _items(item)


def _named(dataset, code: str) -> list:
    return [
        i
        for i in _items(dataset)
        if i.get("ConceptNameCodeSequence") and i.ConceptNameCodeSequence[0].CodeValue == code
    ]


def _dciodvfy_errors(path: Path) -> list[str]:
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


def test_predict_dicom_writes_a_seg_and_an_sr_of_its_own_answer(tmp_path):
    dicom_input = dicom_photo(tmp_path / "in" / "from-pacs.dcm", _rgb(_sample(1)), PixelSpacing=[0.02, 0.02])
    jpeg = shutil.copy(_sample(2), tmp_path / "in")
    out = tmp_path / "out"
    run_cli("predict", str(dicom_input), str(jpeg), "--out", str(out), "--dicom", "--no-overlays")
    from srcrn import Pipeline
    from srcrn.inference.jobs import model_identity

    model = model_identity(Pipeline.default())
    predictions = {p["image_id"]: p for p in json.loads((out / "predictions.json").read_text())["predictions"]}
    source_of = {"from-pacs": pydicom.dcmread(dicom_input)}
    source_of[Path(jpeg).stem] = pydicom.dcmread(out / "dicom" / f"{Path(jpeg).stem}_image.dcm")
    assert not (out / "dicom" / "from-pacs_image.dcm").exists()  # a DICOM input is its own source
    for image_id, source in source_of.items():
        seg = pydicom.dcmread(out / "dicom" / f"{image_id}_seg.dcm")
        sr = pydicom.dcmread(out / "dicom" / f"{image_id}_sr.dcm")
        # One study; the SEG derives from the source image; the SR refers to both.
        assert seg.StudyInstanceUID == sr.StudyInstanceUID == source.StudyInstanceUID
        assert (
            seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
            == source.SOPInstanceUID
        )
        evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                    for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}  # fmt: skip
        assert evidence == {seg.SOPInstanceUID, source.SOPInstanceUID}
        # The mask read back from the SEG is predict's PNG mask.
        png = np.asarray(Image.open(predictions[image_id]["mask"])) > 0
        assert np.array_equal(seg.pixel_array.astype(bool).reshape(png.shape), png)
        assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "95324001"  # skin lesion
        algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmParameters == f"model_sha256={model}"  # the models by content
        # The SR's probability and verdict are predict's.
        (probability,) = _named(sr, "P-MEL")
        assert float(probability.MeasuredValueSequence[0].NumericValue) == pytest.approx(
            predictions[image_id]["melanoma"], abs=1e-6
        )
        (band,) = _named(sr, "BAND")
        assert band.ConceptCodeSequence[0].CodeMeaning == predictions[image_id]["band"]
        (length,) = _named(sr, "103339001")  # long axis: mm with the header's scale, else pixels
        unit = length.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue
        assert unit == ("mm" if image_id == "from-pacs" else "{pixels}")
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (Debian's dicom3tools): the objects were not validated")
    for path in sorted((out / "dicom").glob("*.dcm")):
        assert _dciodvfy_errors(path) == [], path.name


def test_the_service_answers_a_dicom_upload_with_its_seg_and_sr(tmp_path, monkeypatch):
    import io
    import zipfile

    from fastapi.testclient import TestClient

    from srcrn import Pipeline
    from srcrn.serving.app import create_app
    from srcrn.serving.settings import ServeSettings

    pipeline = Pipeline.default()
    upload = dicom_photo(tmp_path / "photo.dcm", _rgb(_sample()), PatientAge="045Y", PixelSpacing=[0.02, 0.02])
    with TestClient(create_app(pipeline, ServeSettings()), base_url="http://127.0.0.1") as client:
        deadline = time.monotonic() + 60
        while client.get("/api/v1/ready").status_code != 200:  # the warm-up prediction
            assert time.monotonic() < deadline, "the service never became ready"
            time.sleep(0.05)
        form = {"image": ("photo.dcm", upload.read_bytes(), "application/dicom")}
        answer = client.post("/api/v1/predict", files=form, params={"images": "false"}).json()
        assert answer["clinical"]["from_dicom_header"] == ["age", "pixel_spacing_mm"], answer
        zipped = client.post("/api/v1/dicom", files=form)
        assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"
        jpeg = client.post("/api/v1/dicom", files={"image": ("lesion.jpg", _sample().read_bytes(), "image/jpeg")})
        import sys

        monkeypatch.setitem(sys.modules, "highdicom", None)  # a server without srcrn[dicom]
        missing = client.post("/api/v1/dicom", files=form)
        assert missing.status_code == 501 and "srcrn[dicom]" in missing.json()["detail"]
    parts = zipfile.ZipFile(io.BytesIO(zipped.content))
    assert sorted(parts.namelist()) == ["seg.dcm", "sr.dcm"]  # a DICOM upload is its own source
    sr = pydicom.dcmread(io.BytesIO(parts.read("sr.dcm")))
    assert sr.StudyInstanceUID == pydicom.dcmread(upload).StudyInstanceUID
    (probability,) = _named(sr, "P-MEL")
    assert float(probability.MeasuredValueSequence[0].NumericValue) == pytest.approx(answer["probability"], abs=1e-6)
    jpeg_parts = zipfile.ZipFile(io.BytesIO(jpeg.content))
    assert sorted(jpeg_parts.namelist()) == ["image.dcm", "seg.dcm", "sr.dcm"]
    if shutil.which("dciodvfy"):  # what the service answers passes the IOD checker
        for archive, name in [(parts, "seg.dcm"), (parts, "sr.dcm"), *((jpeg_parts, n) for n in jpeg_parts.namelist())]:
            path = tmp_path / f"{len(list(tmp_path.iterdir()))}-{name}"
            path.write_bytes(archive.read(name))
            assert _dciodvfy_errors(path) == [], name


def test_compare_takes_two_dicom_visits_and_their_headers_scale(tmp_path):
    pixels = _rgb(_sample())
    before = dicom_photo(tmp_path / "before.dcm", pixels, PixelSpacing=[0.02, 0.02])
    after = dicom_photo(tmp_path / "after.dcm", np.ascontiguousarray(pixels[:, ::-1]), PixelSpacing=[0.02, 0.02])
    run_cli("compare", str(before), str(after), "--out", str(tmp_path / "scaled"))
    scaled = json.loads((tmp_path / "scaled" / "comparison.json").read_text())
    assert scaled["diameter_change_mm"] is not None and abs(scaled["diameter_change_percent"]) < 5
    bare = [dicom_photo(tmp_path / f"{name}-bare.dcm", pixels) for name in ("before", "after")]
    run_cli("compare", *map(str, bare), "--out", str(tmp_path / "bare"))
    assert json.loads((tmp_path / "bare" / "comparison.json").read_text())["diameter_change_mm"] is None


def test_a_jpegs_study_carries_the_patient_given_and_nothing_invented(tmp_path, capsys):
    jpeg = _sample(3)
    out = tmp_path / "out"
    run_cli("predict", str(jpeg), "--out", str(out), "--dicom", "--no-overlays", "--patient-id", "P-0042",
            "--patient-name", "Doe^Jane", "--patient-birth-date", "19700131")  # fmt: skip
    for role in ("image", "seg", "sr"):
        dataset = pydicom.dcmread(out / "dicom" / f"{jpeg.stem}_{role}.dcm")
        assert (dataset.PatientID, str(dataset.PatientName), dataset.PatientBirthDate) == (
            "P-0042",
            "Doe^Jane",
            "19700131",
        )
    anonymous = tmp_path / "anonymous"
    run_cli("predict", str(jpeg), "--out", str(anonymous), "--dicom", "--no-overlays")
    image = pydicom.dcmread(anonymous / "dicom" / f"{jpeg.stem}_image.dcm")
    assert (image.PatientID, str(image.PatientName), image.PatientBirthDate, image.PatientSex) == ("", "", "", "")
    assert "PatientAge" not in image  # no age was given
    line = cli_error(
        capsys, "predict", str(jpeg), "--out", str(tmp_path / "x"), "--dicom", "--patient-birth-date", "31.01.1970"
    )
    assert "--patient-birth-date" in line, line
