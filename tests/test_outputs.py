"""The output-folder rule (srcrn.outputs): a manifest on creation, folders trusted by it and not
by their names, staged output moved in only when complete, nothing of the user's replaced."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from helpers import cli_error, run_cli
from srcrn.errors import ConfigError
from srcrn.outputs import MANIFEST, output_folder


def _manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text())


def test_a_new_folder_gets_a_manifest_and_a_refused_command_leaves_none(tmp_path):
    from srcrn import __version__

    out = tmp_path / "new" / "eval"
    with output_folder(out, "segment eval") as target:
        assert target == out and _manifest(out)["command"] == "segment eval"
    manifest = _manifest(out)
    assert manifest["format"] == "srcrn-output" and manifest["srcrn_version"] == __version__ and manifest["created"]
    refused = tmp_path / "refused"
    with pytest.raises(ConfigError, match="bad settings"), output_folder(refused, "classify cv"):
        raise ConfigError("bad settings")
    assert not refused.exists()  # it created the folder and wrote nothing else: gone again


def test_a_folder_is_trusted_by_its_manifest_not_its_name(tmp_path):
    out = tmp_path / "run"
    with output_folder(out, "segment train"):
        (out / "config.yaml").write_text("recipe: paper\n")
    with pytest.raises(ConfigError, match=r"holds the output of 'srcrn segment train' \(srcrn-output.json\), not of "
                                          r"'srcrn classify cv'"):  # fmt: skip
        with output_folder(out, "classify cv"):
            pass
    (out / MANIFEST).write_text("not json")
    with pytest.raises(ConfigError, match="not a valid srcrn output manifest"), output_folder(out, "segment train"):
        pass
    (out / MANIFEST).write_text(json.dumps({"format": "something-else", "command": "segment train"}))
    with pytest.raises(ConfigError, match="not a valid srcrn output manifest"), output_folder(out, "segment train"):
        pass


def test_a_users_folder_is_written_into_only_where_nothing_of_theirs_is_replaced(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    with pytest.raises(ConfigError, match=r"holds files srcrn segment train did not write \(notes.txt\)"):
        with output_folder(mine, "segment train"):
            pass
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]  # no manifest left behind
    (mine / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match=rf"{mine / 'metrics.json'}: exists and was not written by srcrn"):
        with output_folder(mine, "segment eval", writes=("metrics.json", "masks")):
            pass
    (mine / "metrics.json").unlink()
    with output_folder(mine, "segment eval", writes=("metrics.json", "masks"), stage=True) as staging:
        (staging / "metrics.json").write_text('{"jaccard": 0.5}')
    assert (mine / "notes.txt").read_text() == "the user's" and _manifest(mine)["command"] == "segment eval"
    assert json.loads((mine / "metrics.json").read_text()) == {"jaccard": 0.5}


def test_an_older_srcrns_output_is_adopted_only_on_resume_and_only_if_the_command_keeps_it(tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.yaml").write_text("recipe: paper\n")
    with (
        pytest.raises(
            ConfigError, match=r"holds the output of an earlier srcrn \(config.yaml, no srcrn-output.json\); pass"
        ),
        output_folder(legacy, "segment train", adopt=("config.yaml",)),
    ):
        pass
    with pytest.raises(ConfigError, match="not this run"):
        with output_folder(legacy, "classify cv", adopt=("config.yaml",), resume=True):
            raise ConfigError("not this run")  # the command's own check refuses what it found
    assert not (legacy / MANIFEST).exists()  # so the folder is not claimed for it
    with output_folder(legacy, "segment train", adopt=("config.yaml",), resume=True):
        pass
    assert _manifest(legacy) | {"created": None} == _manifest(legacy) | {"created": None, "adopted": True}


def test_staged_output_appears_whole_or_not_at_all(tmp_path):
    out = tmp_path / "eval"
    names = ("masks", "metrics.json", "per_image.csv")
    with output_folder(out, "segment eval", writes=names, stage=True, replace=True) as staging:
        assert staging.parent == out and staging.name.startswith(".")  # beside the target, hidden
        (staging / "masks").mkdir()
        (staging / "masks" / "a.png").write_bytes(b"old a")
        (staging / "masks" / "b.png").write_bytes(b"old b")
        (staging / "metrics.json").write_text("{}")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    with pytest.raises(RuntimeError), output_folder(out, "segment eval", writes=names, stage=True) as staging:
        (staging / "masks").mkdir()
        (staging / "masks" / "a.png").write_bytes(b"half of a new run")
        raise RuntimeError("killed midway")
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no staging left

    with output_folder(out, "segment eval", writes=names, stage=True, replace=True) as staging:
        (staging / "masks").mkdir()
        (staging / "masks" / "a.png").write_bytes(b"new a")  # b is not in the new run
        (staging / "per_image.csv").write_text("image_id\n")  # and no metrics.json (no truth masks)
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["a.png"]  # replaced as a whole, not merged
    assert not (out / "metrics.json").exists()  # the old run's scores do not survive beside the new masks
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, "masks", "per_image.csv"])


def test_a_killed_commands_staging_folder_is_swept_on_the_next_run(tmp_path):
    out = tmp_path / "eval"
    with output_folder(out, "segment eval", stage=True):
        pass
    import socket

    killed = out / ".staging-999999999-abc123"  # what a kill -9 leaves: marked by its process
    killed.mkdir()
    (killed / "metrics.json").write_text("{}")
    (killed / ".srcrn-staging").write_text(json.dumps({"pid": 999999999, "host": socket.gethostname()}))
    users = out / ".staging-1-x"  # a user's folder of that name: no mark, never swept (issue 32)
    users.mkdir()
    with output_folder(out, "segment eval", stage=True):
        pass
    assert sorted(p.name for p in out.iterdir()) == [".staging-1-x", MANIFEST]


def _digest(folder: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_every_command_that_writes_leaves_its_manifest(tmp_path, sample, tiny_segmenter, tiny_classifier, tiny_bundle):
    """One run of each writing command: its --out names it, and its inputs are unchanged."""
    inputs = _digest(sample)
    image = sorted((sample / "images").glob("*.jpg"))[0]
    cache = ["--cache", str(tmp_path / "cache"), "--no-progress"]
    commands = {
        "split": ["split", str(sample)],
        "prepare": ["prepare", str(sample), "--image-size", "32", "--workers", "1"],
        "segment eval": ["segment", "eval", "--model", tiny_segmenter, "--data", str(sample), *cache],
        "classify eval": ["classify", "eval", "--model", tiny_classifier, "--data", str(sample), *cache],
        "predict": ["predict", str(image), "--model", str(tiny_bundle), "--no-progress"],
        "export onnx": ["export", "onnx", "--segmenter", tiny_segmenter, "--classifier", tiny_classifier],
        "compare": ["compare", str(image), str(image), "--model", str(tiny_bundle)],
        "segment train": [
            "segment",
            "train",
            "--data",
            str(sample),
            "--image-size",
            "64",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "1",
            "--batch-size",
            "4",
            *cache,
        ],
    }
    from srcrn.inference.batch import OUTPUT_NAMES
    from srcrn.workflows.classify import EVAL_FILES as CLASSIFY_EVAL_FILES
    from srcrn.workflows.segment import EVAL_FILES as SEGMENT_EVAL_FILES

    # A command that may write into a user's folder declares what it writes: all of it.
    declared = {"segment eval": SEGMENT_EVAL_FILES, "classify eval": CLASSIFY_EVAL_FILES, "predict": OUTPUT_NAMES}
    for command, argv in commands.items():
        out = tmp_path / command.replace(" ", "-")
        run_cli(*argv, "--out", str(out))
        assert _manifest(out)["command"] == command, command
        assert not [p for p in out.iterdir() if p.name.startswith(".staging-")], command
        if command in declared:
            written = {p.name for p in out.iterdir()} - {MANIFEST}
            assert written <= set(declared[command]), (command, written - set(declared[command]))
    merged = tmp_path / "merged"
    run_cli("merge-predictions", str(tmp_path / "predict"), "--out", str(merged), "--partial")
    assert _manifest(merged)["command"] == "merge-predictions"
    assert _digest(sample) == inputs


@pytest.mark.slow
def test_a_command_refuses_another_commands_folder(
    tmp_path, sample, tiny_segmenter, tiny_classifier, tiny_bundle, capsys
):
    evaluation = tmp_path / "evaluation"
    run_cli("segment", "eval", "--model", tiny_segmenter, "--data", str(sample), "--out", str(evaluation),
            "--cache", str(tmp_path / "cache"), "--no-progress")  # fmt: skip
    kept = _digest(evaluation)
    image = sorted((sample / "images").glob("*.jpg"))[0]
    message = cli_error(capsys, "predict", str(image), "--model", str(tiny_bundle), "--out", str(evaluation))
    assert f"{evaluation}: holds the output of 'srcrn segment eval'" in message
    assert _digest(evaluation) == kept  # the evaluation's masks are not mixed with predict's
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)  # an older srcrn's bundle: no manifest, adopted by a new export
    assert not (copy / MANIFEST).exists()
    (copy / "notes.txt").write_text("left by an older export")
    run_cli("export", "onnx", "--segmenter", tiny_segmenter, "--classifier", tiny_classifier, "--out", str(copy))
    assert _manifest(copy)["adopted"] is True  # replaced file by file: what it did not write stays
    assert (copy / "notes.txt").read_text() == "left by an older export"
    assert json.loads((copy / "bundle.json").read_text())["segmenter"]["sha256"]


def test_a_rerun_replaces_only_what_the_command_recorded_writing(tmp_path):
    out = tmp_path / "bundle"
    with output_folder(out, "export onnx", stage=True, replace=True) as staging:
        (staging / "bundle.json").write_text("{}")
        (staging / "classifier.onnx").write_bytes(b"cnn")
    assert _manifest(out)["entries"] == ["bundle.json", "classifier.onnx"]
    (out / "notes.txt").write_text("the user's, added later")
    with output_folder(out, "export onnx", stage=True, replace=True) as staging:
        (staging / "bundle.json").write_text("{}")
        (staging / "classifier.skops").write_bytes(b"features")  # the stage-2 model changed kind
    assert not (out / "classifier.onnx").exists()  # the export's own stale file goes
    assert (out / "notes.txt").read_text() == "the user's, added later"  # what it never wrote stays


def test_a_live_commands_staging_folder_is_left_alone(tmp_path):
    import os

    out = tmp_path / "eval"
    with output_folder(out, "segment eval", stage=True):
        pass
    import socket

    live = out / f".staging-{os.getpid()}-abc"  # another run into this folder, still going
    dead = out / ".staging-999999999-abc"  # a pid no process has
    elsewhere = out / ".staging-999999998-abc"  # a dead pid, but another host's (a shared disk)
    for folder, pid, host in ((live, os.getpid(), socket.gethostname()), (dead, 999999999, socket.gethostname()),
                              (elsewhere, 999999998, "another-host")):  # fmt: skip
        folder.mkdir()
        (folder / ".srcrn-staging").write_text(json.dumps({"pid": pid, "host": host}))
    with output_folder(out, "segment eval", stage=True):
        pass
    assert live.is_dir() and not dead.exists() and elsewhere.is_dir()


def test_the_demo_does_not_take_over_a_folder_by_the_names_in_it(tmp_path, capsys):
    mine = tmp_path / "project"
    (mine / "predictions").mkdir(parents=True)
    (mine / "predictions" / "mine.csv").write_text("the user's")
    (mine / "metrics.json").write_text("{}")  # a name the demo writes, in a folder it did not write
    message = cli_error(capsys, "demo", "--train", "--out", str(mine))
    assert f"{mine}: holds files srcrn demo did not write (metrics.json, predictions)" in message
    assert (mine / "predictions" / "mine.csv").read_text() == "the user's" and not (mine / MANIFEST).exists()


@pytest.mark.parametrize("entry", ["../victim", "/ABSOLUTE/victim", "a/../../victim", "..", ""])
def test_a_forged_manifest_cannot_make_a_rerun_delete_outside_the_folder(tmp_path, entry):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    out = tmp_path / "out"
    with output_folder(out, "segment eval", stage=True, replace=True) as staging:
        (staging / "metrics.json").write_text("{}")
    forged = _manifest(out) | {"entries": ["metrics.json", entry.replace("/ABSOLUTE", str(tmp_path))]}
    (out / MANIFEST).write_text(json.dumps(forged))
    with (
        pytest.raises(ConfigError, match=r"srcrn-output.json: entries: .* is not the name of an entry of this folder"),
        output_folder(out, "segment eval", stage=True, replace=True) as staging,
    ):
        (staging / "per_image.csv").write_text("")
    assert (victim / "precious.txt").read_text() == "keep me" and (out / "metrics.json").exists()


def test_a_stale_entry_that_is_a_symlink_goes_without_what_it_points_to(tmp_path):
    truth = tmp_path / "truth"
    truth.mkdir()
    (truth / "mask.png").write_bytes(b"ground truth")
    out = tmp_path / "out"
    with output_folder(out, "segment eval", stage=True, replace=True) as staging:
        (staging / "masks").mkdir()
    shutil.rmtree(out / "masks")
    (out / "masks").symlink_to(truth, target_is_directory=True)  # the recorded entry now leads elsewhere
    with output_folder(out, "segment eval", stage=True, replace=True) as staging:
        (staging / "metrics.json").write_text("{}")  # this run writes no masks: the old entry is stale
    assert not (out / "masks").exists() and not (out / "masks").is_symlink()
    assert (truth / "mask.png").read_bytes() == b"ground truth"


def test_json_files_hold_no_nan(tmp_path):
    """Issue 31: JSON has no NaN or infinity; srcrn writes null (strict parsers read every file)."""
    import math

    import numpy as np

    from srcrn.atomic import write_json

    def refuse(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    write_json(tmp_path / "f.json", {"auc": math.nan, "spread": [np.float32("inf")], "n": np.int64(3)})
    assert json.loads((tmp_path / "f.json").read_text(), parse_constant=refuse) == {
        "auc": None,
        "spread": [None],
        "n": 3,
    }


@pytest.mark.slow
def test_an_output_folder_records_what_produced_it(tmp_path, tiny_segmenter, sample):
    """Issue 31: srcrn's version and commit, and each input's identity (a file's SHA-256, a
    folder's listing digest), in the folder's manifest."""
    import hashlib

    out = tmp_path / "eval"
    run_cli("segment", "eval", "--model", tiny_segmenter, "--data", str(sample), "--out", str(out), "--no-progress")
    manifest = json.loads((out / "srcrn-output.json").read_text())
    inputs = manifest["provenance"]["inputs"]
    assert inputs["--model"]["sha256"] == hashlib.sha256(Path(tiny_segmenter).read_bytes()).hexdigest()
    assert inputs["--data"]["files"] == sum(1 for f in sample.rglob("*") if f.is_file() and not f.name.startswith("."))
    assert len(inputs["--data"]["listing_sha256"]) == 64 and manifest["srcrn_version"]
    commit = manifest["provenance"]["git_commit"]
    assert commit is None or len(commit) == 40  # None when srcrn runs from an installed wheel


def test_a_second_writer_into_one_folder_is_refused_while_the_first_runs(tmp_path):
    """Issue 32: two runs into one --out at once both succeeded and left a table that did not
    match its masks; a lock (fcntl) held for the run refuses the second, naming the first."""
    from srcrn.errors import ConfigError
    from srcrn.outputs import output_folder

    out = tmp_path / "out"
    with output_folder(out, "predict", writes=("predictions.csv",)):
        with pytest.raises(ConfigError, match=r"another srcrn \(pid \d+, srcrn predict\) is writing into this folder"):
            with output_folder(out, "predict", writes=("predictions.csv",)):
                pass
    with output_folder(out, "predict", writes=("predictions.csv",)):  # released when the first ends
        pass
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError):
        with output_folder(user, "predict"):
            pass
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt"]  # refused: nothing of ours left in it
    with pytest.raises(ConfigError):
        with output_folder(tmp_path / "new", "predict"):
            raise ConfigError("the command refused its input")
    assert not (tmp_path / "new").exists()  # a refused command leaves no folder to block the retry


def test_writes_never_follow_a_symlink_out_of_the_output_folder(tmp_path):
    """Issue 32: an owned folder whose masks/ links to ground truth, and a --out that is a loop."""
    from srcrn.errors import ConfigError
    from srcrn.outputs import output_folder

    truth = tmp_path / "truth"
    truth.mkdir()
    (truth / "ISIC_0000000_segmentation.png").write_bytes(b"ground truth")
    out = tmp_path / "out"
    with output_folder(out, "predict", writes=("masks", "predictions.csv")):
        pass
    (out / "masks").symlink_to(truth, target_is_directory=True)
    with pytest.raises(ConfigError, match=r"masks: is a symbolic link; srcrn never writes through one"):
        with output_folder(out, "predict", writes=("masks", "predictions.csv")):
            pass
    assert (truth / "ISIC_0000000_segmentation.png").read_bytes() == b"ground truth"
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(ConfigError, match="a symbolic link to nothing"):
        with output_folder(loop, "predict"):
            pass


def test_a_symlink_loop_as_input_or_output_is_one_line(tmp_path, sample, capsys):
    """Issue 32: symlink loops as --out, as an input, as compare's image: one line, no traceback."""
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    image = str(sorted((sample / "images").glob("*.jpg"))[0])
    assert "loop: cannot be resolved (--out): a symbolic-link loop?" in cli_error(
        capsys, "predict", image, "--out", str(loop)
    )
    assert "loop: cannot be resolved (input" in cli_error(capsys, "predict", str(loop), "--out", str(tmp_path / "p"))
    assert "loop: cannot be resolved (BEFORE)" in cli_error(
        capsys, "compare", str(loop), image, "--out", str(tmp_path / "c")
    )


def test_a_data_folder_is_never_an_output_folder_whatever_its_manifest_says(tmp_path, capsys, sample):
    import json
    import shutil

    from helpers import cli_error

    data = tmp_path / "data"
    shutil.copytree(sample, data, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    masks = sorted(p.read_bytes() for p in (data / "masks").iterdir())
    # A forged manifest claiming the masks as segment eval's output must not unlock them.
    (data / "srcrn-output.json").write_text(json.dumps({"command": "segment eval", "entries": ["masks"]}))
    line = cli_error(capsys, "predict", str(sorted((data / "images").iterdir())[0]), "--out", str(data))
    assert (
        line == f"error: {data}: is a data folder (images with masks or labels), never an output; choose another --out"
    )
    assert sorted(p.read_bytes() for p in (data / "masks").iterdir()) == masks
