"""Issue 33, item 3: would averaging the answer over the spread's turns make it invariant to the
photo's orientation, at no extra cost (the spread already computes P(melanoma) with the lesion's
classifier input turned by -15 and +15 degrees)? For the first N dev images by id and a copy of
each turned by 15 degrees, both answers: the point one (the input as given) and the mean of the
three. Then the same two answers' AUC on the ISIC 2017 validation images (with their metadata),
so that a gain in invariance is not bought with discrimination.

    python experiments/rotation_average.py DEV [N]
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from invariance import jpeg
from PIL import Image

import srcrn
import srcrn.inference.steps as steps_module
from srcrn.data.metadata import read_metadata
from srcrn.stats import auc, auc_interval

seen: list[float] = []  # the mean over the three views of each answer, in the order predicted


def recording(pipeline, inputs, masks, contexts, scores):
    """The pipeline's spread, recording each answer's mean over the views on the way."""
    from srcrn.inference.steps import melanoma_probabilities, rotated

    views = np.concatenate([rotated(inputs, a) for a in pipeline.spread_angles])
    view_masks = (
        np.concatenate([rotated(masks, a, mask=True) for a in pipeline.spread_angles]) if masks is not None else None
    )
    turned = np.asarray(
        melanoma_probabilities(pipeline.classifier, views, view_masks, list(contexts) * len(pipeline.spread_angles))
    )
    every = np.vstack([np.asarray(scores, dtype=float), turned.reshape(len(pipeline.spread_angles), len(scores))])
    seen.extend(every.mean(axis=0).tolist())
    return [(float(lo), float(hi)) for lo, hi in zip(every.min(axis=0), every.max(axis=0))]


def main() -> None:
    data, count = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 100
    steps_module.spread_under_rotation = recording
    pipeline = srcrn.Pipeline.default()
    point, mean = [], []
    for path in sorted((data / "images").glob("ISIC_*.jpg"))[:count]:
        image = np.asarray(Image.open(path).convert("RGB"))
        height, width = image.shape[:2]
        turn = cv2.getRotationMatrix2D((width / 2, height / 2), 15, 1.0)
        copy = cv2.warpAffine(image, turn, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        answers = [pipeline.predict(jpeg(x), image_id="x") for x in (image, copy)]
        point.append([a.probability for a in answers])
        mean.append(seen[-2:])
    for name, pairs in (("point answer", np.array(point)), ("mean of the three views", np.array(mean))):
        change = np.abs(pairs[:, 1] - pairs[:, 0])
        print(
            f"{name}: turned 15 degrees, |dP| median {np.median(change):.3f}, 90th percentile {np.percentile(change, 90):.3f}"
        )
    sources = pd.read_csv(data / "sources.csv", dtype={"image_id": str})
    labels = pd.read_csv(data / "labels.csv", dtype={"image_id": str}).set_index("image_id")["melanoma"]
    val = sorted(sources.loc[sources["isic2017_split"] == "val", "image_id"])
    seen.clear()
    context = read_metadata(data / "metadata.csv")
    results = pipeline.predict_many(
        [data / "images" / f"{i}.jpg" for i in val], contexts=[context.get(i) for i in val], batch_size=16
    )
    truth = labels.loc[val].to_numpy().astype(int)
    for name, scores in (("point answer", [r.probability for r in results]), ("mean of the three views", seen)):
        scores = np.asarray(scores, dtype=float)
        interval = auc_interval(truth, scores)
        print(
            f"{name}: validation AUC {auc(truth, scores):.4f} ({interval.low:.4f}-{interval.high:.4f}), {len(val)} images"
        )


if __name__ == "__main__":
    main()
