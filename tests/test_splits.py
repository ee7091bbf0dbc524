"""Splits: the paper's first-100 rule, the official lists, seeded stratified random, duplicates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from srcrn.data.isic import IsicDataset, IsicSample
from srcrn.data.splits import Split, make_split


def _synthetic(n: int, melanoma_every: int = 5, groups: dict[str, str] | None = None, official=None) -> IsicDataset:
    ids = [f"ISIC_{i:07d}" for i in range(n)]
    samples = [
        IsicSample(i, Path(f"/nowhere/{i}.jpg"), None, float(k % melanoma_every == 0)) for k, i in enumerate(ids)
    ]
    sources = pd.DataFrame(
        {
            "image_id": ids,
            "source": "isic2017",
            "isic2017_split": official or [""] * n,
            "duplicate_group": [(groups or {}).get(i, "") for i in ids],
        }
    ).set_index("image_id")
    return IsicDataset(Path("/nowhere"), samples, None, sources)


def test_paper_split_holds_out_the_first_100_sorted_ids():
    dataset = _synthetic(300)
    split = make_split(dataset, "paper")
    assert split.val == sorted(dataset.ids)[:100]
    assert split.train == sorted(dataset.ids)[100:]
    assert split.notes == []


def test_paper_split_falls_back_on_small_data_and_says_so():
    split = make_split(_synthetic(40), "paper", seed=3)
    assert len(split.val) == 8 and len(split.train) == 32
    assert "20%" in split.notes[0] and "seed 3" in split.notes[0]


def test_random_split_is_seeded_stratified_and_keeps_groups_together():
    groups = {
        "ISIC_0000001": "g1",
        "ISIC_0000002": "g1",
        "ISIC_0000003": "g1",
        "ISIC_0000007": "g2",
        "ISIC_0000008": "g2",
    }
    dataset = _synthetic(500, groups=groups)
    first = make_split(dataset, "random", seed=1)
    assert first.train == make_split(dataset, "random", seed=1).train
    assert first.val != make_split(dataset, "random", seed=2).val
    assert set(first.train).isdisjoint(first.val) and len(first.train) + len(first.val) == 500
    labels = dict(zip(dataset.ids, dataset.melanoma()))
    val_rate = np.mean([labels[i] for i in first.val])
    assert abs(val_rate - 0.2) < 0.02  # one in five is melanoma overall
    assert abs(len(first.val) - 100) <= 3
    for group in ("g1", "g2"):
        members = [i for i, g in groups.items() if g == group]
        assert all(m in first.val for m in members) or all(m in first.train for m in members)


def test_official_split_uses_sources_and_trains_unofficial_images():
    official = ["train"] * 150 + ["val"] * 30 + [""] * 20
    split = make_split(_synthetic(200, official=official), "official")
    assert len(split.val) == 30 and len(split.train) == 170
    assert "20 images without an official" in split.notes[0]


def test_duplicates_of_validation_images_leave_training():
    # ISIC_0000150 trains, but its near-duplicate ISIC_0000010 is among the first 100 (val).
    dataset = _synthetic(300, groups={"ISIC_0000010": "g", "ISIC_0000150": "g"})
    split = make_split(dataset, "paper")
    assert "ISIC_0000010" in split.val and "ISIC_0000150" not in split.train
    assert split.dropped == ["ISIC_0000150"] and "dropped" in split.notes[0]


def test_split_round_trips_through_its_files(tmp_path):
    split = make_split(_synthetic(40), "random", seed=5)
    split.save(tmp_path)
    loaded = Split.load(tmp_path)
    assert (loaded.method, loaded.train, loaded.val, loaded.seed) == ("random", split.train, split.val, 5)


def test_official_split_on_the_dev_data(dev_data):
    dataset = IsicDataset.from_dir(dev_data, require_masks=True, require_labels=True)
    split = make_split(dataset, "official")
    assert len(split.val) == 148
    # ISIC_0000171 (train) and ISIC_0015124 (val) are the same lesion under two ids.
    assert "ISIC_0015124" in split.val and "ISIC_0000171" in split.dropped
    paper = make_split(dataset, "paper")
    assert paper.val == sorted(dataset.ids)[:100]
