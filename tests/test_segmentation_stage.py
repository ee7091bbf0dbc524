"""Stage 1 end to end: it learns, checkpoints round-trip and resume, eval equals the ISIC
scorer, the CLI refuses impossible settings, and DDP runs on two CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from isic_challenge_scoring.segmentation import SegmentationScore
from PIL import Image

from helpers import cli_error, segment_eval
from helpers import small_segmentation_config as _small_config
from srcrn.data.cache import prepare
from srcrn.data.isic import IsicDataset
from srcrn.data.transforms import normalize_batch
from srcrn.errors import ConfigError
from srcrn.runtime.checkpoints import build_model, read_checkpoint
from srcrn.settings import SegmentTrainSettings, load_settings
from srcrn.training.segmentation import SegmentationTask, train_segmentation
from srcrn.workflows.segment import train_segmenter

pytestmark = pytest.mark.slow


def test_loss_decreases_on_a_tiny_overfit_set(sample, tmp_path):
    dataset = IsicDataset.from_dir(sample, require_masks=True)
    prepared = prepare(dataset.subset(dataset.ids[:4]), 64, tmp_path / "cache", workers=1, show_progress=False)
    images = normalize_batch(prepared.images[:])
    masks = torch.from_numpy(np.array(prepared.masks[:])).float()[:, None]
    torch.manual_seed(0)
    task = SegmentationTask(load_settings(SegmentTrainSettings, image_size=64))
    optimizer = task.configure_optimizers()
    task.train()
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = task.loss_fn(task(images), masks)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), losses


def test_checkpoint_round_trip_and_resume(sample, tmp_path):
    out = tmp_path / "run"
    summary = train_segmenter(_small_config(tmp_path), sample, out, progress=False)
    assert summary["epochs"] == 1 and summary["global_step"] == 2
    for name in ("best.ckpt", "last.ckpt"):
        assert (out / "checkpoints" / name).is_file()
    assert {"config.yaml", "split.csv", "split.json", "metrics.csv", "curves.png", "summary.json"} <= {
        p.name for p in out.iterdir()
    }
    # Round trip: the loaded model holds exactly the saved weights and predicts identically.
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    saved = state["state_dict"]
    assert state["srcrn"]["kind"] == "segmenter" and state["srcrn"]["settings"]["image_size"] == 64
    loaded = build_model(read_checkpoint(out / "checkpoints" / "last.ckpt"))
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, saved[f"model.{key}"]), key
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), build_model(read_checkpoint(out / "checkpoints" / "last.ckpt"))(x))
    # Starting again on the same folder without --resume is refused: it would lose work.
    with pytest.raises(ConfigError, match="already holds a run"):
        train_segmentation(_small_config(tmp_path), sample, out, progress=False)
    # Resume continues the step count and keeps the first epoch's log rows.
    first = summary
    summary = train_segmentation(_small_config(tmp_path, epochs=2), sample, out, resume=True, progress=False)
    assert summary["epochs"] == 2 and summary["global_step"] == 4
    # The resumed attempt's speed is its own 2 steps over its own time; the run's cost is both.
    attempts = json.loads((out / "attempts.json").read_text())
    assert [a["steps"] for a in attempts] == [2, 2] and summary["attempts"] == 2
    assert summary["wall_seconds_all_attempts"] == pytest.approx(
        first["wall_seconds"] + summary["wall_seconds"], abs=0.2
    )
    assert summary["train_images_per_second"] == pytest.approx(2 * 4 / summary["wall_seconds"], rel=0.05)
    log = pd.read_csv(out / "metrics.csv")
    assert sorted(log["epoch"].unique()) == [0, 1]
    assert log["val/jaccard"].notna().sum() == 2 and log["train/loss"].notna().sum() == 2


def test_eval_metrics_equal_the_official_isic_scorer(sample, tmp_path):
    config = _small_config(tmp_path, steps_per_epoch=3)
    train_segmentation(config, sample, tmp_path / "run", progress=False)
    out = tmp_path / "eval"
    segment_eval(tmp_path / "run" / "checkpoints" / "last.ckpt", sample, out, tmp_path / "cache")
    ours = json.loads((out / "metrics.json").read_text())
    assert ours["n_images"] == 40
    # Masks are written at each image's original size, as 0/255.
    for path in sorted((sample / "images").glob("*.jpg"))[:5]:
        mask = Image.open(out / "masks" / f"{path.stem}_segmentation.png")
        assert mask.size == Image.open(path).size and mask.mode == "L"
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
    official = SegmentationScore.from_dir(sample / "masks", out / "masks").macro_average
    for name in ("accuracy", "sensitivity", "specificity", "jaccard", "threshold_jaccard", "dice"):
        assert ours[name] == pytest.approx(float(official[name]), abs=1e-6), name
    per_image = pd.read_csv(out / "per_image.csv")
    assert len(per_image) == 40 and per_image["jaccard"].mean() == pytest.approx(ours["jaccard"], abs=1e-12)
    assert (out / "overlays.png").stat().st_size > 10_000


def test_eval_on_a_runs_validation_split(sample, tmp_path):
    train_segmentation(_small_config(tmp_path), sample, tmp_path / "run", progress=False)
    segment_eval(
        tmp_path / "run" / "checkpoints" / "best.ckpt",
        sample,
        tmp_path / "eval",
        tmp_path / "cache",
        "--split-file",
        str(tmp_path / "run"),
    )
    val = pd.read_csv(tmp_path / "run" / "split.csv").query("subset == 'val'")["image_id"]
    assert sorted(pd.read_csv(tmp_path / "eval" / "per_image.csv")["image_id"]) == sorted(val)


def test_cli_refuses_impossible_settings(sample, tmp_path, capsys):
    for args, expected in (
        (["--image-size", "100"], "multiples of 32"),
        (["--resume"], "nothing to resume from"),
        (["--stride", "4"], "--stride: Input should be 8, 16 or 32 (given 4)"),
        (["--loss", "focal"], "--loss: Input should be 'bce' or 'bce+dice' (given 'focal')"),
        (["--lr", "fast"], "'--lr'"),
    ):
        error = cli_error(capsys, "segment", "train", "--data", str(sample), "--out", str(tmp_path / "x"),
                          "--no-progress", "--cache", str(tmp_path / "cache"), "--epochs", "1",
                          "--steps-per-epoch", "1", *args)  # fmt: skip
        assert expected in error, (args, error)


def test_config_file_with_an_unknown_key_is_refused(tmp_path):
    (tmp_path / "c.yaml").write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"c.yaml: learning_rate: unknown setting; known: image_size"):
        load_settings(SegmentTrainSettings, tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("epochs: 3\nstride: 16\n")
    assert load_settings(SegmentTrainSettings, tmp_path / "d.yaml", flags={"stride": 32}).stride == 32  # flags win
    assert load_settings(SegmentTrainSettings, tmp_path / "d.yaml").epochs == 3


def test_ddp_on_two_cpu_processes_completes_a_step(sample, tmp_path):
    srcrn = Path(sys.executable).parent / "srcrn"
    command = [
        str(srcrn),
        "segment",
        "train",
        "--data",
        str(sample),
        "--out",
        str(tmp_path / "ddp"),
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "1",
        "--batch-size",
        "2",
        "--image-size",
        "64",
        "--cache",
        str(tmp_path / "cache"),
        "--no-progress",
        # The strong recipe: EMA, and a schedule whose time-based progress rank 0 broadcasts.
        "--recipe",
        "strong",
        "--time-budget",
        "10m",
    ]
    environment = dict(os.environ, OMP_NUM_THREADS="1", MASTER_PORT=str(29500 + os.getpid() % 1000))
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "distributed_backend=gloo" in finished.stderr or "gloo" in finished.stdout + finished.stderr
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["global_step"] == 1 and (tmp_path / "ddp" / "checkpoints" / "last.ckpt").is_file()


def test_resuming_a_finished_run_without_its_last_checkpoint_keeps_best(sample, tmp_path, capsys):
    run = tmp_path / "run"
    train_segmentation(_small_config(tmp_path), sample, run, progress=False)
    best = run / "checkpoints" / "best.ckpt"
    before = best.read_bytes()
    last = run / "checkpoints" / "last.ckpt"
    for damage in ("cut short", "deleted"):
        if damage == "deleted":
            last.unlink()
        else:
            last.write_bytes(last.read_bytes()[:1000])
        error = cli_error(capsys, "segment", "train", "--data", str(sample), "--out", str(run), "--resume",
                          "--no-progress", "--cache", str(tmp_path / "cache"), "--image-size", "64")  # fmt: skip
        assert "last.ckpt: missing or damaged, so the run cannot continue; best.ckpt holds a trained model" in error
        assert best.read_bytes() == before


def test_last_checkpoint_holds_the_last_epoch_even_when_validation_stopped_improving(sample, tmp_path, monkeypatch):
    from lightning.pytorch.callbacks import ModelCheckpoint

    # Validation "improves" at the first epoch only: Lightning 2.6's save_last then kept last.ckpt
    # at that epoch, and a resume went back to it.
    monkeypatch.setattr(
        ModelCheckpoint, "check_monitor_top_k", lambda self, trainer, current=None: self.best_model_score is None
    )
    run = tmp_path / "run"
    train_segmentation(_small_config(tmp_path, epochs=3, steps_per_epoch=1), sample, run, progress=False)
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 3)
    assert (best["epoch"], best["global_step"]) == (0, 1)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
