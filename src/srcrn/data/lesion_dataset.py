"""Classifier batches: in-memory lesion inputs, with balancing copies augmented on the fly."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info
from torchdata.stateful_dataloader import StatefulDataLoader

from srcrn.data.datamodule import EpochSampler
from srcrn.data.transforms import MelanomaAugmenter, classifier_transform, normalize_batch


class LesionDataset(Dataset):
    """``images`` uint8 [N, S, S, 3], ``labels`` 0/1 [N]; rows flagged in ``augmented`` go
    through ``family``'s augmentation each time they are drawn (``masks`` [N, S, S] give the
    lesion axis to the ``axis`` family); ``train_augment`` then augments every row."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        augmented: np.ndarray | None = None,
        masks: np.ndarray | None = None,
        family: str = "mix",
        seed: int = 0,
        train_augment: str = "none",
    ):
        """Classifier inputs with their labels.

        Args:
            images: uint8 [N, S, S, 3] classifier inputs.
            labels: 0/1 per input.
            augmented: which rows are balancing copies to augment.
            masks: the lesion masks on the inputs (the axis augmentation needs them).
            family: the balancing augmentation family.
            seed: the augmenter's seed.
            train_augment: the augmentation of every training image (none, strong).
        """
        self.images, self.labels = images, np.asarray(labels, dtype=np.float32)
        self.augmented = np.zeros(len(images), bool) if augmented is None else np.asarray(augmented, bool)
        self.masks, self.family, self.seed = masks, family, seed
        self._augmenter: MelanomaAugmenter | None = None
        self.transform = classifier_transform(train_augment)

    def __len__(self) -> int:
        """The number of inputs."""
        return len(self.images)

    @property
    def augmenter(self) -> MelanomaAugmenter:
        """The balancing augmenter of this worker process, created on first use with its own seed."""
        if self._augmenter is None:  # one per worker process, each with its own seed
            worker = get_worker_info()
            self._augmenter = MelanomaAugmenter(self.family, self.seed + (worker.id + 1 if worker else 0))
        return self._augmenter

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        """Input ``item``: augmented when asked, normalised, with its label and index."""
        image = np.array(self.images[item])
        if self.augmented[item]:
            image = self.augmenter(image, None if self.masks is None else np.asarray(self.masks[item]))
        if self.transform is not None:
            image = self.transform(image=image)["image"]
        return {
            "image": normalize_batch(image[None])[0],
            "label": torch.tensor(self.labels[item]),
            "index": torch.tensor(item),
        }


class LesionDataModule(L.LightningDataModule):
    """Stage-2 training data: classifier inputs and labels, balanced, in stateful loaders."""

    def __init__(
        self,
        train: LesionDataset,
        val: LesionDataset,
        *,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int = 0,
        sampler: str = "shuffle",
        seed: int = 0,
    ):
        """Stage-2 loaders.

        Args:
            train: the training inputs.
            val: the validation inputs.
            batch_size: training batch size.
            eval_batch_size: validation batch size.
            num_workers: loader processes.
            sampler: ``shuffle`` or ``balanced`` (class-balanced sampling).
            seed: the sampler's seed.
        """
        super().__init__()
        self.train, self.val = train, val
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.sampler, self.seed = sampler, seed

    def train_dataloader(self) -> DataLoader:
        """The training loader (shuffled or class-balanced sampling, resumable mid-epoch)."""
        weights = None
        if self.sampler == "balanced":
            # Each class drawn equally often, an epoch as long as one pass (with replacement).
            labels = self.train.labels.astype(int)
            counts = np.bincount(labels, minlength=2).astype(float)
            weights = 1.0 / np.maximum(counts[labels], 1.0)
        # Seeded by (seed, epoch) and stateful: a resumed run sees the images in the order an
        # uninterrupted one does (datamodule.EpochSampler).
        sampler = EpochSampler(len(self.train), len(self.train), self.seed, weights)
        return StatefulDataLoader(
            self.train,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # A last batch of one image fails batch normalisation in training mode: drop it
            # (one image an epoch, a different one each epoch when shuffled).
            drop_last=len(self.train) % self.batch_size == 1,
        )

    def val_dataloader(self) -> DataLoader:
        """The validation loader (every validation image once, in order)."""
        return DataLoader(
            self.val,
            batch_size=self.eval_batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
