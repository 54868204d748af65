"""
Linear probes on frozen sentence embeddings, several checkpoints side by side, every score with a bootstrap
95% CI and every difference with a paired test. ANALYSIS.md defines each protocol; stats.py the statistics.

$ python probe.py out-hybrid-tiny out-mlm-tiny --glue_dir=../shared/data/glue
$ python probe.py out-hybrid-tiny --encoder=target       # the EMA target encoder instead of the online one
$ python probe.py out-hybrid-cpu out-mlm-cpu --glue_dir=... --senteval_dir=SentEval/data/downstream

Beside every score: a trivial baseline (majority class, all-positive MRPC, bag-of-tokens cosine) and, as the
last column, a randomly initialised encoder of the first checkpoint's config (--random_init=False drops it).
With no --glue_dir it tries the HF hub (nyu-mll/glue); without network it probes the SentEval-style probing
sets of the embedded corpus instead. From your own code: `from probe import encode; X = encode(out_dir, texts)`.

The file reads in stages: the probes, the embedding of sentences (cached per checkpoint), the evaluations,
the scores and the report. eval_geometry.py imports the embedding, the probes and the report helpers.
"""

import hashlib
import inspect
import math
import os
import pickle
import shutil
import sys
import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import configurator
import data
import model
import stats
from stats import accuracy, f1, matthews, pearson, spearman

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
random_init = True  # also a randomly initialised encoder of the first checkpoint's config, last column
threads = 1  # torch CPU threads (0 = torch's default): the probes' small matrices gain little from more, and
# slow down many times over when another process shares the cores
unfinished = False  # analyse checkpoints whose run stopped before its max_iters (the reports then say so)
# -----------------------------------------------------------------------------

POOLINGS = ("mean", "max", "first", "attention")
L2_GRID = [10.0 ** e for e in range(-5, 2)]  # 1e-5 ... 1e1
RANDOM = "random-init"  # the label of the randomly initialised encoder


@dataclass(frozen=True)
class Protocol:
    """How the probes are fitted: with the data and the code, what a cached probe result depends on."""
    n_folds: int = 5
    seed: int = 0
    max_train: int = 10000
    device: str = "cpu"


# -----------------------------------------------------------------------------
# linear probes: L2 logistic regression by full-batch L-BFGS, ridge in closed form, k-fold CV of the L2


def standardize(train, *others):
    """Scale features with the train split's mean and std, applied to every split."""
    mu, sd = train.mean(0), train.std(0).clamp(min=1e-6)
    return [(x - mu) / sd for x in (train,) + others]


def pair_features(u, v):
    """InferSent's [u, v, |u - v|, u * v]."""
    return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)


def fit_logreg(X, y, n_classes, l2, weight=None, scale=None, max_iter=300, rounds=10, tol=1e-5):
    """Multinomial logistic regression, full-batch L-BFGS, for P problems on the same rows at once (the k folds
    of a CV share one X, so one fit does them all): problem p minimises
    sum_i weight[i, p] * CE_i + l2[p] * sum_j scale[p, j] * ||W_pj||^2 (bias free). weight defaults to 1/n,
    i.e. mean CE; scale (P, d) to 1. The joint gradient is the problems' side by side, so L-BFGS runs until
    every problem's gradient is below tol, for at most rounds x max_iter iterations.
    Returns weights (P, d + 1, n_classes), bias last."""
    n, d = X.shape
    X = X.double()  # float32 losses stall L-BFGS's line search at gradients ~1e-4, short of the optimum
    l2 = torch.as_tensor(l2, dtype=X.dtype, device=X.device).reshape(-1)
    P = len(l2)
    weight = (torch.full((n, P), 1 / n, device=X.device) if weight is None else weight).double()
    scale = torch.ones(P, d, device=X.device) if scale is None else scale
    penalty = l2[:, None, None] * scale.double()[:, :, None]
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
        print(f"warning: logistic probe not converged after {rounds * max_iter} L-BFGS iterations (largest "
              f"gradient {worst.max().item():.1e} at L2 {l2[worst.argmax()].item():g})", file=sys.stderr)
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


def folds(n, k, seed=0, y=None):
    """k disjoint test folds covering 0..n-1 in a seeded order. With class labels y they are stratified: each
    class is dealt round-robin over the folds, so a rare class (CoLA's, a probing set's) is in every fold."""
    order = np.random.default_rng(seed).permutation(n)
    if y is None:
        return np.array_split(order, k)
    order = order[np.argsort(np.asarray(y)[order], kind="stable")]
    return [order[f::k] for f in range(k)]


def cv_select(X, y, kind, n_classes=2, k=5, seed=0, metric=None):
    """Pick the L2 strength from L2_GRID by k-fold CV on metric(gold, prediction) (higher is better; default
    accuracy, or Spearman for ridge); returns it and each example's out-of-fold prediction at that strength.
    Each fold is standardised with its training rows' statistics only. For the logistic probe the k folds of
    one strength are one joint L-BFGS fit: on globally standardised X, a fold's own standardisation is a
    per-feature rescaling, which the bias absorbs up to the penalty, so the penalty of fold f is weighted per
    feature by (sd_f / sd)^2, and the predictions are those of a fit on the fold's scaling."""
    metric = metric or (spearman if kind == "reg" else accuracy)
    X, = standardize(X)
    test_folds = [torch.as_tensor(t, device=X.device)
                  for t in folds(len(X), k, seed, None if kind == "reg" else y.cpu().numpy())]
    train_masks = [torch.ones(len(X), dtype=torch.bool, device=X.device).index_fill(0, t, False) for t in test_folds]
    oof = torch.zeros(len(L2_GRID), len(X), device=X.device, dtype=X.dtype if kind == "reg" else torch.long)
    if kind == "reg":
        for test, train in zip(test_folds, train_masks):
            Xtr, Xte = standardize(X[train], X[test])
            for j, l2 in enumerate(L2_GRID):
                oof[j, test] = ridge_predict(fit_ridge(Xtr, y[train], l2), Xte)
    else:
        weight = torch.stack([train.float() / train.sum() for train in train_masks], 1)
        scale = torch.stack([X[train].std(0).clamp(min=1e-6).pow(2) for train in train_masks])
        for j, l2 in enumerate(L2_GRID):  # one joint fit of the k folds per strength: alike, so they converge alike
            W = fit_logreg(X, y, n_classes, [l2] * k, weight, scale)
            for f, test in enumerate(test_folds):
                oof[j, test] = logreg_predict(W[f], X[test])
    yy = y.cpu().numpy()
    score = [float(metric(yy, oof[j].cpu().numpy())) for j in range(len(L2_GRID))]
    score = [s if math.isfinite(s) else -math.inf for s in score]
    j = max(range(len(L2_GRID)), key=lambda j: (score[j], L2_GRID[j]))  # ties: the stronger penalty
    return L2_GRID[j], oof[j]


def fit_linear(Xtr, ytr, Xdev, kind, n_classes=2, k=5, seed=0, metric=None):
    """CV the L2 strength on train by metric, refit on all of train, predict dev."""
    l2, _ = cv_select(Xtr, ytr, kind, n_classes, k, seed, metric)
    Xtr, Xdev = standardize(Xtr, Xdev)
    if kind == "reg":
        return ridge_predict(fit_ridge(Xtr, ytr, l2), Xdev), l2
    return logreg_predict(fit_logreg(Xtr, ytr, n_classes, l2)[0], Xdev), l2


# -----------------------------------------------------------------------------
# the attentive probe: the fourth pooling, a learned query over the frozen token states


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


def padded(feats, idx, norm=None, device="cpu"):
    """Token states of sentences idx as a (B, T, C) float batch on device, standardised by norm = (mu, sd)
    where given, and its mask."""
    starts, lens = feats["offsets"][idx], feats["offsets"][idx + 1] - feats["offsets"][idx]
    T = int(lens.max())
    pos = starts[:, None] + torch.arange(T)[None, :]
    mask = torch.arange(T)[None, :] < lens[:, None]
    h = feats["states"][pos.clamp(max=len(feats["states"]) - 1)].to(device).float()
    return (h if norm is None else (h - norm[0]) / norm[1]), mask.to(device)


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
    return h.mean(0), h.std(0).clamp(min=1e-6)


def train_attentive(train, y, kind, n_classes, idx=None, seed=0, device="cpu", lr=1e-2, weight_decay=1e-2,
                    max_epochs=30, patience=3, batch=128):
    """Fit an AttentiveProbe on the token states of train = (feats_a, feats_b or None) at examples idx, with
    AdamW and early stopping on a seeded 10% of them. Returns the probe and the standardisation."""
    idx = np.arange(len(y)) if idx is None else np.asarray(idx)
    feats = [f for f in train if f is not None]
    norm = [t.to(device) for t in token_stats(*feats, idx=idx)]
    g = torch.Generator().manual_seed(seed)
    perm = idx[torch.randperm(len(idx), generator=g).numpy()]
    n_val = max(1, len(perm) // 10)
    val, fit = perm[:n_val], perm[n_val:]
    torch.manual_seed(seed)
    probe = AttentiveProbe(train[0]["states"].size(1), 1 if kind == "reg" else n_classes, len(feats) == 2).to(device)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    y = torch.as_tensor(y, device=device)

    def loss_on(i):
        out = probe(*[padded(f, torch.as_tensor(i), norm, device) for f in feats])
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
    return probe.eval(), norm


@torch.no_grad()
def attentive_apply(probe, norm, feats, idx=None, pooled=False):
    """Predictions of a trained attentive probe, or with pooled=True the sentence vectors of feats[0]: its
    attention weights (computed where it was trained, on standardised states) over the raw token states, a
    convex combination of them like the other poolings, so geometry compares like with like."""
    device = probe.query.device
    idx = np.arange(len(feats[0]["offsets"]) - 1) if idx is None else np.asarray(idx)
    outs = []
    for i in np.array_split(idx, max(1, len(idx) // 512)):
        if pooled:
            h, mask = padded(feats[0], torch.as_tensor(i), None, device)
            outs.append((probe.weights((h - norm[0]) / norm[1], mask).unsqueeze(-1) * h).sum(1))
        else:
            outs.append(probe(*[padded(f, torch.as_tensor(i), norm, device) for f in feats if f is not None]))
    out = torch.cat(outs)
    return out.cpu() if pooled else (out.squeeze(1) if out.size(1) == 1 else out.argmax(1)).cpu()


# -----------------------------------------------------------------------------
# sentences to vectors: one forward pass gives every pooling; encode() for your own code


def progress(msg, done, total):
    print(f"\r  {msg} {done:,}/{total:,}", end="" if done < total else "\n", file=sys.stderr, flush=True)


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
    for s in range(0, len(ids), batch_size):
        batch = order[s:s + batch_size]
        idx = torch.full((len(batch), max(len(ids[i]) for i in batch)), tok.pad_id, dtype=torch.long)
        for r, i in enumerate(batch):
            idx[r, :len(ids[i])] = torch.tensor(ids[i])
        idx = idx.to(device)
        mask = idx != tok.pad_id
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=str(device).startswith("cuda")):
            h = encoder(idx, mask).float()
        for p in pooled:
            for r, v in zip(batch, model.pool(h, mask, p).cpu()):
                pooled[p][r] = v
        for r, i in enumerate(batch if states else []):
            token_states[i] = h[r, :len(ids[i])].half().cpu()
        if name:
            progress(name, min(s + batch_size, len(ids)), len(ids))
    empty = torch.zeros(0, encoder.config.n_embd)
    return ({p: torch.stack(v) if v else empty for p, v in pooled.items()}, token_states,
            torch.tensor([len(i) for i in ids]), sum(len(t) > T - 2 for t in encoded))


def tokenizer_of(ckpt):
    """The tokenizer of the vocabulary a checkpoint was trained with."""
    return data.get_tokenizer((ckpt.get("config") or {}).get("vocab_ranks", data.N_RANKS))


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
    encoder) for a path; device: where it runs (default: the encoder's, or CUDA when there is one). The
    keywords that sentence-transformers- and MTEB-style callers pass (show_progress_bar, convert_to_numpy,
    task_name, prompt_name, ...) are accepted and change nothing."""
    unknown = set(kwargs) - set(ENCODE_IGNORES)
    if unknown:
        raise TypeError(f"encode() got unexpected keyword arguments {sorted(unknown)}")
    if pooling not in ("mean", "max", "first"):
        raise ValueError(f"pooling={pooling!r}: use 'mean', 'max' or 'first' (attention pooling is a trained probe)")
    if isinstance(sentences, str):
        raise TypeError("sentences must be a list of strings, not one string: encode(encoder, [sentence])")
    if isinstance(encoder, (str, os.PathLike)):
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        encoder, ckpt = model.load_encoder(encoder, which, device)
        tok = tok or tokenizer_of(ckpt)
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


# -----------------------------------------------------------------------------
# the analysis cache: what a checkpoint computed once, keyed by everything that shaped it, code included

SOURCE = {}  # function or class -> its source as imported, so that an edit made while a long analysis runs
# does not change the keys of what that run computes later


def snapshot(fns):
    """The functions (and classes) whose source enters a cache key: their source, kept as imported."""
    SOURCE.update({f: inspect.getsource(f) for f in fns})
    return tuple(fns)


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


# what an embedding depends on besides the weights and the sentences: the tokenizer, the encoder's forward
# pass and the pooling; their source is in every cache key, so an edited one never reads stale vectors
EMBED_CODE = snapshot((forward_sentences, model.pool, model.Encoder, model.Block, model.SelfAttention, model.MLP,
                       model.key_padding_mask, model.rotate, model.sincos_positions, model.init_weights,
                       data.Tokenizer))


class Embedder:
    """A checkpoint's frozen encoder. Embeds a named sentence set once: mean/max/first pooled vectors and the
    token states (for the attentive probe), cached in <out_dir>/analysis_cache, keyed by the checkpoint's
    iteration and save time, EMBED_CODE and the sentences; results() caches what is computed from them the
    same way. A stripped checkpoint (model.strip_checkpoint) has no weights: it answers from the cache alone."""

    def __init__(self, path, which="online", device="cpu", batch_size=256, random_init=False, seed=0):
        """random_init: the encoder of path's config as training starts (seeded), instead of its weights."""
        ckpt = model.load_checkpoint(path)
        self.path, self.which, self.device, self.batch_size = path, which, device, batch_size
        self.config = model.EncoderConfig(**ckpt["model_args"])
        self.tok = tokenizer_of(ckpt)
        self._encoder = None if ckpt.get("stripped") else model.encoder_of(ckpt, which, path).to(device).eval()
        self.objective = (ckpt.get("config") or {}).get("objective", "?")
        self.iter_num, self.max_iters = ckpt.get("iter_num", 0), model.planned_iters(ckpt)
        if random_init:
            with torch.random.fork_rng():  # leaves the probes' own seeding untouched
                torch.manual_seed(seed)
                self._encoder = model.Encoder(self.config).to(device).eval()
            self.which, self.objective, self.iter_num, self.max_iters = f"{RANDOM}-s{seed}", "none", 0, None
        self.stripped = self._encoder is None
        self.out_dir = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
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
        key = digest(self.stamp, self.which, self.config.block_size, EMBED_CODE, list(texts))
        if key not in self.memo:
            path = os.path.join(self.cache_dir, f"{self.which}-{name}-{key}.pt")
            if os.path.exists(path):
                self.memo[key] = torch.load(path, weights_only=True)
            else:
                self.memo[key] = self.embed(name, texts)
                self.store(name, path, lambda f: torch.save(self.memo[key], f))
        return self.memo[key]

    def embed(self, name, texts):
        """Every pooling and the token states (for the attentive probe) of texts, in one pass."""
        what = f"embedding {name} ({os.path.basename(os.path.abspath(self.out_dir))}, {self.which})"
        pooled, states, lens, truncated = forward_sentences(self.encoder, self.tok, texts, ("mean", "max", "first"),
                                                            True, self.batch_size, self.device, what)
        return {**pooled, "states": torch.cat(states),
                "offsets": torch.cat([torch.zeros(1, dtype=torch.long), lens.cumsum(0)]), "truncated": truncated}

    def results(self, name, inputs, compute):
        """compute() once per checkpoint and inputs, then from the cache: a report over many checkpoints (seeds
        trained over several sessions) only fits what is new. inputs must name everything else the result
        depends on: settings, the data, and the functions that compute it. Pickled: the cache is this
        program's own output, like the checkpoint."""
        path = os.path.join(self.cache_dir, f"{self.which}-{name}-{digest(self.stamp, self.which, EMBED_CODE, inputs)}.pkl")
        if os.path.exists(path):
            with open(path, "rb") as f:
                return pickle.load(f)
        out = compute()

        def save(tmp):
            with open(tmp, "wb") as f:
                pickle.dump(out, f)
        self.store(name, path, save)
        return out

    def store(self, name, path, save):
        """Write path atomically, removing the older entries of the same name: stale now."""
        try:
            os.makedirs(self.cache_dir, exist_ok=True)
        except OSError as e:
            raise SystemExit(f"error: cannot write the analysis cache {self.cache_dir} ({e.strerror}): "
                             "make the checkpoint's folder writable, or analyse a copy of it")
        n_dashes, ext = self.which.count("-") + name.count("-") + 2, os.path.splitext(path)[1]
        for old in os.listdir(self.cache_dir):
            if old.startswith(f"{self.which}-{name}-") and old.count("-") == n_dashes and old.endswith(ext):
                os.remove(os.path.join(self.cache_dir, old))
        save(path + ".tmp")
        os.replace(path + ".tmp", path)


def results_only(path, dst):
    """A checkpoint's out_dir as its analysis needs it, without the weights: the stripped checkpoint, its
    log.jsonl and the cached results (not the embeddings, which are large), a few MB in all. probe.py and
    eval_geometry.py read it like the out_dir itself, so a report can join checkpoints analysed in earlier
    GPU sessions to new ones, as long as code, data and settings are those it was analysed with."""
    src = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    os.makedirs(os.path.join(dst, "analysis_cache"), exist_ok=True)
    model.strip_checkpoint(path, os.path.join(dst, "ckpt.pt"))
    cache = os.path.join(src, "analysis_cache")
    for f in os.listdir(cache) if os.path.isdir(cache) else []:
        if f.endswith(".pkl"):
            shutil.copyfile(os.path.join(cache, f), os.path.join(dst, "analysis_cache", f))
    if os.path.exists(os.path.join(src, "log.jsonl")):  # the report's λ curve and last validation losses
        shutil.copyfile(os.path.join(src, "log.jsonl"), os.path.join(dst, "log.jsonl"))


# -----------------------------------------------------------------------------
# the checkpoints of a report, and the one per-checkpoint loop


def checkpoint_labels(paths):
    """Short unique names for the table columns: the out_dir's name."""
    names = [os.path.basename(os.path.normpath(p if os.path.isdir(p) else os.path.dirname(os.path.abspath(p))))
             for p in paths]
    return [n if names.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(names)]


def embedders(paths, which, device, batch_size, random_init, seed, unfinished=False):
    """(labels, Embedders) for the checkpoints, and last the random-init encoder of the first one's config.
    A checkpoint given twice is refused, and one whose run has not reached its max_iters unless unfinished."""
    if not paths:
        raise SystemExit("error: name at least one checkpoint (an out_dir or its ckpt.pt), e.g. out-hybrid-tiny")
    real = [os.path.realpath(os.path.join(p, "ckpt.pt") if os.path.isdir(p) else p) for p in paths]
    twice = [p for p, r in zip(paths, real) if real.count(r) > 1]
    if twice:
        raise SystemExit(f"error: the same checkpoint given twice ({', '.join(twice)}): name each once")
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


def per_checkpoint(labels, embs, pools, name, inputs, compute, what="probing"):
    """{label: {pooling: compute(emb, pooling)}}, each from the checkpoint's cache where it is there. The
    weightless copies go first, so that one whose cache lacks a result stops the run in seconds."""
    out = {label: {} for label in labels}
    for label, emb in sorted(zip(labels, embs), key=lambda pair: not pair[1].stripped):
        for pooling in pools:
            print(f"{what} {label} / {pooling}", file=sys.stderr)
            out[label][pooling] = emb.results(f"{name}-{pooling}", (pooling, inputs), lambda: compute(emb, pooling))
    return out


def checkpoint_notes(labels, embs, seed, random_init):
    notes = [f"UNFINISHED: {label} is at iter {e.iter_num:,} of the {e.max_iters:,} its run was set to train "
             "(--unfinished=True): its figures are not that run's result"
             for label, e in zip(labels, embs) if not e.finished()]
    if random_init:
        notes.append(f"{RANDOM}: the first checkpoint's encoder config, freshly initialised (seed {seed}), through "
                     "the same pipeline: what pre-training added")
    return notes


# -----------------------------------------------------------------------------
# the evaluations: GLUE train -> dev, k-fold CV on a probing set, SentEval; each -> {'y': gold, 'p': prediction}

METRICS = {  # eval -> [(metric name, function of (gold, prediction))], scores reported x100 as GLUE does
    "sst2": [("acc", accuracy)], "mrpc": [("f1", f1), ("acc", accuracy)],
    "mnli-m": [("acc", accuracy)], "mnli-mm": [("acc", accuracy)], "cola": [("mcc", matthews)],
    "stsb": [("pearson", pearson), ("spearman", spearman)], "stsb-cos": [("pearson", pearson), ("spearman", spearman)],
    "sentlen": [("acc", accuracy)], "wordcontent": [("acc", accuracy)], "bshift": [("acc", accuracy)],
    "mft": [("acc", accuracy)], "sicke": [("acc", accuracy)],
}
STS_METRICS = [("spearman", spearman), ("pearson", pearson)]  # SentEval's STS files and SICK-R: cosine vs gold
N_CLASSES = {"sst2": 2, "mrpc": 2, "mnli": 3, "cola": 2, "sicke": 3}
SELECT_BY = {"mrpc": f1, "cola": matthews, "stsb": spearman}  # the L2 strength's CV criterion; else accuracy


def metrics_of(ev):
    """The metrics of an eval: METRICS, or those of a SentEval STS file ('STS12.MSRpar', 'STS12.all') / SICK-R."""
    return METRICS.get(ev) or (STS_METRICS if ev.startswith(("STS1", "sickr")) else METRICS[ev])


def glue_evals(tasks, max_train, seed=0):
    """(eval name, task, train split, dev split, their cache names) for each GLUE score, and notes on the
    protocol. Without MNLI's train split (the 1,000-pair subsets only) MNLI is cross-fitted: the probe for
    the matched subset is trained on the mismatched one and vice versa."""
    evals, notes = [], []
    for task in data.GLUE_TASKS:
        splits = tasks[task]
        if task == "mnli" and "train" not in splits:
            m, mm = splits["dev_matched"], splits["dev_mismatched"]
            evals += [("mnli-m", task, mm, m, "mnli-dev_mismatched", "mnli-dev_matched"),
                      ("mnli-mm", task, m, mm, "mnli-dev_matched", "mnli-dev_mismatched")]
            notes.append("MNLI: no train split (only the two 1,000-pair dev subsets): cross-fitted, the probe "
                         "scored on matched is trained on mismatched and vice versa; not comparable to GLUE MNLI")
            continue
        train = data.subsample(splits["train"], max_train, seed)
        if len(train["a"]) < len(splits["train"]["a"]):
            notes.append(f"{task}: probe trained on a seeded subsample of {max_train:,} of "
                         f"{len(splits['train']['a']):,} train examples (max_train)")
        if task == "mnli":
            evals += [("mnli-m", task, train, splits["dev_matched"], "mnli-train", "mnli-dev_matched"),
                      ("mnli-mm", task, train, splits["dev_mismatched"], "mnli-train", "mnli-dev_mismatched")]
        else:
            evals.append((task, task, train, splits["dev"], f"{task}-train", f"{task}-dev"))
    return evals, notes


def feats_of(emb, name, split):
    fa = emb(f"{name}-a", split["a"])
    return fa, (emb(f"{name}-b", split["b"]) if split["b"] is not None else None)


def sentence_vectors(feats, pooling, device):
    """(n, d) vectors of a pooling, or for a pair [u, v, |u - v|, u * v]."""
    u = feats[0][pooling].to(device)
    return u if feats[1] is None else pair_features(u, feats[1][pooling].to(device))


def cosine(feats, pooling):
    return F.cosine_similarity(feats[0][pooling], feats[1][pooling], dim=-1).numpy()


def run_glue_eval(emb, ev, pooling, proto, keep=None):
    """One GLUE evaluation of one checkpoint and pooling -> {eval: {'y', 'p'}} on dev (STS-B: also the
    unsupervised cosine, 'stsb-cos'). keep: a dict to keep the trained attentive probe in."""
    name, task, train, dev, tr_name, dev_name = ev
    kind = "reg" if task == "stsb" else "cls"
    ftr, fdev = feats_of(emb, tr_name, train), feats_of(emb, dev_name, dev)
    if pooling == "attention":
        att = train_attentive(ftr, train["y"], kind, N_CLASSES.get(task, 1), seed=proto.seed, device=proto.device)
        if keep is not None:
            keep[name] = att
        return {name: {"y": dev["y"], "p": attentive_apply(*att, fdev).numpy()}}
    ytr = torch.as_tensor(train["y"], device=proto.device, dtype=torch.float32 if kind == "reg" else torch.long)
    pred, _ = fit_linear(sentence_vectors(ftr, pooling, proto.device), ytr, sentence_vectors(fdev, pooling, proto.device),
                         kind, N_CLASSES.get(task, 1), proto.n_folds, proto.seed, SELECT_BY.get(task))
    out = {name: {"y": dev["y"], "p": pred.cpu().numpy()}}
    if task == "stsb":
        out["stsb-cos"] = {"y": dev["y"], "p": cosine(fdev, pooling)}
    return out


def run_cv_eval(emb, name, split, pooling, proto):
    """k-fold CV on a probing set -> {'y', 'p'} with every example's out-of-fold prediction (stratified
    folds). The L2 strength is chosen by the same CV (not nested; the report's notes say so)."""
    fa, y = emb(f"probing-{name}", split["a"]), split["y"]
    n_classes = int(y.max()) + 1
    if pooling != "attention":
        X = fa[pooling].to(proto.device)
        _, oof = cv_select(X, torch.as_tensor(y, device=proto.device), "cls", n_classes, proto.n_folds, proto.seed)
        return {"y": y, "p": oof.cpu().numpy()}
    p = np.zeros_like(y)
    for i, test in enumerate(folds(len(y), proto.n_folds, proto.seed, y)):
        train = np.setdiff1d(np.arange(len(y)), test)
        att = train_attentive((fa, None), y, "cls", n_classes, train, proto.seed + i, proto.device)
        p[test] = attentive_apply(*att, (fa, None), idx=test).numpy()
    return {"y": y, "p": p}


def run_senteval(emb, sts, sick, pooling, proto):
    """SentEval's unsupervised STS (cosine against gold, per file and over all pairs of a dataset, SimCSE's
    'all') and SICK-R, and SICK-E: a probe on SICK train, scored on SICK test. No cosine rows for attention
    pooling, whose query is trained."""
    out = {}
    for ds, files in (sts.items() if pooling != "attention" else []):
        for fname, split in files.items():
            out[f"{ds}.{fname}"] = {"y": split["y"], "p": cosine(feats_of(emb, f"senteval-{ds}-{fname}", split),
                                                                  pooling)}
        out[f"{ds}.all"] = all_pairs(out, ds, files)
    if sick is not None and pooling != "attention":
        out["sickr-cos"] = {"y": sick["test"]["y"], "p": cosine(feats_of(emb, "sick-test", sick["test"]), pooling)}
    if sick is not None:
        relabel = {sp: {"a": sick[sp]["a"], "b": sick[sp]["b"], "y": sick[sp]["label"]} for sp in ("train", "test")}
        out.update(run_glue_eval(emb, ("sicke", "sicke", relabel["train"], relabel["test"], "sick-train",
                                       "sick-test"), pooling, proto))
    return out


def all_pairs(out, ds, files):
    """SimCSE's 'all' of an STS dataset: its files' gold scores and predictions concatenated."""
    return {k: np.concatenate([out[f"{ds}.{f}"][k] for f in files]) for k in ("y", "p")}


# what a probe result depends on besides the settings and the data: the source of these is in its cache key
PROBE_CODE = snapshot((feats_of, sentence_vectors, cosine, run_glue_eval, run_cv_eval, run_senteval, all_pairs,
                       fit_linear, cv_select, fit_logreg, logreg_predict, fit_ridge, ridge_predict, folds,
                       standardize, pair_features, AttentiveProbe, train_attentive, attentive_apply, token_stats,
                       padded, stats.spearman, stats.pearson, stats.accuracy, stats.f1, stats.matthews,
                       stats.confusion))


def probe_inputs(proto, *parts):
    """Everything a cached probe result depends on: parts (the data), the protocol, the grids and the code."""
    return (parts, proto, L2_GRID, N_CLASSES, SELECT_BY, PROBE_CODE)


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
    """{eval: {'y', 'p'}}: the train majority class (CoLA's MCC is then 0), all-positive for MRPC (its
    majority; the constant that maximises F1), and for STS-B the bag-of-tokens cosine (a model-free
    similarity) for both the probe row and the cosine row."""
    out = {}
    for name, task, train, dev, _, _ in evals:
        if task == "stsb":
            out[name] = out["stsb-cos"] = {"y": dev["y"], "p": bag_of_tokens_cosine(dev["a"], dev["b"], tok)}
        else:
            p = np.ones_like(dev["y"]) if task == "mrpc" else constant_prediction(train["y"], dev["y"])
            out[name] = {"y": dev["y"], "p": p}
    return out


def senteval_baselines(sts, sick, tok):
    """The bag-of-tokens cosine for every STS file, each dataset's 'all' and SICK-R; SICK-E's majority class."""
    out = {}
    for ds, files in sts.items():
        for fname, split in files.items():
            out[f"{ds}.{fname}"] = {"y": split["y"], "p": bag_of_tokens_cosine(split["a"], split["b"], tok)}
        out[f"{ds}.all"] = all_pairs(out, ds, files)
    if sick is not None:
        test = sick["test"]
        out["sickr-cos"] = {"y": test["y"], "p": bag_of_tokens_cosine(test["a"], test["b"], tok)}
        out["sicke"] = {"y": test["label"], "p": constant_prediction(sick["train"]["label"], test["label"])}
    return out


# -----------------------------------------------------------------------------
# scores: every figure with its bootstrap CI, every difference with its paired tests


def score_all(results, labels, n_boot, seed):
    """Scores with CIs for every (eval, metric, pooling, checkpoint) and paired tests of each checkpoint
    against its stats.reference(): results[label][pooling][eval] = {'y', 'p'}."""
    scores, diffs = [], []
    for pooling in results[labels[0]]:
        for ev in results[labels[0]][pooling]:
            for mname, fn in metrics_of(ev):
                for label in labels:
                    r = results[label][pooling][ev]
                    est, lo, hi = stats.bootstrap_ci(fn, r["y"], r["p"], n_boot=n_boot, seed=seed)
                    scores.append({"eval": ev, "metric": mname, "pooling": pooling, "ckpt": label,
                                   "score": 100 * est, "lo": 100 * lo, "hi": 100 * hi, "n": len(r["y"])})
                for label in labels[1:]:
                    ref = stats.reference(label, labels)
                    r, r0 = results[label][pooling][ev], results[ref][pooling][ev]
                    d = stats.paired_bootstrap(fn, (r["y"], r["p"]), (r0["y"], r0["p"]), n_boot, seed)
                    d = {k: 100 * v if k != "p" else v for k, v in d.items()}
                    d["p_perm"] = stats.permutation_test(fn, r0["y"], r["p"], r0["p"], n_boot, seed)
                    diffs.append({"eval": ev, "metric": mname, "pooling": pooling, "a": label, "b": ref, **d})
    return scores, diffs


def score_baselines(baseline, n_boot, seed):
    """The baseline's score with a bootstrap CI per (eval, metric): baseline[eval] = {'y', 'p'}."""
    out = []
    for ev, r in baseline.items():
        for mname, fn in metrics_of(ev):
            est, lo, hi = stats.bootstrap_ci(fn, r["y"], r["p"], n_boot=n_boot, seed=seed)
            out.append({"eval": ev, "metric": mname, "score": 100 * est, "lo": 100 * lo, "hi": 100 * hi})
    return out


def senteval_summary(results, sts):
    """Per checkpoint, pooling and STS dataset: SentEval's mean and size-weighted mean of the per-file cosine
    Spearman, and SimCSE's 'all' (one Spearman over the concatenated pairs), x100."""
    rows = []
    for label, by_pool in results.items():
        for pooling, res in by_pool.items():
            for ds, files in sts.items():
                if f"{ds}.all" not in res:
                    continue
                rho = np.array([spearman(res[f"{ds}.{f}"]["y"], res[f"{ds}.{f}"]["p"]) for f in files])
                n = np.array([len(files[f]["y"]) for f in files])
                rows.append({"dataset": ds, "pooling": pooling, "ckpt": label, "files": len(files),
                             "pairs": int(n.sum()), "mean": 100 * float(rho.mean()),
                             "wmean": 100 * float((rho * n).sum() / n.sum()),
                             "all": 100 * float(spearman(res[f"{ds}.all"]["y"], res[f"{ds}.all"]["p"]))})
    return rows


# -----------------------------------------------------------------------------
# the report: markdown tables and a plot


def md_table(head, rows):
    """A markdown table of a header and rows of cells."""
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] +
                     ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def with_ci(s, fmt="{:.1f}"):
    """'score [lo, hi]' of a row with a CI, 'score' of one without."""
    f = fmt.format
    return f"{f(s['score'])} [{f(s['lo'])}, {f(s['hi'])}]" if "lo" in s else f(s["score"])


def diff_cell(d, fmt="{:.1f}"):
    fd = fmt.replace("{:", "{:+").format
    q = f", q={d['q']:.3f}{' *' if d['survives'] else ''}" if "q" in d else ""
    return f"{fd(d['diff'])} [{fd(d['lo'])}, {fd(d['hi'])}], p={d['p']:.3f}{q}"


def score_table(scores, diffs, labels, keys=("eval", "metric", "pooling"), fmt="{:.1f}", baselines=None):
    """One row per key: the baseline when given (baselines: {key prefix: row}, the longest prefix wins),
    'score [CI]' per checkpoint, then each difference against its stats.reference()."""
    head = list(keys) + (["baseline"] if baselines else []) + labels + [
        f"{b} − {stats.reference(b, labels)} [95% CI], p" for b in labels[1:]]
    by_score = {tuple(s[k] for k in keys) + (s["ckpt"],): s for s in scores}
    by_diff = {tuple(d[k] for k in keys) + (d["a"],): d for d in diffs}
    rows = []
    for key in dict.fromkeys(tuple(s[k] for k in keys) for s in scores):
        row = [str(k) for k in key]
        if baselines:
            b = next((baselines[key[:n]] for n in range(len(key), 0, -1) if key[:n] in baselines), None)
            row.append("n/a" if b is None else with_ci(b, fmt))
        row += [with_ci(by_score[key + (label,)], fmt) if key + (label,) in by_score else "n/a" for label in labels]
        row += [diff_cell(by_diff[key + (label,)], fmt) if key + (label,) in by_diff else "n/a" for label in labels[1:]]
        rows.append(row)
    return md_table(head, rows)


def seed_table(rows, keys=("eval", "metric", "pooling"), fmt="{:.1f}"):
    """Markdown of stats.across_seeds: 'mean ± sd (n)' per group, then each group's test against the first."""
    if not rows or not rows[0]["groups"]:
        return ""
    groups, f, fd = list(rows[0]["groups"]), fmt.format, fmt.replace("{:", "{:+").format
    head = list(keys) + [f"{g} mean ± sd (n)" for g in groups] + [
        f"{t['a']} − {groups[0]} over seeds [95% CI], p" for t in rows[0].get("tests", [])]
    cells = [[str(r[k]) for k in keys] +
             [f"{f(r['groups'][g]['mean'])} ± {f(r['groups'][g]['sd'])} ({r['groups'][g]['n']})"
              if g in r["groups"] else "n/a" for g in groups] +
             [f"{fd(t['diff'])} [{fd(t['lo'])}, {fd(t['hi'])}], {t['test']} t={t['t']:.2f}, df={t['df']:.1f}, "
              f"p={t['p']:.3f}" for t in r.get("tests", [])] for r in rows]
    return md_table(head, cells)


def senteval_table(rows, labels):
    """One row per (dataset, pooling), 'mean / wmean / all' per checkpoint."""
    by = {(r["dataset"], r["pooling"], r["ckpt"]): r for r in rows}
    cells = [list(key) + [f"{by[key + (c,)]['mean']:.1f} / {by[key + (c,)]['wmean']:.1f} / {by[key + (c,)]['all']:.1f}"
                          if key + (c,) in by else "n/a" for c in labels]
             for key in dict.fromkeys((r["dataset"], r["pooling"]) for r in rows)]
    return md_table(["dataset", "pooling"] + [f"{c}: mean / wmean / all" for c in labels], cells)


def palette(labels):
    """{label: colour}, distinct for up to 20 checkpoints (then tab20 repeats): matplotlib's default cycle
    repeats after 10, and a report over 4 arms x 3 seeds plus the random encoder has 13."""
    import matplotlib
    cmap = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def plot_scores(scores, labels, path, title="probe scores with bootstrap 95% CIs"):
    """One panel per pooling, a bar with its CI per checkpoint and (eval, metric)."""
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
            err = np.maximum(0, [[s["score"] - s["lo"] for s in ss], [s["hi"] - s["score"] for s in ss]])
            ax.bar(x, [s["score"] for s in ss], w, label=label, color=colors[label], yerr=err, capsize=2)
        ax.set_xticks(np.arange(len(keys)), [f"{e}\n{m}" for e, m in keys], fontsize=7)
        ax.set_ylabel(f"{pool}\nscore x100", fontsize=8)
        ax.axhline(0, color="k", lw=0.5)
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: 13 bars fill the axes
    axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


# -----------------------------------------------------------------------------
# the run: check, embed and fit, score, write


def check_args(cfg, script="probe.py"):
    """The poolings as a list, the report folder created: bad settings stop here, before any work."""
    pools = [p.strip() for p in cfg.poolings.split(",") if p.strip()]
    if not pools or any(p not in POOLINGS for p in pools):
        raise SystemExit(f"error: --poolings={cfg.poolings}: use a comma-separated subset of {','.join(POOLINGS)}")
    try:
        os.makedirs(cfg.report_dir, exist_ok=True)
        open(os.path.join(cfg.report_dir, ".writable"), "w").close()
        os.remove(os.path.join(cfg.report_dir, ".writable"))
    except OSError as e:
        raise SystemExit(f"error: --report_dir={cfg.report_dir} cannot be written ({e.strerror}): "
                         f"name a folder this user can write, e.g. python {script} ... --report_dir=report")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    return pools


def load_tasks(glue_dir, dataset):
    """GLUE if it can be had, else None: the corpus probing sets, a fallback said in one line."""
    tasks = data.load_glue(glue_dir)
    if tasks is None:
        print(f"GLUE is unavailable (no --glue_dir, and the HF hub / datasets cannot be reached): running on the "
              f"'{dataset}' corpus probing sets instead; for GLUE pass --glue_dir=../shared/data/glue or any folder "
              "in the standard GLUE layout", file=sys.stderr)
    return tasks


def probing_sets(dataset, data_dir):
    """The SentEval-style probing sets of a corpus' held-out documents, and notes on them."""
    sets, notes = data.probing_sets(data.corpus_sentences(dataset, data_dir))
    sizes = ", ".join(f"{k} {len(v['a']):,}" for k, v in sets.items())
    return sets, notes + [f"probing sets from the held-out documents of '{dataset}': {sizes} sentences"]


def suite(cfg, proto, tok):
    """(mode, cache name, its data key, compute(emb, pooling), baseline {eval: {'y', 'p'}}, notes)."""
    tasks = load_tasks(cfg.glue_dir, cfg.dataset)
    if tasks is None:
        sets, notes = probing_sets(cfg.dataset, cfg.data_dir)
        baseline = {name: {"y": s["y"], "p": constant_prediction(s["y"], s["y"])} for name, s in sets.items()}
        notes += ["baseline: the majority class", f"probing-set scores are {proto.n_folds}-fold CV accuracies "
                  "(folds stratified by class); the L2 strength is picked by the same CV"]
        return ("probing", "probing", digest(sets), baseline, notes,
                lambda emb, pooling: {name: run_cv_eval(emb, name, s, pooling, proto) for name, s in sets.items()})
    evals, notes = glue_evals(tasks, proto.max_train, proto.seed)
    notes += ["baseline: the train split's majority class for every dev example (MRPC: all-positive; CoLA: MCC 0), "
              "and for STS-B the cosine of bag-of-tokens count vectors (no model)",
              "stsb-cos: unsupervised cosine of the two sentence embeddings, not a probe; no row for attention "
              "pooling, whose query is trained"]
    return ("glue", "glue", digest(evals), glue_baselines(evals, tok), notes,
            lambda emb, pooling: {k: v for ev in evals for k, v in run_glue_eval(emb, ev, pooling, proto).items()})


def add_senteval(senteval_dir, sts, sick, proto, labels, embs, pools, results, baseline, notes):
    """SentEval's figures (data.load_senteval's sts and sick) into results, baseline and notes."""
    more = per_checkpoint(labels, embs, pools, "senteval", probe_inputs(proto, digest(sts, sick)),
                          lambda emb, pooling: run_senteval(emb, sts, sick, pooling, proto), "SentEval")
    for label in labels:
        for pooling in pools:
            results[label][pooling].update(more[label][pooling])
    baseline.update(senteval_baselines(sts, sick, embs[0].tok))
    notes.append(f"SentEval ({senteval_dir}): {', '.join(f'{d} ({len(f)} files)' for d, f in sts.items()) or 'no STS'}"
                 f"{'; SICK' if sick is not None else '; no SICK'}. STS: cosine Spearman per file, their mean and "
                 "size-weighted mean (SentEval) and 'all', one Spearman over a dataset's pairs (SimCSE); SICK-R: "
                 "cosine on SICK test; SICK-E: the probe trained on SICK train (L2 by CV on it), accuracy on test")


def tables(report, labels, sts):
    """probe.md's tables: GLUE or the probing sets, SentEval ('all' and SICK; per file in probe.json), seeds."""
    senteval = lambda ev: ev.startswith(("STS1", "sick"))  # noqa: E731
    base = {(b["eval"], b["metric"]): b for b in report["baselines"]}
    scores, diffs = report["scores"], report["diffs"]
    out = score_table([s for s in scores if not senteval(s["eval"])], diffs, labels, baselines=base)
    shown = [s for s in scores if senteval(s["eval"]) and (s["eval"].endswith(".all") or s["eval"].startswith("sick"))]
    if shown:
        out += "\n\nSentEval:\n\n" + score_table(shown, diffs, labels, baselines=base)
    if report["senteval"]:
        out += ("\n\nSentEval STS, cosine Spearman x100 (mean and weighted mean over files as SentEval, 'all' as "
                "SimCSE):\n\n" + senteval_table(report["senteval"], labels))
    across = seed_table(report["across_seeds"])
    if across:
        out += "\n\nAcross training seeds (checkpoints named <group>-s<seed>):\n\n" + across
    return out, [s for s in scores if not senteval(s["eval"])] + shown


def run(paths, cfg):
    """Embed and fit per checkpoint (cached), score, write probe.json, probe.md and probe_scores.png."""
    t0 = time.time()
    pools = check_args(cfg)
    proto = Protocol(cfg.n_folds, cfg.seed, cfg.max_train, cfg.device)
    labels, embs = embedders(paths, cfg.encoder, cfg.device, cfg.batch_size, cfg.random_init, cfg.seed, cfg.unfinished)
    sts, sick = data.load_senteval(cfg.senteval_dir) if cfg.senteval_dir else ({}, None)  # before any work
    mode, name, key, baseline, notes, compute = suite(cfg, proto, embs[0].tok)
    results = per_checkpoint(labels, embs, pools, name, probe_inputs(proto, key), compute)
    if cfg.senteval_dir:
        add_senteval(cfg.senteval_dir, sts, sick, proto, labels, embs, pools, results, baseline, notes)
    scores, diffs = score_all(results, labels, cfg.n_boot, cfg.seed)
    stats.control_fdr(diffs, apart={RANDOM})
    notes += checkpoint_notes(labels, embs, cfg.seed, cfg.random_init)
    notes.append("multiple comparisons: q = Benjamini-Hochberg adjusted p over every difference between checkpoints "
                 "in this report (the differences to random-init are a family of their own); * marks q < 0.05")
    report = {"mode": mode, "checkpoints": [e.summary(label) for label, e in zip(labels, embs)], "notes": notes,
              "n_boot": cfg.n_boot, "seed": cfg.seed, "max_train": cfg.max_train, "scores": scores, "diffs": diffs,
              "baselines": score_baselines(baseline, cfg.n_boot, cfg.seed),
              "across_seeds": stats.across_seeds(scores, labels, ("eval", "metric", "pooling")),
              "senteval": senteval_summary(results, sts) if sts else [], "seconds": time.time() - t0}
    table, shown = tables(report, labels, sts)
    header = "\n".join([f"Probes ({mode}), encoder={cfg.encoder}; scores x100 with bootstrap 95% CIs over dev "
                        f"examples (B={cfg.n_boot}); differences are paired bootstrap CIs with two-sided p."] +
                       [f"- {n}" for n in notes])
    data.save_json(report, os.path.join(cfg.report_dir, "probe.json"))
    with open(os.path.join(cfg.report_dir, "probe.md"), "w") as f:
        f.write(header + "\n\n" + table + "\n")
    plot_scores(shown, labels, os.path.join(cfg.report_dir, "probe_scores.png"))
    print(header + "\n\n" + table)
    print(f"wrote {cfg.report_dir}/probe.json, probe.md, probe_scores.png in {time.time() - t0:.0f}s", file=sys.stderr)
    return report


if __name__ == "__main__":
    paths = configurator.configure(globals(), sys.argv[1:])
    run(paths, SimpleNamespace(**configurator.settings(globals())))
