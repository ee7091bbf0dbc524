"""The model card of the shipped default model, from the run folders of
``experiments/default_model.sh``: training data (counts per source and licences), recipe and CPU
time, validation Jaccard/Dice (95 % bootstrap intervals over images) and AUC with and without
the clinical context, out-of-fold AUC, the threshold (chosen out-of-fold) with its validation
sensitivity and specificity, calibration (Brier, ECE), intended use and limits. Every figure is
read from a file a command wrote; nothing is typed in.

    python experiments/default_model_card.py RUNS CARD.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pandas as pd
import yaml

from srcrn.atomic import write_json
from srcrn.stats import mean_interval

# What SOURCES.md of the dev data says of each source's terms (the card repeats it for users).
LICENCES = {
    "isic2017": "ISIC Archive (ISIC 2017 challenge): per-image licences mostly CC-0, some CC-BY-NC; "
    "cite Codella et al., ISBI 2018 (arXiv:1710.05006)",
    "ph2": "PH2 (Mendonça et al., IEEE EMBC 2013): distributed by its authors for research and benchmarking",
    "ham10000": "HAM10000 (Tschandl et al., Sci Data 2018): CC BY-NC-SA 4.0",
    "metadata": "ISIC 2019 challenge training metadata (age, sex, site), as the images; cite Combalia et al. "
    "2019 (arXiv:1908.02288)",
}
INTENDED_USE = (
    "Research and education: reproducing and extending the SRCRN two-stage method, and a starting point for "
    "clinician-assist prototypes. Not a medical device and not a diagnosis: every decision stays with a clinician."
)
NO_PRETRAINING = "no ImageNet pretraining: the segmenter learnt from ~2100 images only"
LIMITS = [
    "trained on 256x192 copies of ISIC 2017 images (aspect squashed to 4:3 by a third party) and 768x560 PH2 "
    "images, at 128x128 for segmentation: fine border detail is lost",
    "the populations of ISIC 2017 and PH2: mostly fair-skinned patients from Europe, the USA and Australia; "
    "no validation on darker skin types, on other dermoscopes or on clinical (non-dermoscopic) photographs",
    "binary melanoma vs everything else; seborrheic keratoses and naevi are both 'benign'",
    "figures on the ISIC 2017 test split are not measured here (it is kept apart for a final evaluation)",
    "the non-commercial terms of parts of the training data (CC-BY-NC, CC BY-NC-SA) may bind the weights",
]


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def data_section(runs: Path) -> dict:
    data = runs / "data"
    labels = pd.read_csv(data / "labels.csv", dtype={"image_id": str})
    sources = pd.read_csv(data / "sources.csv", dtype={"image_id": str})
    split = pd.read_csv(runs / "seg" / "split.csv", dtype={"image_id": str})
    table = labels.merge(sources, on="image_id", how="left").merge(split, on="image_id")
    counts: dict = {}
    for (subset, source), rows in table.groupby(["subset", "source"]):
        counts.setdefault(subset, {})[source] = {"images": len(rows), "melanoma": int(rows["melanoma"].sum())}
    metadata = pd.read_csv(data / "metadata.csv", dtype={"image": str})
    return {
        "images": {subset: dict(sorted(by.items())) for subset, by in sorted(counts.items())},
        "metadata_rows": len(metadata),
        "left_out": "the 40 images embedded in srcrn (the demo's), the ISIC 2017 test split, near-duplicates "
        "of validation images",
        "licences": {s: LICENCES[s] for s in sorted(set(sources["source"])) if s in LICENCES}
        | {"metadata": LICENCES["metadata"]},
    }


def encoder_weights(config: dict) -> str:
    """Where the segmenter's encoder started from, as the card says it."""
    from srcrn.models.encoders import WEIGHTS_SOURCE

    encoder, weights = config.get("encoder", "resnet50"), config.get("encoder_weights", "none")
    if weights == "none":
        return "random initialisation"
    return WEIGHTS_SOURCE.get(encoder, weights) if weights == "imagenet" else weights


def checkpoint_section(folder: Path, trained: int) -> dict:
    """Which epoch the shipped segmenter's weights are from, and whether that was chosen on validation."""
    import torch

    epochs = {
        name: torch.load(folder / f"{name}.ckpt", map_location="cpu", weights_only=True)["epoch"] + 1
        for name in ("last", "best")
    }
    if epochs["last"] == trained:
        return {"epoch": trained, "of": trained, "chosen": "the last epoch's weights (not chosen on validation)"}
    # A run of srcrn before the last.ckpt fix (Lightning 2.6's save_last): its last.ckpt is the best
    # epoch's, i.e. chosen by validation Jaccard.
    chosen = "the best validation Jaccard's epoch (val-selected: its validation figures are optimistic)"
    if epochs["last"] != epochs["best"]:
        chosen = "an earlier epoch's, neither the last nor the best validation Jaccard's"
    return {"epoch": epochs["last"], "of": trained, "chosen": chosen}


def segmentation_section(runs: Path) -> dict:
    config = yaml.safe_load((runs / "seg" / "config.yaml").read_text())
    config.setdefault("encoder", "resnet50")
    summary = read(runs / "seg" / "summary.json")
    per_image = pd.read_csv(runs / "seg" / "eval-val" / "per_image.csv")
    figures = {}
    for metric in ("jaccard", "dice", "accuracy"):
        interval = mean_interval(per_image[metric].to_numpy())
        figures[metric] = {"value": float(per_image[metric].mean()), "ci95": [interval.low, interval.high]}
    return {
        "recipe": {
            k: config[k] for k in ("recipe", "arch", "encoder", "stride", "image_size", "epochs", "batch_size", "loss")
        },
        "encoder_weights": encoder_weights(config),
        "trained_epochs": summary["epochs"],
        "checkpoint": checkpoint_section(runs / "seg" / "checkpoints", summary["epochs"]),
        # All attempts where the run recorded them (srcrn >= this version); else the last one's.
        "cpu_minutes": round(summary.get("wall_seconds_all_attempts", summary["wall_seconds"]) / 60, 1),
        "cpu_minutes_covers": "every attempt"
        if "wall_seconds_all_attempts" in summary
        else ("the last attempt only (the run was resumed; an earlier srcrn did not record earlier attempts)"),
        "machine": "2 CPU cores, no GPU",
        "val_images": len(per_image),
        "val": figures,
        "postprocessing": {"tta": config["tta"], "keep_largest": config["keep_largest"]},
    }


def _auc(block: dict) -> dict:
    return {"value": block["auc"], "ci95": [block["auc_ci95_low"], block["auc_ci95_high"]]}


def _threshold(threshold: dict) -> dict:
    val = threshold["val"]
    return {
        "value": threshold["value"],
        "chosen_on": f"{threshold['chosen_on']} for {threshold['target_sensitivity']:.0%} sensitivity",
        "oof_sensitivity": threshold["oof"]["sensitivity"],
        "oof_specificity": threshold["oof"]["specificity"],
        "val_sensitivity": {
            "value": val["sensitivity"],
            "ci95": [val["sensitivity_ci95_low"], val["sensitivity_ci95_high"]],
        },
        "val_specificity": {
            "value": val["specificity"],
            "ci95": [val["specificity_ci95_low"], val["specificity_ci95_high"]],
        },
        "val_counts": {k: val[k] for k in ("tp", "fn", "tn", "fp")},
    }


# The stage-2 candidates of the shipped model, with and without the clinical context: the
# lesion-feature model alone, and (when experiments/default_model.sh trained it) its stack with
# the ImageNet image member (MEMBER: the linear probe or the fine-tuned CNN). The one with the
# higher out-of-fold AUC with context is shipped.
CANDIDATES = {"features": ("cv-features-clinical", "cv-features"), "stack": ("stack-clinical", "stack")}


def chosen_stage2(runs: Path) -> str:
    """The candidate with the higher out-of-fold AUC with clinical context (never the validation's)."""
    scores = {
        name: read(runs / folders[0] / "cv.json")["oof"]["auc"]
        for name, folders in CANDIDATES.items()
        if (runs / folders[0] / "cv.json").is_file() and (runs / folders[1] / "cv.json").is_file()
    }
    return max(scores, key=lambda name: scores[name])


def classifier_section(runs: Path) -> dict:
    shipped = chosen_stage2(runs)
    with_context, image_only_folder = CANDIDATES[shipped]
    cv = read(runs / with_context / "cv.json")
    image_only = read(runs / image_only_folder / "cv.json")
    features = read(runs / "cv-features-clinical" / "cv.json")
    config = yaml.safe_load((runs / "cv-features-clinical" / "config.yaml").read_text())
    section = {
        # Relative to RUNS (the card ships inside the bundle: no machine's paths in it).
        "model": os.path.relpath(cv["val"]["model"] if shipped == "features" else runs / with_context / "model", runs),
        "input": {k: config[k] for k in ("input", "margin", "image_size")},
        "clinical_fields": config["clinical"],
        "folds": features["folds"],
        "oof_auc": _auc(cv["oof"]),
        "val_auc": _auc(cv["val"]),
        "image_only": {"oof_auc": _auc(image_only["oof"]), "val_auc": _auc(image_only["val"])},
        "threshold": _threshold(cv["threshold"]),
        "selection": {
            name: {"oof_auc_with_context": read(runs / folders[0] / "cv.json")["oof"]["auc"]}
            for name, folders in CANDIDATES.items()
            if (runs / folders[0] / "cv.json").is_file()
        },
        "caveats": features["caveats"],
    }
    if shipped == "features":
        return section | {
            "kind": "lesion features + clinical context, gradient boosting (classify cv --model features --clinical all)",
            "calibration": features["calibration"]
            | {
                "val_brier": cv["val"]["brier_calibrated"],
                "val_ece": cv["val"]["ece_calibrated"],
                "val_brier_uncalibrated": cv["val"]["brier_raw"],
                "val_ece_uncalibrated": cv["val"]["ece_raw"],
            },
        }
    # The stack's image member: its cv folder is the first of the stack's members.
    member = Path(yaml.safe_load((runs / with_context / "config.yaml").read_text())["members"][0])
    member = runs / member.name  # the run folder may have moved since
    cnn = yaml.safe_load((member / "config.yaml").read_text())
    cnn_cv = read(member / "cv.json")
    from srcrn.models.encoders import WEIGHTS_SOURCE

    if cnn.get("probe"):
        pooled = (
            "the last layer's average and each mid-level stage's mean and deviation"
            if cnn.get("pooling") == "levels"
            else "the pooled features"
        )
        how = (
            f"{cnn['encoder']} frozen (ImageNet), its head a logistic regression on {pooled} of the "
            f"lesion crops seen at {cnn['backbone_size']} px (classify cv --recipe probe)"
        )
    else:
        how = f"{cnn['encoder']} fine-tuned on the lesion crops (classify cv --model cnn --recipe strong)"
    return section | {
        "kind": f"stack: {how} + lesion features and clinical context (gradient boosting); a logistic regression "
        "on their out-of-fold logits",
        "cnn": {
            "encoder": cnn["encoder"],
            "weights": WEIGHTS_SOURCE.get(cnn["encoder"], cnn["weights"])
            if cnn["weights"] == "imagenet"
            else cnn["weights"],
            "trained": "frozen; head fitted as a linear probe" if cnn.get("probe") else "fine-tuned",
            "epochs": 0 if cnn.get("probe") else cnn["epochs"],
            "oof_auc": _auc(cnn_cv["oof"]),
            "val_auc": _auc(cnn_cv["val"]),
        },
        "stacker": {"weights": cv["weights"], "intercept": cv["intercept"]},
        "calibration": {
            "method": "the stacker (a logistic regression fitted on the members' out-of-fold logits)",
            "fitted_on": "out-of-fold",
            "val_brier": cv["val"]["brier_raw"],
            "val_ece": cv["val"]["ece_raw"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("card", type=Path)
    arguments = parser.parse_args()
    runs = arguments.runs
    data = data_section(runs)
    val_melanomas = sum(s["melanoma"] for s in data["images"]["val"].values())
    segmenter = segmentation_section(runs)
    pretrained = segmenter["encoder_weights"] != "random initialisation"
    card = {
        "name": "srcrn default model",
        "built_by": "experiments/default_model.sh",
        "intended_use": INTENDED_USE,
        "not_a_diagnostic_device": True,
        "data": data,
        "segmenter": segmenter,
        "classifier": classifier_section(runs),
        "limits": [
            *LIMITS,
            *([] if pretrained else [NO_PRETRAINING]),
            f"the validation split has {val_melanomas} melanomas: the intervals are wide",
        ],
        "selection": "stage 1: the recipe chosen on the validation split (its Jaccard there is val-selected, "
        "slightly optimistic); stage 2: kind, inputs and threshold chosen by 5-fold cross-validation on the "
        "training split, the validation split (ISIC 2017 official) only measures it",
    }
    write_json(arguments.card, card)
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
