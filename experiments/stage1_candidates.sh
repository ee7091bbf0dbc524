#!/bin/bash
# Issue 30, item 3: stage-1 candidates on an ImageNet encoder at equal CPU time, chosen on the
# validation split. Each run gets one CPU core (taskset, one thread) and the same wall budget
# BUDGET (default 12m): pinned, runs do not share a core with each other or with other work on
# the second one, so equal wall time is equal CPU time. The strong recipe's cosine schedule ends
# at the budget, and the LAST weights are evaluated (no epoch chosen on the validation split).
# Resumable: a finished candidate (its eval-val/metrics.json) is skipped.
#   bash experiments/stage1_candidates.sh DATA RUNS [CORE]
set -euo pipefail
D=${1:?data folder (e.g. the default-model data view)}
R=${2:?runs folder}
CORE=${3:-1}
BUDGET=${BUDGET:-12m}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
run() {
  local name=$1; shift
  local out="$R/$name"
  if [ ! -f "$out/summary.json" ]; then
    local resume=(); [ -f "$out/config.yaml" ] && resume=(--resume)
    taskset -c "$CORE" srcrn segment train --data "$D" --out "$out" --recipe strong --split official --epochs 100 \
      --time-budget "$BUDGET" --encoder-weights imagenet --keep-largest --no-progress "$@" "${resume[@]}"
  fi
  [ -f "$out/eval-val/metrics.json" ] || taskset -c "$CORE" srcrn segment eval --model "$out/checkpoints/last.ckpt" \
      --data "$D" --split-file "$out" --subset val --out "$out/eval-val" --no-progress
}
run srcrn-lite0 --arch srcrn --encoder efficientnet-lite0
run srcrn-lite2 --arch srcrn --encoder efficientnet-lite2
run unet-lite0 --arch unet --encoder efficientnet-lite0
run fpn-lite0 --arch fpn --encoder efficientnet-lite0
