"""Models: they know nothing of data files or training."""

from srcrn.models.classifier import MelanomaClassifier
from srcrn.models.srcrn import SRCRN, build_segmenter

__all__ = ["SRCRN", "MelanomaClassifier", "build_segmenter"]
