"""The command line: prepare reports and reuses, split writes its files."""

from __future__ import annotations

import pandas as pd

from helpers import run_cli as run


def test_prepare_and_split_commands(sample, tmp_path, capsys):
    run("prepare", str(sample), "--out", str(tmp_path / "cache"), "--image-size", "32", "--workers", "1")
    assert "prepared 40 images at 32x32" in capsys.readouterr().err
    run("prepare", str(sample), "--out", str(tmp_path / "cache"), "--image-size", "32", "--workers", "1")
    assert "cache up to date" in capsys.readouterr().err
    run("split", str(sample), "--out", str(tmp_path / "split"), "--split", "official")
    table = pd.read_csv(tmp_path / "split" / "split.csv")
    assert (table["subset"] == "val").sum() == 5  # the sample holds 5 ISIC 2017 validation images


def test_the_model_flags_choose_the_engine_or_are_refused_before_anything_loads():
    import pytest

    from srcrn.commands import ModelSettings
    from srcrn.errors import ConfigError
    from srcrn.workflows.model_choice import chosen_engine

    assert chosen_engine(ModelSettings()) == "onnx"  # no model named: the shipped bundle
    assert chosen_engine(ModelSettings(model="b"), "torch") == "onnx"  # a bundle whatever --engine says
    assert chosen_engine(ModelSettings(segmenter="s", classifier="c")) == "torch"
    assert chosen_engine(ModelSettings(segmenter="s", classifier="c"), "auto") == "torch"
    refused = [
        (ModelSettings(model="b", segmenter="s"), "torch", "not both"),
        (ModelSettings(segmenter="s", classifier="c"), "onnx", "--engine onnx: needs --model DIR"),
        (ModelSettings(segmenter="s"), "torch", "--engine torch: needs --segmenter CKPT and --classifier CKPT"),
        (ModelSettings(classifier="c"), "auto", "--model: needs a bundle folder"),
    ]
    for choice, engine, message in refused:
        with pytest.raises(ConfigError, match=message):
            chosen_engine(choice, engine)
