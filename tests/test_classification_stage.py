"""Stage 2: frozen backbone, the learning-rate schedule, balancing, deduplication, input
modes, weights, and evaluation equal to the official ISIC scorer."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from isic_challenge_scoring.classification import ClassificationMetric, ClassificationScore
from PIL import Image

from helpers import small_segmentation_config
from srcrn.data.cache import prepare
from srcrn.data.isic import IsicDataset
from srcrn.data.lesion import classifier_inputs, lesion_box
from srcrn.data.transforms import lesion_axis_distortion
from srcrn.errors import ConfigError
from srcrn.evaluation.classification import write_classification_outputs
from srcrn.models import MelanomaClassifier
from srcrn.runtime.checkpoints import read_checkpoint
from srcrn.settings import ClassifyTrainSettings, load_settings
from srcrn.training.balance import balance_rows, deduplicate
from srcrn.training.classification import ClassificationTask, train_classification
from srcrn.training.segmentation import train_segmentation
from srcrn.workflows.classify import batch_size_sweep, train_classifier


def _config(tmp_path, **changes) -> ClassifyTrainSettings:
    settings = dict(
        weights="none", image_size=64, batch_size=8, epochs=1, eval_batch_size=16, cache=str(tmp_path / "cache")
    )
    settings.update(changes)
    return load_settings(ClassifyTrainSettings, **settings)


def _task(**settings) -> ClassificationTask:
    return ClassificationTask(load_settings(ClassifyTrainSettings, **settings))


def test_frozen_backbone_gets_no_update_batchnorm_included():
    torch.manual_seed(0)
    task = _task(weights="none", image_size=64)
    before = {k: v.clone() for k, v in task.model.backbone.state_dict().items()}
    head_before = task.model.head[-1].weight.clone()
    optimizer = task.configure_optimizers()["optimizer"]
    task.train()
    for _ in range(3):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            task(torch.randn(4, 3, 64, 64)), torch.tensor([0.0, 1.0, 0.0, 1.0])
        )
        loss.backward()
        optimizer.step()
    after = task.model.backbone.state_dict()
    assert any("running_mean" in k for k in after)
    for key, value in before.items():  # weights, running means/variances, batch counters
        assert torch.equal(value, after[key]), key
    assert not torch.equal(head_before, task.model.head[-1].weight)
    assert all(not p.requires_grad for p in task.model.backbone.parameters())


def test_finetune_trains_the_backbone():
    torch.manual_seed(0)
    task = _task(weights="none", finetune=True, image_size=64)
    before = task.model.backbone.conv1.weight.clone()
    optimizer = task.configure_optimizers()["optimizer"]
    task.train()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(task(torch.randn(4, 3, 64, 64)), torch.ones(4))
    loss.backward()
    optimizer.step()
    assert not torch.equal(before, task.model.backbone.conv1.weight)


def test_learning_rate_follows_keras_inverse_time_decay():
    task = _task(weights="none", lr=0.01, lr_decay=5e-4)
    configured = task.configure_optimizers()
    optimizer, schedule = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert configured["lr_scheduler"]["interval"] == "step"
    assert optimizer.defaults["nesterov"] and optimizer.defaults["momentum"] == 0.9
    for t in range(2001):
        if t in (0, 1, 10, 1000, 2000):
            assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 / (1 + 5e-4 * t), rel=1e-12)
        optimizer.step()
        schedule.step()


@pytest.mark.parametrize("ratio", [1.0, 0.5])
def test_each_balancing_mode_reaches_the_requested_ratio(ratio):
    labels = np.array([1] * 10 + [0] * 90)
    none = balance_rows(labels, "none", ratio=ratio)
    assert len(none.row) == 100 and not none.augmented.any()
    augment = balance_rows(labels, "augment", ratio=ratio, seed=1)
    balanced_labels = labels[augment.row]
    assert balanced_labels.sum() == round(ratio * 90) and (balanced_labels == 0).sum() == 90
    assert augment.augmented.sum() == round(ratio * 90) - 10 and labels[augment.row[augment.augmented]].all()
    copies = np.bincount(augment.row[augment.augmented], minlength=10)[:10]
    assert copies.max() - copies.min() <= 1  # every melanoma image copied about equally often
    extra_labels = np.array([1] * 100 + [0] * 5)
    extra = balance_rows(labels, "extra", ratio=ratio, extra_labels=extra_labels, seed=1)
    added = extra.row[extra.source == 1]
    assert len(added) == round(ratio * 90) - 10 and extra_labels[added].all()
    assert len(np.unique(added)) == len(added)


def test_extra_balancing_says_when_too_few_extra_images():
    result = balance_rows(np.array([1] * 5 + [0] * 50), "extra", extra_labels=np.array([1, 1, 0]))
    assert (result.source == 1).sum() == 2 and "ratio not reached" in result.notes[0]


def test_deduplicate_drops_shared_ids_and_pixels():
    rng = np.random.default_rng(0)
    main = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    extra = np.stack([main[0], rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), main[2], main[2]])
    keep, dropped = deduplicate(["NEW_1", "ISIC_B", "NEW_2", "NEW_3"], extra, {"ISIC_A", "ISIC_B"}, main)
    assert keep.tolist() == [] and dropped == {"same_id": 1, "same_pixels": 3}
    keep, _ = deduplicate(["NEW_1"], extra[1:2], {"ISIC_A"}, main)
    assert keep.tolist() == [0]


def _lesion_folder(tmp_path):
    """One synthetic 256x192 image: blue skin, a red lesion at columns 64..127, rows 48..143."""
    root = tmp_path / "lesion"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = np.zeros((192, 256, 3), np.uint8)
    image[...] = (0, 0, 200)
    image[48:144, 64:128] = (220, 0, 0)
    mask = np.zeros((192, 256), np.uint8)
    mask[48:144, 64:128] = 255
    Image.fromarray(image).save(root / "images" / "ISIC_0000001.png")
    Image.fromarray(mask).save(root / "masks" / "ISIC_0000001_segmentation.png")
    (root / "labels.csv").write_text("image_id,melanoma,seborrheic_keratosis\nISIC_0000001,1.0,0.0\n")
    return root


def test_each_input_mode_yields_the_right_tensor(tmp_path):
    root = _lesion_folder(tmp_path)
    dataset = IsicDataset.from_dir(root)
    prepared = prepare(dataset, 64, tmp_path / "cache", workers=1, show_progress=False)
    masks = np.asarray(prepared.masks)
    full = classifier_inputs(prepared, dataset, "full")
    assert np.array_equal(full, prepared.images)
    masked = classifier_inputs(prepared, dataset, "masked", masks)
    assert (masked[0][masks[0] == 0] == 0).all()
    assert np.array_equal(masked[0][masks[0] == 1], full[0][masks[0] == 1])
    box = lesion_box(masks[0].astype(bool), margin=0.0)
    assert box == pytest.approx((0.25, 0.25, 0.5, 0.75))
    crop = classifier_inputs(prepared, dataset, "crop", masks, margin=0.0)
    assert crop.shape == (1, 64, 64, 3)
    assert crop[0, ..., 0].mean() > 200 and crop[0, ..., 2].mean() < 20  # all lesion, no skin
    with_margin = classifier_inputs(prepared, dataset, "crop", masks, margin=0.25)
    assert 0 < (with_margin[0, ..., 2] > 100).mean() < 0.6  # some skin around the lesion
    with pytest.raises(ConfigError, match="needs lesion masks"):
        classifier_inputs(prepared, dataset, "crop", None)
    empty = classifier_inputs(prepared, dataset, "masked", np.zeros_like(masks))
    assert np.array_equal(empty, full)  # an empty mask leaves the image whole


def test_axis_distortion_stretches_along_the_lesion_axis():
    mask = np.zeros((64, 64), np.uint8)
    mask[28:36, 12:52] = 1  # a horizontal lesion, 40 wide, 8 high
    image = np.repeat(mask[..., None] * 255, 3, axis=2).astype(np.uint8)

    class Fixed:
        def uniform(self, low, high):
            return 1.25

    out = lesion_axis_distortion(image, mask, Fixed())[..., 0] > 127
    rows, columns = np.nonzero(out)
    assert columns.max() - columns.min() + 1 == pytest.approx(50, abs=2)  # 40 * 1.25
    assert rows.max() - rows.min() + 1 == pytest.approx(8, abs=1)  # across the axis: unchanged


def test_imagenet_weights_offline_give_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=r"ImageNet weights are not available offline: put resnet50-\w+\.pth"):
        MelanomaClassifier(weights="imagenet")


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory, sample):
    """A briefly trained SRCRN on the sample (64 px): the source of masks and of srcrn: weights."""
    out = tmp_path_factory.mktemp("segmenter")
    config = small_segmentation_config(out)
    return train_segmentation(config, sample, out / "run", progress=False)["last_checkpoint"]


@pytest.mark.slow
def test_srcrn_weights_are_the_segmenters_encoder(segmenter):
    saved = torch.load(segmenter, map_location="cpu", weights_only=False)["state_dict"]
    model = MelanomaClassifier(weights=f"srcrn:{segmenter}")
    assert torch.equal(model.backbone.layer3[0].conv2.weight, saved["model.encoder.layer3.0.conv2.weight"])
    assert torch.equal(model.backbone.bn1.running_mean, saved["model.encoder.bn1.running_mean"])
    with pytest.raises(ConfigError, match="holds no SRCRN encoder"):
        from safetensors.torch import save_file

        path = segmenter.replace("last.ckpt", "other.safetensors")
        save_file({"x": torch.zeros(1)}, path)
        MelanomaClassifier(weights=f"srcrn:{path}")


@pytest.mark.slow
def test_train_and_eval_match_the_official_scorer(segmenter, sample, tmp_path):
    run = tmp_path / "run"
    summary = train_classifier(
        _config(tmp_path, segmenter=segmenter, input="crop", balance="augment", weights=f"srcrn:{segmenter}"),
        sample,
        run,
        progress=False,
    )
    assert summary["n_train_melanoma"] == summary["n_train_benign"]  # ratio 1.0 reached
    assert {"curves.png", "metrics.csv", "split.csv", "config.yaml"} <= {p.name for p in run.iterdir()}
    from srcrn.cli import main

    out = tmp_path / "eval"
    with pytest.raises(SystemExit) as done:
        main(
            [
                "classify",
                "eval",
                "--model",
                summary["best_checkpoint"],
                "--data",
                str(sample),
                "--out",
                str(out),
                "--cache",
                str(tmp_path / "cache"),
                "--no-progress",
            ]
        )
    assert done.value.code in (0, None)
    ours = json.loads((out / "metrics.json").read_text())
    predictions = pd.read_csv(out / "predictions.csv")
    assert list(predictions.columns) == ["image_id", "melanoma"] and len(predictions) == 40
    # The model reads each image (a constant output would match the scorer too, at AUC 0.5).
    assert predictions["melanoma"].nunique() > 20
    labels = pd.read_csv(sample / "labels.csv")
    truth = tmp_path / "truth.csv"
    labels[["image_id", "melanoma"]].rename(columns={"image_id": "image"}).to_csv(truth, index=False)
    submitted = tmp_path / "submitted.csv"
    predictions.rename(columns={"image_id": "image"}).to_csv(submitted, index=False)
    official = ClassificationScore.from_file(truth, submitted, ClassificationMetric.AUC).per_category.loc["melanoma"]
    for name in ("auc", "accuracy", "sensitivity", "specificity"):
        assert ours[name] == pytest.approx(float(official[name]), abs=1e-6), name
    assert ours["auc_ci95_low"] <= ours["auc"] <= ours["auc_ci95_high"]
    assert (out / "roc.png").is_file()
    # The checkpoint carries its preprocessing: loading it needs no ImageNet file.
    stored = read_checkpoint(summary["best_checkpoint"], expect="classifier")
    assert stored.settings["input"] == "crop" and stored.settings["segmenter"] == segmenter


def test_metrics_on_known_predictions(tmp_path):
    labels = np.array([1, 1, 0, 0, 0])
    probabilities = np.array([0.9, 0.4, 0.6, 0.1, 0.2])
    metrics = write_classification_outputs(tmp_path, list("abcde"), probabilities, labels.astype(float)).metrics
    assert metrics["auc"] == pytest.approx(5 / 6)  # 5 of 6 melanoma/benign pairs ranked right
    assert (metrics["sensitivity"], metrics["specificity"]) == (0.5, pytest.approx(2 / 3))
    assert metrics["balanced_accuracy"] == pytest.approx((0.5 + 2 / 3) / 2)
    # Wilson intervals beside the point figures (the closed-form Wilson score interval, z = 1.96, gives
    # the same: 1 of 2 -> 0.0945-0.9055; 2 of 3 -> 0.2077-0.9385).
    assert (metrics["sensitivity_ci95_low"], metrics["sensitivity_ci95_high"]) == (
        pytest.approx(0.0945, abs=1e-4),
        pytest.approx(0.9055, abs=1e-4),
    )
    assert (metrics["specificity_ci95_low"], metrics["specificity_ci95_high"]) == (
        pytest.approx(0.2077, abs=1e-4),
        pytest.approx(0.9385, abs=1e-4),
    )


@pytest.mark.slow
def test_extra_balancing_drops_duplicates_of_evaluation_images(sample, tmp_path):
    extra = tmp_path / "extra"
    (extra / "images").mkdir(parents=True)
    ids = sorted(p.stem for p in (sample / "images").glob("*.jpg"))
    shutil.copy(sample / "images" / f"{ids[0]}.jpg", extra / "images" / f"{ids[0]}.jpg")  # same id
    shutil.copy(sample / "images" / f"{ids[1]}.jpg", extra / "images" / "ISIC_9000001.jpg")  # same pixels
    for k in range(2, 5):  # new images (flipped copies: new pixels)
        Image.open(sample / "images" / f"{ids[k]}.jpg").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
            extra / "images" / f"ISIC_900000{k}.jpg"
        )
    rows = [(ids[0], 1.0), ("ISIC_9000001", 1.0), ("ISIC_9000002", 1.0), ("ISIC_9000003", 1.0), ("ISIC_9000004", 0.0)]
    pd.DataFrame(rows, columns=["image_id", "melanoma"]).to_csv(extra / "labels.csv", index=False)
    summary = train_classification(
        _config(tmp_path, balance="extra", extra=str(extra)), sample, tmp_path / "run", progress=False
    )
    notes = " ".join(summary["notes"])
    assert "1 dropped for a shared id, 1 for shared pixel content, 3 kept" in notes
    assert "only 2 extra melanoma images" in notes


@pytest.mark.slow
def test_batch_size_sweep_writes_its_table(sample, tmp_path):
    table = batch_size_sweep(_config(tmp_path), sample, tmp_path / "sweep", [4, 16], progress=False)
    assert table["batch_size"].tolist() == [4, 16]
    assert table["auc"].between(0, 1).all() and (table["seconds_per_epoch"] > 0).all()
    assert "| batch_size |" in (tmp_path / "sweep" / "sweep.md").read_text()
    assert (tmp_path / "sweep" / "sweep.png").is_file()
    again = batch_size_sweep(_config(tmp_path), sample, tmp_path / "sweep", [4, 16], progress=False)
    assert again.equals(table)  # finished runs are reused, not retrained
