"""eval_geometry.py: geometry statistics against closed-form values, subsampled statistics, the claims'
verdicts, the CLI."""

import collections
import json
import math
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats as sps
import torch

from conftest import ROOT, read_json
from test_probe import run_cli
import configurator
import data
import eval_geometry as eg
import probe
import stats


def sphere(n, d, seed=0):
    return eg.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))


def test_uniformity_random_sphere_and_collapsed():
    d = 256
    # ||x - y||^2 = 2 - 2cos with cos ~ N(0, 1/d): E exp(-2(2 - 2cos)) = exp(-4 + 8/d) to first order
    assert eg.uniformity(sphere(800, d)).item() == pytest.approx(-4 + 8 / d, abs=0.03)
    collapsed = torch.ones(50, d)
    assert eg.uniformity(collapsed).item() == pytest.approx(0.0, abs=1e-9)
    assert eg.anisotropy(collapsed).item() == pytest.approx(1.0)
    assert abs(eg.anisotropy(sphere(800, d)).item()) < 0.01


def test_alignment_of_identical_pairs_is_zero():
    X = torch.randn(20, 8)
    assert eg.alignment(X, 3 * X).abs().max().item() < 1e-12  # scale-free: embeddings are L2-normalised
    assert eg.alignment(X, -X).mean().item() == pytest.approx(4.0)


def test_positive_pairs_are_sts_b_from_gold_4_mrpc_paraphrases_and_mnli_entailments():
    mnli = np.array([data.MNLI_LABELS[k] for k in ("entailment", "neutral", "contradiction")])
    tasks = {"stsb": {"dev": {"y": np.array([2.5, 3.9, 4.0, 5.0])}},
             "mrpc": {"dev": {"y": np.array([1, 0, 1])}},
             "mnli": {s: {"y": mnli} for s in ("dev_matched", "dev_mismatched")}}
    pos = {name: mask.tolist() for name, (_, _, mask) in eg.positive_pairs(tasks).items()}
    assert pos == {"stsb": [False, False, True, True], "mrpc": [True, False, True],
                   "mnli-dev_matched": [True, False, False], "mnli-dev_mismatched": [True, False, False]}


def test_every_checkpoints_alignment_is_resampled_on_the_same_pairs():
    """Alignment is the mean over the positive pairs, and its intervals are paired like every other figure's:
    the same alignments give the same replicates, so the difference of two such checkpoints is 0 on every
    resample."""
    v = np.random.default_rng(0).random(50) ** 3  # skewed: its mean and median are far apart
    figs = eg.alignment_figures({c: {"mean": {"align": {"stsb": v}}} for c in ("a", "b")}, n_boot=100, seed=0)
    np.testing.assert_array_equal(figs["a", "stsb", "mean"][1], figs["b", "stsb", "mean"][1])
    assert figs["a", "stsb", "mean"][0] == pytest.approx(v.mean())


def known_spectrum(sigma, n=400, seed=0):
    """A centred n x d matrix whose singular values are exactly sigma."""
    d = len(sigma)
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, d, generator=g, dtype=torch.float64)
    U, _ = torch.linalg.qr(A - A.mean(0))  # orthonormal columns, each orthogonal to the ones vector
    V, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return U @ torch.diag(torch.as_tensor(sigma, dtype=torch.float64)) @ V.T


def test_effective_rank_and_friends_of_a_known_spectrum():
    X = known_spectrum([1.0] * 8 + [0.0] * 24)  # flat on 8 directions
    lam, sv = eg.spectra(X)
    s = {k: v.item() for k, v in eg.spectral_stats(lam, sv, len(X)).items()}
    assert s["eff_rank"] == pytest.approx(8, rel=1e-3)
    assert s["stable_rank"] == pytest.approx(8, rel=1e-3)
    assert s["rank90"] == 8  # ceil(0.9 * 8) = 8 equal eigenvalues
    assert s["spectral_entropy"] == pytest.approx(math.log(8) / math.log(32), rel=1e-3)
    sigma = np.array([3.0, 2.0, 1.0, 0.5])
    X = known_spectrum(sigma)
    p = sigma / sigma.sum()
    lam, sv = eg.spectra(X)
    figs = eg.spectral_stats(lam, sv, len(X))
    assert figs["eff_rank"].item() == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-4)
    assert figs["stable_rank"].item() == pytest.approx((sigma ** 2).sum() / 9, rel=1e-4)
    assert figs["rank90"].item() == 2  # eigenvalues 9 : 4 : 1 : 0.25 hold 63% and 91% of the variance


def test_the_covariance_spectrum_is_centred_and_rankme_is_not():
    """The eigenvalues are the centred covariance's, sigma^2 / (n - 1), whatever the set's common offset;
    RankMe reads the uncentred vectors (Garrido et al.), so an offset is one more direction to it."""
    sigma = torch.tensor([3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    X = known_spectrum(sigma)
    lam, sv = eg.spectra(X)
    lam_shifted, sv_shifted = eg.spectra(X + 5.0)
    torch.testing.assert_close(lam[0], sigma ** 2 / (len(X) - 1))
    torch.testing.assert_close(lam_shifted, lam)
    assert not torch.allclose(sv_shifted, sv, rtol=0.1)


def test_power_law_exponent_is_recovered():
    d = 64
    X = known_spectrum(np.arange(1, d + 1) ** -0.75, n=300)  # sigma_i ~ i^-0.75 -> lambda_i ~ i^-1.5
    lam, sv = eg.spectra(X)
    assert eg.spectral_stats(lam, sv, len(X))["alpha"].item() == pytest.approx(1.5, abs=1e-3)


def test_subsampled_statistics_match_direct_computation():
    X = torch.randn(60, 8, dtype=torch.float64)
    idx = eg.half_samples(60, 3)
    assert idx.shape == (3, 30) and all(len(set(row)) == 30 for row in idx)  # without replacement
    stats, _ = eg.set_geometry(X, idx)
    for b in range(3):
        # the weights formula equals recomputing on the subsample's rows
        Xb = X[idx[b]]
        assert stats["uniformity"][1][b] == pytest.approx(eg.uniformity(Xb).item(), rel=1e-6)
        assert stats["anisotropy"][1][b] == pytest.approx(eg.anisotropy(Xb).item(), rel=1e-6)
        lam, sv = eg.spectra(Xb)
        ref = eg.spectral_stats(lam, sv, len(Xb))
        for k in ("eff_rank", "rankme", "rank90", "alpha"):
            assert stats[k][1][b] == pytest.approx(ref[k].item(), rel=1e-4)
    # the estimate is the statistic at m = n/2 (the subsamples' mean); at_n the plain computation on all n
    assert stats["eff_rank"][0] == pytest.approx(stats["eff_rank"][1].mean())
    assert stats["uniformity"][2] == pytest.approx(eg.uniformity(X).item())


def test_spectra_are_the_same_bits_on_any_number_of_threads():
    """The subsamples' spectra are spread over torch's threads, one subsample per thread: the figures must not
    depend on --threads, and the thread setting must come back as it was."""
    X = torch.randn(80, 16, dtype=torch.float64)
    c = torch.as_tensor(eg.counts_of(eg.half_samples(80, 7), 80))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = eg.spectra(X, c)
        torch.set_num_threads(2)
        two = eg.spectra(X, c)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert one[0].shape == (7, 16) and one[1].shape == (7, 16)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_the_balance_without_a_model_majority_classes_and_bag_of_tokens():
    """An encoder with no information predicts the SST-2 train split's majority class on dev (a probe
    cannot see dev's), so the gap's baseline is that class's dev accuracy minus the mft probe's majority;
    surface overlap alone is the bag-of-tokens cosine."""
    sts = {"a": ["a cat sat", "two dogs ran", "the sun is hot", "red red red", "one"],
           "b": ["a cat sat down", "nothing alike", "the sun is warm today", "red blue", "one two three"],
           "y": np.array([4.5, 0.5, 3.0, 2.0, 1.0])}
    tasks = {"stsb": {"dev": sts}, "sst2": {"train": {"y": np.array([1, 1, 1, 0])},
                                            "dev": {"y": np.array([0, 0, 0, 1])}}}
    tok = data.get_tokenizer()
    jac, gold, base = eg.balance_baselines(tasks, tok, mft_majority=20.0)
    assert base["gap"]["score"] == pytest.approx(25.0 - 20.0)
    # and the surface-overlap balance: Spearman of the bag-of-tokens cosines with gold and with Jaccard
    bot = probe.bag_of_tokens_cosine(sts["a"], sts["b"], tok)
    assert base["rho_sem"]["score"] == pytest.approx(100 * sps.spearmanr(bot, gold).statistic)
    assert base["rho_lex"]["score"] == pytest.approx(100 * sps.spearmanr(bot, jac).statistic)


def test_sts_b_cosines_are_the_same_whatever_the_lengths_of_the_vectors(glue_dir):
    """ρ_sem and ρ_lex rank each STS-B pair by the cosine of its two embeddings: a checkpoint whose vectors
    differ only in length gives the same figures."""
    tasks = data.load_glue(str(glue_dir))
    rng = np.random.default_rng(0)
    direction = collections.defaultdict(lambda: rng.normal(size=8))  # a fixed random one per sentence
    length = collections.defaultdict(lambda: rng.uniform(0.1, 10))

    def embedder(scale):
        def emb(name, texts):  # float32 vectors, as Embedder gives them
            vectors = np.stack([direction[t] * scale(t) for t in texts])
            return {"mean": torch.tensor(vectors, dtype=torch.float32)}
        return emb
    sts = [eg.checkpoint_geometry(embedder(scale), "mean", {}, {}, {}, tasks, probe.Protocol())["sts"]
           for scale in (lambda t: 1.0, lambda t: length[t])]
    np.testing.assert_allclose(sts[0], sts[1], atol=1e-6)
    dev = tasks["stsb"]["dev"]
    U, V = (np.stack([direction[t] for t in dev[k]]) for k in ("a", "b"))
    cosine = (U * V).sum(1) / np.linalg.norm(U, axis=1) / np.linalg.norm(V, axis=1)
    np.testing.assert_allclose(sts[0], cosine, atol=1e-6)


def test_a_seeds_own_difference_is_read_either_way_round():
    """within_seed: a difference stored as mlm − hyb, asked for as hyb − mlm, is negated, its interval too."""
    diffs = [{"set": "stsb", "a": "mlm-s1", "b": "hyb-s1", "diff": 0.1, "lo": 0.05, "hi": 0.2, "q": 0.01}]
    w = eg.within_seed(diffs, lambda d: d["set"] == "stsb", "hyb-s1", "mlm-s1", "{:.2f}")
    assert (w["diff"], w["lo"], w["hi"], w["text"]) == (-0.1, -0.2, -0.05, "-0.10 [-0.20, -0.05] q=0.010")


def power_law_embeddings(Z, alpha, seed):
    """Rows of Z through a fixed random basis with per-direction scales i^(-alpha/2): a power-law spectrum."""
    d = Z.size(1)
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return (Z * torch.arange(1, d + 1, dtype=torch.float64) ** (-alpha / 2)) @ Q.T


def test_balance_figures_by_hand_on_sets_of_their_own_sizes():
    """The probe gap is SST-2 accuracy minus the most-frequent-token probe's, on sets of different sizes
    (resampled each on its own); ρ_sem is the STS-B cosines' Spearman with the gold scores, ρ_lex with the
    pairs' token Jaccard."""
    rng = np.random.default_rng(0)
    gold, jac, cos = rng.random(40), rng.random(40), rng.random(40)
    sem = {"y": np.array([0, 1] * 15), "p": np.array([0, 1] * 12 + [1, 0] * 3)}  # 30 examples, 80% right
    mft = {"y": np.arange(12) % 3, "p": np.r_[np.arange(9) % 3, [1, 2, 0]]}  # 12 examples, 9 right: 75%
    res = {"hyb": {"mean": {"sem": sem, "lexical": {"mft": mft}, "sts": cos}}}
    figs = eg.balance_figures(res, jac, gold, n_boot=200, seed=0)
    est = {fig: figs["hyb", fig, "mean"][0] for fig in ("gap", "rho_sem", "rho_lex", "rho_sem-rho_lex")}
    rs, rl = 100 * stats.spearman(cos, gold), 100 * stats.spearman(cos, jac)
    want = {"gap": 80.0 - 75.0, "rho_sem": rs, "rho_lex": rl, "rho_sem-rho_lex": rs - rl}
    assert est == pytest.approx(want)
    assert all(len(figs["hyb", fig, "mean"][1]) == 200 for fig in est)
    assert eg.jaccard([5, 6, 7, 7], [6, 7, 8]) == 2 / 4  # token-id sets: {6, 7} of {5, 6, 7, 8}


def test_rank_statistic_intervals_contain_their_estimate_and_cover_a_known_difference():
    """n = 1000, d = 512, power-law spectra, where a with-replacement bootstrap puts the effective rank's CI
    far below its estimate: half-samples give an interval around their own estimate, and a paired difference
    whose interval covers the true difference at the same m (the mean over fresh samples of m)."""
    n, d = 1000, 512
    gen = torch.Generator().manual_seed(0)
    Z = torch.randn(n, d, generator=gen, dtype=torch.float64)
    A, B = power_law_embeddings(Z, 1.0, 1), power_law_embeddings(Z, 1.2, 2)  # same sentences, two encoders
    idx = eg.half_samples(n, 60, seed=0)
    sa, _ = eg.set_geometry(A, idx)
    sb, _ = eg.set_geometry(B, idx)
    for k in ("eff_rank", "rankme", "rank90", "alpha", "uniformity"):
        lo, hi = stats.ci(sa[k][1])
        assert lo <= sa[k][0] <= hi, k
    m = n // 2
    truth = {k: [] for k in ("eff_rank", "alpha")}
    for s in range(8):
        Zm = torch.randn(m, d, generator=torch.Generator().manual_seed(100 + s), dtype=torch.float64)
        ta, _ = eg.set_stats(power_law_embeddings(Zm, 1.0, 1), torch.ones(1, m, dtype=torch.float64))
        tb, _ = eg.set_stats(power_law_embeddings(Zm, 1.2, 2), torch.ones(1, m, dtype=torch.float64))
        for k in truth:
            truth[k].append(float(tb[k][0] - ta[k][0]))
    for k, diffs in truth.items():
        d_est = stats.diff_summary(sb[k][0] - sa[k][0], sb[k][1] - sa[k][1])
        assert d_est["lo"] <= d_est["diff"] <= d_est["hi"], k
        assert d_est["lo"] <= np.mean(diffs) <= d_est["hi"], (k, d_est, np.mean(diffs))
        assert d_est["p"] < 0.05, k  # and the difference is found



MLM = ["mlm-s1", "mlm-s2", "mlm-s3"]
HYBRID = ["hyb-s1", "hyb-s2", "hyb-s3"]
HYBRID_ONE_SEED = ["hybone-s1"]
MLM_FLOP_MATCHED = ["mlmlong-s1", "mlmlong-s2", "mlmlong-s3"]  # a second MLM group: rows after the first's


def figure(key, values):
    """Score rows of one claim figure: {label: score} under the key's fields."""
    return [{**key, "ckpt": label, "score": v} for label, v in values.items()]


@pytest.fixture
def claim_rows():
    """The hybrid 0.10-0.12 more uniform than the MLM on every seed (the claim holds), 5-7 points higher on
    the most-frequent-token probe (the claim's opposite), within 0.3 of it on SST-2 (about the same); the
    FLOP-matched MLM 0.06 more uniform than the hybrid and 10 points better on SST-2; seed 2's own paired
    interval given."""
    labels = MLM + HYBRID + HYBRID_ONE_SEED + MLM_FLOP_MATCHED
    objectives = {label: "mlm" if label.startswith("mlm") else "hybrid" for label in labels}
    uni = {"set": "stsb", "pooling": "mean", "stat": "uniformity"}
    mft = {"eval": "mft", "metric": "acc", "pooling": "mean"}
    sst2 = {"eval": "sst2", "metric": "acc", "pooling": "mean"}
    seed2 = {**uni, "a": "hyb-s2", "b": "mlm-s2", "diff": -0.12, "lo": -0.2, "hi": -0.05, "q": 0.01}
    uniformity = {"mlm-s1": -0.05, "mlm-s2": -0.06, "mlm-s3": -0.04, "hyb-s1": -0.15, "hyb-s2": -0.18,
                  "hyb-s3": -0.15, "hybone-s1": -0.9, "mlmlong-s1": -0.2, "mlmlong-s2": -0.25,
                  "mlmlong-s3": -0.21}
    mft_acc = {"mlm-s1": 30, "mlm-s2": 31, "mlm-s3": 32, "hyb-s1": 35, "hyb-s2": 37, "hyb-s3": 39,
               "hybone-s1": 0, "mlmlong-s1": 30, "mlmlong-s2": 31, "mlmlong-s3": 32}
    sst2_acc = {"mlm-s1": 60.0, "mlm-s2": 61.0, "mlm-s3": 62.0, "hyb-s1": 60.2, "hyb-s2": 60.9,
                "hyb-s3": 62.1, "hybone-s1": 99, "mlmlong-s1": 70, "mlmlong-s2": 71, "mlmlong-s3": 72}
    one = {**uni, "a": "hybone-s1", "b": "mlm-s1", "diff": -0.85, "lo": -0.9, "hi": -0.8, "q": 0.01}
    sources = {"geometry": (figure(uni, uniformity), [seed2, one]), "lexical": (figure(mft, mft_acc), []),
               "probe": (figure(sst2, sst2_acc), [])}
    rows = eg.claims(sources, labels, objectives)
    return {(r["hybrid"], r["mlm"], r["claim"][:2]): r for r in rows}, rows


def test_claims_judge_each_hybrid_group_against_each_mlm_group_over_seeds(claim_rows):
    by, rows = claim_rows
    assert [r["mlm"] for r in rows] == ["mlm"] * 6 + ["mlmlong"] * 6  # 3 claims x 2 hybrid groups each
    uniform, lexical, same = by["hyb", "mlm", "1."], by["hyb", "mlm", "3a"], by["hyb", "mlm", "4."]
    assert uniform["verdict"] == "holds" and uniform["diff"] == pytest.approx(-0.11)
    assert lexical["verdict"] == "does not hold"  # higher, where the claim says lower
    assert same["verdict"] == "holds" and -2 < same["lo"] < same["hi"] < 2
    flop = by["hyb", "mlmlong", "1."]
    assert flop["verdict"] == "does not hold" and flop["diff"] == pytest.approx(0.06)
    assert by["hyb", "mlmlong", "4."]["verdict"] == "does not hold"  # 10 points worse: outside ±2


def test_claims_take_the_mlm_groups_in_the_order_the_checkpoints_were_named():
    labels = ["mlm-tiny", "hyb-tiny"] + MLM + HYBRID  # an unseeded pair (one row each) before the seeds
    objectives = {label: "mlm" if label.startswith("mlm") else "hybrid" for label in labels}
    labels, objectives[probe.RANDOM] = labels + [probe.RANDOM], "none"  # random-init: on neither side
    uni = {"set": "stsb", "pooling": "mean", "stat": "uniformity"}
    rows = eg.claims({"geometry": (figure(uni, {label: -0.1 for label in labels}), [])}, labels, objectives)
    assert [(r["hybrid"], r["mlm"]) for r in rows] == [("hyb-tiny", "mlm-tiny"), ("hyb", "mlm")]


def test_a_claim_needs_three_shared_seeds_and_shows_each_seeds_own_interval(claim_rows):
    by, _ = claim_rows
    one = by["hybone", "mlm", "1."]
    assert one["verdict"] == "inconclusive" and one["n_seeds"] == 1 and one["lo"] is None  # whatever it is
    assert by["hyb", "mlm", "1."]["within"] == ["-0.120 [-0.200, -0.050] q=0.010"]  # seed 2's paired interval
    assert by["hyb", "mlmlong", "1."]["within"] == []  # the report's within-seed tests: against the first MLM


def test_two_shared_seeds_give_the_mean_difference_and_no_interval_over_seeds():
    """A t interval from two seeds (one degree of freedom) says little: the row keeps the mean difference
    and leaves the interval, p and verdict to a third seed."""
    uni = {"set": "stsb", "pooling": "mean", "stat": "uniformity"}
    scores = figure(uni, {"mlm-s1": -0.05, "mlm-s2": -0.06, "hyb-s1": -0.15, "hyb-s2": -0.18})
    groups = {"hyb": ["hyb-s1", "hyb-s2"], "mlm": ["mlm-s1", "mlm-s2"]}
    row = eg.claim_row(("1. more uniform", "geometry", uni, -1, "{:.3f}"), "hyb", "mlm", groups, scores, [])
    assert row["diff"] == pytest.approx(-0.11) and (row["lo"], row["hi"], row["p"]) == (None, None, None)
    assert row["verdict"] == "inconclusive" and row["n_seeds"] == 2


def test_verdict_rule_for_equivalence_and_direction():
    assert eg.verdict(0, 1.5, -0.5, 3.5, 0.2, 3)[0] == "inconclusive"  # the CI crosses ±2
    assert eg.verdict(0, 5.0, 3.0, 7.0, 0.01, 3)[0] == "does not hold"  # the CI lies outside ±2
    assert eg.verdict(0, 0.5, -1.0, 1.9, 0.5, 3)[0] == "holds"
    assert eg.verdict(-1, -0.1, -0.3, 0.1, 0.3, 3)[0] == "inconclusive"  # p >= 0.05
    assert eg.verdict(-1, -0.2, -0.4, -0.01, 0.049, 3)[0] == "holds"  # the threshold is p < 0.05
    assert eg.verdict(-1, -0.2, -0.4, 0.0, 0.05, 3)[0] == "inconclusive"
    assert eg.verdict(-1, 0.2, 0.1, 0.3, 0.01, 3)[0] == "does not hold"  # significant, the other way
    assert eg.verdict(1, 0.2, 0.1, 0.3, 0.01, 2)[0] == "inconclusive"  # two seeds never decide
    nan = float("nan")  # a figure undefined on a seed (its mean, CI and p are nan) decides nothing
    assert [eg.verdict(d, nan, nan, nan, nan, 3)[0] for d in (-1, 0, 1)] == ["inconclusive"] * 3


def test_the_claims_plot_puts_each_difference_in_its_claims_panel_coloured_by_its_verdict(claim_rows):
    from matplotlib.colors import to_hex
    _, rows = claim_rows
    spectrum = [{**rows[0], "claim": "2. richer spectrum under max pooling", "figure": f"stsb max {s}",
                 "direction": d} for s, d in (("eff_rank", 1), ("alpha", -1))]  # two units: two panels
    plt = probe.pyplot()
    fig = eg.plot_claims(plt, rows + spectrum)
    assert [ax.get_title() for ax in fig.axes] == [
        "1. more uniform (paper: hybrid < -0.16, MLM -0.05); expected: lower",
        "3a. less surface lexical information (most-frequent-token probe); expected: lower",
        "4. about the same linear-probe scores; expected: the same",
        "2. richer spectrum under max pooling: eff_rank; expected: higher",
        "2. richer spectrum under max pooling: alpha; expected: lower"]
    drawn = sorted((round(float(line.get_xdata()[0]), 9), to_hex(line.get_color())) for ax in fig.axes
                   for line in ax.lines if line.get_marker() in eg.PAIR_MARKERS)
    want = [(round(r["diff"], 9), to_hex(eg.VERDICT_COLORS[r["verdict"]])) for r in rows + spectrum]
    assert drawn == sorted(want)
    assert {"holds", "does not hold", "inconclusive"} <= {r["verdict"] for r in rows}
    # one seed (hybone): no CI over seeds, so its own paired CI over examples, drawn hollow
    hollow = [(line, ax) for ax in fig.axes for line in ax.lines
              if line.get_marker() in eg.PAIR_MARKERS and line.get_markerfacecolor() == "white"]
    assert [(round(float(line.get_xdata()[0]), 6), ax.get_title()[:2]) for line, ax in hollow] == [(-0.85, "1.")]
    caps = [c for c in hollow[0][1].lines if c.get_marker() == "|"]
    assert {-0.9, -0.8} <= {round(float(c.get_xdata()[i]), 6) for c in caps for i in range(len(c.get_xdata()))}
    plt.close(fig)
    assert eg.plot_claims(plt, []) is None


def test_the_spectra_plot_draws_a_seed_group_as_its_geometric_mean_in_a_band():
    labels = ["mlm-s1", "mlm-s2", "hyb-s1", "random-init"]
    lam = {"mlm-s1": np.array([4.0, 1.0]), "mlm-s2": np.array([1.0, 4.0]), "hyb-s1": np.array([3.0, 2.0]),
           "random-init": np.array([5.0, 0.5])}
    plt = probe.pyplot()
    fig = eg.plot_spectra(plt, {"mean": lam}, "stsb", probe.palette(labels), probe.legend_labels(labels))
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["mlm-s* (2 seeds)", "hyb-s1", "random-init"]
    assert ax.lines[0].get_ydata().tolist() == [2.0, 2.0]  # sqrt(4 * 1) at each index
    assert len(ax.collections) == 1  # the band of the one group with seeds to span
    plt.close(fig)
    lam["mlm-s2"] = np.array([1.0, 4.0, 2.0])  # another width under the same group name: a line of its own
    fig = eg.plot_spectra(plt, {"mean": lam}, "stsb", probe.palette(labels), probe.legend_labels(labels))
    assert [len(line.get_ydata()) for line in fig.axes[0].lines] == [2, 3, 2, 2]
    plt.close(fig)


def test_uniformity_against_alignment_draws_a_seed_group_at_its_mean_and_one_checkpoint_with_its_cis():
    def row(ckpt, score, **key):
        return {**key, "ckpt": ckpt, "pooling": "mean", "score": score, "lo": score - 0.1, "hi": score + 0.1}
    scores = {"mlm-s1": (-1.0, 0.2), "mlm-s2": (-2.0, 0.4), "hyb-s1": (-3.0, 0.6)}
    report = {"geometry": [row(c, u, set="stsb", stat="uniformity") for c, (u, _) in scores.items()],
              "alignment": [row(c, a, pairs="stsb") for c, (_, a) in scores.items()]}
    labels = list(scores)
    plt = probe.pyplot()
    fig = eg.plot_uniformity_alignment(plt, report, probe.palette(labels), probe.legend_labels(labels))
    ax = fig.axes[0]
    dots, mean = (c.get_offsets().tolist() for c in ax.collections[:2])
    assert dots == [[-1.0, 0.2], [-2.0, 0.4]] and mean == [[-1.5, pytest.approx(0.3)]]
    assert [line.get_xydata().tolist() for line in ax.lines if line.get_marker() == "o"] == [[[-3.0, 0.6]]]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "mlm-s* (2 seeds)", "hyb-s1", "mean pooling", "seed group: its mean"]
    plt.close(fig)


def test_claims_tables_group_rows_by_pair_in_order(claim_rows):
    _, rows = claim_rows
    text = "\n".join(eg.claims_lines(rows, []))
    assert "| 1. more uniform" in text
    assert text.index("**hyb** against **mlm**") < text.index("**hyb** against **mlmlong**")
    assert "| 1. more uniform (paper: hybrid < -0.16, MLM -0.05) | 1 | 0 | 0 |" in text  # the tally
    # a later MLM group has no within-seed differences (each seed's are against its first checkpoint): said once
    said = "No within-seed differences for this pair"
    assert text.count(said) == 2 and text.index("**hyb** against **mlmlong**") < text.index(said)


def test_training_table_says_where_each_run_left_the_unigram_plateau_and_its_lowest_rankme():
    flat = [7.0] * 3
    curves = {"mlm-s1": {"val_mlm": ([0, 10, 20], [9.0, 7.5, 6.0]), "val_unigram": ([0, 10, 20], flat)},
              "hyb-s1": {"val_mlm": ([0, 10, 20], [9.0, 6.5, 6.0]), "val_unigram": ([0, 10, 20], flat),
                         "lambda": ([5, 10, 15, 20], [0.5, 0.52, 0.515, 0.51]),
                         "tgt_rankme": ([5, 10, 15], [40.0, 12.5, 30.0])},
              "flat-s1": {"val_mlm": ([0, 10], [9.0, 7.2]), "val_unigram": ([0, 10], flat[:2])},
              "old-s1": {"val_mlm": ([0, 10], [9.0, 6.0])},  # logged before the unigram line was
              "export": {}}
    text = "\n".join(eg.training_lines([*curves, probe.RANDOM], curves))
    assert "| mlm-s1 | 9.000 → 6.000 (iter 20) | 7.000 | iter 20 | n/a | n/a |" in text
    assert "| hyb-s1 | 9.000 → 6.000 (iter 20) | 7.000 | iter 10 | 0.500 → 0.510 (0.500–0.520) | 12.5 (iter 10) |" in text
    assert "| flat-s1 | 9.000 → 7.200 (iter 10) | 7.000 | never |" in text
    assert "| old-s1 | 9.000 → 6.000 (iter 10) | n/a | n/a |" in text
    assert "- export: no val losses" in text and probe.RANDOM not in text


def test_training_only_reads_the_logs_alone(tmp_path, capsys):
    """--training_only=True: the training table and plot from each run's log.jsonl, no checkpoint read (here
    there is none: a run that has not written one yet); a path with no run, or runs without val losses, is one
    line."""
    runs = {"out-hybrid": [{"iter": 0, "val_mlm": 9.0, "val_unigram": 7.0}, {"iter": 5, "lambda": 0.5,
                                                                             "tgt_rankme": 30.0},
                           {"iter": 10, "val_mlm": 6.5, "val_unigram": 7.0}],
            "out-mlm": [{"iter": 0, "val_mlm": 9.0, "val_unigram": 7.0},
                        {"iter": 10, "val_mlm": 7.5, "val_unigram": 7.0}]}
    for name, records in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    paths = [str(tmp_path / name) for name in runs]
    cfg = SimpleNamespace(**{**configurator.settings(vars(eg)), "report_dir": str(tmp_path / "report")})
    eg.run_training(paths, cfg)
    text = (tmp_path / "report" / "TRAINING.md").read_text()
    assert "| out-hybrid | 9.000 → 6.500 (iter 10) | 7.000 | iter 10 | 0.500 → 0.500 (0.500–0.500) | 30.0 (iter 5) |" in text
    assert "| out-mlm | 9.000 → 7.500 (iter 10) | 7.000 | never | n/a | n/a |" in text and text.endswith("(training.png)\n")
    assert "| out-mlm |" in capsys.readouterr().out and (tmp_path / "report" / "training.png").exists()
    with pytest.raises(probe.InputError, match="^no run at .*out-typo: name out_dirs"):
        eg.run_training([*paths, str(tmp_path / "out-typo")], cfg)
    with pytest.raises(probe.InputError, match="^no val losses in a log.jsonl beside"):
        eg.run_training([str(tmp_path / "report")], cfg)
    os.makedirs(tmp_path / "taken" / "TRAINING.md")  # a report file that cannot be written, as on a full disk
    with pytest.raises(probe.InputError, match=r"^cannot write the report into .*taken \(Is a directory\)"):
        eg.run_training(paths, SimpleNamespace(**{**vars(cfg), "report_dir": str(tmp_path / "taken")}))


@pytest.fixture(scope="module")
def geometry_report(tiny_ckpts, glue_dir, corpus, tmp_path_factory):
    """eval_geometry.py run once from the command line on the GLUE fixture, against an MLM checkpoint and a
    hybrid stopped at iter 30 of 100: (geometry.json, the report folder, the two checkpoint folders)."""
    tmp = tmp_path_factory.mktemp("geometry-report")
    early = tmp / "out-hybrid-early"  # the hybrid as a run stopped at iter 30 of 100 leaves it
    early.mkdir()
    torch.save({**torch.load(os.path.join(tiny_ckpts[1], "ckpt.pt"), weights_only=True), "iter_num": 30,
                "max_iters": 100}, early / "ckpt.pt")
    (early / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (  # its log, as train.py writes it
        {"iter": 0, "val_mlm": 9.0, "val_unigram": 7.0}, {"iter": 10, "lambda": 0.5, "tgt_rankme": 20.0},
        {"iter": 20, "lambda": 0.51, "tgt_rankme": 25.0}, {"iter": 30, "val_mlm": 6.8, "val_unigram": 7.0})))
    r = run_cli("eval_geometry.py", tiny_ckpts[0], str(early), f"--glue_dir={glue_dir}",
                f"--dataset={corpus}", f"--data_dir={tmp}/data", f"--report_dir={tmp}", "--n_boot=100",
                "--n_folds=3", "--poolings=mean,attention", "--unfinished=True")
    assert r.returncode == 0, r.stderr[-3000:]
    return read_json(tmp / "geometry.json"), tmp, (tiny_ckpts[0], str(early))


@pytest.mark.parametrize("key, value, says", [("n_sub", 1, ">= 40"), ("geom_n", 13, ">= 14 or 0")])
def test_a_bad_geometry_setting_is_one_line_before_any_work(key, value, says, tmp_path):
    cfg = SimpleNamespace(**{**configurator.settings(vars(eg)), "report_dir": str(tmp_path), key: value})
    with pytest.raises(probe.InputError, match=f"^--{key}={value}: must be a whole number {says}"):
        eg.run([os.path.join(ROOT, "no-such-run")], cfg)  # refused before the checkpoint is even read


def test_a_missing_checkpoint_leaves_no_report_folder(tmp_path):
    cfg = SimpleNamespace(**{**configurator.settings(vars(eg)), "report_dir": str(tmp_path / "report")})
    with pytest.raises(FileNotFoundError, match="^no checkpoint at .*no-such-run"):
        eg.run([str(tmp_path / "no-such-run")], cfg)
    assert os.listdir(tmp_path) == []  # the folder is made when the report is written


def test_a_glue_folder_without_a_task_says_the_geometry_needs_all_five(tiny_ckpts, glue_dir, tmp_path):
    shutil.copytree(glue_dir, tmp_path / "glue", ignore=shutil.ignore_patterns("MRPC"))
    cfg = SimpleNamespace(**{**configurator.settings(vars(eg)), "report_dir": str(tmp_path / "report"),
                             "glue_dir": str(tmp_path / "glue")})
    with pytest.raises(FileNotFoundError, match=r"MRPC/train.tsv not found: .* \(the geometry reads all five "
                                                r"tasks; probe.py --tasks=... probes fewer\)$"):
        eg.run(tiny_ckpts, cfg)
    assert not os.path.exists(tmp_path / "report")


def test_a_sentence_set_too_small_for_half_samples_is_refused():
    sets = {"mrpc": [("mrpc-dev-a", ["s."] * 13)], "corpus": [("probing-sentences", ["a."] * 50)]}
    with pytest.raises(probe.InputError, match="^the mrpc sentence set has 13: the geometry needs at least 14"):
        eg.sample_sets(sets, 640, 200, 0)


def test_a_large_sentence_set_is_sampled_at_random_and_the_same_for_every_checkpoint():
    """Past n_max sentences a set is a seeded random sample (a set's first sentences can be one topic or
    length, as corpus order groups them), with half-samples of it; the same seed gives the same sample."""
    sets = {"corpus": [("probing-sentences", [f"s{i}." for i in range(100)])]}
    pick, halves = eg.sample_sets(sets, 30, 40, seed=0)["corpus"]
    assert len(set(pick.tolist())) == 30 and pick.tolist() == sorted(pick.tolist()) and pick.max() >= 30
    assert halves.shape == (40, 15) and halves.max() < 30  # indices into the sample
    again = eg.sample_sets(sets, 30, 40, seed=0)["corpus"]
    assert np.array_equal(again[0], pick) and np.array_equal(again[1], halves)
    assert len(eg.sample_sets(sets, 500, 40, seed=0)["corpus"][0]) == 100  # a smaller set: whole


def test_every_set_statistic_is_defined_from_the_smallest_set_allowed():
    X = torch.randn(eg.MIN_SET, 32, dtype=torch.float64)
    figures, _ = eg.set_geometry(X, eg.half_samples(eg.MIN_SET, 40))
    assert all(np.isfinite(reps).all() for _, reps, _ in figures.values())
    fewer, _ = eg.set_geometry(X[:-2], eg.half_samples(eg.MIN_SET - 2, 40))
    assert np.isnan(fewer["alpha"][1]).all()  # 5 eigenvalues: one in the middle, no slope


def test_the_report_holds_every_figure_family(geometry_report):
    out, folder, _ = geometry_report
    stats = {(g["set"], g["stat"]) for g in out["geometry"]}
    assert ("stsb", "uniformity") in stats and ("corpus", "alpha") in stats
    assert {a["pairs"] for a in out["alignment"]} == {"stsb", "mrpc", "mnli-dev_matched",
                                                      "mnli-dev_mismatched"}
    assert {b["figure"] for b in out["balance"]} == {"gap", "rho_sem", "rho_lex", "rho_sem-rho_lex"}
    assert all(g["m"] == g["n"] // 2 for g in out["geometry"])  # the statistics of half-samples
    assert {g["n"] for g in out["geometry"] if g["set"] == "corpus"} == {5 * 32}  # geom_n 0: 5·d sentences
    report = (folder / "REPORT.md").read_text()
    assert "## Alignment" in report and "p=" in report and "## The paper's claims, checked" in report
    for png in ("spectra.png", "uniformity_alignment.png", "lexical_probes.png", "training.png"):
        assert (folder / png).stat().st_size > 1000
    assert "| out-hybrid-early | 9.000 → 6.800 (iter 30) | 7.000 | iter 30 | 0.500 → 0.510 (0.500–0.510) | 20.0 " \
           "(iter 10) |" in report
    assert f"- {out['checkpoints'][0]['label']}: no val losses" in report  # the MLM: no log


def test_each_difference_is_its_two_estimates_difference_against_the_reference(geometry_report):
    out, _, _ = geometry_report
    for name, keys in (("geometry", ("set", "pooling", "stat")), ("balance", ("figure", "pooling"))):
        score = {tuple(g[k] for k in keys + ("ckpt",)): g["score"] for g in out[name]}
        for d in out[f"{name}_diffs"]:  # on the same resamples
            key = tuple(d[k] for k in keys)
            assert d["diff"] == pytest.approx(score[key + (d["a"],)] - score[key + (d["b"],)], abs=1e-9)
    mlm = out["checkpoints"][0]["label"]  # every balance figure is compared, hybrid against the MLM reference
    bd = {d["figure"] for d in out["balance_diffs"] if (d["a"], d["b"]) == ("out-hybrid-early", mlm)}
    assert bd == {b["figure"] for b in out["balance"]}


def test_the_lexical_baseline_is_each_probing_sets_majority_class(geometry_report, corpus):
    """What an encoder with no information scores on a probing set: the share of its most frequent class."""
    report, tmp, _ = geometry_report
    psets, _ = data.probing_sets(data.corpus_sentences(corpus, str(tmp / "data")), source=repr(corpus))
    shares = {k: 100 * collections.Counter(v["y"].tolist()).most_common(1)[0][1] / len(v["y"])
              for k, v in psets.items()}
    assert report["majority"] == pytest.approx(shares, rel=1e-12) and min(shares.values()) > 0


def test_the_random_encoders_differences_are_a_false_discovery_family_apart(geometry_report):
    """q is Benjamini-Hochberg over every difference of the report, the random encoder's in a family of their
    own: its many tiny p-values (did pre-training add anything) leave the others' thresholds alone."""
    report = geometry_report[0]
    diffs = [d for name in eg.SECTIONS for d in report[f"{name}_diffs"] if np.isfinite(d["p"])]
    for apart in (False, True):
        family = [d for d in diffs if (d["a"] == probe.RANDOM) == apart]
        assert family and [d["q"] for d in family] == pytest.approx(
            list(sps.false_discovery_control([d["p"] for d in family], method="bh")), rel=1e-12)


def test_an_unfinished_run_is_labelled_and_one_seed_decides_no_claim(geometry_report):
    out, folder, _ = geometry_report
    report = (folder / "REPORT.md").read_text()
    assert "| 30 of 100 (unfinished) |" in report
    assert "UNFINISHED: out-hybrid-early is at iter 30 of the 100" in report
    assert {c["verdict"] for c in out["claims"]} == {"inconclusive"}  # one seed each


def test_a_probe_json_of_other_weights_under_the_same_names_is_left_out_of_the_report(tmp_path):
    """A report_dir's probe.json joins the claims and REPORT.md only where it is of these very weights."""
    ckpts = [{"label": "out-mlm", "encoder": "online", "stamp": "100-1.5", "objective": "mlm"},
             {"label": "out-hybrid", "encoder": "online", "stamp": "100-2.5", "objective": "hybrid"}]
    labels = [c["label"] for c in ckpts]
    (tmp_path / "probe.md").write_text("THE PROBE TABLES")
    empty = {k: [] for n in eg.SECTIONS for k in (n, f"{n}_diffs")}
    for stamp, used in (("100-2.5", True), ("100-3.5", False)):  # the hybrid retrained under its old name
        prb = {"checkpoints": [ckpts[0], {**ckpts[1], "stamp": stamp}], "scores": [], "diffs": []}
        (tmp_path / "probe.json").write_text(json.dumps(prb))
        report = {"checkpoints": ckpts, "notes": [], "majority": {}, "across_seeds": {}, **empty}
        eg.judge(report, labels, str(tmp_path))
        assert report["probe_json"] == (str(tmp_path / "probe.json") if used else None)
        assert any("is of other checkpoints or weights" in n for n in report["notes"]) != used
        lines = eg.figure_lines(report, labels, [], str(tmp_path / "probe.md"))
        assert ("THE PROBE TABLES" in lines) == used
    for tasks, said in ((["sst2", "stsb"], True), (list(data.GLUE_TASKS), False), ([], False)):  # [] probing
        (tmp_path / "probe.json").write_text(json.dumps({**prb, "checkpoints": ckpts, "tasks": tasks}))
        report = {"checkpoints": ckpts, "notes": [], "majority": {}, "across_seeds": {}, **empty}
        eg.judge(report, labels, str(tmp_path))
        assert any(n.endswith("probed sst2, stsb alone (probe.py --tasks): the claims have no probe-score "
                              "rows for the other GLUE tasks") for n in report["notes"]) == said


def test_stripped_copies_give_the_same_report_from_the_cache_alone(geometry_report, glue_dir, corpus):
    """The checkpoints stripped of their weights (probe.results_only), as a GPU session leaves them."""
    out, folder, ckpts = geometry_report
    stubs = [str(folder / "stub" / os.path.basename(p)) for p in ckpts]
    for p, s in zip(ckpts, stubs):
        probe.results_only(p, s)
    cfg = SimpleNamespace(**{**configurator.settings(vars(eg)), "threads": 1, "glue_dir": glue_dir,
                             "dataset": corpus, "data_dir": f"{folder}/data", "report_dir": f"{folder}/stub",
                             "n_boot": 100, "n_folds": 3, "poolings": "mean,attention", "unfinished": True})
    torch.set_num_threads(3)  # a notebook's own setting: run() takes --threads for its work, then gives it back
    eg.run(stubs, cfg)  # in process, as its __main__ runs it
    assert torch.get_num_threads() == 3
    again = read_json(folder / "stub" / "geometry.json")
    for k in ("geometry", "geometry_diffs", "alignment", "lexical", "balance", "claims", "training"):
        assert again[k] == out[k], k
    os.makedirs(folder / "taken" / "REPORT.md")  # a report file that cannot be written, as on a full disk
    with pytest.raises(probe.InputError, match=r"^cannot write the report into .*taken \(Is a directory\): "
                                               r"mend the cause \(a full disk\?\), then run the same command"):
        eg.run(stubs, SimpleNamespace(**{**vars(cfg), "report_dir": f"{folder}/taken"}))


def test_the_committed_cpu_report_is_what_the_claims_code_computes_from_its_scores():
    """results/cpu (4 arms x 3 seeds): from the report's own per-checkpoint scores and within-seed
    differences, the claims, their t-tests over seeds and the BH q-values come out as the report has them."""
    g = read_json(os.path.join(ROOT, "results", "cpu", "geometry.json"))
    p = read_json(os.path.join(ROOT, "results", "cpu", "probe.json"))
    labels = [c["label"] for c in g["checkpoints"]]
    sources = {k: (g[k], g[f"{k}_diffs"]) for k in ("geometry", "lexical", "balance")}
    rows = eg.claims({**sources, "probe": (p["scores"], p["diffs"])}, labels,
                     {c["label"]: c["objective"] for c in g["checkpoints"]})
    assert len(rows) == len(g["claims"]) == 156
    for new, old in zip(rows, g["claims"]):
        assert (new["claim"], new["figure"], new["verdict"], new["within"]) == \
            (old["claim"], old["figure"], old["verdict"], old["within"])
        for k in ("diff", "lo", "hi", "p"):  # relative too: SciPy versions round a t quantile apart
            assert new[k] == pytest.approx(old[k], rel=1e-9, abs=1e-9)
    diffs = [dict(d) for d in p["diffs"]]
    stats.control_fdr(diffs, apart={probe.RANDOM})
    assert [d["q"] for d in diffs] == pytest.approx([d["q"] for d in p["diffs"]], abs=1e-12)


def test_the_committed_cpu_report_writes_its_tables_from_its_own_json():
    """results/cpu/REPORT.md's probe, figure and across-seed sections are what figure_lines writes from the
    committed geometry.json and probe.md: every table of the report, the seeds' included, from its numbers."""
    folder = os.path.join(ROOT, "results", "cpu")
    report = read_json(os.path.join(folder, "geometry.json"))
    lines = eg.figure_lines(report, [c["label"] for c in report["checkpoints"]], set(os.listdir(folder)),
                            os.path.join(folder, "probe.md"))
    assert "## Across training seeds" in lines
    with open(os.path.join(folder, "REPORT.md")) as f:
        assert "\n".join(lines) in f.read()


ANALYSIS_CODE = "f089db6f3f11"  # the code that the committed results-only copies (results/*/ckpt) were analysed with


def test_the_analysis_code_is_the_one_the_committed_caches_were_computed_with():
    """results/*/ckpt hold cached results, not weights: they answer only while the code that computed them is
    unchanged. An edit of it (probe.PROBE_CODE, eval_geometry.GEOMETRY_CODE, probe.EMBED_CODE: model.pool,
    model.Encoder, ...; even a message in one) strands them, and a GPU session's seeds can no longer join them
    in one report: make such an edit knowingly, say so in the closing note, and pin the new key here."""
    key = probe.digest(probe.PROBE_CODE, eg.GEOMETRY_CODE, probe.EMBED_CODE)
    assert key == ANALYSIS_CODE, f"the analysis code changed ({key}): see this test's docstring"
