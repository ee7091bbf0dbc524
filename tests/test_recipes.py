"""Stage-1 recipes (issue 7): named defaults that flags override, schedules that end with the
time budget, weight averaging, flip test-time augmentation, and smp baselines trained and
evaluated through the same code as SRCRN."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Timer
from PIL import Image

from helpers import cli_error, segment_eval
from helpers import run_cli as run
from helpers import small_segmentation_config as _small
from srcrn.errors import ConfigError
from srcrn.models import SRCRN, build_segmenter
from srcrn.runtime.checkpoints import build_model, read_checkpoint
from srcrn.runtime.engines import TorchRuntime
from srcrn.runtime.postprocess import keep_largest_region
from srcrn.runtime.segmenter import Segmenter, SegmenterSpec
from srcrn.settings import RECIPES, SegmentTrainSettings, load_settings
from srcrn.training.schedules import ONECYCLE_START, BudgetedSchedule, lr_factor
from srcrn.training.segmentation import train_segmentation

STRONG = RECIPES[SegmentTrainSettings]["strong"]


def predict_probabilities(model: torch.nn.Module, images: np.ndarray, tta: bool = False) -> torch.Tensor:
    """[N, 1, S, S] probabilities through the one prediction path."""
    segmenter = Segmenter(TorchRuntime(model), SegmenterSpec(images.shape[1], tta=tta))
    return torch.from_numpy(segmenter.probabilities(images))[:, None]


def test_recipes_are_defaults_that_files_and_flags_override(tmp_path):
    paper = load_settings(SegmentTrainSettings)
    assert paper == SegmentTrainSettings()  # the paper's recipe is the schema's defaults
    assert (paper.optimizer, paper.loss, paper.augment, paper.schedule, paper.ema_decay, paper.tta) == (
        "adam",
        "bce",
        "none",
        "constant",
        0.0,
        False,
    )
    strong = load_settings(SegmentTrainSettings, recipe="strong")
    for name, value in STRONG.items():
        assert getattr(strong, name) == value, name
    assert load_settings(SegmentTrainSettings, recipe="strong", loss="bce", score_channels=2).loss == "bce"
    (tmp_path / "c.yaml").write_text("recipe: strong\nema_decay: 0.0\n")
    from_file = load_settings(SegmentTrainSettings, tmp_path / "c.yaml")
    assert from_file.ema_decay == 0.0 and from_file.optimizer == "adamw"
    assert load_settings(SegmentTrainSettings, tmp_path / "c.yaml", flags={"recipe": "paper"}).optimizer == "adam"
    with pytest.raises(ConfigError, match="--recipe: unknown recipe 'fast'; choose one of paper, strong"):
        load_settings(SegmentTrainSettings, flags={"recipe": "fast"})


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["paper", "strong"])
def test_each_recipe_builds_and_runs_two_steps(sample, tmp_path, recipe):
    out = tmp_path / "run"
    summary = train_segmentation(_small(tmp_path, recipe=recipe), sample, out, progress=False)
    assert summary["global_step"] == 2 and summary["train_images_per_second"] > 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    recipe_defaults = RECIPES[SegmentTrainSettings][recipe]
    assert saved["recipe"] == recipe and all(saved[k] == v for k, v in recipe_defaults.items())
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    stored = read_checkpoint(out / "checkpoints" / "last.ckpt")
    assert stored.settings["recipe"] == recipe and stored.settings["tta"] == (recipe == "strong")
    model = build_model(stored)
    assert model.decoder.score8.out_channels == (64 if recipe == "strong" else 2)
    # The selected weights come without what only a resume reads (the optimizer's moments, the
    # schedule, the averaging's raw weights): the weights themselves are last.ckpt's (one epoch).
    best = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert "optimizer_states" in checkpoint and not {"optimizer_states", "lr_schedulers", "current_model_state"} & set(
        best
    )
    assert best["state_dict"].keys() == checkpoint["state_dict"].keys()
    assert all(torch.equal(best["state_dict"][k], v) for k, v in checkpoint["state_dict"].items())
    assert (out / "checkpoints" / "best.ckpt").stat().st_size < 0.6 * (out / "checkpoints" / "last.ckpt").stat().st_size
    assert (
        build_model(read_checkpoint(out / "checkpoints" / "best.ckpt")).state_dict().keys() == model.state_dict().keys()
    )
    if recipe == "strong":
        # EMA: the checkpoint's weights (what eval and predict load) are the average; the raw
        # weights are kept beside them for resuming, and differ after two steps.
        raw = checkpoint["current_model_state"]
        averaged = checkpoint["state_dict"]
        key = "model.decoder.final.weight"
        assert not torch.equal(raw[key], averaged[key])
        assert torch.equal(model.state_dict()[key.removeprefix("model.")], averaged[key])
        log = pd.read_csv(out / "metrics.csv")
        assert "lr" in log.columns  # the schedule logs the learning rate it set
    else:
        assert "current_model_state" not in checkpoint


def test_warmup_cosine_and_onecycle_factors():
    assert [lr_factor("cosine", s, 4, 0.0) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor("cosine", 10, 4, 0.0) == 1.0
    assert lr_factor("cosine", 10, 4, 0.5) == pytest.approx(0.5)
    assert lr_factor("cosine", 10, 4, 1.0) == pytest.approx(0.0)
    assert lr_factor("cosine", 10, 4, 1.7) == pytest.approx(0.0)  # past the end: stays at the floor
    assert lr_factor("onecycle", 0, 100, 0.0) == pytest.approx(ONECYCLE_START, rel=0.01)
    assert lr_factor("onecycle", 99, 100, 0.0) == pytest.approx(1.0)
    assert lr_factor("onecycle", 200, 100, 1.0) < 1e-5
    assert lr_factor("constant", 1, 4, 0.9) == 0.5 and lr_factor("constant", 9, 0, 0.9) == 1.0
    with pytest.raises(ConfigError, match="unknown learning-rate schedule 'step'"):
        lr_factor("step", 0, 0, 0.0)


class _FakeTimer(Timer):
    def __init__(self, elapsed: float, budget: float):
        super().__init__(duration={"seconds": budget})
        self._elapsed = elapsed

    def time_elapsed(self, stage="train"):
        return self._elapsed


def test_schedule_progress_follows_steps_or_the_time_budget_whichever_is_further():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    module = SimpleNamespace(log=lambda *a, **k: None)

    def trainer(step, timer=None):
        return SimpleNamespace(
            max_epochs=10,
            num_training_batches=100,
            global_step=step,
            optimizers=[optimizer],
            callbacks=[timer] if timer else [],
        )

    schedule = BudgetedSchedule("cosine", warmup_epochs=1)
    schedule.on_train_batch_start(trainer(0), module, None, 0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 / 100)  # first warm-up step
    schedule.on_train_batch_start(trainer(550), module, None, 0)  # half-way through the 900 post-warm-up steps
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    # With 3/4 of a 100 s budget spent, time is further along than steps: it decides.
    schedule.on_train_batch_start(trainer(550, _FakeTimer(75.0, 100.0)), module, None, 0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.75)))


@pytest.mark.slow
def test_time_budget_stops_training_and_leaves_a_loadable_checkpoint(sample, tmp_path):
    out = tmp_path / "run"
    config = _small(tmp_path, recipe="strong", epochs=1000, time_budget="3s")
    summary = train_segmentation(config, sample, out, progress=False)
    assert summary["epochs"] < 1000 and summary["global_step"] < 2000
    assert summary["wall_seconds"] < 120
    last = out / "checkpoints" / "last.ckpt"
    assert last.is_file() and json.loads((out / "summary.json").read_text())["global_step"] == summary["global_step"]
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == summary["global_step"]
    model = build_model(read_checkpoint(last))
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    segment_eval(last, sample, tmp_path / "eval", tmp_path / "cache", "--split-file", str(out), "--keep-largest")
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["tta"] is True and 0 <= metrics["jaccard"] <= 1  # the strong recipe evaluates with TTA
    assert metrics["keep_largest"] is True
    for path in (tmp_path / "eval" / "masks").glob("*.png"):
        count, _ = cv2.connectedComponents((np.asarray(Image.open(path)) > 0).astype(np.uint8), connectivity=8)
        assert count <= 2, path  # background + at most one lesion


def test_keep_largest_region_drops_specks_and_fills_holes():
    mask = np.zeros((20, 20), bool)
    mask[2:10, 2:10] = True
    mask[5, 5] = False  # a hole
    mask[4:6, 6:8] = False  # another
    mask[15:17, 15:17] = True  # a speck
    kept = keep_largest_region(mask)
    assert kept.sum() == 64 and kept[5, 5] and not kept[15:17, 15:17].any()
    touching = np.zeros((10, 10), bool)
    touching[0:5, :] = True
    touching[2, 3] = False
    assert keep_largest_region(touching).sum() == 50  # a notch open to nothing is still a hole
    edge = np.zeros((10, 10), bool)
    edge[:, :4] = True
    edge[0, 2] = False  # a bay open to the image border is background, not a hole
    assert keep_largest_region(edge).sum() == 39
    assert not keep_largest_region(np.zeros((4, 4), bool)).any()


class _Pointwise(torch.nn.Module):
    """A 1x1 convolution: its output at a pixel depends on that pixel only, so it commutes
    with flips, and flip TTA must give back exactly its plain prediction."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 1, 1)

    def forward(self, x):
        return self.conv(x)


class _Ramp(torch.nn.Module):
    """Ignores the image and predicts a left-to-right ramp: TTA must average it with its mirror."""

    def forward(self, x):
        width = x.shape[-1]
        return torch.linspace(-2, 2, width).expand(x.shape[0], 1, x.shape[-2], width).clone()


def _disc(size=64) -> np.ndarray:
    rows, columns = np.mgrid[:size, :size] + 0.5
    inside = (rows - size / 2) ** 2 + (columns - size / 2) ** 2 < (size / 4) ** 2
    image = np.full((1, size, size, 3), 200, np.uint8)
    image[0][inside] = (90, 60, 40)
    return image


def test_tta_on_a_symmetric_image_equals_no_tta():
    image = _disc()
    assert np.array_equal(image, image[:, :, ::-1]) and np.array_equal(image, image[:, ::-1])
    model = _Pointwise().eval()
    plain, averaged = predict_probabilities(model, image), predict_probabilities(model, image, tta=True)
    assert torch.allclose(plain, averaged, atol=1e-6)
    # Each flipped prediction is flipped back before averaging: an asymmetric image through
    # the flip-commuting model, and a position-dependent model.
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert torch.allclose(predict_probabilities(model, noise), predict_probabilities(model, noise, tta=True), atol=1e-6)
    ramp = predict_probabilities(_Ramp(), image, tta=True)[0, 0]
    expected = torch.sigmoid(torch.linspace(-2, 2, 64))
    expected = (2 * expected + 2 * expected.flip(0)) / 4  # plain + vertical, horizontal + both
    assert torch.allclose(ramp[10], expected, atol=1e-6)


@pytest.mark.parametrize("arch", ["unet", "fpn"])
def test_smp_baselines_build_with_our_encoder_weights(tmp_path, arch):
    torch.manual_seed(0)
    source = SRCRN(stride=8)
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "srcrn.ckpt")
    model = build_segmenter(arch, encoder_weights=f"srcrn:{tmp_path / 'srcrn.ckpt'}")
    assert type(model).__name__ == {"unet": "Unet", "fpn": "FPN"}[arch]
    # Its encoder holds exactly the SRCRN encoder's ResNet-50 weights.
    assert torch.equal(model.encoder.layer3[0].conv1.weight, source.encoder.layer3[0].conv1.weight)
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)


@pytest.mark.slow
def test_arch_unet_trains_and_evaluates_through_the_same_code(sample, tmp_path, capsys):
    out = tmp_path / "run"
    run(
        "segment",
        "train",
        "--data",
        str(sample),
        "--out",
        str(out),
        "--arch",
        "unet",
        "--image-size",
        "64",
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--cache",
        str(tmp_path / "cache"),
        "--no-progress",
    )
    assert "trained 1 epochs" in capsys.readouterr().err
    stored = read_checkpoint(out / "checkpoints" / "best.ckpt")
    assert type(build_model(stored)).__name__ == "Unet" and stored.settings["arch"] == "unet"
    segment_eval(
        out / "checkpoints" / "best.ckpt", sample, tmp_path / "eval", tmp_path / "cache", "--split-file", str(out)
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    val = pd.read_csv(out / "split.csv").query("subset == 'val'")
    assert metrics["n_images"] == len(val) and {"jaccard", "dice", "accuracy"} <= set(metrics)
    assert set(pd.read_csv(tmp_path / "eval" / "per_image.csv")["image_id"]) == set(val["image_id"])


def test_cli_refuses_unknown_recipe_and_architecture(sample, tmp_path, capsys):
    for args, expected in (
        (["--recipe", "fast"], "--recipe: unknown recipe 'fast'"),
        (["--arch", "deeplab"], "--arch: Input should be 'srcrn', 'unet' or 'fpn' (given 'deeplab')"),
        (["--schedule", "step"], "--schedule: Input should be 'constant', 'cosine' or 'onecycle'"),
        (["--optimizer", "sgd"], "--optimizer: Input should be 'adam' or 'adamw' (given 'sgd')"),
        (["--ema-decay", "1.5"], "--ema-decay: Input should be less than 1 (given 1.5)"),
    ):
        error = cli_error(capsys, "segment", "train", "--data", str(sample), "--out", str(tmp_path / "x"),
                          "--no-progress", "--cache", str(tmp_path / "cache"), "--image-size", "64", "--epochs", "1",
                          "--steps-per-epoch", "1", *args)  # fmt: skip
        assert expected in error, (args, error)
