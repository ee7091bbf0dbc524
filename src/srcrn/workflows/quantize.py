"""``srcrn export onnx --quantize int8``: ONNX Runtime's static quantization of both models,
with its parity measured (a workflow: it exports, then evaluates).

Method (``onnxruntime.quantization.quantize_static``): QDQ format (QuantizeLinear/
DequantizeLinear pairs that ORT fuses into integer kernels, and that stay readable by any ONNX
tool), weights int8 per output channel (ResNet-50's channels differ in range by orders of
magnitude; one scale per tensor loses the small ones), activations uint8 per tensor (u8s8 is
what x86's VNNI instructions multiply), ranges from the calibration images by min/max,
percentile or entropy.

Weights use 7 of their 8 bits (``reduce_range``): on x86 CPUs without VNNI (SSE4, AVX2, AVX-512
without VNNI) ONNX Runtime multiplies u8 by s8 with ``vpmaddubsw``, whose pairwise sums saturate
at int16 when both factors are near their limits, so the same int8 model gave other answers there
(a shipped model's probability 0.164 instead of 0.048 on a Zen 3). With 7-bit weights no pair
can saturate (2 x 255 x 64 < 32767), and every CPU computes the same integers; ORT's and
OpenVINO's quantization guides give this workaround. The segmenter is
calibrated on the calibration images; the classifier on the lesion inputs the fp32 pipeline
builds from them, so each model sees what it will see in use.

Parity is measured on other images of the same folder (never the calibration ones): Jaccard
of the int8 masks and of the fp32 masks against the truth (when masks exist), AUC of both
(when labels of both classes exist), and the largest probability difference. A drop beyond
``TOLERANCE`` refuses the export: no bundle is written.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, get_args

import numpy as np

from srcrn.data.normalization import normalize_numpy
from srcrn.errors import ConfigError
from srcrn.evaluation.metrics import segmentation_scores
from srcrn.settings import Int8Ranges

# The largest drops int8 may cost against fp32 (the figures): 0.005 Jaccard, 0.01 AUC.
TOLERANCE = {"jaccard_drop": 0.005, "auc_drop": 0.01}
CALIBRATION_BATCH = 8
log = logging.getLogger(__name__)


class _Batches:
    """``onnxruntime.quantization.CalibrationDataReader``: normalised NCHW batches."""

    def __init__(self, name: str, images: np.ndarray):
        self.name = name
        self.batches = iter(
            [normalize_numpy(images[i : i + CALIBRATION_BATCH]) for i in range(0, len(images), CALIBRATION_BATCH)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.name: np.ascontiguousarray(batch)}


RANGES = get_args(Int8Ranges)  # how activation ranges are calibrated


def quantize_model(fp32: Path, int8: Path, images: np.ndarray, ranges: str = "minmax") -> None:
    """The ONNX model ``fp32`` as a static int8 model at ``int8``, its activation ranges calibrated on ``images`` (normalised here) by ``ranges``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    method = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,  # 99.999th percentile: outliers no longer stretch the range
        "entropy": CalibrationMethod.Entropy,
    }[ranges]

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # Shape inference + graph clean-up first, as ORT advises. ONNX's shape inference is enough
        # for these static-size CNNs; the symbolic one (for transformers) cannot follow the
        # "same" padding that an EfficientNet-Lite computes from its input's shape.
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(int8),
            _Batches("image", images),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=True,  # 7-bit weights: the same answers with and without VNNI (module docstring)
            calibrate_method=method,
        )


def _jaccard(prediction: np.ndarray, truth: np.ndarray) -> float:
    return segmentation_scores(prediction, truth)["jaccard"]  # the ISIC scorer's definition


def measure_parity(fp32: Any, int8: Any, dataset: Any, ids: list[str]) -> dict[str, Any]:
    """Scores of both pipelines on ``ids`` of ``dataset`` (an ``IsicDataset``)."""
    samples = [dataset.sample(i) for i in ids]
    paths = [s.image_path for s in samples]
    return parity_of(fp32.predict_many(paths, batch_size=16), int8.predict_many(paths, batch_size=16), samples)


def parity_of(a: list[Any], b: list[Any], samples: list[Any]) -> dict[str, Any]:
    """Scores of two pipelines' results ``a`` (the reference) and ``b`` on the same ``samples``."""
    from srcrn.data.images import read_mask
    from srcrn.stats import auc

    parity: dict[str, Any] = {
        "images": len(samples),
        "max_probability_difference": float(max(abs(x.probability - y.probability) for x, y in zip(a, b))),
        "mask_agreement_jaccard": float(np.mean([_jaccard(x.mask, y.mask) for x, y in zip(a, b)])),
    }
    with_masks = [(s, x, y) for s, x, y in zip(samples, a, b) if s.mask_path is not None]
    if with_masks:
        truths = [read_mask(s.mask_path, (x.width, x.height)) for s, x, _ in with_masks]
        parity["jaccard_fp32"] = float(np.mean([_jaccard(x.mask, t) for (_, x, _), t in zip(with_masks, truths)]))
        parity["jaccard_int8"] = float(np.mean([_jaccard(y.mask, t) for (_, _, y), t in zip(with_masks, truths)]))
        parity["jaccard_drop"] = parity["jaccard_fp32"] - parity["jaccard_int8"]
    labelled = [
        (s.melanoma, x, y) for s, x, y in zip(samples, a, b) if s.melanoma is not None and s.melanoma == s.melanoma
    ]
    labels = np.array([float(label) for label, _, _ in labelled])
    if len(labelled) and 0 < labels.sum() < len(labels):
        parity["auc_fp32"] = float(auc(labels, np.array([x.probability for _, x, _ in labelled])))
        parity["auc_int8"] = float(auc(labels, np.array([y.probability for _, _, y in labelled])))
        parity["auc_drop"] = parity["auc_fp32"] - parity["auc_int8"]
    return parity


def quantize_bundle(
    fp32_bundle: Path,
    out: Path,
    data: Path,
    calibration_images: int,
    parity_images: int,
    *,
    classifier: bool = True,
    ranges: str = "minmax",
    destination: Path | None = None,
) -> tuple[Path, dict[str, Any]]:
    """An int8 copy of ``fp32_bundle`` written into ``out`` (an empty staging folder that the
    caller moves into place when this returns), calibrated on ``calibration_images`` images of
    ``data`` and checked on ``parity_images`` others.

    Args:
        fp32_bundle: the bundle of ``export onnx`` to quantize.
        out: the empty folder the int8 bundle is written into.
        data: ISIC-layout folder of calibration and parity images (never the test split).
        calibration_images: how many images calibrate the ranges.
        parity_images: how many other images compare int8 with fp32.
        classifier: False keeps the stage-2 networks in fp32 (only the segmenter is quantized).
        ranges: ``minmax``, ``percentile`` or ``entropy`` activation ranges.
        destination: the folder named in messages (the user's ``--out``); default ``out``.

    Returns:
        ``out`` and the parity figures.

    Raises:
        ConfigError: unknown ``ranges``, too few images, or parity beyond TOLERANCE (the caller
            then moves nothing in).
    """
    destination = destination or out
    from srcrn.atomic import write_json
    from srcrn.bundle.schema import BUNDLE_FILE, file_sha256, read_manifest
    from srcrn.data.isic import IsicDataset
    from srcrn.inference.pipeline import Pipeline
    from srcrn.stage2.registry import DEFAULT_KIND, onnx_kinds

    if ranges not in RANGES:
        raise ConfigError(f"--int8-ranges {ranges!r}: choose one of {', '.join(RANGES)}")
    dataset = IsicDataset.from_dir(data)
    ids = list(np.random.default_rng(0).permutation(sorted(dataset.ids)))
    if len(ids) < calibration_images + 2:
        raise ConfigError(f"{data}: {len(ids)} images; int8 calibration needs more than --calibration-images")
    calibration, held_out = ids[:calibration_images], ids[calibration_images : calibration_images + parity_images]
    fp32 = Pipeline.from_bundle(fp32_bundle)
    segmenter_inputs, classifier_inputs = fp32.model_inputs([dataset.sample(i).image_path for i in calibration])
    manifest = read_manifest(fp32_bundle).model_dump()
    staging = Path(out)  # an empty staging folder of the output-folder rule: moved in when complete
    shutil.copy(fp32_bundle / BUNDLE_FILE, staging / BUNDLE_FILE)
    # The networks become int8; a feature model's file is copied as it is.
    stage2 = manifest["classifier"]
    parts = [(manifest["segmenter"], segmenter_inputs)]
    parts += [(part, classifier_inputs) for part in (stage2["members"] or [stage2])]
    for part, images in parts:
        name = part["file"]
        if part is manifest["segmenter"] or (classifier and part.get("kind", DEFAULT_KIND) in onnx_kinds()):
            quantize_model(fp32_bundle / name, staging / name, images, ranges)
        else:
            shutil.copyfile(fp32_bundle / name, staging / name)
        part["sha256"] = file_sha256(staging / name)
    write_json(staging / BUNDLE_FILE, manifest)  # hashes of the int8 files, before parity loads them
    parity = measure_parity(fp32, Pipeline.from_bundle(staging), dataset, held_out)
    parity |= {"calibration_images": len(calibration), "tolerance": TOLERANCE, "method": "static QDQ, "
               f"per-channel int8 weights (7-bit range), uint8 activations, {ranges} ranges (onnxruntime.quantization)"}  # fmt: skip
    failed = [k for k, limit in TOLERANCE.items() if parity.get(k, 0.0) > limit]
    if failed:
        shown = ", ".join(f"{k} {parity[k]:.4f} > {TOLERANCE[k]}" for k in failed)
        raise ConfigError(f"{destination}: int8 models refused, no bundle written: {shown} on {len(held_out)} images")
    cnns = [p for p, _ in parts[1:] if p.get("kind", DEFAULT_KIND) in onnx_kinds()]
    parity["quantized"] = "segmenter and stage-2 CNNs" if classifier and cnns else "segmenter only"
    manifest |= {"precision": "int8", "parity": parity}
    write_json(staging / BUNDLE_FILE, manifest)
    return out, parity
