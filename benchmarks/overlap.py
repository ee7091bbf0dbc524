"""End-to-end images/s of ``srcrn predict`` by number of pipeline worker threads (0: one step
after another), per engine, interleaved: every round runs each (engine, workers) once, in the
same order, so that drift of the machine's speed spreads over all of them.

    .venv/bin/python benchmarks/overlap.py --segmenter CKPT --classifier CKPT --model BUNDLE \\
        --int8 BUNDLE8 [--images 96] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from srcrn.inference.batch import predict_images
from srcrn.inference.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "isic-dev"
WORKERS = (0, 1, 2)


def images_per_second(pipeline: Pipeline, images: list[Path], workers: int, overlays: bool) -> float:
    pipeline.workers = workers
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        predict_images(pipeline, images, Path(out), batch_size=16, show_progress=False, overlays=overlays)
        return len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segmenter", type=Path, required=True)
    parser.add_argument("--classifier", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="fp32 bundle of the same checkpoints")
    parser.add_argument("--int8", type=Path, required=True, help="int8 bundle of the same checkpoints")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    images = sorted((args.data / "images").glob("ISIC_*.jpg"))[: args.images]
    engines = {
        "eager fp32": Pipeline.from_checkpoints(args.segmenter, args.classifier),
        "ONNX fp32": Pipeline.from_bundle(args.model),
        "ONNX int8": Pipeline.from_bundle(args.int8),
    }
    for pipeline in engines.values():
        images_per_second(pipeline, images[:16], 0, True)  # warm-up
    speeds: dict[tuple, list[float]] = {}
    for _ in range(args.rounds):
        for name, pipeline in engines.items():
            for overlays in (True, False):
                for workers in WORKERS:
                    speed = images_per_second(pipeline, images, workers, overlays)
                    speeds.setdefault((name, overlays, workers), []).append(speed)
    print(f"{len(images)} JPEGs, batch 16, {args.rounds} interleaved rounds; median images/s (and each round's)")
    print("| engine | overlays | " + " | ".join(f"workers {w}" for w in WORKERS) + " | best |")
    print("|---|---|" + "---|" * (len(WORKERS) + 1))
    for name in engines:
        for overlays in (True, False):
            medians = [statistics.median(speeds[(name, overlays, w)]) for w in WORKERS]
            cells = [
                f"{m:.1f} ({', '.join(f'{s:.1f}' for s in speeds[(name, overlays, w)])})"
                for m, w in zip(medians, WORKERS)
            ]
            best = WORKERS[medians.index(max(medians))]
            print(f"| {name} | {'on' if overlays else 'off'} | " + " | ".join(cells) + f" | {best} |")


if __name__ == "__main__":
    main()
