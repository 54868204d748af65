#!/bin/bash
# Each CPU lever, measured one at a time against the baseline (bench.py rows: both objectives, 2 threads).
# Rounds interleave the variants, so that a slow minute of a shared machine hits all of them alike.
# Run it alone on the machine (~10 minutes on 2 cores):
#   bash results/bench/cpu_levers.sh                                    # config/cpu.py's model -> cpu-levers/
#   SIZES=quickstart,cpu DIR=cpu-levers-avx2 ROUNDS=2 LEVERS="baseline foreach fused threads1 batch16 batch32" \
#     bash results/bench/cpu_levers.sh                                  # an AVX2-only CPU: no bf16 (emulated)
# then python results/bench/cpu_levers.py results/bench/$DIR writes $DIR.md beside it.
set -e
cd "$(dirname "$0")/../.."
sizes=${SIZES:-cpu}
dir=results/bench/${DIR:-cpu-levers}
levers=${LEVERS:-baseline bf16 foreach forloop fused threads1}
mkdir -p $dir
common="--device=cpu --sizes=$sizes --objectives=mlm,hybrid-separate --iters=20 --warmup_iters=3 --embed=False"
declare -A V=(
  [baseline]="--threads=2"
  [bf16]="--threads=2 --dtype=bfloat16"
  [foreach]="--threads=2 --optimizer_impl=foreach"
  [forloop]="--threads=2 --optimizer_impl=for-loop"
  [fused]="--threads=2 --optimizer_impl=fused"
  [threads1]="--threads=1"
  [batch16]="--threads=2 --batch_size=16"  # the same tokens in smaller or larger matrices: quickstart's
  [batch32]="--threads=2 --batch_size=32"  # default is 16 sequences, config/cpu.py's 32
)
for round in $(seq 1 ${ROUNDS:-3}); do
  for name in $levers; do
    python bench.py $common ${V[$name]} --out=$dir/$name-$round.json | grep -E "^[a-z0-9-]+/(mlm|hybrid)" | sed "s|^|$name $round |"
  done
done
# compile (inductor, C++ codegen): one round, its first step holds the compile
for name in ${COMPILE-compile compile-bf16}; do
  extra="--threads=2 --compile=True"; [ $name = compile-bf16 ] && extra="$extra --dtype=bfloat16"
  python bench.py $common $extra --out=$dir/$name-1.json | grep -E "^[a-z0-9-]+/(mlm|hybrid)" | sed "s|^|$name 1 |"
done
python results/bench/cpu_levers.py $dir
