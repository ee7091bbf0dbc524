"""Issue 33, item 4: the thresholds of ABCD "B" and "C" chosen on data, as "A"'s per-axis threshold
was (experiments/abcd_thresholds.py). For every assessed dev image of a ``srcrn predict`` run,
measured as the pipeline measures (its predicted mask, the largest region with holes filled, at
most 1,024 px): each border segment's abrupt share (``border_steps``) for each candidate band, and
the share of the lesion's pixels nearest to each reference colour (``colour_shares``). Then for
every candidate:

- B = the segments whose abrupt share reaches ABRUPT_SHARE (candidates of band and share);
- C = the reference colours holding at least COLOUR_SHARE of the lesion's pixels;

its AUC against the melanoma label on the official ISIC 2017 training split (where the candidate
is chosen: the highest AUC) and on the validation split (reported, not used), and its mean.

    srcrn predict DEV/images --out PREDICTED
    python experiments/abcd_bc_thresholds.py DEV PREDICTED
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from srcrn.data.images import read_image, read_mask
from srcrn.morphology.measurements import (
    ABRUPT_SHARE,
    BORDER_BAND,
    COLOUR_SHARE,
    border_steps,
    colour_shares,
    lesion_region,
)
from srcrn.stats import auc

WORKING_SIDE = 1024  # as the pipeline measures
BANDS = (0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.10)
ABRUPT = (0.3, 0.4, 0.5, 0.6, 0.7)
COLOUR = (0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.10, 0.15)


def measured(data: Path, predicted: Path, ids: list[str]) -> tuple[dict[float, np.ndarray], np.ndarray]:
    """Per image: the border segments' abrupt shares for each band [N, 8], and the colour shares [N, 6]."""
    steps: dict[float, list[np.ndarray]] = {band: [] for band in BANDS}
    colours = []
    for number, image_id in enumerate(ids):
        image = read_image(data / "images" / f"{image_id}.jpg")
        mask = read_mask(predicted / "masks" / f"{image_id}_segmentation.png") > 0
        if mask.shape != image.shape[:2]:
            mask = (
                cv2.resize(mask.astype(np.uint8), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
            )
        scale = min(1.0, WORKING_SIDE / max(image.shape[:2]))
        if scale < 1:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        region = lesion_region(mask)[0]
        for band in BANDS:
            steps[band].append(border_steps(image, region, band))
        colours.append(colour_shares(image, region))
        print(f"\r{number + 1}/{len(ids)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {band: np.array(rows) for band, rows in steps.items()}, np.array(colours)


def table(name: str, candidates: dict[str, np.ndarray], truth: np.ndarray, train: np.ndarray, current: str) -> None:
    """Each candidate's AUC on training and validation and its training mean; the training's choice."""
    print(f"| {name} | AUC, training | AUC, validation | mean, training |")
    print("|---|---|---|---|")
    best = (-1.0, "")
    for label, score in candidates.items():
        figures = [auc(truth[part], score[part].astype(float)) for part in (train, ~train)]
        best = max(best, (figures[0], label))
        shown = f"**{label}** (now)" if label == current else label
        print(f"| {shown} | {figures[0]:.3f} | {figures[1]:.3f} | {score[train].mean():.2f} |")
    print(f"chosen on the training split: {best[1]} (AUC {best[0]:.3f})\n")


def main() -> None:
    """Measure every assessed image once, then print both tables."""
    data, predicted = Path(sys.argv[1]), Path(sys.argv[2])
    rows = pd.read_csv(predicted / "predictions.csv", dtype={"image_id": str})
    rows = rows[rows["status"] == "assessed"][["image_id"]]
    rows = rows.merge(pd.read_csv(data / "labels.csv", dtype={"image_id": str}), on="image_id")
    rows = rows.merge(pd.read_csv(data / "sources.csv", dtype={"image_id": str}), on="image_id")
    rows = rows[rows["isic2017_split"].isin(["train", "val"])].reset_index(drop=True)
    truth, train = rows["melanoma"].to_numpy(int), (rows["isic2017_split"] == "train").to_numpy()
    print(f"{len(rows)} assessed dev images; training {int(train.sum())}, validation {int((~train).sum())}\n")
    steps, colours = measured(data, predicted, list(rows["image_id"]))
    border = {
        f"band {band:.2f}, abrupt share {share:.1f}": (np.nan_to_num(steps[band], nan=-1.0) >= share).sum(axis=1)
        for band in BANDS
        for share in ABRUPT
    }
    table("B: band, abrupt share", border, truth, train, f"band {BORDER_BAND:.2f}, abrupt share {ABRUPT_SHARE:.1f}")
    counts = {f"{share:.3f}": (colours >= share).sum(axis=1) for share in COLOUR}
    table("C: colour share", counts, truth, train, f"{COLOUR_SHARE:.3f}")


if __name__ == "__main__":
    main()
