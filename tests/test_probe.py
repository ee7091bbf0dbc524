"""The linear probe (``classify train --recipe probe``, issue 30): a frozen backbone whose head is a
logistic regression fitted by scikit-learn, written into the network so that every path that runs
a stage-2 CNN (checkpoint, TTA, cv, stacks, export) runs it unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from helpers import run_cli


def test_the_head_holds_the_regression_exactly_even_for_a_constant_feature():
    import torch

    from srcrn.models import MelanomaClassifier
    from srcrn.training.probe import fit_head

    model = MelanomaClassifier(weights=None, encoder="efficientnet-lite0", dropout=0.2).eval()
    rng = np.random.default_rng(0)
    labels = np.arange(120) % 3 == 0
    features = rng.normal(3.0, 2.5, (120, model.features)) + labels[:, None] * rng.normal(0, 0.5, model.features)
    features[:, 7] = 4.0  # no spread: StandardScaler divides it by 1
    regression = fit_head(model, features, labels.astype(int))
    held = rng.normal(3.0, 2.5, (30, model.features))
    held[:, 7] = 4.0
    with torch.no_grad():
        ours = model.forward_head(torch.as_tensor(held, dtype=torch.float32)).numpy()
    assert np.allclose(ours, regression.decision_function(held), atol=2e-4)
    assert np.ptp(ours) > 0.1  # the regression did learn something to copy


def test_a_probe_checkpoint_predicts_as_an_independently_fitted_regression(tmp_path):
    """The checkpoint, loaded as any stage-2 CNN with its flip TTA (logits averaged), gives the
    logits of a regression fitted here on the flip-averaged pooled features of its own backbone."""
    import torch

    from srcrn.runtime.checkpoints import build_model, read_checkpoint
    from srcrn.settings import ClassifyTrainSettings
    from srcrn.stage2.registry import load_melanoma_model
    from srcrn.stats import auc
    from srcrn.training.probe import pooled_features, train_probe

    torch.manual_seed(0)
    config = ClassifyTrainSettings(probe=True, encoder="efficientnet-lite0", weights="none", backbone_size=64,
                                   image_size=32, tta=True, select="last")  # fmt: skip
    rng = np.random.default_rng(1)
    labels = (np.arange(60) % 4 == 0).astype(np.float32)
    inputs = rng.integers(0, 200, (60, 32, 32, 3), dtype=np.uint8)
    inputs[labels == 1, :16] += 40  # the melanomas' top half lighter: something to find
    val, val_labels = inputs[:16] // 2 + 60, labels[:16]
    summary = train_probe(config, (inputs, labels), (val, val_labels), tmp_path)
    assert summary["model_checkpoint"] == str(tmp_path / "checkpoints" / "last.ckpt") and summary["epochs"] == 0

    backbone = build_model(read_checkpoint(summary["model_checkpoint"], expect="classifier"))
    assert backbone.backbone_size == 64
    train_features = pooled_features(backbone, inputs, tta=True)
    flips = [pooled_features(backbone, np.ascontiguousarray(np.flip(val, axes)), tta=False)
             for axes in ((), (2,), (1,), (1, 2))]  # fmt: skip
    assert np.allclose(np.mean(flips, 0), pooled_features(backbone, val, tta=True), atol=1e-5)
    regression = make_pipeline(
        StandardScaler(), LogisticRegressionCV(Cs=np.logspace(-4, 0, 9), cv=5, scoring="roc_auc", max_iter=3000)
    ).fit(train_features, labels.astype(int))
    expected = regression.decision_function(np.mean(flips, 0))

    model = load_melanoma_model(summary["model_checkpoint"])
    assert model.kind == "cnn" and model.spec.tta
    assert np.allclose(model.logits(val), expected, atol=2e-4)
    assert summary["best_val_auc"] == pytest.approx(auc(val_labels.astype(int), expected))
    assert summary["probe_c"] == pytest.approx(float(regression[-1].C_[0]))


def test_remembered_features_belong_to_the_backbone_that_computed_them():
    """Cross-validation reuses a frozen backbone's features across folds; two backbones of one
    name (random initialisations, or files) must never share them: the memo keys on the weights."""
    import torch

    from srcrn.models import MelanomaClassifier
    from srcrn.training.probe import pooled_features

    inputs = np.random.default_rng(3).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    torch.manual_seed(0)
    first = MelanomaClassifier(weights=None, encoder="efficientnet-lite0")
    torch.manual_seed(1)
    second = MelanomaClassifier(weights=None, encoder="efficientnet-lite0")
    remembered = pooled_features(first, inputs, tta=False, remember=True)
    assert np.array_equal(pooled_features(first, inputs, tta=False, remember=True), remembered)
    others = pooled_features(second, inputs, tta=False, remember=True)
    assert np.allclose(others, pooled_features(second, inputs, tta=False), atol=1e-6)
    assert not np.allclose(others, remembered, atol=1e-3)


def test_the_probe_recipe_and_what_it_refuses():
    from srcrn.errors import ConfigError
    from srcrn.settings import ClassifyTrainSettings, load_settings

    config = load_settings(ClassifyTrainSettings, flags={"recipe": "probe"})
    assert (config.probe, config.encoder, config.backbone_size, config.input, config.tta, config.finetune,
            config.pooling) == (True, "efficientnet-lite0", 224, "crop", True, False, "levels")  # fmt: skip
    with pytest.raises(ConfigError, match=r"probe fits the head of a frozen backbone .* finetune, balance"):
        load_settings(ClassifyTrainSettings, flags={"recipe": "probe", "balance": "augment"})


def test_levels_pooling_adds_each_stage_mean_and_deviation_after_the_heads_average():
    """``pooling="levels"``: the head's global average first (the same numbers as mean pooling with
    the same weights), then each stage of LEVELS as its maps' mean and (population) deviation,
    checked against the stages' outputs taken by forward hooks and summarised by numpy."""
    import torch

    from srcrn.errors import ConfigError
    from srcrn.models import MelanomaClassifier
    from srcrn.models.encoders import LEVELS

    torch.manual_seed(0)
    levels = MelanomaClassifier(weights=None, encoder="efficientnet-lite0", pooling="levels").eval()
    mean = MelanomaClassifier(weights=None, encoder="efficientnet-lite0").eval()
    mean.backbone.load_state_dict(levels.backbone.state_dict())
    maps: list[np.ndarray] = []
    hooks = [levels.backbone.body.blocks[i].register_forward_hook(lambda m, i, o: maps.append(o.numpy()))
             for i in LEVELS]  # fmt: skip
    x = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        pooled = levels.forward_features(x).numpy()
        plain = mean.forward_features(x).numpy()
    for hook in hooks:
        hook.remove()
    per_stage = np.concatenate([np.concatenate([m.mean((2, 3)), m.std((2, 3))], 1) for m in maps], 1)
    assert levels.features == 1280 + 2 * (40 + 80 + 112 + 192 + 320) == pooled.shape[1] and levels.head_features == 1280
    assert np.allclose(pooled[:, :1280], plain, atol=1e-5)
    assert np.allclose(pooled[:, 1280:], per_stage, atol=1e-4)
    assert per_stage[:, 40:80].min() > 0  # the deviations are there, not zeros
    with pytest.raises(ConfigError, match="levels needs an EfficientNet-Lite encoder"):
        MelanomaClassifier(weights=None, encoder="resnet50", pooling="levels")


@pytest.mark.slow
def test_classify_cv_runs_the_probe_and_its_model_exports_to_onnx(sample, tmp_path, tiny_segmenter):
    """Through the CLI: 2-fold cross-validation of the probe, then the final model exported into
    a bundle whose ONNX classifier gives the checkpoint's logits (the resize inside the graph)."""
    from srcrn.data.normalization import normalize_numpy
    from srcrn.runtime.engines import OnnxRuntime
    from srcrn.stage2.registry import load_melanoma_model

    out = tmp_path / "cv"
    run_cli("classify", "cv", "--data", str(sample), "--out", str(out), "--folds", "2", "--recipe", "probe",
            "--weights", "none", "--input", "full", "--image-size", "32", "--backbone-size", "64",
            "--cache", str(tmp_path / "cache"), "--no-progress")  # fmt: skip
    result = json.loads((out / "cv.json").read_text())
    assert result["recipe"] == "probe" and len(result["per_fold_auc"]) == 2 and 0 <= result["oof"]["auc"] <= 1
    checkpoint = result["val"]["model"]
    run_cli(
        "export", "onnx", "--segmenter", tiny_segmenter, "--classifier", checkpoint, "--out", str(tmp_path / "bundle")
    )
    bundle = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    onnx = OnnxRuntime(tmp_path / "bundle" / bundle["classifier"]["file"])
    images = np.random.default_rng(2).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)

    model = load_melanoma_model(checkpoint)
    eager = model.logits(images, tta=False)
    assert np.allclose(onnx(normalize_numpy(images)).reshape(-1), eager, atol=1e-3)
    # The recipe pools the levels (2768 features into the head); the gate reads the head's 1280.
    assert bundle["classifier"]["kind"] == "cnn" and onnx.has_features
    features = onnx.features(normalize_numpy(images))
    assert features.shape == (4, 1280) and np.allclose(features, model.image_features(images), atol=1e-3)
