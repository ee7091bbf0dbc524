"""Issue 30, item 4: the table of experiments/frozen_batch_study.sh: for each batch size, the
frozen ImageNet Lite0 with the paper's head and optimiser, its out-of-fold AUC (5 folds, the
last epoch's weights) with its interval, and the validation AUC of the model trained on the
whole training split.

    python experiments/frozen_table.py RUNS
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    """One Markdown row per finished batch size, in batch order."""
    runs = Path(sys.argv[1])
    print("| batch | out-of-fold AUC (95 % CI) | per fold | validation AUC (95 % CI) |")
    print("|---|---|---|---|")
    for folder in sorted(runs.glob("frozen-lite0-b*"), key=lambda f: int(f.name.rsplit("b", 1)[1])):
        if not (folder / "cv.json").is_file():
            continue
        cv = json.loads((folder / "cv.json").read_text())
        oof, val = cv["oof"], cv.get("val") or {}
        folds = ", ".join(f"{a:.3f}" for a in cv["per_fold_auc"])
        shown = f"{val['auc']:.4f} ({val['auc_ci95_low']:.4f}-{val['auc_ci95_high']:.4f})" if "auc" in val else "n/a"
        print(f"| {folder.name.rsplit('b', 1)[1]} | {oof['auc']:.4f} ({oof['auc_ci95_low']:.4f}-"
              f"{oof['auc_ci95_high']:.4f}) | {folds} | {shown} |")  # fmt: skip


if __name__ == "__main__":
    main()
