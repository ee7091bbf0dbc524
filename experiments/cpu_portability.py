"""Segmenter logits of an ONNX model on the first 4 sample images, saved as .npy: run it natively
and under Debian's qemu-user emulating a CPU without VNNI, then compare (docs/results/encoders.md).

    python experiments/cpu_portability.py MODEL.onnx native.npy
    PYTHONPATH=.venv/lib/python3.11/site-packages:src qemu-x86_64 -cpu EPYC-Milan \\
        "$(readlink -f .venv/bin/python)" experiments/cpu_portability.py MODEL.onnx zen3.npy
    python -c "import numpy as n; a, b = n.load('native.npy'), n.load('zen3.npy'); print(abs(a - b).max(), ((a > 0) != (b > 0)).mean())"
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from srcrn.data.normalization import normalize_numpy

model, out = sys.argv[1], sys.argv[2]
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
side = session.get_inputs()[0].shape[-1]
images = sorted((Path(__file__).parents[1] / "src" / "srcrn" / "sample" / "images").glob("*.jpg"))[:4]
batch = normalize_numpy(np.stack([np.asarray(Image.open(p).convert("RGB").resize((side, side))) for p in images]))
np.save(out, session.run(None, {session.get_inputs()[0].name: batch})[0])
print("logits of", len(images), "images:", out)
