#!/bin/bash
# The CPU-scale reproduction (results/cpu/REPORT.md): four arms on config/cpu.py, seeded by --seed (the seed fixes
# the weights' initialisation and the batches' order, the same for every arm of one seed).
#   bash results/cpu/run.sh train mlm 1338      # one arm and seed -> out-mlm-cpu-s1338 (+ wall_s, its wall time)
#   bash results/cpu/run.sh analyse             # probe.py + eval_geometry.py over every run of the arms, then pack
#   bash results/cpu/run.sh runs                # RUNS.md's table
# Arms: mlm (config/mlm.py), hybrid (config/hybrid.py: the paper's sigmoid rule), hybunc (the same with
# --balance=uncertainty, Kendall et al.), mlmflop (MLM given the hybrid's counted FLOPs, the EMA teacher's forward
# included: 9.662e13 = the hybrid's 1,600 steps, i.e. 3,618 MLM steps; warmup and cosine stretch with it); and the
# λ ablation's (results/cpu-lambda/run.sh) fix95, fix80, hyblr1. Seeds 1337, 1338, 1339.
# A session's checkpoints do not outlive it: pack keeps each one results-only (probe.results_only: the stripped
# checkpoint, log.jsonl, wall_s and the cached analysis results) in a results/*/ckpt/ folder, and analyse takes a
# run's copy where the run itself is not here, so seeds trained in later sessions join the same report as long as
# the analysis code, data and settings stay those it was analysed with.
# WIKI and GLUE override the data folders; ARMS, OUT and NOTE the report's runs, folder and note.
set -e
cd "$(dirname "$0")/../.."
wiki=${WIKI:-../shared/data/enwiki_sample}
glue=${GLUE:-../shared/data/glue}
arms=${ARMS:-mlm hybrid hybunc mlmflop}  # MLM first: the reference
out=${OUT:-results/cpu}
note=${NOTE:-"CPU-scale reproduction (config/cpu.py): 4 layers x 128, 1,600 steps of 32 x 128 tokens of the Wikipedia sample, seeds as the -s suffix; not the paper's setting."}
copy_of() { ls -d results/*/ckpt/$1 2>/dev/null | head -1; }  # a run's results-only copy, if it has one
checkpoints() {  # every run of the arms: its out_dir where trained here, else its results-only copy
  local arm d
  for arm in $arms; do
    for d in $(ls -d out-$arm-cpu-s*/ results/*/ckpt/out-$arm-cpu-s*/ 2>/dev/null | xargs -rn1 basename | sort -u); do
      if [ -f $d/ckpt.pt ]; then echo $d; else copy_of $d; fi
    done
  done
}
case "$1" in
train)
  case "$2" in
    mlm) cfg="config/mlm.py config/cpu.py" ;;
    hybrid) cfg="config/hybrid.py config/cpu.py" ;;
    hybunc) cfg="config/hybrid.py config/cpu.py --balance=uncertainty" ;;
    mlmflop) cfg="config/mlm.py config/cpu.py --max_flops=96623342387200" ;;  # flops_done of out-hybrid-cpu-s*
    fix95) cfg="config/hybrid.py config/cpu.py --balance=fixed --fixed_lambda=0.95" ;;  # results/cpu-lambda
    fix80) cfg="config/hybrid.py config/cpu.py --balance=fixed --fixed_lambda=0.8" ;;
    hyblr1) cfg="config/hybrid.py config/cpu.py --balance_lr=1.0" ;;  # the official code's rate: λ climbs
    *) echo "error: arm '$2': use mlm, hybrid, hybunc, mlmflop, fix95, fix80 or hyblr1" >&2; exit 2 ;;
  esac
  [[ "$3" =~ ^[0-9]+$ ]] || { echo "error: give a seed: bash $0 train $2 1337" >&2; exit 2; }
  start=$(date +%s)
  python train.py $cfg --seed=$3 --out_dir=out-$2-cpu-s$3 --dataset=$wiki
  echo $(( $(date +%s) - start )) > out-$2-cpu-s$3/wall_s ;;  # RUNS.md's wall time
analyse)
  ckpts=$(checkpoints)
  [ -n "$ckpts" ] || { echo "error: no out-{${arms// /,}}-cpu-s* runs: train some first" >&2; exit 2; }
  /usr/bin/time -f "probe: %e s" python probe.py $ckpts --glue_dir=$glue --report_dir=$out
  /usr/bin/time -f "geometry: %e s" python eval_geometry.py $ckpts --glue_dir=$glue --dataset=$wiki \
    --report_dir=$out --report_note="$note"
  if checkpoints | grep -qv /; then bash $0 pack; fi ;;  # runs trained here: kept results-only
pack)
  runs=$(checkpoints | grep -v /) || true  # this session's: each replaces an older copy of the same run
  [ -n "$runs" ] || { echo "error: no trained out-{${arms// /,}}-cpu-s* runs here to pack" >&2; exit 2; }
  pairs=""
  for d in $runs; do
    dst=$(copy_of $d)
    dst=${dst:-$out/ckpt/$d}
    rm -rf $dst
    pairs="$pairs $d $dst"
  done
  # one process for all (each start imports torch): the stripped checkpoint, log.jsonl and the analysis cache
  python -c "import sys, probe; a = sys.argv[1:]; [probe.results_only(*p) for p in zip(a[::2], a[1::2])]" $pairs
  set -- $pairs
  while [ $# -gt 0 ]; do cp $1/wall_s $2/ 2>/dev/null || true; shift 2; done
  du -sh results/*/ckpt ;;
runs) python results/cpu/runs.py $(checkpoints) ;;
*) echo "usage: bash $0 train ARM SEED | analyse | pack | runs" >&2; exit 2 ;;
esac
