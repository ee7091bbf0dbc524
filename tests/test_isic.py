"""Reading ISIC layouts and label formats, and refusing bad data with one line naming the file."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import write_image
from srcrn.cli import main
from srcrn.data.cache import prepare
from srcrn.data.isic import IsicDataset, read_labels
from srcrn.errors import DataError


def test_reads_the_embedded_sample(sample):
    dataset = IsicDataset.from_dir(sample, require_masks=True, require_labels=True)
    assert len(dataset) == 40
    assert dataset.ids == sorted(dataset.ids)
    assert int(np.nansum(dataset.melanoma())) == 16
    first = dataset.samples[0]
    assert first.mask_path.name == f"{first.image_id}_segmentation.png"
    assert dataset.sources is not None and set(dataset.sources["isic2017_split"]) == {"train", "val"}


def test_official_isic2017_folder_names(tmp_path, sample):
    root = tmp_path / "isic2017"
    (root / "ISIC-2017_Validation_Data").mkdir(parents=True)
    (root / "ISIC-2017_Validation_Part1_GroundTruth").mkdir()
    ids = sorted(p.stem for p in (sample / "images").glob("*.jpg"))[:3]
    for image_id in ids:
        shutil.copy(sample / "images" / f"{image_id}.jpg", root / "ISIC-2017_Validation_Data")
        # The official download ships superpixel maps beside the images: they are not images.
        shutil.copy(
            sample / "masks" / f"{image_id}_segmentation.png",
            root / "ISIC-2017_Validation_Data" / f"{image_id}_superpixels.png",
        )
        shutil.copy(sample / "masks" / f"{image_id}_segmentation.png", root / "ISIC-2017_Validation_Part1_GroundTruth")
    labels = pd.read_csv(sample / "labels.csv", dtype={"image_id": str}).set_index("image_id").loc[ids]
    labels.to_csv(root / "ISIC-2017_Validation_Part3_GroundTruth.csv")
    dataset = IsicDataset.from_dir(root, require_masks=True, require_labels=True)
    assert dataset.ids == ids
    assert [s.melanoma for s in dataset] == labels["melanoma"].tolist()


def test_official_isic2018_folders_and_task3_labels(tmp_path, sample):
    root = tmp_path / "isic2018"
    images = root / "ISIC2018_Task1-2_Training_Input"
    masks = root / "ISIC2018_Task1_Training_GroundTruth"
    labels_dir = root / "ISIC2018_Task3_Training_GroundTruth"
    for folder in (images, masks, labels_dir):
        folder.mkdir(parents=True)
    ids = sorted(p.stem for p in (sample / "images").glob("*.jpg"))[:4]
    for image_id in ids:
        shutil.copy(sample / "images" / f"{image_id}.jpg", images)
        shutil.copy(sample / "masks" / f"{image_id}_segmentation.png", masks)
    mel = [1.0, 0.0, 0.0, 1.0]
    rows = [
        {"image": i, "MEL": m, "NV": 1.0 - m, "BCC": 0.0, "AKIEC": 0.0, "BKL": 0.0, "DF": 0.0, "VASC": 0.0}
        for i, m in zip(ids, mel)
    ]
    pd.DataFrame(rows).to_csv(labels_dir / "ISIC2018_Task3_Training_GroundTruth.csv", index=False)
    dataset = IsicDataset.from_dir(root, require_masks=True, require_labels=True)
    assert dataset.ids == ids
    assert dataset.melanoma().tolist() == mel
    assert all(s.seborrheic_keratosis is None for s in dataset)  # not stated by the 2018 format


def test_free_form_ids_and_flat_folder(tmp_path):
    write_image(tmp_path / "IMD002.jpg")
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(tmp_path / "IMD002_segmentation.png")
    dataset = IsicDataset.from_dir(tmp_path, require_masks=True)
    assert dataset.ids == ["IMD002"]


def test_unknown_id_is_named(sample):
    dataset = IsicDataset.from_dir(sample)
    with pytest.raises(DataError, match="unknown image id 'ISIC_9999999'"):
        dataset.sample("ISIC_9999999")


def _first_id(root: Path) -> str:
    return sorted(p.stem for p in (root / "images").glob("*.jpg"))[0]


def _broken(kind: str, root: Path) -> Path:
    """Break ``root`` (a copy of the sample) in one way; return the file the error must name."""
    image_id = _first_id(root)
    image = root / "images" / f"{image_id}.jpg"
    mask = root / "masks" / f"{image_id}_segmentation.png"
    labels = root / "labels.csv"
    if kind == "unreadable image":
        image.write_bytes(b"this is not a JPEG at all")
        return image
    if kind == "truncated image":
        image.write_bytes(image.read_bytes()[:2000])
        return image
    if kind == "mask size":
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(mask)
        return mask
    if kind == "non-binary mask":
        values = np.asarray(Image.open(mask)).copy()
        values[:5, :5] = 128
        Image.fromarray(values).save(mask)
        return mask
    if kind == "image without mask":
        mask.unlink()
        return image
    if kind == "label without image":
        table = pd.read_csv(labels, dtype=str)
        table.loc[len(table)] = ["ISIC_9999999", "0.0", "0.0"]
        table.to_csv(labels, index=False)
        return labels
    if kind == "image without label":
        table = pd.read_csv(labels, dtype=str)
        table[table["image_id"] != image_id].to_csv(labels, index=False)
        return image
    if kind == "wrong columns":
        table = pd.read_csv(labels, dtype=str).rename(columns={"melanoma": "mel"})
        table.to_csv(labels, index=False)
        return labels
    if kind == "duplicate id in labels":
        table = pd.read_csv(labels, dtype=str)
        pd.concat([table, table.iloc[:1]]).to_csv(labels, index=False)
        return labels
    if kind == "duplicate image id":
        duplicate = root / "images" / f"{image_id}.png"
        Image.open(image).save(duplicate)
        return duplicate
    if kind == "missing label value":
        table = pd.read_csv(labels, dtype=str)
        table.loc[0, "melanoma"] = ""
        table.to_csv(labels, index=False)
        return labels
    if kind == "label not 0/1":
        table = pd.read_csv(labels, dtype=str)
        table.loc[0, "melanoma"] = "0.7"
        table.to_csv(labels, index=False)
        return labels
    if kind == "absurd size":
        image.unlink()
        huge = root / "images" / f"{image_id}.png"
        huge.write_bytes(_png_header_only(14000, 12000))
        return huge
    raise AssertionError(kind)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (no pixel data needed to refuse it)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


BAD_INPUTS = {
    "unreadable image": "cannot read image",
    "truncated image": "truncated",
    "mask size": "mask size 10x10 differs",
    "non-binary mask": "mask is not binary",
    "image without mask": "has no mask",
    "label without image": "has no image",
    "image without label": "has no label",
    "wrong columns": "unexpected columns",
    "duplicate id in labels": "duplicate id",
    "duplicate image id": "duplicate image id",
    "missing label value": "melanoma label missing",
    "label not 0/1": "must be 0 or 1",
    "absurd size": "absurd image size 14000x12000",
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_is_refused_naming_the_file(kind, isic_copy, tmp_path):
    culprit = _broken(kind, isic_copy)
    with pytest.raises(DataError) as caught:
        dataset = IsicDataset.from_dir(isic_copy, require_masks=True, require_labels=True)
        prepare(dataset, 32, tmp_path / "cache", workers=1, show_progress=False)
    assert caught.value.path == culprit
    assert str(caught.value).startswith(str(culprit))
    assert BAD_INPUTS[kind] in str(caught.value)
    # Nothing half-written is left as a valid cache.
    assert not (tmp_path / "cache" / "manifest.json").exists()


def test_cli_prints_one_line_naming_the_file(isic_copy, tmp_path, capsys):
    culprit = _broken("truncated image", isic_copy)
    with pytest.raises(SystemExit) as exit_status:
        main(["prepare", str(isic_copy), "--out", str(tmp_path / "cache"), "--workers", "1"])
    assert exit_status.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(culprit) in lines[0] and "truncated" in lines[0]


def test_worker_processes_report_the_file_too(isic_copy, tmp_path):
    culprit = _broken("non-binary mask", isic_copy)
    dataset = IsicDataset.from_dir(isic_copy, require_masks=True)
    with pytest.raises(DataError) as caught:
        prepare(dataset, 32, tmp_path / "cache", workers=2, show_progress=False)
    assert caught.value.path == culprit


def test_read_labels_2017_and_2018_agree(tmp_path):
    (tmp_path / "a.csv").write_text("image_id,melanoma,seborrheic_keratosis\nA,1.0,0.0\nB,0.0,1.0\n")
    (tmp_path / "b.csv").write_text("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nA,1.0,0,0,0,0,0,0\nB,0.0,0,0,0,1.0,0,0\n")
    first, second = read_labels(tmp_path / "a.csv"), read_labels(tmp_path / "b.csv")
    assert first["melanoma"].tolist() == second["melanoma"].tolist() == [1.0, 0.0]
    assert first["seborrheic_keratosis"].tolist() == [0.0, 1.0]
    assert second["seborrheic_keratosis"].isna().all()
