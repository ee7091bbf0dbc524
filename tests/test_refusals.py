"""What cannot be meaningful is refused (issue 25, the parts in the stage-2 and settings code):
booleans read as numbers, YAML alias bombs and non-UTF-8 settings files, a negative Platt slope,
a one-class feature model, a stack written over its member, members' unreadable score tables,
an empty --shard, a last training batch of one image."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from helpers import cli_error
from srcrn.errors import ConfigError
from srcrn.settings import ClassifyTrainSettings, load_settings


def test_yes_no_values_are_not_numbers(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: yes\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: epochs: expected a number, not a yes/no value"):
        load_settings(ClassifyTrainSettings, config)
    assert load_settings(ClassifyTrainSettings, tta=True).tta is True  # real booleans still are


def test_a_yaml_alias_bomb_and_non_utf8_bytes_are_one_line(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i, name in enumerate("bcdefghij"):
        previous = "abcdefghij"[i]
        lines.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
    lines.append("members: *j")
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"bomb\.yaml: expands to more than 10,000 YAML values"):
        load_settings(ClassifyTrainSettings, bomb)
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"epochs: 3\n\xff\xfe\n")
    with pytest.raises(ConfigError, match=r"b\.yaml: not a settings file \(not UTF-8 text\)"):
        load_settings(ClassifyTrainSettings, binary)


def test_a_platt_fit_that_would_reverse_the_ranking_is_not_stored(caplog):
    from srcrn.evaluation.calibration import fit_calibration
    from srcrn.stage2.spec import Calibration

    labels = np.array([0, 0, 0, 1, 1, 1] * 20)
    logits = np.array([2.0, 1.5, 1.0, -1.0, -1.5, -2.0] * 20)  # ranked the wrong way round
    with caplog.at_level(logging.WARNING):
        fitted = fit_calibration(labels, logits, "platt")
    assert fitted == Calibration() and "slope" in caplog.text
    assert fit_calibration(labels, -logits, "platt").scale > 0  # the right way round is kept


def test_a_last_training_batch_of_one_image_is_dropped():
    from srcrn.data.lesion_dataset import LesionDataModule

    class Images:
        def __init__(self, n):
            self.labels = np.arange(n) % 2

        def __len__(self):
            return len(self.labels)

    for count, dropped in ((9, True), (10, False), (8, False)):
        module = LesionDataModule(Images(count), Images(2), batch_size=8, eval_batch_size=8)
        assert module.train_dataloader().drop_last is dropped


def test_an_empty_shard_is_refused(tmp_path, sample, capsys):
    image = sorted((sample / "images").glob("*.jpg"))[0]
    message = cli_error(capsys, "predict", str(image), "--out", str(tmp_path / "o"), "--shard", "")
    assert "--shard: expected K/N such as 2/8 (given '')" in message


def _cv_folder(path, rows=6, logit=True):
    path.mkdir()
    lines = ["image_id,truth,fold" + (",logit" if logit else "")]
    lines += [f"i{k},{k % 2},{k % 2 + 1}" + (f",{k / 10}" if logit else "") for k in range(rows)]
    (path / "oof.csv").write_text("\n".join(lines) + "\n")
    (path / "val.csv").write_text("\n".join(lines) + "\n")
    (path / "cv.json").write_text(json.dumps({"val": {"model": str(path / "model.skops")}}))
    return path


def test_a_stack_refuses_its_member_as_out_and_unreadable_member_tables(tmp_path, capsys):
    a, b = _cv_folder(tmp_path / "a"), _cv_folder(tmp_path / "b", logit=False)
    stack = ["classify", "train", "--model", "ensemble", "--members", str(a), "--members", str(b), "--data", "x"]
    message = cli_error(capsys, *stack, "--out", str(a))
    assert f"--out {a}: is the member {a}" in message
    message = cli_error(capsys, *stack, "--out", str(tmp_path / "b" / "stack"))
    assert "lies inside the member" in message
    before = (a / "oof.csv").read_bytes()
    from srcrn.workflows.stacking import stack_members

    with pytest.raises(ConfigError, match=r"b/oof\.csv: lacks the column\(s\) logit"):
        stack_members([a, b], tmp_path / "out")
    (b / "oof.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"b/oof\.csv: not a readable table"):
        stack_members([a, b], tmp_path / "out")
    assert (a / "oof.csv").read_bytes() == before  # the member is untouched


@pytest.mark.slow
def test_a_feature_model_of_one_class_is_refused(isic_copy, tiny_segmenter, tmp_path, capsys):
    labels = (isic_copy / "labels.csv").read_text().splitlines()
    benign = [labels[0]] + [",".join([line.split(",")[0], "0.0", "0.0"]) for line in labels[1:]]
    (isic_copy / "labels.csv").write_text("\n".join(benign) + "\n")
    message = cli_error(capsys, "classify", "train", "--model", "features", "--data", str(isic_copy),
                        "--segmenter", tiny_segmenter, "--image-size", "64", "--input", "crop", "--out",
                        str(tmp_path / "run"), "--cache", str(tmp_path / "cache"), "--no-progress")  # fmt: skip
    assert "melanoma and" in message and "needs both classes" in message


@pytest.mark.parametrize(
    ("blocked", "argv", "extra"),
    [
        ("fastapi", ["serve", "--model", "BUNDLE"], "srcrn serve: needs the 'serve' extra (fastapi is not installed)"),
        (
            "torch",
            ["segment", "train", "--data", "DATA", "--out", "OUT"],
            "srcrn segment train: needs the 'train' extra",
        ),
        (
            "sklearn",
            ["classify", "cv", "--data", "DATA", "--out", "OUT"],
            "srcrn classify cv: scikit-learn is not installed, though srcrn requires it",
        ),
    ],
)
def test_a_missing_extra_is_named_not_traced(blocked, argv, extra, tmp_path, sample, tiny_bundle):
    import subprocess
    import sys

    values = {"BUNDLE": str(tiny_bundle), "DATA": str(sample), "OUT": str(tmp_path / "out")}
    argv = [values.get(a, a) for a in argv]
    script = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] == {blocked!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from srcrn.cli import main\n"
        f"main({argv!r})\n"
    )
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 2, finished.stderr[-2000:]
    assert extra in finished.stderr and "pip install '" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_an_int8_export_never_replaces_a_folder_it_did_not_write(tmp_path, tiny_segmenter, tiny_classifier, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's file")
    common = ["export", "onnx", "--segmenter", tiny_segmenter, "--classifier", tiny_classifier, "--quantize", "int8"]
    elsewhere = tmp_path / "calibration"
    elsewhere.mkdir()
    message = cli_error(capsys, *common, "--out", str(mine), "--calibration-data", str(elsewhere))
    assert f"{mine}: holds files srcrn export onnx did not write (notes.txt)" in message
    assert (mine / "notes.txt").read_text() == "a user's file"
    data = tmp_path / "data"
    data.mkdir()
    message = cli_error(capsys, *common, "--out", str(data), "--calibration-data", str(data))
    assert f"--out {data}: is the --calibration-data {data}" in message
    from srcrn.cli import main

    with pytest.raises(SystemExit):  # the old spelling still works, for one release, and says so
        main([*common, "--out", str(data), "--calibration", str(data)])
    said = capsys.readouterr().err
    assert "export onnx --calibration is deprecated" in said and f"is the --calibration-data {data}" in said


def test_a_run_folder_is_never_inside_its_data(isic_copy, capsys):
    import hashlib

    labels = hashlib.sha256((isic_copy / "labels.csv").read_bytes()).hexdigest()
    message = cli_error(capsys, "segment", "train", "--data", str(isic_copy), "--out", str(isic_copy / "run"))
    assert f"--out {isic_copy / 'run'}: lies inside the --data {isic_copy}" in message
    message = cli_error(capsys, "classify", "cv", "--data", str(isic_copy), "--out", str(isic_copy), "--model",
                        "features")  # fmt: skip
    assert f"--out {isic_copy}: is the --data {isic_copy}" in message
    assert hashlib.sha256((isic_copy / "labels.csv").read_bytes()).hexdigest() == labels
    assert not (isic_copy / "run").exists() and not (isic_copy / "config.yaml").exists()


@pytest.mark.slow
def test_cv_refuses_a_folder_of_other_data_and_a_refused_run_leaves_nothing(
    isic_copy, tiny_segmenter, tmp_path, capsys
):
    out = tmp_path / "cv"
    common = ["classify", "cv", "--out", str(out), "--model", "features", "--segmenter", tiny_segmenter,
              "--image-size", "64", "--input", "crop", "--cache", str(tmp_path / "cache"), "--no-progress"]  # fmt: skip
    message = cli_error(capsys, *common, "--data", str(isic_copy), "--folds", "500")
    assert "--folds 500: needs 2 to" in message and not out.exists()  # nothing left to block the rerun
    from helpers import run_cli

    run_cli(*common, "--data", str(isic_copy), "--folds", "2", "--no-final")
    labels = (isic_copy / "labels.csv").read_text().splitlines()
    first = labels[1].split(",")
    labels[1] = ",".join([first[0], "0.0" if first[1] == "1.0" else "1.0", first[2]])  # one label changed
    (isic_copy / "labels.csv").write_text("\n".join(labels) + "\n")
    message = cli_error(capsys, *common, "--data", str(isic_copy), "--folds", "2", "--no-final")
    assert "holds a cross-validation of other data or folds" in message


@pytest.mark.slow
def test_classify_eval_checks_the_segmenter_it_is_given(tiny_classifier, sample, tmp_path, capsys):
    message = cli_error(capsys, "classify", "eval", "--model", tiny_classifier, "--data", str(sample), "--out",
                        str(tmp_path / "e"), "--segmenter", tiny_classifier, "--no-progress")  # fmt: skip
    assert "holds a classifier" in message and "a segmenter is needed" in message


def test_a_recipe_that_is_not_a_name_and_a_cv_into_another_kind_of_run(tmp_path, sample, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("recipe: [paper]\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown recipe \['paper'\]"):
        load_settings(ClassifyTrainSettings, config)
    run = tmp_path / "segment-run"
    run.mkdir()
    (run / "config.yaml").write_text("recipe: strong\nstride: 8\nscore_channels: 64\n")  # a segment train run's
    message = cli_error(capsys, "classify", "cv", "--data", str(sample), "--out", str(run), "--model", "features")
    assert f"{run}: holds another kind of run" in message


def test_merge_refuses_a_table_that_is_not_one(tmp_path, capsys):
    shard = tmp_path / "s1"
    shard.mkdir()
    (shard / "predictions.json").write_text("[1, 2, 3]")
    message = cli_error(capsys, "merge-predictions", str(shard), "--out", str(tmp_path / "m"))
    assert "predictions.json: not a predictions table of 'srcrn predict'" in message


def test_a_run_summary_is_read_in_one_place(tmp_path):
    from srcrn.errors import ConfigError
    from srcrn.training.summary import kept_model, read_summary

    assert kept_model({"best_checkpoint": "b.ckpt"}) == "b.ckpt"  # a run of before model_checkpoint existed
    assert kept_model({"best_checkpoint": "b.ckpt", "model_checkpoint": "last.ckpt"}) == "last.ckpt"
    with pytest.raises(ConfigError, match=r"summary\.json: missing: the run has not finished"):
        read_summary(tmp_path)
    (tmp_path / "summary.json").write_text('{"epochs": 3}')
    with pytest.raises(ConfigError, match="not a run summary of srcrn"):
        read_summary(tmp_path)
