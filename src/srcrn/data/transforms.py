"""Joint image + mask transforms (albumentations), named so configs can pick them."""

from __future__ import annotations

from typing import TYPE_CHECKING, get_args

import albumentations as A
import cv2
import numpy as np

from srcrn.data.normalization import normalize_numpy
from srcrn.errors import ConfigError
from srcrn.settings import AugmentFamily, ClassifierAugment, SegmentationAugment

if TYPE_CHECKING:
    import torch

AUGMENTATIONS = get_args(SegmentationAugment)


def build_transform(augment: str = "none", *, train: bool = True, square: bool = True) -> A.Compose:
    """``none``: normalise only (the paper's recipe); ``flip``: flips and 90-degree turns;
    ``strong``: flips, free rotation, scale/shift and colour jitter. Validation never augments.
    A quarter turn transposes an image, so a height x width input (``square`` False) gets the
    flips (their pair is the half turn) and the free rotation on its own canvas, not quarter turns."""
    if augment not in AUGMENTATIONS:
        raise ConfigError(f"unknown augmentation '{augment}'; choose one of {', '.join(AUGMENTATIONS)}")
    steps: list = []
    if train and augment in ("flip", "strong"):
        steps += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)] + ([A.RandomRotate90(p=0.5)] if square else [])
    if train and augment == "strong":
        steps += [
            A.Affine(
                scale=(0.8, 1.2),
                translate_percent=(-0.08, 0.08),
                rotate=(-180, 180),
                border_mode=cv2.BORDER_REFLECT_101,
                p=0.7,
            ),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.15, hue=0.03, p=0.7),
        ]
    return A.Compose(steps)  # uint8 out: normalised after, by normalize_batch (the one normalisation)


def normalize_batch(images) -> torch.Tensor:
    """uint8 NHWC images (numpy) to the float NCHW tensor the models take: ``normalize_numpy``
    (the arithmetic prediction uses too), as a tensor."""
    import torch

    return torch.from_numpy(normalize_numpy(images))


AUGMENT_FAMILIES = get_args(AugmentFamily)


def _geometry() -> A.Compose:
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.Affine(scale=(0.85, 1.15), rotate=(-180, 180), border_mode=cv2.BORDER_REFLECT_101, p=1.0),
        ]
    )


def _colour() -> A.Compose:
    return A.Compose([A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.0, hue=0.04, p=1.0)])


def lesion_axis_distortion(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, stretch: tuple[float, float] = (0.8, 1.25)
) -> np.ndarray:
    """Stretch or squeeze the image along the lesion's principal axis (from its mask's second
    moments), about the lesion's centre: the lesion changes shape the way lesions do, not
    the way the camera turns. An empty mask uses the image centre and the horizontal axis."""
    height, width = mask.shape
    rows, columns = np.nonzero(mask)
    if rows.size >= 3:
        centre = np.array([columns.mean(), rows.mean()])
        eigenvalues, eigenvectors = np.linalg.eigh(np.cov(np.stack([columns, rows])))
        axis = eigenvectors[:, np.argmax(eigenvalues)]
    else:
        centre, axis = np.array([width / 2, height / 2]), np.array([1.0, 0.0])
    factor = rng.uniform(*stretch)
    # A = I + (factor - 1) * a a^T stretches along the unit axis a and keeps the normal.
    matrix = np.eye(2) + (factor - 1.0) * np.outer(axis, axis)
    affine = np.hstack([matrix, (centre - matrix @ centre)[:, None]]).astype(np.float32)
    return cv2.warpAffine(image, affine, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


class MelanomaAugmenter:
    """The augmentation of one balancing copy: ``geometry`` (flips, rotation, scale),
    ``colour`` (brightness, contrast, hue), ``axis`` (lesion-axis distortion) or ``mix`` (one
    of the three, at random, per copy)."""

    def __init__(self, family: str, seed: int = 0):
        """The augmenter of ``family`` (geometry, colour, axis, mix), seeded.

        Raises:
            ConfigError: an unknown family.
        """
        if family not in AUGMENT_FAMILIES:
            raise ConfigError(f"unknown augmentation family '{family}'; choose one of {', '.join(AUGMENT_FAMILIES)}")
        self.family = family
        self.rng = np.random.default_rng(seed)
        self.geometry, self.colour = _geometry(), _colour()

    def __call__(self, image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """``image`` augmented by the family (``mix``: one of the three at random); ``axis`` needs the lesion ``mask``."""
        family = self.family
        if family == "mix":
            family = ("geometry", "colour", "axis")[self.rng.integers(3)]
        if family == "geometry":
            return self.geometry(image=image)["image"]
        if family == "colour":
            return self.colour(image=image)["image"]
        if mask is None:
            raise ConfigError("axis augmentation needs lesion masks (a --segmenter, or data with masks)")
        return lesion_axis_distortion(image, mask, self.rng)


def draw_hairs(image: np.ndarray, rng: np.random.Generator, count: tuple[int, int] = (1, 8)) -> np.ndarray:
    """Dark, thin, gently curved strokes across the image, like hairs on dermoscopic images
    (a common artefact the classifier must learn to ignore). Written here because
    albumentations has no hair transform: each stroke is a quadratic Bezier curve drawn with
    OpenCV, 1-2 px wide, in a dark brown-grey."""
    out = np.ascontiguousarray(image.copy())
    height, width = out.shape[:2]
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        ends = rng.uniform(0, 1, size=(3, 2)) * (width, height)
        t = np.linspace(0.0, 1.0, 24)[:, None]
        curve = (1 - t) ** 2 * ends[0] + 2 * (1 - t) * t * ends[1] + t**2 * ends[2]
        shade = int(rng.integers(10, 70))
        colour = (shade + 10, shade + 5, shade)
        cv2.polylines(out, [curve.astype(np.int32)], False, colour, int(rng.integers(1, 3)), cv2.LINE_AA)
    return out


class HairStrokes(A.ImageOnlyTransform):
    """``draw_hairs`` as an albumentations step, seeded by albumentations' own generator."""

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        """Hair strokes drawn on ``img`` with a generator seeded from albumentations' own."""
        return draw_hairs(img, np.random.default_rng(self.py_random.getrandbits(32)))

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        """No constructor arguments beyond albumentations' own (for its serialisation)."""
        return ()


CLASSIFIER_AUGMENTATIONS = get_args(ClassifierAugment)


def classifier_transform(augment: str) -> A.Compose | None:
    """Augmentation of every classifier training image (``train_augment``): none, or
    ``strong``: flips and 90-degree turns (a lesion has no up), affine (scale, free rotation,
    shear), colour jitter (cameras and lighting differ), coarse dropout and hair strokes."""
    if augment not in CLASSIFIER_AUGMENTATIONS:
        raise ConfigError(f"unknown augmentation '{augment}'; choose one of {', '.join(CLASSIFIER_AUGMENTATIONS)}")
    if augment == "none":
        return None
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
            A.Affine(scale=(0.85, 1.2), rotate=(-180, 180), shear=(-8, 8), border_mode=cv2.BORDER_REFLECT_101, p=0.8),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.03, p=0.8),
            A.CoarseDropout(
                num_holes_range=(1, 3), hole_height_range=(0.05, 0.15), hole_width_range=(0.05, 0.15), p=0.3
            ),
            HairStrokes(p=0.3),
        ]
    )
