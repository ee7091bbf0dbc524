"""A run folder's ``summary.json`` (written by every training: segmenter, CNN classifier,
feature model), read in one place. Its ``model_checkpoint`` is the model the run keeps (the
weights ``select`` chose, or the fitted feature model); runs written before that key existed
keep their best checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from srcrn.atomic import read_json
from srcrn.errors import ConfigError

SUMMARY_FILE = "summary.json"


class RunSummary(BaseModel):
    """A run's summary.json, typed: the model files it kept (other figures kept as given)."""

    model_config = ConfigDict(extra="allow")

    best_checkpoint: str
    model_checkpoint: str | None = None

    @property
    def model(self) -> str:
        """The model file this run keeps."""
        return self.model_checkpoint or self.best_checkpoint


def kept_model(summary: dict[str, Any]) -> str:
    """The model file of a run's summary (as a training function returns it)."""
    return RunSummary.model_validate(summary).model


def read_summary(run: str | Path) -> RunSummary:
    """The summary of the run in folder ``run``.

    Raises:
        ConfigError: the run has not finished (no summary.json), or the file is not a summary.
    """
    path = Path(run) / SUMMARY_FILE
    try:
        return RunSummary.model_validate(read_json(path))
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing: the run has not finished (continue it with --resume)") from None
    except (ValueError, ValidationError):
        raise ConfigError(f"{path}: not a run summary of srcrn (damaged, or another file)") from None
