"""
A runs table (RUNS.md in results/cpu and results/cpu-lambda) from the runs' out_dirs: command and commit (as
the checkpoint saved them), val MLM at the end against the unigram line, λ at the end, the targets' health (lowest
RankMe and std over the logged steps; 'collapsed' below train.py's warning line), the median tokens/s and the
wall time (wall_s, which results/cpu/run.sh's train writes). Takes out_dirs or their results-only copies.
Prints markdown for RUNS.md.

$ python results/cpu/runs.py out-mlm-cpu-s1337 results/cpu-lambda/ckpt/out-fix95-cpu-s1337 ...
"""
import json
import os
import statistics
import sys

import torch

def summary(out_dir):
    ckpt = torch.load(f"{out_dir}/ckpt.pt", map_location="cpu", weights_only=True)
    log = [json.loads(line) for line in open(f"{out_dir}/log.jsonl", encoding="utf-8")]
    val = [r for r in log if "val_mlm" in r][-1]
    steps = [r for r in log if "tok_per_s" in r]
    rankme = [r["tgt_rankme"] for r in steps if "tgt_rankme" in r]
    std = [r["tgt_std"] for r in steps if "tgt_std" in r]
    warn = ckpt["config"]["rankme_warn"]  # the run's own warning line: below it the targets sit on a few directions
    health = "–" if not rankme else (f"RankMe ≥ {min(rankme):.1f}, std ≥ {min(std):.3f}" +
                                     (" **collapsed**" if min(rankme) < warn else ": healthy"))
    lam = f"{steps[-1]['lambda']:.3f}" if "lambda" in steps[-1] else "0 (MLM)"
    wall_s = f"{out_dir}/wall_s"
    wall = f"{int(open(wall_s, encoding='utf-8').read()) / 60:.1f} min" if os.path.exists(wall_s) else "–"
    command = ckpt.get("command", "?").replace(" --init_from=resume", "")  # saved as the resume command
    return (f"| {os.path.basename(out_dir)} | `{command}` | {ckpt.get('commit', '?')[:7]} | {val['iter']} | "
            f"{val['val_mlm']:.3f} | {val['val_unigram']:.3f} | {val['val_unigram'] - val['val_mlm']:.2f} | {lam} | "
            f"{health} | {statistics.median(r['tok_per_s'] for r in steps):,.0f} | {wall} |")


if __name__ == "__main__":
    print("| run | command | commit | steps | val MLM | unigram line | below the line | λ at the end | targets "
          "| tokens/s (median) | wall time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for d in sys.argv[1:]:
        print(summary(d))
