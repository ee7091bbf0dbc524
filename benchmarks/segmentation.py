"""Training and inference speed of SRCRN-8s against its peers, in one run, same inputs.

Peers (all without pretrained weights, one output channel):
* torchvision ``fcn_resnet50`` (dilated ResNet-50, output stride 8, FCN head);
* segmentation_models_pytorch ``Unet("resnet50")``;
* SRCRN with stride 8 (ours, the paper's model), and 16 / 32 for the ablation.

Training: Adam 1e-3 + BCE with logits, batch 8, 128x128 (the paper's recipe), images/s over
timed steps after warm-up. Inference: batch 32, ``torch.inference_mode``. Parameters, and
forward GFLOPs of one 128x128 image counted by ``torch.utils.flop_counter``.

``--encoders``: instead, SRCRN-8s (64 score channels, the strong recipe's) on each encoder of
``srcrn.models.encoders`` beside smp's ``Unet`` and ``FPN`` on the same encoder (issue 30).

    .venv/bin/python benchmarks/segmentation.py [--steps 10] [--size 128 | --size 192x256] [--encoders]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from srcrn.models import SRCRN, build_segmenter
from srcrn.models.encoders import ENCODERS
from srcrn.shapes import ImageSize, as_image_size, height_width, size_text


class FirstOutput(torch.nn.Module):
    """torchvision's segmentation models return a dict; keep its 'out' tensor."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def peers() -> dict[str, callable]:
    import segmentation_models_pytorch as smp
    from torchvision.models.segmentation import fcn_resnet50

    return {
        "SRCRN-8s (ours)": lambda: SRCRN(stride=8),
        "SRCRN-16s": lambda: SRCRN(stride=16),
        "SRCRN-32s": lambda: SRCRN(stride=32),
        "torchvision fcn_resnet50": lambda: FirstOutput(
            fcn_resnet50(weights=None, weights_backbone=None, num_classes=1, aux_loss=False)
        ),
        "smp Unet(resnet50)": lambda: smp.Unet("resnet50", encoder_weights=None, classes=1),
    }


def encoder_peers(encoders: tuple[str, ...] = ENCODERS) -> dict[str, callable]:
    """SRCRN-8s and smp's Unet and FPN on each of ``encoders`` (random weights: speed does not depend on them)."""
    builds = {}
    for encoder in encoders:
        for arch, label in (("srcrn", "SRCRN-8s"), ("unet", "smp Unet"), ("fpn", "smp FPN")):
            builds[f"{label} ({encoder})"] = lambda arch=arch, encoder=encoder: build_segmenter(
                arch, stride=8, score_channels=64, encoder=encoder
            )
    return builds


def train_speed(model, size: ImageSize, steps: int, batch: int = 8, bf16: bool = False) -> float:
    """Images/s of Adam + BCE steps; ``bf16``: the forward pass under CPU bfloat16 autocast
    (what Lightning's ``--precision bf16-mixed`` does on a CPU)."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, *height_width(size))
    y = (torch.rand(batch, 1, *height_width(size)) > 0.5).float()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        F.binary_cross_entropy_with_logits(logits.float(), y).backward()
        optimizer.step()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


@torch.inference_mode()
def inference_speed(model, size: ImageSize, batches: int, batch: int = 32, bf16: bool = False) -> float:
    model.eval()
    x = torch.randn(batch, 3, *height_width(size))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model(x)
        start = time.perf_counter()
        for _ in range(batches):
            model(x)
    return batches * batch / (time.perf_counter() - start)


def forward_gflops(model, size: ImageSize) -> float:
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.randn(1, 3, *height_width(size)))
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per model")
    parser.add_argument("--batches", type=int, default=3, help="timed inference batches per model")
    parser.add_argument("--size", type=as_image_size, default=128, help="a side, or height x width (192x256)")
    parser.add_argument("--encoders", action="store_true", help="every encoder, SRCRN beside smp's Unet and FPN")
    parser.add_argument("--only", default=",".join(ENCODERS), help="with --encoders: these encoders (comma-separated)")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(
        f"machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{size_text(args.size)} px, train batch 8 x {args.steps} steps, inference batch 32 x {args.batches}"
    )
    results = {}
    chosen = tuple(e for e in args.only.split(",") if e)
    if unknown := set(chosen) - set(ENCODERS):
        parser.error(f"--only: unknown encoder(s) {', '.join(sorted(unknown))}; choose from {', '.join(ENCODERS)}")
    for name, build in (encoder_peers(chosen) if args.encoders else peers()).items():
        model = build()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        results[name] = (
            params,
            forward_gflops(model, args.size),
            train_speed(model, args.size, args.steps),
            inference_speed(model, args.size, args.batches),
        )
        print(f"  {name}: {results[name][2]:.1f} train img/s, {results[name][3]:.1f} inference img/s", flush=True)
    if args.encoders:
        print_encoder_table(results)
        return
    ours = results["SRCRN-8s (ours)"]
    print(
        "\n| model | params (M) | GFLOPs/img | train img/s | inference img/s | train speed vs SRCRN-8s | inference vs SRCRN-8s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, (params, gflops, train, infer) in results.items():
        print(
            f"| {name} | {params:.1f} | {gflops:.2f} | {train:.1f} | {infer:.1f} | "
            f"{train / ours[2]:.2f}x | {infer / ours[3]:.2f}x |"
        )
    unet = results["smp Unet(resnet50)"]
    print(
        f"\nSRCRN-8s trains {ours[2] / unet[2]:.2f}x as fast as smp Unet(resnet50) "
        f"and {ours[2] / results['torchvision fcn_resnet50'][2]:.2f}x as fast as fcn_resnet50."
    )


def print_encoder_table(results: dict[str, tuple[float, float, float, float]]) -> None:
    """One row per model; the ratios against SRCRN-8s on ResNet-50 and against smp Unet on the same encoder."""
    base = results.get("SRCRN-8s (resnet50)")
    print("\n| model | params (M) | GFLOPs/img | train img/s | inference img/s | train vs SRCRN-8s (resnet50) "
          "| train vs smp Unet, same encoder |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, (params, gflops, train, infer) in results.items():
        encoder = name[name.index("(") + 1 : -1]
        unet = results[f"smp Unet ({encoder})"]
        print(
            f"| {name} | {params:.1f} | {gflops:.2f} | {train:.1f} | {infer:.1f} | "
            f"{f'{train / base[2]:.2f}x' if base else 'not run'} | "
            f"{train / unet[2]:.2f}x |"
        )


if __name__ == "__main__":
    main()
