"""End-to-end images/s of ``srcrn predict``, from JPEG files to predictions.csv, with eager
PyTorch and with ONNX Runtime, in one run on the same images; and where the time goes.

    .venv/bin/python benchmarks/predict.py --segmenter CKPT --classifier CKPT [--images 200]

Both engines run the same pipeline (decode, SRCRN, lesion input, classifier, mask at the
original size, measurements, overlay, CSV/JSON); only the two models' execution differs.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

from srcrn.inference.batch import predict_images
from srcrn.inference.export import export_onnx
from srcrn.inference.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "isic-dev"


def measure(pipeline: Pipeline, images: list[Path], batch_size: int) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as out:
        predict_images(pipeline, images[:batch_size], Path(out) / "warm-up", batch_size=batch_size, show_progress=False)
        pipeline.seconds = dict.fromkeys(pipeline.seconds, 0.0)
        started = time.perf_counter()
        predict_images(pipeline, images, Path(out) / "run", batch_size=batch_size, show_progress=False)
        wall = time.perf_counter() - started
    return len(images) / wall, {k: v / wall for k, v in pipeline.seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segmenter", type=Path, default=ROOT / "runs" / "srcrn8-dev" / "checkpoints" / "best.ckpt")
    parser.add_argument("--classifier", type=Path, default=ROOT / "runs" / "cls-augment" / "checkpoints" / "best.ckpt")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    for path in (args.segmenter, args.classifier, args.data):
        if not path.exists():
            raise SystemExit(f"{path} not found: pass --segmenter, --classifier (checkpoints) and --data")
    images = sorted((args.data / "images").glob("ISIC_*.jpg"))[: args.images]
    print(f"machine: {platform.machine()}, {len(images)} JPEGs from {args.data}, batch {args.batch_size}")
    bundle = Path(tempfile.mkdtemp())
    try:
        export_onnx(args.segmenter, args.classifier, bundle)
        results = {
            "eager PyTorch": measure(
                Pipeline.from_checkpoints(args.segmenter, args.classifier), images, args.batch_size
            ),
            "ONNX Runtime": measure(Pipeline.from_bundle(bundle), images, args.batch_size),
        }
    finally:
        shutil.rmtree(bundle)
    eager = results["eager PyTorch"][0]
    print("\n| engine | images/s | vs eager | decode | segmentation | classification | outputs |")
    print("|---|---|---|---|---|---|---|")
    for name, (speed, shares) in results.items():
        print(
            f"| {name} | {speed:.1f} | {speed / eager:.2f}x | {shares['decode']:.0%} | {shares['segment']:.0%} | "
            f"{shares['classify']:.0%} | {shares['measure'] + shares['outputs']:.0%} |"
        )


if __name__ == "__main__":
    main()
