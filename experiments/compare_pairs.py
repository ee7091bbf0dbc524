"""The follow-up comparison measured on known transformations of validation images (no public
two-visit dermoscopy set exists): each image becomes a BEFORE/AFTER pair by synthetic growth
(the lesion dilated by 0-8 px, its own border colour blended in), then a random rotation
(+-40 deg), scale (0.85-1.15), shift, mirror (1 in 4) and white balance/brightness change; plus
pairs of two different lesions, which must all be flagged.

    python experiments/compare_pairs.py DATA OUT.json [--pairs 200] [--model BUNDLE]

Without --model the answers are built from the ground-truth masks (the comparison alone);
with it both visits go through the model (its segmentation errors included).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from srcrn.answers.compare import compare
from test_compare import _answer, _grow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    rng = np.random.default_rng(arguments.seed)
    sources = pd.read_csv(arguments.data / "sources.csv", dtype=str)
    ids = sorted(sources.loc[sources["isic2017_split"] == "val", "image_id"])[: arguments.pairs]
    pipeline = None
    if arguments.model is not None:
        import srcrn

        pipeline = srcrn.Pipeline.from_bundle(arguments.model)
    rows, flagged, seconds = [], [], []
    for k, image_id in enumerate(ids):
        image = np.asarray(Image.open(arguments.data / "images" / f"{image_id}.jpg").convert("RGB"))
        mask = np.asarray(Image.open(arguments.data / "masks" / f"{image_id}_segmentation.png")) > 0
        height, width = mask.shape
        grow = int(rng.integers(0, 9))
        painted, grown = _grow(image, mask, grow) if grow else (image, mask)
        angle, scale = float(rng.uniform(-40, 40)), float(rng.uniform(0.85, 1.15))
        mirror = bool(rng.random() < 0.25)
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
        matrix[:, 2] += rng.uniform(-10, 10, size=2)
        source, source_mask = (painted[:, ::-1], grown[:, ::-1]) if mirror else (painted, grown)
        after = cv2.warpAffine(np.ascontiguousarray(source), matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
        after_mask = cv2.warpAffine(np.ascontiguousarray(source_mask).astype(np.uint8), matrix, (width, height),
                                    flags=cv2.INTER_NEAREST) > 0  # fmt: skip
        gains = rng.uniform(0.85, 1.15, size=3)
        after = np.clip(after * gains + rng.uniform(-15, 15), 0, 255).astype(np.uint8)
        lost = 1 - after_mask.sum() / (source_mask.sum() * scale**2)  # the lesion rotated out of the frame
        started = time.perf_counter()
        if pipeline is None:
            comparison = compare(_answer(image, mask, "before"), _answer(after, after_mask, "after"))
        else:
            comparison = pipeline.compare(image, after)
        seconds.append(time.perf_counter() - started)
        r = comparison.registration
        truth = 100 * (grown.sum() / mask.sum() - 1)
        rows.append({
            "image_id": image_id, "grow_px": grow, "angle": angle, "scale": scale, "mirror": mirror,
            "reliable": r.reliable, "mirror_found": r.mirrored,
            "rotation_error": abs(((-angle if mirror else angle) - r.rotation_degrees + 180) % 360 - 180)
            if not mirror else abs(abs(r.rotation_degrees) - abs(angle)),
            "scale_error_percent": 100 * abs(r.scale * scale - 1),
            "area_change_truth": truth, "area_change_found": comparison.area_change_percent,
            "lesion_cut_off": lost > 0.01,
        })  # fmt: skip
        other = ids[(k + len(ids) // 2) % len(ids)]
        different = np.asarray(Image.open(arguments.data / "images" / f"{other}.jpg").convert("RGB"))
        different = cv2.resize(different, (width, height))
        other_mask = cv2.resize(
            (np.asarray(Image.open(arguments.data / "masks" / f"{other}_segmentation.png")) > 0).astype(np.uint8),
            (width, height), interpolation=cv2.INTER_NEAREST) > 0  # fmt: skip
        if pipeline is None:
            flagged.append(
                not compare(_answer(image, mask, "a"), _answer(different, other_mask, "b")).registration.reliable
            )
        else:
            flagged.append(not pipeline.compare(image, different).registration.reliable)
    table = pd.DataFrame(rows)
    kept = table[table["reliable"] & ~table["lesion_cut_off"]]
    error = (kept["area_change_found"] - kept["area_change_truth"]).abs()
    summary = {
        "pairs": len(table),
        "mode": "model " + str(arguments.model) if arguments.model else "ground-truth masks",
        "reliable": float(table["reliable"].mean()),
        "mirror_found": float((table["mirror"] == table["mirror_found"]).mean()),
        "rotation_error_median_deg": float(table.loc[table["reliable"], "rotation_error"].median()),
        "rotation_error_p90_deg": float(table.loc[table["reliable"], "rotation_error"].quantile(0.9)),
        "scale_error_median_percent": float(table.loc[table["reliable"], "scale_error_percent"].median()),
        "area_change_error_median_points": float(error.median()),
        "area_change_error_p90_points": float(error.quantile(0.9)),
        "pairs_with_lesion_cut_off": int(table["lesion_cut_off"].sum()),
        "different_lesion_pairs": len(flagged),
        "different_lesion_flagged": float(np.mean(flagged)),
        "seconds_per_comparison_median": float(np.median(seconds)),
    }
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(summary, indent=2))
    table.to_csv(arguments.out.with_suffix(".csv"), index=False)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
