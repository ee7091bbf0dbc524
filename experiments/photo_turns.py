"""Issue 33, item 3: would averaging the answer over turns of the whole photo (each turned copy
segmented and cut again) make it steadier under rotation than the shipped answer, which averages
turns of the lesion's crop only? For the first N dev images and copies turned by each of TURNS
degrees, |dP| (median, 90th percentile) of both answers against the original's; then both
answers' AUC on the ISIC 2017 validation images (with their metadata).

    python experiments/photo_turns.py DEV [N] [TURNS] [ANGLES]

TURNS: the copies' angles (default 10,20,30); ANGLES: the photo turns averaged (default -15,0,15).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from invariance import jpeg, turned
from PIL import Image

import srcrn
from srcrn.data.metadata import read_metadata
from srcrn.stats import auc, auc_interval


def answers(shipped, bare, image: np.ndarray, angles: tuple[float, ...], context=None) -> tuple[float, float]:
    """The shipped answer (crop turns) and the mean over the photo's turns (no crop turns)."""
    first = shipped.predict(jpeg(image), context=context).probability
    readings = [bare.predict(jpeg(turned(image, a) if a else image), context=context).probability for a in angles]
    return first, float(np.mean(readings))


def main() -> None:
    data, count = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 100
    turns = tuple(float(a) for a in (sys.argv[3] if len(sys.argv) > 3 else "10,20,30").split(","))
    angles = tuple(float(a) for a in (sys.argv[4] if len(sys.argv) > 4 else "-15,0,15").split(","))
    shipped, bare = srcrn.Pipeline.default(), srcrn.Pipeline.default()
    bare.spread_angles = ()
    print(f"photo turns averaged: {', '.join(f'{a:g}' for a in angles)} degrees; copies turned by {turns}")
    rows = []
    for path in sorted((data / "images").glob("ISIC_*.jpg"))[:count]:
        image = np.asarray(Image.open(path).convert("RGB"))
        base = answers(shipped, bare, image, angles)
        for turn in turns:
            copy = answers(shipped, bare, turned(image, turn), angles)
            rows.append((turn, abs(copy[0] - base[0]), abs(copy[1] - base[1])))
    table = pd.DataFrame(rows, columns=["turn", "shipped", "photo"])
    print("| copy | shipped: median / 90th pct abs dP | photo turns: median / 90th pct abs dP |")
    print("|---|---|---|")
    for turn, part in table.groupby("turn"):
        cells = [f"{part[c].median():.3f} / {part[c].quantile(0.9):.3f}" for c in ("shipped", "photo")]
        print(f"| turned {turn:g} degrees | {cells[0]} | {cells[1]} |")
    sources = pd.read_csv(data / "sources.csv", dtype={"image_id": str})
    labels = pd.read_csv(data / "labels.csv", dtype={"image_id": str}).set_index("image_id")["melanoma"]
    val = sorted(sources.loc[sources["isic2017_split"] == "val", "image_id"])
    contexts = read_metadata(data / "metadata.csv")
    scores = np.array([answers(shipped, bare, np.asarray(Image.open(data / "images" / f"{i}.jpg").convert("RGB")),
                               angles, contexts.get(i)) for i in val])  # fmt: skip
    truth = labels.loc[val].to_numpy().astype(int)
    for name, column in (("shipped", 0), ("photo turns", 1)):
        interval = auc_interval(truth, scores[:, column])
        print(f"{name}: validation AUC {auc(truth, scores[:, column]):.4f} "
              f"({interval.low:.4f}-{interval.high:.4f}), {len(val)} images")  # fmt: skip


if __name__ == "__main__":
    main()
