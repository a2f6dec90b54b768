#!/usr/bin/env bash
# The long runs of this session, in priority order, two 1-thread training runs at a time (each benchmark
# runs its jobs in 2 worker processes). Finished runs are reused, so the queue can be restarted at will:
#   nohup bash benchmarks/queue_session4.sh > runs/logs/queue.log 2>&1 &
set -u
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
PY=.venv/bin/python
while pgrep -f "benchmarks/ce_budget.py" > /dev/null; do sleep 60; done   # the budget curve first
step() { echo "##### $(date -u +%H:%M) $*"; "$PY" "$@" || echo "##### FAILED: $*"; }
# Issue 17: the selection fix on WB and the stage-2 BN option, at the 30-epoch budget of the earlier tables.
step benchmarks/wb_selection.py --epochs 30
step benchmarks/dscl_probe_bn.py --epochs 30 --arms dscl_pbsd pbsd
# Issue 18: the flagship's small-scale settings, screened on val at 30 epochs.
step benchmarks/recipe_sweep.py --recipes dscl_pbsd_resnet32.fmnist_lt --epochs 30
# Issue 16: bf16 against fp32 accuracy.
step benchmarks/precision_accuracy.py --epochs 30
step benchmarks/recipe_sweep.py --recipes scl_resnet32.fmnist_lt --epochs 30
echo "##### $(date -u +%H:%M) queue done"
