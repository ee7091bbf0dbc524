"""Two-stage prediction: outputs for real sample images, bad files skipped, thresholds."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import run_cli as run
from helpers import segment_eval, small_classification_config, small_segmentation_config
from srcrn.evaluation.classification import threshold_for_sensitivity
from srcrn.runtime.checkpoints import read_checkpoint
from srcrn.training.classification import train_classification
from srcrn.training.segmentation import train_segmentation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tmp_path_factory, sample):
    """A segmenter whose recipe asks for flip TTA and keep-largest (so that every prediction path
    must honour them) and a crop classifier on its masks."""
    out = tmp_path_factory.mktemp("models")
    segmenter = train_segmentation(
        small_segmentation_config(out, tta=True, keep_largest=True), sample, out / "segmenter", progress=False
    )["last_checkpoint"]
    classifier = train_classification(
        small_classification_config(out, weights=f"srcrn:{segmenter}", segmenter=segmenter, input="crop"),
        sample,
        out / "classifier",
        progress=False,
    )["last_checkpoint"]
    return segmenter, classifier


def test_predict_a_folder_with_a_bad_file(models, sample, tmp_path, capsys):
    segmenter, classifier = models
    folder = tmp_path / "in"
    folder.mkdir()
    ids = sorted(p.stem for p in (sample / "images").glob("*.jpg"))[:3]
    for image_id in ids:
        shutil.copy(sample / "images" / f"{image_id}.jpg", folder)
    (folder / "ISIC_0000999.jpg").write_bytes((sample / "images" / f"{ids[0]}.jpg").read_bytes()[:1500])  # truncated
    big = Image.open(sample / "images" / f"{ids[1]}.jpg").resize((1200, 900))  # another size, RGBA, PNG
    big.convert("RGBA").save(folder / "ISIC_0000998.png")
    out = tmp_path / "out"
    run(
        "predict",
        str(folder),
        "--segmenter",
        segmenter,
        "--classifier",
        classifier,
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--no-progress",
    )
    err = capsys.readouterr().err
    assert "skipped" in err and "ISIC_0000999.jpg" in err and "truncated" in err
    table = pd.read_csv(out / "predictions.csv")
    assert sorted(table["image_id"]) == sorted([*ids, "ISIC_0000998"])
    assert table["melanoma"].between(0, 1).all()
    assessed = table["status"] == "assessed"  # the input gate may refuse what a tiny model finds no lesion in
    assert set(table.loc[assessed, "decision"]) <= {"melanoma", "benign"}
    assert set(table.loc[~assessed, "decision"]) <= {"not assessable"}
    for row in table.itertuples():
        mask = Image.open(out / "masks" / f"{row.image_id}_segmentation.png")
        source = Image.open(row.source)
        assert mask.size == source.size == (row.width, row.height)
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
        assert (out / "overlays" / f"{row.image_id}_overlay.png").is_file()
        assert row.area_fraction == pytest.approx(np.asarray(mask).mean() / 255, abs=0.02)
    payload = json.loads((out / "predictions.json").read_text())
    assert len(payload["predictions"]) == 4 and payload["errors"][0]["source"].endswith("ISIC_0000999.jpg")
    measured = payload["predictions"][0]["measurements"]
    assert {
        "area_pixels",
        "asymmetry_major_axis",
        "compactness",
        "colour_count",
        "longest_diameter_pixels",
        "empty_mask",
        "touches_border",
    } <= set(measured)


def test_predict_uses_the_stored_threshold(models, sample, tmp_path):
    segmenter, classifier = models
    stored = tmp_path / "classifier.ckpt"
    shutil.copy(classifier, stored)
    run(
        "classify",
        "eval",
        "--model",
        str(stored),
        "--data",
        str(sample),
        "--out",
        str(tmp_path / "eval"),
        "--target-sensitivity",
        "0.9",
        "--cache",
        str(tmp_path / "cache"),
        "--no-progress",
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["sensitivity"] >= 0.9 and metrics["target_sensitivity"] == 0.9
    assert read_checkpoint(stored).threshold == pytest.approx(metrics["threshold"])
    assert read_checkpoint(stored).extras["target_sensitivity"] == 0.9
    image = sorted((sample / "images").glob("*.jpg"))[0]
    run(
        "predict",
        str(image),
        "--segmenter",
        segmenter,
        "--classifier",
        str(stored),
        "--out",
        str(tmp_path / "p"),
        "--no-progress",
    )
    row = pd.read_csv(tmp_path / "p" / "predictions.csv").iloc[0]
    assert row["threshold"] == pytest.approx(metrics["threshold"])
    assert row["decision"] == ("melanoma" if row["melanoma"] > row["threshold"] else "benign")


def test_threshold_for_sensitivity_is_the_highest_that_reaches_it():
    labels = np.array([1, 1, 1, 1, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.3, 0.2, 0.5, 0.25, 0.1])
    threshold = threshold_for_sensitivity(labels, scores, 0.75)  # 3 of 4 melanomas: down to 0.3
    assert 0.25 < threshold < 0.3
    assert ((scores > threshold) & (labels == 1)).sum() == 3
    assert threshold_for_sensitivity(labels, scores, 1.0) < 0.2


def test_onnx_engine_equals_eager_and_needs_no_torch(models, sample, tmp_path):
    import subprocess
    import sys

    segmenter, classifier = models
    run("export", "onnx", "--segmenter", segmenter, "--classifier", classifier, "--out", str(tmp_path / "bundle"))
    manifest = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    assert manifest["format"] == "srcrn-bundle" and manifest["version"] == 5
    assert manifest["classifier"]["input"] == "crop" and manifest["segmenter"]["image_size"] == 64
    assert manifest["segmenter"]["tta"] is True and manifest["segmenter"]["keep_largest"] is True
    assert "/" not in manifest["segmenter"]["source"]  # no machine paths in a bundle
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted((sample / "images").glob("*.jpg"))[:6]:
        shutil.copy(path, folder)
    run(
        "predict",
        str(folder),
        "--segmenter",
        segmenter,
        "--classifier",
        classifier,
        "--out",
        str(tmp_path / "eager"),
        "--no-progress",
    )
    # The ONNX path in a fresh interpreter where importing torch fails: it must not need it.
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "from srcrn.cli import main\n"
        f"main(['predict', {str(folder)!r}, '--engine', 'onnx', '--model', {str(tmp_path / 'bundle')!r}, "
        f"'--out', {str(tmp_path / 'onnx')!r}, '--no-progress'])\n"
    )
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    eager = pd.read_csv(tmp_path / "eager" / "predictions.csv").set_index("image_id")
    onnx = pd.read_csv(tmp_path / "onnx" / "predictions.csv").set_index("image_id")
    assert len(onnx) == 6
    assert np.abs(onnx["melanoma"] - eager.loc[onnx.index, "melanoma"]).max() < 1e-4
    # One prediction path: the masks predict writes (either engine) are the masks segment eval
    # writes and scores for the same images and model (its TTA and keep-largest included).
    segment_eval(segmenter, folder, tmp_path / "eval", tmp_path / "cache")
    for image_id in onnx.index:
        evaluated = np.asarray(Image.open(tmp_path / "eval" / "masks" / f"{image_id}_segmentation.png"))
        for engine in ("eager", "onnx"):
            predicted = np.asarray(Image.open(tmp_path / engine / "masks" / f"{image_id}_segmentation.png"))
            assert (predicted == evaluated).mean() > (0.9999 if engine == "onnx" else 1 - 1e-12), (engine, image_id)


def test_each_image_is_decoded_once_per_size(models, sample, tmp_path, monkeypatch):
    from srcrn.inference import pipeline, steps

    segmenter, classifier = models
    calls: list[tuple[str, object]] = []
    for module, name in ((pipeline, "decode_image"), (steps, "decode_image_fit")):
        original = getattr(module, name)
        monkeypatch.setattr(
            module,
            name,
            lambda path, size, _f=original, _n=name, **kw: calls.append((_n, size)) or _f(path, size, **kw),
        )
    images = sorted((sample / "images").glob("*.jpg"))[:3]
    model = pipeline.Pipeline.from_checkpoints(segmenter, classifier)
    model.predict_many(images)
    # The models' size (64 for both) once per image, and the working size for outputs once.
    assert sorted(calls) == sorted([("decode_image", 64)] * 3 + [("decode_image_fit", steps.WORKING_SIDE)] * 3)


def test_the_torch_engine_runs_on_the_device_asked_for(tiny_segmenter, tiny_classifier, sample, capsys):
    import torch

    from srcrn.errors import ConfigError
    from srcrn.inference.pipeline import Pipeline

    image = sorted((sample / "images").glob("*.jpg"))[0]
    on_cpu = Pipeline.from_checkpoints(tiny_segmenter, tiny_classifier, device="cpu", workers=0)
    assert next(on_cpu.segmenter.runtime.model.parameters()).device.type == "cpu"
    default = Pipeline.from_checkpoints(tiny_segmenter, tiny_classifier, workers=0)
    assert on_cpu.predict(image).probability == default.predict(image).probability
    if not torch.cuda.is_available():  # a machine without a GPU: one clear line, not a CUDA traceback
        with pytest.raises(ConfigError, match=r"device 'cuda': cannot be used here"):
            Pipeline.from_checkpoints(tiny_segmenter, tiny_classifier, device="cuda", workers=0)
    else:
        on_gpu = Pipeline.from_checkpoints(tiny_segmenter, tiny_classifier, device="cuda", workers=0)
        assert on_gpu.predict(image).probability == pytest.approx(default.predict(image).probability, abs=1e-4)
