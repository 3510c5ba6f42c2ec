#!/usr/bin/env bash
# `make train-default`: rebuild the shipped default model (v9) on this machine: fit the metric of the frozen
# features on cached backbone features of training videos (training.fit_metric), then the prototype model's
# few parameters by the tracking metric (training.fit_prototypes), starting from v8's fitted values as v9's
# fit did (from the untrained values the search stops at another optimum: MODEL_CARD.md), score it on the
# held-out families at a camera's size, and export it with its model card.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
CONFIG=training/configs/pretrained_cpu.yaml
METRIC=runs/pretrained_metric
OUT=runs/pretrained_fit

start=$(date +%s)
$PY -m training.fit_metric --config "$CONFIG" --out "$METRIC"
$PY -m training.fit_prototypes --config "$CONFIG" --videos 10 --init "$METRIC" --start savi_ros/models/v8 --out "$OUT"
fitted=$(date +%s)
$PY -m training.generalization --checkpoint "$OUT" --families-from "$CONFIG" --no-prototype-baseline \
  --num-videos "${GENERALIZATION_VIDEOS:-100}" --frame-size 320x240 --out "$OUT/eval/generalization"
$PY scripts/export_default.py --checkpoint "$OUT" --metric "$METRIC" \
  --generalization "$OUT/eval/generalization/generalization.json" --fit-seconds $((fitted - start))
echo "train-default: model in savi_ros/models/default/, evaluation in $OUT/eval/"
