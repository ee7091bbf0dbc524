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

import numpy as np
from scipy import ndimage
from skimage.color import rgb2hsv, rgb2lab
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
from skimage.measure import label, regionprops

from srcrn.inference.measurements import DERMOSCOPIC_COLOURS, colour_shares, measure_lesion

QUANTILES = (0.1, 0.5, 0.9)
CHANNELS = ("L", "a", "b", "h", "s", "v")
GLCM_PROPERTIES = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation")
GLCM_LEVELS = 32
LBP_POINTS, LBP_RADIUS = 8, 1
RING = 0.1  # the surrounding skin: a band this fraction of the image side wide around the lesion


def _shape(mask: np.ndarray) -> dict[str, float]:
    measured = measure_lesion(mask)
    regions = regionprops(label(mask))
    region = max(regions, key=lambda r: r.area) if regions else None
    axis_ratio = float("nan")
    if region is not None and region.axis_major_length > 0:
        axis_ratio = region.axis_minor_length / region.axis_major_length
    return {
        "area_fraction": measured.area_fraction,
        "asymmetry_major": measured.asymmetry_major_axis,
        "asymmetry_minor": measured.asymmetry_minor_axis,
        "compactness": measured.compactness,
        "diameter_fraction": measured.longest_diameter_pixels / max(mask.shape),
        "eccentricity": float(region.eccentricity) if region is not None else float("nan"),
        "solidity": float(region.solidity) if region is not None else float("nan"),
        "extent": float(region.extent) if region is not None else float("nan"),
        "axis_ratio": axis_ratio,
        "regions": float(len(regions)),
        "touches_border": float(measured.touches_border),
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


def lesion_features(image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Features of one lesion: ``image`` uint8 H x W x 3 (RGB), ``mask`` boolean H x W at the
    same size. An empty mask is read as the whole image (``empty_mask`` = 1 says so)."""
    mask = np.asarray(mask).astype(bool)
    empty = not mask.any()
    if empty:
        mask = np.ones_like(mask)
    return {"empty_mask": float(empty)} | _shape(mask) | _colour(image, mask) | _texture(image, mask)


def feature_table(images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """float [N, F] features of N lesions, and the F names (always the same order)."""
    rows = [lesion_features(np.asarray(image), np.asarray(mask)) for image, mask in zip(images, masks)]
    names = list(rows[0]) if rows else list(lesion_features(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), bool)))
    return np.array([[row[n] for n in names] for row in rows], dtype=np.float64).reshape(len(rows), len(names)), names
