"""Both stages for any dermoscopic image: mask at the original size, measurements, melanoma
probability and decision, and an overlay a clinician can check at a glance.

Preprocessing is exactly the training one: the segmenter sees the image decoded and
resized as ``srcrn prepare`` does; the classifier sees ``lesion_input`` of the predicted
mask, with the input mode, margin and size stored in its checkpoint (or bundle). This module
imports no torch: with the ONNX Runtime engine, torch is not needed at all.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from srcrn.atomic import atomic_path, remove_leftovers, write_mask
from srcrn.console import progress
from srcrn.data.images import IMAGE_SUFFIXES, decode_image, decode_image_fit
from srcrn.data.isic import NON_IMAGE_STEM_SUFFIXES
from srcrn.data.lesion import crop_mask, lesion_box, lesion_input
from srcrn.errors import ConfigError, DataError, SrcrnError
from srcrn.inference.measurements import measure_lesion
from srcrn.inference.predictor import Classifier, Segmenter, from_bundle

# Measurements and overlays use the image at this longer side at most (lengths are scaled
# back to original pixels): precise enough for a lesion, cheap even for 6700x4500 originals.
WORKING_SIDE = 1024
log = logging.getLogger(__name__)


@dataclass
class Prediction:
    image_id: str
    source: str
    width: int
    height: int
    melanoma: float
    decision: str
    threshold: float
    measurements: dict = field(default_factory=dict)
    mask: str = ""
    overlay: str = ""
    explanation: str = ""


def find_images(inputs: list[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files from files and folders (not recursive); unknown paths become errors."""
    found, errors = [], []
    for item in inputs:
        if item.is_dir():
            found += sorted(
                p
                for p in item.iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith(NON_IMAGE_STEM_SUFFIXES)
            )
        elif item.is_file():
            found.append(item)
        else:
            errors.append((str(item), "file not found"))
    return found, errors


class TwoStagePipeline:
    """Both stages over the one prediction path (``predictor``), whatever runs the networks
    (eager PyTorch or ONNX Runtime): every step before and after them is shared, so both
    engines give the same outputs, and the masks are those ``segment eval`` scores."""

    def __init__(self, segmenter: Segmenter, classifier: Any, threshold: float | None = None, *, explain: bool = False):
        self.segmenter, self.classifier, self.explain = segmenter, classifier, explain
        self.needs_masks = not isinstance(classifier, Classifier)
        self.segment_size, self.classify_size = segmenter.image_size, classifier.image_size
        self.input_mode, self.margin = classifier.spec.input, classifier.spec.margin
        self.threshold = float(classifier.spec.threshold if threshold is None else threshold)
        self.seconds = {"decode": 0.0, "segment": 0.0, "classify": 0.0, "explain": 0.0, "outputs": 0.0}

    @classmethod
    def from_checkpoints(
        cls, segmenter: str | Path, classifier: str | Path, threshold: float | None = None, *, explain: bool = False
    ) -> TwoStagePipeline:
        """Eager models: a segmenter checkpoint, and a classifier checkpoint (.ckpt) or a lesion
        feature model (.skops, scored from the lesion and its mask; no Grad-CAM)."""
        if Path(classifier).suffix == ".skops":
            from srcrn.inference.feature_model import FeatureModel  # scikit-learn: only when used

            if explain:
                raise ConfigError(f"{classifier}: --explain shows a CNN's evidence; a feature model has none to show")
            model: Any = FeatureModel.load(classifier)
        else:
            model = Classifier.from_checkpoint(classifier)
        return cls(Segmenter.from_checkpoint(segmenter), model, threshold, explain=explain)

    @classmethod
    def from_bundle(
        cls, bundle: str | Path, threshold: float | None = None, *, explain: bool = False
    ) -> TwoStagePipeline:
        if explain:
            raise ConfigError(
                "--explain needs the torch engine: ONNX models carry no gradients for Grad-CAM "
                "(pass --segmenter and --classifier checkpoints instead of --model)"
            )
        segmenter, classifier, _ = from_bundle(bundle)
        return cls(segmenter, classifier, threshold)

    def _decode(self, path: Path) -> tuple[dict[int, np.ndarray], tuple[int, int]]:
        """The image at each size the models need, each decoded once, and its original size."""
        decoded: dict[int, np.ndarray] = {}
        original = (0, 0)
        for size in dict.fromkeys((self.segment_size, self.classify_size)):
            decoded[size], original = decode_image(path, size)
        return decoded, original

    def predict(self, paths: list[Path], out: Path) -> list[Prediction]:
        """One batch of images (all decodable): masks and overlays written under ``out``."""
        started = time.perf_counter()
        decoded = [self._decode(path) for path in paths]
        self.seconds["decode"] += time.perf_counter() - started
        started = time.perf_counter()
        probabilities = self.segmenter.probabilities(np.stack([d[self.segment_size] for d, _ in decoded]))
        self.seconds["segment"] += time.perf_counter() - started
        started = time.perf_counter()
        inputs, boxes, input_masks = [], [], []
        for path, (images, _), probability in zip(paths, decoded, probabilities):
            mask = self.segmenter.mask(probability, self.classify_size, self.classify_size)
            inputs.append(lesion_input(images[self.classify_size], mask, self.input_mode, path, margin=self.margin))
            boxes.append(lesion_box(mask, self.margin) if self.input_mode == "crop" else None)
            if self.needs_masks:
                input_masks.append(crop_mask(mask, self.input_mode, self.classify_size, margin=self.margin))
        self.seconds["decode"] += time.perf_counter() - started
        started = time.perf_counter()
        if self.needs_masks:  # the lesion-feature model reads the lesion's mask too
            melanoma = self.classifier.probabilities(np.stack(inputs), np.stack(input_masks))
        else:
            melanoma = self.classifier.probabilities(np.stack(inputs))
        self.seconds["classify"] += time.perf_counter() - started
        heatmaps: list[np.ndarray | None] = [None] * len(paths)
        if self.explain:
            from srcrn.inference.explain import grad_cam

            started = time.perf_counter()
            heatmaps = list(grad_cam(self.classifier, np.stack(inputs)))
            self.seconds["explain"] += time.perf_counter() - started
        started = time.perf_counter()
        results = [
            self._finish(path, width, height, probability, float(score), out, heatmap, box)
            for path, (_, (width, height)), probability, score, heatmap, box in zip(
                paths, decoded, probabilities, melanoma, heatmaps, boxes
            )
        ]
        self.seconds["outputs"] += time.perf_counter() - started
        return results

    def _finish(
        self,
        path: Path,
        width: int,
        height: int,
        probability: np.ndarray,
        score: float,
        out: Path,
        heatmap: np.ndarray | None = None,
        box: tuple[float, float, float, float] | None = None,
    ) -> Prediction:
        mask_path = out / "masks" / f"{path.stem}_segmentation.png"
        write_mask(mask_path, self.segmenter.mask(probability, width, height))
        work, _ = decode_image_fit(path, WORKING_SIDE)
        work_mask = self.segmenter.mask(probability, work.shape[1], work.shape[0])
        measurements = measure_lesion(work_mask, work, scale=width / work.shape[1]).to_dict()
        decision = "melanoma" if score > self.threshold else "benign"
        overlay_path = out / "overlays" / f"{path.stem}_overlay.png"
        draw_overlay(
            work, work_mask, f"P(melanoma) {score:.3f} -> {decision} (threshold {self.threshold:.3f})", overlay_path
        )
        explanation = ""
        if heatmap is not None:
            from srcrn.inference.explain import place_heatmap, write_heatmap_overlay

            explanation_path = out / "explanations" / f"{path.stem}_gradcam.png"
            write_heatmap_overlay(work, place_heatmap(heatmap, box, work.shape[1], work.shape[0]), explanation_path)
            explanation = str(explanation_path)
        return Prediction(
            path.stem,
            str(path),
            width,
            height,
            score,
            decision,
            self.threshold,
            measurements,
            str(mask_path),
            str(overlay_path),
            explanation,
        )


OVERLAY_MIN_WIDTH = 640


def draw_overlay(image: np.ndarray, mask: np.ndarray, caption: str, path: Path) -> None:
    """The image with the lesion contour and a caption band, as PNG (small images are
    enlarged so that the caption stays legible)."""
    factor = max(1.0, OVERLAY_MIN_WIDTH / image.shape[1])
    if factor > 1.0:
        size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    canvas = np.ascontiguousarray(image[..., ::-1])  # OpenCV draws in BGR
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, contours, -1, (0, 255, 255), max(2, round(canvas.shape[1] / 320)))
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, canvas.shape[1] / 900
    (text_width, text_height), _ = cv2.getTextSize(caption, font, scale, 1)
    scale *= min(1.0, (canvas.shape[1] - 16) / text_width)  # shrink the caption to fit the width
    band = int(text_height * 2.2)
    canvas = cv2.copyMakeBorder(canvas, band, 0, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    cv2.putText(
        canvas, caption, (8, int(band * 0.7)), font, scale, (255, 255, 255), max(1, round(scale * 2)), cv2.LINE_AA
    )
    with atomic_path(path) as temporary:
        # Light compression: at the default level, PNG encoding of a photo took most of predict's time.
        Image.fromarray(canvas[..., ::-1]).save(temporary, format="PNG", compress_level=1)


def predict_images(
    pipeline: TwoStagePipeline, inputs: list[Path], out: Path, *, batch_size: int = 8, show_progress: bool = True
) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Every image of ``inputs`` in batches; a bad file is reported and skipped, the rest go on."""
    out.mkdir(parents=True, exist_ok=True)
    for folder in (out, out / "masks", out / "overlays", out / "explanations"):  # after a killed run
        remove_leftovers(folder)
    paths, errors = find_images(inputs)
    seen: dict[str, Path] = {}
    readable = []
    for path in paths:
        if path.stem in seen and seen[path.stem].resolve() == path.resolve():
            continue  # the same file named twice (e.g. alone and through its folder)
        if path.stem in seen:
            errors.append((str(path), f"same image id as {seen[path.stem]}: its outputs would be overwritten"))
            continue
        seen[path.stem] = path
        readable.append(path)
    results: list[Prediction] = []
    batches = [readable[i : i + batch_size] for i in range(0, len(readable), batch_size)]
    for batch in progress(batches, len(batches), "predict", show_progress):
        try:
            results += pipeline.predict(batch, out)
        except SrcrnError:
            for path in batch:  # find the bad file(s); predict the good ones one by one
                try:
                    results += pipeline.predict([path], out)
                except DataError as error:
                    errors.append((str(error.path), error.problem))
    for source, problem in errors:
        log.warning("skipped %s: %s", source, problem)
    write_predictions(results, errors, out)
    return results, errors


def write_predictions(results: list[Prediction], errors: list[tuple[str, str]], out: Path) -> None:
    rows = [{k: v for k, v in vars(r).items() if k != "measurements"} | r.measurements for r in results]
    with atomic_path(out / "predictions.csv") as temporary:
        pd.DataFrame(rows).to_csv(temporary, index=False)
    payload = {
        "predictions": [_clean(vars(r)) for r in results],
        "errors": [{"source": s, "problem": p} for s, p in errors],
    }
    with atomic_path(out / "predictions.json") as temporary:
        temporary.write_text(json.dumps(payload, indent=2))


def _clean(value):
    """JSON has no NaN: write null."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
