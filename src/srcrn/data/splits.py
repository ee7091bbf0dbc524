"""Train/validation splits: ``paper``, ``official`` and ``random``; each keeps near-duplicates apart.

* ``paper``: the first 100 image ids (sorted) are held out for validation (paper 2.3.2). On
  data too small for that (under 200 images) it falls back to the ``random`` split with 20 %
  held out, and says so.
* ``official``: the ISIC 2017 training / validation lists, read from ``sources.csv``
  (column ``isic2017_split``); images without an official split (PH2, HAM10000) train.
* ``random``: seeded, stratified by melanoma, whole near-duplicate groups on one side.

Whatever the method, an image whose near-duplicate group (``sources.csv``) also has a
member on the validation side is dropped from training: otherwise validation would score
the model on images it saw.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd

from srcrn.atomic import json_text, read_json
from srcrn.data.isic import IsicDataset
from srcrn.errors import ConfigError, DataError
from srcrn.settings import SplitMethod

SPLIT_METHODS = get_args(SplitMethod)
PAPER_HOLDOUT = 100


@dataclass
class Split:
    """A train/validation split: the ids of each part, the near-duplicates dropped, and notes on how it was made."""

    method: str
    train: list[str]
    val: list[str]
    seed: int = 0
    notes: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def save(self, folder: str | Path) -> Path:
        """Write ``split.csv`` (image_id,subset) and ``split.json`` (method, seed, notes)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        rows = [(i, "train") for i in self.train] + [(i, "val") for i in self.val]
        rows += [(i, "dropped") for i in self.dropped]
        pd.DataFrame(rows, columns=["image_id", "subset"]).to_csv(folder / "split.csv", index=False)
        meta = {k: v for k, v in asdict(self).items() if k not in ("train", "val", "dropped")}
        meta.update(n_train=len(self.train), n_val=len(self.val), n_dropped=len(self.dropped))
        (folder / "split.json").write_text(json_text(meta))
        return folder / "split.csv"

    @classmethod
    def load(cls, folder: str | Path) -> Split:
        """The split saved in ``folder`` (its split.csv).

        Raises:
            OSError: the folder lacks split.csv or split.json (the CLI reports it in one line).
        """
        folder = Path(folder)
        table = pd.read_csv(folder / "split.csv", dtype=str)
        meta = read_json(folder / "split.json")
        subsets = {
            name: table.loc[table["subset"] == name, "image_id"].tolist() for name in ("train", "val", "dropped")
        }
        return cls(
            meta["method"],
            subsets["train"],
            subsets["val"],
            meta.get("seed", 0),
            meta.get("notes", []),
            subsets["dropped"],
        )


def split_ids(path: str | Path, subset: str, known: Iterable[str] | None = None) -> list[str]:
    """Ids of ``subset`` (train | val) in a split.csv, or in the split.csv of a run folder;
    with ``known`` (the data's ids), an id the data lacks is refused naming the split file."""
    path = Path(path)
    split_csv = path / "split.csv" if path.is_dir() else path
    if not split_csv.is_file():
        raise DataError(split_csv, "split file not found")
    table = pd.read_csv(split_csv, dtype=str)
    if not {"image_id", "subset"} <= set(table.columns):
        raise DataError(split_csv, f"not a split file: columns {', '.join(table.columns)}; expected image_id,subset")
    ids = table.loc[table["subset"] == subset, "image_id"].tolist()
    if known is not None:
        missing = sorted(set(ids) - set(known))
        if missing:
            raise DataError(
                split_csv,
                f"names {len(missing)} image(s) the data folder lacks, first '{missing[0]}' "
                "(a split of another data folder?)",
            )
    return ids


def make_split(dataset: IsicDataset, method: str = "paper", *, seed: int = 0, val_fraction: float = 0.2) -> Split:
    """The split ``method`` makes of ``dataset``.

    Args:
        dataset: the images to split.
        method: ``paper`` (the first 100 ids held out), ``official`` (ISIC 2017's train and
            validation ids) or ``random`` (stratified, near-duplicates kept together).
        seed: the random split's seed.
        val_fraction: the random split's validation share.

    Returns:
        The split.

    Raises:
        ConfigError: an unknown method.
    """
    if method not in SPLIT_METHODS:
        raise ConfigError(f"unknown split '{method}'; choose one of {', '.join(SPLIT_METHODS)}")
    ids = dataset.ids
    if method == "paper":
        if len(ids) < 2 * PAPER_HOLDOUT:
            split = _random_split(dataset, seed, val_fraction)
            split.method = "paper"
            split.notes.insert(
                0,
                f"paper split needs at least {2 * PAPER_HOLDOUT} images to hold out {PAPER_HOLDOUT}; "
                f"{len(ids)} found, so a seeded {val_fraction:.0%} stratified validation split (seed {seed}) is used",
            )
            return split
        ordered = sorted(ids)
        split = Split("paper", ordered[PAPER_HOLDOUT:], ordered[:PAPER_HOLDOUT], seed)
    elif method == "official":
        split = _official_split(dataset)
    else:
        split = _random_split(dataset, seed, val_fraction)
    return _separate_duplicates(dataset, split)


def _official_split(dataset: IsicDataset) -> Split:
    sources = dataset.sources
    if sources is None or "isic2017_split" not in sources.columns:
        raise DataError(dataset.root, "the official split needs sources.csv with an isic2017_split column")
    official = sources["isic2017_split"].to_dict()
    val = [i for i in dataset.ids if official.get(i) == "val"]
    train = [i for i in dataset.ids if official.get(i) != "val"]
    if not val:
        raise DataError(dataset.root / "sources.csv", "no image has isic2017_split=val")
    unofficial = sum(1 for i in train if official.get(i) != "train")
    notes = [f"{unofficial} images without an official ISIC 2017 split train"] if unofficial else []
    return Split("official", train, val, notes=notes)


def _random_split(dataset: IsicDataset, seed: int, val_fraction: float) -> Split:
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    labels = np.nan_to_num(dataset.melanoma(), nan=0.0)
    members: dict[str, list[int]] = {}
    for index, group in enumerate(dataset.duplicate_groups()):
        members.setdefault(group, []).append(index)
    rng = np.random.default_rng(seed)
    val_indices: list[int] = []
    for label in (0.0, 1.0):  # stratify: each class contributes its own share of groups
        groups = [g for g, idx in members.items() if labels[idx].max() == label]
        rng.shuffle(groups)
        wanted = round(val_fraction * sum(len(members[g]) for g in groups))
        taken = 0
        for group in groups:
            if taken >= wanted:
                break
            val_indices += members[group]
            taken += len(members[group])
    chosen = set(val_indices)
    ids = dataset.ids
    return Split(
        "random",
        [ids[i] for i in range(len(ids)) if i not in chosen],
        [ids[i] for i in sorted(chosen)],
        seed,
    )


def _separate_duplicates(dataset: IsicDataset, split: Split) -> Split:
    group_of = dict(zip(dataset.ids, dataset.duplicate_groups()))
    val_groups = {group_of[i] for i in split.val}
    dropped = [i for i in split.train if group_of[i] in val_groups]
    if dropped:
        split.train = [i for i in split.train if group_of[i] not in val_groups]
        split.dropped += dropped
        split.notes.append(
            f"{len(dropped)} training images dropped: a near-duplicate of each is in validation ({', '.join(dropped)})"
        )
    return split
