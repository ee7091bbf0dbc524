"""Batches from the cache: shapes, labels, and image and mask transformed together."""

from __future__ import annotations

import numpy as np
import torch

from srcrn.data.cache import prepare
from srcrn.data.datamodule import IsicDataModule, PreparedDataset
from srcrn.data.isic import IsicDataset
from srcrn.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from srcrn.data.splits import make_split
from srcrn.data.transforms import build_transform


def _prepared(sample, tmp_path):
    dataset = IsicDataset.from_dir(sample, require_masks=True, require_labels=True)
    return dataset, prepare(dataset, 64, tmp_path / "cache", workers=1, show_progress=False)


def test_batches_have_the_expected_shapes_and_labels(sample, tmp_path):
    dataset, prepared = _prepared(sample, tmp_path)
    split = make_split(dataset, "paper")
    module = IsicDataModule(prepared, split, batch_size=4, steps_per_epoch=3)
    batches = list(module.train_dataloader())
    assert len(batches) == 3  # steps per epoch, not dataset size
    batch = batches[0]
    assert batch["image"].shape == (4, 3, 64, 64) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (4, 1, 64, 64)
    assert set(torch.unique(batch["mask"]).tolist()) <= {0.0, 1.0}
    expected = torch.tensor(prepared.melanoma[batch["index"].numpy()], dtype=torch.float32)
    assert torch.equal(batch["label"], expected)
    val_ids = {prepared.ids[i] for b in module.val_dataloader() for i in b["index"].tolist()}
    assert val_ids == set(split.val)


def test_augmentation_moves_image_and_mask_together(sample, tmp_path):
    _, prepared = _prepared(sample, tmp_path)
    dataset = PreparedDataset(prepared.folder, np.arange(len(prepared.ids)), build_transform("flip", train=True))
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    torch.manual_seed(0)
    np.random.seed(0)
    changed = 0
    for item in range(len(dataset)):
        out = dataset[item]
        image = np.round((out["image"].permute(1, 2, 0).numpy() * std + mean) * 255).astype(int)
        mask = out["mask"][0].numpy().astype(np.uint8)
        original_image = prepared.images[item].astype(int)
        original_mask = prepared.masks[item]
        # Find the dihedral transform that produced the image; the mask must have had the same.
        matches = []
        for turns in range(4):
            for flip in (False, True):
                candidate = np.rot90(original_image[:, ::-1] if flip else original_image, turns)
                if np.abs(candidate - image).max() <= 1:
                    matches.append((turns, flip))
        assert matches, "image was not a flip/rotation of the cached image"
        turns, flip = matches[0]
        expected_mask = np.rot90(original_mask[:, ::-1] if flip else original_mask, turns)
        assert np.array_equal(mask, expected_mask)
        changed += (turns, flip) != (0, False)
    assert changed > len(dataset) // 4  # the augmentation did act
