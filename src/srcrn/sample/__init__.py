"""The embedded real sample (40 ISIC 2017 images with masks and labels); see ATTRIBUTION.md."""

from importlib.resources import files
from pathlib import Path


def sample_dir() -> Path:
    """Folder of the embedded sample, in the ISIC layout (images/, masks/, labels.csv)."""
    return Path(str(files("srcrn.sample")))
