#!/usr/bin/env bash
# `make train-default`: reproduce the shipped default model from scratch (fixed seed), evaluate it on
# held-out seeds of the original generator beside the baselines (also at 2x/4x input and with noisy
# boxes), on the generalization benchmark's in-family and held-out-family splits, and export it to
# savi_ros/models/default/ with its model card and the README's plots in docs/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
CONFIG=${CONFIG:-training/configs/randomized_cpu.yaml}
ORIGINAL=training/configs/synthetic_cpu.yaml  # the original generator's scenes (its data section)
OUT=${OUT:-runs/randomized_cpu}
EVAL=$OUT/eval

start=$(date +%s)
# Stage 1: the v4 model on the original generator (the fine-tuning's starting point, init_checkpoint).
BASE=runs/synthetic_cpu
if [ ! -f "$BASE/final.json" ] && [ ! -f "$BASE/model.safetensors" ]; then
  if [ -f "$BASE/checkpoints/latest" ]; then
    $PY -m training.train --config "$ORIGINAL" --out "$BASE" --resume
  else
    $PY -m training.train --config "$ORIGINAL" --out "$BASE"
  fi
fi
# Stage 2: fine-tuned on the randomized worlds.
if [ -f "$OUT/final.json" ]; then
  echo "train-default: $OUT already finished; delete it to train again"
elif [ -f "$OUT/checkpoints/latest" ]; then
  $PY -m training.train --config "$CONFIG" --out "$OUT" --resume
else
  $PY -m training.train --config "$CONFIG" --out "$OUT"
fi
minutes=$(( ($(date +%s) - start) / 60 ))

# Scored through the Tracker with the node's default mask source (attention); decoder masks too.
E=($PY -m training.evaluate --checkpoint "$OUT" --config "$ORIGINAL" --mask-source attention)
"${E[@]}" --baselines --out "$EVAL/base"
"${E[@]}" --input-scale 2 --out "$EVAL/scale2"
"${E[@]}" --input-scale 4 --out "$EVAL/scale4"
"${E[@]}" --noise-sigma 0.1 --out "$EVAL/noise10"
$PY -m training.evaluate --checkpoint "$OUT" --config "$ORIGINAL" --mask-source decoder --out "$EVAL/decoder"
$PY -m training.generalization --checkpoint "$OUT" --baselines --num-videos "${GENERALIZATION_VIDEOS:-100}" \
  --out "$EVAL/generalization"
$PY scripts/export_default.py --checkpoint "$OUT" --eval-dir "$EVAL" --minutes "$minutes" --config "$CONFIG"
echo "train-default: model in savi_ros/models/default/, evaluation in $EVAL/"
