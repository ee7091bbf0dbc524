"""``srcrn prepare``: decode every image once, at reduced scale, into a memory-mapped cache.

Layout of a cache folder::

    manifest.json   fingerprint of the inputs + settings; written last, so its presence
                    means the arrays beside it are complete
    images.npy      uint8 [N, H, W, 3] (H = W = S for a square size S)
    masks.npy       uint8 [N, H, W] (0/1), only when every image has a mask
    index.csv       image_id, melanoma, seborrheic_keratosis, width, height (original size)

Training reads these arrays through ``np.load(mmap_mode="r")`` and never decodes a JPEG
again. Re-running with the same inputs reuses the cache; any changed, added or removed file
(path, size or modification time), label or setting changes the fingerprint and rebuilds it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

from srcrn.atomic import json_text, read_json
from srcrn.console import progress
from srcrn.data import images as imageio
from srcrn.data.isic import IsicDataset, IsicSample
from srcrn.errors import DataError
from srcrn.outputs import remove_stale_staging, staging_folder
from srcrn.shapes import ImageSize, as_image_size, height_width, size_text

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
MANIFEST = "manifest.json"


@dataclass
class PreparedData:
    """A prepared cache, memory-mapped."""

    folder: Path
    size: ImageSize
    index: pd.DataFrame
    images: np.ndarray
    masks: np.ndarray | None

    @classmethod
    def load(cls, folder: str | Path) -> PreparedData:
        """The prepared cache in ``folder``, its arrays memory-mapped read-only.

        Args:
            folder: a folder written by ``prepare``.

        Returns:
            The cache (images, masks when cached, the index of ids and labels).
        """
        folder = Path(folder)
        manifest = read_json(folder / MANIFEST)
        index = pd.read_csv(folder / "index.csv", dtype={"image_id": str}).set_index("image_id")
        masks = np.load(folder / "masks.npy", mmap_mode="r") if manifest["has_masks"] else None
        return cls(folder, as_image_size(manifest["size"]), index, np.load(folder / "images.npy", mmap_mode="r"), masks)

    @property
    def ids(self) -> list[str]:
        """The image ids, in the order of the cached arrays."""
        return self.index.index.tolist()

    def positions(self, image_ids: list[str]) -> np.ndarray:
        """Row numbers of ``image_ids`` in the arrays; an id not in the cache is refused
        (pandas would answer -1, which numpy reads as the last row)."""
        rows = self.index.index.get_indexer(image_ids)
        if (rows < 0).any():
            missing = [i for i, r in zip(image_ids, rows) if r < 0]
            raise DataError(self.folder, f"unknown image id '{missing[0]}' ({len(missing)} not in this cache)")
        return rows

    @functools.cached_property
    def melanoma(self) -> np.ndarray:
        """Labels as floats (NaN where unknown); computed once: datasets read it per sample."""
        return self.index["melanoma"].to_numpy(dtype=float)


def default_cache_dir(data: Path, size: ImageSize) -> Path:
    """Per data folder and size (``...-128px``, ``...-192x256px``), under $SRCRN_CACHE_DIR
    (default ~/.cache/srcrn/prepared)."""
    data = Path(data).resolve()
    root = Path(os.environ.get("SRCRN_CACHE_DIR", Path.home() / ".cache" / "srcrn" / "prepared"))
    return root / f"{data.name}-{hashlib.sha1(str(data).encode()).hexdigest()[:12]}-{size_text(size)}px"


def fingerprint(dataset: IsicDataset, size: ImageSize) -> str:
    """Hash of everything the cache depends on; stat-based, so checking it decodes nothing."""
    digest = hashlib.sha256()
    settings = (CACHE_FORMAT, size, imageio.DRAFT_OVERSAMPLE, str(imageio.RESAMPLE))
    digest.update(repr(settings).encode())
    for sample in dataset.samples:
        for path in (sample.image_path, sample.mask_path):
            if path is None:
                digest.update(b"-")
                continue
            stat = path.stat()
            digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        digest.update(f"{sample.image_id}|{sample.melanoma}|{sample.seborrheic_keratosis}".encode())
    return digest.hexdigest()


def _decode_one(job: tuple[int, IsicSample, ImageSize, bool]):
    """Worker: one image (and mask) at the cache size, with the original size."""
    position, sample, size, with_mask = job
    image, original = imageio.decode_image(sample.image_path, size)
    mask = (
        imageio.read_mask(sample.mask_path, original, size).astype(np.uint8)
        if with_mask and sample.mask_path is not None
        else None
    )
    return position, image, mask, original


STAGING_PREFIX = ".prepare-"


def prepare(
    dataset: IsicDataset,
    size: ImageSize,
    out: str | Path,
    *,
    workers: int | None = None,
    show_progress: bool = True,
) -> PreparedData:
    """Prepare (or reuse) the cache of ``dataset`` at ``size`` (a side, or height x width) in ``out``."""
    out = Path(out)
    key = fingerprint(dataset, size)
    manifest_path = out / MANIFEST
    if manifest_path.is_file():
        try:
            if read_json(manifest_path).get("fingerprint") == key:
                if show_progress:
                    log.info("cache up to date: %s (%d images, %spx)", out, len(dataset), size_text(size))
                return PreparedData.load(out)
        except (json.JSONDecodeError, OSError):
            pass  # unreadable manifest: rebuild below
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out, STAGING_PREFIX)  # a killed prepare's hundreds of MB (a live one's stays)
    with_masks = dataset.has_masks
    workers = workers or os.cpu_count() or 1
    staging = staging_folder(out, STAGING_PREFIX)
    try:
        count = len(dataset)
        height, width = height_width(size)
        images = np.lib.format.open_memmap(staging / "images.npy", "w+", np.uint8, (count, height, width, 3))
        masks = (
            np.lib.format.open_memmap(staging / "masks.npy", "w+", np.uint8, (count, height, width))
            if with_masks
            else None
        )
        sizes = np.zeros((count, 2), dtype=np.int64)
        jobs = [(position, sample, size, with_masks) for position, sample in enumerate(dataset.samples)]
        if workers > 1 and count > 1:
            # spawn, not fork: the parent may hold torch's thread pools, which do not survive fork.
            pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
            results = pool.map(_decode_one, jobs, chunksize=max(1, min(32, count // (4 * workers))))
        else:
            pool, results = None, map(_decode_one, jobs)
        try:
            for position, image, mask, original in progress(
                results, count, f"prepare {size_text(size)}px", show_progress
            ):
                images[position] = image
                if masks is not None:
                    masks[position] = mask
                sizes[position] = original
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        images.flush()
        if masks is not None:
            masks.flush()
        del images, masks
        index = pd.DataFrame(
            {
                "image_id": dataset.ids,
                "melanoma": dataset.melanoma(),
                "seborrheic_keratosis": [s.seborrheic_keratosis for s in dataset.samples],
                "width": sizes[:, 0],
                "height": sizes[:, 1],
            }
        )
        index.to_csv(staging / "index.csv", index=False)
        manifest = {
            "fingerprint": key,
            "format": CACHE_FORMAT,
            "size": size,
            "count": count,
            "has_masks": with_masks,
            "source": str(dataset.root.resolve()),
        }
        (staging / MANIFEST).write_text(json_text(manifest))
        # Swap in: the old manifest goes first and the new one comes last, so an
        # interruption at any point leaves either the old complete cache or no valid one.
        manifest_path.unlink(missing_ok=True)
        for name in ("images.npy", "masks.npy", "index.csv"):
            if (staging / name).exists():
                os.replace(staging / name, out / name)
            elif (out / name).exists():
                (out / name).unlink()
        os.replace(staging / MANIFEST, manifest_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return PreparedData.load(out)
