#!/bin/bash
# The CPU-scale overlay (config/cpu.py) end to end, as results/cpu-overlay/ was made: both objectives on the
# English Wikipedia sample, then the analysis of the two checkpoints against the shared GLUE files.
# Each training run alone on 2 CPU cores; the figures are in the README ("Results at CPU scale").
#   bash results/cpu-overlay/run.sh [WIKI_TEXT] [GLUE_DIR]
set -e
cd "$(dirname "$0")/../.."
wiki=${1:-../shared/data/enwiki_sample}
glue=${2:-../shared/data/glue}
out=results/cpu-overlay
/usr/bin/time -f "hybrid: %e s" python train.py config/hybrid.py config/cpu.py --dataset=$wiki
/usr/bin/time -f "mlm: %e s" python train.py config/mlm.py config/cpu.py --dataset=$wiki
/usr/bin/time -f "probe: %e s" python probe.py out-hybrid-cpu out-mlm-cpu --glue_dir=$glue --report_dir=$out
/usr/bin/time -f "geometry: %e s" python eval_geometry.py out-hybrid-cpu out-mlm-cpu --glue_dir=$glue \
  --dataset=$wiki --report_dir=$out \
  --report_note="CPU-scale overlay (config/cpu.py): 4 layers x 128, 1,600 steps of 32 x 128 tokens of the Wikipedia sample; not the paper's setting."
