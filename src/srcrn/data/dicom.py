"""Dermoscopic DICOM images read: the pixels as RGB, and from the header the scale and the
clinical context (issue 34).

pydicom reads the file and decodes its pixels (uncompressed, RLE, and the JPEG transfer
syntaxes through Pillow, which srcrn has). srcrn reads single-frame colour or greyscale
photographs: Dermoscopic Photography (Supplement 221, modality DMS), VL Photographic and
Secondary Capture images. Anything else (a CT slice, a multi-frame object, a file without
pixel data) is refused in one line naming the file.

The header's facts are the image's, given by the device or the PACS: Pixel Spacing (or Imager
Pixel Spacing, or else the dermoscope's nominal Field of View Dimension(s)) for millimetres,
Patient's Age (``045Y``), Patient's Sex, and the Anatomic Region Sequence's code mapped onto the
ISIC sites. An explicit flag or metadata row overrides each one.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from srcrn.data.metadata import SCALE_RANGE, TORSO_UNSPECIFIED, ClinicalContext
from srcrn.errors import DataError

# The 128-byte preamble and "DICM": how a DICOM Part 10 file starts.
MAGIC_OFFSET, MAGIC = 128, b"DICM"
# The storage classes whose objects are photographs srcrn can read.
DERMOSCOPIC_PHOTOGRAPHY = "1.2.840.10008.5.1.4.1.1.77.1.7"
VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
PHOTOGRAPHS = {
    DERMOSCOPIC_PHOTOGRAPHY: "Dermoscopic Photography",
    VL_PHOTOGRAPHIC: "VL Photographic",
    SECONDARY_CAPTURE: "Secondary Capture",
}
# A header's fields of the context, as ClinicalContext names them.
HEADER_FIELDS = ("age", "sex", "site", "pixel_spacing_mm")

# SNOMED CT body structures (as pydicom's code dictionary names them) -> the ISIC sites. Named,
# not numbered, so that each code value comes from pydicom's copy of DICOM Part 16.
_SITE_CODES = {
    "anterior torso": ("Chest", "Thorax", "Abdomen", "Breast", "SkinOfAbdomen"),
    "posterior torso": ("Back", "Buttock"),
    "lateral torso": ("Flank",),
    TORSO_UNSPECIFIED: ("Trunk",),
    "upper extremity": ("UpperLimb", "Hand", "Forearm", "Finger", "Shoulder"),
    "lower extremity": ("LowerLimb", "Foot", "Thigh", "Toe", "Knee"),
    "head/neck": ("HeadAndNeck", "Head", "Neck", "Face", "Scalp", "Ear", "Nose", "Cheek", "Lip"),
    "oral/genital": ("Mouth", "OralCavity", "Perineum", "Penis", "Scrotum"),
}
# A code outside the table: the words of its meaning, in this order (the first that matches).
_SITE_WORDS = (
    (r"\b(palm|palmar|sole|plantar)\b", "palms/soles"),
    (r"\b(back|buttock|gluteal)\b", "posterior torso"),
    (r"\b(flank)\b", "lateral torso"),
    (r"\b(chest|thorax|abdomen|abdominal|breast)\b", "anterior torso"),
    (r"\b(trunk|torso)\b", TORSO_UNSPECIFIED),
    (r"\b(arm|forearm|hand|finger|shoulder|upper limb|wrist|elbow)\b", "upper extremity"),
    (r"\b(leg|thigh|foot|toe|knee|lower limb|ankle)\b", "lower extremity"),
    (r"\b(head|neck|face|scalp|ear|nose|cheek|forehead|lip|ala nasi)\b", "head/neck"),
    (r"\b(mouth|oral|genital|penis|scrotum|vulva|perineum)\b", "oral/genital"),
)


@dataclass(frozen=True)
class HeaderFacts:
    """What a DICOM header says of the image: its scale and the patient's context, each None
    when the header does not say it (or says something srcrn cannot use, then in ``notes``)."""

    age: float | None = None
    sex: str | None = None
    site: str | None = None
    pixel_spacing_mm: float | None = None
    sop_class: str = ""
    notes: tuple[str, ...] = ()

    def given(self) -> tuple[str, ...]:
        """The context fields the header gave, in ``HEADER_FIELDS`` order."""
        return tuple(name for name in HEADER_FIELDS if getattr(self, name) is not None)

    def under(self, context: ClinicalContext) -> tuple[ClinicalContext, tuple[str, ...]]:
        """``context`` with its missing fields taken from the header (an explicit value always
        wins), and the fields that came from the header."""
        taken = tuple(name for name in self.given() if getattr(context, name) is None)
        values = {f.name: getattr(context, f.name) for f in fields(context)}
        values.update({name: getattr(self, name) for name in taken})
        return ClinicalContext(**values), taken


def is_dicom(source: str | Path | bytes) -> bool:
    """Whether ``source`` (a path or a file's bytes) is a DICOM Part 10 file."""
    if isinstance(source, bytes):
        return source[MAGIC_OFFSET : MAGIC_OFFSET + 4] == MAGIC
    try:
        with open(source, "rb") as file:
            file.seek(MAGIC_OFFSET)
            return file.read(4) == MAGIC
    except OSError:
        return False


def _dcmread(source: str | Path | bytes, path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(io.BytesIO(source) if isinstance(source, bytes) else source)
    except InvalidDicomError as error:
        raise DataError(path, f"not a valid DICOM file ({error})") from None
    except (OSError, ValueError, EOFError, KeyError, TypeError) as error:
        raise DataError(path, f"cannot read DICOM file ({type(error).__name__}: {error})") from None


def read_dicom(source: str | Path | bytes, path: Path, max_pixels: int) -> tuple[np.ndarray, HeaderFacts]:
    """The pixels (H x W x 3 uint8 RGB, or H x W greyscale) and the header's facts of a DICOM
    photograph; one ``DataError`` naming ``path`` for anything srcrn cannot read, or for more
    than ``max_pixels`` pixels (refused before they are decoded)."""
    dataset = _dcmread(source, path)
    sop_class = str(dataset.get("SOPClassUID", ""))
    if sop_class not in PHOTOGRAPHS:
        modality = dataset.get("Modality", "none")
        raise DataError(
            path,
            f"not a photograph: SOP class {sop_class or 'missing'} (modality {modality}); srcrn reads "
            f"{', '.join(PHOTOGRAPHS.values())} images",
        )
    if "PixelData" not in dataset:
        raise DataError(path, "the DICOM object has no pixel data")
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise DataError(path, f"a multi-frame DICOM object ({frames} frames): srcrn reads single-frame photographs")
    samples = int(dataset.get("SamplesPerPixel", 1))
    if samples not in (1, 3):
        raise DataError(path, f"{samples} samples per pixel: srcrn reads colour (3) or greyscale (1) images")
    rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    if rows < 1 or columns < 1 or rows * columns > max_pixels:
        raise DataError(path, f"refused: absurd image size {columns}x{rows} (limit {max_pixels:,} pixels)")
    try:
        pixels = dataset.pixel_array  # YBR photometric interpretations come back as RGB (pydicom's as_rgb)
    except (RuntimeError, NotImplementedError, ValueError, AttributeError, OSError) as error:
        syntax = dataset.file_meta.get("TransferSyntaxUID", "unknown")
        raise DataError(
            path, f"cannot decode the DICOM pixel data (transfer syntax {syntax}): {str(error).splitlines()[0]}"
        ) from None
    return _as_uint8(pixels, int(dataset.get("BitsStored", 8))), header_facts(dataset, path)


def _as_uint8(pixels: np.ndarray, bits: int) -> np.ndarray:
    """8-bit pixels as they are; deeper ones scaled from their stored range."""
    if pixels.dtype == np.uint8:
        return pixels
    top = float(2**bits - 1)
    return np.clip(np.round(pixels.astype(np.float64) / top * 255), 0, 255).astype(np.uint8)


def header_facts(dataset: Any, path: Path) -> HeaderFacts:
    """Scale, age, sex and site from a DICOM header (see the module's docstring)."""
    notes: list[str] = []
    spacing = _spacing(dataset, notes)
    return HeaderFacts(
        age=_age(str(dataset.get("PatientAge", "") or ""), notes),
        sex={"M": "male", "F": "female"}.get(str(dataset.get("PatientSex", "") or "").upper()),
        site=_site(dataset, notes),
        pixel_spacing_mm=spacing,
        sop_class=str(dataset.get("SOPClassUID", "")),
        notes=tuple(notes),
    )


def _spacing(dataset: Any, notes: list[str]) -> float | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = dataset.get(keyword)
        if not value:
            continue
        try:
            row, column = (float(v) for v in value)
        except (TypeError, ValueError):
            notes.append(f"{keyword} {value!r} is not two numbers: no scale from the header")
            return None
        if row <= 0 or column <= 0 or abs(row - column) > 0.01 * max(row, column):
            notes.append(f"{keyword} {row:g}\\{column:g} mm is not square: no scale from the header")
            return None
        if not SCALE_RANGE[0] <= row <= SCALE_RANGE[1]:
            notes.append(f"{keyword} {row:g} mm per pixel is implausible for a dermoscope: no scale from the header")
            return None
        return row
    return _field_of_view(dataset, notes)


def _field_of_view(dataset: Any, notes: list[str]) -> float | None:
    """Millimetres per pixel from Field of View Dimension(s) (0018,1149, mm): a dermoscope's
    nominal field (e.g. a 25 mm contact plate) over the image's pixels. Two values are the field's
    rows and columns; one is a round field's diameter, which spans the image's shorter side."""
    value = dataset.get("FieldOfViewDimensions")
    if value is None or value == "":
        return None
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]  # VM 1 or 2
    try:
        sizes = [float(v) for v in values]
        rows, columns = int(dataset.Rows), int(dataset.Columns)
    except (TypeError, ValueError, AttributeError):
        notes.append(f"FieldOfViewDimensions {value!r} is not numbers: no scale from the header")
        return None
    if len(sizes) == 2 and all(s > 0 for s in sizes):
        row, column = sizes[0] / rows, sizes[1] / columns
    elif len(sizes) == 1 and sizes[0] > 0:
        row = column = sizes[0] / min(rows, columns)
    else:
        notes.append(f"FieldOfViewDimensions {value!r} is not one or two sizes in mm: no scale from the header")
        return None
    if abs(row - column) > 0.02 * max(row, column):
        notes.append(f"FieldOfViewDimensions {sizes[0]:g}x{sizes[1]:g} mm over {rows}x{columns} pixels "
                     "is not square: no scale from the header")  # fmt: skip
        return None
    if not SCALE_RANGE[0] <= row <= SCALE_RANGE[1]:
        notes.append(
            f"FieldOfViewDimensions gives {row:g} mm per pixel, implausible for a dermoscope: no scale from the header"
        )
        return None
    return row


_AGE = re.compile(r"^(\d{3})([DWMY])$")
_DAYS_PER_UNIT = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


def _age(value: str, notes: list[str]) -> float | None:
    """Patient's Age (AS: ``nnnD|W|M|Y``) in years."""
    if not value:
        return None
    match = _AGE.match(value.strip())
    if match is None:
        notes.append(f"Patient's Age {value!r} is not DICOM's nnnD/W/M/Y: age not taken from the header")
        return None
    years = int(match.group(1)) * _DAYS_PER_UNIT[match.group(2)]
    if years > 120:
        notes.append(f"Patient's Age {value!r} is over 120 years: age not taken from the header")
        return None
    return years


def site_codes() -> dict[tuple[str, str], str]:
    """(SNOMED CT code, "SCT") -> ISIC site, in ``_SITE_CODES`` order (each site's first code first)."""
    from pydicom.sr.codedict import codes

    return {(getattr(codes.SCT, name).value, "SCT"): site for site, names in _SITE_CODES.items() for name in names}


def site_meaning(value: str) -> str:
    """The meaning of one of ``site_codes``' SNOMED CT codes, as pydicom's dictionary gives it."""
    from pydicom.sr.codedict import codes

    names = (name for names in _SITE_CODES.values() for name in names)
    return next(getattr(codes.SCT, n).meaning for n in names if getattr(codes.SCT, n).value == value)


def _site(dataset: Any, notes: list[str]) -> str | None:
    regions = dataset.get("AnatomicRegionSequence") or []
    if not regions:
        return None
    code = regions[0]
    value, scheme = str(code.get("CodeValue", "")), str(code.get("CodingSchemeDesignator", ""))
    meaning = str(code.get("CodeMeaning", ""))
    site = site_codes().get((value, "SCT" if scheme in ("SCT", "SRT") else scheme))
    if site is None:
        site = next((s for pattern, s in _SITE_WORDS if re.search(pattern, meaning.lower())), None)
    if site is None:
        notes.append(f"anatomic region ({scheme} {value} {meaning!r}) has no ISIC site: site not taken from the header")
    return site
