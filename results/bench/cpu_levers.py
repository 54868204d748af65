"""Summarise the bench.py JSONs that cpu_levers.sh wrote into one folder (default results/bench/cpu-levers)
as FOLDER.md beside it: per model size, lever and objective, the median tokens/s over its rounds, its ratio
to the baseline, and the fraction of this CPU's fp32 matmul ceiling (the median of every 2-thread run's
1024^3 measurement).
  python results/bench/cpu_levers.py [results/bench/cpu-levers-avx2]"""
import glob
import json
import os
import statistics
import sys
from collections import defaultdict

here = os.path.dirname(os.path.abspath(__file__))
folder = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "cpu-levers"))
runs = defaultdict(list)
ceil2 = []
for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
    name = os.path.basename(path).rsplit("-", 1)[0]
    r = json.load(open(path, encoding="utf-8"))
    if r["settings"]["threads"] == 2:
        ceil2.append(r["matmul_ceiling"])
    runs[name].append(r)
if not runs:
    sys.exit(f"error: no bench JSONs in {folder}: run results/bench/cpu_levers.sh first")
ceiling = statistics.median(ceil2)
base = runs["baseline"][0]
cpu = base.get("cpu", "the project's 2-core CPU (AVX-512)")  # JSONs before bench.py recorded its CPU
flops = {(row["size"], row["objective"]): row["flops_per_token"]["total"] for row in base["rows"]}
sizes = list(dict.fromkeys(size for size, _ in flops))
tps = {name: {key: statistics.median(row["tok_per_s"] for r in rs for row in r["rows"]
                                     if (row["size"], row["objective"]) == key) for key in flops}
       for name, rs in runs.items()}
what = {"baseline": "float32, 2 threads, AdamW as train.py (torch's CPU default: one kernel per tensor)",
        "bf16": "bfloat16 autocast (this CPU has AVX512-BF16)", "foreach": "AdamW foreach=True",
        "forloop": "AdamW foreach=False (the baseline's own implementation, run apart: the noise)", "fused": "AdamW fused=True",
        "threads1": "1 thread instead of 2", "batch16": "16 sequences a step (quickstart's default)",
        "batch32": "32 sequences a step (config/cpu.py's default)", "compile": "torch.compile (inductor, C++), fullgraph",
        "compile-bf16": "torch.compile + bfloat16 autocast"}
lines = [f"# CPU levers on {cpu}", "",
         f"`{base['command']}` and its siblings (results/bench/cpu_levers.sh), alone on the machine. Rounds "
         "interleave the levers; each figure is the median tokens/s over its rounds (n). Fraction of ceiling: model "
         f"FLOPs/s over this CPU's fp32 matmul ceiling, {ceiling / 1e9:.0f} GFLOP/s (median of {len(ceil2)} "
         f"measurements of a 1024^3 matmul on 2 threads, range {min(ceil2) / 1e9:.0f}-{max(ceil2) / 1e9:.0f})."]
for size in sizes:
    B = next(row["batch_size"] for row in base["rows"] if row["size"] == size)
    lines += ["", f"## {size} ({B} x {base['rows'][0]['block_size']} tokens a step unless the lever says otherwise)", "",
              "| lever | n | MLM tok/s | × base | of fp32 ceiling | hybrid tok/s | × base | of fp32 ceiling |",
              "|---|---|---|---|---|---|---|---|"]
    for name in [n for n in what if n in tps]:
        cells = []
        for obj in ("mlm", "hybrid-separate"):
            t = tps[name][size, obj]
            cells += [f"{t:,.0f}", f"{t / tps['baseline'][size, obj]:.2f}", f"{100 * t * flops[size, obj] / ceiling:.0f}%"]
        lines.append(f"| {what[name]} | {len(runs[name])} | " + " | ".join(cells) + " |")
    data_ms = {obj: statistics.median(row["data_ms_per_batch"] for row in base["rows"]
                                      if (row["size"], row["objective"]) == (size, obj)) for obj in ("mlm", "hybrid-separate")}
    step_ms = {obj: B * 128 / tps["baseline"][size, obj] * 1e3 for obj in data_ms}
    lines += ["", f"MFLOP per token: MLM {flops[size, 'mlm'] / 1e6:.2f}, hybrid (separate views) "
              f"{flops[size, 'hybrid-separate'] / 1e6:.2f}. Making one batch (masking, and the spans for the hybrid) on "
              f"the CPU: {data_ms['mlm']:.1f} ms (MLM) and {data_ms['hybrid-separate']:.1f} ms (hybrid) against steps "
              f"of {step_ms['mlm']:.0f} and {step_ms['hybrid-separate']:.0f} ms: at most "
              f"{100 * data_ms['hybrid-separate'] / step_ms['hybrid-separate']:.1f}% to win by moving it off the "
              "critical path (a thread would also take a core from the step's two)."]
open(folder + ".md", "w", encoding="utf-8").write("\n".join(lines) + "\n")
print("\n".join(lines))
