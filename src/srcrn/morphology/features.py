"""Hand-crafted lesion features for the gradient-boosting melanoma model (``--model features``).

What a dermatologist reads off a lesion, as numbers: the ABCD measurements ``predict``
already reports (asymmetry, border compactness, colours, diameter), region shape
(scikit-image ``regionprops``), colour statistics of the lesion and of the skin around it in
Lab and HSV (means, spreads, quantiles, lesion - skin contrasts), texture (grey-level
co-occurrence and uniform local binary patterns, scikit-image) and border sharpness (the
lightness gradient across the border). All are functions of the pixels alone: deterministic
and finite (NaN only where a quantity does not exist, which gradient boosting handles).
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np
from scipy import ndimage
from skimage.color import rgb2hsv, rgb2lab
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
from skimage.measure import label, regionprops

from srcrn.morphology.measurements import DERMOSCOPIC_COLOURS, asymmetry, colour_shares, compactness, longest_diameter

QUANTILES = (0.1, 0.5, 0.9)
CHANNELS = ("L", "a", "b", "h", "s", "v")
GLCM_PROPERTIES = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation")
GLCM_LEVELS = 32
LBP_POINTS, LBP_RADIUS = 8, 1
RING = 0.1  # the surrounding skin: a band this fraction of the image side wide around the lesion
# Version 2 added _colour_structure (out-of-fold AUC 0.7695 -> 0.7734 in the stage-2 experiment).
# Part of the feature cache's key: a cache of another version is never read as this one.
FEATURES_VERSION = 2
HISTOGRAM_RANGES = {"L": (0.0, 100.0), "a": (-20.0, 60.0), "b": (-20.0, 60.0)}  # Lab of skin and lesions
HISTOGRAM_BINS = 6
RADIAL_ZONES = {"outer": (0.0, 1 / 3), "middle": (1 / 3, 2 / 3), "inner": (2 / 3, 1.0)}


def _shape(mask: np.ndarray) -> dict[str, float]:
    # On the whole mask as the models were trained (FEATURES_VERSION 2), not on the one region
    # that the clinician's measurements (measure_lesion) use: a model's inputs never drift.
    mask = mask.astype(bool)
    empty = not mask.any()
    major, minor = asymmetry(mask) if not empty else (0.0, 0.0)
    touches = bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
    regions = regionprops(label(mask))
    region = max(regions, key=lambda r: r.area) if regions else None
    axis_ratio = float("nan")
    if region is not None and region.axis_major_length > 0:
        axis_ratio = region.axis_minor_length / region.axis_major_length
    return {
        "area_fraction": float(mask.sum()) / mask.size,
        "asymmetry_major": major,
        "asymmetry_minor": minor,
        "compactness": compactness(mask) if not empty else float("nan"),
        "diameter_fraction": (longest_diameter(mask) if not empty else 0.0) / max(mask.shape),
        "eccentricity": float(region.eccentricity) if region is not None else float("nan"),
        "solidity": float(region.solidity) if region is not None else float("nan"),
        "extent": float(region.extent) if region is not None else float("nan"),
        "axis_ratio": axis_ratio,
        "regions": float(len(regions)),
        "touches_border": float(touches),
    }


def _colour(image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    # Lab in its natural ranges (L 0..100, a/b about -128..127), HSV in 0..1.
    channels = np.concatenate([rgb2lab(image), rgb2hsv(image)], axis=-1)
    ring_width = max(1, round(RING * max(mask.shape)))
    skin = ndimage.binary_dilation(mask, iterations=ring_width) & ~mask
    if not skin.any():
        skin = ~mask
    lesion_pixels, skin_pixels = channels[mask], channels[skin]
    out: dict[str, float] = {}
    for i, name in enumerate(CHANNELS):
        values = lesion_pixels[:, i]
        out[f"lesion_{name}_mean"] = float(values.mean())
        out[f"lesion_{name}_std"] = float(values.std())
        for q, value in zip(QUANTILES, np.quantile(values, QUANTILES)):
            out[f"lesion_{name}_q{round(q * 100):02d}"] = float(value)
        skin_mean = float(skin_pixels[:, i].mean()) if len(skin_pixels) else float("nan")
        out[f"skin_{name}_mean"] = skin_mean
        out[f"contrast_{name}"] = out[f"lesion_{name}_mean"] - skin_mean
    for name, share in zip(DERMOSCOPIC_COLOURS, colour_shares(image, mask)):
        out[f"colour_share_{name}"] = float(share)
    return out


def _texture(image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    grey = (rgb2lab(image)[..., 0] * 255 / 100).clip(0, 255).astype(np.uint8)
    rows, columns = np.nonzero(mask)
    box = grey[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    quantised = (box.astype(np.int32) * GLCM_LEVELS // 256).astype(np.uint8)
    matrix = graycomatrix(
        quantised, distances=[1, 3], angles=[0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=GLCM_LEVELS, normed=True
    )
    out = {
        f"glcm_{p}_d{d}": float(graycoprops(matrix, p)[i].mean()) for p in GLCM_PROPERTIES for i, d in enumerate((1, 3))
    }
    patterns = local_binary_pattern(grey, LBP_POINTS, LBP_RADIUS, method="uniform")[mask]
    histogram = np.bincount(patterns.astype(int), minlength=LBP_POINTS + 2) / max(1, len(patterns))
    out |= {f"lbp_{i}": float(v) for i, v in enumerate(histogram)}
    # Border sharpness: lightness gradient on the border relative to the lesion's inside.
    gradient = np.hypot(ndimage.sobel(grey.astype(float), 0), ndimage.sobel(grey.astype(float), 1))
    border = mask & ~ndimage.binary_erosion(mask)
    inside = mask & ~border
    out["border_gradient_mean"] = float(gradient[border].mean())
    out["border_gradient_std"] = float(gradient[border].std())
    out["border_gradient_ratio"] = (
        float(gradient[border].mean() / (gradient[inside].mean() + 1e-6)) if inside.any() else float("nan")
    )
    return out


def _colour_structure(image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    lab = rgb2lab(image)
    pixels = lab[mask]
    out: dict[str, float] = {}
    # Variegation: standard deviations along the principal axes of the lesion's Lab colours.
    spread = np.linalg.eigvalsh(np.cov(pixels.T)) if len(pixels) > 1 else np.zeros(3)
    for i, value in enumerate(np.sort(spread)[::-1]):
        out[f"lab_spread_{i}"] = float(np.sqrt(max(value, 0.0)))
    for j, (channel, (low, high)) in enumerate(HISTOGRAM_RANGES.items()):
        values = np.clip(pixels[:, j], low, high - 1e-6)
        histogram = np.histogram(values, bins=HISTOGRAM_BINS, range=(low, high))[0] / len(pixels)
        out |= {f"histogram_{channel}{i}": float(v) for i, v in enumerate(histogram)}
    # Radial profile: distance to the border (0 at the border, 1 at the deepest point) in thirds.
    depth = ndimage.distance_transform_edt(mask)
    depth = depth / (depth.max() + 1e-6)
    for zone, (low, high) in RADIAL_ZONES.items():
        selected = mask & (depth <= high) & ((depth > low) if low > 0 else True)
        selected = selected if selected.sum() >= 3 else mask
        for j, channel in enumerate("Lab"):
            out[f"radial_{zone}_{channel}"] = float(lab[..., j][selected].mean())
    for channel in "Lab":
        out[f"radial_slope_{channel}"] = out[f"radial_inner_{channel}"] - out[f"radial_outer_{channel}"]
    # Colour asymmetry: Lab distance between the mean colours of the halves on either side of
    # each principal axis of the lesion's shape.
    rows, columns = np.nonzero(mask)
    centred = np.stack([rows - rows.mean(), columns - columns.mean()])
    axes = np.linalg.eigh(np.cov(centred))[1] if len(rows) > 2 else np.eye(2)
    for k in range(2):
        side = (centred * axes[:, k : k + 1]).sum(0) > 0
        one, other = lab[rows[side], columns[side]], lab[rows[~side], columns[~side]]
        out[f"colour_asymmetry_{k}"] = (
            float(np.linalg.norm(one.mean(0) - other.mean(0))) if len(one) and len(other) else 0.0
        )
    # Texture at two more scales: uniform LBP of 16 points at radii 2 and 3, pairs of bins.
    grey = (lab[..., 0] * 2.55).clip(0, 255).astype(np.uint8)
    for radius in (2, 3):
        patterns = local_binary_pattern(grey, 16, radius, method="uniform")[mask]
        histogram = np.bincount(patterns.astype(int), minlength=18) / max(1, len(patterns))
        out |= {f"lbp_r{radius}_{i}": float(histogram[i : i + 2].sum()) for i in range(0, 18, 2)}
    lightness, a, b = pixels[:, 0], pixels[:, 1], pixels[:, 2]
    out["blue_grey_share"] = float(((b < 0) & (lightness > 20) & (lightness < 70)).mean())
    out["white_share"] = float(((lightness > 75) & (np.abs(a) < 10) & (np.abs(b) < 10)).mean())
    out["dark_share"] = float((lightness < 25).mean())
    return out


def lesion_features(image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Features of one lesion: ``image`` uint8 H x W x 3 (RGB), ``mask`` boolean H x W at the
    same size. An empty mask is read as the whole image (``empty_mask`` = 1 says so)."""
    mask = np.asarray(mask).astype(bool)
    empty = not mask.any()
    if empty:
        mask = np.ones_like(mask)
    return (
        {"empty_mask": float(empty)}
        | _shape(mask)
        | _colour(image, mask)
        | _texture(image, mask)
        | _colour_structure(image, mask)
    )


# The last table computed, by the digest of its inputs: in one prediction batch the feature
# model and the input gate's typicality both need the table of the same crops and masks, and
# it is a quarter of a prediction's time (26 ms an image of 88, measured on the sample).
_LAST: tuple[bytes, np.ndarray, list[str]] | None = None
_LAST_LOCK = threading.Lock()


def _digest(images: np.ndarray, masks: np.ndarray) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for part in (images, masks):
        part = np.ascontiguousarray(part)
        digest.update(f"{part.shape}{part.dtype}".encode())
        digest.update(part.data)
    return digest.digest()


def feature_table(images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """float [N, F] features of N lesions, and the F names (always the same order)."""
    global _LAST
    key = _digest(np.asarray(images), np.asarray(masks))
    with _LAST_LOCK:
        if _LAST is not None and _LAST[0] == key:
            return _LAST[1].copy(), list(_LAST[2])
    rows = [lesion_features(np.asarray(image), np.asarray(mask)) for image, mask in zip(images, masks)]
    names = list(rows[0]) if rows else list(lesion_features(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), bool)))
    table = np.array([[row[n] for n in names] for row in rows], dtype=np.float64).reshape(len(rows), len(names))
    with _LAST_LOCK:
        _LAST = (key, table.copy(), list(names))
    return table, names
