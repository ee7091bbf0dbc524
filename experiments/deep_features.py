"""Issue 30, item 4: frozen ImageNet EfficientNet-Lite features of the lesion crops as a stage-2
member, on the default model's folds, beside and stacked with its members.

Each image's lesion is cropped at full resolution around the stage-1 mask (its box grown by
``--margin``, the default model's 0.2), resized to the encoder's own ImageNet size, and passed
through the frozen ImageNet Lite (``LitePooled``) under the four flips; the pooled 1280 features
are averaged over the flips. A logistic regression (standardised inputs, its C chosen by an inner
5-fold CV of each training part: nothing chosen on the held-out fold) is fitted on the same five
folds as the default model's members, giving out-of-fold logits, and once on the whole training
split for the validation split. Stacks (a logistic regression over the members' logits) are
scored out of fold *twice*: fitted on all out-of-fold logits (as ``classify stack`` does), and
nested (fitted on four folds' logits, applied to the fifth), the honest figure.

    python experiments/deep_features.py RUN MASKS [--encoder efficientnet-lite0] [--margin 0.2] [--size 128 [--upsample]] [--levels]

RUN is the default-model run folder (``data/``, ``cv-cnn``, ``cv-features``, ``cv-features-clinical``);
MASKS holds ``<id>_segmentation.png`` of every image (``srcrn predict`` over the data's images).
The features are cached in ``RUN/deep-<encoder>.npz``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from srcrn.data.lesion import lesion_box
from srcrn.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from srcrn.models.encoders import LEVELS, LitePooled
from srcrn.stats import auc, auc_interval

NATIVE = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}


def crop(image: np.ndarray, mask: np.ndarray, margin: float, size: int) -> np.ndarray:
    """The lesion's box (the whole image for an empty mask) resized to size x size."""
    mask = cv2.resize(mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    box = lesion_box(mask, margin)
    if box is not None:
        h, w = mask.shape
        x0, y0, x1, y1 = int(box[0] * w), int(box[1] * h), int(np.ceil(box[2] * w)), int(np.ceil(box[3] * h))
        image = image[y0:y1, x0:x1]
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


@torch.inference_mode()
def features(
    ids: list[str],
    images: Path,
    masks: Path,
    encoder: str,
    margin: float,
    size: int,
    upsample: int | None = None,
    levels: bool = False,
) -> np.ndarray:
    """Flip-averaged pooled ImageNet features [len(ids), 1280] of the lesion crops (size x size,
    then bilinearly resized to ``upsample`` x ``upsample`` when given); with ``levels``, also the
    mean and deviation of each stage in LEVELS."""
    # levels: the model's own pooling (LitePooled's), the head's 1280 first. The table in
    # docs/results/encoders.md was printed with the sample deviation, this is the population one:
    # a constant factor per stage, which the standardised regression does not see.
    network = LitePooled(encoder, "imagenet", levels=levels).eval()
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    out = []
    for start in range(0, len(ids), 16):
        batch = []
        for image_id in ids[start : start + 16]:
            image = np.asarray(Image.open(images / f"{image_id}.jpg").convert("RGB"))
            mask = np.asarray(Image.open(masks / f"{image_id}_segmentation.png"))
            lesion = crop(image, mask, margin, size)
            if upsample:
                lesion = cv2.resize(lesion, (upsample, upsample), interpolation=cv2.INTER_LINEAR)
            batch.append((lesion.astype(np.float32) / 255 - mean) / std)
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous()
        views = [x, x.flip(3), x.flip(2), x.flip(2, 3)]
        out.append(torch.stack([network(v) for v in views]).mean(0).numpy())
        print(f"\r{start + len(batch)}/{len(ids)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return np.concatenate(out)


def deep_model() -> object:
    """Standardised features, L2 logistic regression with C by an inner 5-fold CV on AUC."""
    return make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(Cs=np.logspace(-4, 0, 9), cv=5, scoring="roc_auc", max_iter=3000),
    )


def logit(p: np.ndarray) -> np.ndarray:
    """The log-odds of probabilities (clipped away from 0 and 1)."""
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def shown(truth: np.ndarray, scores: np.ndarray) -> str:
    """AUC with its BCa interval, as the other tables print it."""
    interval = auc_interval(truth, scores)
    return f"{auc(truth, scores):.4f} ({interval.low:.4f}-{interval.high:.4f})"


def stacks(oof: pd.DataFrame, val: pd.DataFrame, members: list[str]) -> tuple[str, str, str]:
    """A stack of ``members``' logits: its out-of-fold AUC fitted on all folds, nested, and on val."""
    truth = oof["truth"].to_numpy()
    x = oof[members].to_numpy()
    whole = LogisticRegression(C=1.0).fit(x, truth)
    nested = np.zeros(len(oof))
    for fold in sorted(oof["fold"].unique()):
        held = (oof["fold"] == fold).to_numpy()
        nested[held] = LogisticRegression(C=1.0).fit(x[~held], truth[~held]).decision_function(x[held])
    val_scores = whole.decision_function(val[members].to_numpy())
    return (
        shown(truth, whole.decision_function(x)),
        shown(truth, nested),
        shown(val["truth"].to_numpy(), val_scores),
    )


def main() -> None:
    """Extract (or read) the features, fit the member, print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("masks", type=Path)
    parser.add_argument("--encoder", default="efficientnet-lite0", choices=sorted(NATIVE))
    parser.add_argument("--margin", type=float, default=0.2)
    parser.add_argument("--size", type=int, default=None, help="crop side (default: the encoder's ImageNet size)")
    parser.add_argument(
        "--upsample", action="store_true", help="resize the --size crops to the encoder's ImageNet size before it"
    )
    parser.add_argument("--levels", action="store_true", help="also the mid-level stages' pooled means and deviations")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", FutureWarning)  # scikit-learn 1.8's notices of LogisticRegressionCV's next API
    run: Path = args.run
    members = {name: pd.read_csv(run / name / "oof.csv") for name in ("cv-cnn", "cv-features", "cv-features-clinical")}
    vals = {name: pd.read_csv(run / name / "val.csv") for name in members}
    oof = members["cv-cnn"][["image_id", "truth", "fold"]].copy()
    val = vals["cv-cnn"][["image_id", "truth"]].copy()
    for name in members:
        oof = oof.merge(members[name][["image_id", "logit"]].rename(columns={"logit": name}), on="image_id")
        val = val.merge(vals[name][["image_id", "logit"]].rename(columns={"logit": name}), on="image_id")
    size = args.size or NATIVE[args.encoder]
    upsample = NATIVE[args.encoder] if args.upsample and size != NATIVE[args.encoder] else None
    cache = run / (
        f"deep-{args.encoder}-m{args.margin}.npz"
        if size == NATIVE[args.encoder]
        else f"deep-{args.encoder}-m{args.margin}-{size}px{f'-to{upsample}' if upsample else ''}.npz"
    )
    if args.levels:
        cache = cache.with_name(cache.stem + "-levels.npz")
    ids = list(oof["image_id"]) + list(val["image_id"])
    if cache.is_file() and list(np.load(cache)["ids"]) == ids:
        table = np.load(cache)["features"]
    else:
        table = features(
            ids, run / "data" / "images", args.masks, args.encoder, args.margin, size, upsample, args.levels
        )
        np.savez(cache, ids=np.array(ids), features=table)
    truth = oof["truth"].to_numpy()
    columns = {"deep": table}
    if args.levels:  # the head's 1280 alone, from the same crops: what the levels add
        columns = {"deep-head": table[:, :1280], "deep": table}
    for name, x in columns.items():
        oof[name], val[name], chosen, final_c = member(x[: len(oof)], x[len(oof) :], oof)
        print(f"{name}: {x.shape[1]} features; C per fold {', '.join(f'{c:.3g}' for c in chosen)}, final {final_c:.3g}")
    print(f"{'levels ' + str(LEVELS) + ' + ' if args.levels else ''}encoder {args.encoder}, {size} px crops{f' resized to {upsample}' if upsample else ''}, margin {args.margin}, {len(oof)} out-of-fold images, {len(val)} validation images")  # fmt: skip
    print()
    print("| model | context | out-of-fold AUC (95 % CI) | nested-stack OOF AUC | validation AUC |")
    print("|---|---|---|---|---|")
    labels = {"cv-cnn": "fine-tuned Lite0 CNN", "cv-features": "lesion features", "deep-head": "frozen ImageNet head features + LR",
              "deep": f"frozen ImageNet {'head + levels' if args.levels else 'features'} + LR"}  # fmt: skip
    for name in ["cv-cnn", "cv-features", *columns]:
        print(f"| {labels[name]} | none | {shown(truth, oof[name].to_numpy())} | | {shown(val['truth'].to_numpy(), val[name].to_numpy())} |")  # fmt: skip
    print(f"| lesion features | age, sex, site | {shown(truth, oof['cv-features-clinical'].to_numpy())} | |"
          f" {shown(val['truth'].to_numpy(), val['cv-features-clinical'].to_numpy())} |")  # fmt: skip
    for deep in columns:
        for combo, context in (
            (["cv-cnn", "cv-features", deep], "none"),
            (["cv-features", deep], "none"),
            (["cv-cnn", "cv-features-clinical", deep], "age, sex, site"),
            (["cv-features-clinical", deep], "age, sex, site"),
        ):
            whole, nested, on_val = stacks(oof, val, combo)
            print(f"| stack of {' + '.join(combo)} | {context} | {whole} | {nested} | {on_val} |")


def member(
    x_oof: np.ndarray, x_val: np.ndarray, oof: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, list[float], float]:
    """The deep member's out-of-fold logits (fitted on the other folds), its validation logits
    (fitted on all training images), the C chosen in each fold and in the final fit."""
    truth = oof["truth"].to_numpy()
    logits = np.zeros(len(oof))
    chosen = []
    for fold in sorted(oof["fold"].unique()):
        held = (oof["fold"] == fold).to_numpy()
        model = deep_model().fit(x_oof[~held], truth[~held])
        chosen.append(float(model[-1].C_[0]))
        logits[held] = model.decision_function(x_oof[held])
    final = deep_model().fit(x_oof, truth)
    return logits, final.decision_function(x_val), chosen, float(final[-1].C_[0])


if __name__ == "__main__":
    main()
