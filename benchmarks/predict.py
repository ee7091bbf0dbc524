"""Images/s of ``srcrn predict`` with eager PyTorch (fp32, bf16 autocast) and ONNX Runtime (fp32,
int8), in one run on the same images: the networks alone, and end to end from JPEG files to
predictions.csv with and without overlays, overlapped (decoding and outputs in the pipeline's
worker threads) and one step after another (``workers=0``); where the time goes; the
networks' GFLOP/s; and each engine's accuracy on the dev validation split against eager fp32.

    .venv/bin/python benchmarks/predict.py --segmenter CKPT --classifier CKPT \\
        [--int8 BUNDLE8] [--images 200]

``--int8`` is a bundle of ``srcrn export onnx --quantize int8`` of the same checkpoints (its
parity with fp32, measured by the export, is printed). All engines run the same pipeline
(decode, SRCRN, lesion input, classifier, mask at the original size, measurements, overlay,
CSV/JSON); only the networks' execution differs.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

from srcrn.bundle.export import export_onnx
from srcrn.inference.batch import predict_images
from srcrn.inference.pipeline import WORKERS, Pipeline
from srcrn.runtime.engines import cpu_has_bf16

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "isic-dev"


def end_to_end(
    pipeline: Pipeline,
    images: list[Path],
    batch_size: int,
    overlays: bool,
    workers: int = WORKERS,
    metadata: Path | None = None,
) -> tuple[float, dict]:
    """Images/s of ``predict_images`` (as ``srcrn predict``; ``metadata``: its --metadata) and
    each step's share of the wall time."""
    pipeline.workers = workers
    with tempfile.TemporaryDirectory() as out:
        predict_images(pipeline, images[:batch_size], Path(out) / "warm-up", batch_size=batch_size, show_progress=False)
        pipeline.seconds = dict.fromkeys(pipeline.seconds, 0.0)
        started = time.perf_counter()
        predict_images(
            pipeline,
            images,
            Path(out) / "run",
            batch_size=batch_size,
            show_progress=False,
            overlays=overlays,
            metadata=metadata,
        )
        wall = time.perf_counter() - started
    return len(images) / wall, {k: v / wall for k, v in pipeline.seconds.items()}


def networks_only(pipeline: Pipeline, images: list[Path], batch_size: int) -> float:
    """Images/s of the two networks (with the models' TTA) on inputs decoded beforehand."""
    segment_inputs, classify_inputs = pipeline.model_inputs(images)
    pipeline.segmenter.probabilities(segment_inputs[:batch_size])  # warm-up
    started = time.perf_counter()
    for i in range(0, len(images), batch_size):
        pipeline.segmenter.probabilities(segment_inputs[i : i + batch_size])
        pipeline.classifier.logits(classify_inputs[i : i + batch_size])
    return len(images) / (time.perf_counter() - started)


def validation_accuracy(engines: dict[str, Pipeline], data: Path, limit: int | None = None) -> dict:
    """Each engine's masks (Jaccard, ISIC definition) and melanoma probabilities (AUC) on the
    official ISIC 2017 validation images of ``data``, paired with eager fp32 on the same images."""
    from srcrn.data.isic import IsicDataset
    from srcrn.data.splits import make_split
    from srcrn.workflows.quantize import parity_of

    dataset = IsicDataset.from_dir(data)
    samples = [dataset.sample(i) for i in make_split(dataset, "official").val[:limit]]
    paths = [s.image_path for s in samples]
    results = {name: pipeline.predict_many(paths, batch_size=16) for name, pipeline in engines.items()}
    scores = {name: parity_of(results["eager fp32"], found, samples) for name, found in results.items()}
    return {"images": len(samples), "engines": scores}


def flops_per_image(segmenter: Path, classifier: Path) -> float:
    """Floating-point operations of both networks for one image (TTA passes included), counted
    by PyTorch's FlopCounterMode (2 per multiply-add) on one forward pass each."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from srcrn.runtime.checkpoints import build_model, read_checkpoint

    total = 0.0
    for path, kind in ((segmenter, "segmenter"), (classifier, "classifier")):
        stored = read_checkpoint(path, expect=kind)
        size, passes = stored.settings["image_size"], 4 if stored.settings.get("tta") else 1
        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            build_model(stored).eval()(torch.zeros(1, 3, size, size))
        total += counter.get_total_flops() * passes
    return total


def peak_gflops() -> tuple[float, str]:
    """fp32 peak of this machine's cores, from lscpu: cores x GHz x 64 FLOP per cycle (two
    AVX-512 FMA units of 16 lanes x 2 FLOP: the first run of this benchmark measured ONNX
    Runtime at 192 GFLOP/s, above the 160 of one unit, so these cores have two)."""
    import os
    import re
    import subprocess

    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    ghz = re.search(r"@ ([\d.]+)GHz", text)
    frequency = float(ghz.group(1)) if ghz else 2.5
    cores = len(os.sched_getaffinity(0))
    return cores * frequency * 64, f"{cores} cores x {frequency} GHz x 64 FLOP/cycle (two AVX-512 FMA units)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segmenter", type=Path, required=True)
    parser.add_argument("--classifier", type=Path, required=True)
    parser.add_argument("--int8", type=Path, help="bundle of srcrn export onnx --quantize int8")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--val-images", type=int, help="the first N validation images only (default: all)")
    args = parser.parse_args()
    for path in (args.segmenter, args.classifier, args.data):
        if not path.exists():
            raise SystemExit(f"{path} not found: pass --segmenter, --classifier (checkpoints) and --data")
    images = sorted((args.data / "images").glob("ISIC_*.jpg"))[: args.images]
    print(f"machine: {platform.machine()}, BF16 instructions: {cpu_has_bf16()}, {len(images)} JPEGs from {args.data}, "
          f"batch {args.batch_size}")  # fmt: skip
    bundle = Path(tempfile.mkdtemp())
    try:
        export_onnx(args.segmenter, args.classifier, bundle)
        engines = {
            "eager fp32": Pipeline.from_checkpoints(args.segmenter, args.classifier),
            "eager bf16": Pipeline.from_checkpoints(args.segmenter, args.classifier, precision="bf16"),
            "ONNX fp32": Pipeline.from_bundle(bundle),
        }
        if args.int8:
            engines["ONNX int8"] = Pipeline.from_bundle(args.int8)
            parity = json.loads((args.int8 / "bundle.json").read_text())["parity"]
            print("int8 parity (written by the export):", {k: v for k, v in parity.items() if k != "tolerance"})
        results, serial = {}, {}
        for name, pipeline in engines.items():
            results[name] = (
                networks_only(pipeline, images, args.batch_size),
                end_to_end(pipeline, images, args.batch_size, overlays=True),
                end_to_end(pipeline, images, args.batch_size, overlays=False),
            )
            if name != "eager bf16" or cpu_has_bf16():  # emulated bf16 is no deployment option: not timed twice
                serial[name] = (
                    end_to_end(pipeline, images, args.batch_size, overlays=True, workers=0)[0],
                    end_to_end(pipeline, images, args.batch_size, overlays=False, workers=0)[0],
                )
        accuracy = validation_accuracy(engines, args.data, args.val_images)
    finally:
        shutil.rmtree(bundle)
    flops = flops_per_image(args.segmenter, args.classifier)
    peak, how = peak_gflops()
    print(f"\nnetworks: {flops / 1e9:.2f} GFLOP per image (TTA included); fp32 peak {peak:.0f} GFLOP/s = {how}")
    eager = results["eager fp32"]
    print("\n| engine | networks img/s | GFLOP/s (% of fp32 peak) | end to end img/s, overlays | vs eager fp32 "
          "| no overlays | vs eager fp32 | overhead (end to end minus networks), no overlays |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, (model_speed, (with_speed, _), (without_speed, _)) in results.items():
        overhead = 1 - without_speed / model_speed
        print(
            f"| {name} | {model_speed:.1f} | {model_speed * flops / 1e9:.0f} ({model_speed * flops / 1e9 / peak:.0%}) "
            f"| {with_speed:.1f} | {with_speed / eager[1][0]:.2f}x | {without_speed:.1f} | "
            f"{without_speed / eager[2][0]:.2f}x | {overhead:.0%} |"
        )
    print(f"\noverlap: end to end img/s with the pipeline's {WORKERS} worker threads vs none (one step after another)")
    print(
        f"| engine | overlays: workers 0 | workers {WORKERS} | gain | no overlays: workers 0 | workers {WORKERS} | gain |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, (_, (with_speed, _), (without_speed, _)) in results.items():
        if name not in serial:
            continue
        with0, without0 = serial[name]
        print(f"| {name} | {with0:.1f} | {with_speed:.1f} | {with_speed / with0:.2f}x | {without0:.1f} | "
              f"{without_speed:.1f} | {without_speed / without0:.2f}x |")  # fmt: skip
    print(f"\naccuracy on the dev validation split ({accuracy['images']} images), each engine against eager fp32:")
    print(
        "| engine | Jaccard | vs eager fp32 | AUC | vs eager fp32 | max probability difference | mask agreement (Jaccard) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, parity in accuracy["engines"].items():
        cells = [f"{parity[k]:.4f}" if k in parity else "-" for k in ("jaccard_int8", "auc_int8")]
        deltas = [f"{-parity[k]:+.4f}" if k in parity else "-" for k in ("jaccard_drop", "auc_drop")]
        print(f"| {name} | {cells[0]} | {deltas[0]} | {cells[1]} | {deltas[1]} | "
              f"{parity['max_probability_difference']:.4f} | {parity['mask_agreement_jaccard']:.4f} |")  # fmt: skip
    print("\nwhere end-to-end time goes (overlays on; seconds summed over threads, as shares of the wall time):")
    print("| engine | decode | segmentation | classification | measurements | outputs |")
    print("|---|---|---|---|---|---|")
    for name, (_, (_, shares), _) in results.items():
        print(
            f"| {name} | {shares['decode']:.0%} | {shares['segment']:.0%} | {shares['classify']:.0%} | "
            f"{shares['measure']:.0%} | {shares['outputs']:.0%} |"
        )


if __name__ == "__main__":
    main()
