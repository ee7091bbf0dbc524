"""A view of an ISIC-layout data folder without some images: symbolic links to the kept images
and masks, and its CSVs (labels, metadata, sources) without the dropped rows. The default model
is trained on such a view of isic-dev without the 40 images embedded in the package, so that the
demo shows images the model never saw.

    python experiments/exclude_ids.py DATA OUT [--like src/srcrn/sample]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

from srcrn.sample import sample_dir

ID_COLUMNS = ("image_id", "image")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--like", type=Path, default=sample_dir(), help="drop the images of this folder's labels.csv")
    arguments = parser.parse_args()
    dropped = set(pd.read_csv(arguments.like / "labels.csv", dtype=str)["image_id"])
    staging = arguments.out.with_name(arguments.out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for folder in ("images", "masks"):
        (staging / folder).mkdir(parents=True)
        for path in sorted((arguments.data / folder).iterdir()):
            if path.name.split(".")[0].removesuffix("_segmentation") not in dropped:
                (staging / folder / path.name).symlink_to(path.resolve())
    kept = 0
    for name in ("labels.csv", "metadata.csv", "sources.csv"):
        if not (arguments.data / name).is_file():
            continue
        table = pd.read_csv(arguments.data / name, dtype=str, keep_default_na=False)
        column = next(c for c in ID_COLUMNS if c in table.columns)
        table = table[~table[column].isin(dropped)]
        table.to_csv(staging / name, index=False)
        kept = len(table) if name == "labels.csv" else kept
    shutil.rmtree(arguments.out, ignore_errors=True)
    staging.rename(arguments.out)
    print(f"{arguments.out}: {kept} images ({len(dropped)} of {arguments.like} left out)")


if __name__ == "__main__":
    main()
