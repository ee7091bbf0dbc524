"""Issue 33, item 3: which part of the shipped stack moves when the photo is turned? For the first
N dev images and a copy of each turned by ANGLE degrees (``invariance.turned``), the shipped
model's answer is decomposed: each member's logit (the mean of its readings over the pipeline's
crop turns, as the answer averages them) times its stacker weight is that member's share of the
stacked logit. Prints the median and 90th percentile of |d share| per member, of |d stacked logit|
and of |dP|, and how often each member moves the stacked logit most.

    python experiments/rotation_members.py DEV [N] [ANGLE]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from invariance import jpeg, turned
from PIL import Image

import srcrn


def shares(pipeline: srcrn.Pipeline, image: bytes) -> tuple[np.ndarray, float]:
    """Each member's weighted logit, averaged over the crop turns, and the answer's P(melanoma)."""
    stack = pipeline.classifier
    seen: list[np.ndarray] = []
    original = stack.member_logits

    def recording(*args, **kwargs):
        logits = original(*args, **kwargs)
        seen.append(logits)
        return logits

    stack.member_logits = recording  # type: ignore[method-assign]
    try:
        result = pipeline.predict(image)
    finally:
        del stack.member_logits
    readings = np.concatenate(seen)  # as given, then each turn: [1 + turns, members]
    return readings.mean(0) * np.asarray(stack.weights), float(result.probability)


def main() -> None:
    """Both copies through the shipped model; the table of each member's movement."""
    dev = Path(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    angle = float(sys.argv[3]) if len(sys.argv) > 3 else 20.0
    pipeline = srcrn.Pipeline.default()
    names = pipeline.classifier.names
    moves, dp = [], []
    for path in sorted((dev / "images").glob("*.jpg"))[:count]:
        image = np.asarray(Image.open(path).convert("RGB"))
        before, p0 = shares(pipeline, jpeg(image))
        after, p1 = shares(pipeline, jpeg(turned(image, angle)))
        moves.append(after - before)
        dp.append(abs(p1 - p0))
    move = np.abs(np.asarray(moves))
    stacked = np.abs(np.asarray(moves).sum(1))
    largest = np.bincount(move.argmax(1), minlength=len(names))
    print(f"{count} dev images turned by {angle:g} degrees; the shipped stack's members: {', '.join(names)}")
    print("| part | median | 90th percentile | moves the stacked logit most |")
    print("|---|---|---|---|")
    for i, name in enumerate(names):
        print(f"| member {name}: weight x logit | {np.median(move[:, i]):.3f} | {np.quantile(move[:, i], 0.9):.3f} | {largest[i]} of {count} |")  # fmt: skip
    print(f"| stacked logit | {np.median(stacked):.3f} | {np.quantile(stacked, 0.9):.3f} | |")
    print(f"| P(melanoma) | {np.median(dp):.3f} | {np.quantile(dp, 0.9):.3f} | |")


if __name__ == "__main__":
    main()
