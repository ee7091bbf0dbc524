"""Issue 33, item 3: would averaging the answer over the spread's turns make it invariant to the
photo's orientation, at no extra cost (the spread already computes P(melanoma) with the lesion's
classifier input turned by -15 and +15 degrees)? For the first N dev images by id and a copy of
each turned by 15 degrees, both answers: the point one (the input as given) and the mean of the
three. Then the same two answers' AUC on the ISIC 2017 validation images (with their metadata),
so that a gain in invariance is not bought with discrimination.

    python experiments/rotation_average.py DEV [N] [ANGLES]

ANGLES (e.g. -30,-15,15,30) replaces the pipeline's turns (default -15,15).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from invariance import jpeg, turned
from PIL import Image

import srcrn
import srcrn.inference.steps as steps_module
from srcrn.data.metadata import read_metadata
from srcrn.stats import auc, auc_interval

given: list[float] = []  # each answer's reading of the lesion as given, in the order predicted
averaged: list[float] = []  # and the mean over the turns (the pipeline's answer)
_spread = steps_module.spread_under_rotation


def recording(pipeline, inputs, masks, contexts, scores):
    """The pipeline's own turns, recording each answer's two figures on the way."""
    answers, spreads = _spread(pipeline, inputs, masks, contexts, scores)
    given.extend(np.asarray(scores, dtype=float).tolist())
    averaged.extend(np.asarray(answers, dtype=float).tolist())
    return answers, spreads


def main() -> None:
    data, count = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 100
    steps_module.spread_under_rotation = recording
    pipeline = srcrn.Pipeline.default()
    if len(sys.argv) > 3:
        pipeline.spread_angles = tuple(float(a) for a in sys.argv[3].split(","))
    print(f"turns: {', '.join(f'{a:g}' for a in pipeline.spread_angles)} degrees")
    point, mean = [], []
    for path in sorted((data / "images").glob("ISIC_*.jpg"))[:count]:
        image = np.asarray(Image.open(path).convert("RGB"))
        copy = turned(image, 15)
        for x in (image, copy):
            pipeline.predict(jpeg(x), image_id="x")
        point.append(given[-2:])
        mean.append(averaged[-2:])
    for name, pairs in (("point answer", np.array(point)), ("mean over the turns", np.array(mean))):
        change = np.abs(pairs[:, 1] - pairs[:, 0])
        print(
            f"{name}: turned 15 degrees, |dP| median {np.median(change):.3f}, 90th percentile {np.percentile(change, 90):.3f}"
        )
    sources = pd.read_csv(data / "sources.csv", dtype={"image_id": str})
    labels = pd.read_csv(data / "labels.csv", dtype={"image_id": str}).set_index("image_id")["melanoma"]
    val = sorted(sources.loc[sources["isic2017_split"] == "val", "image_id"])
    given.clear()
    averaged.clear()
    context = read_metadata(data / "metadata.csv")
    results = pipeline.predict_many(
        [data / "images" / f"{i}.jpg" for i in val], contexts=[context.get(i) for i in val], batch_size=16
    )
    truth = labels.loc[val].to_numpy().astype(int)
    assert [r.probability for r in results] == averaged  # the pipeline answers the mean
    for name, scores in (("point answer", given), ("mean over the turns", averaged)):
        scores = np.asarray(scores, dtype=float)
        interval = auc_interval(truth, scores)
        print(
            f"{name}: validation AUC {auc(truth, scores):.4f} ({interval.low:.4f}-{interval.high:.4f}), {len(val)} images"
        )


if __name__ == "__main__":
    main()
