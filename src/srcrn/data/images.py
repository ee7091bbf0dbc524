"""Decoding dermoscopic images and lesion masks, with one clear error line per bad file.

Real ISIC originals are JPEGs of up to ~6700x4500 pixels. Decoding them at full size only
to shrink them to 128x128 wastes most of the time, so JPEGs are decoded at reduced scale
(libjpeg's DCT scaling through ``Image.draft``) to at least twice the target side, then
resized with an antialiasing filter.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from srcrn.data.dicom import HeaderFacts, is_dicom, read_dicom
from srcrn.errors import DataError
from srcrn.shapes import ImageSize, width_height

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# 6700x4500 (the largest ISIC originals) is 30 MP; far above that is a decompression bomb
# or a broken header, and decoding it would exhaust memory.
MAX_PIXELS = 150_000_000
# Dermoscopic images are photos of a lesion: a side under 32 px holds no lesion to see, and a
# strip far longer than wide is a scan line or a broken file, not a dermoscopic field. Both
# would get a confident-looking answer for nothing, so they are refused wherever images enter.
MIN_SIDE = 32
MAX_ASPECT_RATIO = 5.0
# Draft to at least this multiple of the target side, so the final resize still antialiases.
DRAFT_OVERSAMPLE = 2
RESAMPLE = Image.Resampling.LANCZOS


# What the Python API and the server accept as an image: a file path, the bytes of an image
# file (an upload), a Pillow image, or an HxWx3 (or HxW) uint8 array.
ImageSource = Union[str, Path, bytes, Image.Image, np.ndarray]


def as_source(source: Any) -> ImageSource:
    """A file-like object (``io.BytesIO``, an open file) as the bytes it holds; anything else as
    it is (unsupported types are refused by ``open_image`` in one line)."""
    if hasattr(source, "read") and not isinstance(source, (str, Path, bytes, Image.Image, np.ndarray)):
        content = source.read()
        return bytes(content) if isinstance(content, (bytes, bytearray)) else content
    return source


def source_name(source: ImageSource, name: str | None = None) -> Path:
    """What an error about ``source`` names: its path, else ``name``, else its kind."""
    if isinstance(source, (str, Path)):
        return Path(source)
    return Path(name or f"<{'bytes' if isinstance(source, bytes) else type(source).__name__}>")


def _from_array(array: np.ndarray, path: Path) -> Image.Image:
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise DataError(path, f"expected an HxWx3 uint8 array, got shape {array.shape} of {array.dtype}")
    return Image.fromarray(np.ascontiguousarray(array))


# Where a DICOM image's header facts (``data.dicom.HeaderFacts``) travel with its pixels.
DICOM_INFO = "srcrn_dicom"


def _dicom_image(source: str | Path | bytes, path: Path) -> Image.Image:
    """A DICOM photograph decoded (pydicom reads the whole file in any case), its header's facts
    in ``info[DICOM_INFO]``."""
    pixels, facts = read_dicom(source, path, MAX_PIXELS)
    image = Image.fromarray(np.ascontiguousarray(pixels))
    image.info[DICOM_INFO] = facts
    image.format = "DICOM"  # not a JPEG: no DCT drafts, no libjpeg damage check
    return image


def declared_pixels(content: bytes) -> tuple[int, int] | None:
    """(width, height) an image file's header declares, read without decoding its pixels (for a
    DICOM file, Columns and Rows); None when the header cannot be read (decoding will say why)."""
    try:
        if is_dicom(content):
            import pydicom

            header = pydicom.dcmread(io.BytesIO(content), stop_before_pixels=True)
            return int(header.get("Columns", 0) or 0), int(header.get("Rows", 0) or 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as image:
                return image.size
    except Exception:  # any unreadable header: the decoder gives the one-line reason later
        return None


def open_image(source: ImageSource, *, photo: bool = True, name: str | None = None) -> Image.Image:
    """Open lazily (header only) and refuse unreadable files and absurd sizes; a ``photo`` (not
    a mask, which is checked against its image instead) must also have a dermoscopic shape.
    Errors name the file (or ``name``, for bytes and in-memory images)."""
    path = source_name(source, name)
    try:
        with warnings.catch_warnings():
            # Our own limit below gives the clearer message; Pillow's hard limit still applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if isinstance(source, Image.Image):
                # A copy: decoding at reduced scale (draft) would change the caller's image.
                image = source.copy()
            elif isinstance(source, np.ndarray):
                image = _from_array(source, path)
            elif isinstance(source, (bytes, str, Path)) and is_dicom(source):
                image = _dicom_image(source, path)
            elif isinstance(source, bytes):
                if not source:
                    raise DataError(path, "empty file (0 bytes)")
                image = Image.open(io.BytesIO(source))
            elif isinstance(source, (str, Path)):
                image = Image.open(path)
            else:
                raise DataError(
                    path,
                    f"unsupported input type {type(source).__name__}: give a path, the file's bytes (e.g. "
                    "file.read()), a PIL image or an HxWx3 uint8 array",
                )
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except Image.DecompressionBombError as error:
        raise DataError(path, f"refused: absurd image size ({error})") from None
    except UnidentifiedImageError:
        raise DataError(path, "cannot read image: not a recognised image format, or corrupt") from None
    except NotImplementedError as error:  # Pillow knows the format, not this variant (e.g. a DDS pixel format)
        raise DataError(path, f"cannot read image: an unsupported variant of its format ({error})") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise DataError(path, f"cannot read image ({type(error).__name__}: {error})") from None
    width, height = image.size
    if width < 1 or height < 1 or width * height > MAX_PIXELS:
        raise DataError(path, f"refused: absurd image size {width}x{height} (limit {MAX_PIXELS:,} pixels)")
    if photo and min(width, height) < MIN_SIDE:
        raise DataError(path, f"refused: image of {width}x{height} is too small (each side at least {MIN_SIDE} px)")
    if photo and max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise DataError(
            path, f"refused: image of {width}x{height} is too elongated (sides at most {MAX_ASPECT_RATIO:g}:1)"
        )
    return image


def _load_pixels(image: Image.Image, path: Path) -> Image.Image:
    try:
        image.load()
    except NotImplementedError as error:
        raise DataError(path, f"cannot read image: an unsupported variant of its format ({error})") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise DataError(path, f"image is truncated or corrupt ({error})") from None
    return image


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any Pillow mode (greyscale, palette, RGBA, CMYK, 16-bit) to an HxWx3 uint8 array."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image).astype(np.float64)
        top = 65535.0 if values.max(initial=0) > 255 else 255.0
        grey = np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def decode_image(
    source: ImageSource | ImageFile, size: ImageSize | None = None, *, name: str | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode ``source`` to RGB uint8 with EXIF orientation applied, resized to ``size`` (a side,
    or height x width) if given; also return the original (width, height) after orientation.

    With ``size``, JPEGs are decoded at the smallest DCT scale that keeps both sides at
    least ``DRAFT_OVERSAMPLE`` times the target's longer side.
    """
    file = ImageFile.of(source, name)
    target = width_height(size) if size is not None else None
    request = DRAFT_OVERSAMPLE * max(target) if target is not None else None
    image = file.pixels((request, request) if request is not None else None)
    if target is not None and image.size != target:
        image = image.resize(target, RESAMPLE)
    return to_rgb_array(image), file.original


def read_image(path: str | Path, size: ImageSize | None = None) -> np.ndarray:
    """``decode_image`` without the original size."""
    return decode_image(path, size)[0]


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    width, height = image.size
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block must not make an otherwise fine image unreadable
        orientation = 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def read_mask(
    path: str | Path, expected_size: tuple[int, int] | None = None, size: ImageSize | None = None
) -> np.ndarray:
    """Decode a lesion mask to a boolean array: at its own size, or nearest-resized to ``size``
    (a side, or height x width).

    Masks must be binary: only {0, 255} (ISIC) or {0, 1}. ``expected_size`` is the image's
    (width, height); a mask of another size is refused.
    """
    path = Path(path)
    mask = _load_pixels(open_image(path, photo=False), path)
    if expected_size is not None and mask.size != tuple(expected_size):
        raise DataError(
            path,
            f"mask size {mask.size[0]}x{mask.size[1]} differs from its image's {expected_size[0]}x{expected_size[1]}",
        )
    if mask.mode not in ("1", "L", "P", "LA"):
        raise DataError(path, f"mask must be a single-channel 8-bit image, found mode {mask.mode}")
    mask = mask.convert("L")
    # Pillow's histogram is a C loop over the pixels: far cheaper than np.unique on 12 MP.
    present = [value for value, count in enumerate(mask.histogram()) if count]
    if not (set(present) <= {0, 255} or set(present) <= {0, 1}):
        shown = ", ".join(str(v) for v in present[:6]) + (", ..." if len(present) > 6 else "")
        raise DataError(path, f"mask is not binary: {len(present)} distinct values ({shown}); expected 0/255")
    if size is not None:
        mask = mask.resize(width_height(size), Image.Resampling.NEAREST)
    return np.asarray(mask) > 0


Box = tuple[float, float, float, float]  # (left, top, right, bottom) as fractions of an image


def box_pixels(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """The pixel rectangle (x0, y0, x1, y1), end exclusive, that a fractional ``box`` covers on
    a ``width`` x ``height`` image: outward to whole pixels, never empty. The one box
    arithmetic of crops, crop masks and heatmaps, so that all three cover the same pixels.

    Args:
        box: (left, top, right, bottom) as fractions of the image.
        width: the image's width in pixels.
        height: the image's height in pixels.

    Returns:
        (x0, y0, x1, y1) with x0 < x1 and y0 < y1.
    """
    left, top, right, bottom = box
    x0, y0 = int(np.floor(left * width)), int(np.floor(top * height))
    return x0, y0, max(int(np.ceil(right * width)), x0 + 1), max(int(np.ceil(bottom * height)), y0 + 1)


def decode_crop(source: ImageSource | ImageFile, box: Box, size: int, *, name: str | None = None) -> np.ndarray:
    """The region ``box`` = (left, top, right, bottom), as fractions of the oriented image,
    decoded at reduced scale (enough pixels for ``DRAFT_OVERSAMPLE * size`` across the
    region) and resized to size x size RGB uint8."""
    left, top, right, bottom = box
    smallest = max(min(right - left, bottom - top), 1e-3)
    request = int(np.ceil(DRAFT_OVERSAMPLE * size / smallest))
    image = ImageFile.of(source, name).pixels((request, request))
    return to_rgb_array(image.crop(box_pixels(box, *image.size)).resize((size, size), RESAMPLE))


def decode_image_fit(
    source: ImageSource | ImageFile, max_side: int, *, name: str | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """RGB uint8 with EXIF orientation applied, shrunk (aspect kept) so that its longer side is
    at most ``max_side``, decoded at reduced scale; also the original (width, height)."""
    file = ImageFile.of(source, name)
    original = file.original
    scale = min(1.0, max_side / max(original))
    # A full-scale request (scale 1) decodes as no request does: the decode is then shared.
    image = file.pixels((int(original[0] * scale) + 1, int(original[1] * scale) + 1) if scale < 1.0 else original)
    target = (max(1, round(original[0] * scale)), max(1, round(original[1] * scale)))
    if image.size != target:
        image = image.resize(target, RESAMPLE)
    return to_rgb_array(image), original


class ImageFile:
    """One image source decoded for several uses (each model's size, the lesion's crop, the
    working size of overlays and measurements), each DCT scale decoded once.

    Every use asks for a JPEG draft (``Image.draft``) of at least some size; uses whose
    requests land on the same DCT scale get the very same decoded pixels, so sharing them
    changes no output. For the ISIC 2017 images (mostly 256x192) every use lands on full
    scale: one decode instead of three. Not thread-safe: one image, one worker at a time.
    """

    def __init__(self, source: ImageSource, name: str | None = None):
        """An image source, opened lazily and decoded once per size.

        Args:
            source: a path, bytes, a file-like object, a Pillow image or an array.
            name: what errors call it.
        """
        source = as_source(source)
        self.source, self.name = source, name
        self.path = source_name(source, name)
        header = open_image(source, name=name)  # refuses bad files and absurd sizes up front
        self.original = _oriented_size(header)
        self.is_jpeg = header.format == "JPEG"
        self.mode = header.mode  # the file's colour mode (the input gate refuses greyscale, says what it converted)
        self.dicom: HeaderFacts | None = header.info.get(DICOM_INFO)  # a DICOM image's header facts
        self._unused: Image.Image | None = header  # the first use decodes it: one open for one use
        self._decoded: dict[tuple, Image.Image] = {}

    @classmethod
    def of(cls, source: ImageSource | ImageFile, name: str | None = None) -> ImageFile:
        """``source`` as an ``ImageFile`` (an ``ImageFile`` is returned as it is, so that it is decoded once).

        Args:
            source: a path, bytes, a file-like object, a Pillow image or an array.
            name: what errors call it (default: the path, or ``<image>``).

        Returns:
            The image file.
        """
        return source if isinstance(source, ImageFile) else cls(source, name)

    def pixels(self, draft: tuple[int, int] | None = None) -> Image.Image:
        """The oriented image (RGB or L) decoded at the smallest DCT scale whose sides are at
        least ``draft`` (full scale without one, or for other formats)."""
        if self.dicom is not None and self._decoded:  # decoded whole on opening: never twice
            return next(iter(self._decoded.values()))
        image, self._unused = self._unused or open_image(self.source, name=self.name), None
        if draft is not None and self.is_jpeg:
            image.draft("RGB", draft)
        key = (image.size, image.mode)
        if key not in self._decoded:
            image = ImageOps.exif_transpose(_load_pixels(image, self.path))
            if image.mode not in ("RGB", "L"):
                image = Image.fromarray(to_rgb_array(image))
            self._decoded[key] = image
        return self._decoded[key]


# libjpeg reports corrupt data (a damaged or partly overwritten file) as a warning on stderr and
# decodes on; Pillow silences it. OpenCV's decoder lets it through: it is caught by pointing the
# process's stderr at a file for the few milliseconds of a reduced-scale decode (one at a time:
# the descriptor is the process's).
_STDERR = threading.Lock()


def jpeg_damage(file: ImageFile) -> str | None:
    """What libjpeg reported of a damaged JPEG (e.g. 'Corrupt JPEG data: premature end of data
    segment'), or None for an intact one (or another format, or pixels given in memory)."""
    if not file.is_jpeg:
        return None
    source = file.source
    if isinstance(source, (str, Path)):
        data = Path(source).read_bytes()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        return None
    with _STDERR, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_8)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        reported = [line.strip() for line in sink.read().decode(errors="replace").splitlines() if line.strip()]
    return reported[0] if reported else None
