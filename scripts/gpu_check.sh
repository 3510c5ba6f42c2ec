#!/usr/bin/env bash
# GPU checks for a machine with CUDA and a CUDA build of torch; CI has no GPU, so `make test` skips the
# CUDA tests and this script runs them by hand: the CUDA tests (Tracker = CPU answer in fp32/bf16/fp16,
# training fp32 = CPU, AMP finite, exact resume), the benchmarks on CUDA, the shipped model's held-out
# evaluation on CUDA (compare with the model card's CPU numbers) and 200 training steps of the default
# config on CUDA (seconds per step in train_metrics.jsonl).
# Usage: `scripts/gpu_check.sh` (PY=python with CUDA torch, default .venv/bin/python; OUT=log folder).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-gpu_check}
WORK=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
failed=()
run() { echo "== $*"; "$@" || failed+=("${*:1:3}"); }

run nvidia-smi -L
run "$PY" -c 'import torch; print("torch", torch.__version__, "|", torch.cuda.get_device_name(0))'
run "$PY" -m pytest -q -p no:cacheprovider test/savi_core test/training/test_train_cuda.py \
  test/training/test_baselines.py test/training/test_augment.py -rs
run "$PY" bench/bench_model.py --device cuda
for precision in fp32 bf16 fp16; do
  run "$PY" bench/bench_tracker.py --device cuda --precision "$precision"
done
run "$PY" -m training.evaluate --checkpoint savi_ros/models/default --mask-source attention --device cuda \
  --out "$WORK/eval"
cp "$WORK/eval/metrics.json" "$OUT/eval_metrics.json" 2>/dev/null
run "$PY" -m training.train --config training/configs/synthetic_cpu.yaml --device cuda --out "$WORK/train" \
  --stop-at 200
cp "$WORK/train/metrics.jsonl" "$OUT/train_metrics.jsonl" 2>/dev/null
rm -rf "$WORK"
if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu_check: FAILED: ${failed[*]}"
  exit 1
fi
echo "gpu_check: all passed"
