"""The SRCRN model: output size for every stride and valid size, clear refusals, weights."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet50

from srcrn.errors import ConfigError
from srcrn.models import SRCRN, build_segmenter
from srcrn.models.weights import imagenet_weights_file, resnet50_backbone


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {stride: SRCRN(stride=stride).eval() for stride in (8, 16, 32)}


@pytest.mark.parametrize("stride", [8, 16, 32])
@pytest.mark.parametrize("size", [(64, 64), (96, 128), (128, 128)])
def test_logits_have_the_input_size(models, stride, size):
    with torch.no_grad():
        logits = models[stride](torch.randn(2, 3, *size))
    assert logits.shape == (2, 1, *size)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("size", [(100, 100), (64, 80)])
def test_sizes_not_divisible_by_32_are_refused(models, size):
    with pytest.raises(ValueError, match=r"multiples of 32; got \d+x\d+"):
        models[8](torch.randn(1, 3, *size))


def test_unknown_stride_and_arch_are_refused():
    with pytest.raises(ConfigError, match="stride must be one of"):
        SRCRN(stride=4)
    with pytest.raises(ConfigError, match="unknown segmentation architecture 'segnet'"):
        build_segmenter("segnet")


def test_each_stride_uses_exactly_its_encoder_levels(models):
    """Stride 8 fuses C3, C4 and C5; stride 16 only C4 and C5; stride 32 only C5."""
    x = torch.randn(1, 3, 64, 64)
    for stride, used in ((8, {"c3", "c4", "c5"}), (16, {"c4", "c5"}), (32, {"c5"})):
        model = models[stride]
        with torch.no_grad():
            features = model.forward_features(x)
            reference = model.forward_head(features)
            for level in ("c3", "c4", "c5"):
                changed = dict(features, **{level: features[level] + 1.0})
                differs = not torch.allclose(model.forward_head(changed), reference)
                assert differs == (level in used), (stride, level)


def test_gradients_reach_the_encoder(models):
    model = SRCRN(stride=8)
    model(torch.randn(2, 3, 64, 64)).mean().backward()
    assert model.encoder.conv1.weight.grad is not None and model.encoder.conv1.weight.grad.abs().sum() > 0


def test_imagenet_weights_offline_give_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = imagenet_weights_file()
    assert str(expected).startswith(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        SRCRN(encoder_weights="imagenet")
    message = str(caught.value)
    assert "not available offline" in message and str(expected) in message and "resnet50-" in message


def test_encoder_weights_from_a_local_file(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = resnet50()
    save_file(source.state_dict(), str(tmp_path / "r50.safetensors"))
    torch.save(source.state_dict(), tmp_path / "r50.pth")
    for name in ("r50.safetensors", "r50.pth"):
        loaded = resnet50_backbone(tmp_path / name)
        assert torch.equal(loaded.conv1.weight, source.conv1.weight)
        model = SRCRN(encoder_weights=tmp_path / name)
        assert torch.equal(model.encoder.layer4[2].conv3.weight, source.layer4[2].conv3.weight)
    with pytest.raises(ConfigError, match="weights file not found"):
        resnet50_backbone(tmp_path / "missing.pth")
