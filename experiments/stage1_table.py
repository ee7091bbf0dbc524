"""Issue 30, item 3: the table of experiments/stage1_candidates.sh: each candidate's epochs and
steps in its CPU budget, and its validation scores (the last weights; none chosen on validation).

    python experiments/stage1_table.py RUNS
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NAMES = {"srcrn-lite0": "SRCRN-8s, Lite0", "srcrn-lite2": "SRCRN-8s, Lite2", "fpn-lite0": "smp FPN, Lite0",
         "unet-lite0": "smp Unet, Lite0"}  # fmt: skip


def main() -> None:
    """One Markdown row per finished candidate, best validation Jaccard first."""
    runs = Path(sys.argv[1])
    rows = []
    for name, shown in NAMES.items():
        metrics_file = runs / name / "eval-val" / "metrics.json"
        if not metrics_file.is_file():
            continue
        metrics = json.loads(metrics_file.read_text())
        summary = json.loads((runs / name / "summary.json").read_text())
        rows.append((metrics["jaccard"], shown, summary, metrics))
    print("| candidate | epochs (steps of 8) | wall s | val Jaccard | val Dice | val accuracy | thresholded Jaccard |")
    print("|---|---|---|---|---|---|---|")
    for jaccard, shown, summary, m in sorted(rows, key=lambda row: row[0], reverse=True):
        print(f"| {shown} | {summary['epochs']} ({summary['global_step']}) | {summary['wall_seconds']:.0f} | "
              f"{jaccard:.4f} | {m['dice']:.4f} | {m['accuracy']:.4f} | {m['threshold_jaccard']:.4f} |")  # fmt: skip


if __name__ == "__main__":
    main()
