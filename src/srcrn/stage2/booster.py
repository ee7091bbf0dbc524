"""The lesion-feature model's gradient-boosted trees as an ONNX ``TreeEnsemble`` (ai.onnx.ml 5),
so that a bundle's feature model runs in ONNX Runtime: predicting with it then imports neither
scikit-learn nor skops (1.0 s of a one-image ``srcrn predict``'s start, issue 31).

Written here rather than with skl2onnx: skl2onnx 1.20 fails on scikit-learn 1.9's
``HistGradientBoostingClassifier`` (it passes a boolean where ONNX wants an integer) and writes
float32 thresholds, which sends a feature lying between a float32 and a float64 threshold down
the other branch. This writes float64 thresholds and leaves, so the ONNX trees give scikit-learn's
decision function to rounding (``tests/test_booster.py``). Writing needs ``onnx`` (the train
extra, as every export); reading needs only ONNX Runtime.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from srcrn.errors import ConfigError

METADATA_KEY = "srcrn"  # the model's names, settings and extras, as JSON in the ONNX file
INPUT = "features"
OUTPUT = "logit"
_LEQ = 0  # TreeEnsemble's BRANCH_LEQ: left when x <= threshold (scikit-learn's rule)


def booster_to_onnx(estimator: Any, metadata: dict[str, Any]) -> bytes:
    """The fitted binary ``HistGradientBoostingClassifier`` ``estimator`` as a serialised ONNX
    model: input ``features`` (float64, N x F), output ``logit`` (float64, N x 1), its decision
    function; ``metadata`` stored as JSON under ``srcrn``.

    Raises:
        ConfigError: a booster this cannot write (categorical features, more than two classes).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if getattr(estimator, "is_categorical_", None) is not None and np.any(estimator.is_categorical_):
        raise ConfigError("a feature model with categorical features cannot be written as ONNX trees")
    if estimator.n_trees_per_iteration_ != 1:
        raise ConfigError("only a two-class feature model can be written as ONNX trees")
    roots: list[int] = []
    features: list[int] = []
    splits: list[float] = []
    missing_left: list[int] = []
    true_ids: list[int] = []
    true_leaf: list[int] = []
    false_ids: list[int] = []
    false_leaf: list[int] = []
    leaf_values: list[float] = []
    for (tree,) in estimator._predictors:  # one TreePredictor per iteration (two classes)
        nodes = tree.nodes
        if nodes["is_leaf"][0]:  # a lone leaf: one split whose two branches both reach it
            roots.append(len(features))
            features.append(0)
            splits.append(0.0)
            missing_left.append(0)
            true_ids.append(len(leaf_values))
            false_ids.append(len(leaf_values))
            true_leaf.append(1)
            false_leaf.append(1)
            leaf_values.append(float(nodes["value"][0]))
            continue
        # Number the tree's splits and leaves in ONNX's two index spaces.
        split_index: dict[int, int] = {}
        leaf_index: dict[int, int] = {}
        for i in range(len(nodes)):
            if nodes["is_leaf"][i]:
                leaf_index[i] = len(leaf_values) + len(leaf_index)
            else:
                split_index[i] = len(features) + len(split_index)
        roots.append(split_index[0])
        for i in split_index:
            node = nodes[i]
            features.append(int(node["feature_idx"]))
            splits.append(float(node["num_threshold"]))
            missing_left.append(int(node["missing_go_to_left"]))  # NaN follows the true (left) branch
            for child, ids, leaf in (
                (int(node["left"]), true_ids, true_leaf),
                (int(node["right"]), false_ids, false_leaf),
            ):
                is_leaf = child in leaf_index
                ids.append(leaf_index[child] if is_leaf else split_index[child])
                leaf.append(int(is_leaf))
        leaf_values.extend(float(nodes["value"][i]) for i in leaf_index)
    trees = helper.make_node(
        "TreeEnsemble",
        [INPUT],
        ["trees"],
        domain="ai.onnx.ml",
        aggregate_function=1,  # SUM
        post_transform=0,  # NONE
        n_targets=1,
        tree_roots=roots,
        nodes_featureids=features,
        nodes_splits=numpy_helper.from_array(np.asarray(splits, np.float64)),
        nodes_modes=numpy_helper.from_array(np.full(len(features), _LEQ, np.uint8)),
        nodes_missing_value_tracks_true=missing_left,
        nodes_truenodeids=true_ids,
        nodes_trueleafs=true_leaf,
        nodes_falsenodeids=false_ids,
        nodes_falseleafs=false_leaf,
        leaf_targetids=[0] * len(leaf_values),
        leaf_weights=numpy_helper.from_array(np.asarray(leaf_values, np.float64)),
    )
    baseline = numpy_helper.from_array(np.asarray(estimator._baseline_prediction, np.float64).reshape(1, 1), "baseline")
    add = helper.make_node("Add", ["trees", "baseline"], [OUTPUT])
    n_features = int(estimator.n_features_in_)
    graph = helper.make_graph(
        [trees, add],
        "srcrn-feature-model",
        [helper.make_tensor_value_info(INPUT, TensorProto.DOUBLE, [None, n_features])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.DOUBLE, [None, 1])],
        [baseline],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 5)], producer_name="srcrn"
    )
    model.ir_version = 10  # what ONNX Runtime 1.18 (srcrn's oldest) reads
    helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


class OnnxBooster:
    """The trees of :func:`booster_to_onnx` in ONNX Runtime, with ``decision_function`` as
    scikit-learn's booster has it (what ``FeatureModel`` calls)."""

    def __init__(self, path: str | Path):
        """The ONNX trees at ``path`` and the JSON ``metadata`` written with them.

        Raises:
            ConfigError: the file is not loadable, or not a srcrn feature model.
        """
        from srcrn.runtime.engines import OnnxRuntime

        self.path = Path(path)
        self.runtime = OnnxRuntime(self.path)
        stored = self.runtime.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        try:
            self.metadata: dict[str, Any] = json.loads(stored or "")
        except ValueError:
            raise ConfigError(f"{self.path}: ONNX trees without srcrn's feature-model metadata") from None
        self.n_features = int(self.runtime.session.get_inputs()[0].shape[1])

    def decision_function(self, table: np.ndarray) -> np.ndarray:
        """The logits of the rows of ``table`` (N x F)."""
        table = np.ascontiguousarray(table, dtype=np.float64)
        if table.ndim != 2 or table.shape[1] != self.n_features:
            raise ConfigError(f"{self.path}: expects {self.n_features} features a row, got shape {table.shape}")
        return np.asarray(self.runtime(table), np.float64).reshape(len(table))
