#!/bin/bash
# The λ ablation at CPU scale (issue 39; results/cpu-lambda/REPORT.md): the hybrid at a fixed JEPA weight
# λ = 0.95 (fix95) and 0.8 (fix80), and the paper's sigmoid rule at --balance_lr=1.0 (hyblr1), beside the MLM
# (λ = 0), all config/cpu.py, step-matched, seeded as results/cpu's arms (same initialisation and batches).
#   bash results/cpu-lambda/run.sh train fix95 1337   # -> out-fix95-cpu-s1337 (results/cpu/run.sh's arms)
#   bash results/cpu-lambda/run.sh analyse            # probe.py + eval_geometry.py + by_lambda.py
set -e
cd "$(dirname "$0")/../.."
wiki=${WIKI:-../shared/data/enwiki_sample}
glue=${GLUE:-../shared/data/glue}
out=results/cpu-lambda
note="λ ablation at CPU scale (config/cpu.py): 4 layers x 128, 1,600 steps of 32 x 128 tokens of the Wikipedia sample, seeds as the -s suffix; not the paper's setting."
case "$1" in
train) bash results/cpu/run.sh "$@" ;;
analyse)
  ckpts=$(for arm in mlm fix80 fix95 hyblr1; do ls -d out-$arm-cpu-s*/ 2>/dev/null | while read d; do
            [ -f $d/ckpt.pt ] && echo ${d%/}; done; done)  # MLM first: the reference
  [ -n "$ckpts" ] || { echo "error: no trained out-{mlm,fix80,fix95,hyblr1}-cpu-s* checkpoints: train some first" >&2; exit 2; }
  /usr/bin/time -f "probe: %e s" python probe.py $ckpts --glue_dir=$glue --report_dir=$out
  /usr/bin/time -f "geometry: %e s" python eval_geometry.py $ckpts --glue_dir=$glue --dataset=$wiki \
    --report_dir=$out --report_note="$note"
  python $out/by_lambda.py $out ;;
*) echo "usage: bash results/cpu-lambda/run.sh train {mlm,fix95,fix80,hyblr1} SEED | analyse" >&2; exit 2 ;;
esac
