#!/usr/bin/env bash
# `make train-default`: reproduce the shipped default model from scratch (fixed seed), evaluate it on
# held-out synthetic scenes beside both baselines (also at 2x/4x input and with noisy boxes), and
# export it to savi_ros/models/default/ with its model card and the README's plots in docs/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
CONFIG=training/configs/synthetic_cpu.yaml
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

# The node's default mask source (config/tracker.yaml) is `attention`, which is the better one for this
# model; the decoder's masks (the paper's) are scored too.
ATT=(--mask-source attention)
$PY -m training.evaluate --checkpoint "$OUT" "${ATT[@]}" --baselines --out "$EVAL/base"
$PY -m training.evaluate --checkpoint "$OUT" "${ATT[@]}" --input-scale 2 --out "$EVAL/scale2"
$PY -m training.evaluate --checkpoint "$OUT" "${ATT[@]}" --input-scale 4 --out "$EVAL/scale4"
$PY -m training.evaluate --checkpoint "$OUT" "${ATT[@]}" --noise-sigma 0.1 --out "$EVAL/noise10"
$PY -m training.evaluate --checkpoint "$OUT" --mask-source decoder --out "$EVAL/decoder"
$PY scripts/export_default.py --checkpoint "$OUT" --eval-dir "$EVAL" --minutes "$minutes"
echo "train-default: model in savi_ros/models/default/, evaluation in $EVAL/"
