"""
The statistics both analysis scripts share, pure NumPy and SciPy (no torch, no I/O); ANALYSIS.md defines them.
Every metric works along the last axis, so one call scores a (B, n) stack of resamples. Checkpoints named
<group>-s<seed> are training seeds of one arm: compared within a seed, summarised across seeds by t-tests.
"""

import math
import re

import numpy as np
from scipy import stats as sps

# -----------------------------------------------------------------------------
# metrics of gold labels y and predictions p


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
    """Matthews correlation of binary labels; 0 where a marginal is empty (as scikit-learn)."""
    tp, tn, fp, fn = (c.astype(np.float64) for c in confusion(y, p))
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return np.where(den > 0, (tp * tn - fp * fn) / np.where(den > 0, den, 1), 0.0)


def pearson(x, y):
    """Pearson correlation; 0 where either side is constant (a constant prediction carries no ranking)."""
    x = x - x.mean(-1, keepdims=True)
    y = y - y.mean(-1, keepdims=True)
    den = np.sqrt((x * x).sum(-1) * (y * y).sum(-1))
    return np.where(den > 0, (x * y).sum(-1) / np.where(den > 0, den, 1), 0.0)


def spearman(x, y):
    """Pearson of the ranks, ties at their average rank (bootstrap resamples are full of ties)."""
    return pearson(sps.rankdata(x, axis=-1), sps.rankdata(y, axis=-1))


# -----------------------------------------------------------------------------
# resampling: percentile bootstrap CIs, paired bootstrap and paired permutation tests


def boot_indices(n, n_boot=1000, seed=0):
    return np.random.default_rng(seed).integers(0, n, (n_boot, n))


def ci(reps):
    """The 95% percentile interval of replicates."""
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return float(lo), float(hi)


def bootstrap_ci(metric, *arrays, n_boot=1000, seed=0):
    """(estimate, lo, hi): metric on the data and the 95% percentile interval over resampled examples."""
    idx = boot_indices(len(arrays[0]), n_boot, seed)
    return (float(metric(*arrays)),) + ci(metric(*(a[idx] for a in arrays)))


def diff_summary(d, ds):
    """A difference d and its replicates ds -> CI and the two-sided p of 'no difference' by the shift
    method: how often the centred replicates stray from 0 as far as d did (Efron & Tibshirani 1993, 16.4)."""
    if not np.isfinite(d) or not np.isfinite(ds).all():  # an undefined figure: no interval, no test
        return {"diff": float(d), "lo": math.nan, "hi": math.nan, "p": math.nan}
    lo, hi = ci(ds)
    p = (1 + np.sum(np.abs(ds - d) >= abs(d) - 1e-12)) / (len(ds) + 1)
    return {"diff": float(d), "lo": lo, "hi": hi, "p": float(min(p, 1.0))}


def permutation_test(metric, y, pa, pb, n_perm=1000, seed=0):
    """Paired permutation test of metric(y, pa) - metric(y, pb): under 'no difference' each example's two
    predictions are exchangeable, so swap them at random. Two-sided p, (count + 1) / (n_perm + 1)."""
    d = metric(y, pa) - metric(y, pb)
    swap = np.random.default_rng(seed).random((n_perm, len(y))) < 0.5
    ds = metric(y, np.where(swap, pb, pa)) - metric(y, np.where(swap, pa, pb))
    return float((1 + np.sum(np.abs(ds) >= abs(d) - 1e-12)) / (n_perm + 1)) if np.isfinite(d) else math.nan


# -----------------------------------------------------------------------------
# comparisons between checkpoints: each against the first of its training seed (named <group>-s<seed>)
SEEDED = re.compile(r"(.+)-s(\d+)")


def seed_of(label):
    return m.group(2) if (m := SEEDED.fullmatch(label)) else None


def run_groups(labels):
    """{group: labels}, in the order of each group's first checkpoint: those named <group>-s<seed> by group
    (one seed too), any other alone. Labels are distinct, none another's group (probe.run_labels's care)."""
    groups = {}
    for label in labels:
        seeded = SEEDED.fullmatch(label)
        groups.setdefault(seeded.group(1) if seeded else label, []).append(label)
    if clash := [g for g, ls in groups.items() if g in ls and len(ls) > 1]:
        raise ValueError(f"labels {clash} name a seed group or come twice: one label, one checkpoint")
    return groups


def seed_groups(labels, at_least=2):
    """{group: labels} for checkpoints named <group>-s<seed> (out-hybrid-cpu-s1, -s2, -s3), in order."""
    return {g: ls for g, ls in run_groups(labels).items() if seed_of(ls[0]) and len(ls) >= at_least}


def reference(label, labels):
    """The checkpoint a checkpoint's differences are taken against: the first of its seed (arms trained from
    the same initialisation on the same batches are compared with each other), else the first checkpoint."""
    s = seed_of(label)
    same = [other for other in labels[:labels.index(label)] if s is not None and seed_of(other) == s]
    return same[0] if same else labels[0]


def compare(figs, labels, fields):
    """figs {(label, *key): (estimate, replicates, extra fields)}, every checkpoint's replicates on the same
    resamples -> rows {fields..., 'ckpt', 'score', 'lo', 'hi', extra} with the replicates' 95% interval, and
    each checkpoint's difference against its reference() on those replicates (diff_summary)."""
    rows, diffs = [], []
    for (label, *key), (est, reps, extra) in figs.items():
        named, ref = dict(zip(fields, key)), reference(label, labels)
        lo, hi = ci(reps)
        rows.append({**named, "ckpt": label, "score": float(est), "lo": lo, "hi": hi, **extra})
        if label != labels[0] and (ref, *key) in figs:
            e0, r0, _ = figs[(ref, *key)]
            diffs.append({**named, "a": label, "b": ref, **diff_summary(est - e0, reps - r0)})
    return rows, diffs


# -----------------------------------------------------------------------------
# tests over training seeds, and multiple comparisons


def t_test(a, b, paired):
    """mean(a) - mean(b) over seeds: the paired t (matched seeds) or Welch's t, with SciPy's 95% CI and
    two-sided p. Where every seed agrees exactly (no spread) the CI is the point and p is 0 or 1."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = float(np.mean(a - b) if paired else a.mean() - b.mean())
    out = {"test": "paired" if paired else "welch", "diff": diff}
    if (np.ptp(a - b) if paired else np.ptp(a) + np.ptp(b)) == 0:  # no spread
        df = len(a) - 1 if paired else math.nan
        t = math.copysign(math.inf, diff)
        return {**out, "lo": diff, "hi": diff, "t": t, "df": df, "p": float(diff == 0)}
    r = sps.ttest_rel(a, b) if paired else sps.ttest_ind(a, b, equal_var=False)
    lo, hi = r.confidence_interval(0.95)
    return {**out, "lo": float(lo), "hi": float(hi), "t": float(r.statistic), "df": float(r.df),
            "p": float(r.pvalue)}


def control_fdr(diffs, apart=(), alpha=0.05):
    """Adds q (Benjamini-Hochberg over the family: every difference given) and 'survives' (q < alpha) to each
    difference. Differences whose 'a' is in apart (a random encoder: did pre-training add anything) form a
    family of their own, so that their many tiny p-values do not loosen the thresholds of the others. A
    difference without a p (an undefined figure) gets no q and does not count in the family."""
    for d in diffs:
        d["q"], d["survives"] = math.nan, False
    tested = [d for d in diffs if np.isfinite(d["p"])]
    for family in ([d for d in tested if d["a"] not in apart], [d for d in tested if d["a"] in apart]):
        if family:
            for d, q in zip(family, sps.false_discovery_control([d["p"] for d in family], method="bh")):
                d["q"], d["survives"] = float(q), bool(q < alpha)


def across_seeds(scores, labels, keys):
    """Per key: each group's mean ± sd over seeds (groups of >= 2), and each group against the first: a
    paired t over the seeds both have where they share >= 3 (the difference cancels what a seed does to
    both), else Welch's t where both have >= 3. The variation of training, beside the per-checkpoint CIs
    (which see only the evaluation data's). scores: rows with the keys, 'ckpt' and 'score'."""
    groups = seed_groups(labels)
    by = {tuple(s[k] for k in keys) + (s["ckpt"],): s["score"] for s in scores}
    rows, names = [], list(groups)
    for key in dict.fromkeys(tuple(s[k] for k in keys) for s in scores):
        vals = {g: {seed_of(label): by[key + (label,)] for label in ls if key + (label,) in by}
                for g, ls in groups.items()}
        row = {**dict(zip(keys, key)), "groups": {g: {"n": len(v), "mean": float(np.mean(list(v.values()))),
                                                      "sd": float(np.std(list(v.values()), ddof=1))}
                                                  for g, v in vals.items() if len(v) >= 2}}
        for g in names[1:]:
            a, b = vals[g], vals[names[0]]
            shared = [s for s in a if s in b]
            if len(shared) >= 3:
                t = t_test([a[s] for s in shared], [b[s] for s in shared], paired=True)
                n = len(shared)
            elif len(a) >= 3 and len(b) >= 3:
                t, n = t_test(list(a.values()), list(b.values()), paired=False), [len(a), len(b)]
            else:
                continue
            row.setdefault("tests", []).append({"a": g, "b": names[0], **t, "n": n})
        rows.append(row)
    return rows
