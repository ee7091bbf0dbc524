"""Where the classifier looked: Grad-CAM (Selvaraju et al. 2017) of the melanoma logit at the
backbone's last block, with Captum's ``LayerGradCam`` (maintained by the PyTorch team), and
its overlay on the image.

Eager PyTorch only: an ONNX graph carries no gradients, so ``predict --explain`` with the
ONNX engine is refused with a message saying so.
"""

from __future__ import annotations

import cv2
import numpy as np

from srcrn.data.images import Box, box_pixels
from srcrn.data.normalization import normalize_numpy
from srcrn.errors import ConfigError
from srcrn.stage2.cnn import CnnModel


def grad_cam(classifier: CnnModel, inputs: np.ndarray) -> np.ndarray:
    """float32 [N, S, S] in 0..1: the positive Grad-CAM evidence for melanoma of each uint8
    [S, S, 3] classifier input, upsampled bilinearly to the input's size and scaled so that
    each map's maximum is 1 (all zeros where no region speaks for melanoma)."""
    import torch
    from captum.attr import LayerAttribution, LayerGradCam

    model = getattr(classifier.runtime, "model", None)
    if model is None or not hasattr(model, "last_feature_map"):
        raise ConfigError("--explain needs the torch engine: an ONNX model carries no gradients (use --engine torch)")
    inputs = np.asarray(inputs, dtype=np.uint8)
    device = next(model.parameters()).device
    batch = torch.from_numpy(normalize_numpy(inputs)).to(device)
    with torch.enable_grad():
        attribution = LayerGradCam(model, model.last_feature_map).attribute(batch, relu_attributions=True)
        maps = LayerAttribution.interpolate(attribution, tuple(inputs.shape[1:3]), "bilinear")[:, 0]
    maps = maps.detach().clamp_min(0).cpu().numpy().astype(np.float32)
    peaks = maps.reshape(len(maps), -1).max(axis=1)
    return maps / np.where(peaks > 0, peaks, 1.0)[:, None, None]


def place_heatmap(heatmap: np.ndarray, box: Box | None, width: int, height: int) -> np.ndarray:
    """The heatmap of a classifier input at ``width`` x ``height`` of the image it came from:
    a crop's map goes back into its box (fractions of the image), zero elsewhere."""
    canvas = np.zeros((height, width), np.float32)
    x0, y0, x1, y1 = box_pixels(box or (0.0, 0.0, 1.0, 1.0), width, height)
    canvas[y0:y1, x0:x1] = cv2.resize(heatmap, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    return canvas


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray, strength: float = 0.5) -> np.ndarray:
    """The image with the heatmap blended in (OpenCV's JET colour map, stronger where hotter)."""
    colours = cv2.applyColorMap((heatmap * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    alpha = (strength * heatmap)[..., None]
    return (image.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha).astype(np.uint8)
