#!/usr/bin/env bash
# Evaluate a run (or step directory) as the shipped default model's card reports it, into <run>/eval/:
# through the Tracker with the node's default mask source (attention) on held-out seeds of the original
# generator (training/configs/synthetic_cpu.yaml's data section: the same videos for every model version),
# at 1x/2x/4x input, with noisy boxes, prompted by points, with decoder masks; then the generalization
# benchmark on the run's own training families (GENERALIZATION_VIDEOS per split, default 100).
# Usage: scripts/evaluate_default.sh RUN [EVAL_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python
OUT=$1
EVAL=${2:-$OUT/eval}
E=($PY -m training.evaluate --checkpoint "$OUT" --config training/configs/synthetic_cpu.yaml --mask-source attention)
"${E[@]}" --baselines --out "$EVAL/base"
"${E[@]}" --input-scale 2 --out "$EVAL/scale2"
"${E[@]}" --input-scale 4 --out "$EVAL/scale4"
"${E[@]}" --noise-sigma 0.1 --out "$EVAL/noise10"
"${E[@]}" --prompt points --out "$EVAL/points"
$PY -m training.evaluate --checkpoint "$OUT" --config training/configs/synthetic_cpu.yaml --mask-source decoder \
  --out "$EVAL/decoder"
$PY -m training.generalization --checkpoint "$OUT" --baselines --points --num-videos "${GENERALIZATION_VIDEOS:-100}" \
  --out "$EVAL/generalization"
