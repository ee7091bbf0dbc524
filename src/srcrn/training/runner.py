"""What every training run shares: run-folder safety, the Lightning Trainer, checkpoints
(best and last), resumable CSV logs, time budgets and quiet output."""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from srcrn.atomic import atomic_path, json_text, read_json
from srcrn.errors import ConfigError, Interrupted
from srcrn.settings import RunSettings, parse_time_budget

# Lightning noise that says nothing about the run (advertising, the accelerator inventory
# that the run's config and summary already record, deprecations inside Lightning and
# torchdata themselves, the logging-interval hint for short epochs); we refuse to reuse a run
# folder without --resume, and keep earlier logs ourselves.
_NOISE = (
    "GPU available:",
    "TPU available:",
    "HPU available:",
    "'set_vital' is deprecated",
    "isinstance(treespec, LeafSpec)",
    "is smaller than the logging interval",
    "Tip: For seamless cloud",
    "Experiment logs directory",
    "exists and is not empty",
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in _NOISE)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Drop Lightning's noise for the duration of a run only: the warning filters are restored
    afterwards, so a program that calls us keeps its own."""
    noise = _DropNoise()
    handlers = logging.getLogger("lightning.pytorch").handlers
    for handler in handlers:
        handler.addFilter(noise)
    try:
        with warnings.catch_warnings():
            for text in _NOISE:
                warnings.filterwarnings("ignore", message=f".*{re.escape(text)}.*")
            yield
    finally:
        for handler in handlers:
            handler.removeFilter(noise)


def training_callbacks(schedule: str, warmup_epochs: float, ema_decay: float) -> list[L.Callback]:
    """The learning-rate schedule and, when asked for, the moving average of the weights.
    With the average, validation and every checkpoint's ``state_dict`` hold the averaged
    weights; checkpoints saved during training also keep the raw ones, for resuming (Lightning
    copies the average into the model when training ends, so a final save holds it twice)."""
    from srcrn.training.schedules import BudgetedSchedule

    callbacks: list[L.Callback] = []
    if schedule != "constant" or warmup_epochs:
        callbacks.append(BudgetedSchedule(schedule, warmup_epochs))
    if ema_decay:
        from lightning.pytorch.callbacks import EMAWeightAveraging

        callbacks.append(EMAWeightAveraging(decay=ema_decay))
    return callbacks


def last_checkpoint(out: Path) -> Path:
    """The checkpoint a run resumes from."""
    return out / "checkpoints" / "last.ckpt"


RUN_FILE = "config.yaml"  # written when a run starts: the folder holds a run from then on


def _readable(checkpoint: Path) -> bool:
    """Whether a checkpoint loads (one cut short by a kill during its write does not)."""
    try:
        torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # torch raises many types for a damaged file; all mean the same here
        return False
    return True


def _secondary_process() -> bool:
    """A DDP process other than the first (Lightning's launcher and torchrun set these)."""
    return any(int(os.environ.get(name, "0") or 0) > 0 for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GLOBAL_RANK"))


# What a run writes under these folders (with atomic_path's hidden temporaries beside each):
# checkpoints, and Lightning's CSV logs (``_keep_earlier_logs`` keeps earlier parts).
_RUN_FILES = {"checkpoints": ("*.ckpt", ".*.ckpt"), "logs": ("metrics.csv", "metrics.part*.csv", "hparams.yaml")}


def _run_files(out: Path) -> set[Path]:
    """The files a run wrote under ``out``'s checkpoints/ and logs/."""
    return {
        path for folder, patterns in _RUN_FILES.items() for pattern in patterns for path in (out / folder).glob(pattern)
    }


def _merged_log(path: Path) -> bool:
    """Whether ``path`` is a run's merged ``metrics.csv`` (``merge_logs``: Lightning's rows, which
    always carry ``epoch`` and ``step``), not a user's file of that name."""
    try:
        with path.open(encoding="utf-8") as file:
            header = file.readline().strip().split(",")
    except (OSError, UnicodeDecodeError):
        return False
    return {"epoch", "step"} <= set(header)


def check_run_folder(out: Path, resume: bool) -> bool:
    """A run folder is resumable or refused, never trained into afresh by accident. Returns
    whether training continues from ``last.ckpt``.

    - ``resume`` and ``last.ckpt``: continue from it.
    - ``resume``, a run started but killed before its first complete checkpoint: start it over
      (its partial checkpoints and logs are removed first, so none is mistaken for the new run's).
    - ``resume`` without a readable ``last.ckpt`` but with another readable checkpoint (e.g. a
      finished run's ``best.ckpt``): refused, nothing deleted (a trained model is never thrown away).
    - not ``resume`` and a run already there (finished, or started): refused.
    """
    last = last_checkpoint(out)
    if _secondary_process():  # DDP re-runs the command per process: rank 0 alone checks and cleans
        return resume and last.is_file()
    started = (out / RUN_FILE).is_file() or (out / "checkpoints").is_dir()
    if resume and last.is_file() and _readable(last):
        return True
    kept = [c for c in sorted((out / "checkpoints").glob("*.ckpt")) if c != last and _readable(c)] if resume else []
    if kept:
        raise ConfigError(
            f"{last}: missing or damaged, so the run cannot continue; {kept[0].name} holds a trained model and "
            "nothing was deleted (move the checkpoints away to start the run over, or choose another --out)"
        )
    if resume and started:
        # Killed before its first checkpoint, or while writing it: nothing complete to go on from.
        # What a run writes there is removed; anything else means the folder is not (only) a run.
        partial = _run_files(out)
        merged = out / "metrics.csv"  # the run's merged log, rewritten at its end: a user's is kept
        foreign = sorted(
            str(path.relative_to(out))
            for folder in _RUN_FILES
            if (out / folder).is_dir()
            for path in (out / folder).rglob("*")
            if path not in partial and not path.is_dir()
        ) + ([merged.name] if merged.is_file() and not _merged_log(merged) else [])
        if foreign:
            raise ConfigError(
                f"{out}: no complete checkpoint to resume from, and it holds files a srcrn run does not write "
                f"({', '.join(foreign[:3])}): nothing was deleted; choose another --out"
            )
        logging.getLogger(__name__).info("%s: no complete checkpoint to resume from: starting the run over", out)
        for path in partial:
            path.unlink(missing_ok=True)
        merged.unlink(missing_ok=True)
        return False
    if resume:
        raise ConfigError(f"{last}: nothing to resume from")
    if last.is_file():
        raise ConfigError(f"{out}: already holds a run; pass --resume to continue it, or choose another --out")
    if started:
        raise ConfigError(
            f"{out}: holds a run that was interrupted before its first checkpoint; pass --resume to start it "
            "over, or choose another --out"
        )
    return False


def parse_devices(devices: str):
    """Lightning's ``devices``: a count as an int, else the text (``auto``, ``-1``)."""
    return int(devices) if str(devices).isdigit() else devices


def max_time(budget: str | None) -> dict[str, int] | str | None:
    """A time budget as Lightning's ``max_time`` (the format is the settings schema's)."""
    try:
        return parse_time_budget(budget)
    except ValueError as error:
        raise ConfigError(f"time budget {budget!r}: {error}") from None


def _keep_earlier_logs(folder: Path) -> None:
    """Lightning's CSV logger deletes an existing metrics.csv: keep a resumed run's history."""
    current = folder / "metrics.csv"
    if current.is_file():
        attempt = len(list(folder.glob("metrics.part*.csv")))
        current.rename(folder / f"metrics.part{attempt:02d}.csv")


def merge_logs(folder: Path, target: Path) -> bool:
    """All attempts' per-epoch rows, in step order, as one ``metrics.csv``. A step logged by an
    attempt that was killed and then run again by the resumed one appears once (the later)."""
    parts = sorted(folder.glob("metrics.part*.csv")) + [p for p in [folder / "metrics.csv"] if p.is_file()]
    parts = [p for p in parts if p.stat().st_size > 0]
    if not parts:
        return False
    merged = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True)
    # Train and validation rows of one epoch share (epoch, step): tell them apart by which
    # columns they fill.
    filled = merged.notna().apply(lambda row: "".join("1" if v else "0" for v in row), axis=1)
    merged = merged.assign(_filled=filled).drop_duplicates(["epoch", "step", "_filled"], keep="last")
    merged = merged.drop(columns="_filled").sort_values(["epoch", "step"], kind="stable")
    with atomic_path(target) as temporary:
        merged.to_csv(temporary, index=False)
    return True


class _StopRequested(Exception):
    """Raised after the step during which a stop signal came (see ``_GracefulStop``)."""


class _GracefulStop(L.Callback):
    """SIGTERM (a scheduler, ``docker stop``) and SIGINT (Ctrl+C) during training: finish the
    current step, save a resumable checkpoint, then stop. A second signal stops at once.

    It stops by raising after the step, where Lightning's own SIGTERM stop raises, not by
    ``trainer.should_stop``: that ends the epoch loop and marks the epoch completed, so a resume
    went on with the next epoch and skipped the rest of this one (all of it when the signal came
    before the epoch's first step)."""

    def __init__(self) -> None:
        self.signal = 0
        self.previous: dict[int, Any] = {}

    def _handle(self, number: int, frame: Any) -> None:
        if self.signal:  # asked twice: do not wait any longer
            signal.signal(number, signal.SIG_DFL)
            raise KeyboardInterrupt
        self.signal = number

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        """Stop once the step in progress when the signal came is done."""
        if self.signal:
            raise _StopRequested

    def __enter__(self) -> _GracefulStop:
        if threading.current_thread() is threading.main_thread():  # handlers only install there
            for number in (signal.SIGTERM, signal.SIGINT):
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


class _AttemptStart(L.Callback):
    """The step this attempt started at (0, or the resumed checkpoint's): a resumed run's speed
    is its own steps over its own wall time, not the whole run's steps."""

    def __init__(self) -> None:
        self.step = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.step = trainer.global_step


ATTEMPTS_FILE = "attempts.json"  # each attempt's wall time and steps, for the run's whole cost


def _record_attempt(out: Path, wall: float, steps: int) -> list[dict[str, float]]:

    path = out / ATTEMPTS_FILE
    try:
        attempts = read_json(path) if path.is_file() else []
    except ValueError:
        attempts = []  # a damaged record is not worth failing a finished run for
    attempts.append({"wall_seconds": round(wall, 1), "steps": steps})
    with atomic_path(path) as temporary:
        temporary.write_text(json_text(attempts))
    return attempts


SELECTED = "best"  # the checkpoint of the best validation score: read for its weights, never resumed
# What only a resume reads (it resumes from last.ckpt): the optimizer's moments (twice the weights
# for Adam), the schedules, and the weight averaging's raw weights beside the averaged ones (issue
# 31: a tiny ResNet-50 run wrote 395 MB per checkpoint).
RESUME_ONLY = frozenset({"optimizer_states", "lr_schedulers", "current_model_state", "averaging_state"})


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written beside their target and renamed over it. Lightning's own write
    goes through an fsspec transaction whose temporary file lies in the system temp folder:
    where that is another filesystem (a tmpfs /tmp), the final move is a copy that a kill
    can cut short, leaving a truncated ``last.ckpt``. The checkpoints named in ``weights_only``
    (the run's own selection checkpoint) are written without what only a resume reads: one
    Trainer has one CheckpointIO, and Lightning's ``save_weights_only`` would also drop the
    weight averaging's swap of the averaged weights into ``state_dict``."""

    def __init__(self, weights_only: frozenset[str] = frozenset()):
        """Checkpoint IO; file names in ``weights_only`` lose the ``RESUME_ONLY`` entries."""
        super().__init__()
        self.weights_only = weights_only

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` at ``path`` atomically (beside it, then renamed over it); the
        selected weights (``best.ckpt``) without what only a resume reads."""
        if storage_options is not None:
            raise TypeError("storage_options are not supported for local checkpoints")
        if Path(path).name in self.weights_only:
            checkpoint = {key: value for key, value in checkpoint.items() if key not in RESUME_ONLY}
        with atomic_path(path) as temporary:
            torch.save(checkpoint, temporary)


@quiet_lightning()
def fit(
    task: L.LightningModule,
    datamodule: L.LightningDataModule,
    settings: RunSettings,
    out: Path,
    *,
    monitor: str,
    resume: bool,
    progress: bool,
    callbacks: list | None = None,
) -> dict:
    """Train ``task`` with the Trainer settings of ``settings`` (epochs, devices, strategy,
    precision, time budget...) and any extra ``callbacks`` (schedules, weight averaging).
    Returns the run's summary (empty on non-zero ranks). Lightning's noise is dropped for the
    duration of the call only."""
    last = last_checkpoint(out)
    checkpoints = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename=SELECTED,
        monitor=monitor,
        mode="max",
        save_last=False,
        auto_insert_metric_name=False,
    )
    # last.ckpt after every validation, as a checkpoint callback of its own: Lightning 2.6's
    # save_last writes it only when the best one was saved too, so a run whose validation score
    # stopped improving kept an old "last" (a 30-epoch run's last.ckpt held epoch 12), and a resume
    # went back to it. A checkpoint callback, so that it runs after the weight averaging's swap.
    latest = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename=last.stem,
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,
        auto_insert_metric_name=False,
    )
    attempt, stop = _AttemptStart(), _GracefulStop()
    trainer = L.Trainer(
        default_root_dir=out,
        max_epochs=settings.epochs,
        max_time=max_time(settings.time_budget),
        accelerator=settings.accelerator,
        devices=parse_devices(settings.devices),
        num_nodes=settings.num_nodes,
        strategy=settings.strategy,
        precision=settings.precision,
        logger=CSVLogger(out, name="logs", version=""),
        callbacks=[checkpoints, latest, attempt, stop, *(callbacks or [])]
        + ([RichProgressBar(console_kwargs={"stderr": True})] if progress else []),
        plugins=[AtomicCheckpointIO(weights_only=frozenset({f"{SELECTED}.ckpt"}))],
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=10,
        num_sanity_val_steps=0,
    )
    _keep_earlier_logs(out / "logs")
    started = time.perf_counter()
    with stop:
        try:
            trainer.fit(task, datamodule=datamodule, ckpt_path=str(last) if resume else None)
        except (SIGTERMException, _StopRequested):
            pass  # stopped after the current step (Lightning's own SIGTERM stop, or ours): saved below
    wall = time.perf_counter() - started
    steps = trainer.global_step - attempt.step  # this attempt's own
    attempts = _record_attempt(out, wall, steps) if trainer.is_global_zero else []
    # Whole epochs run (Lightning counts an epoch cut off by the time budget as completed).
    completed = trainer.global_step // max(1, trainer.num_training_batches)
    if not last.is_file() or trainer.interrupted or completed < settings.epochs or stop.signal:
        # A time budget or an interruption can stop mid-epoch, before any epoch-end save.
        # (Every process calls this: under DDP it is a collective operation.)
        with atomic_path(last) as temporary:
            trainer.save_checkpoint(temporary)
    if stop.signal:
        merge_logs(out / "logs", out / "metrics.csv")
        name = signal.Signals(stop.signal).name
        raise Interrupted(
            f"{out}: stopped by {name} after step {trainer.global_step}; continue with --resume", stop.signal
        )
    if not trainer.is_global_zero:
        return {}
    merge_logs(out / "logs", out / "metrics.csv")
    best = checkpoints.best_model_score
    return {
        "epochs": completed,
        "global_step": trainer.global_step,
        "wall_seconds": round(wall, 1),  # this attempt's
        "wall_seconds_all_attempts": round(sum(a["wall_seconds"] for a in attempts), 1),
        "attempts": len(attempts),
        "train_images_per_second": round(
            steps * getattr(datamodule, "batch_size", 0) * trainer.world_size / max(wall, 1e-9), 2
        ),
        "seconds_per_epoch": round(wall / max(1, steps) * trainer.num_training_batches, 1),
        "best_checkpoint": checkpoints.best_model_path or str(last),
        f"best_{monitor.replace('/', '_')}": float(best) if best is not None else None,
        "last_checkpoint": str(last),
    }
