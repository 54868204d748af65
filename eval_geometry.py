"""
The geometry of sentence embeddings, several checkpoints side by side: uniformity and alignment,
anisotropy, the covariance spectrum, lexical probes and the semantic-to-lexical balance, each with a
bootstrap 95% CI and each difference against the first checkpoint with a paired test. Definitions:
../shared/docs/ANALYSIS.md. Writes REPORT.md, geometry.json and PNG plots to report_dir.

$ python probe.py out-hybrid-tiny out-mlm-tiny --glue_dir=../shared/data/glue         # first: the GLUE table
$ python eval_geometry.py out-hybrid-tiny out-mlm-tiny --glue_dir=../shared/data/glue

Statistics, probes and the (cached) embedding extraction are probe.py's; nothing is embedded twice.
"""

import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

import configurator
import data
import probe
from probe import bootstrap_ci, boot_indices, ci, diff_summary, markdown_table, paired_bootstrap, spearman

# -----------------------------------------------------------------------------
# settings (override with --key=value)
glue_dir = ""  # a folder in the standard GLUE layout; '' = the HF hub, else the corpus probing sets only
dataset = "embedded"  # the corpus whose held-out documents give the probing sentences
data_dir = "data"
encoder = "online"  # 'online' or 'target' (the EMA copy, hybrid only)
poolings = "mean,max,first,attention"
max_train = 10000  # as probe.py: the SST-2 probe of the probe gap and the attentive query are fitted on this many
n_folds = 5
n_boot = 1000
seed = 0
batch_size = 256
device = "cuda" if torch.cuda.is_available() else "cpu"
n_sub = 200  # half-samples (without replacement) per sentence set, for the set statistics' intervals and tests
geom_n = 0  # sentences per set for uniformity, anisotropy and the spectrum (a seeded sample); 0: 5 x the width
# (a d-dimensional spectrum needs several times d points), or the whole set where it has fewer, said in the notes
report_dir = "report"
report_note = ""  # a line put at the top of REPORT.md (e.g. what the checkpoints are and are not)
threads = 1  # torch CPU threads, as probe.py (0 = torch's default: all cores); the spectra use them all, one
# subsample per thread, so on a machine of its own pass --threads=0
random_init = True  # as probe.py: a randomly initialised encoder of the first checkpoint's config, last column
unfinished = False  # as probe.py: analyse checkpoints whose run stopped before its max_iters (refused otherwise)
# -----------------------------------------------------------------------------

SET_STATS = ["uniformity", "anisotropy", "eff_rank", "rankme", "stable_rank", "rank90", "spectral_entropy", "alpha"]

# -----------------------------------------------------------------------------
# statistics of a set of embeddings, for the data and for B subsamples at once. A subsample is a row of
# weights c (1 for each sentence drawn, else 0), so the n x n kernels are built once and every subsample is a
# weighted sum of them.
#
# Why subsamples and not the bootstrap: a with-replacement resample holds ~63% distinct sentences, and rank-type
# statistics (effective rank, RankMe, rank@90, α) count distinct directions, so every resample shifts them
# (synthetic n = 1000, d = 512: effective rank 376, bootstrap CI [337, 344]). Half-samples without replacement,
# m = n/2, are all the same kind of sample, so the statistic is reported at m (the mean over the subsamples) with
# the subsamples' percentile interval, which contains it. Their spread is about that of the statistic at n: the
# variance of a smooth statistic over m-of-n subsamples is (1 - m/n) / m = 1/n in units of one sentence's
# (Politis, Romano & Wolf 1999 on subsampling; m = n/2 is the half-sampling case).


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
    sq = (2 - 2 * Xn @ Xn.T).clamp(min=0)
    return torch.log(pair_mean(torch.exp(-t * sq), c))


def anisotropy(X, c=None):
    """Mean cosine over pairs of distinct sentences (Ethayarajh 2019)."""
    Xn = normalize(X.double())
    c = torch.ones(1, len(X), dtype=torch.float64) if c is None else c
    return pair_mean(Xn @ Xn.T, c)


def alignment(U, V):
    """Per pair ||x - y||^2 of L2-normalised positives (alpha = 2 on the distance; Wang & Isola 2020)."""
    return (normalize(U.double()) - normalize(V.double())).pow(2).sum(-1)


def map_threads(fn, items):
    """fn over items on torch's CPU threads, each call single-threaded. One 512 x 512 eigendecomposition gains
    little from threads inside it (LAPACK: 1.35x on 2 cores) and independent ones gain about linearly (1.9x);
    and each item's result is then the same bits whatever --threads is."""
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
    """ANALYSIS.md's spectrum figures from eigenvalues (B, r) and uncentred singular values (B, d)."""
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
# the sentence sets


def geometry_sets(tasks, sentences):
    """{set name: [(cache name, texts)]} for uniformity, anisotropy and the spectrum: each GLUE task's dev
    sentences (both sides of pairs) and the corpus' held-out sentences."""
    sets = {}
    if tasks is not None:
        for t in data.GLUE_TASKS:
            split = tasks[t]["dev_matched" if t == "mnli" else "dev"]
            dev = "mnli-dev_matched" if t == "mnli" else f"{t}-dev"
            sets[t] = [(f"{dev}-a", split["a"])] + ([(f"{dev}-b", split["b"])] if split["b"] else [])
    sets["corpus"] = [("probing-sentences", sentences)]
    return sets


def positive_pairs(tasks):
    """Real positives for alignment: STS-B pairs with gold >= 4 (as SimCSE), MRPC paraphrases, MNLI entailments."""
    out = {"stsb": ("stsb-dev", tasks["stsb"]["dev"], tasks["stsb"]["dev"]["y"] >= 4),
           "mrpc": ("mrpc-dev", tasks["mrpc"]["dev"], tasks["mrpc"]["dev"]["y"] == 1)}
    for s in ("dev_matched", "dev_mismatched"):
        out[f"mnli-{s}"] = (f"mnli-{s}", tasks["mnli"][s], tasks["mnli"][s]["y"] == data.MNLI_LABELS["entailment"])
    return out


def checkpoint_geometry(emb, pooling, psets, gsets, set_idx, tasks, attn_geom):
    """One checkpoint's figures under one pooling: the lexical probes, the SST-2 probe (for the probe gap), every
    set statistic with its half-samples and the full spectrum, alignment of the positive pairs, STS-B cosines."""
    out = {"lexical": {name: probe.run_cv_eval(emb, name, s, pooling, n_folds) for name, s in psets.items()},
           "sets": {}, "align": {}}
    if pooling == "attention" and not attn_geom:
        return out
    if tasks is not None:
        keep = {}
        sst2_ev = probe.glue_evals({**tasks}, max_train, seed)[0][0]
        out["sem"] = probe.run_glue_eval(emb, sst2_ev, pooling, keep)["sst2"]

    def vecs(name, texts):
        f = emb(name, texts)
        if pooling != "attention":
            return f[pooling].float()
        return probe.attentive_apply(*keep["sst2"], (f, None), pooled=True).float()
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
GEOMETRY_CODE = probe.snapshot((checkpoint_geometry, set_geometry, set_stats, spectra, map_threads, spectral_stats,
                                entropy_rank, uniformity, anisotropy, pair_mean, counts_of, normalize, alignment,
                                positive_pairs))


# -----------------------------------------------------------------------------
# the report


def log_records(path):
    log = os.path.join(path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path)), "log.jsonl")
    return data.read_log(log) if os.path.exists(log) else []


def last_val(path):
    """The last val MLM loss of a run's log.jsonl and the unigram line beside it (what learning nothing scores)."""
    val = [r for r in log_records(path) if "val_mlm" in r]
    return {"val_mlm": val[-1]["val_mlm"], "val_unigram": val[-1].get("val_unigram")} if val else {}


def lambda_curve(path):
    """(iters, lambdas) of a hybrid run's log.jsonl, or None (an MLM run, or no log)."""
    records = [r for r in log_records(path) if "lambda" in r and "iter" in r]
    return ([r["iter"] for r in records], [r["lambda"] for r in records]) if records else None


def plots(report, labels, spectra_main, main_set, curves):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(os.path.join(report_dir, name), dpi=80, bbox_inches="tight")  # keeps a legend outside the axes
        plt.close(fig)
        files.append(name)
    pools = list(spectra_main)
    colors = probe.palette(labels)
    fig, axes = plt.subplots(1, len(pools), figsize=(3 * len(pools), 3), squeeze=False)
    for ax, pool in zip(axes[0], pools):
        for label in labels:
            lam = spectra_main[pool][label]
            ax.loglog(np.arange(1, len(lam) + 1), np.maximum(lam, 1e-12), label=label, color=colors[label])
        ax.set_title(f"{pool} ({main_set})", fontsize=9)
        ax.set_xlabel("index i", fontsize=8)
    axes[0, 0].set_ylabel("eigenvalue of the covariance", fontsize=8)
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: 13 curves fill a panel
    save(fig, "spectra.png")
    ua = [(s, a) for s in report["geometry"] if s["set"] == "stsb" and s["stat"] == "uniformity"
          for a in report["alignment"] if a["pairs"] == "stsb" and (a["pooling"], a["ckpt"]) == (s["pooling"], s["ckpt"])]
    if ua:
        from matplotlib.lines import Line2D
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        markers = dict(zip(pools, "osD^v"))
        for s, a in ua:
            # a percentile CI need not contain the estimate (resampled pairs include duplicates): clip the bars
            ax.errorbar(s["score"], a["score"], xerr=[[max(0, s["score"] - s["lo"])], [max(0, s["hi"] - s["score"])]],
                        yerr=[[max(0, a["score"] - a["lo"])], [max(0, a["hi"] - a["score"])]], fmt=markers[s["pooling"]],
                        color=colors[s["ckpt"]], capsize=2)
        ax.set_xlabel("uniformity (STS-B dev sentences), lower = more uniform", fontsize=8)
        ax.set_ylabel("alignment (STS-B pairs, gold >= 4), lower = better", fontsize=8)
        # colour = checkpoint, marker = pooling: one legend entry each, not one per point
        shown = list(dict.fromkeys(s["ckpt"] for s, _ in ua))
        handles = [Line2D([], [], color=colors[c], marker="o", ls="", label=c) for c in shown]
        handles += [Line2D([], [], color="gray", marker=markers[p], ls="", label=f"{p} pooling") for p in pools]
        ax.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1))
        save(fig, "uniformity_alignment.png")
    probe.plot_scores(report["lexical"], labels, os.path.join(report_dir, "lexical_probes.png"))
    files.append("lexical_probes.png")
    if curves:
        fig, ax = plt.subplots(figsize=(5, 3))
        for label, (its, lams) in curves.items():
            ax.plot(its, lams, label=label)
        ax.set_xlabel("iteration", fontsize=8)
        ax.set_ylabel("λ = w_jepa / (w_mlm + w_jepa)", fontsize=8)
        ax.legend(fontsize=7)
        save(fig, "lambda.png")
    return files


# -----------------------------------------------------------------------------
# the paper's claims, checked: the hybrid against the MLM baseline, over training seeds where there are several

EQUIVALENCE = 2.0  # "about the same" probe score: the difference's 95% CI inside ±2 points (x100). The official
# README's hybrid - MLM gaps are -1.1 (SST-2), -0.6 (MNLI), +3.3 (MRPC F1), -0.2 (STS-B ρ): the paper calls those equal


def claim_specs(pools, main_set):
    """(claim, source, key, direction, format): direction -1 = the hybrid lower, +1 = higher, 0 = within ±EQUIVALENCE."""
    specs = [("1. more uniform (paper: hybrid < -0.16, MLM -0.05)", "geometry",
              {"set": main_set, "pooling": p, "stat": "uniformity"}, -1, "{:.3f}") for p in pools]
    specs += [("2. richer spectrum under max pooling", "geometry", {"set": main_set, "pooling": "max", "stat": s}, d,
               "{:.3f}") for s, d in (("eff_rank", 1), ("rankme", 1), ("alpha", -1)) if "max" in pools]
    specs += [("3a. less surface lexical information (most-frequent-token probe)", "lexical",
               {"eval": "mft", "metric": "acc", "pooling": p}, -1, "{:.1f}") for p in pools]
    specs += [("3b. better semantic-to-lexical balance (probe gap)", "balance", {"figure": "gap", "pooling": p}, 1,
               "{:.1f}") for p in pools]
    specs += [("3b. better semantic-to-lexical balance (ρ_sem − ρ_lex, STS-B)", "balance",
               {"figure": "rho_sem-rho_lex", "pooling": p}, 1, "{:.1f}") for p in pools]
    specs += [("4. about the same linear-probe scores", "probe", {"eval": e, "metric": m, "pooling": p}, 0, "{:.1f}")
              for e, m in (("sst2", "acc"), ("mrpc", "f1"), ("mnli-m", "acc"), ("cola", "mcc"), ("stsb", "spearman"))
              for p in pools]
    return specs


def verdict(direction, diff, lo, hi, p, n):
    """holds / does not hold / inconclusive, and why, from the difference over n seeds (its CI and p)."""
    if n < 3:
        return "inconclusive", f"{n} seed{'s' if n != 1 else ''}: the verdict needs ≥ 3 (within-seed tests beside)"
    if direction == 0:
        if -EQUIVALENCE < lo and hi < EQUIVALENCE:
            return "holds", f"the CI lies inside ±{EQUIVALENCE:g}"
        if lo >= EQUIVALENCE or hi <= -EQUIVALENCE:
            return "does not hold", f"the CI lies outside ±{EQUIVALENCE:g}"
        return "inconclusive", f"the CI crosses ±{EQUIVALENCE:g}"
    if p >= 0.05:
        return "inconclusive", f"no difference over seeds (p {p:.2f})"
    return ("holds", f"p {p:.3f}") if diff * direction > 0 else ("does not hold", f"the opposite, p {p:.3f}")


def claims(sources, labels, objectives):
    """One row per claim figure, hybrid group and MLM group (the first MLM group is the reference; a later one, e.g.
    FLOP-matched, gets its own rows): each group's mean ± sd over seeds, the difference over seeds (paired t, 95%
    CI), each seed's own paired difference with its q where the report computed it, and the verdict.
    sources: {name: (scores, diffs)}; objectives: {label: 'mlm' | 'hybrid' | ...}."""
    groups = probe.run_groups(labels)  # random-init's objective is 'none': neither side
    mlms = [g for g, ls in groups.items() if objectives[ls[0]] == "mlm"]
    hybrids = [g for g, ls in groups.items() if objectives[ls[0]] == "hybrid"]
    pools = list(dict.fromkeys(s["pooling"] for s in sources["geometry"][0]))
    main_set = "stsb" if any(s.get("set") == "stsb" for s in sources["geometry"][0]) else "corpus"
    rows = []
    for mlm, hyb in ((m, h) for m in mlms for h in hybrids):
        for claim, src, key, direction, fmt in claim_specs(pools, main_set):
            if src not in sources:
                continue
            scores, diffs = sources[src]
            match = lambda r: all(r.get(k) == v for k, v in key.items())  # noqa: E731
            by = {s["ckpt"]: s["score"] for s in scores if match(s)}
            h = {probe.seed_of(l): by[l] for l in groups[hyb] if l in by}
            m = {probe.seed_of(l): by[l] for l in groups[mlm] if l in by}
            shared = [s for s in h if s in m]
            if not shared:
                continue
            within = []
            for s in shared:
                a = next(l for l in groups[hyb] if probe.seed_of(l) == s)
                b = next(l for l in groups[mlm] if probe.seed_of(l) == s)
                d = next((d for d in diffs if match(d) and (d["a"], d["b"]) in ((a, b), (b, a))), None)
                if d is not None:
                    sign = 1 if d["a"] == a else -1
                    lo, hi = sorted((sign * d["lo"], sign * d["hi"]))
                    within.append(f"{fmt.replace('{:', '{:+').format(sign * d['diff'])} [{fmt.format(lo)}, "
                                  f"{fmt.format(hi)}]" + (f" q={d['q']:.3f}" if "q" in d else ""))
            if len(shared) >= 3:
                diff, t, df, p = probe.paired_t([h[s] for s in shared], [m[s] for s in shared])
                lo, hi = probe.t_interval(diff, t, df)
            else:
                diff, lo, hi, p = float(np.mean([h[s] - m[s] for s in shared])), None, None, None  # no CI from < 3
            v, why = verdict(direction, diff, lo, hi, p, len(shared))
            stat = lambda vals: (fmt.format(np.mean(vals)) + (f" ± {fmt.format(np.std(vals, ddof=1))}"  # noqa: E731
                                                               if len(vals) > 1 else "") + f" ({len(vals)})")
            rows.append({"hybrid": hyb, "mlm": mlm, "claim": claim, "figure": " ".join(map(str, key.values())),
                         "direction": direction, "hybrid_seeds": h, "mlm_seeds": m, "diff": diff, "lo": lo, "hi": hi,
                         "p": p, "n_seeds": len(shared), "within": within, "verdict": v, "why": why,
                         "text": [stat(list(h.values())), stat(list(m.values())),
                                  fmt.replace("{:", "{:+").format(diff) + (f" [{fmt.format(lo)}, {fmt.format(hi)}], "
                                                                           f"p={p:.3f}" if len(shared) >= 3 else "")]})
    return rows


def claims_table(rows):
    """Markdown of claims(): one table per hybrid and MLM group, and a tally per claim."""
    L = []
    for mlm, hyb in dict.fromkeys((r["mlm"], r["hybrid"]) for r in rows):
        mine = [r for r in rows if (r["mlm"], r["hybrid"]) == (mlm, hyb)]
        L += [f"**{hyb}** against **{mlm}**", "",
              f"| claim | figure | {hyb} mean ± sd (seeds) | {mlm} | difference over seeds [95% CI], p | "
              "within each seed: difference [95% CI] q | verdict | why |", "|---|---|---|---|---|---|---|---|"]
        L += [f"| {r['claim']} | {r['figure']} | {' | '.join(r['text'])} | {'; '.join(r['within']) or 'n/a'} | "
              f"**{r['verdict']}** | {r['why']} |" for r in mine]
        L += ["", "| claim | holds | does not hold | inconclusive |", "|---|---|---|---|"]
        for claim in dict.fromkeys(r["claim"] for r in mine):
            v = [r["verdict"] for r in mine if r["claim"] == claim]
            L.append(f"| {claim} | {v.count('holds')} | {v.count('does not hold')} | {v.count('inconclusive')} |")
        L.append("")
    return "\n".join(L)


# the official code's README (github aymen-000/predict-reconstruct-language-models): hybrid, MLM; its pooling and
# probe protocol are its own (and two of its four poolings are never trained), so these are for scale only
OFFICIAL = {("sst2", "acc"): (67.6, 68.7), ("mrpc", "f1"): (63.1, 59.8), ("mnli-m", "acc"): (50.8, 51.4),
            ("stsb", "spearman"): (28.1, 28.3)}


def official_rows(scores, labels):
    """The official README's probe scores beside each group's (mean pooling; mean ± sd over seeds)."""
    groups = probe.run_groups(labels)
    rows = []
    for (ev, metric), (hyb, mlm) in OFFICIAL.items():
        for e in ([ev, "stsb-cos"] if ev == "stsb" else [ev]):
            ours = {}
            for g, ls in groups.items():
                v = [s["score"] for s in scores if (s["eval"], s["metric"], s["pooling"]) == (e, metric, "mean")
                     and s["ckpt"] in ls]
                if v:
                    ours[g] = (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))
            rows.append({"eval": e, "metric": metric, "official_hybrid": hyb, "official_mlm": mlm, "ours": ours})
    return rows


def write_report(report, labels, files, curves):
    L = [f"# Embedding geometry report ({report['mode']})", ""]
    if report_note:
        L += [report_note, ""]
    L += ["| checkpoint | objective | iter | encoder | val MLM (unigram line) | path |", "|---|---|---|---|---|---|"]
    val = lambda c: (f"{c['val_mlm']:.3f} ({c['val_unigram']:.3f})" if c.get("val_unigram") else  # noqa: E731
                     f"{c['val_mlm']:.3f}" if "val_mlm" in c else "n/a")
    its = lambda c: (f"{c['iter_num']}" if c["finished"] else  # noqa: E731
                     f"{c['iter_num']} of {c['max_iters']} (unfinished)")
    L += [f"| {c['label']} | {c['objective']} | {its(c)} | {c['encoder']} | {val(c)} | {c['path']} |"
          for c in report["checkpoints"]]
    L += ["", f"Every figure: estimate [95% interval]: a bootstrap over examples (B={n_boot}, seed {seed}), except the "
          f"set statistics (uniformity, anisotropy, spectrum: {n_sub} half-samples, see their section); differences "
          f"against {labels[0]} (checkpoints named <group>-s<seed>: against the first of their seed) resample the "
          "same examples for both checkpoints, with a two-sided p and a BH q.", ""]
    L += [f"- {n}" for n in report["notes"]]
    if report["claims"]:
        L += ["", "## The paper's claims, checked", "",
              "Each hybrid group against each MLM group on the figures the claims name (STS-B dev sentences for the "
              "set statistics). Verdicts need ≥ 3 seeds both groups share: a claimed direction holds when the paired "
              "t over seeds gives p < 0.05 that way, does not hold when it gives p < 0.05 the other way, and is "
              f"inconclusive otherwise; 'about the same' holds when the difference's 95% CI lies inside ±{EQUIVALENCE:g} "
              "points and does not hold when it lies outside. Each claim row is tested alone (they are the paper's, "
              "stated in advance); the within-seed intervals are this report's (paired over examples, BH q), taken "
              "against the first checkpoint of each seed, so a second MLM group has none.", "",
              claims_table(report["claims"])]
    if report["official"]:
        groups = list(dict.fromkeys(g for r in report["official"] for g in r["ours"]))
        L += ["", "The official code's README numbers (hybrid / MLM; its own pooling and probes) beside ours "
              "(mean pooling; mean ± sd over seeds), for scale:", "",
              "| eval | metric | official hybrid | official MLM | " + " | ".join(groups) + " |",
              "|" + "---|" * (4 + len(groups))]
        for r in report["official"]:
            L.append(f"| {r['eval']} | {r['metric']} | {r['official_hybrid']:.1f} | {r['official_mlm']:.1f} | " +
                     " | ".join(f"{m:.1f} ± {s:.1f} ({n})" if n > 1 else f"{m:.1f} (1)" if n else "n/a" for m, s, n in
                                (r["ours"].get(g, (0, 0, 0)) for g in groups)) + " |")
    probe_md = os.path.join(report_dir, "probe.md")
    L += ["", "## GLUE / probing-set probes (probe.py)", ""]
    if os.path.exists(probe_md):
        with open(probe_md) as f:
            L += [f.read().strip(), "", "![probe scores](probe_scores.png)"]
    else:
        L += [f"(no {probe_md}: run probe.py with the same checkpoints and --report_dir first)"]
    L += ["", "## Geometry of the sentence sets",
          "", f"uniformity: log E exp(-2||x-y||²) (0 = collapsed, about -4 = uniform); anisotropy: mean cosine; "
          "spectrum of the centred covariance: effective rank, RankMe (uncentred), stable rank, rank@90% variance, "
          "normalised spectral entropy, power-law exponent α (fit over 2 ≤ i ≤ r/2). "
          f"Each set is a seeded sample of {'at most ' + str(geom_n) if geom_n else '5·d (or all)'} sentences "
          "(n in geometry.json); L2-normalised embeddings for uniformity and anisotropy, raw ones for the spectrum. "
          f"Every figure here is the statistic at m = n/2: its mean over {n_sub} half-samples drawn without "
          "replacement, with their 95% percentile interval; differences use the same half-samples for both "
          "checkpoints (the bootstrap is invalid for rank-type statistics; the value on all n is `at_n` in "
          "geometry.json).", ""]
    L += [markdown_table(report["geometry"], report["geometry_diffs"], labels, ("set", "pooling", "stat"), "{:.3f}")]
    L += ["", "![spectra](spectra.png)", ""]
    L += ["## Alignment of real positive pairs", ""]
    if report["alignment"]:
        L += ["E‖x̂−ŷ‖² over positives (0 = identical embeddings).", ""]
        L += [markdown_table(report["alignment"], report["alignment_diffs"], labels, ("pairs", "pooling"), "{:.3f}")]
        if "uniformity_alignment.png" in files:
            L += ["", "![uniformity-alignment plane](uniformity_alignment.png)"]
    else:
        L += ["n/a: no GLUE, so no labelled positive pairs."]
    L += ["", "## Lexical information (probing sets, k-fold CV accuracy x100)", "",
          "mft = the paper's probe (each sentence's most frequent non-special token); sentlen, wordcontent, "
          "bshift as SentEval. Majority-class rates: " + ", ".join(f"{k} {v:.1f}" for k, v in report["majority"].items()),
          "", markdown_table(report["lexical"], report["lexical_diffs"], labels,
                             baselines={(k, "acc"): {"score": v} for k, v in report["majority"].items()}),
          "", "![lexical probes](lexical_probes.png)"]
    L += ["", "## Semantic-to-lexical balance", ""]
    if report["balance"]:
        L += ["gap = SST-2 dev accuracy of the probe − most-frequent-token probe accuracy (x100; the paper's gap). "
              "On STS-B dev: ρ_sem = Spearman(cos, gold), ρ_lex = Spearman(cos, Jaccard of the token sets), and "
              f"ρ_sem − ρ_lex (x100). For reference, Spearman(Jaccard, gold) = {report['jaccard_gold']:.1f}. "
              "Baseline: the gap of an encoder with no information (the majority class on both probes; its ρ are 0), "
              "and the ρ of the bag-of-tokens cosine (surface overlap alone).", ""]
        L += [markdown_table(report["balance"], report["balance_diffs"], labels, ("figure", "pooling"),
                             baselines={(k,): v for k, v in report["balance_baselines"].items()})]
    else:
        L += ["n/a: needs GLUE (SST-2 for the gap, STS-B for the Spearman pair)."]
    seeds = report.get("across_seeds", {})
    tables = {name: probe.seed_table(seeds[name], keys, fmt) for name, keys, fmt in
              (("geometry", ("set", "pooling", "stat"), "{:.3f}"), ("lexical", ("eval", "metric", "pooling"), "{:.1f}"),
               ("balance", ("figure", "pooling"), "{:.1f}")) if name in seeds}
    if any(tables.values()):
        L += ["", "## Across training seeds", "", "Checkpoints named <group>-s<seed>: mean ± sd over the seeds, and "
              "each group against the first over seeds (paired t over the seeds both have where they share ≥ 3, else "
              "Welch's t), with the difference's 95% CI.", ""]
        for name, table in tables.items():
            if table:
                L += [f"### {name}", "", table, ""]
    L += ["", "## λ over training (JEPA weight, from log.jsonl)", ""]
    if curves:
        L += ["| checkpoint | first logged | last logged | min | max |", "|---|---|---|---|---|"]
        for label, (its, lams) in curves.items():
            L.append(f"| {label} | {lams[0]:.3f} (iter {its[0]}) | {lams[-1]:.3f} (iter {its[-1]}) | "
                     f"{min(lams):.3f} | {max(lams):.3f} |")
        L += ["", "![lambda](lambda.png)"]
    L += [f"- {label}: no λ in log.jsonl (an MLM run, or no log)" for label in labels if label not in curves]
    with open(os.path.join(report_dir, "REPORT.md"), "w") as f:
        f.write("\n".join(L) + "\n")


# -----------------------------------------------------------------------------


def run(paths):
    if not paths:
        raise SystemExit("error: name at least one checkpoint: python eval_geometry.py out-hybrid-tiny out-mlm-tiny")
    pools = [p.strip() for p in poolings.split(",") if p.strip()]
    if not pools or any(p not in probe.POOLINGS for p in pools):
        raise SystemExit(f"error: --poolings={poolings}: use a comma-separated subset of {','.join(probe.POOLINGS)}")
    if threads > 0:
        torch.set_num_threads(threads)
    for k in ("dataset", "data_dir", "max_train", "n_folds", "seed", "device"):  # probe.py's helpers read its globals
        setattr(probe, k, globals()[k])
    t0 = time.time()
    labels, embs = probe.embedders(paths, encoder, device, batch_size, random_init, seed, unfinished)
    tasks = probe.glue_or_probing(glue_dir, dataset, data_dir)
    sentences = data.corpus_sentences(dataset, data_dir)
    psets, notes = data.probing_sets(sentences)
    notes += probe.unfinished_notes(labels, embs)
    notes.append(f"probing sets from the held-out documents of '{dataset}': " +
                 ", ".join(f"{k} {len(v['a']):,}" for k, v in psets.items()) + " sentences")
    notes.append(f"lexical probes: {n_folds}-fold CV accuracy; the L2 strength is picked by the same CV (not nested)")
    gsets = geometry_sets(tasks, sentences)
    mode = "glue" if tasks is not None else "probing sets only"
    if tasks is None:
        notes.append("no GLUE: alignment, the probe gap and the STS-B balance need labelled pairs and are n/a")
    attn_geom = "attention" in pools and tasks is not None
    if "attention" in pools:
        notes.append("attention pooling: geometry, alignment and STS-B cosines use the attention weights of the "
                     "attentive probe trained on SST-2 over the raw token states (there is no parameter-free "
                     "attention pooling)" if attn_geom else
                     "attention pooling: no geometry without GLUE (its query is trained on SST-2); lexical probes only")

    report = {"mode": mode, "notes": notes, "geometry": [], "geometry_diffs": [], "alignment": [],
              "alignment_diffs": [], "lexical": [], "lexical_diffs": [], "balance": [], "balance_diffs": [],
              "checkpoints": [{**e.summary(l), **(last_val(e.path) if l != probe.RANDOM else {})}
                              for l, e in zip(labels, embs)]}
    y_major = {k: 100 * np.bincount(v["y"]).max() / len(v["y"]) for k, v in psets.items()}
    report["majority"] = y_major
    if random_init:
        notes.append(probe.random_init_note(seed))
    sem, lex = {}, {}  # per (label, pooling): SST-2 dev (gold, pred) and the mft CV (gold, pred)
    geo, spec_main, align, sts = {}, {}, {}, {}
    main_set = "stsb" if tasks is not None else "corpus"
    d = embs[0].config.n_embd
    set_idx = {}  # one seeded sample and one set of half-samples per sentence set, shared by all checkpoints
    for sname, parts in gsets.items():
        n = sum(len(t) for _, t in parts)
        pick = np.sort(np.random.default_rng(seed).permutation(n)[:geom_n or 5 * d])  # the notes say where fewer
        set_idx[sname] = (pick, half_samples(len(pick), n_sub, seed))
    data_key = probe.digest(psets, gsets, tasks, set_idx)
    res = {}
    for label, emb in probe.stripped_first(labels, embs):
        for pooling in pools:
            print(f"geometry {label} / {pooling}", file=sys.stderr)
            res[label, pooling] = emb.results(
                f"geometry-{pooling}", probe.probe_inputs(pooling, data_key, attn_geom, GEOMETRY_CODE),
                lambda: checkpoint_geometry(emb, pooling, psets, gsets, set_idx, tasks, attn_geom))
    lexical_results = {label: {} for label in labels}
    for label in labels:
        for pooling in pools:
            r = res[label, pooling]
            lexical_results[label][pooling] = r["lexical"]
            lex[label, pooling] = r["lexical"]["mft"]
            for sname, (stats, lam) in r["sets"].items():
                geo[label, pooling, sname] = stats
                if sname == main_set:
                    spec_main.setdefault(pooling, {})[label] = lam
            for pname, v in r["align"].items():
                align[label, pooling, pname] = v
            if "sem" in r:
                sem[label, pooling], sts[label, pooling] = r["sem"], r["sts"]

    # set statistics at m = n/2: interval from the half-samples, paired differences from the same half-samples
    for (label, pooling, sname), stats in geo.items():
        for stat, (est, reps, at_n) in stats.items():
            n = len(set_idx[sname][0])
            report["geometry"].append({"set": sname, "pooling": pooling, "stat": stat, "ckpt": label,
                                       "score": est, "lo": ci(reps)[0], "hi": ci(reps)[1], "n": n, "m": n // 2,
                                       "at_n": at_n})
            ref = probe.reference(label, labels)
            if label != labels[0] and (ref, pooling, sname) in geo:
                e0, r0, _ = geo[ref, pooling, sname][stat]
                report["geometry_diffs"].append({"set": sname, "pooling": pooling, "stat": stat, "a": label,
                                                 "b": ref, **diff_summary(est - e0, reps - r0)})
    mean = lambda v: v.mean(-1)  # noqa: E731
    for (label, pooling, pname), v in align.items():
        est, lo, hi = bootstrap_ci(mean, v, n_boot=n_boot, seed=seed)
        report["alignment"].append({"pairs": pname, "pooling": pooling, "ckpt": label, "score": est, "lo": lo,
                                    "hi": hi, "n": len(v)})
        if label != labels[0]:
            ref = probe.reference(label, labels)
            report["alignment_diffs"].append({"pairs": pname, "pooling": pooling, "a": label, "b": ref,
                                              **paired_bootstrap(mean, (v,), (align[ref, pooling, pname],),
                                                                 n_boot, seed)})
    report["lexical"], report["lexical_diffs"] = probe.score_all(lexical_results, labels, n_boot, seed)

    if tasks is not None:
        # the probe gap: SST-2 dev and the mft probe are different examples, resampled independently
        tok = embs[0].tok  # the checkpoints' vocabulary
        dev = tasks["stsb"]["dev"]
        jac = np.array([jaccard(a, b) for a, b in zip(tok.encode_batch(dev["a"]), tok.encode_batch(dev["b"]))])
        gold = dev["y"].astype(np.float64)
        report["jaccard_gold"] = 100 * float(spearman(jac, gold))
        # what the balance figures are without a model: an encoder that carries no information scores the
        # majority class on both probes (its gap) and a constant cosine (ρ 0); a purely lexical one, the cosine
        # of bag-of-tokens counts, sets the balance of surface overlap alone
        sst2_dev = tasks["sst2"]["dev"]["y"]
        bot = probe.bag_of_tokens_cosine(dev["a"], dev["b"], tok)
        rs, rl = spearman(bot, gold), spearman(bot, jac)
        sst2_major = 100 * probe.accuracy(sst2_dev, probe.constant_prediction(tasks["sst2"]["train"]["y"], sst2_dev))
        report["balance_baselines"] = {
            "gap": {"score": sst2_major - y_major["mft"], "what": "no information: majority classes"},
            "rho_sem": {"score": 100 * float(rs), "what": "bag-of-tokens cosine"},
            "rho_lex": {"score": 100 * float(rl), "what": "bag-of-tokens cosine"},
            "rho_sem-rho_lex": {"score": 100 * float(rs - rl), "what": "bag-of-tokens cosine"}}
        i_sem = boot_indices(len(next(iter(sem.values()))["y"]), n_boot, seed)
        i_lex = boot_indices(len(next(iter(lex.values()))["y"]), n_boot, seed + 1)
        i_sts = boot_indices(len(gold), n_boot, seed)
        reps = {}
        for (label, pooling), s in sem.items():
            m = lex[label, pooling]
            gap = probe.accuracy(s["y"], s["p"]) - probe.accuracy(m["y"], m["p"])
            gap_r = probe.accuracy(s["y"][i_sem], s["p"][i_sem]) - probe.accuracy(m["y"][i_lex], m["p"][i_lex])
            c = sts[label, pooling]
            rs, rl = spearman(c, gold), spearman(c, jac)
            rs_r, rl_r = spearman(c[i_sts], gold[i_sts]), spearman(c[i_sts], jac[i_sts])
            reps[label, pooling] = {"gap": (gap, gap_r), "rho_sem": (rs, rs_r), "rho_lex": (rl, rl_r),
                                    "rho_sem-rho_lex": (rs - rl, rs_r - rl_r)}
        for (label, pooling), figs in reps.items():
            for fig, (est, r) in figs.items():
                report["balance"].append({"figure": fig, "pooling": pooling, "ckpt": label, "score": 100 * float(est),
                                          "lo": 100 * ci(r)[0], "hi": 100 * ci(r)[1]})
                if label != labels[0]:
                    ref = probe.reference(label, labels)
                    e0, r0 = reps[ref, pooling][fig]
                    diff = diff_summary(100 * (est - e0), 100 * (r - r0))
                    report["balance_diffs"].append({"figure": fig, "pooling": pooling, "a": label, "b": ref, **diff})
    probe.control_fdr(report["geometry_diffs"] + report["alignment_diffs"] + report["lexical_diffs"]
                      + report["balance_diffs"])
    notes.append("multiple comparisons: q = Benjamini-Hochberg adjusted p over every difference between checkpoints "
                 "in this report (geometry, alignment, lexical, balance; the differences to random-init are a family "
                 "of their own); * marks q < 0.05")
    report["across_seeds"] = {"geometry": probe.across_seeds(report["geometry"], labels, ("set", "pooling", "stat")),
                              "lexical": probe.across_seeds(report["lexical"], labels),
                              "balance": probe.across_seeds(report["balance"], labels, ("figure", "pooling"))}
    probe_json = os.path.join(report_dir, "probe.json")
    prb = None
    if os.path.exists(probe_json):
        with open(probe_json) as f:
            prb = json.load(f)
    if prb is not None and [c["label"] for c in prb["checkpoints"]] != labels:
        notes.append(f"{probe_json} holds other checkpoints: the claims leave out the GLUE probe scores")
        prb = None
    sources = {"geometry": (report["geometry"], report["geometry_diffs"]),
               "lexical": (report["lexical"], report["lexical_diffs"]),
               "balance": (report["balance"], report["balance_diffs"])}
    if prb is not None:
        sources["probe"] = (prb["scores"], prb["diffs"])
    report["claims"] = claims(sources, labels, {c["label"]: c["objective"] for c in report["checkpoints"]})
    report["official"] = official_rows(prb["scores"], labels) if prb is not None else []
    n_d = [(s, len(set_idx[s][0])) for s in set_idx]
    thin = [s for s, n in n_d if n < 5 * d]
    if thin:
        notes.append(f"spectrum: n < 5d for {', '.join(thin)} (d = {d}); the smaller eigenvalues are poorly estimated")

    curves = {label: c for label, p in zip(labels, paths) if (c := lambda_curve(p))}
    os.makedirs(report_dir, exist_ok=True)
    files = plots(report, labels, spec_main, main_set, curves)
    report["lambda"] = {label: {"iter": its, "lambda": lams} for label, (its, lams) in curves.items()}
    report["seconds"] = time.time() - t0
    data.save_json(report, os.path.join(report_dir, "geometry.json"))
    write_report(report, labels, files, curves)
    print(f"GEOMETRY ({mode})\n" + markdown_table(report["geometry"], report["geometry_diffs"], labels,
                                                  ("set", "pooling", "stat"), "{:.3f}"))
    print(f"wrote {report_dir}/REPORT.md, geometry.json, {', '.join(files)} in {time.time() - t0:.0f}s", file=sys.stderr)
    return report


if __name__ == "__main__":
    run(configurator.configure(globals(), sys.argv[1:]))
