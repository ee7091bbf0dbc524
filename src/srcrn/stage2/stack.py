"""Kind ``stack``: a logistic regression on its members' logits, fitted on their out-of-fold
logits by ``classify train --model ensemble``. Its folder holds ``stack.json`` and its members'
files; the registry (``stage2.registry``) reads and writes it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from srcrn.atomic import read_json, write_json
from srcrn.data.metadata import CLINICAL_FIELDS
from srcrn.errors import ConfigError
from srcrn.stage2.spec import Calibration, ClassifierSpec, Contexts, MelanomaModel, with_extras

STACK_FILE = "stack.json"
STACK_FORMAT = "srcrn-stack"


class StackModel:
    """A logistic regression on its members' logits (fitted on their out-of-fold logits by
    ``classify train --model ensemble``): logit = intercept + sum(weight_i x logit_i). Its
    probability is the stacker's, already calibrated on out-of-fold scores; its members share
    one lesion input (size, mode, margin), so each image is cut once for all of them."""

    kind = "stack"

    def __init__(
        self,
        members: list[MelanomaModel],
        weights: Sequence[float],
        intercept: float,
        *,
        source: str = "",
        extras: dict[str, Any] | None = None,
        names: Sequence[str] = (),
    ):
        """A stack of stage-2 models.

        Args:
            members: the member models (two or more, of one input size and mode).
            weights: the stacker's weight of each member's logit.
            intercept: the stacker's intercept.
            source: the stack's folder, for messages.
            extras: threshold, calibration, target sensitivity.
            names: the members' names.

        Raises:
            ConfigError: fewer than two members, a weight count that differs, or members whose lesion
                inputs (mode, size, margin) differ.
        """
        if len(members) != len(weights) or len(members) < 2:
            raise ConfigError(f"{source or 'stack'}: needs two or more members, one weight each")
        first = members[0].spec
        for member in members[1:]:
            s = member.spec
            if (s.image_size, s.input, s.margin) != (first.image_size, first.input, first.margin):
                raise ConfigError(
                    f"{member.source}: its lesion input ({s.input}, {s.image_size} px, margin {s.margin:g}) differs "
                    f"from {members[0].source}'s ({first.input}, {first.image_size} px, margin {first.margin:g}): "
                    "stack members must see the same input (same --input, --image-size, --margin)"
                )
        self.members, self.weights, self.intercept = list(members), [float(w) for w in weights], float(intercept)
        self.names = list(names) or [m.kind for m in members]
        self.source, self.extras = source, dict(extras or {})
        base = ClassifierSpec(
            image_size=first.image_size,
            input=first.input,
            margin=first.margin,
            segmenter=first.segmenter,
            calibration=Calibration("stacker"),  # sigmoid of the stacker's logit, fitted out of fold
        )
        self.spec = with_extras(base, self.extras)

    @property
    def image_size(self) -> int:
        """The side of the square input the stack takes (its spec's, from its members)."""
        return self.spec.image_size

    @property
    def needs_masks(self) -> bool:
        """Whether any member needs the lesion masks."""
        return any(m.needs_masks for m in self.members)

    @property
    def clinical_fields(self) -> tuple[str, ...]:
        """The clinical fields any member takes."""
        fields = {f for m in self.members for f in m.clinical_fields}
        return tuple(f for f in CLINICAL_FIELDS if f in fields)

    def member_logits(
        self, inputs: np.ndarray, masks: np.ndarray | None = None, contexts: Contexts = None
    ) -> np.ndarray:
        """float64 [N, members]: each member's uncalibrated logits."""
        return np.stack([m.logits(inputs, masks, contexts) for m in self.members], axis=1)

    def combine(self, member_logits: np.ndarray) -> np.ndarray:
        """The stack's logit: intercept + the members' logits weighted by the stacker."""
        return self.intercept + np.asarray(member_logits, dtype=np.float64) @ np.asarray(self.weights)

    def logits(self, inputs: np.ndarray, masks: np.ndarray | None = None, contexts: Contexts = None) -> np.ndarray:
        """float64 [N] stacked logits (uncalibrated) of the inputs, their masks and contexts."""
        return self.combine(self.member_logits(inputs, masks, contexts))

    def image_features(self, inputs: np.ndarray) -> np.ndarray | None:
        """The first member's pooled CNN features that it can say (``MelanomaModel``), or None."""
        for member in self.members:
            features = member.image_features(inputs)
            if features is not None:
                return features
        return None

    def store_extras(self, **extras: Any) -> None:
        """Store ``extras`` (threshold, calibration, ...) in the stack's manifest and apply them."""
        self.extras |= extras
        self.spec = with_extras(self.spec, extras)
        folder = Path(self.source)
        manifest = read_json(folder / STACK_FILE)
        manifest["extras"] = self.extras
        write_json(folder / STACK_FILE, manifest)
