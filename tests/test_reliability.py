"""Bad input and failures a user can cause: one ``error:`` line naming the file (or flag) and
exit status 2, never a traceback, and never a run that looks successful but produced nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import cli_error, png_claiming, run_cli, write_image
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
    message = cli_error(capsys, "prepare", str(sample), "--out", str(blocker), "--image-size", "32")
    assert message.startswith(f"error: {blocker}") and "is a file, not a folder" in message
    assert "Traceback" not in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path, sample):
    from srcrn.cli import main

    blocker = tmp_path / "taken"
    blocker.write_text("")
    from srcrn.errors import ConfigError

    with pytest.raises(ConfigError, match="is a file, not a folder"):
        main(["prepare", str(sample), "--out", str(blocker), "--image-size", "32", "--debug"])


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
    import json
    import socket

    users = out / f"{STAGING_PREFIX}1-mine"  # a user's folder of that name: no mark, never swept (issue 32)
    for folder, pid in ((stale, int(gone.stdout)), (live, os.getpid()), (users, None)):
        folder.mkdir(parents=True)
        (folder / "images.npy").write_bytes(b"x" * 1000)
        if pid is not None:  # what srcrn's staging_folder marks its folders with
            (folder / ".srcrn-staging").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    prepare(IsicDataset.from_dir(sample), 32, out, workers=1, show_progress=False)
    assert not stale.exists() and live.exists() and users.exists()


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

    from srcrn.runtime.checkpoints import read_checkpoint

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


@pytest.mark.parametrize("command", ["segment", "classify"])
def test_resume_into_a_users_project_deletes_nothing_of_theirs(sample, tmp_path, capsys, command):
    """A folder with a config.yaml that srcrn can read (a user's own project) is adopted as an
    older srcrn's run on --resume; with no checkpoint to continue, the start-over removed all of
    checkpoints/ and logs/, the user's files with them (issue 32). Now: refused, nothing touched."""
    import hashlib

    project = tmp_path / "project"
    for name, content in {"config.yaml": "epochs: 3\n", "checkpoints/model.pt": "weights", "logs/notes.txt": "mine",
                          "checkpoints/.last.ckpt.x1.ckpt": "cut short", "metrics.csv": "model,auc\nmine,0.9\n"}.items():  # fmt: skip
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(content)

    def files():
        return {str(p.relative_to(project)): hashlib.sha256(p.read_bytes()).hexdigest() for p in project.rglob("*") if p.is_file()}  # fmt: skip

    before = files()
    message = cli_error(
        capsys, command, "train", "--data", str(sample), "--out", str(project), "--resume", "--no-progress"
    )
    assert f"{project}: no complete checkpoint to resume from, and it holds files a srcrn run does not write" in message
    assert "checkpoints/model.pt" in message and "logs/notes.txt" in message and "nothing was deleted" in message
    assert files() == before
    # Their metrics.csv alone (no epoch and step columns: not a run's merged log) is theirs too.
    for name in ("checkpoints/model.pt", "logs/notes.txt"):
        (project / name).unlink()
    before = files()
    message = cli_error(
        capsys, command, "train", "--data", str(sample), "--out", str(project), "--resume", "--no-progress"
    )
    assert "holds files a srcrn run does not write (metrics.csv)" in message and files() == before


# --- the bad-input corpus: every command that reads user files, generated here ---------------


def _truncate(path, keep=None):
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2 if keep is None else keep])
    return path


def _corpus_case(name, tmp, models):
    """(argv, the path the message must name, text it must contain) of one bad input."""
    import json
    import shutil

    from PIL import Image

    seg, cls, bundle, sample = models
    data = tmp / "data"
    shutil.copytree(sample, data, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    first = sorted((data / "images").glob("*.jpg"))[0]
    mask = data / "masks" / f"{first.stem}_segmentation.png"
    out = str(tmp / "out")
    copy = tmp / "bundle"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "bundle.json").read_text())
    onnx = ["predict", str(first), "--engine", "onnx", "--model", str(copy), "--out", out]
    torch_predict = ["predict", str(first), "--segmenter", seg, "--classifier", cls, "--out", out, "--no-progress"]
    seg_eval = ["segment", "eval", "--data", str(data), "--out", out, "--cache", str(tmp / "c"), "--no-progress"]
    cls_eval = ["classify", "eval", "--data", str(data), "--out", out, "--cache", str(tmp / "c"), "--no-progress"]
    prepare = ["prepare", str(data), "--out", out, "--image-size", "32", "--workers", "1"]
    cache = ["--cache", str(tmp / "c"), "--no-progress"]
    seg_train = ["segment", "train", "--data", str(data), "--out", out, "--image-size", "64", "--epochs", "1", *cache]
    cls_train = ["classify", "train", "--data", str(data), "--out", out, "--image-size", "64", "--weights", "none",
                 "--input", "crop", "--segmenter", seg, "--epochs", "1", *cache]  # fmt: skip
    if name == "prepare: truncated image":
        return prepare, _truncate(first), "truncated"
    if name == "prepare: not an image":
        first.write_text("not a picture")
        return prepare, first, "cannot read image"
    if name == "prepare: 1x1 image":
        Image.fromarray(__import__("numpy").zeros((1, 1, 3), "uint8")).save(first, format="JPEG")
        return prepare, first, "too small"
    if name == "prepare: mask of another size":
        Image.new("L", (40, 40)).save(mask)
        return [*prepare, "--require-masks"], mask, "differs from its image"
    if name == "prepare: labels with wrong columns":
        (data / "labels.csv").write_text("id,label\nISIC_0000071,1\n")
        return prepare, data / "labels.csv", "columns"
    if name == "segment eval: a classifier given as the segmenter":
        return [*seg_eval, "--model", cls], Path(cls), "holds a classifier"
    if name == "segment eval: random bytes as checkpoint":
        junk = tmp / "junk.ckpt"
        junk.write_bytes(__import__("os").urandom(4096))
        return [*seg_eval, "--model", str(junk)], junk, "not a readable checkpoint"
    if name == "segment eval: truncated checkpoint":
        cut = tmp / "cut.ckpt"
        cut.write_bytes(Path(seg).read_bytes()[:100_000])
        return [*seg_eval, "--model", str(cut)], cut, "not a readable checkpoint"
    if name == "classify eval: a segmenter given as the classifier":
        return [*cls_eval, "--model", seg], Path(seg), "holds a segmenter"
    if name == "export onnx: models swapped":
        return (
            ["export", "onnx", "--segmenter", cls, "--classifier", seg, "--out", out],
            Path(cls),
            "holds a classifier",
        )
    if name == "predict onnx: bundle.json not JSON":
        (copy / "bundle.json").write_text("{ not json")
        return onnx, copy / "bundle.json", "not valid JSON"
    if name == "predict onnx: a model file missing":
        (copy / "classifier.onnx").unlink()
        return onnx, copy / "classifier.onnx", "missing"
    if name == "predict onnx: a model file damaged":
        _truncate(copy / "classifier.onnx", 5000)
        return onnx, copy / "classifier.onnx", "SHA-256 mismatch"
    if name == "predict onnx: a model path outside the bundle":
        manifest["classifier"]["file"] = "../elsewhere.onnx"
        (copy / "bundle.json").write_text(json.dumps(manifest))
        return onnx, copy / "bundle.json", "outside the bundle"
    if name == "predict onnx: wrong bundle field":
        manifest["classifier"]["threshold"] = 7
        (copy / "bundle.json").write_text(json.dumps(manifest))
        return onnx, copy / "bundle.json", "classifier.threshold"
    if name.startswith("predict: DICOM"):
        return _dicom_case(name, tmp, first, torch_predict, out)
    if name == "predict: --out is a file":
        (tmp / "taken").write_text("")
        taken = [str(tmp / "taken") if a == out else a for a in torch_predict]
        return taken, tmp / "taken", "is a file, not a folder"
    if name == "predict: the only image is truncated":
        return torch_predict, _truncate(first), "truncated"
    if name == "predict: segmenter checkpoint missing":
        return (
            ["predict", str(first), "--segmenter", str(tmp / "none.ckpt"), "--classifier", cls, "--out", out],
            (tmp / "none.ckpt"),
            "not found",
        )
    if name == "segment train: a mask of another size":
        Image.new("L", (40, 40)).save(mask)
        return seg_train, mask, "differs from its image"
    if name == "segment train: an image size SRCRN cannot take":
        return [*seg_train, "--image-size", "100"], "--image-size", "multiples of 32"
    if name == "segment train: a settings file that is not YAML":
        (tmp / "bad.yaml").write_text("lr: [")
        return [*seg_train, "--config", str(tmp / "bad.yaml")], tmp / "bad.yaml", "not valid YAML"
    if name == "classify train: an image without its label":
        labels = (data / "labels.csv").read_text().splitlines()
        (data / "labels.csv").write_text("\n".join(line for line in labels if first.stem not in line) + "\n")
        return cls_train, first, "label"
    if name == "classify train: a classifier given as the segmenter":
        return [*cls_train, "--segmenter", cls], Path(cls), "holds a classifier"
    if name == "classify eval: a split file naming an unknown image":
        split = tmp / "split.csv"
        split.write_text("image_id,subset\nISIC_9999999,val\n")
        return [*cls_eval, "--model", cls, "--split-file", str(split)], split, "ISIC_9999999"
    if name == "reproduce: a config with an unknown key":
        (tmp / "r.yaml").write_text("experiments: [segmentation]\nsegmentaton: {epochs: 1}\n")
        return (
            ["reproduce", "--config", str(tmp / "r.yaml"), "--data", str(data), "--out", out],
            tmp / "r.yaml",
            "segmentaton",
        )
    if name == "predict: a PNG whose header claims 30000x30000 pixels":
        bomb = tmp / "bomb.png"
        bomb.write_bytes(png_claiming(30000, 30000))
        return [*torch_predict[:1], str(bomb), *torch_predict[2:]], bomb, "absurd image size"
    meta = data / "metadata.csv"
    feature_train = ["classify", "train", "--model", "features", "--clinical", "all", "--data", str(data), "--out",
                     out, "--image-size", "64", "--input", "crop", "--segmenter", seg, *cache]  # fmt: skip
    bad_metadata = {
        "metadata: an age outside 0-120": ("image,age_approx,sex\nISIC_0000071,130,male\n", "130 is outside 0-120"),
        "metadata: an unknown sex": ("image,age_approx,sex\nISIC_0000071,40,x\n", "unknown value 'x'"),
        "metadata: an unknown body site": ("image,anatom_site_general\nISIC_0000071,knee\n", "unknown body site"),
        "metadata: an image twice": ("image,sex\nISIC_0000071,male\nISIC_0000071,male\n", "appears twice"),
        "metadata: an id the data lacks": ("image,sex\nISIC_9999999,male\n", "unknown image id 'ISIC_9999999'"),
        "metadata: wrong columns": ("id,age\nISIC_0000071,40\n", "unexpected columns id,age"),
        "metadata: not UTF-8": (b"image,sex\n\xff\xfe,male\n", "not UTF-8"),
    }
    if name in bad_metadata:
        text, problem = bad_metadata[name]
        if isinstance(text, bytes):
            meta.write_bytes(text)
        else:
            meta.write_text(text)
        return feature_train, meta, problem
    if name == "predict: --metadata file missing":
        return [*torch_predict, "--metadata", str(tmp / "none.csv")], tmp / "none.csv", "metadata file not found"
    if name == "predict: --metadata with a bad age":
        (tmp / "m.csv").write_text("image_id,age_approximate,sex\nISIC_0000071,-3,female\n")
        return [*torch_predict, "--metadata", str(tmp / "m.csv")], tmp / "m.csv", "-3 is outside 0-120"
    if name == "predict: --out is the input folder":
        argv = ["predict", str(data / "images"), "--segmenter", seg, "--classifier", cls, "--out", str(data)]
        return [*argv, "--no-progress"], data, "holds the input"
    if name == "segment eval: --out inside the data folder":
        inside = data / "evaluation"
        return [*seg_eval[:5], str(inside), *seg_eval[6:], "--model", seg], inside, "lies inside the --data"
    if name == "export onnx int8: --out is the calibration data":
        return (["export", "onnx", "--segmenter", seg, "--classifier", cls, "--quantize", "int8", "--calibration-data",
                 str(data), "--out", str(data)], data, "is the --calibration-data")  # fmt: skip
    if name == "classify cv: --folds beyond the rarer class":
        return (["classify", "cv", "--data", str(data), "--out", out, "--folds", "500", "--model", "features",
                 "--segmenter", seg, *cache], "--folds 500", "needs 2 to")  # fmt: skip
    owned = {"format": "srcrn-output", "command": "segment eval", "srcrn_version": "0", "created": "2026-01-01"}
    evaluation, mine = tmp / "evaluation", tmp / "mine"
    if name.endswith("another command's output"):
        evaluation.mkdir()
        (evaluation / "srcrn-output.json").write_text(json.dumps(owned))
        (evaluation / "per_image.csv").write_text("image_id,jaccard\n")
    if name.endswith("of the user's"):
        mine.mkdir()
    if name == "predict: --out is another command's output":
        return (
            [*torch_predict[:-2], str(evaluation), "--no-progress"],
            evaluation,
            "holds the output of 'srcrn segment eval'",
        )
    if name == "export onnx: --out is another command's output":
        return (["export", "onnx", "--segmenter", seg, "--classifier", cls, "--out", str(evaluation)], evaluation,
                "holds the output of 'srcrn segment eval'")  # fmt: skip
    if name == "segment eval: --out holds a metrics.json of the user's":
        (mine / "metrics.json").write_text("{}")
        argv = [*seg_eval[:5], str(mine), *seg_eval[6:], "--model", seg]
        return argv, mine / "metrics.json", "exists and was not written by srcrn segment eval"
    if name == "classify train: --out holds files of the user's":
        (mine / "notes.txt").write_text("mine")
        argv = [*cls_train[:5], str(mine), *cls_train[6:]]
        return argv, mine, "holds files srcrn classify train did not write (notes.txt)"
    if name == "merge-predictions: --out holds a predictions.csv of the user's":
        (mine / "predictions.csv").write_text("image_id\n")
        return ["merge-predictions", str(copy), "--out", str(mine)], mine / "predictions.csv", "was not written by"
    bomb_lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    bomb_lines += [f"{n}: &{n} [{', '.join(['*' + 'abcdefghij'[i]] * 9)}]" for i, n in enumerate("bcdefghij")]
    settings_files = {
        "segment train: batch_size: yes in a settings file": ("batch_size: yes\n", "batch_size: expected a number, not a yes/no"),
        "segment train: a settings file that expands past 10 000 values": (
            "\n".join([*bomb_lines, "lr: *j"]) + "\n", "expands to more than 10,000 YAML values"),
        "segment train: a settings file that is not UTF-8": (b"epochs: 3\n\xff\xfe\n", "not UTF-8 text"),
        "segment train: a recipe that is not a name": ("recipe: [paper]\n", "unknown recipe ['paper']"),
    }  # fmt: skip
    if name in settings_files:
        text, problem = settings_files[name]
        config = tmp / "settings.yaml"
        config.write_bytes(text) if isinstance(text, bytes) else config.write_text(text)
        return [*seg_train, "--config", str(config)], config, problem
    if name == "export onnx int8: --out a folder of the user's":
        (mine / "notes.txt").write_text("mine")
        return (["export", "onnx", "--segmenter", seg, "--classifier", cls, "--quantize", "int8", "--calibration-data",
                 str(data), "--out", str(mine)], mine, "holds files srcrn export onnx did not write")  # fmt: skip
    if name == "classify cv: --out is a segment train run":
        evaluation.mkdir()
        (evaluation / "srcrn-output.json").write_text(json.dumps(owned | {"command": "segment train"}))
        return (["classify", "cv", "--data", str(data), "--out", str(evaluation), "--model", "features", *cache],
                evaluation, "holds the output of 'srcrn segment train'")  # fmt: skip
    if name == "classify train ensemble: --out is a member":
        members = [tmp / "cv-a", tmp / "cv-b"]
        for member in members:
            member.mkdir()
            (member / "cv.json").write_text("{}")
        return (["classify", "train", "--model", "ensemble", "--members", str(members[0]), "--members",
                 str(members[1]), "--data", str(data), "--out", str(members[0])], "--out", "is the member")  # fmt: skip
    if name == "merge-predictions: --out is a shard":
        shard = tmp / "shard-1"
        run_cli("predict", str(first), "--model", str(bundle), "--out", str(shard), "--shard", "1/2", "--no-progress")
        return ["merge-predictions", str(shard), "--out", str(shard)], "--out", "is the shard"
    if name == "classify eval: --segmenter is a classifier":
        return [*cls_eval, "--model", cls, "--segmenter", cls], Path(cls), "holds a classifier"
    if name == "predict: --shard ''":
        return [*torch_predict, "--shard", ""], "--shard", "expected K/N such as 2/8 (given '')"
    if name == "classify eval: a feature model file without its names":
        return [*cls_eval, "--model", str(_skops_without_names(tmp))], tmp / "broken.skops", "damaged feature model"
    raise KeyError(name)


def _skops_without_names(tmp):
    """A skops file of the feature model's format that lacks its column names."""
    import skops.io
    from sklearn.ensemble import HistGradientBoostingClassifier

    path = tmp / "broken.skops"
    estimator = HistGradientBoostingClassifier(max_iter=2).fit([[0.0], [1.0], [0.0], [1.0]], [0, 1, 0, 1])
    skops.io.dump({"format": "srcrn-feature-model", "estimator": estimator, "settings": {}, "extras": {}}, path)
    return path


def _dicom_case(name, tmp, first, torch_predict, out):
    """A DICOM photograph of ``first``, spoilt as ``name`` says; (argv, path, text)."""
    import numpy as np
    import pydicom
    from PIL import Image

    from test_dicom import dicom_photo

    path = dicom_photo(tmp / "photo.dcm", np.asarray(Image.open(first).convert("RGB")))
    dataset = pydicom.dcmread(path)
    argv = [str(path) if a == str(first) else a for a in torch_predict]
    if name == "predict: DICOM of a CT":
        dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        dataset.Modality = "CT"
        expected = "not a photograph"
    elif name == "predict: DICOM without pixel data":
        del dataset.PixelData
        expected = "no pixel data"
    elif name == "predict: DICOM of two frames":
        dataset.NumberOfFrames = 2
        expected = "multi-frame"
    else:  # truncated
        return argv, _truncate(path, 3000), "cannot"
    dataset.save_as(path)
    return argv, path, expected


CORPUS = [
    "prepare: truncated image",
    "prepare: not an image",
    "prepare: 1x1 image",
    "prepare: mask of another size",
    "prepare: labels with wrong columns",
    "segment eval: a classifier given as the segmenter",
    "segment eval: random bytes as checkpoint",
    "segment eval: truncated checkpoint",
    "classify eval: a segmenter given as the classifier",
    "export onnx: models swapped",
    "predict onnx: bundle.json not JSON",
    "predict onnx: a model file missing",
    "predict onnx: a model file damaged",
    "predict onnx: a model path outside the bundle",
    "predict onnx: wrong bundle field",
    "predict: --out is a file",
    "predict: DICOM of a CT",
    "predict: DICOM without pixel data",
    "predict: DICOM of two frames",
    "predict: DICOM truncated",
    "predict: the only image is truncated",
    "predict: segmenter checkpoint missing",
    "predict: a PNG whose header claims 30000x30000 pixels",
    "segment train: a mask of another size",
    "segment train: an image size SRCRN cannot take",
    "segment train: a settings file that is not YAML",
    "classify train: an image without its label",
    "classify train: a classifier given as the segmenter",
    "classify eval: a split file naming an unknown image",
    "reproduce: a config with an unknown key",
    "metadata: an age outside 0-120",
    "metadata: an unknown sex",
    "metadata: an unknown body site",
    "metadata: an image twice",
    "metadata: an id the data lacks",
    "metadata: wrong columns",
    "metadata: not UTF-8",
    "predict: --metadata file missing",
    "predict: --metadata with a bad age",
    "predict: --out is the input folder",
    "segment eval: --out inside the data folder",
    "export onnx int8: --out is the calibration data",
    "classify cv: --folds beyond the rarer class",
    "classify eval: a feature model file without its names",
    "predict: --out is another command's output",
    "export onnx: --out is another command's output",
    "segment eval: --out holds a metrics.json of the user's",
    "classify train: --out holds files of the user's",
    "merge-predictions: --out holds a predictions.csv of the user's",
    "segment train: batch_size: yes in a settings file",
    "segment train: a settings file that expands past 10 000 values",
    "segment train: a settings file that is not UTF-8",
    "segment train: a recipe that is not a name",
    "export onnx int8: --out a folder of the user's",
    "classify cv: --out is a segment train run",
    "classify train ensemble: --out is a member",
    "merge-predictions: --out is a shard",
    "classify eval: --segmenter is a classifier",
    "predict: --shard ''",
]


@pytest.mark.slow
@pytest.mark.parametrize("case", CORPUS)
def test_bad_input_corpus(case, tmp_path, tiny_segmenter, tiny_classifier, tiny_bundle, sample, capsys):
    import hashlib

    argv, named, text = _corpus_case(case, tmp_path, (tiny_segmenter, tiny_classifier, tiny_bundle, sample))
    before = {p for p in tmp_path.rglob("*") if "out" not in p.relative_to(tmp_path).parts[:1]}

    def contents() -> dict:
        return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before if p.is_file()}

    inputs = contents()
    message = cli_error(capsys, *argv)
    assert str(named) in message and text in message, message
    assert "Traceback" not in capsys.readouterr().err
    after = {p for p in tmp_path.rglob("*") if "out" not in p.relative_to(tmp_path).parts[:1]}
    assert {p for p in after - before if p.parts[len(tmp_path.parts)] != "c"} == set()  # nothing outside --out
    assert contents() == inputs  # every input file's bytes are as they were


def _start(command, ready, timeout=120):
    """A ``python -m srcrn`` child process, returned once ``ready()`` holds."""
    import os
    import subprocess
    import sys
    import time

    child = subprocess.Popen(
        [sys.executable, "-m", "srcrn", *command],
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + timeout
    while not ready():
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read() if child.stderr else ""
        time.sleep(0.02)
    return child


@pytest.mark.slow
def test_classify_train_stopped_by_sigterm_resumes(sample, tiny_segmenter, tmp_path):
    import signal

    out = tmp_path / "run"
    command = ["classify", "train", "--data", str(sample), "--out", str(out), "--segmenter", tiny_segmenter,
               "--input", "crop", "--weights", "none", "--image-size", "64", "--batch-size", "4", "--epochs", "3",
               "--cache", str(tmp_path / "cache"), "--no-progress"]  # fmt: skip
    child = _start(command, lambda: (out / "logs" / "hparams.yaml").is_file())
    child.send_signal(signal.SIGTERM)
    _, errors = child.communicate(timeout=120)
    assert child.returncode == 128 + signal.SIGTERM and "Traceback" not in errors, errors
    run_cli("classify", "train", "--data", str(sample), "--out", str(out), "--resume", "--no-progress")
    summary = __import__("json").loads((out / "summary.json").read_text())
    assert summary["epochs"] == 3 and summary["global_step"] == 24  # 32 training images, batch 4
    _no_duplicate_rows(out / "metrics.csv")


@pytest.mark.slow
def test_prepare_killed_midway_leaves_nothing_half_written(sample, tmp_path):
    import signal

    from srcrn.data.cache import MANIFEST, STAGING_PREFIX, PreparedData

    out = tmp_path / "cache"
    command = ["prepare", str(sample), "--out", str(out), "--image-size", "64", "--workers", "1"]
    child = _start(command, lambda: any(out.glob(f"{STAGING_PREFIX}*/images.npy")))
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    assert not (out / MANIFEST).exists()  # no cache that looks complete

    run_cli(*command)
    assert not list(out.glob(f"{STAGING_PREFIX}*")) and len(PreparedData.load(out).ids) == 40


@pytest.mark.slow
def test_predict_killed_midway_then_rerun_gives_the_whole_result(sample, tiny_segmenter, tiny_classifier, tmp_path):
    import signal

    import pandas as pd

    out = tmp_path / "predicted"
    command = ["predict", str(sample / "images"), "--out", str(out), "--segmenter", tiny_segmenter,
               "--classifier", tiny_classifier, "--batch-size", "4", "--no-progress"]  # fmt: skip
    child = _start(command, lambda: len(list((out / "masks").glob("*.png"))) >= 4)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    (out / "masks" / ".ISIC_0000071_segmentation.png.abc123.png").write_bytes(b"half")  # as a kill leaves it
    run_cli(*command)
    assert len(pd.read_csv(out / "predictions.csv")) == 40
    assert len(list((out / "masks").glob("*.png"))) == 40 and not list((out / "masks").glob(".*"))


@pytest.mark.slow
def test_resume_after_a_kill_during_the_first_checkpoint_write_starts_over(sample, tmp_path):

    out = tmp_path / "run"
    train = ["segment", "train", "--data", str(sample), "--out", str(out), "--image-size", "64", "--batch-size", "4",
             "--epochs", "1", "--steps-per-epoch", "2", "--cache", str(tmp_path / "cache"), "--no-progress"]  # fmt: skip
    run_cli(*train)
    last = out / "checkpoints" / "last.ckpt"
    # Cut short, as a kill -9 during the first checkpoints' writes leaves them: nothing complete to
    # keep. (With a readable best.ckpt, --resume refuses and deletes nothing: test_segmentation_stage.)
    for checkpoint in (last, out / "checkpoints" / "best.ckpt"):
        checkpoint.write_bytes(checkpoint.read_bytes()[:50_000])
    run_cli(*train, "--resume")
    from srcrn.runtime.checkpoints import read_checkpoint

    assert read_checkpoint(last, expect="segmenter").kind == "segmenter"
    _no_duplicate_rows(out / "metrics.csv")


@pytest.mark.slow
def test_a_run_killed_in_its_second_epoch_resumes_from_the_first_epochs_checkpoint(sample, tmp_path):
    import json
    import signal

    import torch

    out, cache = tmp_path / "run", tmp_path / "cache"
    last = out / "checkpoints" / "last.ckpt"
    child = _train_in_background(sample, out, cache)
    deadline = __import__("time").monotonic() + 300
    while not last.is_file():  # the end of epoch 1 writes it (atomically: whole or absent)
        assert child.poll() is None and __import__("time").monotonic() < deadline
        __import__("time").sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0  # loadable, whole
    assert not [p for p in last.parent.iterdir() if p.name.startswith(".")]  # no half-written temporary left
    run_cli("segment", "train", "--data", str(sample), "--out", str(out), "--resume", "--no-progress")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == 12 and summary["epochs"] == 2
    assert sorted(_no_duplicate_rows(out / "metrics.csv")["epoch"].unique()) == [0, 1]


@pytest.mark.slow
def test_segment_eval_without_masks_writes_masks_but_no_metrics(tiny_segmenter, sample, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(sample / "images", data / "images")
    out = tmp_path / "eval"
    for scored in (sample, data):  # the first eval's score must not survive beside the second's masks
        run_cli("segment", "eval", "--model", tiny_segmenter, "--data", str(scored), "--out", str(out),
                "--cache", str(tmp_path / "c"), "--no-progress")  # fmt: skip
        assert (out / "metrics.json").exists() == (scored == sample)
    assert "nothing was scored" in capsys.readouterr().err
    assert not (out / "metrics.json").exists() and len(list((out / "masks").glob("*.png"))) == 40


@pytest.mark.parametrize(
    "command",
    [
        ["compare", "a.jpg", "b.jpg", "--before-mm-per-pixel", "nan", "--out", "o"],
        ["predict", "a.jpg", "--mm-per-pixel", "inf", "--out", "o"],
        ["segment", "train", "--data", "d", "--out", "o", "--lr", "nan"],
        ["classify", "train", "--data", "d", "--out", "o", "--lr", "-inf"],
        ["serve", "--max-upload-mb", "nan"],
    ],
)
def test_nan_and_infinity_are_refused_for_every_float_flag(command, capsys):
    """Issue 32: a float flag of nan or inf is one line, before anything is read."""
    message = cli_error(capsys, *command)
    assert "Input should be a finite number" in message and message.count("\n") == 0


def test_an_empty_api_key_is_refused_at_start(capsys, monkeypatch):
    """Issue 32: --api-key '' would start an open server that says 'auth: none'."""
    assert "an empty key would start an open server" in cli_error(capsys, "serve", "--api-key", "")
    monkeypatch.setenv("SRCRN_API_KEY", "  ")
    assert "environment SRCRN_API_KEY: api_key: an empty key" in cli_error(capsys, "serve")


def test_json_and_yaml_nested_thousands_deep_are_one_line(
    tmp_path, tiny_bundle, tiny_segmenter, tiny_classifier, sample, capsys
):
    """Issue 32: a card, a bundle.json, a settings file nested 100,000 deep: one line, no RecursionError."""
    import shutil

    deep = "[" * 100_000 + "]" * 100_000
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    (bundle / "bundle.json").write_text(deep)
    image = str(sorted((sample / "images").glob("*.jpg"))[0])
    message = cli_error(capsys, "predict", image, "--model", str(bundle), "--out", str(tmp_path / "p"))
    assert "bundle.json" in message and "nested too deeply" in message
    (tmp_path / "card.json").write_text(deep)
    message = cli_error(capsys, "export", "onnx", "--segmenter", tiny_segmenter, "--classifier", tiny_classifier,
                        "--card", str(tmp_path / "card.json"), "--out", str(tmp_path / "b"))  # fmt: skip
    assert "card.json: not a model card: nested too deeply" in message
    (tmp_path / "deep.yaml").write_text("a: " + deep)
    message = cli_error(capsys, "segment", "train", "--config", str(tmp_path / "deep.yaml"), "--data", str(sample),
                        "--out", str(tmp_path / "run"))  # fmt: skip
    assert "deep.yaml: not a settings file: nested too deeply" in message


@pytest.mark.slow
def test_a_dds_file_named_jpg_fails_alone_in_a_folder(tmp_path, tiny_bundle, sample, capsys):
    """Issue 32: a DDS of a pixel format Pillow cannot decode (NotImplementedError) is skipped with
    one line; the good images beside it are predicted, and --resume completes."""
    import io
    import shutil
    import struct

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, "DDS")
    dds = bytearray(buffer.getvalue())
    struct.pack_into("<I", dds, 80, 0x4)  # DDPF_FOURCC, with an unknown FourCC
    dds[84:88] = b"ZZZZ"
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(bytes(dds))
    for image in sorted((sample / "images").glob("*.jpg"))[:2]:
        shutil.copy(image, folder)
    out = tmp_path / "out"
    run_cli("predict", str(folder), "--model", str(tiny_bundle), "--out", str(out), "--no-progress")
    written = json.loads((out / "predictions.json").read_text())
    assert len(written["predictions"]) == 2 and len(written["errors"]) == 1
    assert "an unsupported variant of its format" in json.dumps(written["errors"])
    run_cli("predict", str(folder), "--model", str(tiny_bundle), "--out", str(out), "--resume", "--no-progress")
    assert len(json.loads((out / "predictions.json").read_text())["predictions"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("part", "field", "value", "said"),
    [
        ("segmenter", "image_size", 17, "segmenter.image_size: Value error, the segmenter's input 17: each side must"),
        (
            "segmenter",
            "image_size",
            4096,
            "input 4096: each side must be a multiple of 32 (SRCRN's coarsest stride) from 32 to 1024",
        ),
        ("segmenter", "image_size", 100, "multiple of 32"),
        ("segmenter", "image_size", [192, 250], "input 192x250: each side must be a multiple of 32"),
        ("segmenter", "image_size", "wide", "segmenter.image_size: Value error, 'wide' is not a size"),
        ("classifier", "calibration", {"method": "platt", "scale": "high", "bias": 0}, "classifier.calibration.scale"),
        ("classifier", "calibration", {"method": "platt", "scale": "NaN", "bias": 0}, "classifier.calibration.scale"),
    ],
)
def test_bundle_fields_out_of_range_are_one_line(part, field, value, said, tiny_bundle, sample, tmp_path, capsys):
    """Issue 32: bundles with image_size 17 or 4096, or a calibration given as a string, were tracebacks."""
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest[part][field] = value
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    image = str(sorted((sample / "images").glob("*.jpg"))[0])
    message = cli_error(capsys, "predict", image, "--model", str(bundle), "--out", str(tmp_path / "p"))
    assert said in message and message.count("\n") == 0
