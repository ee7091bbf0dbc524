#!/bin/bash
# Issue 13, "stage 2 beyond the paper": the paper recipe, the strong recipe, the lesion-feature
# model and their stack, each by 5-fold cross-validation on the training split (out-of-fold AUC)
# and as a final model scored on the 148 validation images, one run at a time on this 2-core CPU.
#   bash experiments/stage2.sh [DATA] [RUNS]
# Budget: stage 1 once (15 min); every CNN training (5 folds + final, per recipe) 150 s; the
# feature model takes about 2 minutes in all. Results: docs/results/classification.md.
set -euo pipefail
D=${1:-../shared/data/isic-dev}
R=${2:-runs/stage2}
SEG="$R/seg-strong/checkpoints/best.ckpt"
if [ ! -f "$R/seg-strong/summary.json" ]; then
  srcrn segment train --data "$D" --out "$R/seg-strong" --recipe strong --split official --epochs 100 \
        --time-budget 15m --keep-largest --no-progress
fi
# Every model sees the same lesion inputs: crops of the SRCRN mask's box (margin 0.2) decoded
# from the original at 128 px. CNN backbones start from the SRCRN encoder (offline: no
# ImageNet). In cross-validation every model keeps its last weights (--select last): picking an
# epoch on the held-out fold would score the fold with a model chosen on it.
common=(--data "$D" --split official --segmenter "$SEG" --input crop --margin 0.2 --image-size 128 --no-progress)
cnn=(--weights "srcrn:$SEG" --time-budget 150s --precision bf16-mixed --select last)
srcrn classify cv --out "$R/cv-paper" "${common[@]}" "${cnn[@]}" --folds 5
srcrn classify cv --out "$R/cv-strong" "${common[@]}" "${cnn[@]}" --recipe strong --folds 5
srcrn classify cv --out "$R/cv-features" "${common[@]}" --model features --folds 5
srcrn classify train --model ensemble --members "$R/cv-strong" --members "$R/cv-features" --members "$R/cv-paper" \
      --out "$R/ensemble" --data "$D" --no-progress
python experiments/stage2_table.py "$R" docs/results/classification
