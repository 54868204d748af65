"""
The geometry of sentence embeddings, checkpoints side by side: uniformity and alignment, anisotropy, the
covariance spectrum, lexical probes and the semantic-to-lexical balance, each with a 95% interval and a
paired test against its reference; then the paper's claims, judged over training seeds. ANALYSIS.md defines
every figure; the embedding, probes and tables are probe.py's, the statistics stats.py's.

$ python probe.py out-hybrid-tiny out-mlm-tiny --glue_dir=../shared/data/glue         # first: the GLUE table
$ python eval_geometry.py out-hybrid-tiny out-mlm-tiny --glue_dir=../shared/data/glue   # REPORT.md, plots
"""

import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import torch

import configurator
import data
import probe
import stats
from configurator import InputError, MissingInput, clock, whole_number
from probe import md_table, score_table

# -----------------------------------------------------------------------------
# settings (override with --key=value): probe.py's, meaning the same here (configurator reads them from
# globals()), and the geometry's own
from probe import (batch_size, cache_dir, data_dir, dataset, device, encoder, glue_dir, max_train, n_boot,
                   n_folds, poolings, random_init, report_dir, seed, text_column, threads, unfinished)
n_sub = 200  # half-samples (without replacement) per sentence set, for the set statistics' intervals
geom_n = 0  # sentences per set for uniformity, anisotropy and the spectrum (a seeded sample); 0: 5 x the
# width (a d-dimensional spectrum needs several times d points), or the whole set where it has fewer
report_note = ""  # a line put at the top of REPORT.md (e.g. what the checkpoints are and are not)
training_only = False  # the runs' training alone, from their log.jsonl (unfinished runs too): TRAINING.md
# with --threads=0 (all cores) the spectra spread over them, one half-sample per thread

# -----------------------------------------------------------------------------
# statistics of a set of embeddings, for the data and for B subsamples at once. A subsample is a row of
# weights c (1 for each sentence drawn, else 0), so the n x n kernels are built once and every subsample is
# a weighted sum of them. Half-samples without replacement, not the bootstrap: ANALYSIS.md says why.


def normalize(X):
    return X / X.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def half_samples(n, n_sub, seed=0):
    """(n_sub, n // 2) sorted indices: subsamples of half the set, each without replacement."""
    rng = np.random.default_rng(seed)
    return np.stack([np.sort(rng.permutation(n)[:n // 2]) for _ in range(n_sub)])


def counts_of(idx, n):
    """Sample indices (B, m) -> counts (B, n); the data itself is the all-ones row."""
    c = np.zeros((len(idx), n))
    np.add.at(c, (np.arange(len(idx))[:, None], idx), 1)
    return c


def pair_mean(K, c):
    """Mean of K[i, j] over ordered pairs of distinct draws i != j of each resample."""
    n = c.sum(1)
    return (((c @ K) * c).sum(1) - (c * torch.diagonal(K)).sum(1)) / (n * (n - 1))


def uniformity(X, c=None, t=2.0):
    """log E exp(-t ||x - y||^2) over pairs of L2-normalised embeddings (Wang & Isola 2020)."""
    Xn = normalize(X.double())
    c = torch.ones(1, len(X), dtype=torch.float64) if c is None else c
    return torch.log(pair_mean(torch.exp(-t * (2 - 2 * Xn @ Xn.T).clamp(min=0)), c))


def anisotropy(X, c=None):
    """Mean cosine over pairs of distinct sentences (Ethayarajh 2019)."""
    Xn = normalize(X.double())
    return pair_mean(Xn @ Xn.T, torch.ones(1, len(X), dtype=torch.float64) if c is None else c)


def alignment(U, V):
    """Per pair ||x - y||^2 of L2-normalised positives (alpha = 2 on the distance; Wang & Isola 2020)."""
    return (normalize(U.double()) - normalize(V.double())).pow(2).sum(-1)


def map_threads(fn, items):
    """fn over items on torch's CPU threads, each call single-threaded: one 512 x 512 eigendecomposition
    gains little from threads inside it, independent ones about linearly, and each result is the same bits
    whatever --threads is."""
    k = torch.get_num_threads()
    if k == 1:
        return [fn(x) for x in items]
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(k) as pool:  # torch releases the GIL inside its kernels
            return list(pool.map(fn, items))
    finally:
        torch.set_num_threads(k)


def spectra(X, c=None):
    """Eigenvalues of the centred covariance (descending, (B, r), r = min(n - 1, d)) and the singular values
    of the uncentred X (for RankMe) of each resample."""
    n, d = X.shape
    c = torch.ones(1, n, dtype=torch.float64) if c is None else c
    X = X.double()  # float32 products leave ~1e-8 eigenvalues where there are none: sqrt makes them count
    r = min(int(c.sum(1).min()) - 1, d)

    def one(w):  # only the drawn rows enter the products: a half-sample costs half of X^T diag(c) X
        keep = w > 0
        Xs, ws = X[keep], w[keep]
        m = ws.sum()
        G = Xs.T @ (Xs * ws[:, None])  # X^T diag(c) X
        mu = ws @ Xs / m
        cov = (G - m * torch.outer(mu, mu)) / (m - 1)
        lam = torch.linalg.eigvalsh(cov).flip(-1)[:r].clamp(min=0)
        return lam, torch.linalg.eigvalsh(G).flip(-1).clamp(min=0).sqrt()
    lam, sv_unc = zip(*map_threads(one, c))
    return torch.stack(lam), torch.stack(sv_unc)


def entropy_rank(p):
    return torch.exp(-(p * torch.log(p.clamp(min=1e-300))).sum(-1))


def spectral_stats(lam, sv_unc, n):
    """The spectrum figures of eigenvalues (B, r) and uncentred singular values (B, d)."""
    r = lam.size(1)
    sigma = (lam * (n - 1)).sqrt()
    q = lam / lam.sum(-1, keepdim=True)
    i = torch.arange(1, r + 1, dtype=torch.float64)
    mid = (i >= 2) & (i <= r / 2)  # the middle of the spectrum: the head is a few outliers, the tail noise
    x = torch.log(i[mid])
    y = torch.log(lam[:, mid].clamp(min=1e-30))
    slope = ((x - x.mean()) * (y - y.mean(-1, keepdim=True))).sum(-1) / ((x - x.mean()) ** 2).sum()
    return {
        "eff_rank": entropy_rank(sigma / sigma.sum(-1, keepdim=True)),  # Roy & Vetterli 2007
        "rankme": entropy_rank(sv_unc / sv_unc.sum(-1, keepdim=True) + 1e-7),  # Garrido et al. 2023
        "stable_rank": lam.sum(-1) / lam[:, 0],
        "rank90": ((q.cumsum(-1) < 0.9).sum(-1) + 1).double(),
        "spectral_entropy": -(q * torch.log(q.clamp(min=1e-300))).sum(-1) / math.log(r),
        "alpha": -slope,  # lambda_i ~ i^(-alpha)  (alpha-ReQ, Agrawal et al. 2022)
    }


def set_stats(X, c):
    """Every set statistic of each weighted sample c (B, n) of X: {stat: (B,)}, and the samples' spectra."""
    out = {"uniformity": uniformity(X, c), "anisotropy": anisotropy(X, c)}
    lam, sv = spectra(X, c)
    out.update(spectral_stats(lam, sv, int(c[0].sum())))
    return out, lam


def set_geometry(X, idx):
    """Every set statistic at the subsample size m of idx (B, m): {stat: (est, reps, at_n)}: the mean over the
    subsamples, the subsamples' values, and the statistic of all n sentences (for reference); and X's full
    spectrum (for the plot)."""
    reps, _ = set_stats(X, torch.as_tensor(counts_of(idx, len(X))))
    full, lam = set_stats(X, torch.ones(1, len(X), dtype=torch.float64))
    return {k: (float(v.mean()), v.numpy(), float(full[k][0])) for k, v in reps.items()}, lam[0].numpy()


def jaccard(a, b):
    """Jaccard similarity of the token-id sets of two sentences."""
    a, b = set(a), set(b)
    return len(a & b) / max(1, len(a | b))


# -----------------------------------------------------------------------------
# the sentence sets, and one checkpoint's figures under one pooling


def geometry_sets(tasks, sentences):
    """{set name: [(cache name, texts)]} for uniformity, anisotropy and the spectrum: each GLUE task's dev
    sentences (both sides of pairs) and the corpus' held-out sentences."""
    sets = {}
    for t in data.GLUE_TASKS if tasks is not None else []:
        split = tasks[t]["dev_matched" if t == "mnli" else "dev"]
        dev = "mnli-dev_matched" if t == "mnli" else f"{t}-dev"
        sets[t] = [(f"{dev}-a", split["a"])] + ([(f"{dev}-b", split["b"])] if split["b"] else [])
    return {**sets, "corpus": [("probing-sentences", sentences)]}


MIN_SET = 14  # half-samples of 7: 6 eigenvalues, 2 of them (i = 2 .. r/2) for the power law's slope
MIN_WHY = ": every spectrum figure needs half-samples of 7 sentences"


def sample_sets(gsets, n_max, n_sub, seed):
    """{set name: (seeded sample of at most n_max sentences, its half-samples)}, shared by all checkpoints."""
    out = {}
    for sname, parts in gsets.items():
        if (n := sum(len(t) for _, t in parts)) < MIN_SET:
            raise InputError(f"the {sname} sentence set has {n}: the geometry needs at least "
                             f"{MIN_SET}{MIN_WHY}")
        pick = np.sort(np.random.default_rng(seed).permutation(n)[:n_max])
        out[sname] = (pick, half_samples(len(pick), n_sub, seed))
    return out


def positive_pairs(tasks):
    """Positives for alignment: STS-B pairs with gold >= 4 (as SimCSE), MRPC paraphrases, MNLI entailments."""
    out = {"stsb": ("stsb-dev", tasks["stsb"]["dev"], tasks["stsb"]["dev"]["y"] >= 4),
           "mrpc": ("mrpc-dev", tasks["mrpc"]["dev"], tasks["mrpc"]["dev"]["y"] == 1)}
    entail = data.MNLI_LABELS["entailment"]
    return {**out, **{f"mnli-{s}": (f"mnli-{s}", tasks["mnli"][s], tasks["mnli"][s]["y"] == entail)
                      for s in ("dev_matched", "dev_mismatched")}}


def checkpoint_geometry(emb, pooling, psets, gsets, set_idx, tasks, proto):
    """One checkpoint's figures under one pooling: the lexical probes, the SST-2 probe (for the probe gap),
    every set statistic with its half-samples and full spectrum, alignment of positives, STS-B cosines.
    Attention pooling takes the weights of the attentive probe trained on SST-2, so it needs GLUE."""
    out = {"lexical": {name: probe.run_cv_eval(emb, name, s, pooling, proto) for name, s in psets.items()},
           "sets": {}, "align": {}}
    if tasks is None and pooling == "attention":
        return out
    keep = {}
    if tasks is not None:
        sst2 = data.glue_evals(tasks, proto.max_train, proto.seed)[0][0]
        out["sem"] = probe.run_glue_eval(emb, sst2, pooling, proto, keep)["sst2"]

    def vecs(name, texts):
        f = emb(name, texts)
        return f[pooling].float() if pooling != "attention" else \
            probe.attentive_apply(*keep["sst2"], (f, None), pooled=True).float()
    for sname, parts in gsets.items():
        pick, idx = set_idx[sname]
        out["sets"][sname] = set_geometry(torch.cat([vecs(n, t) for n, t in parts])[pick], idx)
    if tasks is not None:
        for pname, (cache, split, pos) in positive_pairs(tasks).items():
            U, V = vecs(f"{cache}-a", split["a"]), vecs(f"{cache}-b", split["b"])
            out["align"][pname] = alignment(U[pos], V[pos]).numpy()
        dev = tasks["stsb"]["dev"]
        U, V = vecs("stsb-dev-a", dev["a"]), vecs("stsb-dev-b", dev["b"])
        out["sts"] = torch.nn.functional.cosine_similarity(U, V, dim=-1).double().numpy()
    return out


# what a checkpoint's geometry depends on besides the settings and the data: this source is in its cache key
GEOMETRY_CODE = probe.snapshot((checkpoint_geometry, set_geometry, set_stats, spectra, map_threads,
                                spectral_stats, entropy_rank, uniformity, anisotropy, pair_mean, counts_of,
                                normalize, alignment, positive_pairs))


# -----------------------------------------------------------------------------
# the figures: each an estimate and its replicates on resamples that every checkpoint shares (stats.compare)


def set_figures(res, set_idx):
    """The set statistics at m = n/2: the half-samples' mean and values, the same half-samples for all."""
    return {(label, sname, pooling, stat): (est, reps, {"n": len(set_idx[sname][0]),
                                                        "m": len(set_idx[sname][0]) // 2, "at_n": at_n})
            for label, by_pool in res.items() for pooling, r in by_pool.items()
            for sname, (figs, _) in r["sets"].items() for stat, (est, reps, at_n) in figs.items()}


def alignment_figures(res, n_boot, seed):
    """Mean alignment of each positive-pair set, bootstrapped over the pairs (the same draws for all)."""
    out = {}
    for label, by_pool in res.items():
        for pooling, r in by_pool.items():
            for pname, v in r["align"].items():
                idx = stats.boot_indices(len(v), n_boot, seed)
                out[label, pname, pooling] = (float(v.mean()), v[idx].mean(-1), {"n": len(v)})
    return out


def balance_baselines(tasks, tok, mft_majority):
    """Jaccard and gold on STS-B dev, and the balance without a model: an encoder with no information scores
    the majority class on both probes (its gap) and a constant cosine (ρ 0); the cosine of bag-of-tokens
    counts sets the balance of surface overlap alone."""
    dev, sst2 = tasks["stsb"]["dev"], tasks["sst2"]
    jac = np.array([jaccard(a, b) for a, b in zip(tok.encode_batch(dev["a"]), tok.encode_batch(dev["b"]))])
    gold = dev["y"].astype(np.float64)
    bot = probe.bag_of_tokens_cosine(dev["a"], dev["b"], tok)
    rs, rl = stats.spearman(bot, gold), stats.spearman(bot, jac)
    y = sst2["dev"]["y"]
    major = 100 * stats.accuracy(y, probe.constant_prediction(sst2["train"]["y"], y))
    return jac, gold, {"gap": {"score": major - mft_majority, "what": "no information: majority classes"},
                       "rho_sem": {"score": 100 * float(rs), "what": "bag-of-tokens cosine"},
                       "rho_lex": {"score": 100 * float(rl), "what": "bag-of-tokens cosine"},
                       "rho_sem-rho_lex": {"score": 100 * float(rs - rl), "what": "bag-of-tokens cosine"}}


def balance_figures(res, jac, gold, n_boot, seed):
    """x100: the probe gap (SST-2 dev and the mft probe: different examples, resampled independently), and
    ρ_sem, ρ_lex and ρ_sem − ρ_lex of the STS-B dev cosines."""
    first = next(r for by_pool in res.values() for r in by_pool.values() if "sem" in r)
    i_sem = stats.boot_indices(len(first["sem"]["y"]), n_boot, seed)
    i_lex = stats.boot_indices(len(first["lexical"]["mft"]["y"]), n_boot, seed + 1)
    i_sts = stats.boot_indices(len(gold), n_boot, seed)
    acc, rho, out = stats.accuracy, stats.spearman, {}
    for label, by_pool in res.items():
        for pooling, r in ((p, r) for p, r in by_pool.items() if "sem" in r):
            s, m, c = r["sem"], r["lexical"]["mft"], r["sts"]
            gap = (acc(s["y"], s["p"]) - acc(m["y"], m["p"]),
                   acc(s["y"][i_sem], s["p"][i_sem]) - acc(m["y"][i_lex], m["p"][i_lex]))
            rs, rl = (rho(c, gold), rho(c[i_sts], gold[i_sts])), (rho(c, jac), rho(c[i_sts], jac[i_sts]))
            for fig, (est, reps) in (("gap", gap), ("rho_sem", rs), ("rho_lex", rl),
                                     ("rho_sem-rho_lex", (rs[0] - rl[0], rs[1] - rl[1]))):
                out[label, fig, pooling] = (100 * float(est), 100 * reps, {})
    return out


# -----------------------------------------------------------------------------
# the paper's claims, judged: each hybrid group against each MLM group, over training seeds

EQUIVALENCE = 2.0  # "about the same" probe score: the difference's 95% CI inside ±2 points (x100); the
# official README's hybrid - MLM gaps, -1.1 (SST-2), -0.6 (MNLI), +3.3 (MRPC F1), -0.2 (STS-B ρ), are "equal"


def claim_specs(pools, main_set):
    """(claim, source, key, direction, format); direction -1: the hybrid lower, +1 higher, 0 about equal."""
    geo = lambda p, stat: {"set": main_set, "pooling": p, "stat": stat}  # noqa: E731
    probes = (("sst2", "acc"), ("mrpc", "f1"), ("mnli-m", "acc"), ("cola", "mcc"), ("stsb", "spearman"))
    return ([("1. more uniform (paper: hybrid < -0.16, MLM -0.05)", "geometry", geo(p, "uniformity"), -1,
              "{:.3f}") for p in pools] +
            [("2. richer spectrum under max pooling", "geometry", geo("max", s), d, "{:.3f}")
             for s, d in (("eff_rank", 1), ("rankme", 1), ("alpha", -1)) if "max" in pools] +
            [("3a. less surface lexical information (most-frequent-token probe)", "lexical",
              {"eval": "mft", "metric": "acc", "pooling": p}, -1, "{:.1f}") for p in pools] +
            [(f"3b. better semantic-to-lexical balance ({what})", "balance", {"figure": fig, "pooling": p}, 1,
              "{:.1f}") for fig, what in (("gap", "probe gap"), ("rho_sem-rho_lex", "ρ_sem − ρ_lex, STS-B"))
             for p in pools] +
            [("4. about the same linear-probe scores", "probe", {"eval": e, "metric": m, "pooling": p}, 0,
              "{:.1f}") for e, m in probes for p in pools])


def verdict(direction, diff, lo, hi, p, n):
    """holds / does not hold / inconclusive, and why, from the difference over n seeds (its CI and p)."""
    if n < 3:
        return "inconclusive", f"{n} seed{'s' * (n != 1)}: the verdict needs ≥ 3 (within-seed tests beside)"
    if math.isnan(diff):
        return "inconclusive", "the figure is undefined (nan) on a seed"
    if direction == 0:
        if -EQUIVALENCE < lo and hi < EQUIVALENCE:
            return "holds", f"the CI lies inside ±{EQUIVALENCE:g}"
        if lo >= EQUIVALENCE or hi <= -EQUIVALENCE:
            return "does not hold", f"the CI lies outside ±{EQUIVALENCE:g}"
        return "inconclusive", f"the CI crosses ±{EQUIVALENCE:g}"
    if p >= 0.05:
        return "inconclusive", f"no difference over seeds (p {p:.2f})"
    return ("holds", f"p {p:.3f}") if diff * direction > 0 else ("does not hold", f"the opposite, p {p:.3f}")


def within_seed(diffs, match, a, b, fmt):
    """A seed's own paired difference a − b over examples: {diff, lo, hi, text: 'diff [lo, hi] q'}, or None
    where not computed."""
    d = next((d for d in diffs if match(d) and (d["a"], d["b"]) in ((a, b), (b, a))), None)
    if d is None:
        return None
    sign = 1 if d["a"] == a else -1
    lo, hi = sorted((sign * d["lo"], sign * d["hi"]))
    q = f" q={d['q']:.3f}" if "q" in d else ""
    text = f"{fmt.replace('{:', '{:+').format(sign * d['diff'])} [{fmt.format(lo)}, {fmt.format(hi)}]{q}"
    return {"diff": sign * d["diff"], "lo": lo, "hi": hi, "text": text}


def claim_row(spec, hyb, mlm, groups, scores, diffs):
    """One claim figure, one hybrid and one MLM group: each side's seeds, the paired t over the seeds both
    have (>= 3 for a CI), each seed's own difference, the verdict; None where they share no seed."""
    claim, _, key, direction, fmt = spec
    match = lambda r: all(r.get(k) == v for k, v in key.items())  # noqa: E731
    by = {s["ckpt"]: s["score"] for s in scores if match(s)}
    h = {stats.seed_of(label): by[label] for label in groups[hyb] if label in by}
    m = {stats.seed_of(label): by[label] for label in groups[mlm] if label in by}
    if not (shared := [s for s in h if s in m]):
        return None
    label_of = lambda g, s: next(label for label in groups[g] if stats.seed_of(label) == s)  # noqa: E731
    within = [w for s in shared if (w := within_seed(diffs, match, label_of(hyb, s), label_of(mlm, s), fmt))]
    diff, lo, hi, p = float(np.mean([h[s] - m[s] for s in shared])), None, None, None  # no CI from < 3 seeds
    if len(shared) >= 3:
        t = stats.t_test([h[s] for s in shared], [m[s] for s in shared], paired=True)
        diff, lo, hi, p = t["diff"], t["lo"], t["hi"], t["p"]
    v, why = verdict(direction, diff, lo, hi, p, len(shared))
    sd = lambda vals: f" ± {fmt.format(np.std(vals, ddof=1))}" if len(vals) > 1 else ""  # noqa: E731
    summary = lambda vals: f"{fmt.format(np.mean(vals))}{sd(vals)} ({len(vals)})"  # noqa: E731
    over = fmt.replace("{:", "{:+").format(diff) + (f" [{fmt.format(lo)}, {fmt.format(hi)}], p={p:.3f}"
                                                    if lo is not None else "")
    return {"hybrid": hyb, "mlm": mlm, "claim": claim, "figure": " ".join(map(str, key.values())),
            "direction": direction, "hybrid_seeds": h, "mlm_seeds": m, "diff": diff, "lo": lo, "hi": hi,
            "p": p, "n_seeds": len(shared), "within": [w["text"] for w in within],
            "within_ci": [[w["diff"], w["lo"], w["hi"]] for w in within], "verdict": v, "why": why,
            "text": [summary(list(h.values())), summary(list(m.values())), over]}


def claims(sources, labels, objectives):
    """One row per claim figure, hybrid group and MLM group (the first MLM group is the reference; a later
    one, e.g. FLOP-matched, gets its own rows). sources: {name: (scores, diffs)}; objectives: {label: ...}."""
    groups = stats.run_groups(labels)  # random-init's objective is 'none': neither side
    mlms = [g for g, ls in groups.items() if objectives[ls[0]] == "mlm"]
    hybrids = [g for g, ls in groups.items() if objectives[ls[0]] == "hybrid"]
    pools = list(dict.fromkeys(s["pooling"] for s in sources["geometry"][0]))
    main_set = "stsb" if any(s.get("set") == "stsb" for s in sources["geometry"][0]) else "corpus"
    rows = [claim_row(spec, h, m, groups, *sources[spec[1]]) for m in mlms for h in hybrids
            for spec in claim_specs(pools, main_set) if spec[1] in sources]
    return [r for r in rows if r is not None]


# -----------------------------------------------------------------------------
# the report: plots and REPORT.md

SECTIONS = {  # report key: (title, table keys, format, what the figures are, the plot beside them)
    "geometry": ("Geometry of the sentence sets", ("set", "pooling", "stat"), "{:.3f}",
                 "Each set a seeded sample of n sentences; every figure is the statistic at m = n/2, the "
                 "mean over the half-samples with their 95% interval (n, and the value at n, `at_n`, in "
                 "geometry.json).", "spectra.png"),
    "alignment": ("Alignment of real positive pairs", ("pairs", "pooling"), "{:.3f}",
                  "E‖x̂−ŷ‖² over positives (0 = identical embeddings).", "uniformity_alignment.png"),
    "lexical": ("Lexical information (probing sets, k-fold CV accuracy x100)", ("eval", "metric", "pooling"),
                "{:.1f}", "mft = the paper's probe; baseline = the majority class.", "lexical_probes.png"),
    "balance": ("Semantic-to-lexical balance", ("figure", "pooling"), "{:.1f}",
                "gap = SST-2 dev accuracy − mft probe accuracy; ρ_sem, ρ_lex on STS-B dev (x100). "
                "Baseline: no information for the gap, the bag-of-tokens cosine for ρ.", None),
}


def plot_spectra(plt, spectra_main, main_set, colors, names):
    """Each checkpoint's eigenvalues on log-log axes, a panel per pooling; a seed group's as one line, their
    geometric mean, in a band from the lowest to the highest of its seeds."""
    fig, axes = plt.subplots(1, len(spectra_main), figsize=(3 * len(spectra_main), 3), squeeze=False)
    for ax, (pool, by_label) in zip(axes[0], spectra_main.items()):
        groups = {}  # a run group's seeds of one spectrum length (a group of several widths: one line each)
        for g, members in stats.run_groups(list(by_label)).items():
            for label in members:
                groups.setdefault((g, len(by_label[label])), []).append(label)
        for members in groups.values():
            lams = np.maximum([by_label[label] for label in members], 1e-12)  # (seeds, r)
            i = np.arange(1, lams.shape[1] + 1)
            ax.loglog(i, np.exp(np.log(lams).mean(0)), label=names[members[0]], color=colors[members[0]])
            if len(members) > 1:
                ax.fill_between(i, lams.min(0), lams.max(0), color=colors[members[0]], alpha=0.25, lw=0)
        ax.set_title(f"{pool} ({main_set})", fontsize=9)
        ax.set_xlabel("index i", fontsize=8)
    axes[0, 0].set_ylabel("eigenvalue of the covariance", fontsize=8)
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: 13 curves fill it
    return fig


def plot_uniformity_alignment(plt, report, colors, names):
    """Uniformity against alignment on STS-B, marker = pooling: a checkpoint with its 95% intervals, a seed
    group at its mean over seeds, each seed a dot in its shade; one legend entry each."""
    from matplotlib.lines import Line2D
    ua = {(s["ckpt"], s["pooling"]): (s["score"], a["score"], s, a) for s in report["geometry"]
          if s["set"] == "stsb" and s["stat"] == "uniformity" for a in report["alignment"]
          if (a["pairs"], a["pooling"], a["ckpt"]) == ("stsb", s["pooling"], s["ckpt"])}
    if not ua:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    markers = dict(zip(dict.fromkeys(p for _, p in ua), "osD^v"))
    # a percentile CI need not contain its estimate (resampled pairs include duplicates): clip the bars at 0
    err = lambda r: [[max(0, r["score"] - r["lo"])], [max(0, r["hi"] - r["score"])]]  # noqa: E731
    groups = stats.run_groups(list(dict.fromkeys(c for c, _ in ua)))
    for members, (pool, m) in ((ls, pm) for ls in groups.values() for pm in markers.items()):
        here = [c for c in members if (c, pool) in ua]
        if len(members) == 1 and here:
            x, y, s, a = ua[here[0], pool]
            ax.errorbar(x, y, xerr=err(s), yerr=err(a), fmt=m, color=colors[members[0]], capsize=2)
        elif here:
            x, y = np.array([ua[c, pool][:2] for c in here]).T
            ax.scatter(x, y, s=12, marker=m, color=[colors[c] for c in here], lw=0)
            ax.scatter(x.mean(), y.mean(), s=50, marker=m, color=colors[members[0]], edgecolors="k", zorder=3)
    ax.set_xlabel("uniformity (STS-B dev sentences), lower = more uniform", fontsize=8)
    ax.set_ylabel("alignment (STS-B pairs, gold >= 4), lower = better", fontsize=8)
    handles = [Line2D([], [], color=colors[c], marker="o", ls="", label=names[c])
               for c in dict.fromkeys(c for c, _ in ua) if not names[c].startswith("_")]
    handles += [Line2D([], [], color="gray", marker=m, ls="", label=f"{p} pooling")
                for p, m in markers.items()]
    if any(len(ls) > 1 for ls in groups.values()):
        handles.append(Line2D([], [], color="gray", marker="o", mec="k", ls="", label="seed group: its mean"))
    ax.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


PANELS = {"val_mlm": "val MLM loss (dashed: the unigram line)", "lambda": "λ = w_jepa / (w_mlm + w_jepa)",
          "tgt_rankme": "target RankMe (collapse watch)"}


def plot_training(plt, curves, colors, names):
    """A panel per figure some run logged (PANELS), a line per run over its iterations; None without logs."""
    keys = [k for k in PANELS if any(k in c for c in curves.values())]
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for label, c in curves.items():
            if key in c:
                ax.plot(*c[key], label=names[label], color=colors[label])
            if key == "val_mlm" and "val_unigram" in c:
                ax.plot(*c["val_unigram"], color=colors[label], ls="--", lw=0.8)
        ax.set_title(PANELS[key], fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
    # the first panel has every run with a log: its legend, outside the last panel
    axes[0, -1].legend(*axes[0, 0].get_legend_handles_labels(), fontsize=7, loc="upper left",
                       bbox_to_anchor=(1.01, 1))
    return fig


VERDICT_COLORS = {"holds": "tab:green", "does not hold": "tab:red", "inconclusive": "0.6"}
PAIR_MARKERS = "osD^v<>p"


def one_seed(r):
    """A claim row of one shared seed: no interval over seeds, its seed's interval over examples instead."""
    return r["lo"] is None and len(r["within_ci"]) == 1


def claim_panel(ax, name, rs, figures, pairs):
    """One claim's figures: a marker per hybrid and MLM pair at its difference over seeds, with its CI."""
    for r in rs:
        k = pairs.index((r["hybrid"], r["mlm"]))
        y = figures.index(r["figure"]) + (k - (len(pairs) - 1) / 2) * 0.7 / len(pairs)
        x, lo, hi = r["within_ci"][0] if one_seed(r) else (r["diff"], r["lo"], r["hi"])
        err = [[x - lo], [hi - x]] if lo is not None else None
        ax.errorbar(x, y, xerr=err, fmt=PAIR_MARKERS[k % 8], color=VERDICT_COLORS[r["verdict"]], ms=4,
                    capsize=2, mfc="white" if one_seed(r) else None)
    if rs[0]["direction"] == 0:
        ax.axvspan(-EQUIVALENCE, EQUIVALENCE, color="0.92", zorder=0)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_yticks(range(len(figures)), figures, fontsize=7)
    ax.set_ylim(len(figures) - 0.5, -0.5)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(f"{name}; expected: {({-1: 'lower', 1: 'higher', 0: 'the same'})[rs[0]['direction']]}",
                 fontsize=8)


def plot_claims(plt, rows):
    """The claims at a glance: each figure's hybrid − MLM difference over seeds with its 95% CI (with one
    seed, hollow: that seed's paired CI over examples), a marker per hybrid and MLM group, coloured by its
    verdict; a panel per claim (claim 2 per statistic: their units differ), in two columns, shaded
    ±EQUIVALENCE where the paper says 'about the same'. None without claims."""
    if not rows:
        return None
    panels = {}
    for r in rows:
        stat = f": {r['figure'].split()[-1]}" if r["claim"].startswith("2.") else ""
        panels.setdefault(r["claim"] + stat, []).append(r)
    pairs = list(dict.fromkeys((r["hybrid"], r["mlm"]) for r in rows))
    figures = {name: list(dict.fromkeys(r["figure"] for r in rs)) for name, rs in panels.items()}
    row = 0.12 + 0.06 * len(pairs)  # inches per figure; a panel's title and axis take 0.6 more
    height = {name: len(f) * row + 0.6 for name, f in figures.items()}
    columns, done = [[]], 0
    for name in figures:  # the claims in order, into two columns of about even height
        if columns[0] and len(columns) == 1 and done + height[name] / 2 > sum(height.values()) / 2:
            columns.append([])
        columns[-1].append(name)
        done += height[name]
    fig = plt.figure(figsize=(6 * len(columns), max(sum(height[n] for n in c) for c in columns)),
                     layout="constrained")
    for sub, names in zip(fig.subfigures(1, len(columns), squeeze=False)[0], columns):
        axes = sub.subplots(len(names), 1, squeeze=False, height_ratios=[height[n] for n in names])
        for ax, name in zip(axes[:, 0], names):
            claim_panel(ax, name, panels[name], figures[name], pairs)
    over_seeds = any(r["lo"] is not None for r in rows)
    ax.set_xlabel("hybrid − MLM over seeds: mean, paired-t 95% CI" if over_seeds else  # the bottom right panel
                  "hybrid − MLM, one seed: paired bootstrap 95% CI over examples", fontsize=8)
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color="k", marker=PAIR_MARKERS[k % 8], ls="", label=f"{h} − {m}")
               for k, (h, m) in enumerate(pairs)]
    handles += [Line2D([], [], color=c, marker="o", ls="", label=v) for v, c in VERDICT_COLORS.items()]
    if any(one_seed(r) for r in rows):
        handles.append(Line2D([], [], color="k", marker="o", mfc="white", ls="",
                              label="hollow: one seed, its paired CI over examples"))
    fig.legend(handles=handles, fontsize=7, loc="lower center", ncol=4, bbox_to_anchor=(0.5, 1.0))
    return fig


def save_figures(plt, figs, report_dir):
    """Each figure of {file name: figure or None} into report_dir; the names of those written."""
    for name, fig in figs.items():
        if fig is not None:
            if fig.get_layout_engine() is None:  # constrained layouts lay themselves out
                fig.tight_layout()
            fig.savefig(os.path.join(report_dir, name), dpi=80, bbox_inches="tight")  # keeps a legend outside
            plt.close(fig)
    return [name for name, fig in figs.items() if fig is not None]


def plots(report, labels, spectra_main, main_set, curves, report_dir):
    """claims.png (with claims), spectra.png, uniformity_alignment.png (with GLUE), training.png (with logs),
    lexical_probes.png: the names of those written."""
    plt, look = probe.pyplot(), (probe.palette(labels), probe.legend_labels(labels))
    written = save_figures(plt, {"claims.png": plot_claims(plt, report["claims"]),
                                 "spectra.png": plot_spectra(plt, spectra_main, main_set, *look),
                                 "uniformity_alignment.png": plot_uniformity_alignment(plt, report, *look),
                                 "training.png": plot_training(plt, curves, *look)}, report_dir)
    probe.plot_scores(report["lexical"], labels, os.path.join(report_dir, "lexical_probes.png"),
                      "lexical probes (k-fold CV accuracy)",
                      {(k, "acc"): v for k, v in report["majority"].items()})
    return written + ["lexical_probes.png"]


def head_lines(report, labels, cfg):
    """The checkpoints, how to read the figures, the notes."""
    val = lambda c: (f"{c['val_mlm']:.3f} ({c['val_unigram']:.3f})" if c.get("val_unigram") else  # noqa: E731
                     f"{c['val_mlm']:.3f}" if "val_mlm" in c else "n/a")
    its = lambda c: str(c["iter_num"]) + ("" if c["finished"] else f" of {c['max_iters']} (unfinished)")
    L = [f"# Embedding geometry report ({report['mode']})", ""]
    L += [cfg.report_note, ""] if cfg.report_note else []
    L += [md_table(["checkpoint", "objective", "iter", "encoder", "val MLM (unigram line)", "path"],
                   [[c["label"], c["objective"], its(c), c["encoder"], val(c), c["path"]]
                    for c in report["checkpoints"]]), ""]
    L += [f"Every figure: estimate [95% interval]: a bootstrap over examples (B={cfg.n_boot}, seed "
          f"{cfg.seed}), the set statistics {cfg.n_sub} half-samples; differences against {labels[0]} (named "
          "<group>-s<seed>: against the first of their seed) resample the same examples for both, with a "
          "two-sided p and a BH q. ANALYSIS.md, beside the code, defines every figure and test.", ""]
    return L + [f"- {n}" for n in report["notes"]]


def claims_lines(rows, files):
    """The claims' plot, then one table per hybrid and MLM group, and a tally per claim."""
    L = ["", "## The paper's claims, checked", "", "Each hybrid group against each MLM group on the figures "
         "the claims name (STS-B dev sentences for the set statistics): a direction holds at paired-t "
         f"p < 0.05 over ≥ 3 shared seeds, 'about the same' when the CI lies inside ±{EQUIVALENCE:g} "
         "(ANALYSIS.md).", ""]
    if "claims.png" in files:
        L += ["![each claim's difference over seeds and its verdict](claims.png)", ""]
    for mlm, hyb in dict.fromkeys((r["mlm"], r["hybrid"]) for r in rows):
        mine = [r for r in rows if (r["mlm"], r["hybrid"]) == (mlm, hyb)]
        L += [f"**{hyb}** against **{mlm}**", ""]
        if not any(r["within"] for r in mine):
            L += ["No within-seed differences for this pair: each checkpoint's are taken against the first "
                  "checkpoint of its seed only; the difference over seeds is this pair's.", ""]
        L += [md_table(
            ["claim", "figure", f"{hyb} mean ± sd (seeds)", mlm, "difference over seeds [95% CI], p",
             "within each seed: difference [95% CI] q", "verdict", "why"],
            [[r["claim"], r["figure"], *r["text"], "; ".join(r["within"]) or "n/a", f"**{r['verdict']}**",
              r["why"]] for r in mine]), ""]
        tally = {c: [r["verdict"] for r in mine if r["claim"] == c]
                 for c in dict.fromkeys(r["claim"] for r in mine)}
        L += [md_table(["claim", "holds", "does not hold", "inconclusive"],
                       [[c, v.count("holds"), v.count("does not hold"), v.count("inconclusive")]
                        for c, v in tally.items()]), ""]
    return L


def figure_lines(report, labels, files, probe_md):
    """probe.md's tables (where judge() found its probe.json of these checkpoints), then one section per
    SECTIONS entry, and the tables over seeds."""
    L = ["", "## GLUE / probing-set probes (probe.py)", ""]
    if report["probe_json"] and os.path.exists(probe_md):
        with open(probe_md, encoding="utf-8") as f:
            L += [f.read().strip(), "", "![probe scores](probe_scores.png)"]
    else:
        L += ["(no probe.md of these checkpoints: run probe.py with them and the same --report_dir first)"]
    base = {"lexical": {(k, "acc"): {"score": v} for k, v in report["majority"].items()},
            "balance": {(k,): v for k, v in report.get("balance_baselines", {}).items()}}
    for name, (title, keys, fmt, what, png) in SECTIONS.items():
        L += ["", f"## {title}", "", what, ""]
        if not report[name]:
            L.append("n/a: needs GLUE (labelled pairs, SST-2 for the gap).")
            continue
        L.append(score_table(report[name], report[f"{name}_diffs"], labels, keys, fmt, base.get(name)))
        L += ["", f"![{name}]({png})"] if png in files else []
    if "jaccard_gold" in report:
        L += ["", f"Spearman(Jaccard of the token sets, gold) on STS-B dev: {report['jaccard_gold']:.1f}."]
    seeds = {n: probe.seed_table(rows, *SECTIONS[n][1:3]) for n, rows in report["across_seeds"].items()}
    if any(seeds.values()):
        L += ["", "## Across training seeds", "", "Mean ± sd over the seeds of each <group>-s<seed>, each "
              "group against the first (paired t over shared seeds, else Welch's t)."]
    return L + [line for n, t in seeds.items() if t for line in ("", f"### {n}", "", t)]


def below_line(c):
    """The first evaluation whose val MLM is under the unigram line (where the run left the plateau), 'never',
    or None where the log has no unigram line."""
    if "val_unigram" not in c:
        return None
    line = dict(zip(*c["val_unigram"]))
    return next((f"iter {i}" for i, v in zip(*c["val_mlm"]) if i in line and v < line[i]), "never")


def training_row(label, c):
    """checkpoint, val MLM first → last, the unigram line, where the run left it, λ, the lowest RankMe."""
    span = lambda k: f"{c[k][1][0]:.3f} → {c[k][1][-1]:.3f}" if k in c else "n/a"  # noqa: E731
    lam = span("lambda")
    if "lambda" in c:
        lam += f" ({min(c['lambda'][1]):.3f}–{max(c['lambda'][1]):.3f})"
    rankme = "n/a"
    if "tgt_rankme" in c:
        its, values = c["tgt_rankme"]
        rankme = f"{min(values):.1f} (iter {its[int(np.argmin(values))]})"
    line = f"{c['val_unigram'][1][-1]:.3f}" if "val_unigram" in c else "n/a"  # the same at every evaluation
    val = f"{span('val_mlm')} (iter {c['val_mlm'][0][-1]})"
    return [label, val, line, below_line(c) or "n/a", lam, rankme]


def training_lines(labels, curves):
    """Each run's own figures over training, from its log.jsonl: where it left the unigram plateau, λ, and
    the lowest target RankMe (the collapse watch)."""
    L = ["", "## Training (each run's log.jsonl)", ""]
    rows = [training_row(label, c) for label, c in curves.items() if "val_mlm" in c]
    if rows:
        head = ["checkpoint", "val MLM first → last (at)", "unigram line", "first eval under the line",
                "λ first → last (min–max)", "lowest target RankMe"]
        L += [md_table(head, rows), "", "![training curves](training.png)"]
    return L + [f"- {label}: no val losses in a log.jsonl beside it" for label in labels
                if label != probe.RANDOM and "val_mlm" not in curves.get(label, {})]


# -----------------------------------------------------------------------------
# the run: check, compute per checkpoint (cached), summarise, judge, write


def setup(cfg, proto, pools, d, tasks):
    """The probing sets, the geometry sets with their samples, and the notes that describe them."""
    sentences = data.corpus_sentences(cfg.dataset, cfg.data_dir, column=cfg.text_column)
    psets, notes = data.probing_sets(sentences, source=repr(cfg.dataset))
    gsets = geometry_sets(tasks, sentences)
    set_idx = sample_sets(gsets, cfg.geom_n or 5 * d, cfg.n_sub, cfg.seed)
    notes.append(f"lexical probes: {proto.n_folds}-fold CV accuracy (folds stratified by class); the L2 "
                 "strength is picked by the same CV (not nested)")
    if tasks is None:
        notes.append("no GLUE: alignment, the probe gap and the STS-B balance need labelled pairs: n/a")
    if "attention" in pools:
        notes.append("attention pooling: the geometry uses the attention weights of the attentive probe "
                     "trained on SST-2 over the raw token states (it has no parameter-free form)"
                     if tasks is not None else "attention pooling: lexical probes only (its query is trained "
                     "on SST-2, and there is no GLUE)")
    if thin := [s for s, (pick, _) in set_idx.items() if len(pick) < 5 * d]:
        notes.append(f"spectrum: n < 5d for {', '.join(thin)} (d = {d}); the smaller eigenvalues are poorly "
                     "estimated")
    return psets, gsets, set_idx, notes


def summarise(res, labels, tasks, tok, psets, set_idx, cfg):
    """Every figure with its interval and paired differences, q-values, and the summaries over seeds."""
    report = {"majority": {k: 100 * np.bincount(v["y"]).max() / len(v["y"]) for k, v in psets.items()}}
    figs = {"geometry": set_figures(res, set_idx), "alignment": alignment_figures(res, cfg.n_boot, cfg.seed)}
    for name, f in figs.items():
        report[name], report[f"{name}_diffs"] = stats.compare(f, labels, SECTIONS[name][1])
    lexical = {label: {pooling: r["lexical"] for pooling, r in res[label].items()} for label in labels}
    report["lexical"], report["lexical_diffs"] = probe.score_all(lexical, labels, cfg.n_boot, cfg.seed)
    report["balance"], report["balance_diffs"] = [], []
    if tasks is not None:
        jac, gold, report["balance_baselines"] = balance_baselines(tasks, tok, report["majority"]["mft"])
        report["jaccard_gold"] = 100 * float(stats.spearman(jac, gold))
        report["balance"], report["balance_diffs"] = stats.compare(
            balance_figures(res, jac, gold, cfg.n_boot, cfg.seed), labels, SECTIONS["balance"][1])
    stats.control_fdr([d for name in SECTIONS for d in report[f"{name}_diffs"]], apart={probe.RANDOM})
    report["across_seeds"] = {name: stats.across_seeds(report[name], labels, SECTIONS[name][1])
                              for name in ("geometry", "lexical", "balance")}
    return report


def judge(report, labels, report_dir):
    """The claims, with probe.py's scores where its probe.json has these checkpoints (the same weights under
    the same names, in the same order); report["probe_json"] says which probe.json was used, if any."""
    path, prb = os.path.join(report_dir, "probe.json"), None
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            prb = json.load(f)
        def which(checkpoints):
            return [(c["label"], c["encoder"], c.get("stamp")) for c in checkpoints]
        if which(prb["checkpoints"]) != which(report["checkpoints"]):
            report["notes"].append(f"{path} is of other checkpoints or weights: this report leaves out its "
                                   "probe scores (run probe.py with these checkpoints and --report_dir "
                                   "first)")
            prb = None
    if prb is not None and 0 < len(probed := prb.get("tasks", data.GLUE_TASKS)) < len(data.GLUE_TASKS):
        report["notes"].append(f"{path} probed {', '.join(probed)} alone (probe.py --tasks): the claims have "
                               "no probe-score rows for the other GLUE tasks")
    report["probe_json"] = path if prb is not None else None
    sources = {k: (report[k], report[f"{k}_diffs"]) for k in ("geometry", "lexical", "balance")}
    sources.update({"probe": (prb["scores"], prb["diffs"])} if prb is not None else {})
    report["claims"] = claims(sources, labels, {c["label"]: c["objective"] for c in report["checkpoints"]})


def write(report, labels, res, paths, cfg):
    """geometry.json, the plots and REPORT.md."""
    main_set = "stsb" if report["mode"] == "glue" else "corpus"
    spectra_main = {p: {label: res[label][p]["sets"][main_set][1] for label in labels}
                    for p in res[labels[0]] if main_set in res[labels[0]][p]["sets"]}
    curves = {label: data.log_curves(p, (*PANELS, "val_unigram")) for label, p in zip(labels, paths)}
    report["training"] = {label: {k: {"iter": its, "value": v} for k, (its, v) in c.items()}
                          for label, c in curves.items()}
    with probe.writing(cfg.report_dir):
        files = plots(report, labels, spectra_main, main_set, curves, cfg.report_dir)
        data.save_json(report, os.path.join(cfg.report_dir, "geometry.json"))
        lines = head_lines(report, labels, cfg)
        lines += claims_lines(report["claims"], files) if report["claims"] else []
        lines += figure_lines(report, labels, files, os.path.join(cfg.report_dir, "probe.md"))
        with open(os.path.join(cfg.report_dir, "REPORT.md"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines + training_lines(labels, curves)) + "\n")
    return files


def run(paths, cfg):
    t0 = time.time()
    pools = probe.check_args(paths, cfg, "eval_geometry.py")
    whole_number("n_sub", cfg.n_sub, probe.MIN_RESAMPLES, probe.RESAMPLES_WHY.format("half-samples"))
    if cfg.geom_n != 0:
        whole_number("geom_n", cfg.geom_n, MIN_SET, f" or 0 (5 x the width){MIN_WHY}")
    with probe.torch_threads(cfg.threads):
        proto = probe.Protocol(cfg.n_folds, cfg.seed, cfg.max_train, cfg.device)
        labels, embs = probe.embedders(paths, cfg.encoder, cfg.device, cfg.batch_size, cfg.random_init,
                                       cfg.seed, cfg.unfinished, cfg.cache_dir)
        try:
            tasks = probe.load_tasks(cfg.glue_dir, cfg.dataset)
        except MissingInput as e:  # the sets are every task's dev sentences: all five are needed here
            raise MissingInput(f"{e} (the geometry reads all five tasks; probe.py --tasks=... probes "
                               "fewer)") from None
        psets, gsets, set_idx, notes = setup(cfg, proto, pools, embs[0].config.n_embd, tasks)
        inputs = probe.probe_inputs(proto, probe.digest(psets, gsets, tasks, set_idx), GEOMETRY_CODE)
        def compute(emb, pool):
            return checkpoint_geometry(emb, pool, psets, gsets, set_idx, tasks, proto)
        res = probe.per_checkpoint(labels, embs, pools, "geometry", inputs, compute, "geometry")
        report = {"mode": "glue" if tasks is not None else "probing sets only",
                  "notes": notes + probe.checkpoint_notes(labels, embs, cfg.seed, cfg.random_init) + [
                      "multiple comparisons: q = Benjamini-Hochberg adjusted p over every difference between "
                      "checkpoints in this report (geometry, alignment, lexical, balance; the differences to "
                      "random-init are a family of their own); * marks q < 0.05"],
                  "checkpoints": [{**e.summary(label), **e.val} for label, e in zip(labels, embs)],
                  **summarise(res, labels, tasks, embs[0].tok, psets, set_idx, cfg)}
        judge(report, labels, cfg.report_dir)
        report["seconds"] = time.time() - t0
        files = write(report, labels, res, paths, cfg)
        table = score_table(report["geometry"], report["geometry_diffs"], labels, *SECTIONS["geometry"][1:3])
        print(f"GEOMETRY ({report['mode']})\n" + table)
        print(f"wrote {cfg.report_dir}/REPORT.md, geometry.json, {', '.join(files)} in "
              f"{clock(time.time() - t0)}", file=sys.stderr)
        return report


def run_training(paths, cfg):
    """--training_only: each run's training from its log.jsonl alone, no weights read (a run still going, or
    stopped by --stop_after, too): TRAINING.md and training.png in report_dir, the table on stdout."""
    if missing := [p for p in paths if not os.path.exists(p)]:
        raise InputError(f"no run at {', '.join(missing)}: name out_dirs (or their ckpt.pt)")
    labels = probe.run_labels(paths)
    curves = {label: data.log_curves(p, (*PANELS, "val_unigram")) for label, p in zip(labels, paths)}
    if not any("val_mlm" in c for c in curves.values()):
        raise InputError(f"no val losses in a log.jsonl beside {', '.join(paths)}: train.py writes them at "
                         "every eval_interval")
    probe.report_folder(cfg.report_dir, "eval_geometry.py")
    plt = probe.pyplot()
    head = [f"# Training of {', '.join(labels)}", "", *[f"- {label}: {p}" for label, p in zip(labels, paths)]]
    table = training_lines(labels, curves)
    with probe.writing(cfg.report_dir):
        figure = plot_training(plt, curves, probe.palette(labels), probe.legend_labels(labels))
        save_figures(plt, {"training.png": figure}, cfg.report_dir)
        with open(os.path.join(cfg.report_dir, "TRAINING.md"), "w", encoding="utf-8") as f:
            f.write("\n".join(head + table) + "\n")
    print("\n".join(table))
    print(f"wrote {cfg.report_dir}/TRAINING.md, training.png", file=sys.stderr)
    return curves


if __name__ == "__main__":
    paths = configurator.configure(globals(), sys.argv[1:])
    (run_training if training_only else run)(paths, SimpleNamespace(**configurator.settings(globals())))
