"""Issue 33: the input gate's false alarms on dermoscopic images: the share of a ``srcrn predict``
run's images answered 'not assessable', by subset of a split and by reason.

    srcrn predict DEV/images --out gate-dev            # the shipped model, its gate
    python experiments/gate_false_alarms.py gate-dev/predictions.csv [SPLIT.csv]
"""

from __future__ import annotations

import collections
import sys

import pandas as pd


def main() -> None:
    """Print the overall share, the share by subset and the count by reason."""
    table = pd.read_csv(sys.argv[1])
    refused = table["status"] != "assessed"
    print(f"not assessable: {int(refused.sum())} of {len(table)} ({refused.mean():.4f})")
    if len(sys.argv) > 2:
        subsets = pd.read_csv(sys.argv[2]).set_index("image_id")["subset"]
        named = table["image_id"].map(subsets).fillna("in no subset")
        for subset, rows in refused.groupby(named):
            print(f"  {subset}: {int(rows.sum())} of {len(rows)} ({rows.mean():.4f})")
    reasons: collections.Counter[str] = collections.Counter()
    for text in table.loc[refused, "reasons"]:
        reasons.update(part.split(" (")[0] for part in str(text).split("; "))
    for reason, count in reasons.most_common():
        print(f"  {count} x {reason}")


if __name__ == "__main__":
    main()
