"""Issue 33, item 3: is the follow-up view's area change free of how the second photo was taken?
For each image of a folder, ``Pipeline.compare`` of the image and a copy zoomed by ZOOM and turned
by ANGLE degrees (same canvas, corners filled by reflection; JPEG quality 95): the same lesion, so
the true change is none. AFTER is registered onto BEFORE from keypoints of the whole photo, so
the camera's zoom is taken out and the area change should be about 0 % (the raw pixel area grows by
ZOOM squared). Prints each image's registration and area change, then the median and 90th
percentile of the absolute change over the reliable registrations.

    python experiments/compare_invariance.py FOLDER [ZOOM] [ANGLE]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from invariance import jpeg, turned
from PIL import Image

import srcrn


def main() -> None:
    folder = Path(sys.argv[1])
    zoom = float(sys.argv[2]) if len(sys.argv) > 2 else 1.15
    angle = float(sys.argv[3]) if len(sys.argv) > 3 else 12.0
    pipeline = srcrn.Pipeline.default()
    changes, unreliable = [], 0
    print("| image | registration | area change |")
    print("|---|---|---|")
    for path in sorted(folder.glob("*.jpg")):
        image = np.asarray(Image.open(path).convert("RGB"))
        answer = pipeline.compare(jpeg(image), jpeg(turned(image, angle, zoom))).to_dict()
        reliable = bool(answer["registration"]["reliable"])
        change = answer["area_change_percent"]
        if reliable and change is not None:
            changes.append(abs(change))
        else:
            unreliable += 1
        shown = "-" if change is None else f"{change:+.1f} %"
        print(f"| {path.stem} | {'reliable' if reliable else 'unreliable'} | {shown} |")
    print(f"zoom {zoom:g}, turn {angle:g} degrees: {len(changes)} reliable registrations, {unreliable} unreliable; "
          f"|area change| median {np.median(changes):.1f} %, 90th percentile {np.percentile(changes, 90):.1f} %")  # fmt: skip


if __name__ == "__main__":
    main()
