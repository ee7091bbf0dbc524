"""Errors that carry one line for the user: which file, and what is wrong with it."""

from __future__ import annotations

from pathlib import Path


class SrcrnError(Exception):
    """Base class: the CLI prints ``str(error)`` as one line and exits with status 2."""


class DataError(SrcrnError):
    """Bad input data. The message always starts with the offending path."""

    def __init__(self, path: str | Path, problem: str):
        """A problem with the file (or flag) at ``path``, in one line."""
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):
        """Pickle as (path, problem), so that errors raised in worker processes survive."""
        return (type(self), (str(self.path), self.problem))


class ConfigError(SrcrnError):
    """A setting that cannot work (unknown name, impossible size...)."""


class Interrupted(SrcrnError):
    """A run stopped by a signal after saving what it needs to resume; exits 128 + signal."""

    def __init__(self, message: str, signal_number: int):
        """Training stopped by ``signal_number``; the exit status is 128 + it."""
        super().__init__(message)
        self.exit_code = 128 + signal_number


# Which optional part of srcrn (`pip install 'srcrn[EXTRA]'`) brings each third-party module a
# command may need: an install without it gets one line naming the extra, not a traceback.
TRAIN_MODULES = (
    "torch", "torchvision", "lightning", "torchmetrics", "albumentations", "matplotlib", "safetensors", "jinja2",
    "onnx", "onnxscript", "captum",
)  # fmt: skip
EXTRA_OF_MODULE = {
    **dict.fromkeys(TRAIN_MODULES, "train"),
    **dict.fromkeys(("fastapi", "uvicorn", "multipart", "python_multipart", "starlette"), "serve"),
    "segmentation_models_pytorch": "baselines",
    **dict.fromkeys(("highdicom", "pynetdicom"), "dicom"),
}
# Requirements of the base install (the shipped model's stage 2): missing only from a broken install.
BASE_MODULES = {
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "scipy": "scipy",
    "skops": "skops",
    "pydicom": "pydicom",
}


def missing_extra(error: ModuleNotFoundError, command: str) -> str | None:
    """The one line for a command that needs a module the install lacks, if an extra brings it."""
    module = (error.name or "").split(".")[0]
    if module in BASE_MODULES:
        return (
            f"srcrn {command}: {BASE_MODULES[module]} is not installed, though srcrn requires it (an incomplete "
            f"install): pip install '{BASE_MODULES[module]}', or reinstall srcrn"
        )
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return f"srcrn {command}: needs the '{extra}' extra ({module} is not installed): pip install 'srcrn[{extra}]'"
