"""Stage 2 beyond the paper: the strong recipe, joint training, the lesion-feature model, the
stack, cross-validation folds, calibration (checkpoint, bundle, predict), Grad-CAM and the
ImageNet weights path."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from skimage.color import rgb2lab
from sklearn.linear_model import LogisticRegression

from helpers import cli_error, run_cli, small_classification_config, small_segmentation_config
from srcrn.errors import ConfigError
from srcrn.evaluation.calibration import calibration_metrics, expected_calibration_error, fit_calibration
from srcrn.morphology.features import lesion_features
from srcrn.runtime.checkpoints import read_checkpoint, store_extras
from srcrn.runtime.engines import sigmoid
from srcrn.stage2.cnn import CnnModel
from srcrn.stage2.spec import Calibration
from srcrn.stage2.spec import probabilities as melanoma_probabilities
from srcrn.stats import auc
from srcrn.workflows.cross_validation import fold_splits
from srcrn.workflows.stacking import stack_members

# --- calibration ------------------------------------------------------------------------


def _overconfident(n=4000, seed=0):
    """Labels and logits four times too large: true log-odds 2z for z ~ N(+-1, 1)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    z = (2 * labels - 1) + rng.normal(0, 1, n)
    return labels, 4 * 2 * z


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_calibration_lowers_ece_of_overconfident_scores(method):
    labels, logits = _overconfident()
    fitted = fit_calibration(labels[:2000], logits[:2000], method)
    assert fitted.scale == pytest.approx(0.25, abs=0.03)  # undoes the factor of four
    before = calibration_metrics(labels[2000:], sigmoid(logits[2000:]))
    after = calibration_metrics(labels[2000:], fitted(logits[2000:]))
    assert after["ece"] < before["ece"] / 2 and after["brier"] < before["brier"]
    assert auc(labels, fitted(logits)) == auc(labels, logits)  # a monotonic map: the ranking is untouched


def test_ece_of_known_bins():
    # Two bins: 0.15 with rate 0 (|0.15 - 0| = 0.15) and 0.95 with rate 1/2 (0.45), equal shares.
    assert expected_calibration_error(np.array([0, 0, 1, 0]), np.array([0.15, 0.15, 0.95, 0.95])) == pytest.approx(
        0.5 * 0.15 + 0.5 * 0.45
    )


def test_calibration_refuses_one_class_and_unknown_methods():
    with pytest.raises(ConfigError, match="both classes"):
        fit_calibration(np.zeros(5), np.arange(5.0))
    with pytest.raises(ConfigError, match="unknown calibration 'isotonic'"):
        fit_calibration(np.array([0, 1]), np.array([0.0, 1.0]), "isotonic")


# --- lesion features --------------------------------------------------------------------


def _disc_lesion(size=96, radius=24, lesion=(90, 60, 40), skin=(200, 150, 130)):
    image = np.empty((size, size, 3), np.uint8)
    image[:] = skin
    rows, columns = np.mgrid[:size, :size]
    mask = (rows - size / 2) ** 2 + (columns - size / 2) ** 2 < radius**2
    image[mask] = lesion
    return image, mask


def test_features_are_finite_deterministic_and_read_the_lesion():
    image, mask = _disc_lesion()
    features = lesion_features(image, mask)
    assert features == lesion_features(image.copy(), mask.copy())  # deterministic
    assert all(np.isfinite(v) for v in features.values())
    assert features["area_fraction"] == pytest.approx(np.pi * 24**2 / 96**2, rel=0.03)
    assert features["compactness"] == pytest.approx(1.0, abs=0.05)  # a disc
    assert features["asymmetry_major"] < 0.05 and features["eccentricity"] < 0.2
    lesion_lab = rgb2lab(np.array([[[90, 60, 40]]], np.uint8))[0, 0]
    skin_lab = rgb2lab(np.array([[[200, 150, 130]]], np.uint8))[0, 0]
    assert features["lesion_L_mean"] == pytest.approx(lesion_lab[0], abs=0.01)
    assert features["lesion_L_std"] == pytest.approx(0.0, abs=1e-6)  # one colour
    assert features["skin_L_mean"] == pytest.approx(skin_lab[0], abs=0.01)
    assert features["contrast_L"] == pytest.approx(lesion_lab[0] - skin_lab[0], abs=0.01)
    assert features["colour_share_dark_brown"] == 1.0  # (90, 60, 40) is nearest to dark brown
    assert features["empty_mask"] == 0.0


def test_colour_structure_features_read_centre_halves_and_colours():
    image, mask = _disc_lesion()
    plain = lesion_features(image, mask)
    assert plain["lab_spread_0"] == pytest.approx(0.0, abs=1e-6) and plain["colour_asymmetry_0"] < 1e-6
    assert plain["radial_slope_L"] == pytest.approx(0.0, abs=1e-6)
    lesion_lab = rgb2lab(np.array([[[90, 60, 40]]], np.uint8))[0, 0]
    assert plain[f"histogram_L{int(lesion_lab[0] // (100 / 6))}"] == 1.0  # every pixel in its lightness bin
    rows, columns = np.mgrid[:96, :96]
    core = (rows - 48) ** 2 + (columns - 48) ** 2 < 10**2
    dark_core = image.copy()
    dark_core[core] = (30, 20, 15)  # a darker centre: lightness falls from the border inwards
    assert lesion_features(dark_core, mask)["radial_slope_L"] < -10
    assert lesion_features(dark_core, mask)["dark_share"] == pytest.approx(core.sum() / mask.sum(), abs=1e-9)
    halves = image.copy()
    halves[mask & (columns < 48)] = (90, 110, 150)  # blue-grey on one side only
    two = lesion_features(halves, mask)
    assert two["lab_spread_0"] > 10 and max(two["colour_asymmetry_0"], two["colour_asymmetry_1"]) > 20
    assert two["blue_grey_share"] == pytest.approx(0.5, abs=0.05)


def test_a_feature_model_of_an_older_feature_version_reads_its_own_columns():
    from sklearn.ensemble import HistGradientBoostingClassifier

    from srcrn.stage2.feature_model import FeatureModel

    images, masks = zip(*[_disc_lesion(radius=r, lesion=(90 + 3 * r, 60, 40)) for r in range(12, 36, 2)])
    inputs, lesions = np.stack(images), np.stack(masks)
    table = np.array([list(lesion_features(i, m).values()) for i, m in zip(inputs, lesions)])
    names = list(lesion_features(images[0], masks[0]))
    old = ["area_fraction", "lesion_L_mean", "contrast_L"]  # a model that knew three of today's features
    columns = [names.index(n) for n in old]
    labels = np.arange(len(inputs)) % 2
    estimator = HistGradientBoostingClassifier(max_iter=5, min_samples_leaf=2).fit(table[:, columns], labels)
    model = FeatureModel(estimator, old, {"image_size": 96, "input": "crop", "margin": 0.2})
    expected = estimator.decision_function(table[:, columns])
    assert np.allclose(model.logits(inputs, lesions), expected)
    unknown = FeatureModel(estimator, ["area_fraction", "lesion_L_mean", "not_a_feature"], {"image_size": 96})
    with pytest.raises(ConfigError, match="does not compute, first 'not_a_feature'"):
        unknown.logits(inputs, lesions)


def test_features_of_an_empty_mask_use_the_whole_image():
    image, _ = _disc_lesion()
    features = lesion_features(image, np.zeros(image.shape[:2], bool))
    assert features["empty_mask"] == 1.0 and features["area_fraction"] == 1.0


# --- cross-validation folds and the stack ----------------------------------------------


class _Data:
    """What ``fold_splits`` reads of a dataset: ids, labels and near-duplicate groups."""

    def __init__(self, n=120, seed=0):
        rng = np.random.default_rng(seed)
        self.ids = [f"ISIC_{i:07d}" for i in range(n)]
        self.labels = (rng.random(n) < 0.2).astype(float)
        self.groups = list(self.ids)
        for i in range(0, 30, 3):  # ten groups of three near-duplicates, one label each
            self.groups[i + 1] = self.groups[i + 2] = self.ids[i]
            self.labels[i + 1] = self.labels[i + 2] = self.labels[i]

    def melanoma(self):
        return self.labels

    def duplicate_groups(self):
        return self.groups


def test_folds_are_stratified_disjoint_and_keep_duplicates_together():
    data = _Data()
    folds = fold_splits(data, data.ids, 5, seed=0)
    held = [set(f.val) for f in folds]
    assert sum(len(h) for h in held) == len(data.ids) and set().union(*held) == set(data.ids)  # cover, disjoint
    for fold in folds:
        assert not set(fold.train) & set(fold.val)
    group = dict(zip(data.ids, data.groups))
    for h in held:
        for other in held:
            if other is not h:
                assert not {group[i] for i in h} & {group[i] for i in other}
    label = dict(zip(data.ids, data.labels))
    rates = [np.mean([label[i] for i in h]) for h in held]
    assert max(rates) - min(rates) < 0.12  # stratified: every fold near the overall rate
    assert [f.val for f in fold_splits(data, data.ids, 5, seed=0)] == [f.val for f in folds]  # seeded
    with pytest.raises(ConfigError, match="--folds 1"):
        fold_splits(data, data.ids, 1)


def _member(folder, logits_oof, logits_val, truth_oof, truth_val, folds):
    folder.mkdir()
    ids_oof = [f"t{i}" for i in range(len(truth_oof))]
    ids_val = [f"v{i}" for i in range(len(truth_val))]
    pd.DataFrame({"image_id": ids_oof, "truth": truth_oof, "logit": logits_oof, "fold": folds}).to_csv(
        folder / "oof.csv", index=False
    )
    pd.DataFrame({"image_id": ids_val, "truth": truth_val, "logit": logits_val}).to_csv(folder / "val.csv", index=False)
    return folder


def test_the_stack_never_scores_an_image_with_a_model_fitted_on_its_score(tmp_path):
    rng = np.random.default_rng(1)
    n, m = 200, 60
    truth, truth_val = rng.integers(0, 2, n), rng.integers(0, 2, m)
    folds = np.arange(n) % 4 + 1
    a = [truth + rng.normal(0, 1, n), truth_val + rng.normal(0, 1, m)]
    b = [truth + rng.normal(0, 2, n), truth_val + rng.normal(0, 2, m)]
    members = [
        _member(tmp_path / "a", a[0], a[1], truth, truth_val, folds),
        _member(tmp_path / "b", b[0], b[1], truth, truth_val, folds),
    ]
    out = tmp_path / "stack"
    out.mkdir()
    result = stack_members(members, out)
    oof = pd.read_csv(out / "oof.csv").set_index("image_id").loc[[f"t{i}" for i in range(n)]]
    features = np.stack([a[0], b[0]], axis=1)
    for fold in range(1, 5):  # fold k is scored by a stacker fitted on the other folds only
        held = folds == fold
        reference = LogisticRegression(C=1.0).fit(features[~held], truth[~held]).predict_proba(features[held])[:, 1]
        assert np.allclose(oof["melanoma"].to_numpy()[held], reference)
    # The validation labels are never used: changing them changes no validation score.
    again = tmp_path / "again"
    again.mkdir()
    flipped = [
        _member(tmp_path / "a2", a[0], a[1], truth, 1 - truth_val, folds),
        _member(tmp_path / "b2", b[0], b[1], truth, 1 - truth_val, folds),
    ]
    stack_members(flipped, again)
    assert np.allclose(pd.read_csv(out / "val.csv")["melanoma"], pd.read_csv(again / "val.csv")["melanoma"])
    assert result["weights"][0] > result["weights"][1] > 0  # the less noisy member weighs more


def test_the_stack_refuses_members_of_other_folds(tmp_path):
    truth = np.array([0, 1] * 10)
    a = _member(tmp_path / "a", truth * 1.0, truth[:4] * 1.0, truth, truth[:4], np.arange(20) % 2 + 1)
    b = _member(tmp_path / "b", truth * 1.0, truth[:4] * 1.0, truth, truth[:4], np.arange(20) % 4 + 1)
    with pytest.raises(ConfigError, match="differ"):
        stack_members([a, b], tmp_path)


# --- models and recipes ------------------------------------------------------------------


def test_the_imagenet_path_loads_a_stand_in_from_torch_hubs_cache(tmp_path, monkeypatch):
    from torchvision.models import resnet50

    from srcrn.models import MelanomaClassifier
    from srcrn.models.weights import imagenet_weights_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    stand_in = resnet50(weights=None)
    torch.nn.init.constant_(stand_in.layer4[2].conv3.weight, 0.125)
    cached = imagenet_weights_file()
    assert str(cached).startswith(str(tmp_path))
    cached.parent.mkdir(parents=True)
    torch.save(stand_in.state_dict(), cached)
    model = MelanomaClassifier(weights="imagenet")
    assert torch.all(model.backbone.layer4[2].conv3.weight == 0.125)
    cached.unlink()
    with pytest.raises(ConfigError, match=r"not available offline: put resnet50-.*SRCRN_OFFLINE is set"):
        MelanomaClassifier(weights="imagenet")


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["paper", "strong"])
def test_each_recipe_builds_and_trains_two_steps(recipe, tiny_segmenter, sample, tmp_path):
    from srcrn.training.classification import train_classification

    config = small_classification_config(
        tmp_path, recipe=recipe, weights=f"srcrn:{tiny_segmenter}", segmenter=tiny_segmenter, batch_size=16
    )
    if recipe == "strong":
        assert (config.finetune, config.optimizer, config.sampler, config.select) == (True, "adamw", "balanced", "last")
    summary = train_classification(config, sample, tmp_path / "run", progress=False)
    assert summary["global_step"] == 2  # 32 training images, batch 16
    kept = summary["model_checkpoint"]
    assert kept == summary["last_checkpoint" if recipe == "strong" else "best_checkpoint"]
    classifier = CnnModel.from_checkpoint(kept)
    assert classifier.spec.tta == (recipe == "strong") and classifier.spec.input == config.input
    inputs = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    probabilities = melanoma_probabilities(classifier, inputs)
    assert probabilities.shape == (3,) and np.all((probabilities > 0) & (probabilities < 1))
    assert len(set(probabilities.tolist())) == 3  # the trained network reads its inputs


@pytest.mark.slow
def test_joint_training_adds_a_melanoma_head_and_keeps_the_segmenter(sample, tmp_path):
    from srcrn.models import MelanomaClassifier
    from srcrn.runtime.segmenter import Segmenter
    from srcrn.training.segmentation import train_segmentation

    config = small_segmentation_config(tmp_path, aux_melanoma=0.5)
    summary = train_segmentation(config, sample, tmp_path / "run", progress=False)
    state = torch.load(summary["last_checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    assert {"melanoma_head.1.weight", "melanoma_head.1.bias"} <= set(state)
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert metrics["val/melanoma_auc"].notna().any()
    assert Segmenter.from_checkpoint(summary["last_checkpoint"]).masks(np.zeros((1, 64, 64, 3), np.uint8), 64).shape
    classifier = MelanomaClassifier(weights=f"srcrn:{summary['last_checkpoint']}")
    assert torch.equal(classifier.backbone.layer4[0].conv1.weight, state["model.encoder.layer4.0.conv1.weight"])
    with pytest.raises(ConfigError, match="aux_melanoma needs arch 'srcrn'"):
        small_segmentation_config(tmp_path, aux_melanoma=0.5, arch="unet")


@pytest.mark.slow
def test_cv_of_the_feature_model_then_eval_and_predict_use_its_calibration(tiny_segmenter, sample, tmp_path, capsys):
    out, cache = tmp_path / "cv", str(tmp_path / "cache")
    common = ["--data", str(sample), "--segmenter", tiny_segmenter, "--image-size", "64", "--cache", cache]
    run_cli("classify", "cv", "--out", str(out), "--folds", "2", "--model", "features", "--input", "crop",
            "--target-sensitivity", "0.8", "--no-progress", *common)  # fmt: skip
    result = json.loads((out / "cv.json").read_text())
    oof, val = pd.read_csv(out / "oof.csv"), pd.read_csv(out / "val.csv")
    split = pd.read_csv(out / "split.csv")
    assert sorted(oof["image_id"]) == sorted(split.loc[split["subset"] == "train", "image_id"])  # each once
    assert sorted(val["image_id"]) == sorted(split.loc[split["subset"] == "val", "image_id"])
    assert set(oof["fold"]) == {1, 2} and len(result["per_fold_auc"]) == 2
    assert val["logit"].nunique() > 1  # a model that discriminates, so the comparisons below mean something
    assert 0 <= result["oof"]["auc_ci95_low"] <= result["oof"]["auc"] <= result["oof"]["auc_ci95_high"] <= 1
    from srcrn.stage2.feature_model import FeatureModel

    model_path = result["val"]["model"]
    stored = FeatureModel.load(model_path)
    assert stored.extras["calibration"]["method"] == "platt"
    assert stored.spec.calibration.scale == pytest.approx(result["calibration"]["scale"])
    # The threshold is chosen on the out-of-fold calibrated probabilities, stored, and only measured on val.
    chosen = result["threshold"]
    melanoma_oof = oof.loc[oof["truth"] == 1, "melanoma_calibrated"]
    assert (melanoma_oof > chosen["value"]).mean() >= 0.8 > chosen["oof"]["sensitivity"] - 1 / len(melanoma_oof)
    assert stored.spec.threshold == chosen["value"] and stored.spec.target_sensitivity == 0.8
    melanoma_val = val.loc[val["truth"] == 1, "melanoma_calibrated"]
    benign_val = val.loc[val["truth"] == 0, "melanoma_calibrated"]
    assert chosen["val"]["sensitivity"] == pytest.approx((melanoma_val > chosen["value"]).mean())
    assert chosen["val"]["specificity"] == pytest.approx((benign_val <= chosen["value"]).mean())
    n, k = len(benign_val), int((benign_val <= chosen["value"]).sum())  # Wilson's interval by its formula
    centre, half = (k + 1.96**2 / 2) / (n + 1.96**2), 1.96 * np.sqrt(k * (n - k) / n + 1.96**2 / 4) / (n + 1.96**2)
    assert chosen["val"]["specificity_ci95_low"] == pytest.approx(centre - half, abs=1e-3)
    assert chosen["val"]["specificity_ci95_high"] == pytest.approx(centre + half, abs=1e-3)
    # classify eval of the stored model reproduces the calibrated validation scores.
    evaluation = tmp_path / "eval"
    run_cli("classify", "eval", "--model", model_path, "--data", str(sample), "--split-file", str(out), "--subset", "val",
            "--out", str(evaluation), "--cache", cache, "--no-progress")  # fmt: skip
    scored = pd.read_csv(evaluation / "predictions.csv").merge(val, on="image_id")
    assert np.allclose(scored["melanoma_x"], scored["melanoma_calibrated"])
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert {"brier", "ece", "log_loss"} <= set(metrics) and (evaluation / "reliability.png").is_file()
    # predict takes the feature model too, and gives the same calibrated probabilities (of the
    # lesion as given, as cv scored it: --no-spread; its default answer averages three turns).
    images = [str(sample / "images" / f"{i}.jpg") for i in val["image_id"]]
    run_cli("predict", *images, "--out", str(tmp_path / "predicted"), "--segmenter", tiny_segmenter,
            "--classifier", model_path, "--no-spread", "--no-progress")  # fmt: skip
    predicted = pd.read_csv(tmp_path / "predicted" / "predictions.csv").merge(val, on="image_id")
    assert len(predicted) == len(val)
    assert np.allclose(predicted["melanoma_x"], predicted["melanoma_calibrated"], atol=1e-6)
    # Settings that differ from the folder's are refused, not mixed in.
    message = cli_error(capsys, "classify", "cv", "--out", str(out), "--folds", "2", "--model", "features",
                        "--input", "full", "--no-progress", *common)  # fmt: skip
    assert "holds a cross-validation with other settings" in message
    # Run again without --target-sensitivity, the final model would keep a threshold cv.json no longer names.
    message = cli_error(capsys, "classify", "cv", "--out", str(out), "--folds", "2", "--model", "features",
                        "--input", "crop", "--no-progress", *common)  # fmt: skip
    assert "its final model holds a threshold chosen for 0.8 sensitivity" in message


@pytest.mark.slow
def test_calibration_travels_from_checkpoint_to_bundle_and_predict(tiny_segmenter, sample, tmp_path, capsys):
    from srcrn.inference.pipeline import Pipeline
    from srcrn.training.classification import train_classification

    config = small_classification_config(tmp_path, weights="none", segmenter=tiny_segmenter, input="crop")
    checkpoint = train_classification(config, sample, tmp_path / "run", progress=False)["model_checkpoint"]
    images = sorted((sample / "images").glob("*.jpg"))[:3]
    before = Pipeline.from_checkpoints(tiny_segmenter, checkpoint)
    store_extras(checkpoint, calibration={"method": "platt", "scale": 0.5, "bias": -0.25})
    assert read_checkpoint(checkpoint).extras["calibration"]["scale"] == 0.5
    after = Pipeline.from_checkpoints(tiny_segmenter, checkpoint)
    assert after.classifier.spec.calibration == Calibration("platt", 0.5, -0.25)
    raw = before.predict_many(images)
    assert len({r.probability for r in raw}) == 3  # three logits, not one: the mapping is checked, not a constant
    calibrated = after.predict_many(images)
    for r, c in zip(raw, calibrated):
        logit = np.log(r.probability) - np.log1p(-r.probability)
        assert c.probability == pytest.approx(float(sigmoid(0.5 * logit - 0.25)), rel=1e-4)
    bundle = tmp_path / "bundle"
    run_cli("export", "onnx", "--segmenter", tiny_segmenter, "--classifier", checkpoint, "--out", str(bundle))
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["classifier"]["calibration"]["scale"] == 0.5 and manifest["version"] == 5
    assert manifest["classifier"]["kind"] == "cnn"
    onnx = Pipeline.from_bundle(bundle).predict_many(images)
    for c, o in zip(calibrated, onnx):
        assert o.probability == pytest.approx(c.probability, abs=1e-4)
    # --explain: torch only, and said so for the ONNX engine.
    message = cli_error(capsys, "predict", str(images[0]), "--out", str(tmp_path / "p4"), "--engine", "onnx",
                        "--model", str(bundle), "--explain")  # fmt: skip
    assert "--explain needs the torch engine" in message


# --- Grad-CAM -----------------------------------------------------------------------------


def _squares(n, size, rng):
    """Melanoma = a bright square somewhere on a dark noisy background; benign = none."""
    images = rng.integers(20, 60, (n, size, size, 3)).astype(np.uint8)
    labels = np.arange(n) % 2
    boxes = []
    for image, label in zip(images, labels):
        top, left = rng.integers(0, size - 40, 2)
        boxes.append((top, left))
        if label:
            image[top : top + 40, left : left + 40] = 230
    return images, labels.astype(np.float32), boxes


@pytest.mark.slow
def test_grad_cam_has_the_image_size_and_points_at_the_lesion_it_learnt(tmp_path):
    from srcrn.answers.explain import grad_cam, place_heatmap
    from srcrn.data.normalization import normalize_numpy
    from srcrn.models import MelanomaClassifier
    from srcrn.runtime.engines import TorchRuntime
    from srcrn.stage2.spec import ClassifierSpec

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = MelanomaClassifier(weights=None, finetune=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(25):
        images, labels, _ = _squares(8, 128, rng)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            model(torch.from_numpy(normalize_numpy(images))), torch.from_numpy(labels)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    classifier = CnnModel(TorchRuntime(model), ClassifierSpec(128))
    images, labels, boxes = _squares(8, 128, np.random.default_rng(1))
    scores = melanoma_probabilities(classifier, images)
    assert scores[labels == 1].min() > scores[labels == 0].max()
    maps = grad_cam(classifier, images)
    assert maps.shape == (8, 128, 128) and maps.min() >= 0 and maps.max() <= 1
    for heat, label, (top, left) in zip(maps, labels, boxes):
        if label:
            inside = np.zeros((128, 128), bool)
            inside[top : top + 40, left : left + 40] = True
            assert heat[inside].mean() > 2 * heat[~inside].mean()
    # A crop's map goes back into its box on the image.
    placed = place_heatmap(np.ones((16, 16), np.float32), (0.25, 0.5, 0.75, 1.0), 40, 20)
    assert placed.shape == (20, 40) and placed[10:, 10:30].min() == 1 and placed[:10].max() == 0


@pytest.mark.slow
def test_predict_explain_writes_one_heatmap_per_image_at_its_size(tiny_segmenter, tiny_classifier, sample, tmp_path):
    from PIL import Image

    checkpoint = tiny_classifier
    images = sorted((sample / "images").glob("*.jpg"))[:2]
    out = tmp_path / "predicted"
    run_cli("predict", *map(str, images), "--out", str(out), "--segmenter", tiny_segmenter,
            "--classifier", checkpoint, "--explain", "--no-progress")  # fmt: skip
    table = pd.read_csv(out / "predictions.csv")
    for path, explanation in zip(images, table["explanation"]):
        with Image.open(path) as original, Image.open(explanation) as heat:
            scale = min(1.0, 1024 / max(original.size))  # the working size of measurements and overlays
            assert heat.size == (round(original.size[0] * scale), round(original.size[1] * scale))


@pytest.mark.parametrize("backbone_size", [None, 96])
def test_grad_cam_looks_at_a_lite_encoders_last_feature_map(backbone_size):
    """A Lite classifier has no ResNet ``layer4``: Grad-CAM takes each backbone's last spatial layer."""
    from srcrn.answers.explain import grad_cam
    from srcrn.models import MelanomaClassifier
    from srcrn.runtime.engines import TorchRuntime
    from srcrn.stage2.spec import ClassifierSpec

    torch.manual_seed(0)
    model = MelanomaClassifier(weights=None, encoder="efficientnet-lite0", backbone_size=backbone_size).eval()
    assert model.last_feature_map is model.backbone.body.bn2
    images, _, _ = _squares(2, 64, np.random.default_rng(0))
    maps = grad_cam(CnnModel(TorchRuntime(model), ClassifierSpec(64)), images)
    assert maps.shape == (2, 64, 64) and maps.min() >= 0 and maps.max() <= 1
