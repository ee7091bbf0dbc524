"""Batch jobs of ``srcrn predict``: a job killed with SIGKILL mid-folder resumes to the result
of an uninterrupted run, shards are disjoint and cover everything, merge joins them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from helpers import cli_error, run_cli
from srcrn.inference.batch import JOURNAL
from srcrn.inference.jobs import in_shard, parse_shard

pytestmark = pytest.mark.slow
NUMBERS = ["image_id", "width", "height", "melanoma", "decision", "threshold", "area_pixels", "compactness"]


def _predict(images, bundle, out, *extra):
    return ["predict", str(images), "--engine", "onnx", "--model", str(bundle), "--out", str(out), "--batch-size",
            "4", "--no-progress", *extra]  # fmt: skip


def _table(out):
    return pd.read_csv(out / "predictions.csv").sort_values("image_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def uninterrupted(tiny_bundle, sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "out"
    run_cli(*_predict(sample / "images", tiny_bundle, out))
    return _table(out)


def test_a_job_killed_mid_folder_resumes_to_the_uninterrupted_result(tiny_bundle, sample, tmp_path, uninterrupted):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "srcrn", *_predict(sample / "images", tiny_bundle, out)]
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (out / JOURNAL).is_file() or (out / JOURNAL).read_text().count("\n") < 9:  # job + 8 images
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read() if child.stderr else ""
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    assert not (out / "predictions.csv").exists()  # no table that looks complete
    with open(out / JOURNAL, "a") as journal:
        journal.write('{"image_id": "ISIC_00')  # a record cut short by the kill
    finished = (out / JOURNAL).read_text().count("\n")
    journaled = [json.loads(line)["image_id"] for line in (out / JOURNAL).read_text().splitlines()[1:-1]]
    kept = {i: (out / "masks" / f"{i}_segmentation.png").stat().st_mtime_ns for i in journaled}
    run_cli(*_predict(sample / "images", tiny_bundle, out, "--resume"))
    resumed = _table(out)
    assert len(resumed) == 40 and not (out / JOURNAL).exists()
    pd.testing.assert_frame_equal(resumed[NUMBERS], uninterrupted[NUMBERS], check_exact=False, atol=1e-6)
    assert len(list((out / "masks").glob("*.png"))) == 40 and not list((out / "masks").glob(".*"))
    assert finished >= 9  # the job line and 8 or more images: those were kept, not predicted again
    assert {i: (out / "masks" / f"{i}_segmentation.png").stat().st_mtime_ns for i in journaled} == kept
    # --resume over a finished run predicts nothing again and keeps the table.
    before = (out / "predictions.csv").stat().st_mtime_ns
    masks = {p.name: p.stat().st_mtime_ns for p in (out / "masks").iterdir()}
    run_cli(*_predict(sample / "images", tiny_bundle, out, "--resume"))
    assert {p.name: p.stat().st_mtime_ns for p in (out / "masks").iterdir()} == masks
    assert (out / "predictions.csv").stat().st_mtime_ns >= before and len(_table(out)) == 40


def test_resume_refuses_a_folder_of_other_models(tiny_bundle, sample, tmp_path, capsys):
    out = tmp_path / "out"
    run_cli(*_predict(sample / "images", tiny_bundle, out, "--shard", "1/8"))
    message = cli_error(capsys, *_predict(sample / "images", tiny_bundle, out, "--shard", "1/8", "--resume",
                                          "--threshold", "0.9"))  # fmt: skip
    assert f"{out}: holds predictions of other models or settings (threshold differ)" in message


def test_shards_are_disjoint_cover_everything_and_merge_to_the_whole(tiny_bundle, sample, tmp_path, uninterrupted):
    shards = [tmp_path / f"shard-{k}" for k in (1, 2, 3)]
    for k, out in enumerate(shards, start=1):
        run_cli(*_predict(sample / "images", tiny_bundle, out, "--shard", f"{k}/3", "--no-overlays"))
    ids = [set(_table(out)["image_id"]) for out in shards]
    assert all(ids) and sum(len(i) for i in ids) == 40 and set().union(*ids) == set(uninterrupted["image_id"])
    for k, part in enumerate(ids, start=1):
        assert all(in_shard(image_id, (k, 3)) for image_id in part)
    assert not list(shards[0].glob("overlays/*.png")) and _table(shards[0])["overlay"].isna().all()  # --no-overlays
    merged = tmp_path / "merged"
    run_cli("merge-predictions", *map(str, shards), "--out", str(merged))
    joined = _table(merged)
    pd.testing.assert_frame_equal(joined[NUMBERS], uninterrupted[NUMBERS], check_exact=False, atol=1e-6)
    assert len(json.loads((merged / "predictions.json").read_text())["predictions"]) == 40


def test_merge_refuses_overlapping_shards_and_bad_shard_flags(tiny_bundle, sample, tmp_path, capsys):
    out = tmp_path / "one"
    run_cli(*_predict(sample / "images", tiny_bundle, out, "--shard", "1/8"))
    message = cli_error(capsys, "merge-predictions", str(out), str(out), "--out", str(tmp_path / "m"))
    assert "shard 1/8 is also in" in message and str(out / "predictions.json") in message
    assert "K must be between 1 and N" in cli_error(
        capsys, *_predict(sample / "images", tiny_bundle, out, "--shard", "9/8")
    )
    assert parse_shard("2/8") == (2, 8)


def _same_name_other_content(bundle, folder):
    """A copy of ``bundle`` under the same file names whose classifier differs in its bytes only
    (another ONNX doc string): equal predictions, another model file."""
    import shutil

    import onnx

    from srcrn.bundle.schema import file_sha256

    copy = folder / "bundle"
    shutil.copytree(bundle, copy)
    model = onnx.load(copy / "classifier.onnx")
    model.doc_string = "another model of the same name"
    onnx.save(model, copy / "classifier.onnx")
    manifest = json.loads((copy / "bundle.json").read_text())
    manifest["classifier"]["sha256"] = file_sha256(copy / "classifier.onnx")
    (copy / "bundle.json").write_text(json.dumps(manifest))
    return copy


def test_jobs_are_told_apart_by_model_content_not_file_names(tiny_bundle, sample, tmp_path, capsys):
    other = _same_name_other_content(tiny_bundle, tmp_path / "other")
    out = tmp_path / "out"
    run_cli(*_predict(sample / "images", tiny_bundle, out, "--shard", "1/8"))
    message = cli_error(capsys, *_predict(sample / "images", other, out, "--shard", "1/8", "--resume"))
    assert "holds predictions of other models or settings (classifier differ)" in message
    run_cli(*_predict(sample / "images", other, tmp_path / "s2", "--shard", "2/8"))
    message = cli_error(capsys, "merge-predictions", str(out), str(tmp_path / "s2"), "--out", str(tmp_path / "m"))
    assert "predicted with other models or settings" in message


def test_a_journal_record_pointing_outside_its_folder_is_predicted_again(tiny_bundle, sample, tmp_path):
    out = tmp_path / "out"
    run_cli(*_predict(sample / "images", tiny_bundle, out, "--shard", "1/4"))
    payload = json.loads((out / "predictions.json").read_text())
    victim = payload["predictions"][0]
    elsewhere = tmp_path / "elsewhere.png"  # an existing file outside the output folder
    elsewhere.write_bytes(b"not ours")
    victim["mask"], victim["melanoma"] = str(elsewhere), 0.123456  # a forged record
    (out / "predictions.json").write_text(json.dumps(payload))
    run_cli(*_predict(sample / "images", tiny_bundle, out, "--shard", "1/4", "--resume"))
    again = {r["image_id"]: r for r in json.loads((out / "predictions.json").read_text())["predictions"]}
    assert again[victim["image_id"]]["mask"].startswith(str(out))
    assert again[victim["image_id"]]["melanoma"] != 0.123456


def test_merge_refuses_an_incomplete_job_and_its_own_shard_as_out(tiny_bundle, sample, tmp_path, capsys):
    one, two = tmp_path / "s1", tmp_path / "s2"
    run_cli(*_predict(sample / "images", tiny_bundle, one, "--shard", "1/2", "--no-overlays"))
    before = (one / "predictions.json").read_bytes()
    message = cli_error(capsys, "merge-predictions", str(one), "--out", str(tmp_path / "m"))
    assert "the shards do not cover the job: 2/2 missing (pass --partial to join them)" in message
    run_cli("merge-predictions", str(one), "--out", str(tmp_path / "m"), "--partial")
    assert len(_table(tmp_path / "m")) == len(_table(one))
    message = cli_error(capsys, "merge-predictions", str(one), "--out", str(one), "--partial")
    assert f"--out {one}: is the shard {one}" in message
    # Another shard's run into this shard's folder is another job: refused, its records kept.
    message = cli_error(capsys, *_predict(sample / "images", tiny_bundle, one, "--shard", "2/2", "--resume"))
    assert "holds predictions of other models or settings (shard differ)" in message
    assert (one / "predictions.json").read_bytes() == before
    run_cli(*_predict(sample / "images", tiny_bundle, two, "--shard", "2/2", "--no-overlays"))
    run_cli("merge-predictions", str(one), str(two), "--out", str(tmp_path / "whole"))
    assert len(_table(tmp_path / "whole")) == 40


def test_predict_never_writes_into_its_input_folder(tiny_bundle, isic_copy, tmp_path, capsys):
    import hashlib

    masks = sorted((isic_copy / "masks").glob("*.png"))
    before = [hashlib.sha256(p.read_bytes()).hexdigest() for p in masks]
    message = cli_error(capsys, *_predict(isic_copy / "images", tiny_bundle, isic_copy))
    assert f"--out {isic_copy}: holds the input {isic_copy / 'images'}" in message
    message = cli_error(capsys, *_predict(isic_copy / "images", tiny_bundle, isic_copy / "images" / "out"))
    assert "lies inside the input" in message
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in masks] == before  # the ground truth is intact


def test_a_damaged_record_is_predicted_again_not_a_traceback(tiny_bundle, sample, tmp_path):
    out = tmp_path / "out"
    run_cli(*_predict(sample / "images", tiny_bundle, out, "--shard", "1/4"))
    payload = json.loads((out / "predictions.json").read_text())
    payload["predictions"][0]["mask"] = 5  # not a path
    (out / "predictions.json").write_text(json.dumps(payload))
    run_cli(*_predict(sample / "images", tiny_bundle, out, "--shard", "1/4", "--resume"))
    again = json.loads((out / "predictions.json").read_text())["predictions"]
    assert all(isinstance(r["mask"], str) and r["mask"].startswith(str(out)) for r in again)
