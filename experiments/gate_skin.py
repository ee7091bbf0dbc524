"""Issue 33: does the input gate refuse a photo of lesion-free skin? For the first N dev images,
the largest corner region (half, 0.4 or a third of each side) that the ground-truth lesion mask
does not touch, enlarged back to the image's size and saved as JPEG (quality 95): dermoscopic
skin with no lesion. Prints each one's answer and the count refused.

    python experiments/gate_skin.py DEV [N]
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import srcrn


def skin(image: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """The largest lesion-free corner region, enlarged to the image's size, or None."""
    height, width = mask.shape
    best: tuple[int, int, int, int] | None = None
    for top_side in (True, False):
        for left_side in (True, False):
            for share in (0.5, 0.4, 1 / 3):
                rows, columns = int(height * share), int(width * share)
                top = 0 if top_side else height - rows
                left = 0 if left_side else width - columns
                if not mask[top : top + rows, left : left + columns].any():
                    if best is None or rows * columns > best[2] * best[3]:
                        best = (top, left, rows, columns)
                    break
    if best is None:
        return None
    top, left, rows, columns = best
    patch = Image.fromarray(image[top : top + rows, left : left + columns]).resize((width, height), Image.BICUBIC)
    return np.asarray(patch)


def main() -> None:
    data, count = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 60
    pipeline = srcrn.Pipeline.default()
    print("| image | answer | reasons | lesion share | lesion-feature distance | image-feature residual |")
    print("|---|---|---|---|---|---|")
    refused = total = 0
    for path in sorted((data / "images").glob("ISIC_*.jpg"))[:count]:
        mask = np.asarray(Image.open(data / "masks" / f"{path.stem}_segmentation.png")) > 0
        patch = skin(np.asarray(Image.open(path).convert("RGB")), mask)
        if patch is None:
            continue
        buffer = io.BytesIO()
        Image.fromarray(patch).save(buffer, "JPEG", quality=95)
        assessment = pipeline.predict(buffer.getvalue()).assessment
        figures = assessment.figures
        total += 1
        refused += not assessment.assessed
        shown = " | ".join(
            "n/a" if figures.get(k) is None else f"{figures[k]:.1f}" for k in ("typicality", "image_typicality")
        )
        print(f"| {path.stem} | {assessment.status} | {', '.join(assessment.codes) or '-'} | "
              f"{figures['lesion_share']:.3f} | {shown} |")  # fmt: skip
    print(f"refused {refused} of {total} lesion-free skin photos")


if __name__ == "__main__":
    main()
