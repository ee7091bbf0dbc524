"""The cost of each answer's spread (issue 33): images/s of ``srcrn predict`` end to end (JPEG
files to predictions.csv with overlays and the clinical metadata, batch 8) with the shipped model,
the spread on (its default: the lesion also turned by -15 and +15 degrees) and off
(``--no-spread``), on the same images, rounds interleaved, median reported with each step's share.

    .venv/bin/python benchmarks/spread.py [--images 200] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from predict import DEFAULT_DATA, end_to_end

from srcrn.data.isic import IsicDataset
from srcrn.data.metadata import find_metadata
from srcrn.inference.pipeline import SPREAD_ANGLES, Pipeline


def main() -> None:
    """Both settings, interleaved; the median images/s and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    dataset = IsicDataset.from_dir(arguments.data)
    paths = [dataset.sample(i).image_path for i in sorted(dataset.ids)[: arguments.images]]
    metadata = find_metadata(arguments.data)
    pipeline = Pipeline.default()
    rates: dict[str, list[float]] = {"spread on": [], "spread off (--no-spread)": []}
    shares: dict[str, dict] = {}
    for _ in range(arguments.rounds):
        for name, angles in zip(rates, (SPREAD_ANGLES, ())):
            pipeline.spread_angles = angles
            rate, shares[name] = end_to_end(pipeline, paths, 8, True, metadata=metadata)
            rates[name].append(rate)
    print(f"{len(paths)} images, {arguments.rounds} rounds, predict end to end with overlays and metadata:")
    for name, values in rates.items():
        steps = ", ".join(f"{k} {v:.0%}" for k, v in shares[name].items() if v > 0.005)
        print(
            f"  {name}: {statistics.median(values):.2f} images/s (rounds {', '.join(f'{v:.2f}' for v in values)}); {steps}"
        )
    on, off = (statistics.median(v) for v in rates.values())
    print(f"  ratio on / off: {on / off:.2f}x")


if __name__ == "__main__":
    main()
