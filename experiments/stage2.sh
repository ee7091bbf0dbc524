#!/bin/bash
# Issue 13, "stage 2 beyond the paper": the paper recipe, the strong recipe, the lesion-feature
# model and their stack, each by 5-fold cross-validation on the training split (out-of-fold AUC)
# and as a final model scored on the 148 validation images, one run at a time on this 2-core CPU.
#   bash experiments/stage2.sh [DATA] [RUNS]
# Budget in epochs, not wall time, so that the results do not depend on what else the machine
# runs: stage 1 once (8 epochs of 300 steps, about 16 min alone); per CNN training (5 folds +
# the final model) the paper recipe 8 epochs (frozen backbone: forward only) and the strong
# recipe 3 (fine-tuning: about three times the work per image), about 3 min each either way;
# the feature model about 3 min in all. Wall times: each run's summary.json.
# Results: docs/results/classification.md.
set -euo pipefail
D=${1:-../shared/data/isic-dev}
R=${2:-runs/stage2}
SEG="$R/seg-strong/checkpoints/last.ckpt"  # the last (averaged) weights: none picked on validation
if [ ! -f "$R/seg-strong/summary.json" ]; then
  srcrn segment train --data "$D" --out "$R/seg-strong" --recipe strong --split official --epochs 8 \
        --keep-largest --no-progress
fi
# Every model sees the same lesion inputs: crops of the SRCRN mask's box (margin 0.2) decoded
# from the original at 128 px. CNN backbones start from the SRCRN encoder (offline: no
# ImageNet). In cross-validation every model keeps its last weights (--select last): picking an
# epoch on the held-out fold would score the fold with a model chosen on it.
common=(--data "$D" --split official --segmenter "$SEG" --input crop --margin 0.2 --image-size 128 --no-progress)
cnn=(--weights "srcrn:$SEG" --precision bf16-mixed --select last)
srcrn classify cv --out "$R/cv-features" "${common[@]}" --model features --folds 5
srcrn classify cv --out "$R/cv-paper" "${common[@]}" "${cnn[@]}" --epochs 8 --folds 5
srcrn classify cv --out "$R/cv-strong" "${common[@]}" "${cnn[@]}" --recipe strong --epochs 3 --folds 5
srcrn classify train --model ensemble --members "$R/cv-strong" --members "$R/cv-features" --members "$R/cv-paper" \
      --out "$R/ensemble" --data "$D" --no-progress
python experiments/stage2_table.py "$R" docs/results/classification
# Joint training: the same stage 1 with a melanoma head on the encoder (--aux-melanoma 0.5), its
# encoder then fine-tuned by the strong recipe. Same masks (from seg-strong), so that only the
# backbone differs. Its out-of-fold AUC is optimistic: the encoder saw the training split's
# melanoma labels, held-out folds included; compare it on the validation split only.
AUX="$R/seg-aux/checkpoints/last.ckpt"
if [ ! -f "$R/seg-aux/summary.json" ]; then
  srcrn segment train --data "$D" --out "$R/seg-aux" --recipe strong --split official --epochs 8 \
        --keep-largest --aux-melanoma 0.5 --no-progress
fi
srcrn classify cv --out "$R/cv-strong-aux" "${common[@]}" --weights "srcrn:$AUX" --precision bf16-mixed \
      --recipe strong --epochs 3 --folds 5
python experiments/stage2_table.py "$R" docs/results/classification
