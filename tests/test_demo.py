"""The demo runs end to end offline (with smaller settings than `make demo`, to stay quick)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from helpers import run_cli as run
from srcrn.workflows import demo


@pytest.mark.slow
def test_demo_runs_both_stages(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "DEMO_SEGMENTATION", dict(image_size=64, batch_size=4, epochs=1, steps_per_epoch=2))
    monkeypatch.setattr(
        demo,
        "DEMO_CLASSIFICATION",
        dict(image_size=64, batch_size=8, epochs=1, input="crop", balance="augment", augment="mix"),
    )
    run("demo", "--train", "--out", str(tmp_path), "--no-progress")
    err = capsys.readouterr().err
    assert "threshold_jaccard" in err and "P(melanoma)" in err  # the two tables
    assert "smoke run" in err and "stage 2: training the melanoma classifier" in err  # logged by the library
    predictions = pd.read_csv(tmp_path / "predictions" / "predictions.csv", dtype={"image_id": str})
    assert len(predictions) == 8 and predictions["melanoma"].between(0, 1).all()
    # Stage 2 reads each image: one probability for all eight would be a classifier that does not.
    assert predictions["melanoma"].nunique() > 1
    # They are the two models the demo trained, run through the Python API (not some other path),
    # and the table printed them.
    from srcrn.inference.pipeline import Pipeline
    from srcrn.training.summary import read_summary

    pipeline = Pipeline.from_checkpoints(
        read_summary(tmp_path / "segmenter").model, read_summary(tmp_path / "classifier").model, workers=0
    )
    first = predictions.iloc[0]
    assert pipeline.predict(first["source"]).probability == pytest.approx(first["melanoma"], abs=1e-6)
    assert f"{first['melanoma']:.3f}" in err
    per_image = pd.read_csv(tmp_path / "segmentation-eval" / "per_image.csv")
    assert len(per_image) == 8 and per_image["jaccard"].between(0, 1).all()
    scores = json.loads((tmp_path / "segmentation-eval" / "metrics.json").read_text())
    assert scores["jaccard"] == pytest.approx(per_image["jaccard"].mean())  # macro-averaged, as ISIC does
