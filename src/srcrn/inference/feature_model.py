"""The lesion-feature melanoma model (``classify train --model features``): scikit-learn's
``HistGradientBoostingClassifier`` over ``inference.features``, stored with skops.

skops, not pickle: loading a pickle runs whatever code it names, and a model file is data a
user may have been sent. ``load`` refuses any type outside scikit-learn and numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from srcrn.atomic import atomic_path
from srcrn.errors import ConfigError
from srcrn.inference.features import feature_table
from srcrn.inference.predictor import Calibration, ClassifierSpec

FEATURE_MODEL_SUFFIX = ".skops"
FORMAT = "srcrn-feature-model"
TRUSTED_PREFIXES = ("sklearn.", "numpy.")


@dataclass
class FeatureModel:
    estimator: Any  # a fitted HistGradientBoostingClassifier
    names: list[str]
    settings: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)  # threshold, target_sensitivity, calibration

    @property
    def image_size(self) -> int:
        return int(self.settings["image_size"])

    @property
    def spec(self) -> ClassifierSpec:
        s = self.settings
        return ClassifierSpec(
            s["image_size"],
            s["input"],
            float(s["margin"]),
            float(self.extras.get("threshold", 0.5)),
            s.get("segmenter"),
            self.extras.get("target_sensitivity"),
            False,
            Calibration.from_dict(self.extras.get("calibration")),
        )

    def logits_of_features(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.decision_function(features), dtype=np.float64)

    def probabilities_of(self, features: np.ndarray) -> np.ndarray:
        return self.spec.calibration(self.logits_of_features(features)).astype(np.float64)

    def logits(self, inputs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Melanoma logits (uncalibrated) of classifier inputs and the lesion masks on them."""
        features, names = feature_table(inputs, masks)
        if names != self.names:  # a model of an older feature version reads its own columns
            position = {name: i for i, name in enumerate(names)}
            missing = [name for name in self.names if name not in position]
            if missing:
                raise ConfigError(
                    f"the model needs {len(missing)} lesion feature(s) this srcrn does not compute, first "
                    f"'{missing[0]}' (a model of another srcrn version?)"
                )
            features = features[:, [position[name] for name in self.names]]
        return self.logits_of_features(features)

    def probabilities(self, inputs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        return self.spec.calibration(self.logits(inputs, masks)).astype(np.float64)

    def save(self, path: str | Path) -> None:
        import skops.io

        payload = {
            "format": FORMAT,
            "estimator": self.estimator,
            "names": list(self.names),
            "settings": dict(self.settings),
            "extras": dict(self.extras),
        }
        with atomic_path(Path(path)) as temporary:
            skops.io.dump(payload, temporary)

    @classmethod
    def load(cls, path: str | Path) -> FeatureModel:
        import skops.io

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: model file not found")
        try:
            untrusted = skops.io.get_untrusted_types(file=path)
            foreign = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
            if foreign:
                raise ConfigError(f"{path}: refuses to load types outside scikit-learn/numpy: {', '.join(foreign)}")
            payload = skops.io.load(path, trusted=untrusted)
        except ConfigError:
            raise
        except Exception as error:  # a damaged or foreign file: skops raises many types
            raise ConfigError(f"{path}: not a readable feature model ({type(error).__name__})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ConfigError(f"{path}: not a feature model of 'srcrn classify train --model features'")
        return cls(payload["estimator"], list(payload["names"]), dict(payload["settings"]), dict(payload["extras"]))

    def store_extras(self, path: str | Path, **extras: Any) -> None:
        self.extras |= extras
        self.save(path)


def is_feature_model(path: str | Path) -> bool:
    return Path(path).suffix == FEATURE_MODEL_SUFFIX
