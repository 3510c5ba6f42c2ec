#!/usr/bin/env bash
# `make train-default`: retrain the shipped default model (v7) from scratch on this machine: extract the
# frozen backbone's features of the training videos, train the prototype slots on them, score the result
# on the held-out families at a camera's size, and export it with its model card.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
CONFIG=training/configs/pretrained_cpu.yaml
OUT=runs/pretrained_cpu

start=$(date +%s)
$PY -m training.feature_cache --config "$CONFIG"
extracted=$(date +%s)
if [ -f "$OUT/final.json" ]; then
  echo "train-default: $OUT already finished; delete it to train again"
elif [ -f "$OUT/checkpoints/latest" ]; then
  $PY -m training.train --config "$CONFIG" --resume
else
  $PY -m training.train --config "$CONFIG"
fi
trained=$(date +%s)

$PY -m training.generalization --checkpoint "$OUT" --num-videos "${GENERALIZATION_VIDEOS:-100}" \
  --frame-size 320x240 --out "$OUT/eval/generalization"
$PY scripts/export_default.py --checkpoint "$OUT" --generalization "$OUT/eval/generalization/generalization.json" \
  --extract-seconds $((extracted - start)) --train-seconds $((trained - extracted))
echo "train-default: model in savi_ros/models/default/, evaluation in $OUT/eval/"
