"""`srcrn reproduce` with configs/demo.yaml: every table, numbers equal to the experiments'
metrics.json files, the figures, resumption, and config validation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from srcrn.cli import main
from srcrn.errors import ConfigError
from srcrn.workflows.reproduce import load_reproduce_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.slow
def test_demo_config_end_to_end(tmp_path, capsys):
    out = tmp_path / "reproduce"
    with pytest.raises(SystemExit) as done:
        main(["reproduce", "--config", str(CONFIGS / "demo.yaml"), "--out", str(out), "--no-progress"])
    assert done.value.code in (0, None)
    report = (out / "report.md").read_text()
    for heading in (
        "## Data",
        "## Leakage check",
        "## Table 1: segmentation",
        "## Table 2: class balancing",
        "## Table 3: batch size",
        "## Settings and software",
    ):
        assert heading in report, heading
    assert "No image id and no identical pixel content is shared" in report
    for stride in (32, 16, 8):
        metrics = json.loads((out / "segmentation" / f"stride-{stride}" / "eval" / "metrics.json").read_text())
        row = next(line for line in report.splitlines() if line.startswith(f"| SRCRN stride {stride} (measured)"))
        for name in ("accuracy", "dice", "jaccard"):
            assert f"{metrics[name]:.3f} (" in row, (stride, name)
    # The measured baseline row: an smp U-Net trained and evaluated by the same code.
    metrics = json.loads((out / "segmentation" / "unet" / "eval" / "metrics.json").read_text())
    row = next(
        line for line in report.splitlines() if line.startswith("| smp U-Net (ResNet-50), same recipe (measured)")
    )
    assert f"{metrics['jaccard']:.3f} (" in row and f"{metrics['dice']:.3f} (" in row
    assert "arch: unet" in (out / "segmentation" / "unet" / "config.yaml").read_text()
    for folder, label in (
        ("balance-none", "balance none"),
        ("balance-augment", "balance augment"),
        ("batch-4", "batch 4"),
        ("batch-8", "batch 8"),
    ):
        metrics = json.loads((out / "classification" / folder / "eval" / "metrics.json").read_text())
        row = next(line for line in report.splitlines() if line.startswith(f"| {label} (measured)"))
        assert f"{metrics['accuracy']:.3f} (" in row and f"{metrics['auc']:.3f} (" in row, folder
    assert "0.845" in report and "(published)" in report
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert "segmentation-overlays.png" in figures and "balance-none-roc.png" in figures and len(figures) == 10
    for name in figures:
        assert f"figures/{name}" in report
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 10 and "Table 3: batch size" in html
    assert str(Path.home()) not in report and str(tmp_path) not in report  # paths relative to the report

    # Started again, it skips every finished experiment and writes the same tables.
    stamp = os.stat(out / "segmentation" / "stride-8" / "checkpoints" / "best.ckpt").st_mtime_ns
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["reproduce", "--config", str(CONFIGS / "demo.yaml"), "--out", str(out), "--no-progress"])
    assert "training" not in capsys.readouterr().err
    assert os.stat(out / "segmentation" / "stride-8" / "checkpoints" / "best.ckpt").st_mtime_ns == stamp
    assert (out / "report.md").read_text() == report


def test_every_shipped_config_is_valid():
    for name in ("paper.yaml", "dev.yaml", "demo.yaml"):
        load_reproduce_config(CONFIGS / name)


def test_unknown_keys_are_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("experiments: [segmentation]\nsegmentation:\n  stridez: [8]\n")
    with pytest.raises(
        ConfigError, match=r"a.yaml: segmentation: unknown setting 'stridez'; known: strides, baselines, or a "
    ):
        load_reproduce_config(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("experiments: [tables]\n")
    with pytest.raises(
        ConfigError,
        match=r"b.yaml: experiments.0: Input should be 'segmentation', 'balancing' or "
        r"'batch_size' \(given 'tables'\)",
    ):
        load_reproduce_config(tmp_path / "b.yaml")
    (tmp_path / "c.yaml").write_text("classification:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=r"c.yaml: classification: epochs: Input should be a valid integer"):
        load_reproduce_config(tmp_path / "c.yaml")


def test_a_section_overrides_its_training_settings_and_shares_the_rest(tmp_path):
    from srcrn.workflows.reproduce import classification_settings, segmentation_settings

    (tmp_path / "r.yaml").write_text(
        "seed: 7\nsplit: random\nsegmentation:\n  lr: 0.0005\n  epochs: 3\n  loss: bce+dice\n"
        "classification:\n  dropout: 0.3\n  epochs: 2\n  seed: 11\n"
    )
    config = load_reproduce_config(tmp_path / "r.yaml")
    segment = segmentation_settings(config, 16)
    assert (segment.lr, segment.epochs, segment.loss, segment.stride) == (0.0005, 3, "bce+dice", 16)
    assert (segment.seed, segment.split, segment.steps_per_epoch) == (7, "random", 300)  # shared; reproduce's default
    classify = classification_settings(config, "seg.ckpt", None, batch_size=8)
    assert (classify.dropout, classify.epochs, classify.batch_size) == (0.3, 2, 8)
    assert (classify.seed, classify.split, classify.input) == (11, "random", "crop")  # the section wins over the shared
    assert classify.weights == "srcrn:seg.ckpt" and classify.segmenter == "seg.ckpt"
