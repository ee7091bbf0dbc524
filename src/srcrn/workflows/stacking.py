"""``classify train --model ensemble --members CV_A --members CV_B``: a stacked combination of
stage-2 models (e.g. the CNN and the lesion-feature model), fitted on out-of-fold scores.

The stacker is a logistic regression on the members' logits (scikit-learn). It is fitted on
the members' out-of-fold logits of the training images, i.e. scores of models that never saw
those images, and applied to the members' validation logits; its own out-of-fold score is
cross-fitted (fold k is scored by a stacker fitted on the other folds' rows), so no image is
ever scored by a stacker that was fitted on that image's score.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.linear_model import LogisticRegression

from srcrn.atomic import atomic_path, read_json, write_json
from srcrn.errors import ConfigError
from srcrn.evaluation.calibration import calibration_metrics
from srcrn.evaluation.classification import classification_metrics
from srcrn.outputs import refuse_overlap
from srcrn.settings import ClassifyTrainSettings
from srcrn.stage2.registry import load_stack, write_stack

log = logging.getLogger(__name__)
MODEL_DIR = "model"  # the stack as a model: stack.json + its members' final models


def _member_table(folders: list[Path], name: str) -> pd.DataFrame:
    """The members' logits side by side (columns m0, m1, ...), with truth (and fold)."""
    merged: pd.DataFrame | None = None
    for index, folder in enumerate(folders):
        path = folder / name
        if not path.is_file():
            raise ConfigError(f"{path}: not found; members must be finished 'srcrn classify cv' folders")
        try:
            table = pd.read_csv(path, dtype={"image_id": str})
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
            raise ConfigError(f"{path}: not a readable table of 'srcrn classify cv'") from None
        missing = [c for c in ("image_id", "truth", "logit") if c not in table]
        if missing:
            raise ConfigError(f"{path}: lacks the column(s) {', '.join(missing)} of 'srcrn classify cv' scores")
        keep = ["image_id", "truth"] + (["fold"] if "fold" in table else [])
        table = table[[*keep, "logit"]].rename(columns={"logit": f"m{index}"})
        if merged is None:
            merged = table
            continue
        joined = merged.merge(table, on=keep, how="inner")
        if len(joined) != len(merged) or len(joined) != len(table):
            raise ConfigError(
                f"{path}: its images or folds differ from {folders[0] / name}: run every member with the same "
                "data, split, --folds and --seed"
            )
        merged = joined
    assert merged is not None
    return merged


def _stacker() -> LogisticRegression:
    return LogisticRegression(C=1.0)


def stack_members(folders: list[Path], out: Path, target_sensitivity: float | None = None) -> dict[str, Any]:
    """Fit the stacker on the members' out-of-fold logits (cross-fitted per fold, so that no image is scored by a stacker fitted on it), and write oof.csv, val.csv, cv.json and ensemble.json into ``out``.

    Args:
        folders: the members' finished ``classify cv`` folders.
        out: where the tables go.
        target_sensitivity: choose the threshold reaching it on the cross-fitted out-of-fold
            probabilities (as ``classify cv --target-sensitivity`` does for one model).

    Returns:
        The stack's weights, intercept and scores (and the threshold, when one was chosen).
    """
    oof, val = _member_table(folders, "oof.csv"), _member_table(folders, "val.csv")
    columns = [c for c in oof.columns if c.startswith("m") and c[1:].isdigit()]
    cross_fitted = np.zeros(len(oof))
    for fold in sorted(oof["fold"].unique()):
        held = (oof["fold"] == fold).to_numpy()
        model = _stacker().fit(oof.loc[~held, columns], oof.loc[~held, "truth"])
        cross_fitted[held] = model.predict_proba(oof.loc[held, columns])[:, 1]
    final = _stacker().fit(oof[columns], oof["truth"])
    val_probability = final.predict_proba(val[columns])[:, 1]
    oof_out = oof.assign(melanoma=cross_fitted, logit=np.log(cross_fitted) - np.log1p(-cross_fitted))
    val_out = val.assign(melanoma=val_probability, logit=final.decision_function(val[columns]))
    for table, name in ((oof_out, "oof.csv"), (val_out, "val.csv")):
        with atomic_path(out / name) as temporary:
            table.to_csv(temporary, index=False)
    truth_oof, truth_val = oof["truth"].to_numpy(), val["truth"].to_numpy()
    result = {
        "model": "ensemble",
        "members": [str(f) for f in folders],
        "weights": final.coef_[0].tolist(),
        "intercept": float(final.intercept_[0]),
        "oof": classification_metrics(truth_oof, cross_fitted)
        | {f"{k}_raw": v for k, v in calibration_metrics(truth_oof, cross_fitted).items()},
        "val": classification_metrics(truth_val, val_probability)
        | {f"{k}_raw": v for k, v in calibration_metrics(truth_val, val_probability).items()},
    }
    if target_sensitivity is not None:
        from srcrn.workflows.cross_validation import chosen_threshold, operating_point

        chosen = chosen_threshold(
            truth_oof, cross_fitted, target_sensitivity, "out-of-fold probabilities of the cross-fitted stacker"
        )
        result["threshold"] = chosen | {"val": operating_point(truth_val, val_probability, chosen["value"])}
    write_json(out / "cv.json", result)
    write_json(out / "ensemble.json", {k: result[k] for k in ("members", "weights", "intercept")})
    return result


def member_model(folder: Path) -> Path:
    """The final model of a finished ``classify cv`` folder (trained on the whole training split)."""
    path = folder / "cv.json"
    try:
        model = read_json(path)["val"]["model"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise ConfigError(
            f"{path}: names no final model; members must be finished 'srcrn classify cv' folders (with their final model)"
        ) from None
    candidate = Path(model)
    if not candidate.exists():  # a cv folder moved since: its final model lies inside it
        relocated = (folder / "final" / "model.skops", folder / "final" / "checkpoints" / "last.ckpt")
        candidate = next((p for p in relocated if p.exists()), candidate)
    if not candidate.exists():
        raise ConfigError(f"{path}: its final model {model} is missing")
    return candidate


def _check_members_data(folders: list[Path], data: Path | None) -> None:
    """Every member was cross-validated on ``data`` (their ``data.json``: ids, labels, folds)."""
    if data is None:
        return
    from srcrn.data.isic import IsicDataset
    from srcrn.workflows.cross_validation import DATA_FILE, data_identity

    recorded_files = [folder / DATA_FILE for folder in folders if (folder / DATA_FILE).is_file()]
    # (a cv folder of an older srcrn has none: its tables are checked against each other only)
    dataset = IsicDataset.from_dir(data) if recorded_files else None
    for recorded in recorded_files:
        assert dataset is not None
        identity = read_json(recorded)
        if data_identity(dataset, int(identity.get("folds", 0))) != identity:
            raise ConfigError(f"{recorded}: the member was cross-validated on other data than --data {data}")


def train_stack(settings: ClassifyTrainSettings, out: str | Path, data: str | Path | None = None) -> dict[str, Any]:
    """Fit the stacker and write ``out/model``: one self-contained stack (its members' final
    models copied in beside ``stack.json``) that eval, predict, serve and export take like any
    other stage-2 model."""
    out = Path(out)
    folders = [Path(m) for m in settings.members]
    # The stack's files would replace a member's own (oof.csv, cv.json, ...): the output-folder rule.
    refuse_overlap(out, {f"member {folder}": folder for folder in folders})
    files = [member_model(folder) for folder in folders]  # refused before anything is written
    _check_members_data(folders, Path(data) if data is not None else None)
    earlier = out / "config.yaml"
    if earlier.is_file() and (yaml.safe_load(earlier.read_text()) or {}).get("model") != "ensemble":
        raise ConfigError(f"{out}: holds another run ({earlier}); write the stack to another folder")
    out.mkdir(parents=True, exist_ok=True)
    settings.save(out / "config.yaml")
    result = stack_members(folders, out, settings.stack_sensitivity)
    model = write_stack(out / MODEL_DIR, files, result["weights"], result["intercept"], [f.name for f in folders])
    stack = load_stack(model)  # members' inputs must agree: refused here, not at predict time
    if "threshold" in result:
        stack.store_extras(threshold=result["threshold"]["value"], target_sensitivity=settings.stack_sensitivity)
    result["model"] = str(model)
    write_json(
        out / "summary.json",
        {
            "model": "ensemble",
            "model_checkpoint": str(model),
            "best_checkpoint": str(model),
            "members": [str(f) for f in folders],
            "n_train": result["oof"]["n_images"],
            "n_train_melanoma": result["oof"]["n_melanoma"],
            "n_val": result["val"]["n_images"],
            "val_auc": result["val"]["auc"],
            "oof_auc": result["oof"]["auc"],
        },
    )
    log.info(
        "ensemble of %d: weights %s; out-of-fold AUC %.4f, validation AUC %.4f",
        len(settings.members),
        ", ".join(f"{w:.3f}" for w in result["weights"]),
        result["oof"]["auc"],
        result["val"]["auc"],
    )
    return result
