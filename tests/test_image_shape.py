"""A segmenter at the images' own shape, height x width (issue 30: "at 128 px and at the images'
own 4:3 shape, 192x256"): the size's forms, the cache, training, evaluation at the originals'
size, the bundle and both engines, fp32 and int8."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from helpers import cli_error, run_cli, small_segmentation_config
from srcrn.shapes import as_image_size, height_width, size_text, width_height


@pytest.mark.parametrize(
    ("given", "size"),
    [(128, 128), ("128", 128), ("192x256", (192, 256)), (" 192 X 256 ", (192, 256)), ([192, 256], (192, 256)),
     ((128, 128), 128), ("64x64", 64)],
)  # fmt: skip
def test_a_size_is_a_side_or_height_by_width_and_a_square_stays_a_side(given, size):
    assert as_image_size(given) == size
    height, width = height_width(size)
    assert width_height(size) == (width, height) and as_image_size(size_text(size)) == size


@pytest.mark.parametrize("given", ["", "192x", "x256", "192x256x3", "12.5", "0x64", [192], [192.0, 256.0], True, None])
def test_what_is_not_a_size_is_refused(given):
    with pytest.raises(ValueError):
        as_image_size(given)


def test_the_command_line_refuses_a_side_the_strides_cannot_take_in_one_line(capsys, tmp_path):
    error = cli_error(capsys, "segment", "train", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                      "--image-size", "192x250")  # fmt: skip
    assert "--image-size" in error and "multiples of 32" in error and "192x250" in error
    error = cli_error(capsys, "prepare", str(tmp_path), "--out", str(tmp_path / "c"), "--image-size", "wide")
    assert "'wide' is not a size" in error


@pytest.mark.parametrize("augment", ["flip", "strong"])
def test_augmenting_a_height_by_width_input_keeps_its_shape(augment):
    """A quarter turn would transpose it (a 192x256 batch got a 256x192 member and training
    stopped): such inputs get flips and free rotation on their own canvas only."""
    from srcrn.data.transforms import build_transform

    image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    mask = np.zeros((64, 96), np.uint8)
    transform = build_transform(augment, train=True, square=False)
    shapes = {(out["image"].shape, out["mask"].shape) for out in (transform(image=image, mask=mask) for _ in range(40))}
    assert shapes == {((64, 96, 3), (64, 96))}
    square = build_transform(augment, train=True)  # a square input still gets quarter turns
    assert any(type(t).__name__ == "RandomRotate90" for t in square.transforms)


@pytest.mark.slow
def test_a_segmenter_at_height_by_width_trains_evaluates_exports_and_answers_alike_in_both_engines(
    sample, tmp_path, tiny_classifier, monkeypatch
):
    from srcrn import Pipeline
    from srcrn.data.cache import PreparedData
    from srcrn.runtime.checkpoints import read_checkpoint
    from srcrn.runtime.segmenter import Segmenter
    from srcrn.training.segmentation import train_segmentation
    from srcrn.workflows import quantize

    monkeypatch.setattr(quantize, "TOLERANCE", {"jaccard_drop": 1.0, "auc_drop": 1.0})  # two-step model: not judged
    config = small_segmentation_config(
        tmp_path, image_size="64x96", encoder="efficientnet-lite0", encoder_weights="none", score_channels=8,
        augment="strong", steps_per_epoch=4,
    )  # fmt: skip
    checkpoint = train_segmentation(config, sample, tmp_path / "seg", progress=False)["last_checkpoint"]

    cache = PreparedData.load(tmp_path / "cache")  # the images' own shape, not squeezed into a square
    assert cache.size == (64, 96) and cache.images.shape[1:] == (64, 96, 3) and cache.masks.shape[1:] == (64, 96)
    assert read_checkpoint(checkpoint).settings["image_size"] == [64, 96]
    segmenter = Segmenter.from_checkpoint(checkpoint)
    assert segmenter.image_size == (64, 96) and segmenter.probabilities(cache.images[:3]).shape == (3, 64, 96)

    # Scored at each original's size (the sample's images are 4:3 and of several sizes).
    run_cli("segment", "eval", "--model", checkpoint, "--data", str(sample), "--out", str(tmp_path / "eval"))
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["image_size"] == [64, 96] and metrics["n_images"] == 40 and 0 <= metrics["jaccard"] <= 1

    fp32, int8 = tmp_path / "fp32", tmp_path / "int8"
    run_cli("export", "onnx", "--segmenter", checkpoint, "--classifier", tiny_classifier, "--out", str(fp32))
    run_cli("export", "onnx", "--segmenter", checkpoint, "--classifier", tiny_classifier, "--out", str(int8),
            "--quantize", "int8", "--calibration-data", str(sample), "--calibration-images", "8",
            "--parity-images", "8")  # fmt: skip
    for bundle in (fp32, int8):
        assert json.loads((bundle / "bundle.json").read_text())["segmenter"]["image_size"] == [64, 96]
        graph = onnx.load(bundle / "segmenter.onnx").graph
        dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]]
        assert dims == [3, 64, 96]

    images = sorted((sample / "images").glob("*.jpg"))[:4]
    torch_results = Pipeline.from_checkpoints(checkpoint, tiny_classifier, workers=0).predict_many(images)
    onnx_results = Pipeline.from_bundle(fp32, workers=0).predict_many(images)
    int8_results = Pipeline.from_bundle(int8, workers=0).predict_many(images)
    assert Pipeline.from_bundle(fp32, workers=0).card.segmenter.image_size == (64, 96)
    for a, b, c in zip(torch_results, onnx_results, int8_results):
        assert a.mask.shape == (a.height, a.width) and a.mask.shape == b.mask.shape == c.mask.shape
        assert (a.mask == b.mask).mean() > 0.999 and abs(a.probability - b.probability) < 1e-4
        assert np.isfinite(c.probability)
