#!/bin/bash
# Issue 7, "SRCRN that beats U-Net at equal CPU time": four runs of 25 minutes each on the dev
# data's official split (ISIC 2017 train -> val), one after another (never two at once: they
# would share the cores), then evaluation of each best checkpoint on the 148 validation images
# at their original size, and the ablations. Results: docs/results/recipes.md.
#   bash experiments/recipes.sh [DATA] [OUT]
set -euo pipefail
D=${1:-../shared/data/isic-dev}
R=${2:-runs/recipes}
for run in "srcrn paper" "unet paper" "srcrn strong" "unet strong"; do
  set -- $run
  srcrn segment train --data "$D" --out "$R/$1-$2" --arch "$1" --recipe "$2" --split official \
        --epochs 100 --time-budget 25m --no-progress
  # TTA as the recipe says (strong: on; paper: off)
  srcrn segment eval --model "$R/$1-$2/checkpoints/best.ckpt" --data "$D" --split-file "$R/$1-$2" --subset val \
        --out "$R/$1-$2/eval-val" --no-progress
done
# Ablations: the strong recipe without TTA; the paper recipe with TTA; the strong SRCRN's raw
# weights instead of their moving average.
for name in srcrn-strong unet-strong; do
  srcrn segment eval --model "$R/$name/checkpoints/best.ckpt" --data "$D" --split-file "$R/$name" --subset val \
        --out "$R/$name/eval-val-notta" --no-tta --no-progress
done
for name in srcrn-paper unet-paper; do
  srcrn segment eval --model "$R/$name/checkpoints/best.ckpt" --data "$D" --split-file "$R/$name" --subset val \
        --out "$R/$name/eval-val-tta" --tta --no-progress
done
python experiments/raw_weights.py "$R/srcrn-strong/checkpoints/best.ckpt" "$R/srcrn-strong/raw-best.ckpt"
srcrn segment eval --model "$R/srcrn-strong/raw-best.ckpt" --data "$D" --split-file "$R/srcrn-strong" --subset val \
      --out "$R/srcrn-strong/eval-val-raw" --no-progress
# Post-processing: keep the largest region, holes filled (recipe default TTA).
for name in srcrn-strong unet-strong srcrn-paper unet-paper; do
  srcrn segment eval --model "$R/$name/checkpoints/best.ckpt" --data "$D" --split-file "$R/$name" --subset val \
        --out "$R/$name/eval-val-largest" --keep-largest --no-progress
done
python benchmarks/precision.py
# Follow-up: the strong recipe under bfloat16 autocast (benchmarks/precision.py: 1.5x here).
srcrn segment train --data "$D" --out "$R/srcrn-strong-bf16" --arch srcrn --recipe strong --precision bf16-mixed \
      --split official --epochs 100 --time-budget 25m --no-progress
srcrn segment eval --model "$R/srcrn-strong-bf16/checkpoints/best.ckpt" --data "$D" --split-file "$R/srcrn-strong-bf16" \
      --subset val --out "$R/srcrn-strong-bf16/eval-val" --no-progress
python experiments/recipes_table.py "$R" docs/results/recipes/curves.png
