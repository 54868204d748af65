"""probe.py: metrics against hand-computed values, the significance machinery, the probes, pooling and the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
import model
import probe


def test_metrics_against_hand_computed_values():
    y = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    p = np.array([1, 1, 0, 0, 0, 1, 1, 0])  # tp 3, tn 3, fp 1, fn 1
    assert probe.accuracy(y, p) == pytest.approx(6 / 8)
    assert probe.f1(y, p) == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert probe.matthews(y, p) == pytest.approx((3 * 3 - 1 * 1) / np.sqrt(4 * 4 * 4 * 4))
    assert probe.matthews(y, np.ones_like(y)) == 0  # an empty marginal: 0, not nan
    x = np.array([1.0, 2.0, 2.0, 4.0])
    np.testing.assert_allclose(probe.rankdata(x), [1, 2.5, 2.5, 4])
    # Spearman = Pearson of the ranks [1, 2.5, 2.5, 4] and [1, 2, 3, 4]: 4.5 / sqrt(4.5 * 5)
    assert probe.spearman(x, np.array([10.0, 20.0, 30.0, 40.0])) == pytest.approx(4.5 / np.sqrt(4.5 * 5))
    assert probe.pearson(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 7.0])) == pytest.approx(0.99339927)


def test_metrics_vectorise_over_resamples():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, (5, 50)), rng.integers(0, 2, (5, 50))
    a, b = rng.normal(size=(5, 50)), rng.normal(size=(5, 50))
    for i in range(5):
        assert probe.matthews(y, p)[i] == pytest.approx(probe.matthews(y[i], p[i]))
        assert probe.spearman(a, b)[i] == pytest.approx(probe.spearman(a[i], b[i]))


def test_bootstrap_ci_covers_the_true_mean():
    rng = np.random.default_rng(0)
    hits = 0
    for s in range(200):
        x = rng.normal(1.0, 2.0, 100)
        _, lo, hi = probe.bootstrap_ci(lambda v: v.mean(-1), x, n_boot=500, seed=s)
        hits += lo <= 1.0 <= hi
    assert 0.90 <= hits / 200 <= 0.99


def test_paired_tests_small_p_for_different_large_for_identical():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    good = np.where(rng.random(300) < 0.9, y, 1 - y)  # ~90% accurate
    bad = np.where(rng.random(300) < 0.55, y, 1 - y)  # ~55%
    assert probe.permutation_test(probe.accuracy, y, good, bad) < 0.01
    assert probe.permutation_test(probe.accuracy, y, good, good) == 1.0
    d = probe.paired_bootstrap(probe.accuracy, (y, good), (y, bad))
    assert d["p"] < 0.01 and d["lo"] > 0
    d = probe.paired_bootstrap(probe.accuracy, (y, good), (y, good))
    assert d["p"] == 1.0 and d["diff"] == 0


def test_logistic_probe_separable_and_shuffled():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(600, 16, generator=g)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()
    pred, _ = probe.fit_linear(X[:400], y[:400], X[400:], "cls", 2, k=3)
    assert (pred == y[400:]).float().mean() > 0.97
    y_shuffled = y[torch.randperm(600, generator=g)]
    pred, _ = probe.fit_linear(X[:400], y_shuffled[:400], X[400:], "cls", 2, k=3)
    assert 0.35 < (pred == y_shuffled[400:]).float().mean() < 0.65


def test_joint_fit_equals_separate_fits():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(200, 8, generator=g), torch.randint(0, 3, (200,), generator=g)
    W = probe.fit_logreg(X, y, 3, [1e-2, 1e-1])
    for j, l2 in enumerate([1e-2, 1e-1]):
        torch.testing.assert_close(W[j], probe.fit_logreg(X, y, 3, l2)[0], atol=1e-3, rtol=1e-3)


def test_ridge_recovers_a_linear_map():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(500, 8, generator=g)
    y = X @ torch.arange(8.0) + 3
    w = probe.fit_ridge(X, y, 1e-6)
    torch.testing.assert_close(w, torch.cat([torch.arange(8.0), torch.tensor([3.0])]), atol=1e-3, rtol=1e-3)


def test_pooling_ignores_padding():
    torch.manual_seed(0)
    enc = model.Encoder(model.EncoderConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()
    idx = torch.randint(0, 60, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    other = idx.clone()
    other[1, 6:] = 7  # change only padded positions
    for pooling in ("mean", "max", "first"):
        torch.testing.assert_close(enc.embed(idx, mask, pooling), enc.embed(other, mask, pooling))
    # and the padded sentence equals the same sentence alone, unpadded
    alone = enc.embed(idx[1:, :6], mask[1:, :6], "mean")
    torch.testing.assert_close(enc.embed(idx, mask, "mean")[1:], alone, atol=1e-5, rtol=1e-5)
    # the attentive probe's pooling ignores padded states too
    att = probe.AttentiveProbe(32, 2, pair=False)
    with torch.no_grad():
        att.query.normal_()
    h = torch.randn(2, 10, 32)
    h2 = h.clone()
    h2[1, 6:] = 100.0
    torch.testing.assert_close(att.pool(h, mask), att.pool(h2, mask))


def test_embedder_batches_like_single_sentences_and_caches(tiny_ckpts):
    emb = probe.Embedder(tiny_ckpts[0], batch_size=4)
    texts = ["a short one.", "a much longer sentence that needs a lot more padding in its batch than the rest.",
             "mid length sentence here.", "x", "another one"]
    f = emb("t-test", texts)
    for i, t in enumerate(texts):
        g = emb.embed("single", [t])
        torch.testing.assert_close(f["mean"][i], g["mean"][0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(f["max"][i], g["max"][0], atol=1e-5, rtol=1e-5)
    cached = [fn for fn in os.listdir(os.path.join(tiny_ckpts[0], "analysis_cache")) if "-t-test-" in fn]
    assert len(cached) == 1
    again = probe.Embedder(tiny_ckpts[0])("t-test", texts)  # from disk
    torch.testing.assert_close(again["mean"], f["mean"])


def test_attention_pooled_vectors_combine_the_raw_token_states(tiny_ckpts):
    """For geometry, attention pooling must be a convex combination of the raw token states, as the other
    poolings are: a zero query (uniform weights) gives exactly mean pooling, and any query stays inside the
    states' per-dimension range. Standardised states ((h - mu) / sd) would give neither."""
    feats = probe.Embedder(tiny_ckpts[0])("t-attn", ["a short one.", "mid length sentence here, a bit longer.", "x"])
    mu, sd = probe.token_stats(feats)
    att = probe.AttentiveProbe(feats["states"].size(1), 2, pair=False).to(probe.device)
    pooled = probe.attentive_apply(att, (mu, sd), (feats, None), pooled=True)
    torch.testing.assert_close(pooled, feats["mean"].float(), atol=1e-3, rtol=1e-3)  # states are stored in fp16
    with torch.no_grad():
        att.query.normal_(std=3.0)
    pooled = probe.attentive_apply(att, (mu, sd), (feats, None), pooled=True)
    for i in range(3):
        h = feats["states"][feats["offsets"][i]:feats["offsets"][i + 1]].float()
        assert (pooled[i] >= h.min(0).values - 1e-4).all() and (pooled[i] <= h.max(0).values + 1e-4).all()


class ListTokenizer:
    """Token ids given directly: 'texts' are already lists of ids."""
    def encode_batch(self, texts):
        return [list(t) for t in texts]


def test_trivial_baselines_against_hand_computed_values():
    # bag-of-tokens: counts [0, 2, 1] and [0, 1, 0, 1]: dot 2, norms sqrt(5) and sqrt(2)
    cos = probe.bag_of_tokens_cosine([[1, 1, 2], [5]], [[1, 3], [5, 5]], ListTokenizer())
    np.testing.assert_allclose(cos, [2 / np.sqrt(10), 1.0])
    # the train split's majority class for every dev example; on MRPC (positive majority) that is
    # all-positive, whose F1 is 2p / (1 + p) for a positive rate p, far from 0
    train_y, dev_y = np.array([1, 1, 0]), np.array([1, 0, 0, 1, 1])
    p = probe.constant_prediction(train_y, dev_y)
    assert (p == 1).all() and probe.f1(dev_y, p) == pytest.approx(2 * 0.6 / 1.6)
    assert probe.matthews(dev_y, p) == 0


def test_random_init_encoder_is_the_config_freshly_initialised_and_cached_apart(tiny_ckpts):
    texts = ["a short one.", "mid length sentence here."]
    trained = probe.Embedder(tiny_ckpts[0])
    rand = probe.Embedder(tiny_ckpts[0], random_init=True, seed=3)
    assert rand.encoder.config == trained.encoder.config and rand.which == "random-init-s3"
    again = probe.Embedder(tiny_ckpts[0], random_init=True, seed=3)
    for a, b in zip(rand.encoder.parameters(), again.encoder.parameters()):
        assert torch.equal(a, b)  # seeded: the same encoder each run
    # fixture 0 is seed 0's init, so the random-init encoder of seed 0 is that checkpoint itself
    zero = probe.Embedder(tiny_ckpts[0], random_init=True, seed=0)
    for a, b in zip(zero.encoder.state_dict().values(), trained.encoder.state_dict().values()):
        assert torch.equal(a, b)
    f_t, f_r = trained("t-rand", texts), rand("t-rand", texts)
    assert not torch.allclose(f_t["mean"], f_r["mean"])  # its own cache entry, not the checkpoint's
    state = torch.get_rng_state()
    probe.Embedder(tiny_ckpts[0])
    after_load = torch.get_rng_state()
    torch.set_rng_state(state)
    probe.Embedder(tiny_ckpts[0], random_init=True, seed=5)
    assert torch.equal(after_load, torch.get_rng_state())  # the global generator moves as for a plain load


def run_cli(script, *args, env=None):
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_probe_cli_on_glue_fixture(tiny_ckpts, glue_dir, tmp_path):
    r = run_cli("probe.py", *tiny_ckpts, f"--glue_dir={glue_dir}", f"--report_dir={tmp_path}", "--n_boot=200",
                "--poolings=mean,attention", "--n_folds=3")
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.load(open(tmp_path / "probe.json"))
    evals = {(s["eval"], s["metric"]) for s in out["scores"]}
    assert {("sst2", "acc"), ("mrpc", "f1"), ("mnli-m", "acc"), ("mnli-mm", "acc"), ("cola", "mcc"),
            ("stsb", "spearman"), ("stsb-cos", "pearson")} <= evals
    assert all(s["lo"] <= s["score"] <= s["hi"] for s in out["scores"])
    assert len(out["diffs"]) == len(out["scores"]) * 2 // 3  # two checkpoints and random-init, each against the first
    assert (tmp_path / "probe_scores.png").exists() and "| sst2 | acc | mean |" in (tmp_path / "probe.md").read_text()
    # the random-init encoder is the last column, and every score has its trivial baseline beside it
    assert [c["label"] for c in out["checkpoints"]][-1] == "random-init"
    base = {(b["eval"], b["metric"]): b["score"] for b in out["baselines"]}
    assert base[("sst2", "acc")] == pytest.approx(50.0) and base[("cola", "mcc")] == 0  # the fixture's balanced dev
    assert base[("mrpc", "f1")] == pytest.approx(100 * 2 * 0.5 / 1.5)  # all-positive on a half-positive dev
    assert base[("stsb-cos", "spearman")] == base[("stsb", "spearman")]


def test_probe_cli_errors_are_one_line(tiny_ckpts, tmp_path):
    r = run_cli("probe.py", tiny_ckpts[0], f"--glue_dir={tmp_path}/nope")
    assert r.returncode != 0 and r.stderr.strip().startswith("error:") and "Traceback" not in r.stderr
    r = run_cli("probe.py", str(tmp_path / "missing"))
    assert r.returncode != 0 and r.stderr.strip().startswith("error:") and "Traceback" not in r.stderr
    r = run_cli("probe.py", tiny_ckpts[0], "--poolings=cls")
    assert r.returncode != 0 and r.stderr.strip().startswith("error:")


def test_probe_cli_without_glue_uses_probing_sets(tiny_ckpts, corpus, tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    r = run_cli("probe.py", tiny_ckpts[0], f"--dataset={corpus}", f"--data_dir={tmp_path}/data",
                f"--report_dir={tmp_path}", "--n_boot=100", "--poolings=mean", "--n_folds=3", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sum("GLUE is unavailable" in line for line in r.stderr.splitlines()) == 1
    out = json.load(open(tmp_path / "probe.json"))
    assert out["mode"] == "probing" and {s["eval"] for s in out["scores"]} == {"sentlen", "wordcontent", "bshift", "mft"}
