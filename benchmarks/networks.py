"""The networks of two bundles alone, with ONNX Runtime: images/s of one pass, batch 8, at each
model's input side, 200 images after one warm-up batch (BENCHMARKS.md, the shipped default model).

    .venv/bin/python benchmarks/networks.py BUNDLE [BUNDLE ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def rate(path: Path, images: int = 200, batch: int = 8) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name, side = session.get_inputs()[0].name, session.get_inputs()[0].shape[-1]
    x = np.random.default_rng(0).standard_normal((batch, 3, side, side)).astype(np.float32)
    session.run(None, {name: x})
    started = time.perf_counter()
    for _ in range(images // batch):
        session.run(None, {name: x})
    return images / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", type=Path, nargs="+")
    for bundle in parser.parse_args().bundles:
        manifest = json.loads((bundle / "bundle.json").read_text())
        for name in sorted(p.name for p in bundle.glob("*.onnx")):
            print(f"{bundle.name}/{name} ({manifest.get('precision', 'fp32')}): {rate(bundle / name):.1f} images/s")


if __name__ == "__main__":
    main()
