"""
λ's trajectory under the paper's rule, computed for each shipped config: AdamW (train.py's betas) on the one
parameter w, λ = sigmoid(w), its learning rate balance_lr x train.py's schedule, and the gradient of
L = λ L_jepa + (1 - λ) L_mlm for a fixed loss gap. Adam normalises the step, so the result hardly depends on
the gap (try --gap=1 and --gap=5). The settings are train.py's defaults and the config files, read as train.py
reads them (tests/test_train.py holds this script to a run's settings and learning rates).

$ python results/balance/trajectory.py                  # balance_lr=0.1 (train.py's default)
$ python results/balance/trajectory.py --balance_lr=1.0  # w at the model's learning rate
"""
import ast
import math
import os
import sys

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, ROOT)
from configurator import configure  # noqa: E402

RUNS = ["config/hybrid.py", "config/hybrid.py config/wiki_sample.py", "config/hybrid.py config/cpu.py",
        "config/hybrid.py config/tiny.py"]


def train_defaults():
    """train.py's default settings (the literal assignments at its top level), without running it."""
    with open(os.path.join(ROOT, "train.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:  # not a literal: not a setting
                pass
    return out


def settings_of(run, argv):
    """The settings train.py would run with (its defaults, then the run's config files, then argv's), and
    gap = L_mlm - L_jepa (5: positive while the cosine loss sits below the cross-entropy)."""
    g = {**train_defaults(), "gap": 5.0}
    configure(g, [os.path.join(ROOT, f) for f in run.split()] + argv)
    return g


def get_lr(it, max_iters, learning_rate, min_lr, warmup_frac, **_):
    """train.get_lr for a step budget (train.py is a script: its function reads its globals)."""
    p = it / max_iters
    if p < warmup_frac:
        return learning_rate * min((p + 1 / max_iters) / warmup_frac, 1.0)
    return min_lr + 0.5 * (learning_rate - min_lr) * (1 + math.cos(math.pi * min((p - warmup_frac) / (1 - warmup_frac), 1.0)))


def mlm_weights(cfg):
    """1 - λ at 10, 25, 50, 75 and 100% of the run's steps, and its lowest value."""
    n = cfg["max_iters"]
    w = torch.zeros((), requires_grad=True)
    opt = torch.optim.AdamW([w], betas=(cfg["beta1"], cfg["beta2"]), weight_decay=cfg["balance_wd"])
    marks = {round(n * f) for f in (0.1, 0.25, 0.5, 0.75, 1.0)}
    points, lowest = [], 1.0
    for it in range(n):
        opt.param_groups[0]["lr"] = cfg["balance_lr"] * get_lr(it, **cfg)
        loss = (1 - torch.sigmoid(w)) * cfg["gap"]  # λ L_jepa + (1 - λ) L_mlm with L_jepa = 0: only the gap matters
        opt.zero_grad()
        loss.backward()
        opt.step()
        mlm_weight = 1 - torch.sigmoid(w).item()
        lowest = min(lowest, mlm_weight)
        if it + 1 in marks:
            points.append(mlm_weight)
    return points, lowest


if __name__ == "__main__":
    first = settings_of(RUNS[0], sys.argv[1:])
    print(f"MLM weight 1 - λ, balance_lr={first['balance_lr']}, balance_wd={first['balance_wd']}, "
          f"loss gap {first['gap']}")
    print("| config | 10% of steps | 25% | 50% | 75% | end | lowest |")
    print("|---|---|---|---|---|---|---|")
    for run in RUNS:
        cfg = settings_of(run, sys.argv[1:])
        if cfg["max_flops"] > 0:
            raise SystemExit(f"error: {run} sets a FLOP budget: this script follows a step budget")
        points, lowest = mlm_weights(cfg)
        print(f"| `{run}` ({cfg['max_iters']:,} steps) | " + " | ".join(f"{v:.3f}" for v in points) + f" | {lowest:.3f} |")
