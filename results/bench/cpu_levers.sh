#!/bin/bash
# Each CPU lever of issue 11, measured one at a time against the baseline on config/cpu.py's model
# (bench.py --sizes=cpu: 4L/128, rotary, 8k vocabulary, batch 32 x 128), both objectives, 2 threads.
# Rounds interleave the variants, so that a slow minute of a shared machine hits all of them alike.
# Run it alone on the machine:  bash results/bench/cpu_levers.sh  (~10 minutes on 2 cores)
set -e
cd "$(dirname "$0")/../.."
dir=results/bench/cpu-levers
mkdir -p $dir
common="--device=cpu --sizes=cpu --objectives=mlm,hybrid-separate --iters=20 --warmup_iters=3 --embed=False"
declare -A V=(
  [baseline]="--threads=2"
  [bf16]="--threads=2 --dtype=bfloat16"
  [foreach]="--threads=2 --optimizer_impl=foreach"
  [forloop]="--threads=2 --optimizer_impl=for-loop"
  [fused]="--threads=2 --optimizer_impl=fused"
  [threads1]="--threads=1"
)
for round in 1 2 3; do
  for name in baseline bf16 foreach forloop fused threads1; do
    python bench.py $common ${V[$name]} --out=$dir/$name-$round.json | grep "^cpu/" | sed "s|^|$name $round |"
  done
done
# compile (inductor, C++ codegen): one round, its first step holds the compile
for name in compile compile-bf16; do
  extra="--threads=2 --compile=True"; [ $name = compile-bf16 ] && extra="$extra --dtype=bfloat16"
  python bench.py $common $extra --out=$dir/$name-1.json | grep "^cpu/" | sed "s|^|$name 1 |"
done
python results/bench/cpu_levers.py
