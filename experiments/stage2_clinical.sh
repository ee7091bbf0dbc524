#!/bin/bash
# Issue 20, "clinical context": the lesion-feature model, the clinical context alone (age, sex,
# site), the two together, the fine-tuned CNN, and stacks of them, each by 5-fold
# cross-validation on the training split (the same folds for every row: one seed, one split)
# and as a final model scored once on the 148 ISIC 2017 validation images.
#   bash experiments/stage2_clinical.sh [DATA] [RUNS]
# Stage 1 and the lesion inputs are those of experiments/stage2.sh (strong recipe, 4 epochs,
# last weights; crops of margin 0.2 at 128 px). The metadata is the data folder's own
# metadata.csv (ISIC 2019 form; PH2 has none: its 150 images are scored without context).
# Results: docs/results/classification.md (experiments/stage2_table.py).
set -euo pipefail
D=${1:-../shared/data/isic-dev}
R=${2:-runs/stage2}
SEG="$R/seg-strong/checkpoints/last.ckpt"
if [ ! -f "$R/seg-strong/summary.json" ]; then
  srcrn segment train --data "$D" --out "$R/seg-strong" --recipe strong --split official --epochs 4 \
        --ema-decay 0.99 --keep-largest --no-progress
fi
common=(--data "$D" --split official --segmenter "$SEG" --input crop --margin 0.2 --image-size 128 --no-progress)
srcrn classify cv --out "$R/cv-features" "${common[@]}" --model features --folds 5
srcrn classify cv --out "$R/cv-clinical" "${common[@]}" --model features --no-lesion-features --clinical all --folds 5
srcrn classify cv --out "$R/cv-features-clinical" "${common[@]}" --model features --clinical all --folds 5
# The CNN (about 40 minutes on 2 cores): one epoch of the strong recipe per fold, as in stage2.sh.
srcrn classify cv --out "$R/cv-strong" "${common[@]}" --weights "srcrn:$SEG" --select last --recipe strong \
      --epochs 1 --ema-decay 0.98 --folds 5
# Stacks (logistic regression on the members' out-of-fold logits), each one self-contained model.
srcrn classify train --model ensemble --members "$R/cv-strong" --members "$R/cv-features" \
      --out "$R/ensemble" --data "$D" --no-progress
srcrn classify train --model ensemble --members "$R/cv-strong" --members "$R/cv-features-clinical" \
      --out "$R/ensemble-clinical" --data "$D" --no-progress
srcrn classify train --model ensemble --members "$R/cv-strong" --members "$R/cv-features" \
      --members "$R/cv-clinical" --out "$R/ensemble-three" --data "$D" --no-progress
