"""What the pipeline answers for one image: ``PipelineResult`` (in memory: the numbers, the
mask, the overlay, the report) and ``Prediction``, the record of what ``srcrn predict`` wrote
for it (the rows of predictions.csv/.json). Torch-free."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from srcrn.answers.gate import ASSESSED, Assessment
from srcrn.answers.readings import readings
from srcrn.answers.rendering import encode_png, render_overlay, write_mask, write_png
from srcrn.atomic import atomic_path, clean_json
from srcrn.bundle.card import ModelCard
from srcrn.bundle.schema import file_sha256
from srcrn.data.dicom import HeaderFacts
from srcrn.data.metadata import NO_CONTEXT, ClinicalContext
from srcrn.morphology.measurements import LesionMeasurements

# The tables' name of the probability: ``melanoma``, the column of the ISIC challenge's format.
TABLE_NAMES = {"probability": "melanoma"}


@dataclass
class Prediction:
    """What ``srcrn predict`` records of one image: the numbers and the files it wrote. The
    names are ``PipelineResult``'s; in predictions.csv/.json the probability is ``melanoma``."""

    image_id: str
    source: str
    width: int
    height: int
    probability: float
    decision: str
    threshold: float
    measurements: dict = field(default_factory=dict)
    mask: str = ""
    overlay: str = ""
    explanation: str = ""
    clinical: str = ""  # the clinical fields the model took for this image, e.g. "age sex site"
    report: str = ""  # reports/<id>_report.pdf with --report
    status: str = ASSESSED  # or "not assessable" (the input gate): then decision says so, no verdict
    reasons: str = ""  # why not assessable, "; "-separated
    warnings: str = ""  # every warning of the image (gate, measurements), "; "-separated
    band: str = ""  # low | intermediate | high (verdict bands), "" without bands or when not assessable
    from_header: str = ""  # the context fields taken from the image's DICOM header, e.g. "age sex pixel_spacing_mm"
    spread_low: float | None = None  # the lowest and highest P(melanoma) with the lesion turned (spread_angles)
    spread_high: float | None = None

    def to_record(self) -> dict[str, Any]:
        """The row of predictions.csv/.json (JSON-ready; the probability named ``melanoma``)."""
        return clean_json({TABLE_NAMES.get(k, k): v for k, v in vars(self).items()})

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Prediction:
        """The inverse of ``to_record``.

        Raises:
            TypeError: ``record`` lacks a field or has others.
        """
        names = {table: name for name, table in TABLE_NAMES.items()}
        return cls(**{names.get(k, k): v for k, v in record.items()})


@dataclass
class PipelineResult:
    """Both stages' answer for one image, in memory. ``mask`` is at the image's original size
    (EXIF orientation applied); the measurements are in original pixels."""

    image_id: str
    source: str
    width: int
    height: int
    probability: float  # P(melanoma), calibrated when the classifier carries a calibration
    decision: str  # "melanoma" when probability > threshold, else "benign"
    threshold: float
    mask: np.ndarray = field(repr=False)  # bool, height x width
    measurements: LesionMeasurements
    # The clinical context given with the image, and the fields of it the model used (a model
    # without clinical inputs uses none; a field not given is scored as unknown).
    context: ClinicalContext = NO_CONTEXT
    clinical_used: tuple[str, ...] = ()
    meaning: str = ""  # what the number and the decision mean, from the model card (answers.readings)
    assessment: Assessment = field(default_factory=Assessment)  # the input gate's: assessed, or why not
    band: str | None = None  # low | intermediate | high where the model has verdict bands (answers.bands)
    bytes_sha256: str = ""  # of the bytes given (an upload); a path's is read when asked (image_sha256)
    card: ModelCard | None = field(default=None, repr=False)  # the model card of the pipeline that answered
    heatmap: np.ndarray | None = field(default=None, repr=False)  # Grad-CAM on the working image
    # The image and mask at the working size (longer side WORKING_SIDE at most), for overlays.
    working_image: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 3), np.uint8), repr=False)
    working_mask: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool), repr=False)
    # The lowest and highest P(melanoma) with the lesion turned by the pipeline's spread angles (and
    # as given; the probability is their mean): how much the answer depends on the photo's
    # orientation. None: not measured, or not assessable.
    spread: tuple[float, float] | None = None
    header: HeaderFacts | None = field(default=None, repr=False)  # a DICOM input's header facts
    from_header: tuple[str, ...] = ()  # the context fields taken from that header (none given for them)

    @property
    def caption(self) -> str:
        """The overlay's caption: probability, decision, threshold and the diameter in mm (or "no scale")."""
        if not self.assessment.assessed:
            return f"Not assessable: {'; '.join(self.assessment.codes)}"
        m = self.measurements
        size = f"diameter {m.longest_diameter_mm:.1f} mm" if m.longest_diameter_mm is not None else "no scale"
        verdict = f"P(melanoma) {self.probability:.3f} -> {self.decision} (threshold {self.threshold:.3f})"
        if self.band:
            verdict = f"P(melanoma) {self.probability:.3f}: {self.band}"
        return verdict if m.empty_mask else f"{verdict}, {size}"

    def overlay(self, *, caption: bool = True) -> np.ndarray:
        """The image (at the working size) with the lesion contour and, with ``caption``, the
        decision in a band on top (enlarged to 640 px wide at least, for legibility), RGB uint8."""
        return render_overlay(self.working_image, self.working_mask, self.caption if caption else None)

    @property
    def image_sha256(self) -> str:
        """SHA-256 of the image file: of the bytes given, or of the file at ``source`` (read on
        demand, not on predict's hot path); "" for pixels given in memory."""
        if self.bytes_sha256:
            return self.bytes_sha256
        path = Path(self.source)
        return file_sha256(path) if path.is_file() else ""

    def report_pdf(self) -> bytes:
        """A one-page PDF report of this answer (``inference.report``): image and overlay,
        verdict and its meaning, measurements, the model card's short form, date, SHA-256."""
        from srcrn.answers.pdf import report_pdf

        return report_pdf(self, self.card)

    def mask_png(self) -> bytes:
        """The mask as an ISIC mask file (0/255 PNG, original size)."""
        return encode_png(self.mask.astype(np.uint8) * 255)

    def overlay_png(self, *, caption: bool = True) -> bytes:
        """The overlay as PNG bytes."""
        return encode_png(self.overlay(caption=caption))

    def explanation(self) -> np.ndarray | None:
        """The Grad-CAM heatmap blended over the image (RGB), when asked for."""
        if self.heatmap is None:
            return None
        from srcrn.answers.explain import heatmap_overlay

        return heatmap_overlay(self.working_image, self.heatmap)

    @property
    def warnings(self) -> list[str]:
        """Every warning of this answer: the input gate's (a colour space converted) and the
        measurements' (fragments, a mask at the edge)."""
        header = list(self.header.notes) if self.header is not None else []
        return [*self.assessment.warnings, *header, *self.measurements.warnings]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready numbers (no arrays; NaN as None)."""
        return clean_json(
            {
                "image_id": self.image_id,
                "width": self.width,
                "height": self.height,
                "probability": self.probability,
                "decision": self.decision,
                "threshold": self.threshold,
                "measurements": self.measurements.to_dict(),
                "readings": [r.to_dict() for r in readings(self.measurements)],
                "status": self.assessment.status,
                "reasons": self.assessment.reasons,
                "probability_readable": self.assessment.assessed,
                "band": self.band,  # False: no verdict, the number not to be read
                "probability_spread": list(self.spread) if self.spread is not None else None,
                "gate": self.assessment.figures,
                "warnings": self.warnings,
                "meaning": self.meaning,
                "image_sha256": self.image_sha256,
                "clinical": {
                    "given": self.context.to_dict(),
                    "used": list(self.clinical_used),
                    "from_dicom_header": list(self.from_header),
                },
            }
        )

    def save(self, out: str | Path, *, overlay: bool = True, report: bool = False) -> Prediction:
        """Write what ``srcrn predict`` writes for this image under ``out``:
        ``masks/<id>_segmentation.png``, ``overlays/<id>_overlay.png`` (unless ``overlay`` is
        False), with ``report`` ``reports/<id>_report.pdf`` and, with a heatmap,
        ``explanations/<id>_gradcam.png`` (each atomically)."""
        out = Path(out)
        mask_path = out / "masks" / f"{self.image_id}_segmentation.png"
        write_mask(mask_path, self.mask)
        overlay_path = out / "overlays" / f"{self.image_id}_overlay.png" if overlay else None
        if overlay_path is not None:
            write_png(overlay_path, self.overlay())
        explanation_path = ""
        explanation = self.explanation()
        if explanation is not None:
            explanation_path = str(out / "explanations" / f"{self.image_id}_gradcam.png")
            write_png(Path(explanation_path), explanation)
        report_path = ""
        if report:
            report_path = str(out / "reports" / f"{self.image_id}_report.pdf")
            with atomic_path(report_path) as temporary:
                temporary.write_bytes(self.report_pdf())
        return Prediction(
            self.image_id,
            self.source,
            self.width,
            self.height,
            self.probability,
            self.decision,
            self.threshold,
            self.measurements.to_dict(),
            str(mask_path),
            str(overlay_path or ""),
            explanation_path,
            " ".join(self.clinical_used),
            report_path,
            self.assessment.status,
            "; ".join(self.assessment.reasons),
            "; ".join(self.warnings),
            self.band or "",
            " ".join(self.from_header),
            *(self.spread if self.spread is not None else (None, None)),
        )
