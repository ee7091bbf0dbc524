"""The shipped default model end to end: images/s of ``srcrn predict`` (JPEG files to
predictions.csv with overlays, with the clinical metadata) for the shipped bundle and a peer
bundle (the previous default model, or the same models in another precision), rounds
interleaved, median reported; and the time of one follow-up comparison (``Pipeline.compare``:
two predictions, the registration and the change figures) against the two predictions alone.

    .venv/bin/python benchmarks/default_model.py --peer BUNDLE [--peer-name NAME] [--images 200] [--rounds 2]
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

from srcrn.bundle.default import default_bundle
from srcrn.data.isic import IsicDataset
from srcrn.data.metadata import find_metadata
from srcrn.inference.pipeline import Pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--peer", type=Path, required=True, help="the bundle to compare with (e.g. the previous default)"
    )
    parser.add_argument("--peer-name", default="peer", help="its name in the output")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=20)
    arguments = parser.parse_args()
    dataset = IsicDataset.from_dir(arguments.data)
    paths = [dataset.sample(i).image_path for i in sorted(dataset.ids)[: arguments.images]]
    metadata = find_metadata(arguments.data)
    pipelines = {
        "shipped": Pipeline.from_bundle(default_bundle()),
        arguments.peer_name: Pipeline.from_bundle(arguments.peer),
    }
    speeds: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(arguments.rounds):
        for name, pipeline in pipelines.items():
            speeds[name].append(end_to_end(pipeline, paths, 8, overlays=True, metadata=metadata)[0])
    medians = {name: statistics.median(values) for name, values in speeds.items()}
    print(f"{len(paths)} images, {arguments.rounds} rounds, predict end to end with overlays and metadata:")
    for name, value in medians.items():
        print(f"  {name}: {value:.2f} images/s (rounds {', '.join(f'{v:.2f}' for v in speeds[name])})")
    print(f"  ratio shipped / {arguments.peer_name}: {medians['shipped'] / medians[arguments.peer_name]:.2f}x")

    shipped = pipelines["shipped"]
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
