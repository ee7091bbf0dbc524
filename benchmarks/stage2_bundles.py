"""Images/s of ``srcrn predict`` end to end (JPEG files to predictions.csv with overlays) for
bundles of each stage-2 kind, in one run on the same images: the CNN bundle (the peer), the
lesion-feature model (+ clinical context) and the stack of both, each fp32 and int8 (static
quantization of the networks; a feature model's booster is not quantized). Rounds interleave
the bundles so that a busy moment of the machine does not fall on one of them; the median of
the rounds is reported, with where the time goes (the lesion features count as ``classify``).

    .venv/bin/python benchmarks/stage2_bundles.py --segmenter SEG.ckpt --cnn CNN.ckpt \\
        --features FEATURES.skops --stack STACK/model [--images 200] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from predict import DEFAULT_DATA, end_to_end

from srcrn.bundle.export import export_onnx
from srcrn.data.isic import IsicDataset
from srcrn.data.metadata import find_metadata, load_folder_metadata
from srcrn.errors import ConfigError
from srcrn.inference.pipeline import Pipeline
from srcrn.workflows.quantize import quantize_bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segmenter", type=Path, required=True)
    parser.add_argument("--cnn", type=Path, required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--stack", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    arguments = parser.parse_args()
    dataset = IsicDataset.from_dir(arguments.data)
    ids = sorted(dataset.ids)[-arguments.images :]  # the same images for every bundle
    images = [dataset.sample(i).image_path for i in ids]
    metadata = load_folder_metadata(arguments.data, ids=dataset.ids)
    print(f"{len(images)} images of {arguments.data}; {sum(i in metadata for i in ids)} with clinical metadata")
    with tempfile.TemporaryDirectory() as scratch:
        bundles: dict[str, Path] = {}
        for name, model in (("cnn", arguments.cnn), ("features", arguments.features), ("stack", arguments.stack)):
            fp32 = export_onnx(arguments.segmenter, model, Path(scratch) / name)
            bundles[f"{name} fp32"] = fp32
            # int8 where it holds parity (the export's tolerance); else the segmenter alone in int8.
            for label, quantize_classifier in (("int8", True), ("int8 segmenter", False)):
                try:
                    int8, parity = quantize_bundle(
                        fp32, Path(scratch) / f"{name}-{label}", arguments.data, 64, 200,
                        classifier=quantize_classifier,
                    )  # fmt: skip
                except ConfigError as refused:
                    print(f"{name} {label}: {refused}")
                    continue
                bundles[f"{name} {label}"] = int8
                shown = {k: round(v, 4) for k, v in parity.items() if isinstance(v, float)}
                print(f"{name} {label} parity on {parity['images']} held-out images: {shown}")
                break
        pipelines = {name: Pipeline.from_bundle(folder) for name, folder in bundles.items()}
        metadata_file = find_metadata(arguments.data)
        rates: dict[str, list[float]] = {name: [] for name in pipelines}
        shares: dict[str, dict[str, float]] = {}
        for _ in range(arguments.rounds):
            for name, pipeline in pipelines.items():
                rate, share = end_to_end(pipeline, images, arguments.batch_size, True, metadata=metadata_file)
                rates[name].append(rate)
                shares[name] = share
    peer = statistics.median(rates["cnn int8"])
    print("\n| bundle | images/s end to end (median of rounds) | vs CNN int8 bundle | rounds | time shares |")
    print("|---|---|---|---|---|")
    for name, measured in rates.items():
        median = statistics.median(measured)
        steps = ", ".join(f"{k} {v:.0%}" for k, v in shares[name].items() if v >= 0.005)
        print(f"| {name} | {median:.2f} | {median / peer:.2f}x | {', '.join(f'{r:.2f}' for r in measured)} | {steps} |")


if __name__ == "__main__":
    main()
