"""The feature model's boosted trees as ONNX (stage2.booster, issue 31): scikit-learn's decision
function to rounding, NaN and values on a split included; what it refuses; the metadata inside."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("onnx", reason="writing ONNX trees needs srcrn[train]")
from sklearn.ensemble import HistGradientBoostingClassifier

from srcrn.errors import ConfigError
from srcrn.stage2.booster import OnnxBooster, booster_to_onnx


def _data(rows: int = 300, columns: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(rows, columns)) * [1, 10, 0.01, 1e3, 1, 1][:columns]
    labels = (table[:, 0] + table[:, 1] / 10 + rng.normal(size=rows) > 0.5).astype(int)
    table[rng.random(table.shape) < 0.1] = np.nan  # missing values: each split learns their side
    return table, labels


def _onnx(estimator, tmp_path, metadata=None) -> OnnxBooster:
    path = tmp_path / "trees.onnx"
    path.write_bytes(booster_to_onnx(estimator, metadata or {"names": ["a"]}))
    return OnnxBooster(path)


def _queries(estimator, table: np.ndarray) -> np.ndarray:
    """The table, plus rows whose one feature sits exactly on each split's threshold and one ulp
    above it: where float32 thresholds (skl2onnx's) send a row down the other branch."""
    splits = [(int(n["feature_idx"]), float(n["num_threshold"]))
              for (tree,) in estimator._predictors for n in tree.nodes if not n["is_leaf"]]  # fmt: skip
    base = np.nan_to_num(np.nanmedian(table, axis=0))
    on, above = np.tile(base, (len(splits), 1)), np.tile(base, (len(splits), 1))
    for row, (feature, threshold) in enumerate(splits):
        on[row, feature] = threshold
        above[row, feature] = np.nextafter(threshold, np.inf)
    return np.concatenate([table, on, above, np.full((1, table.shape[1]), np.nan)])


def test_the_onnx_trees_give_scikit_learns_decision_function(tmp_path):
    table, labels = _data()
    estimator = HistGradientBoostingClassifier(max_iter=40, max_depth=4, random_state=0).fit(table, labels)
    booster = _onnx(estimator, tmp_path)
    queries = _queries(estimator, table)
    expected = estimator.decision_function(queries)
    assert np.abs(booster.decision_function(queries) - expected).max() < 1e-12
    # Not vacuous: the split rows do fall on both sides of the thresholds.
    assert np.ptp(expected) > 1


def test_trees_without_a_split_are_their_leaf(tmp_path):
    table, labels = _data(rows=40)
    # No leaf may hold fewer than 30 of 40 rows: every tree is one leaf.
    estimator = HistGradientBoostingClassifier(max_iter=5, min_samples_leaf=30).fit(table, labels)
    assert all(tree.nodes["is_leaf"][0] for (tree,) in estimator._predictors)
    booster = _onnx(estimator, tmp_path)
    assert np.allclose(booster.decision_function(table), estimator.decision_function(table), atol=1e-12)


def test_the_metadata_travels_and_wrong_inputs_are_one_line(tmp_path):
    table, labels = _data()
    estimator = HistGradientBoostingClassifier(max_iter=3).fit(table, labels)
    booster = _onnx(estimator, tmp_path, {"names": list("abcdef"), "settings": {"image_size": 64}})
    assert booster.metadata == {"names": list("abcdef"), "settings": {"image_size": 64}}
    with pytest.raises(ConfigError, match=r"trees\.onnx: expects 6 features a row, got shape \(2, 5\)"):
        booster.decision_function(table[:2, :5])


def test_what_cannot_be_written_or_read_is_refused(tmp_path):
    table, labels = _data()
    three = HistGradientBoostingClassifier(max_iter=2).fit(table, labels + (table[:, 1] > 5))
    with pytest.raises(ConfigError, match="only a two-class feature model"):
        booster_to_onnx(three, {})
    categorical = np.column_stack([table[:, :2], np.arange(len(table)) % 3])
    model = HistGradientBoostingClassifier(max_iter=2, categorical_features=[2]).fit(categorical, labels)
    with pytest.raises(ConfigError, match="categorical features"):
        booster_to_onnx(model, {})
    import onnx
    from onnx import helper

    path = tmp_path / "trees.onnx"
    path.write_bytes(booster_to_onnx(HistGradientBoostingClassifier(max_iter=2).fit(table, labels), {}))
    bare = onnx.load(path)
    del bare.metadata_props[:]
    helper.set_model_props(bare, {})
    onnx.save(bare, tmp_path / "bare.onnx")
    with pytest.raises(ConfigError, match=r"bare\.onnx: ONNX trees without srcrn's feature-model metadata"):
        OnnxBooster(tmp_path / "bare.onnx")


def test_a_bundles_feature_model_reads_its_trees_and_cannot_be_saved_as_skops(tmp_path):
    from srcrn.stage2.feature_model import FeatureModel

    table, labels = _data()
    estimator = HistGradientBoostingClassifier(max_iter=5).fit(table, labels)
    predicting = {"image_size": 64, "input": "crop", "margin": 0.1, "clinical": ["age"]}
    model = FeatureModel(estimator, list("abcdef"), predicting | {"segmenter": "/home/me/seg.ckpt", "cache": "/tmp/c"})
    model.write_onnx(tmp_path / "member.onnx")
    read = FeatureModel.from_onnx(tmp_path / "member.onnx")
    # The settings it predicts with travel; the training's folders and paths do not.
    assert read.names == model.names and read.settings == predicting
    assert b"/home/me" not in (tmp_path / "member.onnx").read_bytes()
    assert read.spec == dataclasses.replace(model.spec, segmenter=None)
    assert np.allclose(read.logits_of_table(table, list("abcdef")), estimator.decision_function(table), atol=1e-12)
    with pytest.raises(ConfigError, match="cannot be saved as skops"):
        read.save(tmp_path / "again.skops")
    (tmp_path / "other.onnx").write_bytes(booster_to_onnx(estimator, {"format": "something-else"}))
    with pytest.raises(ConfigError, match=r"other\.onnx: not the ONNX trees of a srcrn feature model"):
        FeatureModel.from_onnx(tmp_path / "other.onnx")
