"""Issue 33: the dev images' own gate figures, from which the input gate's default thresholds
were set below their extremes: contrast, clipped share, sharpness and colour (as
``answers.gate.assess`` measures them), and how many JPEGs libjpeg reports damaged.

    python experiments/gate_dev_figures.py DEV/images
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from srcrn.answers.gate import sharpness
from srcrn.data.images import ImageFile, jpeg_damage


def main() -> None:
    """Print the percentiles (0, 0.5, 50, 99.5, 100) of each figure and the damaged count."""
    paths = sorted(Path(sys.argv[1]).glob("*.jpg"))
    figures: dict[str, list[float]] = {"contrast": [], "clipped share": [], "sharpness": [], "colour": []}
    damaged = 0
    for path in paths:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        values = pixels.astype(np.float64)
        figures["contrast"].append(float(values.mean(axis=2).std()))
        figures["clipped share"].append(float(((values >= 250).all(axis=2) | (values <= 5).all(axis=2)).mean()))
        figures["sharpness"].append(sharpness(pixels))
        figures["colour"].append(float(np.abs(values - values.mean(axis=2, keepdims=True)).mean()))
        damaged += jpeg_damage(ImageFile(path)) is not None
    print(f"{len(paths)} JPEGs; libjpeg reported {damaged} damaged")
    for name, values in figures.items():
        shown = ", ".join(f"{v:.3f}" for v in np.percentile(values, [0, 0.5, 50, 99.5, 100]))
        print(f"{name}: percentiles 0 / 0.5 / 50 / 99.5 / 100: {shown}")


if __name__ == "__main__":
    main()
