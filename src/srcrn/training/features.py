"""Training the lesion-feature model: features of every lesion (computed once and cached
beside the prepared images), then scikit-learn's ``HistGradientBoostingClassifier``.

The booster's settings are fixed, conservative ones for ~2000 images and ~80 features
(shallow trees, strong L2, classes weighted equally, no early stopping so that no images
are held out of training): not tuned on the validation images.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from srcrn.atomic import atomic_path, write_json
from srcrn.console import progress as progress_bar
from srcrn.data.metadata import clinical_feature_names, clinical_features, contexts_for, load_folder_metadata
from srcrn.data.segmented import LesionData, lesion_data
from srcrn.data.splits import Split, make_split
from srcrn.errors import ConfigError
from srcrn.evaluation.classification import write_classification_outputs
from srcrn.morphology.features import FEATURES_VERSION, feature_table
from srcrn.runtime.segmenter import load_segmenter
from srcrn.settings import ClassifyTrainSettings
from srcrn.shapes import square_side
from srcrn.stage2.feature_model import FeatureModel
from srcrn.training.runner import RUN_FILE

log = logging.getLogger(__name__)
MODEL_FILE = "model.skops"
CHUNK = 64


def build_estimator(seed: int = 0, images: int = 2000) -> HistGradientBoostingClassifier:
    """The booster for ``images`` training images: leaves of 20 images, fewer on tiny data
    (where 20 would forbid any split)."""
    return HistGradientBoostingClassifier(
        learning_rate=0.05,
        max_iter=300,
        max_leaf_nodes=8,
        min_samples_leaf=max(2, min(20, images // 20)),
        l2_regularization=1.0,
        class_weight="balanced",
        early_stopping=False,
        random_state=seed,
    )


def lesion_feature_matrix(lesions: LesionData, *, show_progress: bool = True) -> tuple[np.ndarray, list[str]]:
    """Features of every image of ``lesions`` (cache order), stored beside the prepared cache
    and reused while the inputs and masks are the same."""
    assert lesions.masks is not None or lesions.input_mode == "full"
    digest = hashlib.sha1()
    for part in (
        np.asarray(lesions.masks if lesions.masks is not None else 0),
        np.asarray(lesions.inputs[:, ::8, ::8]),
    ):
        digest.update(np.ascontiguousarray(part).tobytes())
    digest.update(f"{FEATURES_VERSION}|{lesions.input_mode}|{lesions.margin}|{'|'.join(lesions.prepared.ids)}".encode())
    path = lesions.prepared.folder / f"features-{digest.hexdigest()[:16]}.npz"
    if path.is_file():
        stored = np.load(path)
        return stored["features"], [str(n) for n in stored["names"]]
    count = len(lesions.inputs)
    chunks = [np.arange(i, min(i + CHUNK, count)) for i in range(0, count, CHUNK)]
    parts: list[np.ndarray] = []
    names: list[str] = []
    for rows in progress_bar(chunks, len(chunks), "lesion features", show_progress):
        features, names = feature_table(np.asarray(lesions.inputs[rows]), lesions.input_masks(rows))
        parts.append(features)
    matrix = np.concatenate(parts) if parts else np.zeros((0, len(names)))
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, features=matrix, names=np.array(names))
    return matrix, names


def training_table(
    config: ClassifyTrainSettings, data: str | Path, lesions: LesionData, *, show_progress: bool = True
) -> tuple[np.ndarray, list[str]]:
    """What the feature model of ``config`` reads for every image of ``lesions`` (cache order):
    the lesion features (cached) and/or the clinical columns from the folder's metadata."""
    parts: list[np.ndarray] = []
    names: list[str] = []
    if config.lesion_features:
        features, names = lesion_feature_matrix(lesions, show_progress=show_progress)
        parts.append(features)
    if config.clinical:
        ids = lesions.prepared.ids
        metadata = load_folder_metadata(data, config.metadata, ids, required=True)
        parts.append(clinical_features(contexts_for(ids, metadata), config.clinical))
        names = names + clinical_feature_names(config.clinical)
    return np.concatenate(parts, axis=1), names


def fit_feature_model(
    features: np.ndarray, labels: np.ndarray, names: list[str], settings: ClassifyTrainSettings
) -> FeatureModel:
    """Gradient boosting fitted on a feature table: the ``features`` model of ``classify train``.

    Args:
        features: float [N, F] lesion features (and clinical context).
        labels: 0/1 per row.
        names: the F column names (stored, so that a model reads its own columns).
        settings: the run's settings (stored with the model).

    Returns:
        The fitted model.
    """
    estimator = build_estimator(settings.seed, len(labels)).fit(features, np.asarray(labels, dtype=int))
    return FeatureModel(estimator, names, settings.to_dict())


def feature_lesions(config: ClassifyTrainSettings, data: str | Path, *, progress: bool = True) -> LesionData:
    """The classifier inputs and lesion masks of ``data`` that a feature model is computed on (SRCRN masks predicted once, cached)."""
    return lesion_data(
        data,
        image_size=square_side(config.image_size),
        input_mode=config.input,
        margin=config.margin,
        segmenter=load_segmenter(config.segmenter),
        need_masks=True,
        cache=config.cache,
        progress=progress,
    )


def train_feature_model(
    config: ClassifyTrainSettings,
    data: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    split: Split | None = None,
) -> dict:
    """Fit on the split's training images, score its validation images (``eval/``), save
    ``model.skops``; the summary names it as ``model_checkpoint``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not resume and (out / RUN_FILE).is_file():  # resume: fitting again is cheap and gives the same model
        raise ConfigError(f"{out}: already holds a run; pass --resume to fit it again, or choose another --out")
    lesions = feature_lesions(config, data, progress=progress)
    if split is None:
        split = make_split(lesions.dataset, config.split, seed=config.seed, val_fraction=config.val_fraction)
    features, names = training_table(config, data, lesions, show_progress=progress)
    labels = lesions.prepared.melanoma
    train_rows, val_rows = lesions.prepared.positions(split.train), lesions.prepared.positions(split.val)
    counts = np.bincount(labels[train_rows].astype(int), minlength=2)
    if counts.min() == 0:  # a booster of one class scores every image alike: no model at all
        raise ConfigError(
            f"{data}: the training images hold {counts[1]} melanoma and {counts[0]} benign; "
            "a melanoma model needs both classes"
        )
    model = fit_feature_model(features[train_rows], labels[train_rows], names, config)
    split.save(out)
    config.save(out / "config.yaml")
    path = out / MODEL_FILE
    model.save(path)
    model.source = str(path)
    val_logits = model.logits_of_table(features[val_rows], names)
    evaluation = write_classification_outputs(
        out / "eval", split.val, model.spec.calibration(val_logits).astype(np.float64), labels[val_rows]
    )
    summary = {
        "model": "features",
        "model_checkpoint": str(path),
        "best_checkpoint": str(path),
        "n_features": len(names),
        "clinical": list(config.clinical),
        "lesion_features": config.lesion_features,
        "n_train": len(train_rows),
        "n_train_melanoma": int(labels[train_rows].sum()),
        "n_val": len(val_rows),
        "val_auc": evaluation.metrics.get("auc"),
    }
    write_json(out / "summary.json", summary)
    log.info(
        "features model: %d features, %d training images; validation AUC %s",
        len(names),
        len(train_rows),
        summary["val_auc"],
    )
    return summary
