"""Bad input and failures a user can cause: one ``error:`` line naming the file (or flag) and
exit status 2, never a traceback, and never a run that looks successful but produced nothing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import cli_error, write_image
from srcrn.data.images import MAX_ASPECT_RATIO, MIN_SIDE, decode_image
from srcrn.errors import DataError


@pytest.mark.parametrize(
    ("size", "problem"),
    [((1, 1), "too small"), ((MIN_SIDE - 1, 400), "too small"), ((2000, 50), "too elongated")],
)
def test_images_of_absurd_shape_are_refused_naming_the_file(tmp_path, size, problem):
    path = write_image(tmp_path / "odd.png", size=size)
    with pytest.raises(DataError, match=problem) as refused:
        decode_image(path, 64)
    assert str(refused.value).startswith(str(path))


def test_the_limits_admit_every_dermoscopic_shape(tmp_path):
    for size in ((MIN_SIDE, MIN_SIDE), (int(MIN_SIDE * MAX_ASPECT_RATIO), MIN_SIDE), (1024, 767)):
        assert decode_image(write_image(tmp_path / "ok.png", size=size), 32)[0].shape == (32, 32, 3)


def test_an_output_folder_that_is_a_file_is_one_line(tmp_path, sample, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder")
    message = cli_error(capsys, "prepare", str(sample), "--out", str(blocker), "--size", "32")
    assert message.startswith(f"error: {blocker}") and "File exists" in message
    assert "Traceback" not in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path, sample):
    from srcrn.cli import main

    blocker = tmp_path / "taken"
    blocker.write_text("")
    with pytest.raises(FileExistsError):
        main(["prepare", str(sample), "--out", str(blocker), "--size", "32", "--debug"])


@pytest.mark.slow
def test_predict_that_predicts_nothing_fails(tmp_path, tiny_segmenter, tiny_classifier, capsys):
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tiny)
    strip = write_image(tmp_path / "strip.png", size=(20000, 50))
    models = ["--segmenter", tiny_segmenter, "--classifier", tiny_classifier, "--no-progress"]
    message = cli_error(capsys, "predict", str(tiny), str(strip), "--out", str(tmp_path / "out"), *models)
    assert "nothing predicted: 2 input(s) refused" in message and str(tiny) in message
    (tmp_path / "empty").mkdir()
    message = cli_error(capsys, "predict", str(tmp_path / "empty"), "--out", str(tmp_path / "out2"), *models)
    assert "nothing predicted: no image files found" in message


def test_prepare_removes_the_staging_folder_of_a_killed_prepare_only(tmp_path, sample):
    import os
    import subprocess
    import sys

    from srcrn.data.cache import STAGING_PREFIX, prepare
    from srcrn.data.isic import IsicDataset

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "cache"
    stale = out / f"{STAGING_PREFIX}{int(gone.stdout)}-abc"
    live = out / f"{STAGING_PREFIX}{os.getpid()}-def"
    for folder in (stale, live):
        folder.mkdir(parents=True)
        (folder / "images.npy").write_bytes(b"x" * 1000)
    prepare(IsicDataset.from_dir(sample), 32, out, workers=1, show_progress=False)
    assert not stale.exists() and live.exists()


def _train_in_background(sample, out, cache):
    """``srcrn segment train`` (64 px, 2 epochs of 6 steps) as a child process, once it trains."""
    import os
    import subprocess
    import sys
    import time

    command = [sys.executable, "-m", "srcrn", "segment", "train", "--data", str(sample), "--out", str(out),
               "--image-size", "64", "--batch-size", "4", "--epochs", "2", "--steps-per-epoch", "6",
               "--cache", str(cache), "--no-progress"]  # fmt: skip
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (out / "logs" / "hparams.yaml").is_file():  # written when fit starts
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read() if child.stderr else ""
        time.sleep(0.05)
    return child


def _no_duplicate_rows(metrics):
    import pandas as pd

    table = pd.read_csv(metrics)
    kinds = table.notna().apply(lambda row: tuple(row), axis=1)
    assert not table.assign(kind=kinds).duplicated(["epoch", "step", "kind"]).any()
    return table


@pytest.mark.slow
def test_sigterm_saves_a_resumable_checkpoint_and_resume_completes(sample, tmp_path):
    import signal

    from helpers import run_cli
    from srcrn.inference.checkpoints import read_checkpoint

    out, cache = tmp_path / "run", tmp_path / "cache"
    child = _train_in_background(sample, out, cache)
    child.send_signal(signal.SIGTERM)
    _, errors = child.communicate(timeout=120)
    assert child.returncode == 128 + signal.SIGTERM, errors
    assert "stopped by SIGTERM" in errors and "--resume" in errors and "Traceback" not in errors
    assert read_checkpoint(out / "checkpoints" / "last.ckpt", expect="segmenter").kind == "segmenter"
    run_cli("segment", "train", "--data", str(sample), "--out", str(out), "--resume", "--no-progress")
    summary = __import__("json").loads((out / "summary.json").read_text())
    assert summary["global_step"] == 12 and summary["epochs"] == 2
    assert sorted(_no_duplicate_rows(out / "metrics.csv")["epoch"].unique()) == [0, 1]


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_is_refused_or_started_over(sample, tmp_path, capsys):
    import signal

    from helpers import run_cli

    out, cache = tmp_path / "run", tmp_path / "cache"
    child = _train_in_background(sample, out, cache)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    assert not (out / "checkpoints" / "last.ckpt").exists()
    again = ["segment", "train", "--data", str(sample), "--out", str(out), "--no-progress"]
    assert "interrupted before its first checkpoint; pass --resume" in cli_error(capsys, *again)
    run_cli(*again, "--resume")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]  # no best-v1
    _no_duplicate_rows(out / "metrics.csv")
    assert "already holds a run" in cli_error(capsys, *again)
