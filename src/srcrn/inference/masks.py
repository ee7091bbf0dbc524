"""SRCRN lesion masks for a whole prepared cache, computed once per (segmenter, cache)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from srcrn.atomic import atomic_path
from srcrn.console import progress
from srcrn.data.cache import MANIFEST, PreparedData
from srcrn.evaluation.segmentation import predict_probabilities


def _key(checkpoint: Path, prepared: PreparedData) -> str:
    stat = checkpoint.stat()
    cache_print = json.loads((prepared.folder / MANIFEST).read_text())["fingerprint"]
    return hashlib.sha1(f"{checkpoint.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{cache_print}".encode()).hexdigest()[:16]


def predicted_masks(
    model: torch.nn.Module, checkpoint: str | Path, prepared: PreparedData, *, batch_size: int = 32,
    show_progress: bool = True,
) -> np.ndarray:
    """uint8 0/1 masks [N, S, S] at the cache's size, stored beside the cache and reused
    while neither the checkpoint nor the cache changes."""
    path = prepared.folder / f"predicted-masks-{_key(Path(checkpoint), prepared)}.npy"
    if path.is_file():
        return np.load(path)
    model = model.eval()
    masks = np.zeros((len(prepared.ids), prepared.size, prepared.size), dtype=np.uint8)
    starts = range(0, len(masks), batch_size)
    for start in progress(starts, len(starts), "segment lesions", show_progress):
        stop = min(start + batch_size, len(masks))
        masks[start:stop] = (predict_probabilities(model, prepared.images[start:stop])[:, 0] > 0.5).numpy()
    with atomic_path(path) as temporary:
        np.save(temporary, masks)
    return masks
