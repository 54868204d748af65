#!/bin/bash
# The λ ablation at CPU scale (issue 39; results/cpu-lambda/REPORT.md): the hybrid at a fixed JEPA weight
# λ = 0.95 (fix95) and 0.8 (fix80), and the paper's sigmoid rule at --balance_lr=1.0 (hyblr1) and 0.1 (hybrid),
# beside the MLM (λ = 0) step-matched (mlm) and FLOP-matched (mlmflop), all config/cpu.py, seeded as
# results/cpu's arms (one seed: the same initialisation and batches for every arm).
#   bash results/cpu-lambda/run.sh train fix95 1337   # -> out-fix95-cpu-s1337 (results/cpu/run.sh's arms) + wall_s
#   bash results/cpu-lambda/run.sh analyse            # probe.py + eval_geometry.py + by_lambda.py, then pack
#   bash results/cpu-lambda/run.sh runs               # RUNS.md's table
# A session's checkpoints do not outlive it: pack keeps each one results-only (probe.results_only: the stripped
# checkpoint, log.jsonl, wall_s and the cached analysis results) in results/cpu-lambda/ckpt/, and analyse takes
# those in where the checkpoint itself is not here, so seeds trained in later sessions join the same report as
# long as the analysis code, data and settings stay those it was analysed with.
set -e
cd "$(dirname "$0")/../.."
wiki=${WIKI:-../shared/data/enwiki_sample}
glue=${GLUE:-../shared/data/glue}
out=results/cpu-lambda
arms="mlm mlmflop hybrid hyblr1 fix80 fix95"  # MLM first: the reference
note="λ ablation at CPU scale (config/cpu.py): 4 layers x 128, 1,600 steps of 32 x 128 tokens of the Wikipedia sample, seeds as the -s suffix; not the paper's setting."
checkpoints() {  # every trained out_dir here, else its results-only copy in $out/ckpt
  local arm d
  for arm in $arms; do
    for d in $(ls -d out-$arm-cpu-s*/ $out/ckpt/out-$arm-cpu-s*/ 2>/dev/null | xargs -rn1 basename | sort -u); do
      if [ -f $d/ckpt.pt ]; then echo $d; elif [ -f $out/ckpt/$d/ckpt.pt ]; then echo $out/ckpt/$d; fi
    done
  done
}
case "$1" in
train)
  start=$(date +%s)
  bash results/cpu/run.sh "$@"
  echo $(( $(date +%s) - start )) > out-$2-cpu-s$3/wall_s ;;  # RUNS.md's wall time
analyse)
  ckpts=$(checkpoints)
  [ -n "$ckpts" ] || { echo "error: no out-{${arms// /,}}-cpu-s* checkpoints: train some first" >&2; exit 2; }
  /usr/bin/time -f "probe: %e s" python probe.py $ckpts --glue_dir=$glue --report_dir=$out
  /usr/bin/time -f "geometry: %e s" python eval_geometry.py $ckpts --glue_dir=$glue --dataset=$wiki \
    --report_dir=$out --report_note="$note"
  python $out/by_lambda.py $out
  bash $0 pack ;;
pack)
  runs=$(checkpoints | grep -v /) || true  # this session's: each replaces an older copy of the same run
  [ -n "$runs" ] || { echo "error: no trained out-{${arms// /,}}-cpu-s* checkpoints here to pack" >&2; exit 2; }
  for d in $runs; do rm -rf $out/ckpt/$d; done
  # one process for all: each start imports torch
  python -c "import sys, probe; [probe.results_only(d, sys.argv[1] + '/' + d) for d in sys.argv[2:]]" $out/ckpt $runs
  for d in $runs; do cp $d/wall_s $out/ckpt/$d/ 2>/dev/null || true; done
  du -sh $out/ckpt ;;
runs) python $out/runs.py $(checkpoints) ;;
*) echo "usage: bash results/cpu-lambda/run.sh train {${arms// /,}} SEED | analyse | pack | runs" >&2; exit 2 ;;
esac
