"""Issue 33, item 3: does the answer depend on how the photo was taken? For N dev images, the
shipped model's probability and lesion area on upscaled copies (longer side 1,024 and 4,000 px),
a copy turned by 15 degrees (same canvas, corners filled by reflection) and a mirrored copy,
against the original; areas brought back to the original's scale (the turned copy's canvas is
the original's). Prints the median and 90th percentile of |dP| and of the relative area change,
and how often each copy's probability lies within the original's spread (its answer with the
lesion turned by -15 and +15 degrees, ``PipelineResult.spread``), with the spreads' widths.

    python experiments/invariance.py DEV/images [N] [ANGLES] [--sides 1024,4000] [--turns 15]

ANGLES (e.g. -30,-15,15,30) replaces the pipeline's spread angles (default -15,15). ``--sides``
are the copies' longer sides in px (256 is a downscale of every dev image), ``--turns`` the
angles of the turned copies; ``--flips`` adds the upside-down copy beside the mirrored one.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

import srcrn


def jpeg(array: np.ndarray) -> bytes:
    """JPEG bytes (quality 95) of an RGB array, as a camera or a viewer would save a copy."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def turned(image: np.ndarray, angle: float, zoom: float = 1.0) -> np.ndarray:
    """The photo turned by ``angle`` degrees (and zoomed) about its centre on the same canvas,
    corners filled by reflection: the retake every invariance experiment here compares with."""
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, zoom)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def variants(
    image: np.ndarray, sides: tuple[int, ...] = (1024, 4000), turns: tuple[float, ...] = (15,), flips: bool = False
) -> dict[str, tuple[bytes, float]]:
    """Each copy's bytes and the factor that brings its areas back to the original's pixels."""
    height, width = image.shape[:2]
    built: dict[str, tuple[bytes, float]] = {}
    for side in sides:
        scale = side / max(height, width)
        size = (round(width * scale), round(height * scale))
        shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        name = f"{'upscaled' if scale >= 1 else 'downscaled'} to {side} px"
        built[name] = (jpeg(cv2.resize(image, size, interpolation=shrink)), 1 / scale**2)
    for angle in turns:
        built[f"turned {angle:g} degrees"] = (jpeg(turned(image, angle)), 1.0)
    built["mirrored"] = (jpeg(np.ascontiguousarray(image[:, ::-1])), 1.0)
    if flips:
        built["upside down"] = (jpeg(np.ascontiguousarray(image[::-1])), 1.0)
    return built


def main() -> None:
    """Predict every original and copy, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("count", type=int, nargs="?", default=100)
    parser.add_argument("angles", nargs="?", default=None, help="the spread's angles, e.g. -15,15")
    parser.add_argument("--sides", default="1024,4000")
    parser.add_argument("--turns", default="15")
    parser.add_argument("--flips", action="store_true")
    arguments = parser.parse_args()
    sides = tuple(int(v) for v in arguments.sides.split(","))
    turns = tuple(float(v) for v in arguments.turns.split(","))
    paths = sorted(p for p in arguments.folder.glob("ISIC_*.jpg"))[: arguments.count]
    pipeline = srcrn.Pipeline.default()
    if arguments.angles:
        pipeline.spread_angles = tuple(float(a) for a in arguments.angles.split(","))
    changes: dict[str, list[tuple[float, float, bool]]] = {}
    widths: list[float] = []
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB"))
        original = pipeline.predict(jpeg(image), image_id="original")
        low, high = original.spread or (original.probability, original.probability)
        widths.append(high - low)
        for name, (data, back) in variants(image, sides, turns, arguments.flips).items():
            copy = pipeline.predict(data, image_id="copy")
            area = copy.measurements.area_pixels * back
            relative = (
                abs(area / original.measurements.area_pixels - 1) if original.measurements.area_pixels else np.nan
            )
            within = low - 1e-9 <= copy.probability <= high + 1e-9
            changes.setdefault(name, []).append((abs(copy.probability - original.probability), relative, within))
    print(f"{len(paths)} dev images (the first by id), the shipped model; each copy against the original")
    print(f"spread angles: {', '.join(f'{a:g}' for a in pipeline.spread_angles)} degrees")
    print(
        f"the original's spread: median width {np.median(widths):.3f}, 90th percentile {np.percentile(widths, 90):.3f}"
    )
    print("| copy | median abs dP | 90th pct abs dP | median area change | 90th pct area change | within the spread |")
    print("|---|---|---|---|---|---|")
    for name, rows in changes.items():
        dp, da = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
        inside = sum(r[2] for r in rows)
        print(f"| {name} | {np.median(dp):.3f} | {np.percentile(dp, 90):.3f} | {100 * np.nanmedian(da):.1f} % | "
              f"{100 * np.nanpercentile(da, 90):.1f} % | {inside} of {len(rows)} |")  # fmt: skip


if __name__ == "__main__":
    main()
