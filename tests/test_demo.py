"""The demo runs end to end offline (with smaller settings than `make demo`, to stay quick)."""

from __future__ import annotations

import pandas as pd

from srcrn import demo


def test_demo_runs_both_stages(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "DEMO_SEGMENTATION", dict(image_size=64, batch_size=4, epochs=1, steps_per_epoch=2))
    monkeypatch.setattr(demo, "DEMO_CLASSIFICATION", dict(image_size=64, batch_size=8, epochs=1, input="crop",
                                                          balance="augment", augment="mix"))
    metrics = demo.run_demo(tmp_path, progress=False)
    assert metrics["n_images"] == 8 and 0 <= metrics["jaccard"] <= 1
    predictions = pd.read_csv(tmp_path / "predictions" / "predictions.csv")
    assert len(predictions) == 8 and predictions["melanoma"].between(0, 1).all()
    assert "smoke run" in capsys.readouterr().err
