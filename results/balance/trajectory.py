"""
λ's trajectory under the paper's rule, computed for each shipped config: AdamW (train.py's betas) on the one
parameter w, λ = sigmoid(w), its learning rate balance_lr x train.py's schedule, and the gradient of
L = λ L_jepa + (1 - λ) L_mlm for a fixed loss gap. Adam normalises the step, so the result hardly depends on
the gap (try --gap=1 and --gap=5).

$ python results/balance/trajectory.py                  # balance_lr=0.1 (train.py's default)
$ python results/balance/trajectory.py --balance_lr=1.0  # w at the model's learning rate
"""
import math
import sys

import torch

sys.path.insert(0, ".")
from configurator import configure  # noqa: E402

balance_lr = 0.1
balance_wd = 0.0
gap = 5.0  # L_mlm - L_jepa: positive while the cosine loss sits below the cross-entropy
configure(globals(), sys.argv[1:])
CONFIGS = {  # max_iters, learning_rate, min_lr, warmup_frac, as the config files set them
    "config/hybrid.py": (100000, 5e-4, 5e-5, 0.02),
    "config/hybrid.py config/wiki_sample.py": (12000, 5e-4, 5e-5, 0.03),
    "config/hybrid.py config/tiny.py": (1000, 1e-3, 1e-4, 0.05),
}


def get_lr(it, max_iters, learning_rate, min_lr, warmup_frac):
    """train.get_lr, copied: train.py is a script and cannot be imported."""
    p = it / max_iters
    if p < warmup_frac:
        return learning_rate * (p + 1 / max_iters) / warmup_frac
    return min_lr + 0.5 * (learning_rate - min_lr) * (1 + math.cos(math.pi * min((p - warmup_frac) / (1 - warmup_frac), 1.0)))


print(f"MLM weight 1 - λ, balance_lr={balance_lr}, balance_wd={balance_wd}, loss gap {gap}")
print("| config | 10% of steps | 25% | 50% | 75% | end | lowest |")
print("|---|---|---|---|---|---|---|")
for name, schedule in CONFIGS.items():
    n = schedule[0]
    w = torch.zeros((), requires_grad=True)
    opt = torch.optim.AdamW([w], betas=(0.9, 0.98), weight_decay=balance_wd)
    points, lowest = {}, 1.0
    for it in range(n):
        opt.param_groups[0]["lr"] = balance_lr * get_lr(it, *schedule)
        lam = torch.sigmoid(w)
        loss = lam * 0.0 + (1 - lam) * gap  # the losses themselves don't matter here, only their gap
        opt.zero_grad()
        loss.backward()
        opt.step()
        mlm_weight = 1 - torch.sigmoid(w).item()
        lowest = min(lowest, mlm_weight)
        if it + 1 in {round(n * f) for f in (0.1, 0.25, 0.5, 0.75, 1.0)}:
            points[it + 1] = mlm_weight
    print(f"| `{name}` ({n:,} steps) | " + " | ".join(f"{v:.3f}" for v in points.values()) + f" | {lowest:.3f} |")
