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
