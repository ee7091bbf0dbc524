"""Stage 1 as it predicts: every lesion mask srcrn gives (``segment eval``, stage 2's cached
lesion masks, ``predict`` with either engine, the Python API) comes from ``Segmenter`` here.

A model's own settings decide how it predicts: input size, flip test-time augmentation and
keeping the largest region. They travel in the checkpoint and in ``bundle.json``.
torch-free: the torch runtime imports torch only when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from srcrn.data.normalization import normalize_numpy
from srcrn.runtime.engines import TTA_FLIPS, Runtime, batched, sigmoid, torch_runtime
from srcrn.runtime.postprocess import keep_largest_region
from srcrn.shapes import ImageSize, as_image_size

MASK_THRESHOLD = 0.5


def resize_probability(probability: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a probability map, pixel centres aligned (torch's ``align_corners=False``)."""
    if probability.shape == (height, width):
        return probability
    return cv2.resize(np.asarray(probability, dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class SegmenterSpec:
    """How a segmenter is run: its input size (a side, or height x width), flip TTA, keep-largest."""

    image_size: ImageSize
    tta: bool = False
    keep_largest: bool = False


class Segmenter:
    """Stage 1: lesion probabilities at the model's size, and masks at any size."""

    def __init__(self, runtime: Runtime, spec: SegmenterSpec, source: str = "", batch_size: int = 32):
        """A segmenter on ``runtime``, run as ``spec`` says, ``batch_size`` images at a time."""
        self.runtime, self.spec, self.source, self.batch_size = runtime, spec, source, batch_size

    @property
    def image_size(self) -> ImageSize:
        """The input size the segmenter takes: a side, or (height, width)."""
        return self.spec.image_size

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, batch_size: int = 32, precision: str = "fp32", device: str = "cpu"
    ) -> Segmenter:
        """The segmenter of a ``segment train`` checkpoint, run by PyTorch on ``device``."""
        runtime, stored = torch_runtime(path, "segmenter", precision, device)
        s = stored.settings
        spec = SegmenterSpec(as_image_size(s["image_size"]), bool(s["tta"]), bool(s["keep_largest"]))
        return cls(runtime, spec, str(path), batch_size)

    def _probabilities(self, images: np.ndarray) -> np.ndarray:
        return sigmoid(self.runtime(normalize_numpy(images))[:, 0])

    def probabilities(self, images: np.ndarray, *, tta: bool | None = None) -> np.ndarray:
        """float32 [N, H, W] lesion probabilities for uint8 [N, H, W, 3] images at the model's size.
        ``tta`` (default: the model's own setting) averages the four flips."""
        images = np.asarray(images, dtype=np.uint8)
        tta = self.spec.tta if tta is None else tta

        def run(batch: np.ndarray) -> np.ndarray:
            probability = self._probabilities(batch)
            if tta:
                for axes in TTA_FLIPS:
                    probability = probability + np.flip(self._probabilities(np.flip(batch, axes)), axes)
                probability = probability / (1 + len(TTA_FLIPS))
            return probability

        return batched(run, images, self.batch_size)

    def mask(self, probability: np.ndarray, width: int, height: int, *, keep_largest: bool | None = None) -> np.ndarray:
        """Boolean mask at width x height: the probability resized bilinearly, thresholded at 0.5,
        and (as the model's settings say) reduced to its largest region with holes filled."""
        mask = resize_probability(probability, width, height) > MASK_THRESHOLD
        if self.spec.keep_largest if keep_largest is None else keep_largest:
            mask = keep_largest_region(mask)
        return mask

    def masks(self, images: np.ndarray, size: int) -> np.ndarray:
        """uint8 0/1 masks [N, size, size] of images at the model's size."""
        return (
            np.stack([self.mask(p, size, size) for p in self.probabilities(images)]).astype(np.uint8)
            if len(images)
            else np.zeros((0, size, size), np.uint8)
        )


def load_segmenter(checkpoint: str | Path | None) -> Segmenter | None:
    """The segmenter of a ``segment train`` checkpoint (None: none), for the callers of
    ``data.segmented.lesion_data``."""
    return Segmenter.from_checkpoint(checkpoint) if checkpoint else None
