"""Is bfloat16 autocast worth it on this CPU? Training and inference speed of SRCRN-8s (the
paper's 2 score channels and the strong recipe's 64) and smp Unet(resnet50), float32 against
bf16 autocast, in one run, same inputs. Decides whether a recipe should set
``--precision bf16-mixed`` here.

    .venv/bin/python benchmarks/precision.py [--steps 10] [--size 128]
"""

from __future__ import annotations

import argparse
import platform

import torch
from segmentation import inference_speed, train_speed  # benchmarks/segmentation.py

from srcrn.models import build_segmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per model and precision")
    parser.add_argument("--batches", type=int, default=3, help="timed inference batches")
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    flags = open("/proc/cpuinfo").read() if platform.system() == "Linux" else ""
    print(
        f"machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"avx512_bf16: {'avx512_bf16' in flags}, amx_bf16: {'amx_bf16' in flags}; {args.size}px, "
        f"train batch 8 x {args.steps} steps, inference batch 32 x {args.batches}"
    )
    models = {
        "SRCRN-8s, 2 score channels": dict(arch="srcrn", score_channels=2),
        "SRCRN-8s, 64 score channels": dict(arch="srcrn", score_channels=64),
        "smp Unet(resnet50)": dict(arch="unet"),
    }
    print(
        "\n| model | fp32 train img/s | bf16 train img/s | bf16/fp32 train | fp32 infer img/s | "
        "bf16 infer img/s | bf16/fp32 infer |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, kwargs in models.items():
        torch.manual_seed(0)
        model = build_segmenter(**kwargs)
        train = [train_speed(model, args.size, args.steps, bf16=b) for b in (False, True)]
        infer = [inference_speed(model, args.size, args.batches, bf16=b) for b in (False, True)]
        print(
            f"| {name} | {train[0]:.1f} | {train[1]:.1f} | {train[1] / train[0]:.2f}x | {infer[0]:.1f} | "
            f"{infer[1]:.1f} | {infer[1] / infer[0]:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
