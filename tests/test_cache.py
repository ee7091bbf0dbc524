"""The prepared cache: equal to a direct decode, reused when unchanged, rebuilt when not."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from srcrn.data.cache import PreparedData, prepare
from srcrn.data.images import read_image, read_mask
from srcrn.data.isic import IsicDataset


def _prepare(root, out, size=32, workers=1):
    return prepare(IsicDataset.from_dir(root), size, out, workers=workers, show_progress=False)


def test_prepared_image_equals_direct_decode_and_resize(tmp_path, sample):
    # A stand-in for a real ISIC original: a sample image upscaled to 2048x1536 JPEG, so
    # that the reduced-scale (DCT) decode really takes a different path from the naive one.
    root = tmp_path / "large"
    shutil.copytree(sample, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    ids = sorted(p.stem for p in (root / "images").glob("*.jpg"))[:3]
    for image_id in ids:
        path = root / "images" / f"{image_id}.jpg"
        Image.open(path).resize((2048, 1536), Image.Resampling.BICUBIC).save(path, quality=95)
        mask = root / "masks" / f"{image_id}_segmentation.png"
        Image.open(mask).resize((2048, 1536), Image.Resampling.NEAREST).save(mask)
    prepared = _prepare(root, tmp_path / "cache", size=128)
    for image_id in ids:
        direct = np.asarray(
            Image.open(root / "images" / f"{image_id}.jpg").convert("RGB").resize((128, 128), Image.Resampling.LANCZOS)
        ).astype(float)
        cached = prepared.images[prepared.positions([image_id])[0]].astype(float)
        assert cached.shape == (128, 128, 3)
        assert np.abs(cached - direct).mean() < 1.5  # grey levels out of 255
        assert np.percentile(np.abs(cached - direct), 99) < 12
        row = prepared.index.loc[image_id]
        assert (row["width"], row["height"]) == (2048, 1536)
    # Masks: nearest-neighbour, still binary, and the same shape as a direct resize.
    mask = prepared.masks[prepared.positions([ids[0]])[0]]
    assert set(np.unique(mask)) <= {0, 1}
    direct_mask = read_mask(root / "masks" / f"{ids[0]}_segmentation.png")
    expected = np.asarray(Image.fromarray(direct_mask).resize((128, 128), Image.Resampling.NEAREST))
    assert (mask == expected).mean() > 0.99


def test_cache_is_reused_when_nothing_changed(tmp_path, sample):
    first = _prepare(sample, tmp_path / "cache")
    stamp = os.stat(tmp_path / "cache" / "images.npy").st_mtime_ns
    second = _prepare(sample, tmp_path / "cache")
    assert os.stat(tmp_path / "cache" / "images.npy").st_mtime_ns == stamp
    assert np.array_equal(first.images, second.images)


@pytest.mark.parametrize("change", ["image pixels", "added image", "label", "size"])
def test_cache_is_rebuilt_when_an_input_changes(change, isic_copy, tmp_path):
    cache = tmp_path / "cache"
    before = _prepare(isic_copy, cache)
    fingerprint = json.loads((cache / "manifest.json").read_text())["fingerprint"]
    image_id = before.ids[0]
    size = 32
    if change == "image pixels":
        path = isic_copy / "images" / f"{image_id}.jpg"
        Image.fromarray(255 - np.asarray(Image.open(path))).save(path)
    elif change == "added image":
        shutil.copy(isic_copy / "images" / f"{image_id}.jpg", isic_copy / "images" / "NEW_1.jpg")
        shutil.copy(
            isic_copy / "masks" / f"{image_id}_segmentation.png", isic_copy / "masks" / "NEW_1_segmentation.png"
        )
        labels = pd.read_csv(isic_copy / "labels.csv", dtype=str)
        labels.loc[len(labels)] = ["NEW_1", "1.0", "0.0"]
        labels.to_csv(isic_copy / "labels.csv", index=False)
    elif change == "label":
        labels = pd.read_csv(isic_copy / "labels.csv", dtype=str)
        labels.loc[labels["image_id"] == image_id, "melanoma"] = "1.0" if before.melanoma[0] == 0 else "0.0"
        labels.to_csv(isic_copy / "labels.csv", index=False)
    else:
        size = 48
    after = _prepare(isic_copy, cache, size=size)
    assert json.loads((cache / "manifest.json").read_text())["fingerprint"] != fingerprint
    if change == "image pixels":
        assert not np.array_equal(after.images[0], before.images[0])
        assert np.abs(after.images[0].astype(int) - read_image(isic_copy / "images" / f"{image_id}.jpg", 32)).max() == 0
    elif change == "added image":
        assert "NEW_1" in after.ids and len(after.ids) == len(before.ids) + 1
    elif change == "label":
        assert after.melanoma[0] != before.melanoma[0]
    else:
        assert after.images.shape[1:3] == (48, 48)
    # The rebuilt cache loads on its own, without the dataset.
    assert PreparedData.load(cache).ids == after.ids


def test_two_workers_give_the_same_cache_as_one(tmp_path, sample):
    one = _prepare(sample, tmp_path / "one", workers=1)
    two = _prepare(sample, tmp_path / "two", workers=2)
    assert np.array_equal(one.images, two.images) and np.array_equal(one.masks, two.masks)
    assert one.index.equals(two.index)


def test_cache_without_masks(tmp_path, isic_copy):
    shutil.rmtree(isic_copy / "masks")
    prepared = _prepare(isic_copy, tmp_path / "cache")
    assert prepared.masks is None and len(prepared.ids) == 40


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_any_pixel_mode_becomes_rgb(tmp_path, mode):
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (32, 1))
    if mode == "I;16":
        image = Image.fromarray(grey.astype(np.uint16) * 257)
    else:
        rgb = Image.fromarray(np.stack([grey] * 3, axis=2))
        # An adaptive palette holds these 64 grey levels exactly (the default web palette would not).
        image = rgb.convert("P", palette=Image.Palette.ADAPTIVE) if mode == "P" else rgb.convert(mode)
    image.save(tmp_path / "x.png")
    array = read_image(tmp_path / "x.png")
    assert array.shape == (32, 64, 3) and array.dtype == np.uint8
    assert np.abs(array[..., 0].astype(int) - grey).max() <= 1


def test_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(np.zeros((40, 80, 3), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotated 90 degrees
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert read_image(tmp_path / "rotated.jpg").shape == (80, 40, 3)


def test_unknown_ids_are_refused_not_read_as_the_last_row(tmp_path, sample):
    from srcrn.errors import DataError

    prepared = _prepare(sample, tmp_path / "cache")
    assert prepared.positions(prepared.ids[:2]).tolist() == [0, 1]
    with pytest.raises(DataError, match="unknown image id 'ISIC_9999999'"):
        prepared.positions([prepared.ids[0], "ISIC_9999999"])
