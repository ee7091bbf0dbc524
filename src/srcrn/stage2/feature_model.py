"""The lesion-feature melanoma model (``classify train --model features``): scikit-learn's
``HistGradientBoostingClassifier`` over ``inference.features``, stored with skops.

skops, not pickle: loading a pickle runs whatever code it names, and a model file is data a
user may have been sent. ``load`` trusts skops's primitive and numpy types and, beyond them,
exactly the types srcrn's feature models hold (``TRUSTED_TYPES``): never what the file lists,
and never a whole library (numpy and scikit-learn hold functions that run code or touch files).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from srcrn.atomic import atomic_path
from srcrn.data.metadata import NO_CONTEXT, ClinicalContext, clinical_feature_names, clinical_features
from srcrn.errors import ConfigError
from srcrn.morphology.features import feature_table
from srcrn.stage2.spec import Calibration, ClassifierSpec

Contexts = Sequence[ClinicalContext | None] | None

FORMAT = "srcrn-feature-model"
# The settings a feature model reads when it predicts (``spec``, ``needs_masks``, ``clinical_fields``):
# all that its bundle file keeps of its training settings (not their folders and paths).
PREDICTION_SETTINGS = ("image_size", "input", "margin", "lesion_features", "clinical")
# What a feature model holds beyond skops's primitive and numpy types
# (``skops.io.get_untrusted_types`` of a feature model srcrn wrote, skops imported by ``_skops_io``).
TRUSTED_TYPES = frozenset(
    {
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.preprocessing._label.LabelEncoder",
    }
)


def _skops_io() -> Any:
    """``skops.io``, imported without its default trust in every scikit-learn estimator.

    skops builds that list at import with ``sklearn.utils.all_estimators()``, which imports all
    of scikit-learn and, through its array-API shim, torch: 2.4 s and most of 900 MB before a
    one-image prediction (issue 31). srcrn never uses the list (``load`` names its exact
    ``TRUSTED_TYPES``), so it is built empty. If a later skops builds it otherwise, this only
    loses the speed: the trust stays srcrn's list either way.
    """
    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    import sklearn.utils

    every_estimator = sklearn.utils.all_estimators
    sklearn.utils.all_estimators = lambda *args, **kwargs: []
    try:
        import skops.io
    finally:
        sklearn.utils.all_estimators = every_estimator
    return skops.io


@dataclass
class FeatureModel:
    """Kind ``features`` of ``inference.melanoma``: gradient boosting over lesion features of
    the input and its mask and/or the image's clinical context (age, sex, site)."""

    estimator: Any  # a fitted HistGradientBoostingClassifier
    names: list[str]
    settings: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)  # threshold, target_sensitivity, calibration
    source: str = ""
    kind = "features"

    @property
    def image_size(self) -> int:
        """The side of the square classifier input the features are computed on."""
        return int(self.settings["image_size"])

    @property
    def needs_masks(self) -> bool:
        """True: the features are computed inside the lesion mask."""
        return bool(self.settings.get("lesion_features", True))

    @property
    def clinical_fields(self) -> tuple[str, ...]:
        """The clinical fields (age, sex, site) among the model's inputs."""
        return tuple(self.settings.get("clinical") or ())

    @property
    def spec(self) -> ClassifierSpec:
        """The input, threshold and calibration settings the pipeline applies to this model."""
        s = self.settings
        return ClassifierSpec(
            image_size=s["image_size"],
            input=s["input"],
            margin=float(s["margin"]),
            threshold=float(self.extras.get("threshold", 0.5)),
            segmenter=s.get("segmenter"),
            target_sensitivity=self.extras.get("target_sensitivity"),
            calibration=Calibration.from_dict(self.extras.get("calibration")),
        )

    def columns(
        self, inputs: np.ndarray, masks: np.ndarray | None = None, contexts: Contexts = None
    ) -> tuple[np.ndarray, list[str]]:
        """The table this model reads (lesion features and/or clinical columns), in the
        order of this srcrn; ``logits_of_table`` picks the model's own columns from it."""
        return model_table(
            inputs,
            masks,
            contexts,
            lesion=self.needs_masks,
            clinical=self.clinical_fields,
            where=self.source or "feature model",
        )

    def logits_of_table(self, table: np.ndarray, names: list[str]) -> np.ndarray:
        """Uncalibrated logits of a feature table whose columns are ``names``: the model's own
        columns are picked by name (a model of an older feature version reads its own)."""
        if names != self.names:
            position = {name: i for i, name in enumerate(names)}
            missing = [name for name in self.names if name not in position]
            if missing:
                raise ConfigError(
                    f"{self.source or 'the model'}: needs {len(missing)} feature(s) this srcrn does not compute, "
                    f"first '{missing[0]}' (a model of another srcrn version?)"
                )
            table = table[:, [position[name] for name in self.names]]
        return np.asarray(self.estimator.decision_function(table), dtype=np.float64).reshape(len(table))

    def logits(self, inputs: np.ndarray, masks: np.ndarray | None = None, contexts: Contexts = None) -> np.ndarray:
        """Melanoma logits (uncalibrated) of classifier inputs, the lesion masks on them and
        the images' clinical context (None where unknown)."""
        return self.logits_of_table(*self.columns(inputs, masks, contexts))

    def save(self, path: str | Path) -> None:
        """The model as a skops file at ``path`` (no pickle), written atomically.

        Raises:
            ConfigError: the model was read from a bundle's ONNX trees (they hold no estimator).
        """
        if not hasattr(self.estimator, "fit"):
            raise ConfigError(f"{self.source}: a bundle's feature model cannot be saved as skops (train one instead)")
        skops_io = _skops_io()
        payload = {
            "format": FORMAT,
            "estimator": self.estimator,
            "names": list(self.names),
            "settings": dict(self.settings),
            "extras": dict(self.extras),
        }
        with atomic_path(Path(path)) as temporary:
            skops_io.dump(payload, temporary)

    @classmethod
    def load(cls, path: str | Path) -> FeatureModel:
        """The feature model in a skops file, loading only scikit-learn and numpy types.

        Args:
            path: a ``.skops`` file of ``classify train --model features``.

        Returns:
            The model.

        Raises:
            ConfigError: the file is missing, holds other types, or is not a feature model.
        """
        skops_io = _skops_io()
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: model file not found")
        try:
            untrusted = skops_io.get_untrusted_types(file=path)
            foreign = sorted(set(untrusted) - TRUSTED_TYPES)
            if foreign:
                raise ConfigError(
                    f"{path}: refused: it names types a srcrn feature model never holds: {', '.join(foreign[:5])}"
                )
            payload = skops_io.load(path, trusted=sorted(TRUSTED_TYPES & set(untrusted)))
        except ConfigError:
            raise
        except Exception as error:  # a damaged or foreign file: skops raises many types
            raise ConfigError(f"{path}: not a readable feature model ({type(error).__name__})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ConfigError(f"{path}: not a feature model of 'srcrn classify train --model features'")
        try:
            return cls(
                payload["estimator"],
                [str(n) for n in payload["names"]],
                dict(payload["settings"]),
                dict(payload["extras"]),
                str(path),
            )
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: a damaged feature model (its names, settings or extras are missing)") from None

    def write_onnx(self, path: Path) -> None:
        """The model's trees as ONNX at ``path`` (a bundle's file), its names and the settings it
        predicts with inside (``PREDICTION_SETTINGS``: no training folder travels with a bundle)."""
        from srcrn.stage2.booster import booster_to_onnx

        settings = {key: self.settings[key] for key in PREDICTION_SETTINGS if key in self.settings}
        written = booster_to_onnx(self.estimator, {"format": FORMAT, "names": self.names, "settings": settings})
        with atomic_path(path) as temporary:
            temporary.write_bytes(written)

    @classmethod
    def from_onnx(cls, path: Path) -> FeatureModel:
        """The feature model of a bundle's ONNX trees (``write_onnx``), run by ONNX Runtime.

        Raises:
            ConfigError: the file is missing, not loadable, or not a srcrn feature model.
        """
        from srcrn.stage2.booster import OnnxBooster

        if not path.is_file():
            raise ConfigError(f"{path}: model file not found")
        booster = OnnxBooster(path)
        stored = booster.metadata
        try:
            if stored["format"] != FORMAT or len(stored["names"]) != booster.n_features:
                raise ValueError
            return cls(booster, [str(n) for n in stored["names"]], dict(stored["settings"]), {}, str(path))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: not the ONNX trees of a srcrn feature model") from None

    def image_features(self, inputs: np.ndarray) -> None:
        """None: the lesion features are not a CNN's (``MelanomaModel``)."""
        return None

    def store_extras(self, **extras: Any) -> None:
        """Record a threshold or calibration in the model file (rewritten atomically)."""
        self.extras |= extras
        self.save(self.source)


def model_table(
    inputs: np.ndarray,
    masks: np.ndarray | None,
    contexts: Contexts,
    *,
    lesion: bool,
    clinical: Sequence[str],
    where: str = "feature model",
) -> tuple[np.ndarray, list[str]]:
    """Lesion features of ``inputs``/``masks`` (with ``lesion``) beside the clinical columns of
    ``clinical`` fields, and the column names: what a feature model is trained and scored on."""
    parts: list[np.ndarray] = []
    names: list[str] = []
    if lesion:
        if masks is None:
            raise ConfigError(f"{where}: lesion features need the lesion masks on the inputs")
        features, names = feature_table(inputs, masks)
        parts.append(features)
    if clinical:
        given = list(contexts) if contexts is not None else [None] * len(inputs)
        if len(given) != len(inputs):
            raise ConfigError(f"{where}: {len(given)} clinical contexts for {len(inputs)} images")
        parts.append(clinical_features([c or NO_CONTEXT for c in given], clinical))
        names = names + clinical_feature_names(clinical)
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(inputs), 0)), names
