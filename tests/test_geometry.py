"""eval_geometry.py: geometry statistics against closed-form values, resampled statistics, the CLI."""

import json
import math

import numpy as np
import pytest
import torch

from test_probe import run_cli
import eval_geometry as eg


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


def test_resampled_statistics_match_direct_computation():
    X = torch.randn(60, 8, dtype=torch.float64)
    idx = np.random.default_rng(0).integers(0, 60, (3, 60))
    stats, _ = eg.set_geometry(X, idx)
    for b in range(3):
        # a resample with duplicates: the counts formula equals recomputing on the resampled rows
        # (duplicate rows are distinct draws, so they do form pairs)
        Xb = X[idx[b]]
        assert stats["uniformity"][1][b] == pytest.approx(eg.uniformity(Xb).item(), rel=1e-6)
        assert stats["anisotropy"][1][b] == pytest.approx(eg.anisotropy(Xb).item(), rel=1e-6)
        lam, sv = eg.spectra(Xb)
        ref = eg.spectral_stats(lam, sv, len(Xb))
        assert stats["eff_rank"][1][b] == pytest.approx(ref["eff_rank"].item(), rel=1e-4)
    # the point estimate is the plain computation
    assert stats["uniformity"][0] == pytest.approx(eg.uniformity(X).item())


def test_lambda_curve_reads_hybrid_logs_only(tmp_path):
    (tmp_path / "log.jsonl").write_text('{"iter": 0, "mlm": 9.0, "jepa": 1.0, "lambda": 0.5}\n{"iter": 0, "val_mlm": 9.1}\n'
                                        '{"iter": 10, "mlm": 8.0, "jepa": 0.5, "lambda": 0.4}\n{"iter": 2')
    assert eg.lambda_curve(str(tmp_path)) == ([0, 10], [0.5, 0.4])
    (tmp_path / "log.jsonl").write_text('{"iter": 0, "mlm": 9.0}\n')
    assert eg.lambda_curve(str(tmp_path)) is None


def test_geometry_cli_on_glue_fixture(tiny_ckpts, glue_dir, corpus, tmp_path):
    r = run_cli("eval_geometry.py", *tiny_ckpts, f"--glue_dir={glue_dir}", f"--dataset={corpus}",
                f"--data_dir={tmp_path}/data", f"--report_dir={tmp_path}", "--n_boot=100", "--n_folds=3",
                "--poolings=mean,attention")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.load(open(tmp_path / "geometry.json"))
    stats = {(g["set"], g["stat"]) for g in out["geometry"]}
    assert ("stsb", "uniformity") in stats and ("corpus", "alpha") in stats
    assert {a["pairs"] for a in out["alignment"]} == {"stsb", "mrpc", "mnli-dev_matched", "mnli-dev_mismatched"}
    assert {b["figure"] for b in out["balance"]} == {"gap", "rho_sem", "rho_lex", "rho_sem-rho_lex"}
    assert all(d["p"] <= 1 for d in out["geometry_diffs"])
    report = (tmp_path / "REPORT.md").read_text()
    assert "## Alignment" in report and "p=" in report
    for png in ("spectra.png", "uniformity_alignment.png", "lexical_probes.png"):
        assert (tmp_path / png).stat().st_size > 1000
