#!/bin/bash
# Issue 30, item 4: the paper's stage 2 faithfully on ImageNet weights: a FROZEN EfficientNet-Lite0
# with a new head (SGD 0.01, Nesterov 0.9, inverse-time decay: the 'paper' recipe) on SRCRN lesion
# crops, and the paper's batch-size study (Table 3: 4..64), each by 5-fold cross-validation on the
# official folds, image only. EPOCHS (default 5) per fold: the paper trains 100, which two cores
# cannot give 25 runs here; BATCHES (default the paper's 4 8 16 32 64) the batch sizes compared.
# Pinned to one core like experiments/stage1_candidates.sh.
#   bash experiments/frozen_batch_study.sh DATA SEGMENTER RUNS [CORE]
set -euo pipefail
D=${1:?data folder}
SEG=${2:?SRCRN checkpoint giving the masks}
R=${3:?runs folder}
CORE=${4:-1}
EPOCHS=${EPOCHS:-5}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
for batch in ${BATCHES:-32 4 8 16 64}; do
  out="$R/frozen-lite0-b$batch"
  [ -f "$out/cv.json" ] || taskset -c "$CORE" srcrn classify cv --out "$out" --data "$D" --split official \
      --segmenter "$SEG" --input crop --margin 0.2 --image-size 128 --model cnn --recipe paper \
      --encoder efficientnet-lite0 --weights imagenet --batch-size "$batch" --epochs "$EPOCHS" --select last --folds 5 \
      --target-sensitivity 0.9 --no-progress
done
