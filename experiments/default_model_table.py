"""The default model's figures as markdown, read from the run folders of
``experiments/default_model.sh`` (its card, the stage-1 evaluation, the step timings, the
bundle's files): what docs/results/default-model.md and the README show.

    python experiments/default_model_table.py RUNS
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def figure(block: dict) -> str:
    low, high = block["ci95"]
    return f"{block['value']:.4f} ({low:.4f}-{high:.4f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path)
    runs = parser.parse_args().runs
    manifest = json.loads((runs / "bundle" / "bundle.json").read_text())
    card = manifest["card"]
    seg, cls = card["segmenter"], card["classifier"]
    print("| stage | figure | value (95 % CI) |")
    print("|---|---|---|")
    for name in ("jaccard", "dice", "accuracy"):
        print(f"| 1: segmenter | validation {name} ({seg['val_images']} images) | {figure(seg['val'][name])} |")
    print(f"| 2: image + age, sex, site | validation AUC | {figure(cls['val_auc'])} |")
    print(f"| 2: image + age, sex, site | out-of-fold AUC ({cls['folds']} folds) | {figure(cls['oof_auc'])} |")
    print(f"| 2: image only | validation AUC | {figure(cls['image_only']['val_auc'])} |")
    print(f"| 2: image only | out-of-fold AUC | {figure(cls['image_only']['oof_auc'])} |")
    if "shipped_without_context" in cls:
        alone = cls["shipped_without_context"]
        print(f"| 2: the shipped model given no context | validation AUC | {figure(alone['val_auc'])} |")
    threshold = cls["threshold"]
    print(
        f"| 2: threshold {threshold['value']:.4f} | validation sensitivity | {figure(threshold['val_sensitivity'])} |"
    )
    print(
        f"| 2: threshold {threshold['value']:.4f} | validation specificity | {figure(threshold['val_specificity'])} |"
    )
    calibration = cls["calibration"]
    raw = (
        f" (uncalibrated {calibration['val_brier_uncalibrated']:.4f} / {calibration['val_ece_uncalibrated']:.4f})"
        if "val_brier_uncalibrated" in calibration
        else ""
    )
    print(
        f"| 2: calibration ({calibration['method']}, fitted out-of-fold) | validation Brier / ECE | "
        f"{calibration['val_brier']:.4f} / {calibration['val_ece']:.4f}{raw} |"
    )
    if "cnn" in cls:
        cnn = cls["cnn"]
        member = f"the stack's image member alone ({cnn['encoder']}, {cnn.get('trained', 'fine-tuned')}, image only)"
        print(f"| 2: {member} | validation AUC | {figure(cnn['val_auc'])} |")
        print(f"| 2: {member} | out-of-fold AUC | {figure(cnn['oof_auc'])} |")
    print()
    print(f"threshold chosen on: {threshold['chosen_on']}; out-of-fold sensitivity "
          f"{threshold['oof_sensitivity']:.4f}, specificity {threshold['oof_specificity']:.4f}; "
          f"validation counts {threshold['val_counts']}")  # fmt: skip
    print(f"parity of int8 against fp32: {json.dumps(manifest.get('parity'))}")
    print()
    print("| file | bytes | SHA-256 |")
    print("|---|---|---|")
    for name, entry in card["files"].items():
        print(f"| `{name}` | {entry['bytes']:,} | `{entry['sha256']}` |")
    print(f"| (in all, with bundle.json) | {sum(e['bytes'] for e in card['files'].values()) + (runs / 'bundle' / 'bundle.json').stat().st_size:,} | |")  # fmt: skip
    print()
    timings = runs / "timings.tsv"
    if timings.is_file():
        print("| step | wall time |")
        print("|---|---|")
        for line in timings.read_text().splitlines():
            step, seconds = line.split("\t")
            print(f"| {step} | {seconds} |")
    print(f"\nstage-1 training: {seg['trained_epochs']} epochs, {seg['cpu_minutes']} min of wall time (summary.json)")
    if "checkpoint" in seg:
        checkpoint = seg["checkpoint"]
        print(f"shipped segmenter weights: epoch {checkpoint['epoch']} of {checkpoint['of']}, {checkpoint['chosen']}")
    print(f"training data: {json.dumps(card['data']['images'])}")


if __name__ == "__main__":
    main()
