"""Images per second of ``srcrn prepare`` against the naive decode-then-resize path.

Two inputs, in one run:
* the dev data as it is (``../shared/data/isic-dev``: 256x192 ISIC copies, ~768x560 PH2);
* stand-ins for real ISIC originals: dev images upscaled to 4000x3000 JPEGs (quality 90),
  with masks upscaled likewise, made in a temporary folder (never committed).

The naive path decodes every image at full size (``Image.open().convert("RGB").resize()``)
and its mask, in one process. ``srcrn prepare`` is measured with 1 process (the effect of
reduced-scale decoding alone) and with every core. Each timing builds a fresh cache.

    .venv/bin/python benchmarks/prepare.py [--data DIR] [--large N] [--size 128]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from srcrn.data.cache import prepare
from srcrn.data.isic import IsicDataset

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "isic-dev"


def naive(dataset: IsicDataset, size: int) -> float:
    start = time.perf_counter()
    for sample in dataset:
        image = np.asarray(Image.open(sample.image_path).convert("RGB").resize((size, size), Image.Resampling.LANCZOS))
        mask = np.asarray(Image.open(sample.mask_path).resize((size, size), Image.Resampling.NEAREST))
        assert image.shape == (size, size, 3) and mask.shape == (size, size)
    return time.perf_counter() - start


def ours(dataset: IsicDataset, size: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        prepare(dataset, size, cache, workers=workers, show_progress=False)
        return time.perf_counter() - start


def make_stand_ins(dataset: IsicDataset, count: int, folder: Path) -> IsicDataset:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    isic = [s for s in dataset if s.image_id.startswith("ISIC_")][:count]
    for sample in isic:
        Image.open(sample.image_path).resize((4000, 3000), Image.Resampling.BICUBIC).save(
            folder / "images" / f"{sample.image_id}.jpg", quality=90
        )
        Image.open(sample.mask_path).resize((4000, 3000), Image.Resampling.NEAREST).save(
            folder / "masks" / f"{sample.image_id}_segmentation.png"
        )
    return IsicDataset.from_dir(folder, require_masks=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--large", type=int, default=40, help="number of 4000x3000 stand-ins")
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    if not (args.data / "labels.csv").is_file() and not (args.data / "images").is_dir():
        raise SystemExit(f"no data at {args.data}: pass --data DIR (an ISIC-layout folder)")
    cores = os.cpu_count() or 1
    dev = IsicDataset.from_dir(args.data, require_masks=True)
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores; size {args.size}px")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        large = make_stand_ins(dev, args.large, Path(scratch) / "large")
        for name, dataset in ((f"dev data ({len(dev)} images)", dev), (f"4000x3000 stand-ins ({len(large)})", large)):
            base = naive(dataset, args.size)
            single = ours(dataset, args.size, 1)
            multi = ours(dataset, args.size, cores)
            n = len(dataset)
            rows.append((name, n / base, n / single, n / multi, base / single, base / multi))
    print(
        f"\n| input | naive img/s | prepare 1 proc img/s | prepare {cores} procs img/s "
        f"| ratio 1 proc | ratio {cores} procs |"
    )
    print("|---|---|---|---|---|---|")
    for name, a, b, c, r1, r2 in rows:
        print(f"| {name} | {a:.1f} | {b:.1f} | {c:.1f} | {r1:.2f}x | {r2:.2f}x |")


if __name__ == "__main__":
    main()
