"""Serve (image, mask, label) batches from a prepared cache, for Lightning."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

from srcrn.data.cache import PreparedData
from srcrn.data.splits import Split
from srcrn.data.transforms import build_transform, normalize_batch


class PreparedDataset(Dataset):
    """Rows ``positions`` of a prepared cache, transformed jointly (image and mask).

    The arrays are memory-mapped lazily in each process, so DataLoader workers neither
    pickle nor copy them.
    """

    def __init__(self, folder: str | Path, positions: np.ndarray, transform, with_masks: bool = True):
        """Rows ``positions`` of the cache in ``folder``, through ``transform``.

        Args:
            folder: a prepared cache.
            positions: the rows to serve.
            transform: the albumentations augmentation (uint8 in and out).
            with_masks: serve the masks too.
        """
        self.folder = Path(folder)
        self.positions = np.asarray(positions, dtype=np.int64)
        self.transform = transform
        self.with_masks = with_masks
        self._data: PreparedData | None = None

    def __len__(self) -> int:
        """The number of rows served."""
        return len(self.positions)

    @property
    def data(self) -> PreparedData:
        """The cache, memory-mapped on first use in each process (workers neither pickle nor copy it)."""
        if self._data is None:
            self._data = PreparedData.load(self.folder)
        return self._data

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        """Row ``item``: the normalised image, its label and index (and mask)."""
        row = int(self.positions[item])
        # np.array copies out of the read-only memory map: transforms and torch need writable arrays.
        fields = {"image": np.array(self.data.images[row])}
        if self.with_masks and self.data.masks is not None:
            fields["mask"] = np.array(self.data.masks[row])
        out = self.transform(**fields)
        sample = {
            "image": normalize_batch(out["image"][None])[0],
            "label": torch.tensor(self.data.melanoma[row], dtype=torch.float32),
            "index": torch.tensor(row),
        }
        if self.with_masks:
            sample["mask"] = torch.from_numpy(np.ascontiguousarray(out["mask"])).unsqueeze(0).float()
        return sample


class EpochSampler(Sampler[int]):
    """``num_samples`` indices per epoch, taken from successive seeded random permutations of
    the dataset, so an epoch can be longer (or shorter) than one pass.

    Not a RandomSampler on purpose: under DDP, Lightning replaces a RandomSampler with a
    plain DistributedSampler (one pass, num_samples lost) but wraps any other sampler, which
    shares these indices among the processes.
    """

    def __init__(self, size: int, num_samples: int, seed: int = 0, weights: np.ndarray | None = None):
        """An order of ``num_samples`` indices of ``size`` per epoch, seeded by ``seed`` and the epoch.

        Args:
            size: how many items there are.
            num_samples: indices per epoch.
            seed: the run's seed.
            weights: sampling weights (class-balanced sampling, with replacement); None: a permutation.
        """
        self.size, self.num_samples, self.seed, self.epoch = size, num_samples, seed, 0
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.yielded = 0  # indices of this epoch already handed out

    def __len__(self) -> int:
        """Indices per epoch."""
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this at every epoch's start, from its own checkpointed counter."""
        if epoch != self.epoch:
            self.epoch, self.yielded = epoch, 0

    def order(self, epoch: int) -> list[int]:
        """The indices of ``epoch``: a function of (seed, epoch) only."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        if self.weights is not None:  # drawn with replacement, e.g. both classes equally often
            return torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator).tolist()
        passes = -(-self.num_samples // self.size)
        order = torch.cat([torch.randperm(self.size, generator=generator) for _ in range(passes)])
        return order[: self.num_samples].tolist()

    def __iter__(self):
        """This epoch's indices, from where a resumed run stopped."""
        # Read when the first index is asked for (after set_epoch and load_state_dict).
        indices = self.order(self.epoch)
        while self.yielded < len(indices):
            self.yielded += 1
            yield indices[self.yielded - 1]
        self.epoch, self.yielded = self.epoch + 1, 0  # the next epoch, unless Lightning sets one

    # torchdata's StatefulDataLoader saves these in Lightning's checkpoint (hand-written: the
    # position within a seeded-by-epoch order is ours; torchdata only fast-forwards otherwise).
    def state_dict(self) -> dict[str, int]:
        """The sampler's position: the epoch whose order it follows and how many indices it gave."""
        return {"epoch": self.epoch, "yielded": self.yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue at the position ``state_dict`` recorded (a resumed run sees the same order)."""
        self.epoch, self.yielded = int(state["epoch"]), int(state["yielded"])


class IsicDataModule(L.LightningDataModule):
    """Train/validation loaders over a prepared cache and a split.

    ``steps_per_epoch`` fixes the number of training batches per epoch (the paper's "steps
    of 300 iterations"); under DDP the processes share them.
    """

    def __init__(
        self,
        prepared: PreparedData,
        split: Split,
        *,
        batch_size: int = 8,
        augment: str = "none",
        steps_per_epoch: int | None = None,
        num_workers: int = 0,
        with_masks: bool = True,
        eval_batch_size: int | None = None,
        seed: int = 0,
    ):
        """Stage-1 loaders over a prepared cache and its split.

        Args:
            prepared: the cache.
            split: the train/validation split.
            batch_size: training batch size.
            augment: the training augmentation (none, flip, strong).
            steps_per_epoch: batches per epoch (None: one pass).
            num_workers: loader processes.
            with_masks: serve the masks.
            eval_batch_size: validation batch size (default: ``batch_size``).
            seed: the sampler's seed.
        """
        super().__init__()
        self.prepared = prepared
        self.split = split
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.steps_per_epoch = steps_per_epoch
        self.num_workers = num_workers
        self.seed = seed
        square = isinstance(prepared.size, int)  # a height x width cache gets no quarter turns
        self.train_set = PreparedDataset(
            prepared.folder, prepared.positions(split.train), build_transform(augment, train=True, square=square),
            with_masks,
        )  # fmt: skip
        self.val_set = PreparedDataset(
            prepared.folder, prepared.positions(split.val), build_transform(augment, train=False), with_masks
        )

    def _loader(self, dataset, batch_size, sampler=None, shuffle=False) -> DataLoader:
        # torchdata's StatefulDataLoader: Lightning saves its position in the checkpoint, so a run
        # stopped mid-epoch resumes at the next batch of the same order.
        return StatefulDataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        """The training loader: stateful, so a run stopped mid-epoch resumes at the next batch."""
        if self.steps_per_epoch:
            sampler = EpochSampler(len(self.train_set), self.steps_per_epoch * self.batch_size, self.seed)
            return self._loader(self.train_set, self.batch_size, sampler=sampler)
        one_pass = EpochSampler(len(self.train_set), len(self.train_set), self.seed)  # shuffled, seeded by epoch
        return self._loader(self.train_set, self.batch_size, sampler=one_pass)

    def val_dataloader(self) -> DataLoader:
        """The validation loader (every validation image once, in order)."""
        return self._loader(self.val_set, self.eval_batch_size)
