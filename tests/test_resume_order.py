"""Resume means the same run: a training stopped mid-epoch and resumed from its checkpoint sees
the same images in the same order as an uninterrupted one (the sampler is seeded by epoch and
the loader is stateful, so Lightning checkpoints its position)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from srcrn.data.cache import prepare
from srcrn.data.datamodule import IsicDataModule
from srcrn.data.isic import IsicDataset
from srcrn.data.splits import Split

pytestmark = pytest.mark.slow


class Recorder(L.LightningModule):
    """A minimal model that records the prepared-cache rows of every training batch."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.seen: list[list[int]] = []

    def training_step(self, batch, _):
        self.seen.append(batch["index"].tolist())
        return self.layer(batch["image"].float().mean(dim=(2, 3))).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _trainer(tmp_path, **limits):
    return L.Trainer(default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     limit_val_batches=0, **limits)  # fmt: skip


@pytest.mark.parametrize("steps_per_epoch", [5, None])
def test_a_run_stopped_mid_epoch_resumes_at_the_same_sample_order(sample, tmp_path, steps_per_epoch):
    dataset = IsicDataset.from_dir(sample)
    prepared = prepare(dataset, 32, tmp_path / "cache", workers=1, show_progress=False)
    split = Split("test", dataset.ids[:24], dataset.ids[24:], 0)

    def data():
        return IsicDataModule(prepared, split, batch_size=4, steps_per_epoch=steps_per_epoch, seed=3)

    whole = Recorder()
    _trainer(tmp_path / "a", max_epochs=3).fit(whole, datamodule=data())
    per_epoch = len(whole.seen) // 3
    cut = per_epoch + 2  # two batches into the second epoch
    checkpoint = tmp_path / "mid-epoch.ckpt"

    class StopMidEpoch(L.Callback):  # as a SIGTERM does: a checkpoint written during the epoch
        def on_train_batch_end(self, trainer, *_):
            if trainer.global_step == cut:
                trainer.save_checkpoint(checkpoint)
                trainer.should_stop = True

    first = Recorder()
    _trainer(tmp_path / "b", max_epochs=3, callbacks=[StopMidEpoch()]).fit(first, datamodule=data())
    first.seen = first.seen[:cut]  # Lightning finishes the step it stopped in
    second = Recorder()
    with _no_unreliable_warning():
        _trainer(tmp_path / "c", max_epochs=3).fit(second, datamodule=data(), ckpt_path=checkpoint)
    assert first.seen + second.seen == whole.seen
    assert whole.seen[:per_epoch] != whole.seen[per_epoch : 2 * per_epoch]  # each epoch its own order


class _no_unreliable_warning:
    """Lightning warns that a mid-epoch resume 'can cause unreliable results' when the loader is
    not resumable; with a stateful one it must not."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings(record=True)
        self._caught = self._catch.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        messages = [str(w.message) for w in self._caught]
        assert not [m for m in messages if "unreliable" in m], messages
        return False


class Scored(Recorder):
    """The recorder, with the score a run's best checkpoint is chosen by."""

    def training_step(self, batch, index):
        loss = super().training_step(batch, index)
        self.log("score", -loss.detach())
        return loss


@pytest.mark.parametrize(
    ("name", "before_step"),
    [("SIGTERM", 0), ("SIGTERM", 6), ("SIGINT", 0), ("SIGINT", 2)],  # an epoch's first step, or mid-epoch
)
def test_a_stop_signal_at_any_step_resumes_without_skipping_any(sample, tmp_path, name, before_step):
    """A SIGTERM or Ctrl+C saves a checkpoint from which the resumed run does every remaining
    step of the same epochs, in the same order, whenever the signal comes (the CI once sent it
    as the first epoch started, and the resume skipped that whole epoch)."""
    import os
    import signal

    from srcrn.errors import Interrupted
    from srcrn.settings import RunSettings
    from srcrn.training.runner import fit

    dataset = IsicDataset.from_dir(sample)
    prepared = prepare(dataset, 32, tmp_path / "cache", workers=1, show_progress=False)
    split = Split("test", dataset.ids[:24], dataset.ids[24:], 0)
    settings = RunSettings(epochs=2, accelerator="cpu", devices="1")

    def run(task, out, resume, callbacks=()):
        data = IsicDataModule(prepared, split, batch_size=4, seed=3)
        return fit(task, data, settings, out, monitor="score", resume=resume, progress=False, callbacks=[*callbacks])

    whole = Scored()
    assert run(whole, tmp_path / "whole", False)["global_step"] == 12

    class Signal(L.Callback):  # at the epoch's start, before its loop asks for a batch; or before a step
        def on_train_epoch_start(self, trainer, *_):
            if trainer.global_step == before_step and before_step % 6 == 0:
                os.kill(os.getpid(), getattr(signal, name))

        def on_train_batch_start(self, trainer, *_):
            if trainer.global_step == before_step and before_step % 6:
                os.kill(os.getpid(), getattr(signal, name))

    first, second = Scored(), Scored()
    with pytest.raises(Interrupted, match=rf"stopped by {name} after step {before_step + 1}; continue with"):
        run(first, tmp_path / "cut", False, [Signal()])
    summary = run(second, tmp_path / "cut", True)
    assert summary["global_step"] == 12 and summary["epochs"] == 2
    assert first.seen + second.seen == whole.seen
