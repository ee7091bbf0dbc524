"""Errors that carry one line for the user: which file, and what is wrong with it."""

from __future__ import annotations

from pathlib import Path


class SrcrnError(Exception):
    """Base class: the CLI prints ``str(error)`` as one line and exits with status 2."""


class DataError(SrcrnError):
    """Bad input data. The message always starts with the offending path."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):  # errors raised in worker processes must survive pickling
        return (type(self), (str(self.path), self.problem))


class ConfigError(SrcrnError):
    """A setting that cannot work (unknown name, impossible size...)."""


class Interrupted(SrcrnError):
    """A run stopped by a signal after saving what it needs to resume; exits 128 + signal."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number
