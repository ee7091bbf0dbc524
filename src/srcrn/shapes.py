"""A segmenter's input size: a square side (``128``, the paper's) or height x width (``192x256``,
the ISIC images' own 3:4 shape, issue 30).

One value for one concept, ``image_size``, wherever it travels (settings, config.yaml, the
checkpoint, the cache, bundle.json, the card): an ``int`` for a square, so every square model,
cache and bundle written before keeps its exact form, and ``(height, width)`` otherwise (a list
in JSON and YAML). Height first, as in arrays and in torch; Pillow and OpenCV take (width,
height), hence ``width_height``.
"""

from __future__ import annotations

import re

ImageSize = int | tuple[int, int]

_TEXT = re.compile(r"^\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*$")


def as_image_size(value: object) -> ImageSize:
    """``value`` as an image size: 128, "128", "192x256" (height x width), [192, 256] or
    (192, 256); a square given as two sides becomes its side. Anything else is refused.

    Args:
        value: what a flag, a config file, a checkpoint or bundle.json holds.

    Returns:
        An ``int`` for a square, ``(height, width)`` otherwise.

    Raises:
        ValueError: not a size (the message says which forms are accepted).
    """
    sides: list[int]
    if isinstance(value, bool):
        raise ValueError("expected a size, not a yes/no value")
    if isinstance(value, int):
        sides = [value]
    elif isinstance(value, str):
        match = _TEXT.match(value)
        if match is None:
            raise ValueError(f"'{value}' is not a size: give a side (128) or height x width (192x256)")
        sides = [int(g) for g in match.groups() if g is not None]
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(type(v) is int for v in value):
        sides = [int(v) for v in value]
    else:
        raise ValueError(f"{value!r} is not a size: give a side (128) or height x width (192x256)")
    height, width = sides[0], sides[-1]
    if height < 1 or width < 1:
        raise ValueError(f"a size needs positive sides, not {height}x{width}")
    return height if height == width else (height, width)


def height_width(size: ImageSize) -> tuple[int, int]:
    """(height, width) of ``size``."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def width_height(size: ImageSize) -> tuple[int, int]:
    """(width, height) of ``size``: the order of Pillow's and OpenCV's resizes."""
    height, width = height_width(size)
    return width, height


def size_text(size: ImageSize) -> str:
    """'128' for a square, '192x256' (height x width) otherwise: what names and messages show."""
    height, width = height_width(size)
    return str(height) if height == width else f"{height}x{width}"


def square_side(size: ImageSize) -> int:
    """The side of a square ``size``; another shape is refused (a stage-2 input is square)."""
    height, width = height_width(size)
    if height != width:
        raise ValueError(f"{size_text(size)}: a stage-2 input is square: give one side (e.g. 128)")
    return height
