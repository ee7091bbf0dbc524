"""The shipped default model end to end: images/s of ``srcrn predict`` (JPEG files to
predictions.csv with overlays, with the clinical metadata) for the shipped int8 bundle and the
same models exported in fp32 (the peer: what the bundle would be without quantization), rounds
interleaved, median reported; and the time of one follow-up comparison (``Pipeline.compare``:
two predictions, the registration and the change figures) against the two predictions alone.

    .venv/bin/python benchmarks/default_model.py --fp32 FP32_BUNDLE [--images 200] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from predict import DEFAULT_DATA, end_to_end

from srcrn.data.isic import IsicDataset
from srcrn.data.metadata import find_metadata
from srcrn.inference.default import default_bundle
from srcrn.inference.pipeline import Pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fp32", type=Path, required=True, help="the shipped models exported without --quantize")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=20)
    arguments = parser.parse_args()
    dataset = IsicDataset.from_dir(arguments.data)
    paths = [dataset.sample(i).image_path for i in sorted(dataset.ids)[: arguments.images]]
    metadata = find_metadata(arguments.data)
    pipelines = {
        "shipped int8": Pipeline.from_bundle(default_bundle()),
        "fp32 peer": Pipeline.from_bundle(arguments.fp32),
    }
    speeds: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(arguments.rounds):
        for name, pipeline in pipelines.items():
            speeds[name].append(end_to_end(pipeline, paths, 8, overlays=True, metadata=metadata)[0])
    medians = {name: statistics.median(values) for name, values in speeds.items()}
    print(f"{len(paths)} images, {arguments.rounds} rounds, predict end to end with overlays and metadata:")
    for name, value in medians.items():
        print(f"  {name}: {value:.2f} images/s (rounds {', '.join(f'{v:.2f}' for v in speeds[name])})")
    print(f"  ratio shipped int8 / fp32: {medians['shipped int8'] / medians['fp32 peer']:.2f}x")

    shipped = pipelines["shipped int8"]
    comparisons, predictions = [], []
    for path in paths[: arguments.pairs]:
        image = np.asarray(Image.open(path).convert("RGB"))
        height, width = image.shape[:2]
        turned = cv2.warpAffine(image, cv2.getRotationMatrix2D((width / 2, height / 2), 20, 1.05), (width, height),
                                borderMode=cv2.BORDER_REFLECT)  # fmt: skip
        started = time.perf_counter()
        shipped.predict_many([image, turned])
        predictions.append(time.perf_counter() - started)
        started = time.perf_counter()
        shipped.compare(image, turned)
        comparisons.append(time.perf_counter() - started)
    compare, predict = statistics.median(comparisons), statistics.median(predictions)
    print(f"{arguments.pairs} pairs: compare {compare * 1000:.0f} ms median, the two predictions alone "
          f"{predict * 1000:.0f} ms: ratio {compare / predict:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
