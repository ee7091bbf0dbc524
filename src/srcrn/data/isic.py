"""ISIC-layout folders: find images, masks and labels, and refuse inconsistent data early.

Accepted layouts (``root`` is what the user passes as ``--data``):

* simple: ``images/``, ``masks/`` and ``labels.csv`` (the layout of ``shared/data/isic-dev``);
* official ISIC 2017: ``ISIC-2017_Training_Data/``, ``ISIC-2017_Training_Part1_GroundTruth/``
  and ``ISIC-2017_Training_Part3_GroundTruth.csv`` (likewise Validation / Test);
* official ISIC 2018: ``ISIC2018_Task1-2_Training_Input/``, ``ISIC2018_Task1_Training_GroundTruth/``
  and ``ISIC2018_Task3_Training_GroundTruth.csv`` (also inside its own folder);
* flat: images directly in ``root`` (masks beside them as ``<id>_segmentation.png``).

Ids are free-form file stems (``ISIC_0000000``, PH2's ``IMD002``); a mask is
``<id>_segmentation.png``. Labels are read from the ISIC 2017 form
(``image_id,melanoma,seborrheic_keratosis``) or the ISIC 2018 Task 3 / HAM10000 form
(``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from srcrn.data.images import IMAGE_SUFFIXES
from srcrn.errors import DataError

MASK_SUFFIX = "_segmentation"
IMAGE_DIR_PATTERNS = ("images", "ISIC-2017_*_Data", "ISIC2018_Task1-2_*_Input", "ISIC2018_Task3_*_Input")
MASK_DIR_PATTERNS = ("masks", "ISIC-2017_*_Part1_GroundTruth", "ISIC2018_Task1_*_GroundTruth")
LABEL_FILE_PATTERNS = (
    "labels.csv",
    "ISIC-2017_*_Part3_GroundTruth.csv",
    "ISIC2018_Task3_*_GroundTruth.csv",
    "ISIC2018_Task3_*_GroundTruth/ISIC2018_Task3_*_GroundTruth.csv",
)
SOURCES_FILE = "sources.csv"
SOURCES_COLUMNS = ("image_id", "source", "isic2017_split", "duplicate_group")
# Files that sit beside ISIC images but are not images of their own.
NON_IMAGE_STEM_SUFFIXES = (MASK_SUFFIX, "_superpixels")


@dataclass(frozen=True)
class IsicSample:
    """One image of an ISIC-layout folder: its id, image file, mask file and melanoma label (each optional but the image)."""

    image_id: str
    image_path: Path
    mask_path: Path | None = None
    melanoma: float | None = None
    seborrheic_keratosis: float | None = None


@dataclass
class IsicDataset:
    """An ISIC-layout folder, listed and cross-checked (no pixel is decoded here)."""

    root: Path
    samples: list[IsicSample]
    labels_path: Path | None = None
    sources: pd.DataFrame | None = None
    _by_id: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        """Index the samples by id."""
        self._by_id = {sample.image_id: index for index, sample in enumerate(self.samples)}

    @classmethod
    def from_dir(
        cls,
        root: str | Path,
        *,
        require_masks: bool = False,
        require_labels: bool = False,
        labels: str | Path | None = None,
    ) -> IsicDataset:
        """The images of an ISIC-layout folder (images/, masks/, a labels CSV; the official ISIC names too), validated.

        Args:
            root: the data folder.
            require_masks: refuse images without a mask.
            require_labels: refuse images without a label.
            labels: the labels CSV (default: the one found in ``root``).

        Returns:
            The dataset.

        Raises:
            DataError: one line naming the file: no folder or no images, a label of an image
                the folder lacks, a mask or label missing where required, several candidate
                folders, or a labels CSV that is not valid (its columns, ids, values).
        """
        root = Path(root)
        if not root.is_dir():
            raise DataError(root, "data folder not found")
        images_dir = _find_one(root, IMAGE_DIR_PATTERNS, kind="image folder", is_dir=True) or root
        masks_dir = _find_one(root, MASK_DIR_PATTERNS, kind="mask folder", is_dir=True)
        if masks_dir is None and images_dir == root:
            masks_dir = root
        labels_path = Path(labels) if labels else _find_one(root, LABEL_FILE_PATTERNS, kind="labels CSV")

        images = _list_images(images_dir)
        if not images:
            raise DataError(images_dir, f"no images ({', '.join(IMAGE_SUFFIXES)}) found")
        masks = _list_masks(masks_dir, images) if masks_dir is not None else {}
        label_table = read_labels(labels_path) if labels_path is not None else None
        if label_table is not None and labels_path is not None:
            for image_id in label_table.index:
                if image_id not in images:
                    raise DataError(labels_path, f"label for '{image_id}' has no image in {images_dir}")

        samples = []
        for image_id in sorted(images):
            image_path = images[image_id]
            mask_path = masks.get(image_id)
            if require_masks and mask_path is None:
                expected = (masks_dir or root / "masks") / f"{image_id}{MASK_SUFFIX}.png"
                raise DataError(image_path, f"image has no mask (expected {expected})")
            melanoma = keratosis = None
            if label_table is not None and image_id in label_table.index:
                row = label_table.loc[image_id]
                melanoma = float(row["melanoma"])
                keratosis = None if pd.isna(row["seborrheic_keratosis"]) else float(row["seborrheic_keratosis"])
            elif require_labels:
                where = labels_path or f"{root} (no labels CSV found)"
                raise DataError(image_path, f"image has no label in {where}")
            samples.append(IsicSample(image_id, image_path, mask_path, melanoma, keratosis))

        sources_path = root / SOURCES_FILE
        sources = read_sources(sources_path) if sources_path.is_file() else None
        return cls(root=root, samples=samples, labels_path=labels_path, sources=sources)

    # -- access -----------------------------------------------------------------------------
    def __len__(self) -> int:
        """The number of images."""
        return len(self.samples)

    def __iter__(self):
        """The samples, in order."""
        return iter(self.samples)

    @property
    def ids(self) -> list[str]:
        """The image ids, in the dataset's order (sorted, as read from the folder)."""
        return [sample.image_id for sample in self.samples]

    def sample(self, image_id: str) -> IsicSample:
        """The sample of ``image_id``.

        Raises:
            DataError: an id the folder does not hold.
        """
        try:
            return self.samples[self._by_id[image_id]]
        except KeyError:
            raise DataError(self.root, f"unknown image id '{image_id}'") from None

    def subset(self, image_ids: list[str]) -> IsicDataset:
        """The samples of ``image_ids`` only, as a dataset of the same folder."""
        return IsicDataset(self.root, [self.sample(i) for i in image_ids], self.labels_path, self.sources)

    @property
    def has_masks(self) -> bool:
        """Whether every image has a mask."""
        return all(sample.mask_path is not None for sample in self.samples)

    def melanoma(self) -> np.ndarray:
        """Melanoma labels as a float array; NaN where unknown."""
        return np.array([np.nan if s.melanoma is None else s.melanoma for s in self.samples], dtype=float)

    def duplicate_groups(self) -> list[str]:
        """Near-duplicate group of each image (the image's own id when it has none)."""
        if self.sources is None:
            return self.ids
        groups = self.sources["duplicate_group"].to_dict()
        return [groups.get(image_id) or image_id for image_id in self.ids]


def _find_one(root: Path, patterns: tuple[str, ...], *, kind: str, is_dir: bool = False) -> Path | None:
    for pattern in patterns:
        found = sorted(p for p in root.glob(pattern) if (p.is_dir() if is_dir else p.is_file()))
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise DataError(root, f"holds several {kind}s ({names}); point --data at a folder with one split")
        if found:
            return found[0]
    return None


def _is_image_file(path: Path) -> bool:
    return (
        path.is_file()
        and not path.name.startswith(".")
        and path.suffix.lower() in IMAGE_SUFFIXES
        and not path.stem.endswith(NON_IMAGE_STEM_SUFFIXES)
    )


def _list_images(folder: Path) -> dict[str, Path]:
    images: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not _is_image_file(path):
            continue
        if path.stem in images:
            raise DataError(path, f"duplicate image id '{path.stem}' (also {images[path.stem].name})")
        images[path.stem] = path
    return images


def _list_masks(folder: Path, images: dict[str, Path]) -> dict[str, Path]:
    masks: dict[str, Path] = {}
    for path in sorted(folder.glob(f"*{MASK_SUFFIX}.*")):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        image_id = path.stem[: -len(MASK_SUFFIX)]
        if image_id in masks:
            raise DataError(path, f"duplicate mask for '{image_id}' (also {masks[image_id].name})")
        if image_id not in images:
            raise DataError(path, f"mask has no image '{image_id}'")
        masks[image_id] = path
    return masks


def read_labels(path: str | Path) -> pd.DataFrame:
    """Read ISIC 2017 or ISIC 2018 Task 3 labels into one frame, indexed by image id.

    Columns: ``melanoma`` (0/1) and ``seborrheic_keratosis`` (0/1, NaN where the format
    does not say, as in ISIC 2018 where BKL mixes several diagnoses).
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, skipinitialspace=True)
    except FileNotFoundError:
        raise DataError(path, "labels CSV not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(path, f"cannot parse labels CSV ({error})") from None
    table.columns = [str(c).strip() for c in table.columns]
    columns = set(table.columns)
    if {"image_id", "melanoma"} <= columns:
        frame = pd.DataFrame({"image_id": table["image_id"], "melanoma": table["melanoma"]})
        frame["seborrheic_keratosis"] = table.get("seborrheic_keratosis")
    elif {"image", "MEL"} <= columns:
        frame = pd.DataFrame({"image_id": table["image"], "melanoma": table["MEL"], "seborrheic_keratosis": None})
    else:
        raise DataError(
            path,
            f"unexpected columns {','.join(table.columns)}; expected image_id,melanoma,seborrheic_keratosis "
            "(ISIC 2017) or image,MEL,NV,BCC,AKIEC,BKL,DF,VASC (ISIC 2018 Task 3)",
        )
    frame["image_id"] = frame["image_id"].fillna("").str.strip()
    blank = frame.index[frame["image_id"] == ""]
    if len(blank):
        raise DataError(path, f"row {blank[0] + 2}: empty image id")
    duplicated = frame["image_id"][frame["image_id"].duplicated()]
    if len(duplicated):
        raise DataError(path, f"duplicate id '{duplicated.iloc[0]}'")
    for column in ("melanoma", "seborrheic_keratosis"):
        values = pd.to_numeric(frame[column], errors="coerce")
        for row, (raw, value) in enumerate(zip(frame[column], values)):
            missing = raw is None or (isinstance(raw, float) and np.isnan(raw)) or str(raw).strip() == ""
            if column == "melanoma" and missing:
                raise DataError(path, f"'{frame['image_id'].iloc[row]}': melanoma label missing")
            if not missing and value not in (0.0, 1.0):
                raise DataError(path, f"'{frame['image_id'].iloc[row]}': {column} must be 0 or 1, found '{raw}'")
        frame[column] = values
    return frame.set_index("image_id")


def read_sources(path: str | Path) -> pd.DataFrame:
    """``sources.csv``: per image its source, official ISIC 2017 split and near-duplicate group."""
    path = Path(path)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in SOURCES_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(path, f"missing columns {','.join(missing)}; expected {','.join(SOURCES_COLUMNS)}")
    return table.set_index("image_id")
