"""eval_geometry.py: geometry statistics against closed-form values, subsampled statistics, the CLI."""

import json
import math
import os

import numpy as np
import pytest
import torch

from test_probe import run_cli
import eval_geometry as eg
import probe


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
    assert eg.spectral_stats(lam, sv, len(X))["eff_rank"].item() == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-4)
    assert eg.spectral_stats(lam, sv, len(X))["stable_rank"].item() == pytest.approx((sigma ** 2).sum() / 9, rel=1e-4)


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


def power_law_embeddings(Z, alpha, seed):
    """Rows of Z mapped through a fixed random basis with per-direction scales i^(-alpha/2): a power-law spectrum."""
    d = Z.size(1)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return (Z * torch.arange(1, d + 1, dtype=torch.float64) ** (-alpha / 2)) @ Q.T


def test_rank_statistic_intervals_contain_their_estimate_and_cover_a_known_difference():
    """The review's case: n = 1000, d = 512, power-law spectra. The bootstrap gave an effective rank of 376 with
    a CI of [337, 344]; half-samples must give an interval around their own estimate, and a paired difference
    whose interval covers the true difference at the same m (the mean over fresh samples of m)."""
    n, d = 1000, 512
    gen = torch.Generator().manual_seed(0)
    Z = torch.randn(n, d, generator=gen, dtype=torch.float64)
    A, B = power_law_embeddings(Z, 1.0, 1), power_law_embeddings(Z, 1.2, 2)  # same sentences, two encoders
    idx = eg.half_samples(n, 60, seed=0)
    sa, _ = eg.set_geometry(A, idx)
    sb, _ = eg.set_geometry(B, idx)
    for k in ("eff_rank", "rankme", "rank90", "alpha", "uniformity"):
        lo, hi = eg.ci(sa[k][1])
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
        d_est = eg.diff_summary(sb[k][0] - sa[k][0], sb[k][1] - sa[k][1])
        assert d_est["lo"] <= d_est["diff"] <= d_est["hi"], k
        assert d_est["lo"] <= np.mean(diffs) <= d_est["hi"], (k, d_est, np.mean(diffs))
        assert d_est["p"] < 0.05, k  # and the difference is found



def test_claims_verdicts_over_seeds():
    labels = [f"mlm-s{i}" for i in (1, 2, 3)] + [f"hyb-s{i}" for i in (1, 2, 3)] + ["hybone-s1"] + \
        [f"mlmlong-s{i}" for i in (1, 2, 3)]  # a second MLM group (FLOP-matched): its own rows, after the first's
    objectives = {l: "mlm" if l.startswith("mlm") else "hybrid" for l in labels}
    geo = lambda l, v: {"set": "stsb", "pooling": "mean", "stat": "uniformity", "ckpt": l, "score": v}  # noqa: E731
    lex = lambda l, v: {"eval": "mft", "metric": "acc", "pooling": "mean", "ckpt": l, "score": v}  # noqa: E731
    prb = lambda l, v: {"eval": "sst2", "metric": "acc", "pooling": "mean", "ckpt": l, "score": v}  # noqa: E731
    # uniformity: the hybrid lower by 0.10, 0.12, 0.11 (holds); mft: higher by 5, 6, 7 (the opposite of the
    # claim); SST-2: within ±0.3 (about the same: holds); the one-seed group: inconclusive whatever its figure
    u = [-0.05, -0.06, -0.04, -0.15, -0.18, -0.15, -0.9, -0.2, -0.25, -0.21]
    m = [30, 31, 32, 35, 37, 39, 0, 30, 31, 32]
    a = [60.0, 61.0, 62.0, 60.2, 60.9, 62.1, 99, 70, 71, 72]
    within = {"a": "hyb-s2", "b": "mlm-s2", "diff": -0.12, "lo": -0.2, "hi": -0.05, "q": 0.01, "set": "stsb",
              "pooling": "mean", "stat": "uniformity"}
    sources = {"geometry": ([geo(l, v) for l, v in zip(labels, u)], [within]),
               "lexical": ([lex(l, v) for l, v in zip(labels, m)], []),
               "probe": ([prb(l, v) for l, v in zip(labels, a)], [])}
    rows = eg.claims(sources, labels, objectives)
    assert [r["mlm"] for r in rows] == ["mlm"] * 6 + ["mlmlong"] * 6  # 3 claims x 2 hybrid groups each
    v = {(r["hybrid"], r["claim"][:2]): r for r in rows if r["mlm"] == "mlm"}
    w = {(r["hybrid"], r["claim"][:2]): r for r in rows if r["mlm"] == "mlmlong"}
    # against the second MLM group the hybrid is less uniform (+0.06: the opposite) and 10 points worse on SST-2
    assert w["hyb", "1."]["verdict"] == "does not hold" and w["hyb", "1."]["diff"] == pytest.approx(0.06)
    assert w["hyb", "4."]["verdict"] == "does not hold" and w["hyb", "1."]["within"] == []
    assert v["hyb", "1."]["verdict"] == "holds" and v["hyb", "1."]["diff"] == pytest.approx(-0.11)
    assert v["hyb", "1."]["within"] == ["-0.120 [-0.200, -0.050] q=0.010"]  # seed 2's own paired interval
    assert v["hyb", "3a"]["verdict"] == "does not hold" and v["hyb", "4."]["verdict"] == "holds"
    assert v["hyb", "4."]["lo"] > -2 and v["hyb", "4."]["hi"] < 2
    assert v["hybone", "1."]["verdict"] == "inconclusive" and v["hybone", "1."]["n_seeds"] == 1
    table = eg.claims_table(rows)
    assert "| 1. more uniform" in table and table.index("**hyb** against **mlm**") < table.index(
        "**hyb** against **mlmlong**")
    # equivalence: a CI across ±2 is inconclusive, one outside it does not hold
    assert eg.verdict(0, 1.5, -0.5, 3.5, 0.2, 3)[0] == "inconclusive"
    assert eg.verdict(0, 5.0, 3.0, 7.0, 0.01, 3)[0] == "does not hold"
    assert eg.verdict(-1, -0.1, -0.3, 0.1, 0.3, 3)[0] == "inconclusive"


def test_lambda_curve_and_last_val_read_the_log(tmp_path):
    (tmp_path / "log.jsonl").write_text('{"iter": 0, "mlm": 9.0, "jepa": 1.0, "lambda": 0.5}\n{"iter": 0, "val_mlm": 9.1}\n'
                                        '{"iter": 10, "mlm": 8.0, "jepa": 0.5, "lambda": 0.4}\n'
                                        '{"iter": 10, "val_mlm": 6.5, "val_unigram": 7.0}\n{"iter": 2')
    assert eg.lambda_curve(str(tmp_path)) == ([0, 10], [0.5, 0.4])
    assert eg.last_val(str(tmp_path)) == {"val_mlm": 6.5, "val_unigram": 7.0}
    (tmp_path / "mlm").mkdir()
    assert eg.last_val(str(tmp_path / "mlm")) == {}  # no log
    (tmp_path / "log.jsonl").write_text('{"iter": 0, "mlm": 9.0}\n')
    assert eg.lambda_curve(str(tmp_path)) is None


def test_geometry_cli_on_glue_fixture(tiny_ckpts, glue_dir, corpus, tmp_path):
    early = tmp_path / "out-hybrid-early"  # the hybrid as a run stopped at iter 30 of 100 leaves it
    early.mkdir()
    torch.save({**torch.load(os.path.join(tiny_ckpts[1], "ckpt.pt"), weights_only=True), "iter_num": 30,
                "max_iters": 100}, early / "ckpt.pt")
    r = run_cli("eval_geometry.py", tiny_ckpts[0], str(early), f"--glue_dir={glue_dir}", f"--dataset={corpus}",
                f"--data_dir={tmp_path}/data", f"--report_dir={tmp_path}", "--n_boot=100", "--n_folds=3",
                "--poolings=mean,attention", "--unfinished=True")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.load(open(tmp_path / "geometry.json"))
    stats = {(g["set"], g["stat"]) for g in out["geometry"]}
    assert ("stsb", "uniformity") in stats and ("corpus", "alpha") in stats
    assert {a["pairs"] for a in out["alignment"]} == {"stsb", "mrpc", "mnli-dev_matched", "mnli-dev_mismatched"}
    assert {b["figure"] for b in out["balance"]} == {"gap", "rho_sem", "rho_lex", "rho_sem-rho_lex"}
    assert all(d["p"] <= 1 for d in out["geometry_diffs"])
    mlm = out["checkpoints"][0]["label"]  # every balance figure is compared, hybrid against the MLM reference
    bd = {d["figure"]: d for d in out["balance_diffs"] if (d["a"], d["b"]) == ("out-hybrid-early", mlm)}
    assert set(bd) == {b["figure"] for b in out["balance"]} and all(0 <= d["p"] <= 1 for d in bd.values())
    report = (tmp_path / "REPORT.md").read_text()
    assert "## Alignment" in report and "p=" in report and "## The paper's claims, checked" in report
    assert "| 30 of 100 (unfinished) |" in report and "UNFINISHED: out-hybrid-early is at iter 30 of the 100" in report
    assert {c["verdict"] for c in out["claims"]} == {"inconclusive"}  # one seed each
    for png in ("spectra.png", "uniformity_alignment.png", "lexical_probes.png"):
        assert (tmp_path / png).stat().st_size > 1000
    # the checkpoints stripped of their weights (probe.results_only), as an earlier GPU session leaves them,
    # give the same report from the cache alone
    stubs = [str(tmp_path / "stub" / os.path.basename(p)) for p in (tiny_ckpts[0], str(early))]
    for p, s in zip((tiny_ckpts[0], str(early)), stubs):
        probe.results_only(p, s)
    r = run_cli("eval_geometry.py", *stubs, f"--glue_dir={glue_dir}", f"--dataset={corpus}",
                f"--data_dir={tmp_path}/data", f"--report_dir={tmp_path}/stub", "--n_boot=100", "--n_folds=3",
                "--poolings=mean,attention", "--unfinished=True")
    assert r.returncode == 0, r.stderr[-3000:]
    again = json.load(open(tmp_path / "stub" / "geometry.json"))
    for k in ("geometry", "geometry_diffs", "alignment", "lexical", "balance", "claims", "lambda"):
        assert again[k] == out[k], k
