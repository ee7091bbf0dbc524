"""Issue 33, item 4: do the ABCD readings measure? Each component's AUC against the melanoma label
on the dev images, with the ground-truth masks and with the masks a ``srcrn predict`` run
predicted, and each component's distribution for melanomas and the rest.

    srcrn predict DEV/images --out PREDICTED          # the shipped model (its measurement columns)
    python experiments/abcd_validity.py DEV PREDICTED/predictions.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from srcrn.data.images import read_image, read_mask
from srcrn.morphology.measurements import measure_lesion
from srcrn.stats import auc, auc_interval

COMPONENTS = ("abcd_asymmetry", "abcd_border", "abcd_colours", "abcd_partial_score", "compactness",
              "asymmetry_major_axis")  # fmt: skip
WORKING_SIDE = 1024  # as the pipeline measures


def ground_truth_table(data: Path) -> pd.DataFrame:
    """Each dev image's measurements with its ground-truth mask, at the pipeline's working size."""
    rows = []
    for image_path in sorted((data / "images").glob("*")):
        mask_path = data / "masks" / f"{image_path.stem}_segmentation.png"
        if not mask_path.is_file():
            continue
        image = read_image(image_path)
        scale = min(1.0, WORKING_SIDE / max(image.shape[:2]))
        mask = read_mask(mask_path, expected_size=(image.shape[1], image.shape[0])) > 0
        if scale < 1:
            import cv2

            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        rows.append({"image_id": image_path.stem, **measure_lesion(mask, image, scale=1 / scale).to_dict()})
    return pd.DataFrame(rows)


def report(table: pd.DataFrame, labels: pd.Series, name: str) -> None:
    """Print each component's AUC (95 % CI) and its mean for melanomas and the rest."""
    truth = labels.reindex(table["image_id"]).to_numpy()
    keep = ~np.isnan(truth)
    print(f"{name}: {int(keep.sum())} images, {int(truth[keep].sum())} melanomas")
    print("| component | AUC (95 % CI) | mean, melanomas | mean, others |")
    print("|---|---|---|---|")
    for column in COMPONENTS:
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(float)
        ok = keep & ~np.isnan(values)
        interval = auc_interval(truth[ok].astype(int), values[ok])
        value = auc(truth[ok].astype(int), values[ok])
        print(f"| {column} | {value:.3f} ({interval.low:.3f}-{interval.high:.3f}) | "
              f"{values[ok][truth[ok] == 1].mean():.2f} | {values[ok][truth[ok] == 0].mean():.2f} |")  # fmt: skip


def main() -> None:
    """Both tables: ground-truth masks, then the predicted ones."""
    data, predicted = Path(sys.argv[1]), Path(sys.argv[2])
    labels = pd.read_csv(data / "labels.csv", dtype={"image_id": str}).set_index("image_id")["melanoma"]
    report(ground_truth_table(data), labels, "ground-truth masks")
    report(pd.read_csv(predicted, dtype={"image_id": str}), labels, "predicted masks (srcrn predict)")


if __name__ == "__main__":
    main()
