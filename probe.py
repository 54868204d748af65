"""
Linear probes on frozen sentence embeddings, several checkpoints side by side, every score with a
bootstrap 95% CI and every difference with a paired test. Definitions: ../shared/docs/ANALYSIS.md.

$ python probe.py out-hybrid-tiny out-mlm-tiny --glue_dir=../shared/data/glue
$ python probe.py out-hybrid-tiny --encoder=target       # the EMA target encoder instead of the online one
$ python probe.py out-hybrid-cpu out-mlm-cpu --glue_dir=../shared/data/glue --senteval_dir=SentEval/data/downstream

Beside every score: a trivial baseline (majority class, all-positive MRPC, bag-of-tokens cosine) and, as the
last column, a randomly initialised encoder of the first checkpoint's config (--random_init=False drops it).
Differences carry Benjamini-Hochberg q-values; checkpoints named <group>-s<seed> are also summarised across
seeds. From your own code: `from probe import encode; X = encode("out-mlm-cpu", sentences)`.

With no --glue_dir it tries the HF hub (nyu-mll/glue); without network it probes the SentEval-style
probing sets of the embedded corpus instead. This file also holds what eval_geometry.py shares with it:
the statistics, the probes, and the embedding extraction with its cache.
"""

import hashlib
import inspect
import json
import math
import os
import pickle
import re
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import configurator
import data
import model

# -----------------------------------------------------------------------------
# settings (override with --key=value)
glue_dir = ""  # a folder in the standard GLUE layout; '' = the HF hub, else the corpus probing sets
dataset = "embedded"  # the corpus whose held-out documents give the probing sentences
data_dir = "data"
encoder = "online"  # 'online' (trained by gradient) or 'target' (the EMA copy, hybrid only)
poolings = "mean,max,first,attention"
max_train = 10000  # probe train splits are capped at this many examples (seeded subsample); dev stays whole
n_folds = 5  # k of the k-fold CV that picks the L2 strength (and scores the probing sets)
n_boot = 1000  # bootstrap resamples, for CIs and paired tests
seed = 0
batch_size = 256  # sentences per forward pass when embedding
device = "cuda" if torch.cuda.is_available() else "cpu"
report_dir = "report"  # probe.json, probe.md and probe_scores.png go here
senteval_dir = ""  # SentEval's data/downstream folder: adds STS12-16, SICK-R (cosine) and SICK-E (probe)
random_init = True  # also run a randomly initialised encoder of the first checkpoint's config through the
# same pipeline (column 'random-init'): what pre-training added over the architecture alone
threads = 1  # torch CPU threads (0 = torch's default): the probes' small matrices gain little from more, and
# slow down many times over when another process shares the cores
unfinished = False  # analyse checkpoints whose run stopped before its max_iters (refused otherwise: a half-trained
# model would enter the comparison as if it were the run's result); the reports then say which ones they are
# -----------------------------------------------------------------------------

L2_GRID = [10.0 ** e for e in range(-5, 2)]  # 1e-5 ... 1e1, ANALYSIS.md
POOLINGS = ("mean", "max", "first", "attention")

# -----------------------------------------------------------------------------
# metrics: each works along the last axis, so one call scores a (B, n) stack of bootstrap resamples


def accuracy(y, p):
    return (y == p).mean(-1)


def confusion(y, p):
    return (((p == 1) & (y == 1)).sum(-1), ((p == 0) & (y == 0)).sum(-1),
            ((p == 1) & (y == 0)).sum(-1), ((p == 0) & (y == 1)).sum(-1))


def f1(y, p):
    """F1 of the positive class (label 1), as GLUE reports it for MRPC."""
    tp, tn, fp, fn = confusion(y, p)
    return 2 * tp / np.maximum(2 * tp + fp + fn, 1)


def matthews(y, p):
    """Matthews correlation of binary labels; 0 where a marginal is empty (as sklearn)."""
    tp, tn, fp, fn = (c.astype(np.float64) for c in confusion(y, p))
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return np.where(den > 0, (tp * tn - fp * fn) / np.where(den > 0, den, 1), 0.0)


def pearson(x, y):
    x = x - x.mean(-1, keepdims=True)
    y = y - y.mean(-1, keepdims=True)
    den = np.sqrt((x * x).sum(-1) * (y * y).sum(-1))
    return np.where(den > 0, (x * y).sum(-1) / np.where(den > 0, den, 1), 0.0)


def rankdata(x):
    """Ranks 1..n along the last axis, ties get their average rank (bootstrap resamples are full of ties)."""
    x = np.asarray(x, dtype=np.float64)
    rows = x.reshape(-1, x.shape[-1])
    R, n = rows.shape
    order = np.argsort(rows, axis=1, kind="stable")
    s = np.take_along_axis(rows, order, 1)
    new = np.ones_like(s, dtype=bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    group = np.cumsum(new.ravel()) - 1  # every row opens a new group, so groups never span rows
    pos = np.tile(np.arange(1, n + 1, dtype=np.float64), R)
    mean_pos = np.bincount(group, weights=pos) / np.bincount(group)
    ranks = np.empty_like(rows)
    np.put_along_axis(ranks, order, mean_pos[group].reshape(R, n), 1)
    return ranks.reshape(x.shape)


def spearman(x, y):
    return pearson(rankdata(x), rankdata(y))


# -----------------------------------------------------------------------------
# significance: percentile bootstrap CIs, paired bootstrap and paired permutation tests (ANALYSIS.md)


def boot_indices(n, n_boot=1000, seed=0):
    return np.random.default_rng(seed).integers(0, n, (n_boot, n))


def ci(stats):
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(lo), float(hi)


def bootstrap_ci(metric, *arrays, n_boot=1000, seed=0):
    """(estimate, lo, hi): metric on the data and the 95% percentile interval over resampled examples."""
    idx = boot_indices(len(arrays[0]), n_boot, seed)
    return (float(metric(*arrays)),) + ci(metric(*(a[idx] for a in arrays)))


def diff_summary(d, ds):
    """Difference d, its bootstrap replicates ds -> CI and the two-sided p of 'no difference' by the shift
    method: how often the centred replicates stray from 0 as far as d did (Efron & Tibshirani 1993, 16.4)."""
    lo, hi = ci(ds)
    p = (1 + np.sum(np.abs(ds - d) >= abs(d) - 1e-12)) / (len(ds) + 1)
    return {"diff": float(d), "lo": lo, "hi": hi, "p": float(min(p, 1.0))}


def paired_bootstrap(metric, arrays_a, arrays_b, n_boot=1000, seed=0):
    """metric(*arrays_a) - metric(*arrays_b) on the same examples, both resampled with the same indices."""
    idx = boot_indices(len(arrays_a[0]), n_boot, seed)
    d = metric(*arrays_a) - metric(*arrays_b)
    ds = metric(*(a[idx] for a in arrays_a)) - metric(*(b[idx] for b in arrays_b))
    return diff_summary(d, ds)


def bh_adjust(p):
    """Benjamini-Hochberg adjusted p-values (q): the smallest false discovery rate at which each test is a
    discovery. Controls the FDR under independence or positive dependence (Benjamini & Yekutieli 2001)."""
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p)
    q = p[order] * len(p) / np.arange(1, len(p) + 1)
    q = np.minimum.accumulate(q[::-1])[::-1]
    out = np.empty(len(p))
    out[order] = np.minimum(q, 1.0)
    return out


def control_fdr(diffs, alpha=0.05):
    """Adds q (BH over this family: every difference given) and 'survives' (q < alpha) to each difference.
    Differences to the random-init encoder ask another question (did pre-training add anything) and form a
    family of their own, so that their many tiny p-values do not loosen the thresholds of the others."""
    for family in ([d for d in diffs if d["a"] != RANDOM], [d for d in diffs if d["a"] == RANDOM]):
        for d, q in zip(family, bh_adjust([d["p"] for d in family]) if family else []):
            d["q"], d["survives"] = float(q), bool(q < alpha)


def betainc(a, b, x):
    """Regularised incomplete beta I_x(a, b) by its continued fraction (Lentz; Numerical Recipes 6.4)."""
    if x <= 0 or x >= 1:
        return float(x >= 1)
    if x > (a + 1) / (a + b + 2):
        return 1 - betainc(b, a, 1 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x)) / a
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        num = 1.0 if i == 0 else (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)) if i % 2 == 0 else
                                  -((a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1)))
        d = 1 + num * d
        d = 1 / (d if abs(d) > 1e-300 else 1e-300)
        c = 1 + num / (c if abs(c) > 1e-300 else 1e-300)
        f *= c * d
        if abs(1 - c * d) < 1e-14:
            break
    return front * (f - 1)


def welch_t(a, b):
    """Welch's two-sample t-test of mean(a) - mean(b) (seeds of two objectives): (diff, t, df, two-sided p)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = a.mean() - b.mean()
    if va + vb == 0:
        return float(diff), math.inf, math.nan, float(diff == 0)
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(diff), float(t), float(df), float(betainc(df / 2, 0.5, df / (df + t * t)))


def paired_t(a, b):
    """Paired t-test of mean(a - b) over matched pairs (the same seed of two objectives): (diff, t, df, p)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    diff, se, df = d.mean(), d.std(ddof=1) / math.sqrt(len(d)), len(d) - 1
    if se == 0:
        return float(diff), math.inf, float(df), float(diff == 0)
    t = diff / se
    return float(diff), float(t), float(df), float(betainc(df / 2, 0.5, df / (df + t * t)))


def t_interval(diff, t, df):
    """The 95% CI of a difference from its t statistic and degrees of freedom (its standard error is diff / t)."""
    half = t_quantile(df) * abs(diff / t) if math.isfinite(t) and t != 0 else 0.0
    return diff - half, diff + half


def t_quantile(df, p=0.05):
    """The t with two-sided tail probability p at df degrees of freedom (bisection on the tail)."""
    lo, hi = 0.0, 1e4
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if betainc(df / 2, 0.5, df / (df + mid * mid)) > p else (lo, mid)
    return (lo + hi) / 2


def permutation_test(metric, y, pa, pb, n_perm=1000, seed=0):
    """Paired permutation test of metric(y, pa) - metric(y, pb): under 'no difference' each example's two
    predictions are exchangeable, so swap them at random. Two-sided p, (count + 1) / (n_perm + 1)."""
    d = metric(y, pa) - metric(y, pb)
    swap = np.random.default_rng(seed).random((n_perm, len(y))) < 0.5
    ds = metric(y, np.where(swap, pb, pa)) - metric(y, np.where(swap, pa, pb))
    return float((1 + np.sum(np.abs(ds) >= abs(d) - 1e-12)) / (n_perm + 1))


# -----------------------------------------------------------------------------
# probes: L2 logistic regression by full-batch L-BFGS, ridge in closed form, the attentive probe


def standardize(train, *others):
    """Scale features with the train split's mean and std, applied to every split."""
    mu, sd = train.mean(0), train.std(0).clamp(min=1e-6)
    return [(x - mu) / sd for x in (train,) + others]


def pair_features(u, v):
    """InferSent's [u, v, |u - v|, u * v]."""
    return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)


def fit_logreg(X, y, n_classes, l2, weight=None, scale=None, max_iter=300, rounds=10, tol=1e-5):
    """Multinomial logistic regression, full-batch L-BFGS, for P problems on the same rows at once (the
    k folds of a CV share one X, so one fit does them all): problem p minimises
    sum_i weight[i, p] * CE_i + l2[p] * sum_j scale[p, j] * ||W_pj||^2 (bias free). weight defaults to 1/n,
    i.e. mean CE; scale (P, d) to 1. The problems are independent, so the joint gradient is theirs side by
    side: L-BFGS runs until every problem's gradient is below tol (a weak-L2 problem converges slowly, and
    a joint stop on the summed loss would leave it short), for at most rounds x max_iter iterations.
    Returns weights (P, d + 1, n_classes), bias last."""
    n, d = X.shape
    X = X.double()  # float32 losses stall L-BFGS's line search at gradients ~1e-4, short of the optimum
    l2 = torch.as_tensor(l2, dtype=X.dtype, device=X.device).reshape(-1)
    P = len(l2)
    weight = (torch.full((n, P), 1 / n, device=X.device) if weight is None else weight).double()
    penalty = l2[:, None, None] * (torch.ones(P, d, device=X.device) if scale is None else scale).double()[:, :, None]
    W = torch.zeros(P, d + 1, n_classes, device=X.device, dtype=X.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([W], lr=1, max_iter=max_iter, history_size=20, tolerance_grad=tol,
                            tolerance_change=0, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = (X @ W[:, :-1].permute(1, 0, 2).reshape(d, P * n_classes)).view(n, P, n_classes) + W[:, -1]
        nll = -logits.log_softmax(-1).gather(2, y[:, None, None].expand(n, P, 1)).squeeze(2)
        loss = (nll * weight).sum() + (penalty * W[:, :-1].pow(2)).sum()
        loss.backward()
        return loss
    for _ in range(rounds):
        opt.step(closure)
        if W.grad.abs().amax() <= tol:
            break
    else:
        worst = W.grad.abs().flatten(1).amax(1)
        print(f"warning: logistic probe not converged after {rounds * max_iter} L-BFGS iterations "
              f"(largest gradient {worst.max().item():.1e} at L2 {l2[worst.argmax()].item():g})", file=sys.stderr)
    return W.detach().float()


def logreg_predict(W, X):
    """Class predictions of one fitted problem W (d + 1, n_classes)."""
    return (X @ W[:-1] + W[-1]).argmax(1)


def fit_ridge(X, y, l2):
    """Ridge: mean squared error + l2 * ||w||^2 (intercept free), in closed form."""
    mu_x, mu_y = X.mean(0), y.mean()
    Xc = X - mu_x
    A = Xc.T @ Xc / len(X) + l2 * torch.eye(X.size(1), device=X.device, dtype=X.dtype)
    w = torch.linalg.solve(A, Xc.T @ (y - mu_y) / len(X))
    return torch.cat([w, (mu_y - mu_x @ w)[None]])


def ridge_predict(w, X):
    return X @ w[:-1] + w[-1]


def folds(n, k, seed=0):
    """k disjoint test folds covering 0..n-1 in a seeded order."""
    return np.array_split(np.random.default_rng(seed).permutation(n), k)


def cv_select(X, y, kind, n_classes=2, k=5, seed=0, metric=None):
    """Pick the L2 strength from L2_GRID by k-fold CV on metric(gold, prediction) (higher is better; default
    accuracy, or Spearman for ridge): each task's own metric, since on CoLA the accuracy-best penalty can
    predict one class (MCC 0). Also returns each example's out-of-fold prediction at the chosen strength.
    Each fold is standardised with its training rows' statistics only. For the logistic probe the k folds of
    one strength are one joint L-BFGS fit: on globally standardised X, a fold's own standardisation is a
    per-feature rescaling, which the bias absorbs up to the penalty, so the penalty of fold f is weighted per
    feature by (sd_f / sd)^2, and the predictions are those of a fit on the fold's scaling."""
    metric = metric or (spearman if kind == "reg" else accuracy)
    X, = standardize(X)
    test_folds = [torch.as_tensor(t, device=X.device) for t in folds(len(X), k, seed)]
    train_masks = []
    for test in test_folds:
        train = torch.ones(len(X), dtype=torch.bool, device=X.device)
        train[test] = False
        train_masks.append(train)
    oof = torch.zeros(len(L2_GRID), len(X), device=X.device, dtype=X.dtype if kind == "reg" else torch.long)
    if kind == "reg":
        for test, train in zip(test_folds, train_masks):
            Xtr, Xte = standardize(X[train], X[test])
            for j, l2 in enumerate(L2_GRID):
                oof[j, test] = ridge_predict(fit_ridge(Xtr, y[train], l2), Xte)
    else:
        weight = torch.zeros(len(X), k, device=X.device)
        scale = torch.zeros(k, X.size(1), device=X.device)
        for f, (test, train) in enumerate(zip(test_folds, train_masks)):
            weight[:, f] = 1 / (len(X) - len(test))
            weight[test, f] = 0
            scale[f] = X[train].std(0).clamp(min=1e-6).pow(2)
        for j, l2 in enumerate(L2_GRID):  # one joint fit of the k folds per strength: alike, so they converge alike
            W = fit_logreg(X, y, n_classes, [l2] * k, weight, scale)
            for f, test in enumerate(test_folds):
                oof[j, test] = logreg_predict(W[f], X[test])
    yy = y.cpu().numpy()
    score = [float(metric(yy, oof[j].cpu().numpy())) for j in range(len(L2_GRID))]
    score = [s if math.isfinite(s) else -math.inf for s in score]  # e.g. a constant prediction's correlation
    j = max(range(len(L2_GRID)), key=lambda j: (score[j], L2_GRID[j]))  # ties: the stronger penalty
    return L2_GRID[j], oof[j]


def fit_linear(Xtr, ytr, Xdev, kind, n_classes=2, k=5, seed=0, metric=None):
    """CV the L2 strength on train by metric, refit on all of train, predict dev (ANALYSIS.md's protocol)."""
    l2, _ = cv_select(Xtr, ytr, kind, n_classes, k, seed, metric)
    Xtr, Xdev = standardize(Xtr, Xdev)
    if kind == "reg":
        return ridge_predict(fit_ridge(Xtr, ytr, l2), Xdev), l2
    return logreg_predict(fit_logreg(Xtr, ytr, n_classes, l2)[0], Xdev), l2


class AttentiveProbe(nn.Module):
    """One learned query attending over frozen token states (padding masked), then a linear layer.
    The query starts at zero, i.e. at mean pooling, and learns where to look from there."""

    def __init__(self, width, n_out, pair):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(width))
        self.head = nn.Linear(4 * width if pair else width, n_out)
        self.pair = pair

    def weights(self, h, mask):
        """Where the query looks: (B, T) softmax weights over the real tokens."""
        return (h @ self.query / math.sqrt(h.size(-1))).masked_fill(~mask, float("-inf")).softmax(1)

    def pool(self, h, mask):
        return (self.weights(h, mask).unsqueeze(-1) * h).sum(1)

    def forward(self, a, b=None):
        u = self.pool(*a)
        return self.head(pair_features(u, self.pool(*b)) if self.pair else u)


def padded(feats, idx, mu, sd):
    """Token states of sentences idx as a (B, T, C) float batch standardised by (mu, sd), and its mask;
    with mu = sd = None, the raw states."""
    starts, lens = feats["offsets"][idx], feats["offsets"][idx + 1] - feats["offsets"][idx]
    T = int(lens.max())
    pos = starts[:, None] + torch.arange(T)[None, :]
    mask = torch.arange(T)[None, :] < lens[:, None]
    h = feats["states"][pos.clamp(max=len(feats["states"]) - 1)].to(device).float()
    return (h if mu is None else (h - mu) / sd), mask.to(device)


def token_stats(*feats, idx=None):
    """Mean and std of the token states of sentences idx (all when None) of each feats: the training rows'
    only, so that a CV test fold never informs its own standardisation."""
    hs = []
    for f in feats:
        lens = f["offsets"][1:] - f["offsets"][:-1]
        keep = slice(None) if idx is None else \
            torch.isin(torch.repeat_interleave(torch.arange(len(lens)), lens), torch.as_tensor(idx))
        hs.append(f["states"][keep])
    h = torch.cat(hs).float()
    return h.mean(0).to(device), h.std(0).clamp(min=1e-6).to(device)


def train_attentive(train, y, kind, n_classes, idx=None, seed=0, lr=1e-2, weight_decay=1e-2,
                    max_epochs=30, patience=3, batch=128):
    """Fit an AttentiveProbe on the token states of train = (feats_a, feats_b or None) at examples idx,
    with AdamW and early stopping on a seeded 10% of them. Returns the probe and the standardisation."""
    idx = np.arange(len(y)) if idx is None else np.asarray(idx)
    pair = train[1] is not None
    mu, sd = token_stats(*[f for f in train if f is not None], idx=idx)
    g = torch.Generator().manual_seed(seed)
    perm = idx[torch.randperm(len(idx), generator=g).numpy()]
    n_val = max(1, len(perm) // 10)
    val, fit = perm[:n_val], perm[n_val:]
    torch.manual_seed(seed)
    probe = AttentiveProbe(train[0]["states"].size(1), 1 if kind == "reg" else n_classes, pair).to(device)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    y = torch.as_tensor(y, device=device)

    def loss_on(i):
        out = probe(*[padded(f, torch.as_tensor(i), mu, sd) for f in train if f is not None])
        return F.mse_loss(out.squeeze(1), y[i].float()) if kind == "reg" else F.cross_entropy(out, y[i])
    best, best_state, bad = float("inf"), None, 0
    for epoch in range(max_epochs):
        probe.train()
        for i in np.array_split(fit[torch.randperm(len(fit), generator=g).numpy()], max(1, len(fit) // batch)):
            opt.zero_grad()
            loss_on(i).backward()
            opt.step()
        probe.eval()
        with torch.no_grad():
            v = sum(loss_on(i).item() * len(i) for i in np.array_split(val, max(1, len(val) // 512))) / len(val)
        if v < best - 1e-4:
            best, best_state, bad = v, {k: t.clone() for k, t in probe.state_dict().items()}, 0
        else:
            bad += 1
            if bad >= patience:
                break
    probe.load_state_dict(best_state)
    return probe.eval(), (mu, sd)


@torch.no_grad()
def attentive_apply(probe, norm, feats, idx=None, pooled=False):
    """Predictions of a trained attentive probe, or with pooled=True the sentence vectors of feats[0]: its
    attention weights (computed where it was trained, on standardised states) over the raw token states, a
    convex combination of them like the other poolings, so geometry compares like with like."""
    n = len(feats[0]["offsets"]) - 1
    idx = np.arange(n) if idx is None else np.asarray(idx)
    outs = []
    for i in np.array_split(idx, max(1, len(idx) // 512)):
        if pooled:
            h, mask = padded(feats[0], torch.as_tensor(i), None, None)
            outs.append((probe.weights((h - norm[0]) / norm[1], mask).unsqueeze(-1) * h).sum(1))
            continue
        outs.append(probe(*[padded(f, torch.as_tensor(i), *norm) for f in feats if f is not None]))
    out = torch.cat(outs)
    return out.cpu() if pooled else (out.squeeze(1) if out.size(1) == 1 else out.argmax(1)).cpu()


# -----------------------------------------------------------------------------
# embeddings: one forward pass per sentence set and checkpoint gives every pooling, cached on disk


def progress(msg, done, total):
    print(f"\r  {msg} {done:,}/{total:,}", end="" if done < total else "\n", file=sys.stderr, flush=True)


def load(path, which="online", device="cpu"):
    """A checkpoint's frozen encoder, the checkpoint, and the tokenizer of the vocabulary it was trained with."""
    encoder, ckpt = model.load_encoder(path, which, device)
    return encoder, ckpt, tokenizer_of(ckpt)


def tokenizer_of(ckpt):
    return data.get_tokenizer((ckpt.get("config") or {}).get("vocab_ranks", data.N_RANKS))


def digest(*parts):
    """A short hash of nested dicts, lists and tuples of strings, numbers, arrays and functions (their source)."""
    h = hashlib.sha1()

    def feed(x):
        if isinstance(x, dict):
            for k in sorted(x, key=str):
                feed(k), feed(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                feed(v)
            h.update(b"]")
        elif isinstance(x, (np.ndarray, torch.Tensor)):
            x = np.ascontiguousarray(x.cpu().numpy() if torch.is_tensor(x) else x)
            h.update(f"{x.dtype}{x.shape}".encode() + x.tobytes())
        elif callable(x):
            h.update((SOURCE.get(x) or inspect.getsource(x)).encode())
        else:
            h.update(repr(x).encode() + b"\x00")
    feed(parts)
    return h.hexdigest()[:12]


class Embedder:
    """A checkpoint's frozen encoder. Embeds a named sentence set once: mean/max/first pooled vectors and
    the token states (for the attentive probe), cached in <out_dir>/analysis_cache, keyed by the
    checkpoint's iteration and save time and the sentences themselves, so a retrained checkpoint or another
    subsample never reads stale features. A stripped checkpoint (model.strip_checkpoint) has no weights:
    it answers from that cache alone."""

    def __init__(self, path, which="online", device="cpu", batch_size=256, random_init=False, seed=0):
        """random_init: the encoder of path's config as training starts (seeded), instead of its weights."""
        self.path = path
        ckpt = model.load_checkpoint(path)
        self.config = model.EncoderConfig(**ckpt["model_args"])
        self.tok = tokenizer_of(ckpt)
        self._encoder = None if ckpt.get("stripped") else model.encoder_of(ckpt, which, path).to(device).eval()
        self.which, self.device, self.batch_size = which, device, batch_size
        cfg = ckpt.get("config") or {}
        self.objective, self.iter_num = cfg.get("objective", "?"), ckpt.get("iter_num", 0)
        self.max_iters = model.planned_iters(ckpt)
        if random_init:
            with torch.random.fork_rng():  # leaves the probes' own seeding untouched
                torch.manual_seed(seed)
                self._encoder = model.Encoder(self.config).to(device).eval()
            self.which, self.objective, self.iter_num, self.max_iters = f"random-init-s{seed}", "none", 0, None
        self.stripped = self._encoder is None
        ckpt_file = os.path.join(path, "ckpt.pt") if os.path.isdir(path) else path
        self.out_dir = os.path.dirname(os.path.abspath(ckpt_file))
        self.cache_dir = os.path.join(self.out_dir, "analysis_cache")
        self.stamp = f"{self.iter_num}-{ckpt['saved']}"
        self.memo = {}

    @property
    def encoder(self):
        if self.stripped:
            raise SystemExit(f"error: {self.path} is stripped of its weights and its analysis_cache holds nothing "
                             "for this code, data and settings: analyse it with the commit and arguments it was "
                             "analysed with (its session's note says which), or train it again")
        return self._encoder

    def finished(self):
        return self.max_iters is None or self.iter_num >= self.max_iters

    def summary(self, label):
        """The checkpoint's row in a report's list of checkpoints."""
        return {"label": label, "path": self.path, "objective": self.objective, "iter_num": self.iter_num,
                "max_iters": self.max_iters, "finished": self.finished(), "encoder": self.which}

    def __call__(self, name, texts):
        key = hashlib.sha1("\x00".join([self.stamp, self.which, str(self.config.block_size)] + list(texts))
                           .encode()).hexdigest()[:12]
        if key in self.memo:
            return self.memo[key]
        path = os.path.join(self.cache_dir, f"{self.which}-{name}-{key}.pt")
        if os.path.exists(path):
            feats = torch.load(path, weights_only=True)
        else:
            feats = self.embed(name, texts)
            self.store(name, path, lambda f: torch.save(feats, f))
        self.memo[key] = feats
        return feats

    def results(self, name, inputs, compute):
        """compute() once per checkpoint and inputs, then from <out_dir>/analysis_cache: a report over many
        checkpoints (seeds trained over several sessions) only fits what is new. inputs must name everything
        the result depends on: settings, the data, and the functions that compute it (by their source, so an
        edited probe is refitted). Pickled: the cache is this program's own output, like the checkpoint."""
        path = os.path.join(self.cache_dir, f"{self.which}-{name}-{digest(self.stamp, self.which, inputs)}.pkl")
        if os.path.exists(path):
            with open(path, "rb") as f:
                return pickle.load(f)
        out = compute()
        def save(f):
            with open(f, "wb") as fh:
                pickle.dump(out, fh)
        self.store(name, path, save)
        return out

    def store(self, name, path, save):
        os.makedirs(self.cache_dir, exist_ok=True)
        for old in os.listdir(self.cache_dir):  # an older version of the same name is stale now
            if old.startswith(f"{self.which}-{name}-") and old.count("-") == self.which.count("-") + name.count("-") + 2:
                os.remove(os.path.join(self.cache_dir, old))
        save(path + ".tmp")
        os.replace(path + ".tmp", path)

    def embed(self, name, texts):
        """Every pooling and the token states (for the attentive probe) of texts, in one pass."""
        pooled, states, lens, truncated = forward_sentences(self.encoder, self.tok, texts, ("mean", "max", "first"),
                                                            True, self.batch_size, self.device,
                                                            f"embedding {name} ({os.path.basename(self.out_dir)}, {self.which})")
        return {**pooled, "states": torch.cat(states),
                "offsets": torch.cat([torch.zeros(1, dtype=torch.long), lens.cumsum(0)]), "truncated": truncated}


def results_only(path, dst):
    """A checkpoint's out_dir as its analysis needs it, without the weights: the stripped checkpoint, its
    log.jsonl and the cached results (not the embeddings, which are large), a few MB in all. probe.py and
    eval_geometry.py read it like the out_dir itself, so a report can join checkpoints trained and analysed
    in earlier GPU sessions to new ones, as long as code, data and settings are those it was analysed with."""
    src = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    os.makedirs(os.path.join(dst, "analysis_cache"), exist_ok=True)
    model.strip_checkpoint(path, os.path.join(dst, "ckpt.pt"))
    cache = os.path.join(src, "analysis_cache")
    for f in os.listdir(cache) if os.path.isdir(cache) else []:
        if f.endswith(".pkl"):
            shutil.copyfile(os.path.join(cache, f), os.path.join(dst, "analysis_cache", f))
    if os.path.exists(os.path.join(src, "log.jsonl")):  # the report's λ curve and last validation losses
        shutil.copyfile(os.path.join(src, "log.jsonl"), os.path.join(dst, "log.jsonl"))


@torch.no_grad()
def forward_sentences(encoder, tok, texts, poolings=("mean",), states=False, batch_size=256, device="cpu", name=None):
    """The one way sentences become vectors here (encode() and the analysis both): [CLS] tokens [SEP] in tok's
    vocabulary, truncated to the encoder's block size, run in length-sorted batches to cut padding, back in
    input order. Returns ({pooling: (n, d) float32}, each sentence's token states in fp16 or None, token
    counts, how many sentences were truncated)."""
    T = encoder.config.block_size
    encoded = tok.encode_batch(list(texts))
    ids = [[tok.cls_id] + t[:T - 2] + [tok.sep_id] for t in encoded]
    order = np.argsort([len(i) for i in ids], kind="stable")
    pooled = {p: [None] * len(ids) for p in poolings}
    token_states = [None] * len(ids) if states else None
    cuda = str(device).startswith("cuda")
    for s in range(0, len(ids), batch_size):
        batch = order[s:s + batch_size]
        L = max(len(ids[i]) for i in batch)
        idx = torch.full((len(batch), L), tok.pad_id, dtype=torch.long)
        for r, i in enumerate(batch):
            idx[r, :len(ids[i])] = torch.tensor(ids[i])
        idx = idx.to(device)
        mask = idx != tok.pad_id
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            h = encoder(idx, mask)
        h = h.float()
        for p in pooled:
            for r, v in zip(batch, model.pool(h, mask, p).cpu()):
                pooled[p][r] = v
        if states:
            for r, i in enumerate(batch):
                token_states[i] = h[r, :len(ids[i])].half().cpu()
        if name:
            progress(name, min(s + batch_size, len(ids)), len(ids))
    lens = torch.tensor([len(i) for i in ids])
    empty = torch.zeros(0, encoder.config.n_embd)
    return ({p: torch.stack(v) if v else empty for p, v in pooled.items()}, token_states, lens,
            sum(len(t) > T - 2 for t in encoded))


ENCODE_IGNORES = ("show_progress_bar", "convert_to_numpy", "task_name", "prompt_name", "prompt_type", "prompt")


def encode(encoder, sentences, pooling="mean", batch_size=256, device=None, normalize_embeddings=False,
           which="online", tok=None, **kwargs):
    """Sentence embeddings (n, d) as a float32 NumPy array, in input order, for your own code:

        from probe import encode
        X = encode("out-mlm-cpu", ["A man plays a guitar.", "Someone is making music."], normalize_embeddings=True)
        print(X @ X.T)  # cosine similarities

    encoder: an out_dir or ckpt.pt path (its own vocabulary is used), or a loaded model.Encoder with its
    tokenizer as tok (data.get_tokenizer(vocab_ranks); the default vocabulary if left out). pooling: 'mean',
    'max' or 'first' (attention pooling is a trained probe); which: 'online' or 'target' (a hybrid's EMA
    encoder) for a path; device: where it runs (default: the encoder's, or CUDA when there is one).
    Sentences are [CLS] tokens [SEP], truncated to the block size, batched by length: the path probe.py and
    eval_geometry.py take. The keywords that sentence-transformers- and MTEB-style callers pass beside these
    (show_progress_bar, convert_to_numpy, task_name, prompt_name, ...) are accepted and change nothing."""
    unknown = set(kwargs) - set(ENCODE_IGNORES)
    if unknown:
        raise TypeError(f"encode() got unexpected keyword arguments {sorted(unknown)}")
    if pooling not in ("mean", "max", "first"):
        raise ValueError(f"pooling={pooling!r}: use 'mean', 'max' or 'first' (attention pooling is a trained probe)")
    if isinstance(sentences, str):
        raise TypeError("sentences must be a list of strings, not one string: encode(encoder, [sentence])")
    if isinstance(encoder, (str, os.PathLike)):
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        encoder, _, own_tok = load(encoder, which, device)
        tok = tok or own_tok
    else:
        tok = tok or data.get_tokenizer()
        if tok.vocab_size != encoder.config.vocab_size:
            raise ValueError(f"the encoder's vocabulary has {encoder.config.vocab_size} entries, the tokenizer's "
                             f"{tok.vocab_size}: pass tok=data.get_tokenizer(vocab_ranks) of its training run")
        device = device or next(encoder.parameters()).device
        encoder = encoder.to(device).eval()
    X = forward_sentences(encoder, tok, sentences, (pooling,), False, batch_size, device)[0][pooling]
    if normalize_embeddings:
        X = F.normalize(X, dim=-1)
    return X.numpy().astype(np.float32)


def checkpoint_labels(paths):
    """Short unique names for the table columns: the out_dir's name."""
    names = [os.path.basename(os.path.normpath(p if os.path.isdir(p) else os.path.dirname(os.path.abspath(p))))
             for p in paths]
    return [n if names.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(names)]


RANDOM = "random-init"


def unfinished_notes(labels, embs):
    return [f"UNFINISHED: {l} is at iter {e.iter_num:,} of the {e.max_iters:,} its run was set to train "
            "(--unfinished=True): its figures are not that run's result"
            for l, e in zip(labels, embs) if not e.finished()]


def random_init_note(seed):
    return (f"{RANDOM}: the first checkpoint's encoder config, freshly initialised (seed {seed}), through the same "
            "pipeline: what pre-training added")


def embedders(paths, which, device, batch_size, random_init, seed, unfinished=False):
    """(labels, Embedders) for the checkpoints, and last the random-init encoder of the first one's config.
    A checkpoint whose run has not reached its max_iters is refused unless unfinished is set."""
    labels = checkpoint_labels(paths)
    embs = [Embedder(p, which, device, batch_size) for p in paths]
    early = [f"{e.path} (iter {e.iter_num:,} of {e.max_iters:,})" for e in embs if not e.finished()]
    if early and not unfinished:
        raise SystemExit(f"error: unfinished run: {', '.join(early)}: resume it (python train.py <its configs> "
                         "--init_from=resume --out_dir=...) or pass --unfinished=True to analyse it as it is")
    if random_init:
        labels.append(RANDOM)
        embs.append(Embedder(paths[0], which, device, batch_size, random_init=True, seed=seed))
    return labels, embs


def stripped_first(labels, embs):
    """(label, Embedder) pairs in the order to compute them: the weightless copies first, so that one whose
    cache lacks a result stops the analysis in seconds, not after the other checkpoints' fits."""
    return sorted(zip(labels, embs), key=lambda pair: not pair[1].stripped)


# -----------------------------------------------------------------------------
# trivial baselines: what a score is without a model, so that a reader sees whether one learned anything


def bag_of_tokens_cosine(a, b, tok):
    """Cosine of the two sentences' token-count vectors (the checkpoint's tokenizer, no weighting)."""
    out = np.zeros(len(a))
    for i, (x, y) in enumerate(zip(tok.encode_batch(list(a)), tok.encode_batch(list(b)))):
        cx, cy = np.bincount(x), np.bincount(y)
        n = min(len(cx), len(cy))
        den = np.sqrt((cx ** 2).sum() * (cy ** 2).sum())
        out[i] = (cx[:n] * cy[:n]).sum() / den if den else 0.0
    return out


def constant_prediction(train_y, dev_y):
    """The train split's majority class, predicted for every dev example."""
    return np.full(len(dev_y), np.bincount(np.asarray(train_y)).argmax())


def glue_baselines(evals, tok):
    """results-shaped {'y', 'p'} per eval for the baseline column: the train majority class for classification
    (CoLA's MCC is then 0), all-positive for MRPC (its majority; the constant that maximises F1, which is far
    from 0), and the bag-of-tokens cosine for STS-B (both the probe row and the cosine row: a model-free
    similarity, not a probe)."""
    out = {}
    for name, task, train, dev, _, _ in evals:
        if task == "stsb":
            cos = bag_of_tokens_cosine(dev["a"], dev["b"], tok)
            out[name] = out["stsb-cos"] = {"y": dev["y"], "p": cos}
        elif task == "mrpc":
            out[name] = {"y": dev["y"], "p": np.ones_like(dev["y"])}
        else:
            out[name] = {"y": dev["y"], "p": constant_prediction(train["y"], dev["y"])}
    return out


# -----------------------------------------------------------------------------
# the evaluations: GLUE train -> dev, or k-fold CV on a probing set

METRICS = {  # eval -> [(metric name, function of (gold, prediction))], scores reported x100 as GLUE does
    "sst2": [("acc", accuracy)], "mrpc": [("f1", f1), ("acc", accuracy)],
    "mnli-m": [("acc", accuracy)], "mnli-mm": [("acc", accuracy)], "cola": [("mcc", matthews)],
    "stsb": [("pearson", pearson), ("spearman", spearman)],
    "stsb-cos": [("pearson", pearson), ("spearman", spearman)],
    "sentlen": [("acc", accuracy)], "wordcontent": [("acc", accuracy)], "bshift": [("acc", accuracy)],
    "mft": [("acc", accuracy)],
}
N_CLASSES = {"sst2": 2, "mrpc": 2, "mnli": 3, "cola": 2, "sicke": 3}
METRICS["sicke"] = [("acc", accuracy)]
STS_METRICS = [("spearman", spearman), ("pearson", pearson)]  # SentEval's STS files and SICK-R: cosine vs gold
SELECT_BY = {"mrpc": f1, "cola": matthews, "stsb": spearman}  # the L2 strength's CV criterion; else accuracy


def metrics_of(ev):
    """The metrics of an eval: METRICS, or those of a SentEval STS file ('STS12.MSRpar', 'STS12.all') / SICK-R."""
    return METRICS.get(ev) or (STS_METRICS if ev.startswith(("STS1", "sickr")) else METRICS[ev])


def glue_evals(tasks, max_train, seed=0):
    """(eval name, task, train split, dev split, their cache names) for each GLUE score, plus notes on the
    protocol. Without
    MNLI's train split (the 1,000-pair subsets only) MNLI is cross-fitted: the probe for the matched
    subset is trained on the mismatched one and vice versa."""
    evals, notes = [], []
    for task in ("sst2", "mrpc", "mnli", "cola", "stsb"):
        splits = tasks[task]
        if task == "mnli":
            if "train" in splits:
                tr = data.subsample(splits["train"], max_train, seed)
                evals += [("mnli-m", task, tr, splits["dev_matched"], "mnli-train", "mnli-dev_matched"),
                          ("mnli-mm", task, tr, splits["dev_mismatched"], "mnli-train", "mnli-dev_mismatched")]
            else:
                evals += [("mnli-m", task, splits["dev_mismatched"], splits["dev_matched"],
                           "mnli-dev_mismatched", "mnli-dev_matched"),
                          ("mnli-mm", task, splits["dev_matched"], splits["dev_mismatched"],
                           "mnli-dev_matched", "mnli-dev_mismatched")]
                notes.append("MNLI: no train split (only the two 1,000-pair dev subsets): cross-fitted, the probe "
                             "scored on matched is trained on mismatched and vice versa; not comparable to GLUE MNLI")
            continue
        n = len(splits["train"]["a"])
        if 0 < max_train < n:
            notes.append(f"{task}: probe trained on a seeded subsample of {max_train:,} of {n:,} train examples "
                         "(max_train)")
        evals.append((task, task, data.subsample(splits["train"], max_train, seed), splits["dev"],
                      f"{task}-train", f"{task}-dev"))
    return evals, notes


def feats_of(emb, name, split):
    fa = emb(f"{name}-a", split["a"])
    return fa, (emb(f"{name}-b", split["b"]) if split["b"] is not None else None)


def vectors(f, pooling):
    return f[pooling].to(device)


def run_glue_eval(emb, ev, pooling, attentive=None):
    """One GLUE evaluation for one checkpoint and pooling -> {'y': gold, 'p': prediction} on dev
    (and for STS-B also the unsupervised cosine). attentive: a dict to keep the trained probe in."""
    name, task, train, dev, tr_name, dev_name = ev
    kind = "reg" if task == "stsb" else "cls"
    ytr = torch.as_tensor(train["y"], device=device, dtype=torch.float32 if kind == "reg" else torch.long)
    ftr, fdev = feats_of(emb, tr_name, train), feats_of(emb, dev_name, dev)
    out = {}
    if pooling == "attention":
        probe, norm = train_attentive(ftr, train["y"], kind, N_CLASSES.get(task, 1), seed=seed)
        out[name] = {"y": dev["y"], "p": attentive_apply(probe, norm, fdev).numpy()}
        if attentive is not None:
            attentive[name] = (probe, norm)
        return out
    pair = train["b"] is not None
    Xtr = pair_features(vectors(ftr[0], pooling), vectors(ftr[1], pooling)) if pair else vectors(ftr[0], pooling)
    Xdev = pair_features(vectors(fdev[0], pooling), vectors(fdev[1], pooling)) if pair else vectors(fdev[0], pooling)
    pred, _ = fit_linear(Xtr, ytr, Xdev, kind, N_CLASSES.get(task, 1), n_folds, seed, SELECT_BY.get(task))
    out[name] = {"y": dev["y"], "p": pred.cpu().numpy()}
    if task == "stsb":
        cos = F.cosine_similarity(vectors(fdev[0], pooling), vectors(fdev[1], pooling), dim=-1)
        out["stsb-cos"] = {"y": dev["y"], "p": cos.cpu().numpy()}
    return out


def run_cv_eval(emb, name, split, pooling, k=5):
    """k-fold CV on a probing set -> {'y', 'p'} with every example's out-of-fold prediction. The L2 strength
    is chosen by the same CV (not nested; see the report's notes)."""
    fa = emb(f"probing-{name}", split["a"])
    y = split["y"]
    n_classes = int(y.max()) + 1
    if pooling == "attention":
        p = np.zeros_like(y)
        for i, test in enumerate(folds(len(y), k, seed)):
            train = np.setdiff1d(np.arange(len(y)), test)
            probe, norm = train_attentive((fa, None), y, "cls", n_classes, idx=train, seed=seed + i)
            p[test] = attentive_apply(probe, norm, (fa, None), idx=test).numpy()
        return {"y": y, "p": p}
    _, oof = cv_select(vectors(fa, pooling), torch.as_tensor(y, device=device), "cls", n_classes, k, seed)
    return {"y": y, "p": oof.cpu().numpy()}


SOURCE = {}  # function -> its source as imported (inspect rereads the file, so an edit made during a long run
# would change the keys of what that run computes later, with the old line numbers)


def snapshot(fns):
    SOURCE.update({f: inspect.getsource(f) for f in fns})
    return fns


# what a probe's result depends on besides the settings and the data: the source of these is in its cache key
PROBE_CODE = snapshot((feats_of, vectors, run_glue_eval, run_cv_eval, fit_linear, cv_select, fit_logreg,
                       logreg_predict, fit_ridge, ridge_predict, folds, standardize, pair_features, AttentiveProbe,
                       train_attentive, attentive_apply, token_stats, padded))
snapshot(SELECT_BY.values())


def probe_inputs(*parts):
    """Everything a cached probe result depends on: parts (the pooling, the data) and the settings and code."""
    return (parts, n_folds, seed, max_train, device, L2_GRID, N_CLASSES, SELECT_BY, PROBE_CODE)

def all_pairs(out, ds, files):
    """SimCSE's 'all' of an STS dataset: its files' gold scores and predictions concatenated."""
    return {k: np.concatenate([out[f"{ds}.{f}"][k] for f in files]) for k in ("y", "p")}


def run_senteval(emb, sts, sick, pooling):
    """SentEval's unsupervised STS (cosine of the two embeddings against gold, per file and over all pairs of a
    dataset, as SimCSE's 'all') and SICK-R, and SICK-E: a probe on SICK train, scored on SICK test. Cosine rows
    are left out for attention pooling, whose query is trained."""
    out = {}
    if pooling != "attention":
        for ds, files in sts.items():
            for fname, split in files.items():
                fa, fb = feats_of(emb, f"senteval-{ds}-{fname}", split)
                cos = F.cosine_similarity(vectors(fa, pooling), vectors(fb, pooling), dim=-1).cpu().numpy()
                out[f"{ds}.{fname}"] = {"y": split["y"], "p": cos}
            out[f"{ds}.all"] = all_pairs(out, ds, files)
        if sick is not None:
            fa, fb = feats_of(emb, "sick-test", sick["test"])
            out["sickr-cos"] = {"y": sick["test"]["y"],
                                "p": F.cosine_similarity(vectors(fa, pooling), vectors(fb, pooling), dim=-1).cpu().numpy()}
    if sick is not None:
        relabel = lambda sp: {"a": sp["a"], "b": sp["b"], "y": sp["label"]}  # noqa: E731
        out.update(run_glue_eval(emb, ("sicke", "sicke", relabel(sick["train"]), relabel(sick["test"]),
                                       "sick-train", "sick-test"), pooling))
    return out


def senteval_baselines(sts, sick, tok):
    """The bag-of-tokens cosine for every STS file, each dataset's 'all' and SICK-R; SICK-E's majority class."""
    out = {}
    for ds, files in sts.items():
        for fname, split in files.items():
            out[f"{ds}.{fname}"] = {"y": split["y"], "p": bag_of_tokens_cosine(split["a"], split["b"], tok)}
        out[f"{ds}.all"] = all_pairs(out, ds, files)
    if sick is not None:
        out["sickr-cos"] = {"y": sick["test"]["y"], "p": bag_of_tokens_cosine(sick["test"]["a"], sick["test"]["b"], tok)}
        out["sicke"] = {"y": sick["test"]["label"], "p": constant_prediction(sick["train"]["label"], sick["test"]["label"])}
    return out


def senteval_summary(results, sts):
    """Per checkpoint, pooling and STS dataset: SentEval's mean and size-weighted mean of the per-file cosine
    Spearman, and SimCSE's 'all' (one Spearman over the concatenated pairs), x100. results[label][pooling][eval]."""
    rows = []
    for label, by_pool in results.items():
        for pooling, res in by_pool.items():
            for ds, files in sts.items():
                if f"{ds}.all" not in res:
                    continue
                rho = np.array([spearman(res[f"{ds}.{f}"]["y"], res[f"{ds}.{f}"]["p"]) for f in files])
                n = np.array([len(files[f]["y"]) for f in files])
                rows.append({"dataset": ds, "pooling": pooling, "ckpt": label, "files": len(files), "pairs": int(n.sum()),
                             "mean": 100 * float(rho.mean()), "wmean": 100 * float((rho * n).sum() / n.sum()),
                             "all": 100 * float(spearman(res[f"{ds}.all"]["y"], res[f"{ds}.all"]["p"]))})
    return rows


def senteval_table(rows, labels):
    """Markdown: one row per (dataset, pooling), 'mean / wmean / all' per checkpoint."""
    head = ["dataset", "pooling"] + [f"{label}: mean / wmean / all" for label in labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by = {(r["dataset"], r["pooling"], r["ckpt"]): r for r in rows}
    for key in dict.fromkeys((r["dataset"], r["pooling"]) for r in rows):
        cells = [f"{by[key + (l,)]['mean']:.1f} / {by[key + (l,)]['wmean']:.1f} / {by[key + (l,)]['all']:.1f}"
                 if key + (l,) in by else "n/a" for l in labels]
        lines.append("| " + " | ".join(list(key) + cells) + " |")
    return "\n".join(lines)


def glue_or_probing(glue_dir, dataset, data_dir):
    """GLUE if it can be had, else the corpus probing sets; the fallback is said in one line."""
    tasks = data.load_glue(glue_dir)
    if tasks is None:
        print(f"GLUE is unavailable (no --glue_dir, and the HF hub / datasets cannot be reached): running on the "
              f"'{dataset}' corpus probing sets instead; for GLUE pass --glue_dir=../shared/data/glue or any folder "
              "in the standard GLUE layout", file=sys.stderr)
    return tasks


def probing_sets(dataset, data_dir):
    sets, notes = data.probing_sets(data.corpus_sentences(dataset, data_dir))
    sizes = ", ".join(f"{k} {len(v['a']):,}" for k, v in sets.items())
    return sets, notes + [f"probing sets from the held-out documents of '{dataset}': {sizes} sentences"]


def reference(label, labels):
    """The checkpoint a checkpoint's differences are taken against: the first of its seed (labels named
    <group>-s<seed>: arms trained from the same initialisation on the same batches are compared with each
    other), else the first checkpoint."""
    s = seed_of(label)
    same = [l for l in labels[:labels.index(label)] if s is not None and seed_of(l) == s]
    return same[0] if same else labels[0]


def score_all(results, labels, n_boot, seed):
    """Scores with CIs for every (eval, metric, pooling, checkpoint) and paired tests of each checkpoint
    against its reference(): results[label][pooling][eval] = {'y', 'p'}."""
    scores, diffs = [], []
    for pooling in results[labels[0]]:
        for ev in results[labels[0]][pooling]:
            for mname, fn in metrics_of(ev):
                for label in labels:
                    r = results[label][pooling][ev]
                    est, lo, hi = bootstrap_ci(fn, r["y"], r["p"], n_boot=n_boot, seed=seed)
                    scores.append({"eval": ev, "metric": mname, "pooling": pooling, "ckpt": label,
                                   "score": 100 * est, "lo": 100 * lo, "hi": 100 * hi, "n": len(r["y"])})
                for label in labels[1:]:
                    ref = reference(label, labels)
                    r, r0 = results[label][pooling][ev], results[ref][pooling][ev]
                    d = paired_bootstrap(fn, (r["y"], r["p"]), (r0["y"], r0["p"]), n_boot, seed)
                    d = {k: 100 * v if k != "p" else v for k, v in d.items()}
                    d["p_perm"] = permutation_test(fn, r0["y"], r["p"], r0["p"], n_boot, seed)
                    diffs.append({"eval": ev, "metric": mname, "pooling": pooling, "a": label, "b": ref, **d})
    return scores, diffs


def score_baselines(baseline, n_boot, seed):
    """The baseline's score with a bootstrap CI per (eval, metric): baseline[eval] = {'y', 'p'}."""
    out = []
    for ev, r in baseline.items():
        for mname, fn in metrics_of(ev):
            est, lo, hi = bootstrap_ci(fn, r["y"], r["p"], n_boot=n_boot, seed=seed)
            out.append({"eval": ev, "metric": mname, "score": 100 * est, "lo": 100 * lo, "hi": 100 * hi})
    return out


def markdown_table(scores, diffs, labels, keys=("eval", "metric", "pooling"), fmt="{:.1f}", baselines=None):
    """One row per key, a baseline column when given (baselines: {key prefix: {'score', 'lo'?, 'hi'?}}, e.g.
    by (eval, metric) whatever the pooling), a 'score [CI]' column per checkpoint, then each difference
    against its reference()."""
    head = list(keys) + (["baseline"] if baselines else []) + labels + [
        f"{b} − {reference(b, labels)} [95% CI], p" for b in labels[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_score = {tuple(s[k] for k in keys) + (s["ckpt"],): s for s in scores}
    by_diff = {tuple(d[k] for k in keys) + (d["a"],): d for d in diffs}
    f, fd = fmt.format, fmt.replace("{:", "{:+").format
    for key in dict.fromkeys(tuple(s[k] for k in keys) for s in scores):
        row = [str(k) for k in key]
        if baselines:
            b = next((baselines[key[:n]] for n in range(len(key), 0, -1) if key[:n] in baselines), None)
            row.append("n/a" if b is None else f"{f(b['score'])} [{f(b['lo'])}, {f(b['hi'])}]" if "lo" in b
                       else f(b["score"]))
        for label in labels:
            s = by_score.get(key + (label,))
            row.append(f"{f(s['score'])} [{f(s['lo'])}, {f(s['hi'])}]" if s else "n/a")
        for label in labels[1:]:
            d = by_diff.get(key + (label,))
            row.append(f"{fd(d['diff'])} [{fd(d['lo'])}, {fd(d['hi'])}], p={d['p']:.3f}"
                       + (f", q={d['q']:.3f}{' *' if d['survives'] else ''}" if "q" in d else "") if d else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def seed_groups(labels, at_least=2):
    """{group: labels} for checkpoints named <group>-s<seed> (e.g. out-hybrid-cpu-s1, -s2, -s3), in order."""
    groups = {}
    for label in labels:
        m = re.fullmatch(r"(.+)-s\d+", label)
        if m:
            groups.setdefault(m.group(1), []).append(label)
    return {g: ls for g, ls in groups.items() if len(ls) >= at_least}


def run_groups(labels):
    """{group: labels}: checkpoints named <group>-s<seed> by group (a single seed too), every other one alone."""
    groups = seed_groups(labels, 1)
    grouped = {l for ls in groups.values() for l in ls}
    groups.update({l: [l] for l in labels if l not in grouped})
    return groups


def seed_of(label):
    m = re.fullmatch(r".+-s(\d+)", label)
    return m.group(1) if m else None


def across_seeds(scores, labels, keys=("eval", "metric", "pooling")):
    """Mean ± sd over the seeds of each group (>= 2 checkpoints), and each group against the first over seeds:
    a paired t over the seeds both have where they share >= 3 (same initialisation and batches, so the
    difference cancels what a seed does to both), else Welch's t where both have >= 3; with the 95% CI of the
    difference. The variation of training, beside the per-checkpoint CIs (which see only the evaluation data's)."""
    groups = seed_groups(labels)
    by = {tuple(s[k] for k in keys) + (s["ckpt"],): s["score"] for s in scores}
    rows, names = [], list(groups)
    for key in dict.fromkeys(tuple(s[k] for k in keys) for s in scores):
        vals = {g: {seed_of(l): by[key + (l,)] for l in ls if key + (l,) in by} for g, ls in groups.items()}
        row = {**dict(zip(keys, key)), "groups": {g: {"n": len(v), "mean": float(np.mean(list(v.values()))),
                                                      "sd": float(np.std(list(v.values()), ddof=1))}
                                                  for g, v in vals.items() if len(v) >= 2}}
        for g in names[1:]:
            a, b = vals[g], vals[names[0]]
            shared = [s for s in a if s in b]
            if len(shared) >= 3:
                test, (diff, t, df, p) = "paired", paired_t([a[s] for s in shared], [b[s] for s in shared])
            elif len(a) >= 3 and len(b) >= 3:
                test, (diff, t, df, p) = "welch", welch_t(list(a.values()), list(b.values()))
            else:
                continue
            lo, hi = t_interval(diff, t, df)
            row.setdefault("tests", []).append({"a": g, "b": names[0], "test": test, "diff": diff, "lo": lo,
                                                "hi": hi, "t": t, "df": df, "p": p,
                                                "n": len(shared) if test == "paired" else [len(a), len(b)]})
        rows.append(row)
    return rows


def seed_table(rows, keys=("eval", "metric", "pooling"), fmt="{:.1f}"):
    """Markdown of across_seeds: 'mean ± sd (n)' per group, then each group's test against the first."""
    if not rows or not rows[0]["groups"]:
        return ""
    groups = list(rows[0]["groups"])
    tests = [t["a"] for t in rows[0].get("tests", [])]
    head = list(keys) + [f"{g} mean ± sd (n)" for g in groups] + [f"{a} − {groups[0]} over seeds [95% CI], p"
                                                                    for a in tests]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    f, fd = fmt.format, fmt.replace("{:", "{:+").format
    for r in rows:
        cells = [str(r[k]) for k in keys]
        cells += [f"{f(r['groups'][g]['mean'])} ± {f(r['groups'][g]['sd'])} ({r['groups'][g]['n']})" if g in r["groups"]
                  else "n/a" for g in groups]
        cells += [f"{fd(t['diff'])} [{fd(t['lo'])}, {fd(t['hi'])}], {t['test']} t={t['t']:.2f}, df={t['df']:.1f}, "
                  f"p={t['p']:.3f}" for t in r.get("tests", [])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def palette(labels):
    """{label: colour}, distinct for up to 20 checkpoints (then tab20 repeats): matplotlib's default cycle repeats
    after 10, and a report over 4 arms x 3 seeds plus the random encoder has 13."""
    import matplotlib
    cmap = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def plot_scores(scores, labels, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = palette(labels)
    pools = list(dict.fromkeys(s["pooling"] for s in scores))
    keys = list(dict.fromkeys((s["eval"], s["metric"]) for s in scores))
    fig, axes = plt.subplots(len(pools), 1, figsize=(max(6, 0.9 * len(keys)), 2.2 * len(pools)), squeeze=False)
    w = 0.8 / len(labels)
    by = {(s["eval"], s["metric"], s["pooling"], s["ckpt"]): s for s in scores}
    nan = {"score": np.nan, "lo": np.nan, "hi": np.nan}  # e.g. no cosine row for attention pooling
    for ax, pool in zip(axes[:, 0], pools):
        for j, label in enumerate(labels):
            ss = [by.get(k + (pool, label), nan) for k in keys]
            x = np.arange(len(keys)) + (j - (len(labels) - 1) / 2) * w
            ax.bar(x, [s["score"] for s in ss], w, label=label, color=colors[label],
                   yerr=np.maximum(0, [[s["score"] - s["lo"] for s in ss], [s["hi"] - s["score"] for s in ss]]),
                   capsize=2)
        ax.set_xticks(np.arange(len(keys)), [f"{e}\n{m}" for e, m in keys], fontsize=7)
        ax.set_ylabel(f"{pool}\nscore x100", fontsize=8)
        ax.axhline(0, color="k", lw=0.5)
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: 13 bars fill the axes
    axes[0, 0].set_title("probe scores with bootstrap 95% CIs", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def run(paths):
    if not paths:
        raise SystemExit("error: name at least one checkpoint: python probe.py out-hybrid-tiny out-mlm-tiny")
    pools = [p.strip() for p in poolings.split(",") if p.strip()]
    if not pools or any(p not in POOLINGS for p in pools):
        raise SystemExit(f"error: --poolings={poolings}: use a comma-separated subset of {','.join(POOLINGS)}")
    if threads > 0:
        torch.set_num_threads(threads)
    t0 = time.time()
    labels, embs = embedders(paths, encoder, device, batch_size, random_init, seed, unfinished)
    sts, sick = data.load_senteval(senteval_dir) if senteval_dir else ({}, None)  # fails here, before any work
    tasks = glue_or_probing(glue_dir, dataset, data_dir)
    results = {label: {} for label in labels}
    if tasks is not None:
        mode = "glue"
        evals, notes = glue_evals(tasks, max_train, seed)
        evals_key = digest(evals)
        baseline = glue_baselines(evals, embs[0].tok)
        notes.append("baseline: the train split's majority class for every dev example (MRPC: all-positive; CoLA: "
                     "MCC 0), and for STS-B the cosine of bag-of-tokens count vectors (no model)")
        for label, emb in stripped_first(labels, embs):
            for pooling in pools:
                print(f"probing {label} / {pooling}", file=sys.stderr)
                results[label][pooling] = emb.results(f"glue-{pooling}", probe_inputs(pooling, evals_key), lambda: {
                    k: v for ev in evals for k, v in run_glue_eval(emb, ev, pooling).items()})
        notes.append("stsb-cos: unsupervised cosine of the two sentence embeddings, not a probe; "
                     "no row for attention pooling, whose query is trained")
    else:
        mode = "probing"
        sets, notes = probing_sets(dataset, data_dir)
        sets_key = digest(sets)
        baseline = {name: {"y": s["y"], "p": constant_prediction(s["y"], s["y"])} for name, s in sets.items()}
        notes.append("baseline: the majority class")
        for label, emb in stripped_first(labels, embs):
            for pooling in pools:
                print(f"probing {label} / {pooling}", file=sys.stderr)
                results[label][pooling] = emb.results(f"probing-{pooling}", probe_inputs(pooling, sets_key), lambda: {
                    name: run_cv_eval(emb, name, s, pooling, n_folds) for name, s in sets.items()})
        notes.append(f"probing-set scores are {n_folds}-fold CV accuracies; the L2 strength is picked by the same CV")
    if senteval_dir:
        for label, emb in stripped_first(labels, embs):
            for pooling in pools:
                print(f"SentEval {label} / {pooling}", file=sys.stderr)
                results[label][pooling].update(run_senteval(emb, sts, sick, pooling))
        baseline.update(senteval_baselines(sts, sick, embs[0].tok))
        notes.append(f"SentEval ({senteval_dir}): {', '.join(f'{d} ({len(f)} files)' for d, f in sts.items()) or 'no STS'}"
                     f"{'; SICK' if sick is not None else '; no SICK'}. STS: cosine Spearman per file, their mean and "
                     "size-weighted mean (SentEval) and 'all', one Spearman over a dataset's pairs (SimCSE); SICK-R: "
                     "cosine on SICK test; SICK-E: the probe trained on SICK train (L2 by CV on it), accuracy on test")
    scores, diffs = score_all(results, labels, n_boot, seed)
    control_fdr(diffs)
    notes += unfinished_notes(labels, embs)
    notes.append("multiple comparisons: q = Benjamini-Hochberg adjusted p over every difference between checkpoints "
                 "in this report (the differences to random-init are a family of their own); * marks q < 0.05")
    seeds = across_seeds(scores, labels)
    baselines = score_baselines(baseline, n_boot, seed)
    is_senteval = lambda ev: ev.startswith(("STS1", "sick"))  # noqa: E731
    base = {(b["eval"], b["metric"]): b for b in baselines}
    table = markdown_table([s for s in scores if not is_senteval(s["eval"])], diffs, labels, baselines=base)
    senteval = senteval_summary(results, sts) if sts else []
    # per-file SentEval rows are in probe.json; the tables and the plot show each dataset's 'all' and SICK
    shown = [s for s in scores if not is_senteval(s["eval"]) or s["eval"].endswith(".all") or s["eval"].startswith("sick")]
    if senteval_dir:
        table += "\n\nSentEval:\n\n" + markdown_table([s for s in shown if is_senteval(s["eval"])], diffs, labels,
                                                         baselines=base)
        if senteval:
            table += ("\n\nSentEval STS, cosine Spearman x100 (mean and weighted mean over files as SentEval, 'all' "
                      "as SimCSE):\n\n" + senteval_table(senteval, labels))
    across = seed_table(seeds)
    if across:
        table += "\n\nAcross training seeds (checkpoints named <group>-s<seed>):\n\n" + across
    if random_init:
        notes.append(random_init_note(seed))
    os.makedirs(report_dir, exist_ok=True)
    ckpts = [e.summary(l) for l, e in zip(labels, embs)]
    out = {"mode": mode, "checkpoints": ckpts, "notes": notes, "n_boot": n_boot, "seed": seed,
           "max_train": max_train, "scores": scores, "diffs": diffs, "baselines": baselines, "across_seeds": seeds,
           "senteval": senteval,
           "seconds": time.time() - t0}
    data.save_json(out, os.path.join(report_dir, "probe.json"))
    header = "\n".join([f"Probes ({mode}), encoder={encoder}; scores x100 with bootstrap 95% CIs over dev examples "
                        f"(B={n_boot}); differences are paired bootstrap CIs with two-sided p."] +
                       [f"- {n}" for n in notes])
    with open(os.path.join(report_dir, "probe.md"), "w") as f:
        f.write(header + "\n\n" + table + "\n")
    plot_scores(shown, labels, os.path.join(report_dir, "probe_scores.png"))
    print(header + "\n\n" + table)
    print(f"wrote {report_dir}/probe.json, probe.md, probe_scores.png in {time.time() - t0:.0f}s", file=sys.stderr)
    return out


if __name__ == "__main__":
    run(configurator.configure(globals(), sys.argv[1:]))
