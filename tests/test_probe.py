"""probe.py: the probes (against scikit-learn where it is installed), pooling, the embedding cache and its
keys, encode(), the baselines and the CLI."""

import inspect
import os
import re
import shutil
import subprocess
import sys

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import ROOT, read_json, run_here
import configurator
from configurator import InputError
import model
import probe
import stats


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


def test_joint_fit_converges_at_weak_l2_like_a_separate_fit():
    """A weak-L2 problem (1000 x 256, L2 1e-5, nearly separable: slow to converge) fitted jointly with
    stronger penalties reaches its own optimum: the objective and the predictions of a separate fit (one
    round of L-BFGS stops 14% above it)."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(1000, 256, generator=g)
    y = (X[:, :8].sum(1) + 0.5 * torch.randn(1000, generator=g) > 0).long()  # nearly separable
    grid = probe.L2_GRID  # 1e-5 first
    W = probe.fit_logreg(X, y, 2, grid)
    alone = probe.fit_logreg(X, y, 2, 1e-5)[0]

    def objective(w, l2):
        logits = X @ w[:-1] + w[-1]
        return (torch.nn.functional.cross_entropy(logits, y) + l2 * w[:-1].pow(2).sum()).item()
    assert objective(W[0], 1e-5) == pytest.approx(objective(alone, 1e-5), rel=1e-2)
    assert (probe.logreg_predict(W[0], X) == probe.logreg_predict(alone, X)).float().mean() > 0.99


def test_cv_folds_standardise_with_their_training_rows_only():
    """One fold of the joint CV fit (globally standardised X, the fold's penalty weighted by its variances)
    predicts as a fit on the fold's own standardisation does."""
    g = torch.Generator().manual_seed(0)
    X = 3 + torch.randn(300, 6, generator=g) * torch.tensor([1.0, 5.0, 0.2, 1.0, 2.0, 1.0])
    y = (X[:, 0] - X[:, 2] * 4 + torch.randn(300, generator=g) > -9).long()  # both classes
    Xg, = probe.standardize(X)
    train = torch.ones(300, dtype=torch.bool)
    train[:60] = False
    weight = (train.float() / train.sum())[:, None]
    W = probe.fit_logreg(Xg, y, 2, [0.1], weight, Xg[train].std(0).pow(2)[None])[0]
    Xtr, Xte = probe.standardize(X[train], X[~train])
    ref = probe.fit_logreg(Xtr, y[train], 2, 0.1)[0]
    torch.testing.assert_close(Xg[~train] @ W[:-1] + W[-1], Xte @ ref[:-1] + ref[-1], atol=1e-3, rtol=1e-3)


def test_cv_picks_the_penalty_by_the_tasks_metric():
    """On imbalanced labels with a weak signal (14% positive, as CoLA's trap), accuracy prefers the penalty
    that predicts the majority class everywhere (MCC 0); selection by MCC keeps a probe that says
    something."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(400, 30, generator=g)
    y = (X[:, 0] + 1.5 * torch.randn(400, generator=g) > 2.2).long()
    l2_acc, oof_acc = probe.cv_select(X, y, "cls", 2, k=5)
    l2_mcc, oof_mcc = probe.cv_select(X, y, "cls", 2, k=5, metric=stats.matthews)
    assert stats.matthews(y.numpy(), oof_acc.numpy()) == 0 and l2_acc == probe.L2_GRID[-1]
    assert stats.matthews(y.numpy(), oof_mcc.numpy()) > 0.1 and l2_mcc < l2_acc


def test_folds_are_stratified_by_class_and_cover_every_example_once():
    y = np.array([0] * 90 + [1] * 10)  # a rare class: 2 per fold, never 0 or 4
    test_folds = probe.folds(len(y), 5, seed=3, y=y)
    assert sorted(np.concatenate(test_folds).tolist()) == list(range(100))
    assert [int((y[t] == 1).sum()) for t in test_folds] == [2] * 5
    assert [len(t) for t in probe.folds(100, 3)] == [34, 33, 33]  # without labels: a seeded split
    assert not np.array_equal(probe.folds(100, 5, seed=0, y=y)[0], probe.folds(100, 5, seed=1, y=y)[0])


def three_classes(n=300, d=6, seed=0):
    """Features on unequal scales and offsets, and three classes with a noisy linear boundary."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g) * torch.tensor([1.0, 3.0, 0.5, 1.0, 2.0, 1.0]) + 2
    return X, (X @ torch.randn(d, 3, generator=g) + 2 * torch.randn(n, 3, generator=g)).argmax(1)


def test_logistic_and_ridge_probes_minimise_scikit_learns_objective():
    """Ours: mean CE + l2 ||W||^2, bias free; scikit-learn: C sum CE + ||W||^2 / 2, so C = 1 / (2 n l2) for
    the multinomial and, for two classes (one weight vector, ours the difference of two), C = 1 / (n l2).
    Ridge: mean SE + l2 ||w||^2 is scikit-learn's alpha = n l2. Probabilities within 1e-4, weights 1e-4."""
    linear = pytest.importorskip("sklearn.linear_model")
    X, y = three_classes()
    X, = probe.standardize(X)
    n, l2 = len(X), 1e-2
    for labels, C in ((y, 1 / (2 * n * l2)), ((y == 1).long(), 1 / (n * l2))):
        W = probe.fit_logreg(X, labels, int(labels.max()) + 1, l2)[0]
        ref = linear.LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(X.numpy(), labels.numpy())
        ours = torch.softmax(X @ W[:-1] + W[-1], 1).numpy()
        np.testing.assert_allclose(ours, ref.predict_proba(X.numpy()), atol=1e-4)
    target = X @ torch.arange(6.0) + torch.randn(n, generator=torch.Generator().manual_seed(1))
    w = probe.fit_ridge(X, target, l2)
    ref = linear.Ridge(alpha=n * l2).fit(X.numpy(), target.numpy())
    np.testing.assert_allclose(w[:-1].numpy(), ref.coef_, atol=1e-4)
    assert w[-1].item() == pytest.approx(ref.intercept_, abs=1e-4)


def test_the_l2_strength_cv_picks_what_scikit_learn_fits_per_fold_pick():
    """The joint CV fit (one L-BFGS over the k folds, each fold's standardisation folded into its penalty)
    picks the strength, and predicts out of fold, as k separate scikit-learn fits on each fold's own
    standardisation do."""
    linear = pytest.importorskip("sklearn.linear_model")
    X, y = three_classes()
    chosen, oof = probe.cv_select(X, y, "cls", 3, k=5, seed=0)
    Xn, yn = X.double().numpy(), y.numpy()
    scores, preds = [], []
    for l2 in probe.L2_GRID:
        p = np.zeros(len(yn), dtype=np.int64)
        for test in probe.folds(len(yn), 5, 0, yn):
            train = np.setdiff1d(np.arange(len(yn)), test)
            mu, sd = Xn[train].mean(0), Xn[train].std(0, ddof=1)
            fit = linear.LogisticRegression(C=1 / (2 * len(train) * l2), tol=1e-10, max_iter=10000)
            p[test] = fit.fit((Xn[train] - mu) / sd, yn[train]).predict((Xn[test] - mu) / sd)
        scores.append(stats.accuracy(yn, p))
        preds.append(p)
    j = max(range(len(scores)), key=lambda j: (scores[j], probe.L2_GRID[j]))  # ties: the stronger penalty
    assert chosen == probe.L2_GRID[j] and (oof.numpy() == preds[j]).mean() >= 0.99


def test_logistic_and_ridge_probes_reach_the_minimum_of_their_stated_objectives():
    """ANALYSIS.md's objectives without scikit-learn: at the fitted weights the gradient is zero of mean CE +
    l2 ||W||^2 (logistic) and of mean squared error + l2 ||w||^2 (ridge), the biases free of the penalty."""
    X, y = three_classes()
    X, = probe.standardize(X)
    X, l2 = X.double(), 0.1
    W = probe.fit_logreg(X, y, 3, l2)[0].double().requires_grad_()
    loss = torch.nn.functional.cross_entropy(X @ W[:-1] + W[-1], y) + l2 * W[:-1].pow(2).sum()
    assert torch.autograd.grad(loss, W)[0].abs().max() < 1e-4  # fit_logreg stops below 1e-5; float32 weights
    target = X @ torch.arange(6.0).double() + torch.randn(len(X), generator=torch.Generator().manual_seed(1))
    w = probe.fit_ridge(X, target, l2).requires_grad_()
    loss = (X @ w[:-1] + w[-1] - target).pow(2).mean() + l2 * w[:-1].pow(2).sum()
    assert torch.autograd.grad(loss, w)[0].abs().max() < 1e-10


def test_the_joint_cv_fit_predicts_as_separate_fits_on_each_folds_own_standardisation():
    """The scikit-learn oracle's twin without it: cv_select's one joint L-BFGS over the k folds picks the
    strength, and predicts out of fold, as k separate fit_logreg calls on each fold's own standardisation.
    Few, noisy examples in many dimensions put the pick at a penalty that matters, and a few outlying rows
    make each fold's scales differ from the whole set's."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(150, 30, generator=g) * (torch.rand(30, generator=g) * 3 + 0.2) + 2
    y = (X @ torch.randn(30, 3, generator=g) + 6 * torch.randn(150, 3, generator=g)).argmax(1)
    X[:6] *= 8  # whichever fold tests them trains on rows of a much smaller spread
    chosen, oof = probe.cv_select(X, y, "cls", 3, k=5, seed=0)
    scores, preds = [], []
    for l2 in probe.L2_GRID:
        p = torch.zeros(len(y), dtype=torch.long)
        for test in probe.folds(len(y), 5, 0, y.numpy()):
            train = np.setdiff1d(np.arange(len(y)), test)
            Xtr, Xte = probe.standardize(X[train], X[test])
            p[test] = probe.logreg_predict(probe.fit_logreg(Xtr, y[train], 3, l2)[0], Xte)
        scores.append(stats.accuracy(y.numpy(), p.numpy()))
        preds.append(p)
    j = max(range(len(scores)), key=lambda j: (scores[j], probe.L2_GRID[j]))
    assert chosen == probe.L2_GRID[j] and (oof == preds[j]).float().mean() >= 0.99


def test_a_dev_prediction_depends_on_the_train_split_and_on_that_example_alone():
    """Dev is standardised by the train split's statistics: a dev example's prediction is the same whichever
    other dev examples are scored beside it."""
    X, y = three_classes(n=400)
    target = X @ torch.arange(6.0)
    for kind, labels in (("cls", y), ("reg", target)):
        whole, _ = probe.fit_linear(X[:300], labels[:300], X[300:], kind, 3, k=3)
        part, _ = probe.fit_linear(X[:300], labels[:300], X[300:310], kind, 3, k=3)
        torch.testing.assert_close(part, whole[:10])


def test_ridge_recovers_a_linear_map():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(500, 8, generator=g)
    y = X @ torch.arange(8.0) + 3
    w = probe.fit_ridge(X, y, 1e-6)
    torch.testing.assert_close(w, torch.cat([torch.arange(8.0), torch.tensor([3.0])]), atol=1e-3, rtol=1e-3)


def test_pair_features_are_infersents_and_symmetric_where_they_should_be():
    u, v = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 1.0]])
    uv, vu = probe.pair_features(u, v), probe.pair_features(v, u)
    torch.testing.assert_close(uv, torch.tensor([[1.0, -2.0, 3.0, 1.0, 2.0, 3.0, 3.0, -2.0]]))  # u v |u-v| uv
    torch.testing.assert_close(vu[:, 4:], uv[:, 4:])


class RecordingEncoder(torch.nn.Module):
    """Records each sentence's real token ids as it is given them; its states are the ids themselves, so a
    pooled vector says which sentence it came from."""

    def __init__(self, block_size):
        super().__init__()
        self.config = model.EncoderConfig(vocab_size=32128, block_size=block_size, n_layer=1, n_head=1,
                                          n_embd=1)
        self.seen = []

    def forward(self, idx, mask):
        self.seen += [row[m].tolist() for row, m in zip(idx, mask)]
        return idx[..., None].float()


def test_a_sentence_enters_the_encoder_as_cls_tokens_sep_cut_to_the_block_size():
    tok = probe.data.get_tokenizer()
    enc = RecordingEncoder(block_size=8)
    texts = ["one two three four five six seven eight nine ten", "a b c", "Hi."]  # longest first
    pooled, _, lens, truncated = probe.forward_sentences(enc, tok, texts, ("first", "mean"), batch_size=2)
    want = [[tok.cls_id] + tok.encode(t)[:6] + [tok.sep_id] for t in texts]
    assert sorted(enc.seen) == sorted(want) and lens.tolist() == [len(w) for w in want] and truncated == 1
    assert pooled["first"].flatten().tolist() == [tok.cls_id] * 3  # back in input order
    torch.testing.assert_close(pooled["mean"].flatten(), torch.tensor([sum(w) / len(w) for w in want]))


def test_encoder_pooling_ignores_padding():
    torch.manual_seed(0)
    config = model.EncoderConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)
    enc = model.Encoder(config).eval()
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


def test_attentive_pooling_ignores_padded_states():
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    att = probe.AttentiveProbe(32, 2, pair=False)
    with torch.no_grad():
        att.query.normal_()
    h = torch.randn(2, 10, 32)
    h2 = h.clone()
    h2[1, 6:] = 100.0
    torch.testing.assert_close(att.pool(h, mask), att.pool(h2, mask))


def test_attentive_weights_are_a_softmax_of_scaled_dot_products_over_the_real_tokens():
    """Each token's weight is softmax(h . q / sqrt(width)) over the sentence's real tokens; padding gets 0."""
    att = probe.AttentiveProbe(4, 2, pair=False)
    with torch.no_grad():
        att.query.copy_(torch.tensor([1.0, -1.0, 0.5, 2.0]))
    h = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(0))
    w = att.weights(h, torch.tensor([[True, True, False]]))
    torch.testing.assert_close(w[0], torch.cat([torch.softmax(h[0, :2] @ att.query / 2, 0), torch.zeros(1)]))


def token_feats(n=120, width=8, seed=0):
    """n sentences of 3 to 8 random token states, as Embedder stores them: states and offsets."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(3, 9, (n,), generator=g)
    return {"states": torch.randn(int(lens.sum()), width, generator=g).half(),
            "offsets": torch.cat([torch.zeros(1, dtype=torch.long), lens.cumsum(0)])}


def attentive_held_out(n, seed=0):
    """The examples train_attentive holds out to stop early: the first tenth of its seeded permutation (its
    own draw, repeated here)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max(1, n // 10)]


def test_the_attentive_probe_comes_back_at_its_best_epoch_on_its_held_out_tenth():
    """Early stopping keeps the best epoch's weights: trained for more epochs on noise labels, where later
    epochs overfit, the returned probe's loss on the held-out tenth of its examples never rises."""
    feats, y = token_feats(), np.random.default_rng(0).integers(0, 2, 120)
    held_out, losses = attentive_held_out(120), []
    for epochs in (1, 2, 4, 8):
        att, norm = probe.train_attentive((feats, None), y, "cls", 2, seed=0, lr=0.1, max_epochs=epochs,
                                          patience=8)
        with torch.no_grad():
            logits = att(probe.padded(feats, held_out, norm))
        losses.append(torch.nn.functional.cross_entropy(logits, torch.as_tensor(y)[held_out]).item())
    assert losses == sorted(losses, reverse=True)


def test_the_attentive_probes_held_out_tenth_never_enters_a_gradient_step(monkeypatch):
    """Early stopping reads examples the probe is not fitted on: the seeded tenth that scores each epoch is
    out of every training batch (those run with gradients), and every other example is in one."""
    feats, y = token_feats(), np.arange(120) % 2
    fitted_on, padded = set(), probe.padded

    def spy(f, idx, norm=None, device="cpu"):
        if torch.is_grad_enabled():
            fitted_on.update(idx.tolist())
        return padded(f, idx, norm, device)
    monkeypatch.setattr(probe, "padded", spy)
    probe.train_attentive((feats, None), y, "cls", 2, seed=0, max_epochs=2)
    assert fitted_on == set(range(120)) - set(attentive_held_out(120).tolist())


def test_each_folds_attentive_probe_is_trained_on_the_other_folds_only(monkeypatch):
    """On a probing set the attentive probe is k-fold: each fold is scored by a probe fitted without it."""
    feats, y = token_feats(), np.arange(120) % 3
    trained_on, fit = [], probe.train_attentive

    def spy(train, labels, kind, n_classes, idx=None, seed=0, device="cpu"):
        trained_on.append(set(np.asarray(idx).tolist()))
        return fit(train, labels, kind, n_classes, idx, seed, device, max_epochs=1)
    monkeypatch.setattr(probe, "train_attentive", spy)
    out = probe.run_cv_eval(lambda name, texts: feats, "toy", {"a": ["-"] * 120, "y": y}, "attention",
                            probe.Protocol(n_folds=4))
    assert out["p"].shape == (120,)
    test_folds = probe.folds(120, 4, 0, y)
    assert trained_on == [set(range(120)) - set(t.tolist()) for t in test_folds]


def test_embedder_batches_like_single_sentences_and_caches(tiny_ckpts):
    emb = probe.Embedder(tiny_ckpts[0], batch_size=4)
    texts = ["a short one.", "a much longer sentence that needs more padding in its batch than the rest.",
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


def test_embedding_progress_is_redrawn_on_a_terminal_and_one_whole_line_in_a_log(tiny_ckpts, monkeypatch,
                                                                                  capsys):
    emb, texts = probe.Embedder(tiny_ckpts[0], batch_size=2), [f"sentence number {i}." for i in range(5)]
    name = os.path.basename(tiny_ckpts[0])
    emb.embed("log", texts)
    assert capsys.readouterr().err == f"  embedding log ({name}, online): 5 sentences\n"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    emb.embed("tty", texts)
    redraws = "".join(f"\r  embedding tty ({name}, online) {k}/5" for k in (2, 4, 5))
    assert capsys.readouterr().err == redraws + "\n"


def test_a_cache_file_cut_short_is_computed_again(tiny_ckpts, tmp_path, capsys):
    """A cached file a copy cut short (results_only killed, a full disk on another machine) is a cache miss
    said in one line, not a traceback from torch.load or pickle."""
    texts = ["a short one.", "another sentence here."]
    emb = probe.Embedder(tiny_ckpts[0], cache_root=str(tmp_path))
    vectors, result = emb("cut", texts), emb.results("cut-res", ("data",), lambda: {"p": 1})
    for f in os.listdir(emb.cache_dir):
        path = os.path.join(emb.cache_dir, f)
        with open(path, "r+b") as fh:
            fh.truncate(os.path.getsize(path) // 2)
    capsys.readouterr()
    again = probe.Embedder(tiny_ckpts[0], cache_root=str(tmp_path))
    torch.testing.assert_close(again("cut", texts)["mean"], vectors["mean"])
    assert again.results("cut-res", ("data",), lambda: {"p": 2}) == {"p": 2} != result
    err = capsys.readouterr().err
    assert re.search(r"-cut-\w+\.pt cannot be read \(\w+\): computing it again", err)
    assert re.search(r"-cut-res-\w+\.pkl cannot be read \(\w+\): computing it again", err)


def test_results_are_cached_per_checkpoint_and_refit_when_their_inputs_change(tiny_ckpts):
    calls = []

    def fit():
        calls.append(1)
        return {"y": np.arange(3), "p": np.arange(3) * len(calls)}
    proto = probe.Protocol(n_folds=5)
    emb = probe.Embedder(tiny_ckpts[0])
    a = emb.results("t-res", probe.probe_inputs(proto, "data-1"), fit)
    b = probe.Embedder(tiny_ckpts[0]).results("t-res", probe.probe_inputs(proto, "data-1"), fit)  # from disk
    assert len(calls) == 1 and np.array_equal(a["p"], b["p"])
    emb.results("t-res", probe.probe_inputs(proto, "data-2"), fit)  # other data: fitted again
    c = emb.results("t-res", probe.probe_inputs(probe.Protocol(n_folds=6), "data-2"), fit)  # another setting
    assert len(calls) == 3 and np.array_equal(c["p"], np.arange(3) * 3)
    cache = os.path.join(tiny_ckpts[0], "analysis_cache")
    assert len([f for f in os.listdir(cache) if "-t-res-" in f]) == 1  # the stale results are gone
    emb.results("t-res-sub", "inputs", fit)  # a name that extends another's is not its stale result
    emb.results("t-res", "other inputs", fit)
    assert len([f for f in os.listdir(cache) if "-t-res-sub-" in f]) == 1


def test_a_run_trained_again_to_the_same_step_is_embedded_again(tiny_ckpts, tmp_path):
    """The cache key holds the checkpoint's save time beside its step: a run removed and trained again in the
    same out_dir (other weights, the same iter_num) does not read the first run's vectors."""
    out = tmp_path / "out-again"
    shutil.copytree(tiny_ckpts[0], out, ignore=shutil.ignore_patterns("analysis_cache"))
    first = probe.Embedder(str(out))("t-again", ["a short one."])["mean"]
    ckpt = torch.load(out / "ckpt.pt", weights_only=True)
    ckpt["model"] = {k: v + 1.0 for k, v in ckpt["model"].items()}
    torch.save({**ckpt, "saved": ckpt.get("saved", 0) + 1.0}, out / "ckpt.pt")
    assert not torch.allclose(probe.Embedder(str(out))("t-again", ["a short one."])["mean"], first)


def test_a_stale_result_removed_by_the_other_script_first_is_no_error(tiny_ckpts, monkeypatch):
    """probe.py and eval_geometry.py may fill one cache at once: both may find the same stale file to remove."""
    emb, listdir = probe.Embedder(tiny_ckpts[0]), os.listdir
    monkeypatch.setattr(os, "listdir", lambda d: [*listdir(d), "online-t-race-0123456789ab.pkl"])  # gone since
    assert emb.results("t-race", "inputs", lambda: {"score": 1}) == {"score": 1}


def test_a_cache_file_that_cannot_be_written_is_one_line_and_leaves_no_part(tiny_ckpts, monkeypatch):
    """A full disk while caching: one line, no partial file, the results cached before kept."""
    emb = probe.Embedder(tiny_ckpts[0])
    emb.results("t-kept", "inputs", lambda: {"score": 1})
    cache = os.path.join(tiny_ckpts[0], "analysis_cache")
    before = sorted(os.listdir(cache))

    def full(obj, f):
        f.write(b"part of a pickle")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(probe.pickle, "dump", full)
    with pytest.raises(InputError, match=r"cannot write .*-t-full-\w+\.pkl \(No space left on device\): mend the "
                                         r"cause \(a full disk\?\), then run the same command again"):
        emb.results("t-full", "inputs", lambda: {"score": 2})
    assert sorted(os.listdir(cache)) == before


def test_cache_keys_hold_the_data_and_the_source_of_the_code_as_imported(monkeypatch):
    assert probe.digest(np.arange(3)) != probe.digest(np.arange(3.0)) != probe.digest(np.arange(1, 4.0))
    assert probe.digest(probe.fit_logreg) != probe.digest(probe.fit_ridge)
    for f in (probe.fit_logreg, probe.train_attentive, stats.spearman, probe.folds):
        assert f in probe.PROBE_CODE
    for f in (probe.forward_sentences, model.pool, model.Encoder):
        assert f in probe.EMBED_CODE
    key = probe.digest(probe.PROBE_CODE)  # a file edited while an analysis runs does not change its keys
    monkeypatch.setattr(probe.inspect, "getsource", lambda f: "edited since")
    assert probe.digest(probe.PROBE_CODE) == key


def test_a_class_inspect_cannot_find_is_keyed_by_its_methods():
    """Under `python -m cProfile probe.py` inspect looks for probe's classes in the wrapper's file: the key
    then comes from the methods' source, and still changes with them."""
    def lost(body):
        cls = type("AttentiveProbe", (), {"forward": body})
        cls.__module__ = "os"  # a module with a file that holds no such class
        return cls

    def f(self):
        return 1

    def g(self):
        return 2

    with pytest.raises(OSError):
        inspect.getsource(lost(f))
    assert probe.digest(lost(f)) == probe.digest(lost(f)) != probe.digest(lost(g))


@pytest.mark.parametrize("edited", ["forward_sentences", "pool"])
def test_editing_the_embedding_code_invalidates_cached_vectors_and_results(tiny_ckpts, monkeypatch, edited):
    """Vectors and every result computed from them are keyed on forward_sentences and model.pool (EMBED_CODE):
    an edit to either is embedded and fitted again, never read from a stale cache."""
    texts, calls = ["a short one.", "mid length sentence here."], []
    emb = probe.Embedder(tiny_ckpts[0])
    emb(f"t-edit-{edited}", texts)
    emb.results(f"t-edit-{edited}", "inputs", lambda: calls.append(1))
    fn = probe.forward_sentences if edited == "forward_sentences" else model.pool
    monkeypatch.setitem(probe.SOURCE, fn, probe.SOURCE[fn] + "\n# edited")
    again = probe.Embedder(tiny_ckpts[0])
    embedded = []
    monkeypatch.setattr(again, "embed", lambda name, t: embedded.append(name) or emb.embed(name, t))
    again(f"t-edit-{edited}", texts)
    again.results(f"t-edit-{edited}", "inputs", lambda: calls.append(1))
    assert embedded == [f"t-edit-{edited}"] and len(calls) == 2
    cache = os.path.join(tiny_ckpts[0], "analysis_cache")
    assert len([f for f in os.listdir(cache) if f"-t-edit-{edited}-" in f and f.endswith(".pt")]) == 1


def test_encode_is_the_analysis_embedding_for_your_own_code(tiny_ckpts):
    texts = ["a short one.", "a much longer sentence that needs more padding than the rest.", "x"]
    X = probe.encode(tiny_ckpts[0], texts, pooling="max", batch_size=2, device="cpu")
    assert isinstance(X, np.ndarray) and X.shape == (3, 32) and X.dtype == np.float32
    np.testing.assert_allclose(X, probe.Embedder(tiny_ckpts[0]).embed("ref", texts)["max"].numpy(), atol=1e-6)
    for i, t in enumerate(texts):  # input order kept through the length-sorted batches; padding changes none
        alone = probe.encode(tiny_ckpts[0], [t], pooling="max")[0]
        np.testing.assert_allclose(alone, X[i], atol=1e-5, rtol=1e-5)
    U = probe.encode(tiny_ckpts[0], texts, normalize_embeddings=True, show_progress_bar=False,
                     task_name="STS12")
    np.testing.assert_allclose(np.linalg.norm(U, axis=1), 1.0, atol=1e-5)  # MTEB-style keywords accepted
    enc, _ = model.load_encoder(tiny_ckpts[0])  # a loaded encoder with its tokenizer gives the same vectors
    loaded = probe.encode(enc, texts, pooling="max", tok=probe.data.get_tokenizer())
    np.testing.assert_allclose(loaded, X, atol=1e-6)
    from_generator = probe.encode(enc, (t for t in texts), pooling="max", tok=probe.data.get_tokenizer(),
                                  batch_size=np.int64(2))  # NumPy's integers are whole numbers too
    np.testing.assert_allclose(from_generator, X, atol=1e-6)  # any iterable of strings, read once
    T = enc.config.block_size  # a long sentence is cut where pre-training cut: its first T - 2 tokens
    words = " ".join(f"w{i}" for i in range(4 * T))
    cut = probe.data.get_tokenizer().decode(probe.data.get_tokenizer().encode(words)[:T - 2])
    np.testing.assert_allclose(*probe.encode(enc, [words, cut]), atol=1e-5)


def test_encode_refuses_what_it_cannot_honour(tiny_ckpts):
    texts = ["a short one.", "x"]
    enc, _ = model.load_encoder(tiny_ckpts[0])
    with pytest.raises(ValueError, match="tokenizer"):
        probe.encode(enc, texts, tok=probe.data.get_tokenizer(8192))
    with pytest.raises(ValueError, match="pooling"):
        probe.encode(tiny_ckpts[0], texts, pooling="attention")
    with pytest.raises(TypeError):
        probe.encode(tiny_ckpts[0], "one string")
    with pytest.raises(TypeError, match="poolng"):
        probe.encode(tiny_ckpts[0], texts, poolng="max")
    # a library call raises what a caller can catch, saying which input is wrong
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*no-such-run"):
        probe.encode("no-such-run", texts)
    with pytest.raises(ValueError, match=r"sentences\[1\] is NoneType, not a string"):
        probe.encode(enc, ["fine", None], tok=probe.data.get_tokenizer())
    with pytest.raises(ValueError, match=r"^batch_size=0: sentences per forward pass"):
        probe.encode(enc, texts, batch_size=0)
    # named by the keyword a caller passes, not by the scripts' --encoder
    with pytest.raises(ValueError, match=r"no target encoder \(objective='mlm'\): use which=online$"):
        probe.encode(tiny_ckpts[0], texts, which="target")
    with pytest.raises(ValueError, match=r"no target encoder \(objective='mlm'\): use --encoder=online$"):
        probe.Embedder(tiny_ckpts[0], "target")  # the analysis scripts' setting


def test_attention_pooled_vectors_combine_the_raw_token_states(tiny_ckpts):
    """For geometry, attention pooling must be a convex combination of the raw token states, as the other
    poolings are: a zero query (uniform weights) gives exactly mean pooling, and any query stays inside the
    states' per-dimension range. Standardised states ((h - mu) / sd) would give neither."""
    feats = probe.Embedder(tiny_ckpts[0])("t-attn", ["a short one.", "a mid length sentence, longer.", "x"])
    mu, sd = probe.token_stats(feats)
    mu0, sd0 = probe.token_stats(feats, idx=[0])  # the training rows' statistics only: here sentence 0's
    torch.testing.assert_close(mu0.cpu(), feats["states"][:feats["offsets"][1]].float().mean(0))
    torch.testing.assert_close(sd0.cpu(), feats["states"][:feats["offsets"][1]].float().std(0))
    att = probe.AttentiveProbe(feats["states"].size(1), 2, pair=False)
    pooled = probe.attentive_apply(att, (mu, sd), (feats, None), pooled=True)
    torch.testing.assert_close(pooled, feats["mean"].float(), atol=1e-3, rtol=1e-3)  # states stored in fp16
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
    assert (p == 1).all() and stats.f1(dev_y, p) == pytest.approx(2 * 0.6 / 1.6)
    assert stats.matthews(dev_y, p) == 0


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
    """script with args, in this process; in a process of its own where env (the HF hub's settings, read when
    datasets is first imported) must be seen."""
    if env is None:
        return run_here(script, *args)
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


@pytest.fixture(scope="module")
def glue_report(tiny_ckpts, glue_dir, tmp_path_factory):
    """probe.py run once from the command line on the GLUE fixture: (probe.json, the report folder)."""
    out = tmp_path_factory.mktemp("glue-report")
    r = run_cli("probe.py", *tiny_ckpts, f"--glue_dir={glue_dir}", f"--report_dir={out}", "--n_boot=200",
                "--poolings=mean,attention", "--n_folds=3")
    assert r.returncode == 0, r.stderr[-2000:]
    return read_json(out / "probe.json"), out


def test_a_report_says_where_the_attentive_regression_had_too_few_examples(glue_report):
    """Below probe.ATTENTIVE_REG_MIN STS-B examples the attentive probe's regression can score under zero
    (ANALYSIS.md): a report that holds one says so."""
    out, _ = glue_report
    assert "stsb under attention pooling: trained on 60 examples, fewer than the 1,000 the attentive " \
        "regression needs (below them it can score under zero: ANALYSIS.md)" in out["notes"]


def test_the_glue_report_scores_every_task_by_its_own_metric(glue_report):
    out, folder = glue_report
    evals = {(s["eval"], s["metric"]) for s in out["scores"]}
    assert {("sst2", "acc"), ("mrpc", "f1"), ("mnli-m", "acc"), ("mnli-mm", "acc"), ("cola", "mcc"),
            ("stsb", "spearman"), ("stsb-cos", "pearson")} <= evals
    assert (folder / "probe_scores.png").exists()
    assert "| sst2 | acc | mean |" in (folder / "probe.md").read_text()


def test_each_checkpoint_is_compared_with_the_first_and_random_init_is_the_last_column(glue_report):
    out, _ = glue_report
    labels = [c["label"] for c in out["checkpoints"]]
    assert labels[-1] == "random-init" and len(labels) == 3
    assert {(d["a"], d["b"]) for d in out["diffs"]} == {(labels[1], labels[0]), (labels[2], labels[0])}
    assert len(out["diffs"]) == len(out["scores"]) * 2 // 3  # every figure of the two, against the first
    score = {(s["eval"], s["metric"], s["pooling"], s["ckpt"]): s["score"] for s in out["scores"]}
    for d in out["diffs"]:
        key = (d["eval"], d["metric"], d["pooling"])
        assert d["diff"] == pytest.approx(score[key + (d["a"],)] - score[key + (d["b"],)], abs=1e-9)


def test_every_score_has_its_trivial_baseline_beside_it(glue_report):
    out, _ = glue_report
    base = {(b["eval"], b["metric"]): b["score"] for b in out["baselines"]}
    assert {(s["eval"], s["metric"]) for s in out["scores"]} <= set(base)
    assert base[("sst2", "acc")] == pytest.approx(50.0) and base[("cola", "mcc")] == 0  # a balanced dev
    assert base[("mrpc", "f1")] == pytest.approx(100 * 2 * 0.5 / 1.5)  # all-positive on a half-positive dev
    assert base[("stsb-cos", "spearman")] == base[("stsb", "spearman")]


def settings(**changes):
    """probe.py's settings as its __main__ passes them to run(); threads=0 leaves torch's threads alone."""
    return SimpleNamespace(**{**configurator.settings(vars(probe)), "threads": 0, **changes})


def test_a_subset_of_the_tasks_scores_as_in_the_whole_suite_and_needs_only_its_own_files(
        glue_report, tiny_ckpts, glue_dir, tmp_path, monkeypatch):
    """--tasks probes the tasks named, in GLUE's order, with the same figures as the whole suite; its
    results are cached beside the whole suite's, which stay; a folder without the other tasks' files is then
    enough. Without GLUE they are an error, not the probing sets in their place."""
    full, _ = glue_report
    for task in ("SST-2", "STS-B"):
        shutil.copytree(os.path.join(glue_dir, task), tmp_path / "glue" / task)
    with pytest.raises(InputError, match=r"MRPC/train.tsv not found: .*or probe only the tasks that are "
                                         r"there: --tasks=sst2,stsb$"):
        probe.run(tiny_ckpts, settings(glue_dir=str(tmp_path / "glue"), report_dir=str(tmp_path / "r0")))
    with pytest.raises(InputError, match=r"SST-2/train.tsv not found: .*leave it empty to use the HF hub$"):
        probe.run(tiny_ckpts, settings(glue_dir=str(tmp_path), report_dir=str(tmp_path / "r0")))  # none there
    caches = [os.path.join(d, "analysis_cache") for d in tiny_ckpts]
    before = {os.path.join(c, f) for c in caches for f in os.listdir(c)}
    args = dict(n_boot=200, poolings="mean", n_folds=3, glue_dir=str(tmp_path / "glue"))
    out = probe.run(tiny_ckpts, settings(**args, tasks="stsb, sst2", report_dir=str(tmp_path / "r")))
    assert list(dict.fromkeys(s["eval"] for s in out["scores"])) == ["sst2", "stsb", "stsb-cos"]
    whole = {(s["eval"], s["metric"], s["ckpt"]): (s["score"], s["lo"], s["hi"])
             for s in full["scores"] if s["pooling"] == "mean"}
    assert {(s["eval"], s["metric"], s["ckpt"]): (s["score"], s["lo"], s["hi"]) for s in out["scores"]} == \
        {k: v for k, v in whole.items() if k[0] in ("sst2", "stsb", "stsb-cos")}
    after = {os.path.join(c, f) for c in caches for f in os.listdir(c)}
    assert before < after and all("-glue-sst2+stsb-mean-" in f for f in after - before if f.endswith(".pkl"))
    assert "GLUE tasks probed: sst2, stsb of sst2, mrpc, mnli, cola, stsb (--tasks)" in out["notes"]
    assert not any(n.startswith("stsb under attention") for n in out["notes"])  # mean pooling: no attentive probe
    monkeypatch.setattr(probe.data, "load_glue", lambda *args: None)  # no --glue_dir, and no hub
    with pytest.raises(InputError, match=r"^--tasks=sst2: GLUE is unavailable .*: pass --glue_dir="):
        probe.run(tiny_ckpts, settings(tasks="sst2", report_dir=str(tmp_path / "r1")))


def test_a_stripped_checkpoint_reports_from_its_cache_alone(tiny_ckpts, glue_dir, tmp_path, capsys):
    # what a later GPU session has of an earlier one's checkpoints: no weights, the cached results beside them
    args = dict(glue_dir=glue_dir, n_boot=200, poolings="mean,attention", n_folds=3)
    torch.set_num_threads(3)  # a notebook's own setting: run() takes --threads for its work, then gives it back
    probe.run(tiny_ckpts, settings(**args, threads=1, report_dir=f"{tmp_path}/full"))
    assert torch.get_num_threads() == 3
    stubs = [str(tmp_path / os.path.basename(p)) for p in tiny_ckpts]  # the same names: the same labels
    for p, s in zip(tiny_ckpts, stubs):
        probe.results_only(p, s)
    assert all(os.path.getsize(os.path.join(s, "ckpt.pt")) < 20_000 for s in stubs)  # its weights: MBs
    copied = [f for s in stubs for f in os.listdir(os.path.join(s, "analysis_cache"))]
    assert copied and all(f.endswith(".pkl") for f in copied)
    capsys.readouterr()
    probe.run(stubs, settings(**args, report_dir=f"{tmp_path}/stub"))
    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("probing ")]
    assert [re.search(r" \((\d) of (\d), \d+s so far\)$", line).groups() for line in progress] == \
        [(str(k), "6") for k in range(1, 7)]  # 2 checkpoints and random-init, 2 poolings each; no time left
    full, stub = (read_json(tmp_path / d / "probe.json") for d in ("full", "stub"))
    assert stub["scores"] == full["scores"] and stub["diffs"] == full["diffs"]
    os.makedirs(tmp_path / "taken" / "probe.md")  # a report file that cannot be written, as on a full disk
    with pytest.raises(InputError, match=r"^cannot write the report into .*taken \(Is a directory\): mend the "
                                         r"cause \(a full disk\?\), then run the same command again"):
        probe.run(stubs, settings(**args, report_dir=f"{tmp_path}/taken"))
    # anything not in the cache needs the weights: one line that says so, not a fallback, and before the
    # checkpoints that have their weights are fitted
    capsys.readouterr()
    with pytest.raises(InputError, match="stripped of its weights"):
        probe.run([tiny_ckpts[1], stubs[0]], settings(**{**args, "n_folds": 4},
                                                      report_dir=f"{tmp_path}/other"))
    assert f"probing {os.path.basename(tiny_ckpts[1])}" not in capsys.readouterr().err
    with pytest.raises(InputError, match="is a stripped checkpoint"):
        model.load_encoder(stubs[0])


def test_results_only_takes_the_cache_from_where_the_analysis_wrote_it(tiny_ckpts, tmp_path):
    # analysed with --cache_dir: the results-only copy carries that cache, and answers from it alone
    root, stub = str(tmp_path / "cache"), str(tmp_path / "stub" / os.path.basename(tiny_ckpts[0]))
    emb = probe.Embedder(tiny_ckpts[0], cache_root=root)
    assert emb.results("figure", {"setting": 1}, lambda: {"score": 0.5}) == {"score": 0.5}
    assert not os.path.exists(os.path.join(tiny_ckpts[0], "analysis_cache", os.listdir(emb.cache_dir)[0]))
    probe.results_only(tiny_ckpts[0], stub, cache_root=root)
    never = lambda: pytest.fail("recomputed: the copy lost the cache")  # noqa: E731
    assert probe.Embedder(stub).results("figure", {"setting": 1}, never) == {"score": 0.5}


def test_a_results_only_copy_carries_the_runs_log(tiny_ckpts, tmp_path):
    """The report's training section (λ, RankMe, the last val loss against the unigram line) reads log.jsonl:
    a weightless copy keeps it."""
    run = tmp_path / "out-run"
    shutil.copytree(tiny_ckpts[0], run, ignore=shutil.ignore_patterns("analysis_cache"))
    (run / "log.jsonl").write_text('{"iter": 0, "val_mlm": 9.0, "val_unigram": 7.0}\n')
    probe.results_only(str(run), str(tmp_path / "copy"))
    assert probe.data.last_val(str(tmp_path / "copy")) == {"val_mlm": 9.0, "val_unigram": 7.0}


def test_checkpoints_analysed_one_by_one_give_the_joint_report_from_their_caches(tiny_ckpts, glue_dir, tmp_path):
    """The README's recipe for several cores: each checkpoint in a run of its own (random-init with the first),
    then the joint run computes nothing (their weightless copies answer from the caches alone) and reports
    what one joint run over the checkpoints does."""
    args = dict(glue_dir=glue_dir, n_boot=200, poolings="mean", n_folds=3, cache_dir=str(tmp_path / "cache"))
    probe.run([tiny_ckpts[0]], settings(**args, report_dir=f"{tmp_path}/one"))
    probe.run([tiny_ckpts[1]], settings(**args, random_init=False, report_dir=f"{tmp_path}/two"))
    stubs = [str(tmp_path / "stub" / os.path.basename(p)) for p in tiny_ckpts]
    for p, s in zip(tiny_ckpts, stubs):
        probe.results_only(p, s, cache_root=args["cache_dir"])
    joint = probe.run(stubs, settings(**{**args, "cache_dir": ""}, report_dir=f"{tmp_path}/joint"))
    whole = probe.run(tiny_ckpts, settings(**{**args, "cache_dir": str(tmp_path / "whole-cache")},
                                           report_dir=f"{tmp_path}/whole"))
    assert len(joint["scores"]) == len(whole["scores"]) > 0
    assert joint["scores"] == whole["scores"] and joint["diffs"] == whole["diffs"]


def test_probe_cli_errors_are_one_line(tiny_ckpts, tmp_path):
    r = run_cli("probe.py", tiny_ckpts[0], f"--glue_dir={tmp_path}/nope")
    assert r.returncode != 0 and r.stderr.strip().startswith("error:") and "Traceback" not in r.stderr
    # the others as run() meets them: an InputError with its one line (the CLI prints it, no traceback)
    with pytest.raises(FileNotFoundError, match="^no checkpoint at"):  # before the report folder is made
        probe.run([str(tmp_path / "missing")], settings(report_dir=str(tmp_path / "report")))
    assert not os.path.exists(tmp_path / "report")
    with pytest.raises(InputError, match="^--poolings=cls"):
        probe.run([tiny_ckpts[0]], settings(poolings="cls"))
    each_once = settings(poolings="max, mean,max", report_dir=str(tmp_path))
    assert probe.check_args(["out"], each_once) == ["max", "mean"]


@pytest.mark.parametrize("key, value, says", [
    ("n_folds", 1, "a whole number >= 2"), ("n_boot", 0, ">= 40"), ("max_train", 3, ">= 5 (n_folds=5"),
    ("batch_size", 0, ">= 1"), ("threads", -1, ">= 0"), ("seed", 1.5, "a whole number"), ("n_boot", True, ">= 40"),
    ("encoder", "ema", "use online"), ("device", "gpu", "not a device torch knows"),
    ("tasks", "sst2,qnli", "use a comma-separated subset of sst2,mrpc,mnli,cola,stsb"),
    ("tasks", " ,", "subset"),
    ("text_column", "abstract", "for local JSON and columnar files; embedded is read as it is"),
    ("device", "mps", "use cpu, cuda or cuda:N (this code computes its collapse watch and probes in float64"),
    pytest.param("device", "cuda", "no CUDA device here: pass --device=cpu",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here"))])
def test_a_bad_analysis_setting_is_one_line_before_any_work(tiny_ckpts, tmp_path, key, value, says):
    """A fold count of 1 would fit probes on no examples; each bad value stops with what to pass instead."""
    with pytest.raises(InputError, match=f"^--{key}=.*{re.escape(says)}"):
        probe.run([tiny_ckpts[0]], settings(report_dir=str(tmp_path), **{key: value}))
    assert os.listdir(tmp_path) == []


def test_run_labels_number_names_that_two_runs_share_or_that_name_a_seed_group(tmp_path):
    paths = [str(tmp_path / d / n / "ckpt.pt") for d, n in (("x", "out-a"), ("x", "out-a-s1"), ("x", "out-b"),
                                                  ("y", "out-b"), ("x", "out-a-s2"), ("x", probe.RANDOM))]
    labels = probe.run_labels(paths)
    assert labels == ["out-a#0", "out-a-s1", "out-b#2", "out-b#3", "out-a-s2", "random-init#5"]
    assert stats.run_groups(labels)["out-a"] == ["out-a-s1", "out-a-s2"]  # no clash left for the report
    assert list(probe.palette(labels)) == labels


def test_progress_says_about_how_long_the_rest_takes_from_the_results_computed_here(monkeypatch, capsys):
    now = [0.0]
    monkeypatch.setattr(probe.time, "time", lambda: now[0])

    class Fake:  # an Embedder whose 'a' results are cached (read at once) and whose 'b' results take 60 s
        def __init__(self, stripped):
            self.stripped = stripped

        def results(self, name, inputs, fn):
            return fn()

    def compute(emb, pooling):
        now[0] += 0 if emb.stripped else 60
        return pooling

    out = probe.per_checkpoint(["a", "b"], [Fake(True), Fake(False)], ["mean", "max"], "x", (), compute)
    assert out == {"a": {"mean": "mean", "max": "max"}, "b": {"mean": "mean", "max": "max"}}
    assert [line.split(" (")[1] for line in capsys.readouterr().err.splitlines()] == [
        "1 of 4, 0s so far)", "2 of 4, 0s so far)", "3 of 4, 0s so far)",
        "4 of 4, 1m00s so far, about 1m00s left)"]  # the one result computed so far took a minute
    assert configurator.clock(3725) == "1h02m" and configurator.clock(59.6) == "1m00s"


def test_a_checkpoint_twice_and_an_unwritable_report_dir_are_refused_before_any_work(tiny_ckpts, tmp_path):
    with pytest.raises(InputError, match="^the same checkpoint given twice"):
        probe.run([tiny_ckpts[0], os.path.join(tiny_ckpts[0], "ckpt.pt")], settings(report_dir=str(tmp_path)))
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(InputError, match="^--report_dir=.*a-file cannot be written"):
        probe.run([tiny_ckpts[0]], settings(report_dir=f"{tmp_path}/a-file"))
    with pytest.raises(InputError, match="^--report_dir='': name the folder for the report"):
        probe.run([tiny_ckpts[0]], settings(report_dir=""))


def test_an_unwritable_cache_is_refused_before_any_work_and_cache_dir_moves_it(tiny_ckpts, glue_dir, tmp_path, capsys):
    run = tmp_path / "run"
    os.makedirs(run)
    shutil.copyfile(os.path.join(tiny_ckpts[0], "ckpt.pt"), run / "ckpt.pt")
    (run / "analysis_cache").write_text("a file where the cache would go")  # unwritable, even for root
    args = dict(glue_dir=glue_dir, n_boot=50, poolings="mean", n_folds=3, random_init=False)
    with pytest.raises(InputError, match=r"cannot write the analysis cache .*run/analysis_cache .*--cache_dir="):
        probe.run([str(run)], settings(**args, report_dir=f"{tmp_path}/report"))
    assert "probing" not in capsys.readouterr().err  # refused before the first fit
    report = probe.run([str(run)], settings(**args, report_dir=f"{tmp_path}/report", cache_dir=f"{tmp_path}/c"))
    (folder,) = os.listdir(tmp_path / "c")
    assert folder.startswith("run-") and any(f.endswith(".pkl") for f in os.listdir(tmp_path / "c" / folder))
    cached = {f.path: f.stat().st_mtime_ns for f in os.scandir(tmp_path / "c" / folder)}
    again = probe.run([str(run)], settings(**args, report_dir=f"{tmp_path}/again", cache_dir=f"{tmp_path}/c"))
    assert again["scores"] == report["scores"]  # from the cache there, untouched
    assert {f.path: f.stat().st_mtime_ns for f in os.scandir(tmp_path / "c" / folder)} == cached


def test_an_unfinished_run_is_refused_unless_asked_for_and_then_labelled(tiny_ckpts, tmp_path):
    ckpt = torch.load(os.path.join(tiny_ckpts[0], "ckpt.pt"), weights_only=True)

    def saved(name, **fields):
        d = tmp_path / name
        d.mkdir()
        torch.save({**ckpt, **fields}, d / "ckpt.pt")
        return str(d)

    killed = saved("killed", iter_num=700, max_iters=1600)  # as train.py saves a run stopped at iter 700
    done = saved("done", iter_num=1600, max_iters=1600)
    older = saved("older", iter_num=1600, config={"objective": "mlm", "max_iters": 1600, "max_flops": 0.0})
    budget = saved("budget", iter_num=5, config={"objective": "mlm", "max_iters": 100000, "max_flops": 1e12})
    with pytest.raises(InputError, match=r"unfinished run: .*killed \(iter 700 of 1,600\).*--unfinished"):
        probe.embedders([done, killed], "online", "cpu", 8, True, 0)
    # a checkpoint without max_iters is judged by its config's; a FLOP budget's count was not saved: unknown
    labels, embs = probe.embedders([done, older, budget], "online", "cpu", 8, True, 0)
    assert [e.finished() for e in embs] == [True, True, True, True] and embs[2].max_iters is None
    labels, embs = probe.embedders([done, killed], "online", "cpu", 8, True, 0, unfinished=True)
    assert [e.summary(l)["finished"] for l, e in zip(labels, embs)] == [True, False, True]  # random-init last
    notes = probe.checkpoint_notes(labels, embs, seed=0, random_init=False)
    assert len(notes) == 1 and notes[0].startswith("UNFINISHED: killed is at iter 700 of the 1,600")
    r = run_cli("probe.py", killed, "--glue_dir=nope")
    assert r.returncode != 0 and r.stderr.strip().startswith("error: unfinished run")
    assert "Traceback" not in r.stderr


def test_probe_cli_without_glue_uses_probing_sets(tiny_ckpts, corpus, tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    r = run_cli("probe.py", tiny_ckpts[0], f"--dataset={corpus}", f"--data_dir={tmp_path}/data",
                f"--report_dir={tmp_path}", "--n_boot=100", "--poolings=mean", "--n_folds=3", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sum("GLUE is unavailable" in line for line in r.stderr.splitlines()) == 1
    out = read_json(tmp_path / "probe.json")
    assert out["mode"] == "probing"
    assert {s["eval"] for s in out["scores"]} == {"sentlen", "wordcontent", "bshift", "mft"}


def test_each_glue_task_picks_its_l2_strength_by_its_own_metric(monkeypatch):
    """The L2 strength is cross-validated on the metric the task is scored by: F1 for MRPC, MCC for the
    imbalanced CoLA, Spearman for STS-B, accuracy (cv_select's default) for the others."""
    picked = {}

    def fit_linear(Xtr, ytr, Xdev, kind, n_classes, k, seed, metric):
        picked[task] = metric
        return torch.zeros(len(Xdev)), 1.0
    monkeypatch.setattr(probe, "fit_linear", fit_linear)
    emb = lambda name, texts: {"mean": torch.randn(len(texts), 4)}  # noqa: E731
    for task in ("sst2", "mrpc", "mnli", "cola", "stsb"):
        pairs = task in ("mrpc", "mnli", "stsb")
        split = {"a": ["x"] * 6, "b": ["y"] * 6 if pairs else None, "y": np.arange(6) % 2}
        probe.run_glue_eval(emb, (task, task, split, split, "tr", "dev"), "mean", probe.Protocol())
    assert picked == {"sst2": None, "mrpc": stats.f1, "mnli": None, "cola": stats.matthews,
                      "stsb": stats.spearman}


def test_a_difference_that_survives_the_fdr_is_starred():
    d = {"diff": 1.25, "lo": 0.5, "hi": 2.0, "p": 0.004, "q": 0.02, "survives": True}
    assert probe.diff_cell(d) == "+1.2 [+0.5, +2.0], p=0.004, q=0.020 *"
    assert probe.diff_cell({**d, "q": 0.08, "survives": False}) == "+1.2 [+0.5, +2.0], p=0.004, q=0.080"
    untested = {k: v for k, v in d.items() if k not in ("q", "survives")}  # outside any FDR family
    assert probe.diff_cell(untested) == "+1.2 [+0.5, +2.0], p=0.004"


def test_every_checkpoint_is_scored_on_the_same_resamples():
    """The intervals of a difference are paired: two checkpoints with the same predictions get the same
    interval each, a difference of exactly 0 on every resample, and permutation p 1."""
    rng = np.random.default_rng(0)
    same = {"mean": {"sst2": {"y": rng.integers(0, 2, 200), "p": rng.integers(0, 2, 200)}}}
    scores, diffs = probe.score_all({"a": same, "b": same}, ["a", "b"], n_boot=200, seed=0)
    assert [(s["lo"], s["hi"]) for s in scores if s["ckpt"] == "a"] == \
        [(s["lo"], s["hi"]) for s in scores if s["ckpt"] == "b"]
    d, = diffs
    assert (d["a"], d["b"], d["diff"], d["lo"], d["hi"], d["p_perm"]) == ("b", "a", 0.0, 0.0, 0.0, 1.0)


def test_the_table_over_seeds_gives_each_groups_mean_and_sd_and_its_paired_t_against_the_first():
    """probe.md's and REPORT.md's 'Across training seeds': the hybrid beats the MLM by 3, 2 and 4.5 points on
    seeds 1-3, so mean 3.17, sd 1.26, se 0.73, t = 4.36 on 2 degrees of freedom: p 0.049, and the 95% CI
    3.17 ± 4.30 x 0.73 = [0.04, 6.29] (4.30: t's 97.5% quantile at df 2)."""
    values = {"mlm-s1": 60.0, "mlm-s2": 62.0, "mlm-s3": 61.0, "hyb-s1": 63.0, "hyb-s2": 64.0, "hyb-s3": 65.5}
    keys = ("eval", "metric", "pooling")
    scores = [{"eval": "sst2", "metric": "acc", "pooling": "mean", "ckpt": c, "score": v}
              for c, v in values.items()]
    assert probe.seed_table(stats.across_seeds(scores, list(values), keys)).splitlines()[2] == \
        "| sst2 | acc | mean | 61.0 ± 1.0 (3) | 64.2 ± 1.3 (3) | +3.2 [+0.0, +6.3], paired t=4.36, df=2.0, " \
        "p=0.049 |"
    one_each = stats.across_seeds(scores[:1] + scores[3:4], ["mlm-s1", "hyb-s1"], keys)
    assert probe.seed_table(one_each) == ""  # no group of two seeds: no table


def test_a_clear_difference_gets_a_small_permutation_p():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    good, bad = (np.where(rng.random(300) < acc, y, 1 - y) for acc in (0.9, 0.55))
    results = {c: {"mean": {"sst2": {"y": y, "p": p}}} for c, p in (("bad", bad), ("good", good))}
    _, (d,) = probe.score_all(results, ["bad", "good"], n_boot=200, seed=0)
    assert d["a"] == "good" and d["p_perm"] == 1 / 201  # no swap of the pairs moves them as far apart


def test_senteval_summary_mean_weighted_mean_and_all():
    rng = np.random.default_rng(0)
    y1, y2 = rng.normal(size=10), rng.normal(size=30)
    p1, p2 = y1 + rng.normal(size=10), -y2 + 0.1 * rng.normal(size=30)
    sts = {"STS12": {"f1": {"y": y1}, "f2": {"y": y2}}}
    res = {"ck": {"mean": {"STS12.f1": {"y": y1, "p": p1}, "STS12.f2": {"y": y2, "p": p2},
                           "STS12.all": {"y": np.concatenate([y1, y2]), "p": np.concatenate([p1, p2])}}}}
    row, = probe.senteval_summary(res, sts)
    r1, r2 = stats.spearman(y1, p1), stats.spearman(y2, p2)
    assert row["mean"] == pytest.approx(100 * (r1 + r2) / 2)
    assert row["wmean"] == pytest.approx(100 * (10 * r1 + 30 * r2) / 40)
    both = stats.spearman(np.concatenate([y1, y2]), np.concatenate([p1, p2]))
    assert row["all"] == pytest.approx(100 * both)


def test_probe_cli_with_senteval(tiny_ckpts, senteval_dir, corpus, tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    r = run_cli("probe.py", tiny_ckpts[0], f"--senteval_dir={senteval_dir}", f"--dataset={corpus}",
                f"--data_dir={tmp_path}/data", f"--report_dir={tmp_path}", "--n_boot=100", "--poolings=mean",
                "--n_folds=3", "--random_init=False", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    out = read_json(tmp_path / "probe.json")
    evals = {s["eval"] for s in out["scores"]}
    assert {"STS12.MSRpar", "STS12.surprise.OnWN", "STS12.all", "STS16.headlines", "STS16.all", "sickr-cos",
            "sicke"} <= evals
    assert {(r["dataset"], r["files"], r["pairs"]) for r in out["senteval"]} == {("STS12", 2, 21 + 26),
                                                                                 ("STS16", 1, 21)}
    base = {(b["eval"], b["metric"]) for b in out["baselines"]}
    assert ("STS16.headlines", "spearman") in base and ("sicke", "acc") in base
    assert "SentEval STS" in (tmp_path / "probe.md").read_text()
    r = run_cli("probe.py", tiny_ckpts[0], f"--senteval_dir={tmp_path}/none")
    assert r.returncode != 0 and r.stderr.strip().startswith("error:") and "Traceback" not in r.stderr


ARMS = [f"out-{arm}-cpu-s{s}" for arm in ("mlm", "hybrid", "hybunc", "mlmflop") for s in (1337, 1338, 1339)]


def test_palette_gives_every_checkpoint_its_own_colour_in_its_groups_hue():
    # a CPU-scale report has 4 arms x 3 seeds and the random encoder: a seed group is read as one hue
    from matplotlib.colors import rgb_to_hsv
    labels = ARMS + ["random-init"]
    colors = probe.palette(labels)
    assert list(colors) == labels and len(set(colors.values())) == 13
    hue = {label: round(float(rgb_to_hsv(c)[0]), 6) for label, c in colors.items()}
    assert [len({hue[label] for label in ARMS[i:i + 3]}) for i in range(0, 12, 3)] == [1, 1, 1, 1]
    assert len({hue[ARMS[i]] for i in range(0, 12, 3)}) == 4  # four groups, four hues
    assert colors["random-init"] == (0.5, 0.5, 0.5)
    assert len(set(probe.palette([f"run-{i}" for i in range(18)]).values())) == 18  # no seeds: a hue each


def test_a_seed_group_is_one_legend_entry():
    names = probe.legend_labels(ARMS + ["random-init"])
    assert [n for n in names.values() if not n.startswith("_")] == [
        "out-mlm-cpu-s* (3 seeds)", "out-hybrid-cpu-s* (3 seeds)", "out-hybunc-cpu-s* (3 seeds)",
        "out-mlmflop-cpu-s* (3 seeds)", "random-init"]
    assert probe.legend_labels(["out-a", "out-b-s1"]) == {"out-a": "out-a", "out-b-s1": "out-b-s1"}


@pytest.mark.filterwarnings("ignore:No artists")  # the bars are recorded, not drawn
def test_the_scores_plot_has_a_bar_per_seed_group_at_its_mean_and_the_baseline(tmp_path, monkeypatch):
    import matplotlib.axes
    drawn = []  # (panel, heights, keywords) of each bar and baseline call
    record = lambda ax, x, heights, *args, **kw: drawn.append((ax, list(heights), kw))  # noqa: E731
    monkeypatch.setattr(matplotlib.axes.Axes, "bar", record)
    monkeypatch.setattr(matplotlib.axes.Axes, "hlines", lambda ax, y, *x, **kw: record(ax, None, y, **kw))
    labels = ["out-mlm-s1", "out-mlm-s2", "out-hyb-s1", "out-hyb-s2", "random-init"]
    def row(c, v, pooling="mean"):
        return {"eval": "sst2", "metric": "acc", "pooling": pooling, "ckpt": c, "score": v, "lo": v - 1,
                "hi": v + 2}

    scores = [row(c, v) for c, v in zip(labels, (60.0, 62.0, 50.0, 54.0, 55.0))]
    scores.append({**row("out-mlm-s1", 10.0, "max"), "eval": "cola", "metric": "mcc"})  # a second panel
    probe.plot_scores(scores, labels, tmp_path / "p.png", base={("sst2", "acc"): 50.9, ("cola", "mcc"): 0.0})
    mean_panel = drawn[0][0]
    assert [(h[0], kw["label"]) for ax, h, kw in drawn if ax is mean_panel] == [
        (61.0, "out-mlm-s* (2 seeds)"), (52.0, "out-hyb-s* (2 seeds)"), (55.0, "random-init"),
        (50.9, "baseline (no model)")]  # cola's baseline only where cola is scored
    assert "yerr" not in drawn[0][2] and drawn[2][2]["yerr"][:, 0].tolist() == [1.0, 2.0]  # one run: its CI
    assert [h for ax, h, kw in drawn if ax is not mean_panel and "linestyles" in kw] == [[0.0]]
    drawn.clear()
    probe.plot_scores(scores[-2:-1], labels[-1:], tmp_path / "p.png")
    assert [(h, kw["label"]) for ax, h, kw in drawn] == [([55.0], "random-init")]
    assert (tmp_path / "p.png").exists()
