"""Clinical context of each image: the patient's approximate age, sex and the lesion's body
site, as the ISIC challenges publish them, read and validated in one place.

Accepted forms (recognised by their columns; extra columns are ignored):

* ISIC 2019: ``image,age_approx,anatom_site_general,lesion_id,sex``
  (``shared/data/isic-dev/metadata.csv``);
* ISIC 2020: ``image_name,patient_id,sex,age_approx,anatom_site_general_challenge,...``;
* the ISIC Archive / ``isic-cli``: ``isic_id,...,age_approx,anatom_site_general,sex,...``;
* ISIC 2017: ``image_id,age_approximate,sex`` (no site).

A ``pixel_spacing_mm`` column (millimetres per pixel of the image, as DICOM's PixelSpacing)
gives an image its scale: the measurements use it, the model never does.

Every value may be missing (an empty cell, ``unknown``, ``NA``), per image and per field; a
model trained with metadata scores an image without it. A wrong value (an age outside 0-120,
an unknown sex or site), an id twice, or an id the data lacks is one error line naming the file,
the line and the value. torch-free: the deployed pipeline reads it too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, get_args

import numpy as np

from srcrn.errors import DataError
from srcrn.settings import ClinicalField

METADATA_FILE = "metadata.csv"
CLINICAL_FIELDS: tuple[str, ...] = get_args(ClinicalField)
SEXES = ("male", "female")
# The ISIC 2019 anatomic sites; ISIC 2020's plain "torso" is a torso of unknown side.
SITES = (
    "anterior torso",
    "posterior torso",
    "lateral torso",
    "upper extremity",
    "lower extremity",
    "head/neck",
    "palms/soles",
    "oral/genital",
)
TORSO_UNSPECIFIED = "torso"
AGE_RANGE = (0.0, 120.0)
MISSING = frozenset({"", "unknown", "na", "nan", "none", "null", "n/a", "-"})

# Column names per field, in the order they are looked for.
ID_COLUMNS = ("image", "image_name", "isic_id", "image_id")
AGE_COLUMNS = ("age_approx", "age_approximate", "age")
SEX_COLUMNS = ("sex",)
SITE_COLUMNS = ("anatom_site_general", "anatom_site_general_challenge", "site")
SCALE_COLUMNS = ("pixel_spacing_mm", "mm_per_pixel")
# A plausible scale: a dermoscope's field of 5-50 mm over 100-10 000 pixels (1e-3 to 0.5 mm per
# pixel), with a margin. Beyond it the number is a typo (e.g. pixels per mm) and is refused.
SCALE_RANGE = (1e-4, 1.0)


@dataclass(frozen=True)
class ClinicalContext:
    """What a clinician knows of the patient and the lesion; None = not known."""

    age: float | None = None
    sex: str | None = None  # "male" | "female"
    site: str | None = None  # one of SITES, or "torso"
    # Not clinical and never a model input: the image's scale, for measurements in millimetres.
    pixel_spacing_mm: float | None = None

    def __post_init__(self) -> None:
        """Check the values as a CSV's are checked (for values given by code: API, service, page)."""
        # The same checks as a CSV's, for values given by code (API, service, page).
        check_age(self.age, "age")
        check_scale(self.pixel_spacing_mm, "pixel_spacing_mm")
        if self.sex is not None and self.sex not in SEXES:
            raise DataError("sex", f"unknown value {self.sex!r}; expected one of {', '.join(SEXES)}")
        if self.site is not None and self.site not in (*SITES, TORSO_UNSPECIFIED):
            raise DataError("site", f"unknown value {self.site!r}; expected one of {', '.join(SITES)} (or torso)")

    @classmethod
    def of(
        cls, age: Any = None, sex: Any = None, site: Any = None, *, pixel_spacing_mm: Any = None, where: str = ""
    ) -> ClinicalContext:
        """From loose values (strings from a form or a CSV, numbers, None): normalised, validated."""
        prefix = f"{where}: " if where else ""
        return cls(
            parse_age(age, f"{prefix}age"),
            parse_sex(sex, f"{prefix}sex"),
            parse_site(site, f"{prefix}site"),
            parse_scale(pixel_spacing_mm, f"{prefix}pixel_spacing_mm"),
        )

    def with_scale(self, pixel_spacing_mm: float | None) -> ClinicalContext:
        """This context with ``pixel_spacing_mm`` where it has none of its own."""
        if pixel_spacing_mm is None or self.pixel_spacing_mm is not None:
            return self
        return replace(self, pixel_spacing_mm=pixel_spacing_mm)

    def given(self) -> list[str]:
        """The fields this context holds, e.g. ['age', 'site']."""
        return [name for name in CLINICAL_FIELDS if getattr(self, name) is not None]

    def to_dict(self) -> dict[str, Any]:
        """The clinical fields (not the scale), JSON-ready."""
        return {"age": self.age, "sex": self.sex, "site": self.site}  # the clinical fields only


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in MISSING


def check_age(age: float | None, where: str) -> None:
    """Refuse an age outside AGE_RANGE, naming ``where`` it came from."""
    if age is not None and not (AGE_RANGE[0] <= age <= AGE_RANGE[1]):
        raise DataError(where, f"{age:g} is outside {AGE_RANGE[0]:g}-{AGE_RANGE[1]:g} years")


def check_scale(scale: float | None, where: str) -> None:
    """Refuse an implausible mm-per-pixel scale (outside SCALE_RANGE), naming ``where``."""
    if scale is not None and not (SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]):
        raise DataError(
            where,
            f"{scale:g} mm per pixel is outside {SCALE_RANGE[0]:g}-{SCALE_RANGE[1]:g} (pixels per mm given instead?)",
        )


def _parse_number(value: Any, where: str, what: str, check: Callable[[float, str], None]) -> float | None:
    """A number from a cell or a form field (None when missing), refused by ``check`` when absurd."""
    if _missing(value):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        raise DataError(where, f"{value!r} is not {what}") from None
    if math.isnan(number):
        return None
    check(number, where)
    return number


def parse_scale(value: Any, where: str) -> float | None:
    """Millimetres per pixel from a cell or form field; None when missing."""
    return _parse_number(value, where, "a number of millimetres per pixel", check_scale)


def parse_age(value: Any, where: str) -> float | None:
    """Age in years from a cell or form field; None when missing."""
    return _parse_number(value, where, "an age in years", check_age)


def parse_sex(value: Any, where: str) -> str | None:
    """ "male" or "female" (also m/f, any case) from a cell or form field; None when missing."""
    if _missing(value):
        return None
    sex = str(value).strip().lower()
    sex = {"m": "male", "f": "female"}.get(sex, sex)
    if sex not in SEXES:
        raise DataError(where, f"unknown value {value!r}; expected male, female or empty")
    return sex


def parse_site(value: Any, where: str) -> str | None:
    """One of SITES (or "torso") from a cell or form field, spacing and case normalised; None when missing."""
    if _missing(value):
        return None
    site = " ".join(str(value).strip().lower().replace("_", " ").split())
    site = site.replace(" / ", "/")
    if site not in (*SITES, TORSO_UNSPECIFIED):
        raise DataError(where, f"unknown body site {value!r}; expected one of {', '.join(SITES)}, torso or empty")
    return site


def _column(columns: Sequence[str], candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in columns), None)


def read_metadata(path: str | Path, ids: Iterable[str] | None = None) -> dict[str, ClinicalContext]:
    """Each image's clinical context from a metadata CSV; with ``ids``, an id the data lacks
    is refused (a metadata file of another folder?). Images without a row have none."""
    import pandas as pd  # here: a prediction without metadata does not pay pandas's import

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "metadata file not found")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(path, "not a CSV file (not UTF-8 text)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DataError(path, f"not a readable CSV file ({str(error).splitlines()[0][:120]})") from None
    columns = [str(c).strip() for c in table.columns]
    table.columns = columns
    id_column = _column(columns, ID_COLUMNS)
    found = {
        "age": _column(columns, AGE_COLUMNS),
        "sex": _column(columns, SEX_COLUMNS),
        "site": _column(columns, SITE_COLUMNS),
        "scale": _column(columns, SCALE_COLUMNS),
    }
    if id_column is None or not any(found.values()):
        raise DataError(
            path,
            f"unexpected columns {','.join(columns)[:160]}; expected an image id column "
            f"({' | '.join(ID_COLUMNS)}) and age_approx, sex, anatom_site_general (ISIC 2017/2019/2020 forms) "
            "and/or pixel_spacing_mm",
        )
    known = set(ids) if ids is not None else None
    contexts: dict[str, ClinicalContext] = {}
    for line, row in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        image_id = str(row[id_column]).strip()
        where = f"{path}: line {line}"
        if not image_id:
            raise DataError(where, f"empty {id_column}")
        if image_id in contexts:
            raise DataError(where, f"{image_id} appears twice")
        if known is not None and image_id not in known:
            raise DataError(where, f"unknown image id {image_id!r} (not in the data folder; metadata of another set?)")
        values = {name: (row[column] if column else None) for name, column in found.items()}
        contexts[image_id] = ClinicalContext(
            parse_age(values["age"], f"{where}: {found['age']}"),
            parse_sex(values["sex"], f"{where}: {found['sex']}"),
            parse_site(values["site"], f"{where}: {found['site']}"),
            parse_scale(values["scale"], f"{where}: {found['scale']}"),
        )
    return contexts


def find_metadata(data: str | Path) -> Path | None:
    """A data folder's own ``metadata.csv`` (beside ``labels.csv``), if it has one."""
    candidate = Path(data) / METADATA_FILE
    return candidate if candidate.is_file() else None


NO_CONTEXT = ClinicalContext()


def contexts_for(ids: Sequence[str], metadata: Mapping[str, ClinicalContext]) -> list[ClinicalContext]:
    """Each id's context, in order; NO_CONTEXT for ids without a row."""
    return [metadata.get(i, NO_CONTEXT) for i in ids]


def clinical_feature_names(fields: Sequence[str]) -> list[str]:
    """The model columns of ``fields``: age in years, sex as 1 = male, one indicator per site
    plus one for any torso (ISIC 2020's unsided 'torso' sets only that one)."""
    names: list[str] = []
    if "age" in fields:
        names.append("clinical_age")
    if "sex" in fields:
        names.append("clinical_sex_male")
    if "site" in fields:
        names += [f"clinical_site_{site.replace(' ', '_').replace('/', '_')}" for site in SITES]
        names.append("clinical_site_any_torso")
    return names


def clinical_features(contexts: Sequence[ClinicalContext], fields: Sequence[str]) -> np.ndarray:
    """float64 [N, len(clinical_feature_names(fields))]; NaN where a value is not known (the
    gradient boosting learns where missing values go)."""
    rows = []
    for context in contexts:
        row: list[float] = []
        if "age" in fields:
            row.append(np.nan if context.age is None else float(context.age))
        if "sex" in fields:
            row.append(np.nan if context.sex is None else float(context.sex == "male"))
        if "site" in fields:
            if context.site is None:
                row += [np.nan] * (len(SITES) + 1)
            elif context.site == TORSO_UNSPECIFIED:
                row += [np.nan if "torso" in site else 0.0 for site in SITES] + [1.0]
            else:
                row += [float(context.site == site) for site in SITES] + [float("torso" in context.site)]
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(len(contexts), len(clinical_feature_names(fields)))


def load_folder_metadata(
    data: str | Path, path: str | Path | None = None, ids: Iterable[str] | None = None, *, required: bool = False
) -> dict[str, ClinicalContext]:
    """The clinical context of a data folder's images: from ``path`` when given, else the
    folder's own ``metadata.csv``; empty when there is none (an error with ``required``)."""
    found = Path(path) if path is not None else find_metadata(data)
    if found is None:
        if required:
            raise DataError(
                Path(data) / METADATA_FILE,
                "no clinical metadata for this data folder; pass --metadata FILE "
                "(ISIC 2017/2019/2020 form) or train without --clinical",
            )
        return {}
    return read_metadata(found, ids)
