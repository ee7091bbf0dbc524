"""Classifier inputs for a whole folder: prepare it, segment it with SRCRN (once, cached),
and build the ``full`` / ``masked`` / ``crop`` inputs in the cache's order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from srcrn.data.cache import PreparedData, default_cache_dir, prepare
from srcrn.data.isic import IsicDataset
from srcrn.data.lesion import classifier_inputs
from srcrn.errors import ConfigError
from srcrn.inference.masks import predicted_masks


@dataclass
class LesionData:
    """A folder's classifier inputs, in the order of its prepared cache."""

    dataset: IsicDataset
    prepared: PreparedData
    inputs: np.ndarray
    masks: np.ndarray | None


def lesion_data(data: str | Path, *, image_size: int, input_mode: str, margin: float, segmenter: str | None,
                need_masks: bool = False, require_labels: bool = True, cache: str | Path | None = None,
                progress: bool = True) -> LesionData:
    """Prepare ``data`` and build its classifier inputs; lesion masks come from the SRCRN
    ``segmenter`` (predicted once, cached), or from the data's own masks when there is no
    segmenter and only augmentation needs them."""
    from srcrn.training.segmentation import load_segmenter

    data = Path(data)
    dataset = IsicDataset.from_dir(data, require_labels=require_labels)
    prepared = prepare(dataset, image_size, cache or default_cache_dir(data, image_size), show_progress=progress)
    masks = None
    if segmenter:
        task = load_segmenter(segmenter)
        size = int(task.hparams.image_size)
        at_size = prepared if size == image_size else prepare(dataset, size, default_cache_dir(data, size),
                                                              show_progress=progress)
        masks = predicted_masks(task.model, segmenter, at_size, show_progress=progress)
        if size != image_size:
            resized = torch.from_numpy(masks)[:, None].float()
            masks = (F.interpolate(resized, size=(image_size, image_size), mode="nearest")[:, 0] > 0.5).numpy()
    elif input_mode != "full" or need_masks:
        if input_mode == "full" and prepared.masks is not None:
            masks = np.asarray(prepared.masks)
        else:
            raise ConfigError(f"input '{input_mode}' needs lesion masks: pass --segmenter CKPT (a segment train checkpoint)")
    inputs = classifier_inputs(prepared, dataset, input_mode, masks, margin=margin, show_progress=progress)
    return LesionData(dataset, prepared, inputs, masks)
