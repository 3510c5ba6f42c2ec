#!/usr/bin/env bash
# `make train-default`: reproduce the shipped default model (v5) from scratch (fixed seeds): v4 on boxes
# (synthetic_cpu.yaml), then fine-tuned on boxes and points (points_cpu.yaml); evaluate it
# through the Tracker on held-out seeds of its generator beside the baselines (also at 2x/4x input and
# with noisy boxes), on the generalization benchmark's in-family and held-out-family splits, and export
# it to savi_ros/models/default/ with its model card and the README's plots in docs/.
# (training/configs/randomized_cpu.yaml, the randomized-worlds fine-tuning, is not shipped: see its header.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
STAGES=(training/configs/synthetic_cpu.yaml training/configs/points_cpu.yaml)
OUTS=(runs/synthetic_cpu runs/points_cpu)  # stage 2 starts from stage 1's weights (its init_checkpoint)
OUT=${OUTS[-1]}
EVAL=$OUT/eval

start=$(date +%s)
for i in "${!STAGES[@]}"; do
  if [ -f "${OUTS[$i]}/final.json" ]; then
    echo "train-default: ${OUTS[$i]} already finished; delete it to train again"
  elif [ -f "${OUTS[$i]}/checkpoints/latest" ]; then
    $PY -m training.train --config "${STAGES[$i]}" --out "${OUTS[$i]}" --resume
  else
    $PY -m training.train --config "${STAGES[$i]}" --out "${OUTS[$i]}"
  fi
done
minutes=$(( ($(date +%s) - start) / 60 ))

# Scored through the Tracker with the node's default mask source (attention); decoder masks too.
E=($PY -m training.evaluate --checkpoint "$OUT" --mask-source attention)
"${E[@]}" --baselines --out "$EVAL/base"
"${E[@]}" --input-scale 2 --out "$EVAL/scale2"
"${E[@]}" --input-scale 4 --out "$EVAL/scale4"
"${E[@]}" --noise-sigma 0.1 --out "$EVAL/noise10"
"${E[@]}" --prompt points --out "$EVAL/points"
$PY -m training.evaluate --checkpoint "$OUT" --mask-source decoder --out "$EVAL/decoder"
$PY -m training.generalization --checkpoint "$OUT" --baselines --points --num-videos "${GENERALIZATION_VIDEOS:-100}" \
  --out "$EVAL/generalization"
$PY scripts/export_default.py --checkpoint "$OUT" --eval-dir "$EVAL" --minutes "$minutes" --config "${STAGES[@]}"
echo "train-default: model in savi_ros/models/default/, evaluation in $EVAL/"
