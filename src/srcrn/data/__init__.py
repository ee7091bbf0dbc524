"""Data stage: ISIC formats, validation, splits, the prepared cache and the DataModule."""

from srcrn.data.isic import IsicDataset, IsicSample, read_labels

__all__ = ["IsicDataset", "IsicSample", "read_labels"]
