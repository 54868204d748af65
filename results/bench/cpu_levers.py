"""Summarise results/bench/cpu-levers/*.json (written by cpu_levers.sh) into results/bench/cpu-levers.md:
per lever and objective, the median tokens/s over its rounds, its ratio to the baseline, and the fraction
of this CPU's fp32 matmul ceiling (the median of every run's 1024^3 measurement, 2 threads)."""
import glob
import json
import os
import statistics
from collections import defaultdict

here = os.path.dirname(os.path.abspath(__file__))
runs = defaultdict(list)
ceil2 = []
for path in sorted(glob.glob(os.path.join(here, "cpu-levers", "*.json"))):
    name = os.path.basename(path).rsplit("-", 1)[0]
    r = json.load(open(path))
    if r["settings"]["threads"] == 2:
        ceil2.append(r["matmul_ceiling"])
    runs[name].append(r)
ceiling = statistics.median(ceil2)
flops = {row["objective"]: row["flops_per_token"]["total"] for row in next(iter(runs.values()))[0]["rows"]}
tps = {name: {obj: statistics.median(row["tok_per_s"] for r in rs for row in r["rows"] if row["objective"] == obj)
              for obj in flops} for name, rs in runs.items()}
what = {"baseline": "float32, 2 threads, AdamW as train.py (torch's CPU default: one kernel per tensor)",
        "bf16": "bfloat16 autocast (this CPU has AVX512-BF16)", "foreach": "AdamW foreach=True",
        "forloop": "AdamW foreach=False (the baseline's own implementation, run apart: the noise)", "fused": "AdamW fused=True",
        "threads1": "1 thread instead of 2", "compile": "torch.compile (inductor, C++), fullgraph",
        "compile-bf16": "torch.compile + bfloat16 autocast"}
lines = ["# CPU levers on config/cpu.py's model (4L/128, rotary, 8k vocabulary, 32 x 128 tokens per step)", "",
         "`bash results/bench/cpu_levers.sh` on the project's 2-core machine, alone. Rounds interleave the levers; "
         "each figure is the median tokens/s over its rounds (n). Fraction of ceiling: model FLOPs/s over this "
         f"CPU's fp32 matmul ceiling, {ceiling / 1e9:.0f} GFLOP/s (median of {len(ceil2)} measurements of a 1024^3 "
         f"matmul on 2 threads, range {min(ceil2) / 1e9:.0f}-{max(ceil2) / 1e9:.0f}).", "",
         "| lever | n | MLM tok/s | × base | of fp32 ceiling | hybrid tok/s | × base | of fp32 ceiling |", "|---|---|---|---|---|---|---|---|"]
for name in [n for n in what if n in tps]:
    cells = []
    for obj in ("mlm", "hybrid-separate"):
        t = tps[name][obj]
        cells += [f"{t:,.0f}", f"{t / tps['baseline'][obj]:.2f}", f"{100 * t * flops[obj] / ceiling:.0f}%"]
    lines.append(f"| {what[name]} | {len(runs[name])} | " + " | ".join(cells) + " |")
data_ms = {obj: statistics.median(row["data_ms_per_batch"] for row in runs["baseline"][0]["rows"] if row["objective"] == obj)
           for obj in flops}
step_ms = {obj: 32 * 128 / tps["baseline"][obj] * 1e3 for obj in flops}
lines += ["", f"MFLOP per token: MLM {flops['mlm'] / 1e6:.2f}, hybrid (separate views) {flops['hybrid-separate'] / 1e6:.2f}. "
          f"Making one batch (masking, and the spans for the hybrid) on the CPU: {data_ms['mlm']:.1f} ms (MLM) and "
          f"{data_ms['hybrid-separate']:.1f} ms (hybrid) against steps of {step_ms['mlm']:.0f} and "
          f"{step_ms['hybrid-separate']:.0f} ms: at most {100 * data_ms['mlm'] / step_ms['mlm']:.1f}% to win by moving "
          "it off the critical path (a thread would also take a core from the step's two)."]
open(os.path.join(here, "cpu-levers.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
