"""srcrn: two-stage melanoma detection (SRCRN segmentation + ResNet-50 classification).

The Python API::

    import srcrn

    pipeline = srcrn.Pipeline.from_bundle("bundle")  # or .from_checkpoints(seg, cls)
    result = pipeline.predict("lesion.jpg")  # a path, bytes, a PIL image or an HxWx3 uint8 array
    result.probability, result.decision, result.mask, result.measurements
    result.save("out")  # what `srcrn predict` writes for the image
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["DataError", "LesionMeasurements", "Pipeline", "PipelineResult", "SrcrnError", "__version__"]

if TYPE_CHECKING:
    from srcrn.answers.results import PipelineResult
    from srcrn.errors import DataError, SrcrnError
    from srcrn.inference.pipeline import Pipeline
    from srcrn.morphology.measurements import LesionMeasurements

_LAZY = {
    "Pipeline": "srcrn.inference.pipeline",
    "PipelineResult": "srcrn.answers.results",
    "LesionMeasurements": "srcrn.morphology.measurements",
    "DataError": "srcrn.errors",
    "SrcrnError": "srcrn.errors",
}


def __getattr__(name: str) -> Any:
    # Imported on first use: `import srcrn` (and the CLI's start) stays light.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'srcrn' has no attribute {name!r}")
