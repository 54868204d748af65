#!/bin/bash
# The λ ablation at CPU scale (issue 39; results/cpu-lambda/REPORT.md): the hybrid at a fixed JEPA weight
# λ = 0.95 (fix95) and 0.8 (fix80), and the paper's sigmoid rule at --balance_lr=1.0 (hyblr1) and 0.1 (hybrid),
# beside the MLM (λ = 0) step-matched (mlm) and FLOP-matched (mlmflop), all config/cpu.py, seeded as
# results/cpu's arms (one seed: the same initialisation and batches for every arm). results/cpu/run.sh does the
# work; this script names the arms, the folder and the note.
#   bash results/cpu-lambda/run.sh train fix95 1337   # -> out-fix95-cpu-s1337 (+ wall_s)
#   bash results/cpu-lambda/run.sh analyse            # probe.py + eval_geometry.py, pack, then by_lambda.py
#   bash results/cpu-lambda/run.sh runs               # RUNS.md's table
set -e
cd "$(dirname "$0")/../.."
export ARMS="mlm mlmflop hybrid hyblr1 fix80 fix95"  # MLM first: the reference
export OUT=results/cpu-lambda
export NOTE="λ ablation at CPU scale (config/cpu.py): 4 layers x 128, 1,600 steps of 32 x 128 tokens of the Wikipedia sample, seeds as the -s suffix; not the paper's setting."
bash results/cpu/run.sh "$@"
if [ "$1" = analyse ]; then python $OUT/by_lambda.py $OUT; fi
