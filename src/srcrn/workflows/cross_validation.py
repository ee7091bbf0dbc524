"""``srcrn classify cv``: k-fold cross-validation of a stage-2 recipe on the training split,
then the final model on the whole training split, scored on the validation split.

- Folds: scikit-learn's ``StratifiedGroupKFold`` over the training images, with melanoma as
  the class and the near-duplicate group (``sources.csv``) as the group, so that two photos
  of one lesion never sit on both sides of a fold.
- Every out-of-fold score comes from a model that never saw the image; with the CNN it is the
  model ``select`` keeps (the strong recipe keeps the last weights: no epoch is picked on the
  images being scored).
- Calibration is fitted on the pooled out-of-fold logits (images the final model was trained
  on, but scored by models that were not) and stored in the final model; the validation
  images measure it, never fit it.
- With ``target_sensitivity`` the operating threshold is chosen the same way: on the pooled
  out-of-fold calibrated probabilities, stored in the final model, and only measured on the
  validation split (its sensitivity and specificity there, with Wilson 95 % intervals).
- Caveat: the stage-1 masks come from one segmenter for every fold (``--segmenter``); if it
  was trained on the training split, it saw the fold's images (their masks, not their
  melanoma labels).

Everything is resumable: a finished fold (its ``oof.csv``) is never run again.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError
from sklearn.model_selection import StratifiedGroupKFold

from srcrn.atomic import atomic_path, read_json, remove_leftovers, write_json
from srcrn.commands import CrossValidationSettings
from srcrn.data.isic import IsicDataset
from srcrn.data.segmented import LesionData
from srcrn.data.splits import Split, make_split
from srcrn.errors import ConfigError
from srcrn.evaluation.calibration import METHODS, calibration_metrics, fit_calibration
from srcrn.evaluation.classification import classification_metrics, threshold_for_sensitivity
from srcrn.runtime.segmenter import load_segmenter
from srcrn.settings import ClassifyTrainSettings
from srcrn.shapes import square_side
from srcrn.stage2.feature_model import FeatureModel
from srcrn.stage2.registry import load_melanoma_model
from srcrn.stage2.spec import Calibration
from srcrn.stats import auc, proportion_interval
from srcrn.training.summary import read_summary

log = logging.getLogger(__name__)
SELECT_BEST_CAVEAT = (
    "select 'best' picks each fold's epoch by its AUC on the held-out images it then scores: the "
    "out-of-fold AUC is optimistic (pass --select last)"
)


def fold_splits(dataset: IsicDataset, train_ids: list[str], folds: int, seed: int = 0) -> list[Split]:
    """``folds`` splits of ``train_ids``: stratified by melanoma, near-duplicates kept together."""
    position = {image_id: i for i, image_id in enumerate(dataset.ids)}
    rows = np.array([position[i] for i in train_ids])
    labels = dataset.melanoma()[rows]
    if np.isnan(labels).any():
        raise ConfigError("cross-validation needs a melanoma label for every training image")
    groups = np.array(dataset.duplicate_groups())[rows]
    smallest = int(min((labels == 1).sum(), (labels == 0).sum()))
    if folds < 2 or folds > smallest:
        raise ConfigError(f"--folds {folds}: needs 2 to {smallest} (images of the rarer class)")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    ids = np.array(train_ids)
    return [
        Split(f"cv-{k + 1}-of-{folds}", ids[fit].tolist(), ids[held].tolist(), seed)
        for k, (fit, held) in enumerate(splitter.split(rows, labels.astype(int), groups))
    ]


def _train_and_score(
    settings: ClassifyTrainSettings, data: Path, run: Path, split: Split, progress: bool
) -> tuple[np.ndarray, str]:
    """Train on ``split.train`` in ``run`` (resuming a cut run) and return the logits of
    ``split.val`` and the kept model's path."""
    if settings.model == "features":
        from srcrn.training.features import MODEL_FILE, feature_lesions, train_feature_model, training_table

        if not (run / MODEL_FILE).is_file():
            train_feature_model(settings, data, run, resume=True, progress=progress, split=split)
        lesions = feature_lesions(settings, data, progress=False)
        table, names = training_table(settings, data, lesions, show_progress=False)
        model = FeatureModel.load(run / MODEL_FILE)
        return model.logits_of_table(table[lesions.prepared.positions(split.val)], names), str(run / MODEL_FILE)
    from srcrn.data.segmented import lesion_data
    from srcrn.training.classification import train_classification
    from srcrn.training.runner import RUN_FILE

    if not (run / "summary.json").is_file():
        resume = (run / RUN_FILE).is_file()  # a fold cut short continues (or starts over)
        train_classification(settings, data, run, resume=resume, progress=progress, split=split)
    checkpoint = read_summary(run).model
    cnn_lesions: LesionData = lesion_data(
        data,
        image_size=square_side(settings.image_size),
        input_mode=settings.input,
        margin=settings.margin,
        segmenter=load_segmenter(settings.segmenter if settings.input != "full" else None),
        cache=settings.cache,
        progress=False,
    )
    classifier = load_melanoma_model(checkpoint)
    return classifier.logits(np.asarray(cnn_lesions.inputs[cnn_lesions.prepared.positions(split.val)])), checkpoint


def _scored(ids: list[str], labels: np.ndarray, logits: np.ndarray, **columns: Any) -> pd.DataFrame:
    return pd.DataFrame({"image_id": ids, "truth": labels.astype(int), "logit": logits, **columns})


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as temporary:
        table.to_csv(temporary, index=False)


def cross_validate(
    settings: ClassifyTrainSettings,
    data: str | Path,
    out: str | Path,
    *,
    folds: int = 5,
    final: bool = True,
    calibration: str = "platt",
    target_sensitivity: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Per-fold and pooled out-of-fold AUC (95 % bootstrap interval), calibration fitted on the
    out-of-fold logits (and with ``target_sensitivity`` the threshold reaching it on the
    out-of-fold calibrated probabilities), and with ``final`` the model trained on the whole
    training split, calibrated, and scored on the validation split. Writes ``oof.csv``,
    ``val.csv``, ``cv.json``."""
    if settings.model == "ensemble":
        raise ConfigError("classify cv runs one model (cnn or features); stack their cv folders with --model ensemble")
    if settings.model == "cnn" and settings.select == "best":
        log.warning("note: %s", SELECT_BEST_CAVEAT)
    if calibration not in METHODS:
        raise ConfigError(f"--calibration {calibration!r}: choose one of {', '.join(METHODS)}")
    if target_sensitivity is not None and not 0 < target_sensitivity <= 1:
        raise ConfigError(f"--target-sensitivity {target_sensitivity}: must lie in (0, 1]")
    data, out = Path(data), Path(out)
    earlier = out / "config.yaml"
    if earlier.is_file():
        try:
            same = ClassifyTrainSettings.model_validate(yaml.safe_load(earlier.read_text())) == settings
        except (ValidationError, yaml.YAMLError, UnicodeDecodeError):  # e.g. a segment train run's
            raise ConfigError(f"{out}: holds another kind of run ({earlier}); choose another --out") from None
        if not same:
            raise ConfigError(f"{out}: holds a cross-validation with other settings ({earlier}); choose another --out")
    chosen_before = _stored_target(out)
    if chosen_before is not None and target_sensitivity is None and final:
        # The final model would keep that threshold while cv.json says none was chosen.
        raise ConfigError(
            f"{out}: its final model holds a threshold chosen for {chosen_before:g} sensitivity; pass "
            f"--target-sensitivity {chosen_before:g} (or another), or choose another --out"
        )
    dataset = IsicDataset.from_dir(data)
    split = make_split(dataset, settings.split, seed=settings.seed, val_fraction=settings.val_fraction)
    splits = fold_splits(dataset, split.train, folds, settings.seed)  # refused here: nothing written yet
    identity = data_identity(dataset, folds)
    recorded = out / DATA_FILE
    if recorded.is_file() and read_json(recorded) != identity:
        raise ConfigError(
            f"{out}: holds a cross-validation of other data or folds ({recorded}: the images, labels or --folds "
            "differ); choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    settings.save(earlier)
    write_json(recorded, identity)
    split.save(out)
    labels_of = dict(zip(dataset.ids, dataset.melanoma()))
    parts = []
    for k, fold in enumerate(splits):
        remove_leftovers(out / f"fold-{k + 1}")  # temporary files of a killed write
        run = out / f"fold-{k + 1}"
        scored = run / "oof.csv"
        if not scored.is_file():
            log.info("fold %d of %d: %d training images, %d held out", k + 1, folds, len(fold.train), len(fold.val))
            logits, _ = _train_and_score(settings, data, run, fold, progress)
            labels = np.array([labels_of[i] for i in fold.val])
            _write_csv(_scored(fold.val, labels, logits, fold=k + 1), scored)
        parts.append(pd.read_csv(scored, dtype={"image_id": str}))
    oof = pd.concat(parts, ignore_index=True)
    fitted = fit_calibration(oof["truth"].to_numpy(), oof["logit"].to_numpy(), calibration)
    oof["melanoma"] = Calibration()(oof["logit"].to_numpy())
    oof["melanoma_calibrated"] = fitted(oof["logit"].to_numpy())
    _write_csv(oof, out / "oof.csv")
    result: dict[str, Any] = {
        "model": settings.model,
        "recipe": settings.recipe,
        "folds": folds,
        "per_fold_auc": [
            auc(part["truth"].to_numpy(), part["logit"].to_numpy()) for _, part in oof.groupby("fold", sort=True)
        ],
        "oof": classification_metrics(oof["truth"].to_numpy(), oof["melanoma"].to_numpy())
        | {f"{k}_raw": v for k, v in calibration_metrics(oof["truth"].to_numpy(), oof["melanoma"].to_numpy()).items()},
        "calibration": {
            "method": fitted.method,
            "scale": fitted.scale,
            "bias": fitted.bias,
            "fitted_on": "out-of-fold",
        },
        "caveats": [
            "stage-1 masks come from one segmenter for all folds: if it was trained on the training split, "
            "it saw every fold's images (masks only, not melanoma labels)"
        ]
        + ([SELECT_BEST_CAVEAT] if settings.model == "cnn" and settings.select == "best" else []),
    }
    threshold = None
    if target_sensitivity is not None:
        truth, calibrated = oof["truth"].to_numpy(), oof["melanoma_calibrated"].to_numpy()
        result["threshold"] = chosen_threshold(
            truth, calibrated, target_sensitivity, "out-of-fold calibrated probabilities"
        )
        threshold = result["threshold"]["value"]
    if final:
        result["val"] = _final_model(
            settings, data, out, split, fitted, labels_of, progress, threshold, target_sensitivity
        )
        if threshold is not None:
            result["threshold"]["val"] = result["val"].pop("operating_point")
    write_json(out / "cv.json", result)
    return result


DATA_FILE = "data.json"


def _stored_target(out: Path) -> float | None:
    """The sensitivity an earlier run of this cv folder chose its threshold for, if any."""
    try:
        return read_json(out / "cv.json").get("threshold", {}).get("target_sensitivity")
    except (OSError, ValueError, AttributeError):
        return None


def data_identity(dataset: IsicDataset, folds: int) -> dict[str, Any]:
    """What a cv folder was computed on, by content: the images' ids with their labels (and
    near-duplicate groups), and the number of folds. A folder of other data is refused."""
    digest = hashlib.sha256()
    for image_id, label, group in zip(dataset.ids, dataset.melanoma(), dataset.duplicate_groups()):
        digest.update(f"{image_id},{label},{group}\n".encode())
    return {"images": len(dataset.ids), "ids_labels_sha256": digest.hexdigest(), "folds": folds}


def _final_model(
    settings: ClassifyTrainSettings,
    data: Path,
    out: Path,
    split: Split,
    fitted: Calibration,
    labels_of: dict[str, float],
    progress: bool,
    threshold: float | None = None,
    target_sensitivity: float | None = None,
) -> dict[str, Any]:
    run = out / "final"
    remove_leftovers(run)  # a kill during the final model's write left a temporary file
    logits, model_path = _train_and_score(settings, data, run, split, progress)
    entry = {"method": fitted.method, "scale": fitted.scale, "bias": fitted.bias, "fitted_on": "out-of-fold"}
    extras: dict[str, Any] = {"calibration": entry}
    if threshold is not None:
        extras |= {"threshold": threshold, "target_sensitivity": target_sensitivity}
    load_melanoma_model(model_path).store_extras(**extras)
    labels = np.array([labels_of[i] for i in split.val])
    raw, calibrated = Calibration()(logits), fitted(logits)
    _write_csv(_scored(split.val, labels, logits, melanoma=raw, melanoma_calibrated=calibrated), out / "val.csv")
    metrics = classification_metrics(labels, raw)
    metrics |= {f"{k}_raw": v for k, v in calibration_metrics(labels, raw).items()}
    metrics |= {f"{k}_calibrated": v for k, v in calibration_metrics(labels, calibrated).items()}
    if threshold is not None:
        metrics["operating_point"] = operating_point(labels, calibrated, threshold)
    metrics["model"] = model_path
    return metrics


def chosen_threshold(
    truth: np.ndarray, probabilities: np.ndarray, target_sensitivity: float, chosen_on: str
) -> dict[str, Any]:
    """The threshold reaching ``target_sensitivity`` on out-of-fold ``probabilities``, as cv.json
    records it: its value, the target, what it was chosen on and its out-of-fold operating point."""
    threshold = threshold_for_sensitivity(truth, probabilities, target_sensitivity)
    return {
        "value": threshold,
        "target_sensitivity": target_sensitivity,
        "chosen_on": chosen_on,
        "oof": operating_point(truth, probabilities, threshold),
    }


def operating_point(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, Any]:
    """Sensitivity and specificity of ``probability > threshold``, with Wilson 95 % intervals."""
    labels = np.asarray(labels, dtype=int)
    decided = np.asarray(probabilities) > threshold
    tp, fn = int((decided & (labels == 1)).sum()), int((~decided & (labels == 1)).sum())
    tn, fp = int((~decided & (labels == 0)).sum()), int((decided & (labels == 0)).sum())
    point: dict[str, Any] = {"threshold": threshold, "tp": tp, "fn": fn, "tn": tn, "fp": fp}
    for name, hits, total in (("sensitivity", tp, tp + fn), ("specificity", tn, tn + fp)):
        interval = proportion_interval(hits, total)
        point |= {
            name: hits / total if total else None,
            f"{name}_ci95_low": interval[0],
            f"{name}_ci95_high": interval[1],
        }
    return point


def cross_validate_command(
    command: CrossValidationSettings, settings: ClassifyTrainSettings, inputs: dict[str, Any]
) -> dict[str, Any]:
    """``srcrn classify cv`` end to end: the output folder claimed (a rerun continues the folds,
    whose identity is checked by content: always "resumed"), then ``cross_validate``."""
    from srcrn.outputs import claim_output

    # An older srcrn's folder is adopted (data.json, cv.json, config.yaml); its content is checked next.
    with claim_output(command.out, CrossValidationSettings.output_rule, inputs):
        return cross_validate(
            settings,
            command.data,
            command.out,
            folds=command.folds,
            final=command.final,
            calibration=command.calibration,
            target_sensitivity=command.target_sensitivity,
            progress=command.progress,
        )
