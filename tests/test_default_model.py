"""The model shipped inside the package: found through importlib.resources, used when no model
is named (predict, serve, Pipeline.default()), described by `srcrn model-card`; one error line
while this srcrn ships none."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import srcrn
from helpers import cli_error, run_cli
from srcrn.inference import default


def test_without_a_shipped_model_the_error_says_what_to_do(monkeypatch, tmp_path, capsys, sample):
    monkeypatch.setattr(default, "default_bundle_dir", lambda: tmp_path / "none")
    with pytest.raises(srcrn.SrcrnError, match="ships no default model yet"):
        srcrn.Pipeline.default()
    image = sorted((sample / "images").glob("*.jpg"))[0]
    message = cli_error(capsys, "predict", str(image), "--out", str(tmp_path / "out"))
    assert "ships no default model yet" in message and "--model BUNDLE" in message


@pytest.mark.slow
def test_the_shipped_model_is_used_when_no_model_is_named(monkeypatch, tiny_bundle, tmp_path, capsys, sample):
    monkeypatch.setattr(default, "default_bundle_dir", lambda: tiny_bundle)
    images = sorted((sample / "images").glob("*.jpg"))[:2]
    run_cli("predict", *map(str, images), "--out", str(tmp_path / "default"), "--no-progress")
    run_cli(
        "predict", *map(str, images), "--model", str(tiny_bundle), "--out", str(tmp_path / "named"), "--no-progress"
    )
    shipped = pd.read_csv(tmp_path / "default" / "predictions.csv")
    named = pd.read_csv(tmp_path / "named" / "predictions.csv")
    assert shipped["melanoma"].tolist() == named["melanoma"].tolist() and len(shipped) == 2
    assert srcrn.Pipeline.default().predict(images[0]).probability == pytest.approx(shipped["melanoma"][0])
    capsys.readouterr()
    run_cli("model-card")
    card = json.loads(capsys.readouterr().out)
    assert card["engine"] == "onnx" and card["classifier"]["kind"] == "cnn"
    assert card["segmenter"]["image_size"] == 64
