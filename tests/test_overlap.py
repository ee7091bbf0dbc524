"""The overlapped prediction path (issue 14): each image is decoded once per DCT scale its uses
need (``ImageFile``), and decoding and outputs run in worker threads beside the networks. The
outputs must be exactly those of one step after another, and every decode exactly an
independent Pillow decode done the way predict did before the overlap."""

from __future__ import annotations

import filecmp

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps

from helpers import run_cli
from srcrn.data.images import ImageFile, decode_crop, decode_image, decode_image_fit
from srcrn.errors import DataError
from srcrn.inference.pipeline import Pipeline

LANCZOS = Image.Resampling.LANCZOS


# The decodes as predict did them before the overlap: each opens the file itself, asks a JPEG
# for a draft only where it shrinks, applies the EXIF orientation, then resizes or crops.
def _reference_square(path, size):
    image = Image.open(path)
    if image.format == "JPEG":
        image.draft("RGB", (2 * size, 2 * size))
    return np.asarray(ImageOps.exif_transpose(image).convert("RGB").resize((size, size), LANCZOS))


def _reference_crop(path, box, size):
    image = Image.open(path)
    left, top, right, bottom = box
    if image.format == "JPEG":
        request = int(np.ceil(2 * size / min(right - left, bottom - top)))
        image.draft("RGB", (request, request))
    image = ImageOps.exif_transpose(image).convert("RGB")
    width, height = image.size
    pixels = (int(np.floor(left * width)), int(np.floor(top * height)),
              int(np.ceil(right * width)), int(np.ceil(bottom * height)))  # fmt: skip
    return np.asarray(image.crop(pixels).resize((size, size), LANCZOS))


def _reference_fit(path, max_side):
    image = Image.open(path)
    oriented = ImageOps.exif_transpose(Image.open(path)).size
    scale = min(1.0, max_side / max(oriented))
    if image.format == "JPEG" and scale < 1.0:  # no draft at all at full scale
        image.draft("RGB", (int(oriented[0] * scale) + 1, int(oriented[1] * scale) + 1))
    image = ImageOps.exif_transpose(image).convert("RGB")
    target = (round(oriented[0] * scale), round(oriented[1] * scale))
    return np.asarray(image if image.size == target else image.resize(target, LANCZOS))


@pytest.fixture
def large_rotated_jpeg(tmp_path):
    """1200x900 JPEG stored sideways (EXIF orientation 6): its uses land on different scales."""
    rows, columns = np.mgrid[0:900, 0:1200]
    rng = np.random.default_rng(0)
    pixels = np.stack([columns * 255 // 1200, rows * 255 // 900, (rows + columns) % 256], -1)
    pixels = (pixels + rng.integers(0, 40, pixels.shape)).clip(0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "large.jpg"
    Image.fromarray(pixels).save(path, quality=90, exif=exif)
    return path


def test_each_decode_equals_an_independent_pillow_decode(sample, large_rotated_jpeg):
    boxes = [(0.1, 0.2, 0.6, 0.9), (0.3, 0.3, 0.5, 0.45), (0.0, 0.0, 1.0, 1.0)]
    paths = [*sorted((sample / "images").glob("*.jpg"))[:4], large_rotated_jpeg]
    for path in paths:
        file = ImageFile(path)
        for size in (64, 128):
            image, original = decode_image(file, size)
            assert np.array_equal(image, _reference_square(path, size)), (path, size)
            assert original == ImageOps.exif_transpose(Image.open(path)).size
        for box in boxes:
            assert np.array_equal(decode_crop(file, box, 128), _reference_crop(path, box, 128)), (path, box)
        for side in (1024, 300):
            assert np.array_equal(decode_image_fit(file, side)[0], _reference_fit(path, side)), (path, side)
        scales = len(file._decoded)
        if path == large_rotated_jpeg:
            assert file.original == (900, 1200) and scales >= 3  # several DCT scales, each decoded once
        else:
            assert Image.open(path).size == (256, 192) and scales == 1  # one decode serves every use


def test_a_bad_file_is_refused_by_the_image_file_naming_it(tmp_path, sample):
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(next((sample / "images").glob("*.jpg")).read_bytes()[:600])
    with pytest.raises(DataError, match=r"cut\.jpg"):
        decode_image(ImageFile(cut), 64)


def _everything(pipeline, images, batch_size):
    return [o for batch in pipeline.predict_stream(images, batch_size=batch_size) for o in batch]


def test_the_overlapped_pipeline_equals_one_step_after_another(tiny_bundle, sample, tmp_path):
    images = sorted((sample / "images").glob("*.jpg"))[:7]
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(images[0].read_bytes()[:600])
    images.insert(3, cut)  # a bad file in the second batch fails alone
    overlapped = Pipeline.from_bundle(tiny_bundle, workers=2)
    serial = Pipeline.from_bundle(tiny_bundle, workers=0)
    a, b = _everything(overlapped, images, 3), _everything(serial, images, 3)
    assert len(a) == len(b) == 8
    assert isinstance(a[3], DataError) and isinstance(b[3], DataError) and a[3].path == cut
    for x, y, path in zip(a, b, images):
        if path == cut:
            continue
        assert x.image_id == y.image_id == path.stem
        assert x.probability == y.probability and x.decision == y.decision
        assert np.array_equal(x.mask, y.mask) and x.mask.shape == (y.height, y.width)
        assert x.measurements == y.measurements
        assert x.overlay_png() == y.overlay_png()
    assert all(overlapped.seconds[step] > 0 for step in ("decode", "segment", "classify", "measure"))
    # One network batch for all or one image at a time: the same answers.
    single = [r for r in _everything(serial, images, 1) if not isinstance(r, DataError)]
    good = [r for r in a if not isinstance(r, DataError)]
    assert [r.image_id for r in single] == [r.image_id for r in good]
    assert np.allclose([r.probability for r in single], [r.probability for r in good], atol=1e-5)


def test_predict_writes_the_same_files_with_and_without_workers(tiny_bundle, sample, tmp_path):
    outs = {}
    for workers in ("0", "2"):
        outs[workers] = tmp_path / f"workers-{workers}"
        run_cli("predict", str(sample / "images"), "--engine", "onnx", "--model", str(tiny_bundle), "--out",
                str(outs[workers]), "--batch-size", "4", "--workers", workers, "--no-progress")  # fmt: skip
    for folder in ("masks", "overlays"):
        names = sorted(p.name for p in (outs["0"] / folder).iterdir())
        assert len(names) == 40
        _, mismatch, errors = filecmp.cmpfiles(outs["0"] / folder, outs["2"] / folder, names, shallow=False)
        assert not mismatch and not errors
    tables = [pd.read_csv(outs[w] / "predictions.csv").drop(columns=["mask", "overlay", "source"]) for w in outs]
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)
