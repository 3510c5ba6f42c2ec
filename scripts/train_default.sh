#!/usr/bin/env bash
# `make train-default`: reproduce the shipped default model (v4) from scratch (fixed seed), evaluate it
# through the Tracker on held-out seeds of its generator beside the baselines (also at 2x/4x input and
# with noisy boxes), on the generalization benchmark's in-family and held-out-family splits, and export
# it to savi_ros/models/default/ with its model card and the README's plots in docs/.
# (training/configs/randomized_cpu.yaml, the randomized-worlds fine-tuning, is not shipped: see its header.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
CONFIG=${CONFIG:-training/configs/synthetic_cpu.yaml}
OUT=${OUT:-runs/synthetic_cpu}
EVAL=$OUT/eval

start=$(date +%s)
if [ -f "$OUT/final.json" ]; then
  echo "train-default: $OUT already finished; delete it to train again"
elif [ -f "$OUT/checkpoints/latest" ]; then
  $PY -m training.train --config "$CONFIG" --out "$OUT" --resume
else
  $PY -m training.train --config "$CONFIG" --out "$OUT"
fi
minutes=$(( ($(date +%s) - start) / 60 ))

# Scored through the Tracker with the node's default mask source (attention); decoder masks too.
E=($PY -m training.evaluate --checkpoint "$OUT" --mask-source attention)
"${E[@]}" --baselines --out "$EVAL/base"
"${E[@]}" --input-scale 2 --out "$EVAL/scale2"
"${E[@]}" --input-scale 4 --out "$EVAL/scale4"
"${E[@]}" --noise-sigma 0.1 --out "$EVAL/noise10"
$PY -m training.evaluate --checkpoint "$OUT" --mask-source decoder --out "$EVAL/decoder"
$PY -m training.generalization --checkpoint "$OUT" --baselines --num-videos "${GENERALIZATION_VIDEOS:-100}" \
  --out "$EVAL/generalization"
$PY scripts/export_default.py --checkpoint "$OUT" --eval-dir "$EVAL" --minutes "$minutes" --config "$CONFIG"
echo "train-default: model in savi_ros/models/default/, evaluation in $EVAL/"
