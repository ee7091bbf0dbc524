"""The DICOM objects of one answer (issue 34): the lesion mask as a **SEG** and the findings as a
**Comprehensive SR** (TID 1500 measurement report) referencing it, both in the source image's
study; for a JPEG or PNG input, a Secondary Capture of the image is made first as that source.

highdicom builds and checks the objects (the IODs, the SR templates, the codes); srcrn only says
what goes in. Standard codes come from pydicom's copy of DICOM Part 16 (SNOMED CT, DCM, UCUM);
what no standard codes (the probability of melanoma, the verdict band, the input gate's status,
the ABCD components) has srcrn's private coding scheme ``99SRCRN``, declared in the SR.
Nothing of a person is invented: the patient fields are the source image's, or those a user
gives, or empty (anonymous).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from srcrn import __version__
from srcrn.atomic import atomic_path
from srcrn.data.dicom import is_dicom, site_codes, site_meaning
from srcrn.data.images import ImageSource, decode_image
from srcrn.errors import ConfigError

if TYPE_CHECKING:
    from pydicom import Dataset

    from srcrn.answers.results import PipelineResult

MANUFACTURER = "srcrn"
SCHEME = "99SRCRN"  # srcrn's private coding scheme (DICOM PS3.16 8.2: 99 + a name)
SERIES_NUMBERS = {"image": 1, "seg": 2, "sr": 3}


@dataclass(frozen=True)
class Patient:
    """The patient fields a user gives for a JPEG input's study (each may be empty: anonymous)."""

    patient_id: str = ""
    name: str = ""
    birth_date: str = ""  # YYYYMMDD

    def __post_init__(self) -> None:
        """Refuse a birth date that is not YYYYMMDD."""
        if self.birth_date:
            try:
                datetime.datetime.strptime(self.birth_date, "%Y%m%d")
            except ValueError:
                raise ConfigError(f"patient birth date {self.birth_date!r}: expected YYYYMMDD") from None


@dataclass
class StudyObjects:
    """One answer's DICOM objects: the source image made for a non-DICOM input (else None), the SEG, the SR."""

    image: Dataset | None
    seg: Dataset
    sr: Dataset

    def datasets(self) -> dict[str, Dataset]:
        """The objects by role (image, seg, sr), the image only where one was made."""
        found = {"image": self.image, "seg": self.seg, "sr": self.sr}
        return {role: dataset for role, dataset in found.items() if dataset is not None}

    def zip_bytes(self) -> bytes:
        """A ZIP of ``<role>.dcm`` for each object (the service's answer)."""
        import io
        import zipfile

        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
            for role, dataset in self.datasets().items():
                part = io.BytesIO()
                dataset.save_as(part, enforce_file_format=True)
                out.writestr(f"{role}.dcm", part.getvalue())
        return archive.getvalue()

    def write(self, folder: str | Path, image_id: str) -> dict[str, str]:
        """Each object as ``<folder>/<image_id>_<image|seg|sr>.dcm``, atomically; their paths."""
        written = {}
        for role, dataset in self.datasets().items():
            path = Path(folder) / f"{image_id}_{role}.dcm"
            with atomic_path(path) as temporary:
                dataset.save_as(temporary, enforce_file_format=True)
            written[role] = str(path)
        return written


def _code(value: str, meaning: str) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(value, SCHEME, meaning)


def source_image(pixels: np.ndarray, patient: Patient, result: PipelineResult) -> Dataset:
    """A Secondary Capture of a non-DICOM input (its RGB pixels as srcrn read them), in a new
    study, with the patient fields given and the age, sex and scale the answer was given."""
    import highdicom as hd

    context = result.context
    image = hd.sc.SCImage(
        pixel_array=np.ascontiguousarray(pixels),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        patient_orientation=("L", "F"),  # required by highdicom for PATIENT; emptied below (not known)
        study_instance_uid=hd.UID(),
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBERS["image"],
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_id=patient.patient_id or None,
        patient_name=patient.name or None,
        patient_birth_date=patient.birth_date or None,
        patient_sex={"male": "M", "female": "F"}.get(context.sex or "", None),
        pixel_spacing=(context.pixel_spacing_mm, context.pixel_spacing_mm) if context.pixel_spacing_mm else None,
        study_date=datetime.date.today(),
        study_time=datetime.datetime.now().time(),
    )
    image.PatientOrientation = ""  # type: ignore[assignment]  # a photograph's orientation on the body is not known (type 2: empty)
    image.Laterality = ""
    image.SeriesDescription = "Image sent to srcrn"
    if context.age is not None:
        image.PatientAge = f"{round(context.age):03d}Y"
    if context.site is not None and (region := site_code(context.site)) is not None:
        image.AnatomicRegionSequence = [region]
    return image


def site_code(site: str) -> Any:
    """An ISIC site as an Anatomic Region Sequence item (SNOMED CT), None for one without a code."""
    from pydicom import Dataset

    for (value, scheme), name in site_codes().items():
        if name == site:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator = value, scheme
            item.CodeMeaning = site_meaning(value)
            return item
    return None


def read_source(source: str | Path | bytes) -> Dataset:
    """The source DICOM object of an answer (path or bytes)."""
    import io

    import pydicom

    return pydicom.dcmread(io.BytesIO(source) if isinstance(source, bytes) else source)


def segmentation(source: Dataset, result: PipelineResult, model: str) -> Dataset:
    """The binary SEG of the lesion mask on ``source``: one segment "Skin lesion" (SNOMED CT),
    made by srcrn's algorithm (its version and the model's SHA-256 as parameters)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    mask = np.asarray(result.mask, dtype=np.uint8)
    if mask.shape != (int(source.Rows), int(source.Columns)):
        raise ConfigError(f"{result.image_id}: mask of {mask.shape} on an image of {source.Rows}x{source.Columns}")
    algorithm = hd.AlgorithmIdentificationSequence(
        name=MANUFACTURER,
        family=codes.cid7162.ArtificialIntelligence,
        version=__version__,
        parameters={"model_sha256": model},
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Skin lesion",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.SkinLesion,
        algorithm_type="AUTOMATIC",
        algorithm_identification=algorithm,
    )
    seg = hd.seg.Segmentation(
        source_images=[source],
        pixel_array=mask[None],
        segmentation_type="BINARY",
        segment_descriptions=[segment],
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBERS["seg"],
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=_model_name(result),
        software_versions=__version__,
        device_serial_number=model[:16],
        omit_empty_frames=False,  # an empty mask is an answer too: "no lesion found"
        series_description="srcrn lesion mask",
    )
    seg.PatientOrientation = ""  # as the source's: not known for a photograph
    return seg


def _model_name(result: PipelineResult) -> str:
    card = result.card
    name = card.about.name if card is not None and card.about is not None and card.about.name else ""
    return (name or "srcrn model")[:64]  # LO: 64 characters


def _measurements(result: PipelineResult, algorithm: Any) -> list[Any]:
    import highdicom as hd
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    m = result.measurements
    if m.empty_mask:
        return []
    found = []
    if m.longest_diameter_mm is not None and m.area_mm2 is not None:
        lengths = [(codes.SCT.LongAxis, m.longest_diameter_mm, codes.UCUM.Millimeter),
                   (codes.SCT.Area, m.area_mm2, codes.UCUM.SquareMillimeter)]  # fmt: skip
    else:  # no scale: in pixels, UCUM annotations (a unit of "1" with a name)
        lengths = [(codes.SCT.LongAxis, m.longest_diameter_pixels, CodedConcept("{pixels}", "UCUM", "pixels")),
                   (codes.SCT.Area, m.area_pixels, CodedConcept("{pixels}", "UCUM", "square pixels"))]  # fmt: skip
    for name, value, unit in lengths:
        found.append(hd.sr.Measurement(name=name, value=float(value), unit=unit, algorithm_id=algorithm))
    score = CodedConcept("{score}", "UCUM", "score")
    abcd = [("ABCD-A", "ABCD asymmetry (0-2)", m.abcd_asymmetry), ("ABCD-B", "ABCD border (0-8)", m.abcd_border),
            ("ABCD-C", "ABCD colours (1-6)", m.abcd_colours)]  # fmt: skip
    for value_code, meaning, value in abcd:  # type: ignore[assignment]
        if value is not None:
            found.append(hd.sr.Measurement(name=_code(value_code, meaning), value=float(value), unit=score,
                                           algorithm_id=algorithm))  # fmt: skip
    if result.assessment.assessed:
        found.append(hd.sr.Measurement(name=_code("P-MEL", "Probability of melanoma"), value=float(result.probability),
                                       unit=CodedConcept("1", "UCUM", "no units"), algorithm_id=algorithm))  # fmt: skip
    return found


def _evaluations(result: PipelineResult) -> list[Any]:
    import highdicom as hd

    status = "ASSESSED" if result.assessment.assessed else "NOT-ASSESSABLE"
    found = [hd.sr.QualitativeEvaluation(_code("GATE", "Input gate status"), _code(status, result.assessment.status))]
    if result.assessment.assessed:
        decision = result.decision.upper().replace(" ", "-")
        found.append(hd.sr.QualitativeEvaluation(_code("DECISION", "srcrn decision"), _code(decision, result.decision)))
        if result.band:
            band = _code(result.band.upper(), result.band)
            found.append(hd.sr.QualitativeEvaluation(_code("BAND", "Melanoma verdict band"), band))
    return found


def report(source: Dataset, seg: Dataset, result: PipelineResult, model: str) -> Dataset:
    """The Comprehensive SR (TID 1500) of the answer: one lesion (TID 1410 group) tracked by a
    fresh UID, its segment in ``seg``, its measurements, probability, band and gate status."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.sr.AlgorithmIdentification(
        name=f"{MANUFACTURER}: {_model_name(result)}"[:64], version=__version__, parameters=[f"model_sha256={model}"]
    )
    segment = hd.sr.ReferencedSegmentationFrame(
        sop_class_uid=seg.SOPClassUID,
        sop_instance_uid=seg.SOPInstanceUID,
        frame_number=1,
        segment_number=1,
        source_image=hd.sr.SourceImageForSegmentation(source.SOPClassUID, source.SOPInstanceUID),
    )
    lesion = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="lesion 1"),
        referenced_segment=segment,
        finding_type=codes.SCT.SkinLesion,
        algorithm_id=algorithm,
        measurements=_measurements(result, algorithm),
        qualitative_evaluations=_evaluations(result),
    )
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=MANUFACTURER, model_name=_model_name(result)
        ),
    )
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.SCT.DermoscopicPhotography,
        imaging_measurements=[lesion],
    )
    sr = hd.sr.ComprehensiveSR(
        evidence=[source, seg],
        content=content,
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBERS["sr"],
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description="srcrn findings",
    )
    _single_frame_references(sr)
    _declare_scheme(sr)
    return sr


def _single_frame_references(dataset: Any) -> None:
    """A segment of a single-frame SEG referenced by its segment number alone: PS3.3 forbids a
    Referenced Frame Number beside a Referenced Segment Number (dciodvfy: "shall not be present"),
    which highdicom writes."""
    for item in dataset.get("ContentSequence", []):
        for reference in item.get("ReferencedSOPSequence", []):
            if "ReferencedSegmentNumber" in reference and "ReferencedFrameNumber" in reference:
                del reference.ReferencedFrameNumber
        _single_frame_references(item)


def _declare_scheme(sr: Any) -> None:
    from pydicom import Dataset

    scheme = Dataset()
    scheme.CodingSchemeDesignator = SCHEME
    scheme.CodingSchemeName = "srcrn findings"
    scheme.CodingSchemeResponsibleOrganization = "srcrn (https://github.com/srcrn)"
    sr.CodingSchemeIdentificationSequence = [scheme]


def study_objects(
    result: PipelineResult, source: ImageSource, model: str, patient: Patient = Patient()
) -> StudyObjects:
    """The SEG and SR of ``result`` (and, for a non-DICOM ``source``, its Secondary Capture)."""
    if isinstance(source, (str, Path, bytes)) and is_dicom(source):
        image, original = None, read_source(source)
    else:
        pixels = decode_image(source, name=result.image_id)[0]
        image = original = source_image(pixels, patient, result)
    seg = segmentation(original, result, model)
    return StudyObjects(image, seg, report(original, seg, result, model))


def study_zip(result: PipelineResult, source: ImageSource, model: str) -> bytes:
    """``study_objects`` as the ZIP the service answers with."""
    return study_objects(result, source, model).zip_bytes()
