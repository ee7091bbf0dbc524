"""Classifier inputs for a whole folder: prepare it, segment it with the stage-1 model through
the one prediction path (masks computed once and cached beside the prepared images), and
build the ``full`` / ``masked`` / ``crop`` inputs in the cache's order."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from srcrn.atomic import atomic_path, read_json
from srcrn.console import progress
from srcrn.data.cache import MANIFEST, PreparedData, default_cache_dir, prepare
from srcrn.data.isic import IsicDataset
from srcrn.data.lesion import classifier_inputs, crop_mask
from srcrn.errors import ConfigError


class Segmenter(Protocol):
    """What this module needs of a stage-1 segmenter (``runtime.segmenter.Segmenter``): the data
    layer sits below the runtime, so it names the interface, not the class."""

    source: str  # its checkpoint, whose size and time key the cached masks
    spec: Any  # how it predicts (size, TTA, keep-largest): part of the key
    batch_size: int

    def masks(self, images: np.ndarray, size: int) -> np.ndarray:
        """uint8 0/1 masks [N, size, size] of images at the segmenter's size."""
        ...


@dataclass
class LesionData:
    """A folder's classifier inputs, in the order of its prepared cache."""

    dataset: IsicDataset
    prepared: PreparedData
    inputs: np.ndarray
    masks: np.ndarray | None
    input_mode: str = "full"
    margin: float = 0.1

    def input_masks(self, rows: np.ndarray) -> np.ndarray:
        """Boolean lesion masks [len(rows), S, S] as they lie on the inputs of ``rows``."""
        if self.masks is None:
            raise ConfigError("lesion features need lesion masks: pass --segmenter CKPT (a segment train checkpoint)")
        size = self.inputs.shape[1]
        return np.stack(
            [crop_mask(self.masks[row], self.input_mode, size, margin=self.margin) for row in rows]
        ).reshape(len(rows), size, size)


def _key(segmenter: Segmenter, prepared: PreparedData, size: int) -> str:
    checkpoint = Path(segmenter.source)
    stat = checkpoint.stat()
    cache_print = read_json(prepared.folder / MANIFEST)["fingerprint"]
    spec = segmenter.spec
    text = f"{checkpoint.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{cache_print}|{size}|{spec}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def predicted_masks(
    segmenter: Segmenter, prepared: PreparedData, size: int, *, show_progress: bool = True
) -> np.ndarray:
    """uint8 0/1 masks [N, size, size] of every image of ``prepared`` (which is at the
    segmenter's size), stored beside the cache and reused while neither changes."""
    path = prepared.folder / f"predicted-masks-{_key(segmenter, prepared, size)}.npy"
    if path.is_file():
        return np.load(path)
    masks = np.zeros((len(prepared.ids), size, size), dtype=np.uint8)
    starts = range(0, len(masks), segmenter.batch_size)
    for start in progress(starts, len(starts), "segment lesions", show_progress):
        stop = min(start + segmenter.batch_size, len(masks))
        masks[start:stop] = segmenter.masks(prepared.images[start:stop], size)
    with atomic_path(path) as temporary:
        np.save(temporary, masks)
    return masks


def lesion_data(
    data: str | Path,
    *,
    image_size: int,
    input_mode: str,
    margin: float,
    segmenter: Segmenter | None,
    need_masks: bool = False,
    require_labels: bool = True,
    cache: str | Path | None = None,
    progress: bool = True,
) -> LesionData:
    """Prepare ``data`` and build its classifier inputs; lesion masks come from the stage-1
    ``segmenter`` (loaded by the caller: ``runtime.segmenter.load_segmenter``), or from the
    data's own masks when there is no segmenter and only augmentation needs them."""
    data = Path(data)
    dataset = IsicDataset.from_dir(data, require_labels=require_labels)
    prepared = prepare(dataset, image_size, cache or default_cache_dir(data, image_size), show_progress=progress)
    masks = None
    model = segmenter
    at_size = prepared
    if model is not None:
        size = model.spec.image_size
        at_size = (
            prepared
            if size == image_size
            else prepare(dataset, size, default_cache_dir(data, size), show_progress=progress)
        )
        masks = predicted_masks(model, at_size, image_size, show_progress=progress)
    elif input_mode != "full" or need_masks:
        if input_mode == "full" and prepared.masks is not None:
            masks = np.asarray(prepared.masks)
        else:
            raise ConfigError(
                f"input '{input_mode}' needs lesion masks: pass --segmenter CKPT (a segment train checkpoint)"
            )
    if model is None or input_mode == "full" or masks is None:
        inputs = classifier_inputs(prepared, dataset, input_mode, masks, margin=margin, show_progress=progress)
        return LesionData(dataset, prepared, inputs, masks, input_mode, margin)
    # Crops decode the originals again: keep them beside the masks they were cut by.
    stored = prepared.folder / f"inputs-{input_mode}-{margin:g}-{_key(model, at_size, image_size)}.npy"
    if stored.is_file():
        return LesionData(dataset, prepared, np.load(stored, mmap_mode="r"), masks, input_mode, margin)
    inputs = classifier_inputs(prepared, dataset, input_mode, masks, margin=margin, show_progress=progress)
    with atomic_path(stored) as temporary:
        np.save(temporary, inputs)
    return LesionData(dataset, prepared, inputs, masks, input_mode, margin)
