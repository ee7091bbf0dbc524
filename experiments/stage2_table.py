"""Tables and figures of the stage-2 experiment (docs/results/classification.md), read from the
run folders of experiments/stage2.sh, so that every number in the document is one the runs wrote.

    python experiments/stage2_table.py [runs/stage2 [docs/results/classification [DATA]]]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from srcrn.evaluation.calibration import calibration_metrics, fit_calibration, reliability_curve
from srcrn.stats import auc, auc_interval, paired_auc_difference_interval

MODELS = (
    ("cv-strong", "strong recipe (fine-tuned, AdamW, augmentation, EMA, TTA)"),
    ("cv-features", "lesion features (version 2: 139) + gradient boosting"),
    ("ensemble", "stack: strong + features v2 (logistic regression on out-of-fold logits)"),
    ("cv-features-v1", "lesion features (version 1: 83, without colour structure) + gradient boosting"),
    ("ensemble-v1", "stack: strong + features v1"),
    # Clinical context (experiments/stage2_clinical.sh): image-only rows above, image + metadata below.
    ("cv-clinical", "clinical context only (age, sex, site) + gradient boosting: no image"),
    ("cv-features-clinical", "lesion features v2 + clinical context + gradient boosting"),
    ("ensemble-clinical", "stack: strong + (features v2 + clinical context)"),
    ("ensemble-three", "stack: strong + features v2 + clinical context only"),
)
PAPER = ("paper", "paper recipe (frozen SRCRN encoder + new head, SGD): final model only")
PAIRS = (
    ("cv-features", "cv-features-v1"),
    ("ensemble", "ensemble-v1"),
    ("cv-features", "cv-strong"),
    ("ensemble", "cv-strong"),
    ("ensemble", "cv-features"),
    ("cv-strong", "paper"),
    ("cv-features", "paper"),
    ("ensemble", "paper"),
    ("cv-features-clinical", "cv-features"),
    ("cv-features-clinical", "cv-clinical"),
    ("cv-clinical", "cv-strong"),
    ("ensemble-clinical", "ensemble"),
    ("ensemble-clinical", "cv-features-clinical"),
    ("ensemble-three", "ensemble-clinical"),
)


def _table(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / name, dtype={"image_id": str}).sort_values("image_id").reset_index(drop=True)


def _interval(labels: np.ndarray, scores: np.ndarray) -> str:
    ci = auc_interval(labels, scores)
    return f"{auc(labels, scores):.3f} [{ci.low:.3f}, {ci.high:.3f}]"


ROOT = Path(__file__).resolve().parents[1]
SUBGROUP_MODELS = ("cv-features", "cv-clinical", "cv-features-clinical", "ensemble", "ensemble-three")


def _subgroups(data: Path, oof: dict[str, pd.DataFrame]) -> list[str]:
    """Out-of-fold AUC within subsets of the training split, to see how much of the clinical
    context's gain is the source it marks: PH2 has no metadata, and in ISIC data the youngest
    patients are mostly one series of benign naevi."""
    from srcrn.data.metadata import find_metadata, read_metadata

    found = find_metadata(data)
    if found is None or not all(k in oof for k in ("cv-features", "cv-features-clinical")):
        return []
    contexts = read_metadata(found)
    ids = oof["cv-features"]["image_id"]
    ages = np.array([contexts[i].age if i in contexts and contexts[i].age is not None else np.nan for i in ids])
    subsets = {
        "all training images": np.ones(len(ids), bool),
        "with a metadata row": np.array([i in contexts for i in ids]),
        "age known": ~np.isnan(ages),
        "age known, 20 or older": ~np.isnan(ages) & (ages >= 20),
        "age known, 40 or older": ~np.isnan(ages) & (ages >= 40),
    }
    present = [m for m in SUBGROUP_MODELS if m in oof]
    lines = ["", "| out-of-fold AUC within | images (melanoma) | " + " | ".join(present) + " |"]
    lines.append("|---|---|" + "---|" * len(present))
    for name, keep in subsets.items():
        truth = oof["cv-features"]["truth"].to_numpy()[keep]
        cells = [f"{auc(truth, oof[m]['logit'].to_numpy()[keep]):.3f}" for m in present]
        lines.append(f"| {name} | {keep.sum()} ({int(truth.sum())}) | " + " | ".join(cells) + " |")
    return lines


def main(runs: Path, out: Path, data: Path = ROOT.parent / "shared" / "data" / "isic-dev") -> None:
    out.mkdir(parents=True, exist_ok=True)
    present = [(k, d) for k, d in MODELS if (runs / k / "cv.json").is_file()]
    lines = [
        "| model | out-of-fold AUC [95 % CI] (n) | per-fold AUC | validation AUC [95 % CI] (n) "
        "| val Brier: raw / temperature / Platt | val ECE: raw / temperature / Platt | stored calibration "
        "| training wall s (6 runs) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    oof, val = {}, {}
    for key, description in present:
        result = json.loads((runs / key / "cv.json").read_text())
        oof[key], val[key] = _table(runs / key, "oof.csv"), _table(runs / key, "val.csv")
        o, v = oof[key], val[key]
        folds = ", ".join(
            f"{auc(g['truth'].to_numpy(), g['logit'].to_numpy()):.3f}" for _, g in o.groupby("fold", sort=True)
        )
        truth = v["truth"].to_numpy()
        if "melanoma_calibrated" in v:
            # Both calibrations fitted on the out-of-fold logits, measured on the validation split.
            scores = [v["melanoma"].to_numpy()] + [
                fit_calibration(o["truth"].to_numpy(), o["logit"].to_numpy(), m)(v["logit"].to_numpy())
                for m in ("temperature", "platt")
            ]
            measured = [calibration_metrics(truth, s) for s in scores]
            stored = result["calibration"]
            method = f"{stored['method']} (scale {stored['scale']:.3f}, bias {stored['bias']:.3f})"
            brier = " / ".join(f"{m['brier']:.3f}" for m in measured)
            ece = " / ".join(f"{m['ece']:.3f}" for m in measured)
        else:  # the stack's logistic regression is its own (Platt-like) calibration
            raw = calibration_metrics(truth, v["melanoma"].to_numpy())
            method = "the stacker (a logistic regression)"
            brier, ece = f"{raw['brier']:.3f}", f"{raw['ece']:.3f}"
        runs_ = sorted((runs / key).glob("*/summary.json"))
        walls = [json.loads(r.read_text()).get("wall_seconds") for r in runs_]
        wall = f"{sum(walls):.0f}" if walls and all(w is not None for w in walls) else "-"
        lines.append(
            f"| {key}: {description} | {_interval(o['truth'].to_numpy(), o['logit'].to_numpy())} ({len(o)}) "
            f"| {folds} | {_interval(v['truth'].to_numpy(), v['logit'].to_numpy())} ({len(v)}) "
            f"| {brier} | {ece} | {method} | {wall} |"
        )
    paper = runs / PAPER[0] / "eval-val" / "per_image.csv"
    if paper.is_file():
        table = pd.read_csv(paper, dtype={"image_id": str}).sort_values("image_id").reset_index(drop=True)
        truth, score = table["truth"].to_numpy(), table["melanoma"].to_numpy()
        val[PAPER[0]] = table.assign(logit=score)  # AUC and its intervals use the ranking only
        wall = json.loads((runs / PAPER[0] / "summary.json").read_text())["wall_seconds"]
        raw = calibration_metrics(truth, score)
        lines.append(
            f"| {PAPER[0]}: {PAPER[1]} | not run | | {_interval(truth, score)} ({len(table)}) "
            f"| {raw['brier']:.3f} / - / - | {raw['ece']:.3f} / - / - | none | {wall:.0f} (1 run) |"
        )
    lines += [
        "",
        "| A - B | out-of-fold AUC difference [95 % paired CI] | validation AUC difference [95 % paired CI] |",
    ]
    lines += ["|---|---|---|"]
    for a, b in PAIRS:
        if a not in val or b not in val:
            continue
        cells = []
        for tables in (oof, val):
            if a not in tables or b not in tables:
                cells.append("not run")
                continue
            first, second = tables[a], tables[b]
            assert (first["image_id"] == second["image_id"]).all()
            y = first["truth"].to_numpy()
            d = auc(y, first["logit"].to_numpy()) - auc(y, second["logit"].to_numpy())
            ci = paired_auc_difference_interval(y, first["logit"].to_numpy(), second["logit"].to_numpy())
            cells.append(f"{d:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}]")
        lines.append(f"| {a} - {b} | {cells[0]} | {cells[1]} |")
    aux = runs / "strong-aux" / "eval-val" / "per_image.csv"
    if aux.is_file() and "cv-strong" in val:
        joint = pd.read_csv(aux, dtype={"image_id": str}).sort_values("image_id").reset_index(drop=True)
        plain = val["cv-strong"]
        assert (joint["image_id"] == plain["image_id"]).all()
        y = plain["truth"].to_numpy()
        ci = paired_auc_difference_interval(y, joint["melanoma"].to_numpy(), plain["logit"].to_numpy())
        d = auc(y, joint["melanoma"].to_numpy()) - auc(y, plain["logit"].to_numpy())
        lines += [
            "",
            "| strong recipe, final model | backbone | validation AUC [95 % CI] |",
            "|---|---|---|",
            f"| cv-strong/final | SRCRN encoder (segmentation only) | {_interval(y, plain['logit'].to_numpy())} |",
            f"| strong-aux | SRCRN encoder trained with --aux-melanoma 0.5 | {_interval(y, joint['melanoma'].to_numpy())} |",
            f"| difference (aux - plain) | | {d:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}] (paired) |",
        ]
    lines += _subgroups(data, oof)
    text = "\n".join(lines) + "\n"
    (out / "tables.md").write_text(text)
    print(text)

    figure, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for key in val:
        for axis, tables in zip(axes, (oof, val)):
            if key not in tables:
                continue
            t = tables[key]
            fpr, tpr, _ = roc_curve(t["truth"], t["logit"])
            axis.plot(fpr, tpr, lw=1.5, label=f"{key} {auc(t['truth'].to_numpy(), t['logit'].to_numpy()):.3f}")
    for axis, title in zip(axes, ("out-of-fold, training split", "validation split")):
        axis.plot([0, 1], [0, 1], "--", color="grey", lw=1)
        axis.set(xlabel="1 - specificity", ylabel="sensitivity", title=title)
        axis.legend(fontsize=7, loc="lower right")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out / "roc.png", dpi=110)

    calibrated = [k for k, _ in present if "melanoma_calibrated" in val[k]]
    figure, axes = plt.subplots(1, len(calibrated), figsize=(3.6 * len(calibrated), 3.6), squeeze=False)
    for axis, key in zip(axes[0], calibrated):
        t = val[key]
        axis.plot([0, 1], [0, 1], "--", color="grey", lw=1)
        for column, name in (("melanoma", "raw"), ("melanoma_calibrated", "calibrated")):
            predicted, observed = reliability_curve(t["truth"].to_numpy(), t[column].to_numpy())
            axis.plot(predicted, observed, "o-", ms=3, label=name)
        axis.set(
            title=f"{key} (validation)", xlabel="mean predicted P", ylabel="melanoma rate", xlim=(0, 1), ylim=(0, 1)
        )
        axis.legend(fontsize=7)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out / "reliability.png", dpi=110)


if __name__ == "__main__":
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/stage2"),
        Path(sys.argv[2]) if len(sys.argv) > 2 else Path("docs/results/classification"),
        *([Path(sys.argv[3])] if len(sys.argv) > 3 else []),
    )
