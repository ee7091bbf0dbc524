"""What a batch job of ``srcrn predict`` is: its images (a folder's or the files named), the share
``--shard K/N`` keeps, and its identity (the models by content and their prediction settings),
which a resumed job must match and shards must share to be merged."""

from __future__ import annotations

import hashlib
from pathlib import Path

from srcrn.atomic import clean_json
from srcrn.bundle.schema import file_sha256
from srcrn.data.dicom import is_dicom
from srcrn.data.images import IMAGE_SUFFIXES
from srcrn.data.isic import NON_IMAGE_STEM_SUFFIXES
from srcrn.errors import ConfigError
from srcrn.inference.pipeline import Pipeline

DICOM_SUFFIX = ".dcm"


def image_id(path: Path) -> str:
    """An image file's id: its stem for an image or ``.dcm`` file, else its whole name (a DICOM
    file of a PACS export is often named by its UID, dots and all, without a suffix)."""
    return path.stem if path.suffix.lower() in (*IMAGE_SUFFIXES, DICOM_SUFFIX) else path.name


def _folder_images(folder: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """A folder's image files: by suffix, and DICOM files by their content whatever their name.
    In a folder that holds DICOM files (a study), every other file is skipped with a warning line."""
    images, dicom, others = [], [], []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix.lower() in IMAGE_SUFFIXES:
            if not p.stem.endswith(NON_IMAGE_STEM_SUFFIXES):
                images.append(p)
        elif is_dicom(p):
            dicom.append(p)
        else:
            others.append(p)
    skipped = [(str(p), "neither an image nor a DICOM file: skipped") for p in others] if dicom else []
    return sorted(images + dicom), skipped


def find_images(inputs: list[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image and DICOM files from files and folders (not recursive); unknown paths become errors."""
    found, errors = [], []
    for item in inputs:
        if item.is_dir():
            images, skipped = _folder_images(item)
            found += images
            errors += skipped
        elif item.is_file():
            found.append(item)
        else:
            errors.append((str(item), "file not found"))
    return found, errors


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` (1 <= K <= N) to (K, N)."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard: expected K/N such as 2/8 (given {text!r})") from None
    if not 1 <= k <= n:
        raise ConfigError(f"--shard: K must be between 1 and N (given {text!r})")
    return k, n


def in_shard(image_id: str, shard: tuple[int, int]) -> bool:
    """Whether ``image_id`` belongs to shard K of N: by a hash of the id (SHA-1, not Python's
    salted ``hash``), so every machine agrees whatever order it lists the files in."""
    k, n = shard
    return int.from_bytes(hashlib.sha1(image_id.encode("utf-8")).digest()[:8], "big") % n == k - 1


def model_digest(path: str | Path) -> str | None:
    """SHA-256 of a model's content (a file, or every file of a folder such as a stack), so that
    two models of one name are never taken for each other (``file_sha256`` reads each file once)."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for member in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{member.relative_to(path)}:{file_sha256(member)}\n".encode())
        return digest.hexdigest()
    return None


def model_identity(pipeline: Pipeline) -> str:
    """One SHA-256 for the answering models, by content: over the digests of the segmenter's and
    the classifier's files (``model_digest``; a bundle's classifier is its whole folder). What the
    DICOM objects name as the model that made them."""
    digests = [model_digest(pipeline.segmenter.source), model_digest(pipeline.classifier.source)]
    return hashlib.sha256(" ".join(d or "none" for d in digests).encode()).hexdigest()


def job_identity(pipeline: Pipeline) -> dict:
    """What makes two runs' predictions the same: the models (by content: the SHA-256 of their
    files) and their prediction settings. A resumed job must match the one it continues, and
    shards must match to be merged, or a table would mix two models."""
    card = pipeline.card
    segmenter = card.segmenter.model_dump() if card else {}
    classifier = card.classifier.model_dump() if card else {}
    return clean_json(
        {
            "engine": card.engine if card else None,
            "segmenter": {k: segmenter.get(k) for k in ("source", "image_size", "tta", "keep_largest")}
            | {"sha256": model_digest(pipeline.segmenter.source)},
            "classifier": {
                k: classifier.get(k) for k in ("source", "kind", "image_size", "input", "margin", "calibration")
            }
            | {"sha256": model_digest(pipeline.classifier.source)},
            "threshold": pipeline.threshold,
        }
    )
