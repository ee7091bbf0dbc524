"""The model card a pipeline (and ``srcrn serve``'s ``/api/v1/model``) shows: versions,
preprocessing, the operating threshold and the sensitivity it was chosen for, calibration,
and what each model was trained and validated on. torch-free."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def training_records(segmenter: str | Path, classifier: str | Path) -> dict[str, dict[str, Any] | None]:
    """What each model's training run recorded (``summary.json`` beside its ``checkpoints/``
    folder), for the model card."""
    return {"segmenter": training_record(segmenter), "classifier": training_record(classifier)}


# The parts of a run's summary.json a model card shows: data counts and validation scores.
CARD_KEYS = ("n_train", "n_train_melanoma", "n_train_benign", "n_augmented", "n_val", "epochs", "global_step")


def training_record(model: str | Path) -> dict[str, Any] | None:
    """The training figures of a model's run (its summary.json beside or above the file), or None."""
    model = Path(model)
    for summary in (model.parent.parent / "summary.json", model.parent / "summary.json"):
        if summary.is_file():
            try:
                values = json.loads(summary.read_text())
            except (OSError, ValueError):
                return None
            return {k: v for k, v in values.items() if k in CARD_KEYS or k.startswith(("best_val", "val_"))}
    return None


def model_card(
    pipeline: Any, engine: str, training: dict[str, Any], working_side: int, *, exported_with: str | None = None
) -> dict[str, Any]:
    """What a service says of its models: versions, preprocessing, threshold and the
    sensitivity it was chosen for, calibration, and what each model was trained on."""
    from srcrn import __version__

    classifier = pipeline.classifier
    calibration = getattr(classifier.spec, "calibration", None)
    return {
        "srcrn_version": __version__,
        "exported_with": exported_with,
        "engine": engine,
        "segmenter": {
            "source": Path(pipeline.segmenter.source).name,
            "image_size": pipeline.segment_size,
            "tta": pipeline.segmenter.spec.tta,
            "keep_largest": pipeline.segmenter.spec.keep_largest,
            "training": training.get("segmenter"),
        },
        "classifier": {
            "source": Path(getattr(classifier, "source", "") or "").name,
            "kind": classifier.kind,  # cnn | features | stack (inference.melanoma)
            "members": [m.kind for m in getattr(classifier, "members", [])],
            "clinical_fields": list(classifier.clinical_fields),  # age, sex, site: what the model takes
            "image_size": pipeline.classify_size,
            "input": pipeline.input_mode,
            "margin": pipeline.margin,
            "threshold": pipeline.threshold,
            "target_sensitivity": getattr(classifier.spec, "target_sensitivity", None),
            "calibration": calibration.to_dict() if calibration is not None and calibration.method != "none" else None,
            "training": training.get("classifier"),
        },
        "working_side": working_side,
    }
