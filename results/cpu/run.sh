#!/bin/bash
# The CPU-scale reproduction (results/cpu/REPORT.md): three arms on config/cpu.py, step-matched, seeded by --seed
# (the seed fixes the weights' initialisation and the batches' order, the same for every arm of one seed).
#   bash results/cpu/run.sh train mlm 1338      # one arm and seed -> out-mlm-cpu-s1338
#   bash results/cpu/run.sh analyse             # probe.py + eval_geometry.py over every out-*-cpu-s* checkpoint
# Arms: mlm (config/mlm.py), hybrid (config/hybrid.py: the paper's sigmoid rule), hybunc (the same with
# --balance=uncertainty, Kendall et al.), mlmflop (MLM given the hybrid's counted FLOPs, the EMA teacher's forward
# included: 9.662e13 = the hybrid's 1,600 steps, i.e. 3,618 MLM steps; warmup and cosine stretch with it).
# Seeds 1337, 1338, 1339. WIKI and GLUE override the data folders.
set -e
cd "$(dirname "$0")/../.."
wiki=${WIKI:-../shared/data/enwiki_sample}
glue=${GLUE:-../shared/data/glue}
out=results/cpu
note="CPU-scale reproduction (config/cpu.py): 4 layers x 128, 1,600 steps of 32 x 128 tokens of the Wikipedia sample, seeds as the -s suffix; not the paper's setting."
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
  [[ "$3" =~ ^[0-9]+$ ]] || { echo "error: give a seed: bash results/cpu/run.sh train $2 1337" >&2; exit 2; }
  /usr/bin/time -f "$2 s$3: %e s" python train.py $cfg --seed=$3 --out_dir=out-$2-cpu-s$3 --dataset=$wiki ;;
analyse)
  ckpts=$(for arm in mlm hybrid hybunc mlmflop; do ls -d out-$arm-cpu-s* 2>/dev/null; done)  # MLM first: the reference
  [ -n "$ckpts" ] || { echo "error: no out-*-cpu-s* checkpoints: train some first" >&2; exit 2; }
  /usr/bin/time -f "probe: %e s" python probe.py $ckpts --glue_dir=$glue --report_dir=$out
  /usr/bin/time -f "geometry: %e s" python eval_geometry.py $ckpts --glue_dir=$glue --dataset=$wiki \
    --report_dir=$out --report_note="$note" ;;
*) echo "usage: bash results/cpu/run.sh train {mlm,hybrid,hybunc,mlmflop} SEED | analyse" >&2; exit 2 ;;
esac
