"""int8 bundles: static quantization with parity measured on held-out images, refused (and no
bundle written) beyond the tolerance; the int8 bundle runs through the same prediction path."""

from __future__ import annotations

import json

import pytest

import srcrn
from helpers import cli_error, run_cli

pytestmark = pytest.mark.slow


def test_int8_export_measures_parity_and_refuses_beyond_tolerance(
    tiny_segmenter, tiny_classifier, sample, tmp_path, capsys, monkeypatch
):
    from srcrn.workflows import quantize

    command = ["export", "onnx", "--segmenter", tiny_segmenter, "--classifier", tiny_classifier, "--quantize", "int8",
               "--calibration-data", str(sample), "--calibration-images", "16", "--parity-images", "16"]  # fmt: skip
    monkeypatch.setattr(quantize, "TOLERANCE", {"jaccard_drop": -1.0, "auc_drop": -1.0})  # nothing can pass
    refused = tmp_path / "refused"
    message = cli_error(capsys, *command, "--out", str(refused))
    assert f"{refused}: int8 models refused, no bundle written: jaccard_drop" in message
    assert not refused.exists() and not list(tmp_path.glob(".int8-*"))
    monkeypatch.setattr(quantize, "TOLERANCE", {"jaccard_drop": 1.0, "auc_drop": 1.0})  # two-step models: not judged
    bundle = tmp_path / "int8"
    run_cli(*command, "--out", str(bundle))
    manifest = json.loads((bundle / "bundle.json").read_text())
    parity = manifest["parity"]
    assert manifest["precision"] == "int8" and parity["images"] == 16 and parity["calibration_images"] == 16
    assert {"jaccard_fp32", "jaccard_int8", "jaccard_drop", "max_probability_difference"} <= set(parity)
    assert parity["jaccard_drop"] == pytest.approx(parity["jaccard_fp32"] - parity["jaccard_int8"])
    graph = (bundle / "segmenter.onnx").read_bytes()
    assert b"QuantizeLinear" in graph and b"DequantizeLinear" in graph  # QDQ int8, not a copy of fp32
    # The int8 bundle answers as the fp32 models do, within what its own parity record says.
    images = sorted((sample / "images").glob("*.jpg"))[:4]
    int8 = srcrn.Pipeline.from_bundle(bundle).predict_many(images)
    fp32 = srcrn.Pipeline.from_checkpoints(tiny_segmenter, tiny_classifier).predict_many(images)
    for a, b in zip(int8, fp32):
        assert a.mask.shape == b.mask.shape and (a.mask == b.mask).mean() > 0.9
        assert abs(a.probability - b.probability) <= max(0.05, 2 * parity["max_probability_difference"])
    assert "needs --calibration-data DATA" in cli_error(
        capsys, "export", "onnx", "--segmenter", tiny_segmenter, "--classifier", tiny_classifier,
        "--quantize", "int8", "--out", str(tmp_path / "x"))  # fmt: skip
