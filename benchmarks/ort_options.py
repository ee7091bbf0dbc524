"""ONNX Runtime session options for ``srcrn predict``, chosen by measurement: images/s of a
bundle's two networks (fp32, and int8 when given) under each combination of intra-op threads,
graph optimisation level, execution mode and thread spinning, in one run on the same batches.

    .venv/bin/python benchmarks/ort_options.py --model BUNDLE [--int8 BUNDLE8] [--batch-size 16]

The inputs are random (the time of a convolution network does not depend on its pixels); each
configuration runs one warm-up batch, then ``--repeats`` batches per network. TTA is not
included (one pass per network). ``srcrn`` uses the row marked "chosen".
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

LEVELS = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}  # fmt: skip
MODES = {"sequential": ort.ExecutionMode.ORT_SEQUENTIAL, "parallel": ort.ExecutionMode.ORT_PARALLEL}
CHOSEN = (0, "all", "sequential", False)  # what srcrn.runtime.engines.OnnxRuntime sets (0: ORT's default)


def session(path: Path, threads: int, level: str, mode: str, spinning: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = LEVELS[level]
    options.execution_mode = MODES[mode]
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def images_per_second(bundle: Path, config: tuple, batch: np.ndarray, repeats: int) -> float:
    manifest = json.loads((bundle / "bundle.json").read_text())
    sessions = [session(bundle / manifest[part]["file"], *config) for part in ("segmenter", "classifier")]
    names = [s.get_inputs()[0].name for s in sessions]
    for s, name in zip(sessions, names):
        s.run(None, {name: batch})  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        for s, name in zip(sessions, names):
            s.run(None, {name: batch})
    return repeats * len(batch) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="fp32 bundle of srcrn export onnx")
    parser.add_argument("--int8", type=Path, help="int8 bundle of srcrn export onnx --quantize int8")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    size = json.loads((args.model / "bundle.json").read_text())["segmenter"]["image_size"]
    batch = np.random.default_rng(0).standard_normal((args.batch_size, 3, size, size)).astype(np.float32)
    bundles = {"fp32": args.model} | ({"int8": args.int8} if args.int8 else {})
    print(f"onnxruntime {ort.__version__}, {len(os.sched_getaffinity(0))} cores, batch {args.batch_size} at {size} px, "
          f"both networks, no TTA, {args.repeats} batches per configuration")  # fmt: skip
    print(
        "\n| intra-op threads | graph optimisation | execution | spinning | "
        + " | ".join(f"{b} img/s" for b in bundles)
        + " |"
    )
    print("|---|---|---|---|" + "---|" * len(bundles))
    for config in itertools.product((0, 1), ("basic", "extended", "all"), ("sequential", "parallel"), (True, False)):
        speeds = [images_per_second(bundle, config, batch, args.repeats) for bundle in bundles.values()]
        threads, level, mode, spinning = config
        mark = " (chosen)" if config == CHOSEN else ""
        print(f"| {threads or 'default'}{mark} | {level} | {mode} | {'on' if spinning else 'off'} | "
              + " | ".join(f"{s:.1f}" for s in speeds) + " |")  # fmt: skip


if __name__ == "__main__":
    main()
