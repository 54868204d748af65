"""
Linear probes on frozen sentence embeddings, checkpoints side by side: every score with a bootstrap 95% CI
and a trivial baseline, every difference with a paired test. ANALYSIS.md defines each protocol.

$ python probe.py out-hybrid-tiny out-mlm-tiny --glue_dir=../shared/data/glue
$ python probe.py out-hybrid-tiny --encoder=target       # the EMA target encoder instead of the online one

In stages: the probes, sentences to vectors (cached per checkpoint), the evaluations, the scores, the
report. Your own code: `from probe import encode; X = encode("out-mlm-cpu", sentences)`.
"""

import hashlib
import inspect
import math
import numbers
import os
import pickle
import shutil
import sys
import time
from contextlib import contextmanager
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
from configurator import InputError, MissingInput, atomic_file, clock, whole_number, writable, write_failed
from stats import accuracy, f1, matthews, pearson, spearman

# -----------------------------------------------------------------------------
# settings (override with --key=value)
glue_dir = ""  # the GLUE layout or a copy of the hub's nyu-mll/glue; '' = the HF hub, else probing sets
tasks = "sst2,mrpc,mnli,cola,stsb"  # the GLUE tasks probed: a subset is quicker, and needs only its own files
dataset = "embedded"  # the corpus whose held-out documents give the probing sentences
data_dir = "data"
text_column = "text"  # the field or column of the corpus' JSON and columnar files that holds the text
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
threads = 0  # torch CPU threads, 0: torch's default, every core (1 leaves the others to a training run)
unfinished = False  # analyse checkpoints whose run stopped before its max_iters (the reports then say so)
cache_dir = ""  # the analysis cache: '' = analysis_cache/ in each run's out_dir, else a folder each here
# -----------------------------------------------------------------------------

POOLINGS = ("mean", "max", "first", "attention")
L2_GRID = [10.0 ** e for e in range(-5, 2)]  # 1e-5 ... 1e1
RANDOM = "random-init"  # the label of the randomly initialised encoder


@dataclass(frozen=True)
class Protocol:
    """How the probes are fitted: with the data and the code, what a cached result depends on."""
    n_folds: int = 5
    seed: int = 0
    max_train: int = 10000
    device: str = "cpu"


# -----------------------------------------------------------------------------
# linear probes: L2 logistic regression by full-batch L-BFGS, ridge in closed form, k-fold CV of the L2


def standardize(train, *others):
    """Every split scaled by the train split's mean and std."""
    mu, sd = train.mean(0), train.std(0).clamp(min=1e-6)
    return [(x - mu) / sd for x in (train,) + others]


def pair_features(u, v):
    """InferSent's [u, v, |u - v|, u * v]."""
    return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)


def fit_logreg(X, y, n_classes, l2, weight=None, scale=None, max_iter=300, rounds=10, tol=1e-5):
    """Multinomial logistic regression by full-batch L-BFGS, P problems on the same rows at once (a CV's k
    folds share one X): problem p minimises sum_i weight[i, p] CE_i + l2[p] sum_j scale[p, j] ||W_pj||^2,
    bias free (weight defaults to 1/n, scale to 1), until every problem's gradient is below tol.
    Returns weights (P, d + 1, n_classes), bias last."""
    n, d = X.shape
    X = X.double()  # float32 losses stall L-BFGS's line search at gradients ~1e-4, short of the optimum
    l2 = torch.as_tensor(l2, dtype=X.dtype, device=X.device).reshape(-1)
    P = len(l2)
    weight = (torch.full((n, P), 1 / n, device=X.device) if weight is None else weight).double()
    penalty = l2[:, None, None] * (torch.ones(P, d) if scale is None else scale).to(X)[:, :, None]
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
    """k disjoint test folds covering 0..n-1 in a seeded order; with class labels y, stratified: each class
    dealt round-robin over the folds, so a rare class (CoLA's, a probing set's) is in every fold."""
    order = np.random.default_rng(seed).permutation(n)
    if y is None:
        return np.array_split(order, k)
    order = order[np.argsort(np.asarray(y)[order], kind="stable")]
    return [order[f::k] for f in range(k)]


def cv_select(X, y, kind, n_classes=2, k=5, seed=0, metric=None):
    """The L2 strength of L2_GRID with the best k-fold CV metric(gold, prediction) (default accuracy, or
    Spearman for ridge), and each example's out-of-fold prediction at it. Each fold is standardised with
    its training rows only; for the logistic probe the k folds are one joint fit on globally standardised
    X, where a fold's own standardisation is a per-feature rescaling: its penalty weighs (sd_f / sd)^2."""
    metric = metric or (spearman if kind == "reg" else accuracy)
    X, = standardize(X)
    test_folds = [torch.as_tensor(t, device=X.device)
                  for t in folds(len(X), k, seed, None if kind == "reg" else y.cpu().numpy())]
    train_masks = [torch.ones(len(X), dtype=torch.bool, device=X.device).index_fill(0, t, False)
                   for t in test_folds]
    oof = torch.zeros(len(L2_GRID), len(X), device=X.device, dtype=X.dtype if kind == "reg" else torch.long)
    if kind == "reg":
        for test, train in zip(test_folds, train_masks):
            Xtr, Xte = standardize(X[train], X[test])
            for j, l2 in enumerate(L2_GRID):
                oof[j, test] = ridge_predict(fit_ridge(Xtr, y[train], l2), Xte)
    else:
        weight = torch.stack([train.float() / train.sum() for train in train_masks], 1)
        scale = torch.stack([X[train].std(0).clamp(min=1e-6).pow(2) for train in train_masks])
        for j, l2 in enumerate(L2_GRID):  # the k folds are alike, so they converge alike
            W = fit_logreg(X, y, n_classes, [l2] * k, weight, scale)
            for f, test in enumerate(test_folds):
                oof[j, test] = logreg_predict(W[f], X[test])
    score = [float(metric(y.cpu().numpy(), oof[j].cpu().numpy())) for j in range(len(L2_GRID))]
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
    """A learned query attending over frozen token states, then a linear layer; it starts at mean pooling."""

    def __init__(self, width, n_out, pair):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(width))
        self.head = nn.Linear(4 * width if pair else width, n_out)
        self.pair = pair

    def weights(self, h, mask):
        return (h @ self.query / math.sqrt(h.size(-1))).masked_fill(~mask, float("-inf")).softmax(1)

    def pool(self, h, mask):
        return (self.weights(h, mask).unsqueeze(-1) * h).sum(1)

    def forward(self, a, b=None):
        u = self.pool(*a)
        return self.head(pair_features(u, self.pool(*b)) if self.pair else u)


def padded(feats, idx, norm=None, device="cpu"):
    """Token states of sentences idx as a (B, T, C) batch on device, standardised by norm, and its mask."""
    starts, lens = feats["offsets"][idx], feats["offsets"][idx + 1] - feats["offsets"][idx]
    T = int(lens.max())
    pos = starts[:, None] + torch.arange(T)[None, :]
    mask = torch.arange(T)[None, :] < lens[:, None]
    h = feats["states"][pos.clamp(max=len(feats["states"]) - 1)].to(device).float()
    return (h if norm is None else (h - norm[0]) / norm[1]), mask.to(device)


def token_stats(*feats, idx=None):
    """Mean and std of the token states of sentences idx (all when None): a CV fold's training rows only."""
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
    """An AttentiveProbe fitted on train = (feats_a, feats_b or None) at examples idx by AdamW, stopped early
    on a seeded 10% of them; and its standardisation."""
    idx = np.arange(len(y)) if idx is None else np.asarray(idx)
    feats = [f for f in train if f is not None]
    norm = [t.to(device) for t in token_stats(*feats, idx=idx)]
    g = torch.Generator().manual_seed(seed)
    perm = idx[torch.randperm(len(idx), generator=g).numpy()]
    val, fit = perm[:max(1, len(perm) // 10)], perm[max(1, len(perm) // 10):]
    torch.manual_seed(seed)
    probe = AttentiveProbe(feats[0]["states"].size(1), 1 if kind == "reg" else n_classes, len(feats) == 2)
    probe = probe.to(device)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    y = torch.as_tensor(y, device=device)

    def loss_on(i):
        out = probe(*[padded(f, torch.as_tensor(i), norm, device) for f in feats])
        return F.mse_loss(out.squeeze(1), y[i].float()) if kind == "reg" else F.cross_entropy(out, y[i])
    best, best_state, bad, val_chunks = float("inf"), None, 0, np.array_split(val, max(1, len(val) // 512))
    for epoch in range(max_epochs):
        probe.train()
        order = fit[torch.randperm(len(fit), generator=g).numpy()]
        for i in np.array_split(order, max(1, len(fit) // batch)):
            opt.zero_grad()
            loss_on(i).backward()
            opt.step()
        probe.eval()
        with torch.no_grad():
            v = sum(loss_on(i).item() * len(i) for i in val_chunks) / len(val)
        if v < best - 1e-4:
            best, best_state, bad = v, {k: t.clone() for k, t in probe.state_dict().items()}, 0
        elif (bad := bad + 1) >= patience:
            break
    probe.load_state_dict(best_state)
    return probe.eval(), norm


@torch.no_grad()
def attentive_apply(probe, norm, feats, idx=None, pooled=False):
    """Predictions of a trained attentive probe, or with pooled=True the sentence vectors of feats[0]: its
    weights over the raw token states, a convex combination like the other poolings."""
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


@torch.no_grad()
def forward_sentences(encoder, tok, texts, poolings=("mean",), states=False, batch_size=256, device="cpu",
                      name=None):
    """The one way sentences become vectors (encode() and the analysis): [CLS] tokens [SEP], truncated to the
    block size, in length-sorted batches, back in input order. Returns ({pooling: (n, d) float32}, each
    sentence's token states in fp16 or None, token counts, how many sentences were truncated)."""
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
        if name:  # progress on one line
            done = min(s + batch_size, len(ids))
            print(f"\r  {name} {done:,}/{len(ids):,}", end="" if done < len(ids) else "\n", file=sys.stderr)
    empty = torch.zeros(0, encoder.config.n_embd)
    return ({p: torch.stack(v) if v else empty for p, v in pooled.items()}, token_states,
            torch.tensor([len(i) for i in ids]), sum(len(t) > T - 2 for t in encoded))


ENCODE_IGNORES = ("show_progress_bar", "convert_to_numpy", "task_name", "prompt_name", "prompt_type",
                  "prompt")


def encode(encoder, sentences, pooling="mean", batch_size=256, device=None, normalize_embeddings=False,
           which="online", tok=None, **kwargs):
    """Sentence embeddings (n, d) as a float32 NumPy array, in input order, for your own code:

        from probe import encode
        X = encode("out-mlm-cpu", ["A man plays a guitar.", "Music."], normalize_embeddings=True)
        print(X @ X.T)  # cosine similarities

    encoder: an out_dir or ckpt.pt (its own vocabulary), or a model.Encoder with its tokenizer as tok;
    pooling: 'mean', 'max' or 'first'; which: 'online' or 'target' (a hybrid's EMA encoder) for a path.
    A sentence is cut to the encoder's block_size tokens, [CLS] and [SEP] included, as in its pre-training.
    The keywords of sentence-transformers- and MTEB-style callers (ENCODE_IGNORES) change nothing."""
    if unknown := set(kwargs) - set(ENCODE_IGNORES):
        raise TypeError(f"encode() got unexpected keyword arguments {sorted(unknown)}")
    if pooling not in ("mean", "max", "first"):
        raise ValueError(f"pooling={pooling!r}: use 'mean', 'max' or 'first' (attention is a trained probe)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: sentences per forward pass, a whole number >= 1")
    if isinstance(sentences, str):
        raise TypeError("sentences must be a list of strings, not one string: encode(encoder, [sentence])")
    sentences = list(sentences)  # a generator is read once, here
    if (bad := next((i for i, x in enumerate(sentences) if not isinstance(x, str)), None)) is not None:
        raise ValueError(f"sentences[{bad}] is {type(sentences[bad]).__name__}, not a string")
    if isinstance(encoder, (str, os.PathLike)):
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        encoder, ckpt = model.load_encoder(encoder, which, device)
        tok = tok or model.tokenizer_of(ckpt)
    else:
        tok = tok or data.get_tokenizer()
        if tok.vocab_size != encoder.config.vocab_size:
            raise ValueError(f"the encoder's vocabulary has {encoder.config.vocab_size} entries, the "
                             f"tokenizer's {tok.vocab_size}: pass its run's data.get_tokenizer(vocab_ranks)")
        device = device or next(encoder.parameters()).device
        encoder = encoder.to(device).eval()
    X = forward_sentences(encoder, tok, sentences, (pooling,), False, int(batch_size), device)[0][pooling]
    return (F.normalize(X, dim=-1) if normalize_embeddings else X).numpy().astype(np.float32)


# -----------------------------------------------------------------------------
# the analysis cache: what a checkpoint computed once, keyed by everything that shaped it, code included

SOURCE = {}  # function or class -> its source as imported: an edit during a long run does not change its keys


def source_of(f):
    """f's source. A class of a script run under a wrapper (python -m cProfile probe.py) cannot be found by
    inspect, whose __main__ is then the wrapper: it is keyed by its methods' source, which can."""
    try:
        return inspect.getsource(f)
    except OSError:
        if not inspect.isclass(f):
            raise
        methods = (m for m in vars(f).values() if inspect.isfunction(m))
        return f.__qualname__ + "".join(inspect.getsource(m) for m in methods)


def snapshot(fns):
    SOURCE.update({f: source_of(f) for f in fns})
    return tuple(fns)


def digest(*parts):
    """A short hash of nested containers of strings, numbers, arrays and functions (by their source)."""
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
            h.update((SOURCE.get(x) or source_of(x)).encode())
        else:
            h.update(repr(x).encode() + b"\x00")
    feed(parts)
    return h.hexdigest()[:12]


# what a vector depends on besides the weights and the sentence: the tokenizer, the encoder's forward pass and
# the pooling; their source is in every cache key, so an edited one never reads stale vectors or results
EMBED_CODE = snapshot((forward_sentences, model.pool, model.Encoder, model.Block, model.SelfAttention,
                       model.MLP, model.key_padding_mask, model.rotate, model.sincos_positions,
                       model.init_weights, data.Tokenizer))


def cache_dir_of(out_dir, cache_root=""):
    """Where a run's analysis cache lives: analysis_cache/ in its out_dir, or with cache_root a folder of its
    own there, named by the out_dir and a digest of its real path (two runs of one name never share one)."""
    if not cache_root:
        return os.path.join(out_dir, "analysis_cache")
    name = os.path.basename(os.path.abspath(out_dir))
    return os.path.join(cache_root, f"{name}-{digest(os.path.realpath(out_dir))}")


class Embedder:
    """A checkpoint's frozen encoder. Embeds a named sentence set once (mean/max/first vectors and the token
    states) into <out_dir>/analysis_cache, keyed by the checkpoint's iteration and save time, EMBED_CODE and
    the sentences; results() caches what is computed from them the same way. A stripped checkpoint
    (model.strip_checkpoint) has no weights: it answers from the cache alone. cache_root puts the cache in
    a folder of its own there instead (a checkpoint folder that cannot be written)."""

    def __init__(self, path, which="online", device="cpu", batch_size=256, random_init=False, seed=0,
                 cache_root=""):
        ckpt = model.load_checkpoint(path)  # random_init: its config freshly initialised (seeded)
        self.path, self.which, self.device, self.batch_size = path, which, device, batch_size
        self.config = model.EncoderConfig(**ckpt["model_args"])
        self.tok = model.tokenizer_of(ckpt)
        self._encoder = None if ckpt.get("stripped") else \
            model.encoder_of(ckpt, which, path, "--encoder").to(device)
        self.objective = (ckpt.get("config") or {}).get("objective", "?")
        self.resume = ckpt.get("command")  # how its run is resumed, as train.py saved it
        self.val = {} if random_init else ckpt.get("val") or data.last_val(path)  # its last val MLM loss
        self.iter_num, self.max_iters = ckpt.get("iter_num", 0), model.planned_iters(ckpt)
        if random_init:
            with torch.random.fork_rng():  # leaves the probes' own seeding untouched
                torch.manual_seed(seed)
                self._encoder = model.Encoder(self.config).to(device).eval()
            self.which, self.objective, self.iter_num, self.max_iters = f"{RANDOM}-s{seed}", "none", 0, None
        self.stripped = self._encoder is None
        self.out_dir = data.run_dir(path)
        self.cache_dir = cache_dir_of(self.out_dir, cache_root)
        self.stamp = f"{self.iter_num}-{ckpt['saved']}"
        self.memo = {}

    @property
    def encoder(self):
        if self.stripped:
            raise InputError(f"{self.path} is stripped of its weights and its analysis_cache holds "
                             "nothing for this code, data and settings: analyse it with the commit and "
                             "arguments it was analysed with (its session's note says which), or train again")
        return self._encoder.eval()

    def finished(self):
        return self.max_iters is None or self.iter_num >= self.max_iters

    def summary(self, label):
        return {"label": label, "path": self.path, "objective": self.objective, "iter_num": self.iter_num,
                "max_iters": self.max_iters, "finished": self.finished(), "encoder": self.which,
                "stamp": self.stamp}  # which weights: a report joins another only where these agree

    def __call__(self, name, texts):
        key = digest(self.stamp, self.which, self.config.block_size, EMBED_CODE, list(texts))
        if key not in self.memo:  # .pt: large, left out of results_only's copies
            self.memo[key] = self.cached(f"{self.which}-{name}-{key}.pt", lambda: self.embed(name, texts))
        return self.memo[key]

    def embed(self, name, texts):
        """Progress is redrawn in place on a terminal, and is one whole line in a log file (\r would make each
        set's forty redraws one line there)."""
        what = f"embedding {name} ({os.path.basename(os.path.abspath(self.out_dir))}, {self.which})"
        if not (tty := sys.stderr.isatty()):
            print(f"  {what}: {len(texts):,} sentences", file=sys.stderr)
        pooled, states, lens, truncated = forward_sentences(self.encoder, self.tok, texts, POOLINGS[:3], True,
                                                            self.batch_size, self.device, tty and what)
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lens.cumsum(0)])
        return {**pooled, "states": torch.cat(states), "offsets": offsets, "truncated": truncated}

    def results(self, name, inputs, compute):
        """compute() once per checkpoint and inputs (the settings, data and code it depends on), then from the
        cache, so a report over seeds trained in several sessions fits only what is new."""
        key = digest(self.stamp, self.which, EMBED_CODE, inputs)
        return self.cached(f"{self.which}-{name}-{key}.pkl", compute)

    def cached(self, fname, compute):
        """compute() or, where it is there, the cache's fname: tensors as .pt, results pickled (the cache is
        this program's own output, like the checkpoint); written atomically, older ones of the name gone. A
        file that cannot be read (a copy cut short) is computed again, as if it were not there."""
        path, ext = os.path.join(self.cache_dir, fname), os.path.splitext(fname)[1]
        load, dump = (lambda f: torch.load(f, weights_only=True), torch.save) if ext == ".pt" else \
            (pickle.load, pickle.dump)
        if os.path.exists(path):
            try:
                with open(path, "rb") as f:
                    return load(f)
            except (EOFError, OSError, pickle.UnpicklingError, RuntimeError) as e:  # a copy cut short
                print(f"{path} cannot be read ({type(e).__name__}): computing it again", file=sys.stderr)
        out = compute()
        self.check_cache()
        stem = fname[:fname.rindex("-") + 1]  # which-name-, then a key with no dash
        for old in os.listdir(self.cache_dir):
            if old.startswith(stem) and "-" not in old[len(stem):] and old.endswith(ext):
                try:
                    os.remove(os.path.join(self.cache_dir, old))
                except FileNotFoundError:  # the other script filling this cache removed it first
                    pass
        try:  # a temp name of this process's: probe.py and eval_geometry.py may fill one cache at once
            with atomic_file(path, tmp=f"{path}.{os.getpid()}.tmp") as f:
                dump(out, f)
        except (OSError, RuntimeError) as e:  # a full disk (torch.save's writer raises RuntimeError)
            raise InputError(write_failed(f"cannot write {path}", e,
                                          "run the same command again: what is cached so far is kept"))
        return out

    def check_cache(self):
        """Stop at start, not after the work, where the cache cannot be written."""
        try:
            writable(self.cache_dir)
        except OSError as e:
            raise InputError(f"cannot write the analysis cache {self.cache_dir} ({e.strerror}): pass "
                             "--cache_dir=DIR (a folder you can write) or make the checkpoint's folder "
                             "writable")


def results_only(path, dst, cache_root=""):
    """A checkpoint's out_dir without the weights (the stripped checkpoint, log.jsonl and the cached results,
    a few MB): the analysis reads it like the out_dir, so a report can join checkpoints analysed in earlier
    sessions, as long as code, data and settings are those it was analysed with. cache_root: the --cache_dir
    it was analysed with."""
    src = data.run_dir(path)
    os.makedirs(os.path.join(dst, "analysis_cache"), exist_ok=True)
    model.strip_checkpoint(path, os.path.join(dst, "ckpt.pt"))
    cache = cache_dir_of(src, cache_root)
    for f in os.listdir(cache) if os.path.isdir(cache) else []:
        if f.endswith(".pkl"):
            shutil.copyfile(os.path.join(cache, f), os.path.join(dst, "analysis_cache", f))
    if os.path.exists(os.path.join(src, "log.jsonl")):  # the report's λ curve and last validation losses
        shutil.copyfile(os.path.join(src, "log.jsonl"), os.path.join(dst, "log.jsonl"))


# -----------------------------------------------------------------------------
# the checkpoints of a report, and the one per-checkpoint loop


def run_labels(paths):
    """The reports' names of the runs (out_dirs or ckpt.pt files): their out_dirs' names, numbered where two
    agree, where one is the group of others' seeds (out-a beside out-a-s1) or is named random-init. A run
    given twice is refused."""
    if not paths:
        raise InputError("name at least one checkpoint (an out_dir or ckpt.pt), e.g. out-hybrid-tiny")
    files = [os.path.abspath(os.path.join(p, "ckpt.pt") if os.path.isdir(p) else p) for p in paths]
    real = [os.path.realpath(f) for f in files]
    if twice := [p for p, r in zip(paths, real) if real.count(r) > 1]:
        raise InputError(f"the same checkpoint given twice ({', '.join(twice)}): name each once")
    names = [os.path.basename(os.path.dirname(f)) for f in files]
    groups = stats.seed_groups([n for n in names if stats.seed_of(n)], at_least=1)
    clash = [names.count(n) > 1 or n == RANDOM or (not stats.seed_of(n) and n in groups) for n in names]
    return [f"{n}#{i}" if c else n for i, (n, c) in enumerate(zip(names, clash))]


def embedders(paths, which, device, batch_size, random_init, seed, unfinished=False, cache_root=""):
    """(labels: run_labels, Embedders), and last the random-init encoder of the first one's config. A
    checkpoint whose run has not reached its max_iters is refused unless unfinished, and one whose analysis
    cache cannot be written."""
    labels = run_labels(paths)
    embs = [Embedder(p, which, device, batch_size, cache_root=cache_root) for p in paths]
    if (early := [f"{e.path} (iter {e.iter_num:,} of {e.max_iters:,})" for e in embs if not e.finished()]) \
            and not unfinished:
        how = next((e.resume for e in embs if not e.finished() and e.resume), None) or \
            "python train.py <its configs> --init_from=resume --out_dir=..."
        raise InputError(f"unfinished run: {', '.join(early)}: resume it ({how}) or pass --unfinished=True "
                         "to analyse it")
    for e in embs:
        if not e.stripped:
            e.check_cache()
    if random_init:
        labels.append(RANDOM)
        embs.append(Embedder(paths[0], which, device, batch_size, random_init=True, seed=seed,
                             cache_root=cache_root))
    return labels, embs


def per_checkpoint(labels, embs, pools, name, inputs, compute, what="probing"):
    """{label: {pooling: compute(emb, pooling)}}, from each cache where it is there; the weightless copies
    first, so that one whose cache lacks a result stops the run in seconds. Each step prints the time so far
    and, once a result was computed here, about how long the rest takes if each costs their mean."""
    out, t0, n = {label: {} for label in labels}, time.time(), len(labels) * len(pools)
    computed = []  # seconds of each result computed here (one read from its cache takes well under 1 s)
    for label, emb in sorted(zip(labels, embs), key=lambda pair: not pair[1].stripped):
        for pooling in pools:
            done = sum(len(v) for v in out.values())
            left = f", about {clock(np.mean(computed) * (n - done))} left" if computed else ""
            print(f"{what} {label} / {pooling} ({done + 1} of {n}, {clock(time.time() - t0)} so far{left})",
                  file=sys.stderr)
            t = time.time()
            out[label][pooling] = emb.results(f"{name}-{pooling}", (pooling, inputs),
                                              lambda: compute(emb, pooling))
            if (took := time.time() - t) > 1:
                computed.append(took)
    return out


def checkpoint_notes(labels, embs, seed, random_init):
    notes = [f"UNFINISHED: {label} is at iter {e.iter_num:,} of the {e.max_iters:,} its run was set to train "
             "(--unfinished=True): its figures are not that run's result"
             for label, e in zip(labels, embs) if not e.finished()]
    if random_init:
        notes.append(f"{RANDOM}: the first checkpoint's encoder config, freshly initialised (seed {seed}), "
                     "through the same pipeline: what pre-training added")
    return notes


# -----------------------------------------------------------------------------
# the evaluations: GLUE train -> dev, k-fold CV on a probing set, SentEval; each -> {'y': gold, 'p': pred}

METRICS = {  # eval -> [(metric name, function of (gold, prediction))], scores reported x100 as GLUE does
    "sst2": [("acc", accuracy)], "mrpc": [("f1", f1), ("acc", accuracy)],
    "mnli-m": [("acc", accuracy)], "mnli-mm": [("acc", accuracy)], "cola": [("mcc", matthews)],
    "stsb": [("pearson", pearson), ("spearman", spearman)],
    "stsb-cos": [("pearson", pearson), ("spearman", spearman)],
    "sentlen": [("acc", accuracy)], "wordcontent": [("acc", accuracy)], "bshift": [("acc", accuracy)],
    "mft": [("acc", accuracy)], "sicke": [("acc", accuracy)],
}
STS_METRICS = [("spearman", spearman), ("pearson", pearson)]  # SentEval's STS and SICK-R: cosine vs gold
N_CLASSES = {"sst2": 2, "mrpc": 2, "mnli": 3, "cola": 2, "sicke": 3}
SELECT_BY = {"mrpc": f1, "cola": matthews, "stsb": spearman}  # the L2 strength's CV criterion; else accuracy


def metrics_of(ev):
    """METRICS, or those of a SentEval STS file ('STS12.MSRpar', 'STS12.all') or SICK-R."""
    return METRICS.get(ev) or (STS_METRICS if ev.startswith(("STS1", "sickr")) else METRICS[ev])


def feats_of(emb, name, split):
    fa = emb(f"{name}-a", split["a"])
    return fa, (emb(f"{name}-b", split["b"]) if split["b"] is not None else None)


def sentence_vectors(feats, pooling, device):
    u = feats[0][pooling].to(device)
    return u if feats[1] is None else pair_features(u, feats[1][pooling].to(device))


def cosine(feats, pooling):
    return F.cosine_similarity(feats[0][pooling], feats[1][pooling], dim=-1).numpy()


def run_glue_eval(emb, ev, pooling, proto, keep=None):
    """One GLUE evaluation -> {eval: {'y', 'p'}} on dev (STS-B: also the cosine, 'stsb-cos'); keep: a dict
    for the trained attentive probe."""
    name, task, train, dev, tr_name, dev_name = ev
    kind = "reg" if task == "stsb" else "cls"
    ftr, fdev = feats_of(emb, tr_name, train), feats_of(emb, dev_name, dev)
    if pooling == "attention":
        att = train_attentive(ftr, train["y"], kind, N_CLASSES.get(task, 1), None, proto.seed, proto.device)
        if keep is not None:
            keep[name] = att
        return {name: {"y": dev["y"], "p": attentive_apply(*att, fdev).numpy()}}
    ytr = torch.as_tensor(train["y"], dtype=torch.float32 if kind == "reg" else torch.long).to(proto.device)
    pred, _ = fit_linear(sentence_vectors(ftr, pooling, proto.device), ytr,
                         sentence_vectors(fdev, pooling, proto.device), kind, N_CLASSES.get(task, 1),
                         proto.n_folds, proto.seed, SELECT_BY.get(task))
    out = {name: {"y": dev["y"], "p": pred.cpu().numpy()}}
    return {**out, "stsb-cos": {"y": dev["y"], "p": cosine(fdev, pooling)}} if task == "stsb" else out


def run_cv_eval(emb, name, split, pooling, proto):
    """k-fold CV on a probing set -> {'y', 'p'}, out-of-fold; the L2 strength by the same CV (not nested)."""
    fa, y = emb(f"probing-{name}", split["a"]), split["y"]
    n_classes = int(y.max()) + 1
    if pooling != "attention":
        X, yt = fa[pooling].to(proto.device), torch.as_tensor(y, device=proto.device)
        _, oof = cv_select(X, yt, "cls", n_classes, proto.n_folds, proto.seed)
        return {"y": y, "p": oof.cpu().numpy()}
    p = np.zeros_like(y)
    for i, test in enumerate(folds(len(y), proto.n_folds, proto.seed, y)):
        train = np.setdiff1d(np.arange(len(y)), test)
        att = train_attentive((fa, None), y, "cls", n_classes, train, proto.seed + i, proto.device)
        p[test] = attentive_apply(*att, (fa, None), idx=test).numpy()
    return {"y": y, "p": p}


def all_pairs(out, ds, files):
    """SimCSE's 'all' of an STS dataset: its files' gold scores and predictions concatenated."""
    return {k: np.concatenate([out[f"{ds}.{f}"][k] for f in files]) for k in ("y", "p")}


def run_senteval(emb, sts, pairs, evals, pooling, proto):
    """Cosine against gold on each pair set and over all pairs of an STS dataset (SimCSE's 'all'); the probes
    of evals. No cosine rows for attention pooling, whose query is trained."""
    out = {ev: {"y": split["y"], "p": cosine(feats_of(emb, cache, split), pooling)}
           for ev, (cache, split) in (pairs.items() if pooling != "attention" else [])}
    out.update({f"{ds}.all": all_pairs(out, ds, fs) for ds, fs in sts.items() if pooling != "attention"})
    return {**out, **{k: v for ev in evals for k, v in run_glue_eval(emb, ev, pooling, proto).items()}}


# what a probe result depends on besides the settings and the data: the source of these is in its cache key
PROBE_CODE = snapshot((feats_of, sentence_vectors, cosine, run_glue_eval, run_cv_eval, run_senteval,
                       all_pairs, fit_linear, cv_select, fit_logreg, logreg_predict, fit_ridge, ridge_predict,
                       folds, standardize, pair_features, AttentiveProbe, train_attentive, attentive_apply,
                       token_stats, padded, stats.spearman, stats.pearson, stats.accuracy, stats.f1,
                       stats.matthews, stats.confusion))


def probe_inputs(proto, *parts):
    return (parts, proto, L2_GRID, N_CLASSES, SELECT_BY, PROBE_CODE)


# -----------------------------------------------------------------------------
# trivial baselines, and the scores: every figure with its bootstrap CI, every difference with paired tests


def bag_of_tokens_cosine(a, b, tok):
    """Cosine of the two sentences' token-count vectors."""
    out = np.zeros(len(a))
    for i, (x, y) in enumerate(zip(tok.encode_batch(list(a)), tok.encode_batch(list(b)))):
        cx, cy = np.bincount(x), np.bincount(y)
        n = min(len(cx), len(cy))
        den = np.sqrt((cx ** 2).sum() * (cy ** 2).sum())
        out[i] = (cx[:n] * cy[:n]).sum() / den if den else 0.0
    return out


def constant_prediction(train_y, dev_y):
    return np.full(len(dev_y), np.bincount(np.asarray(train_y)).argmax())


def baselines(evals, pairs, sts, tok):
    """{eval: {'y', 'p'}} without a model: the train majority class (CoLA's MCC is then 0), all-positive for
    MRPC (its majority; the constant that maximises F1), and the bag-of-tokens cosine for STS-B and every
    pair set (SentEval's STS files with each dataset's 'all', SICK-R)."""
    out = {}
    for name, task, train, dev, _, _ in evals:
        if task == "stsb":
            out[name] = out["stsb-cos"] = {"y": dev["y"], "p": bag_of_tokens_cosine(dev["a"], dev["b"], tok)}
        else:
            p = np.ones_like(dev["y"]) if task == "mrpc" else constant_prediction(train["y"], dev["y"])
            out[name] = {"y": dev["y"], "p": p}
    for ev, (_, split) in pairs.items():
        out[ev] = {"y": split["y"], "p": bag_of_tokens_cosine(split["a"], split["b"], tok)}
    return {**out, **{f"{ds}.all": all_pairs(out, ds, files) for ds, files in sts.items()}}


def score_all(results, labels, n_boot, seed):
    """Scores x100 with bootstrap CIs for every (eval, metric, pooling, checkpoint), and each checkpoint's
    paired bootstrap and permutation tests against its reference (results[label][pooling][eval]: y, p)."""
    figs = {}
    for label in labels:
        for pooling, res in results[label].items():
            for ev, r in res.items():
                idx = stats.boot_indices(len(r["y"]), n_boot, seed)
                for mname, fn in metrics_of(ev):
                    figs[label, ev, mname, pooling] = (100 * fn(r["y"], r["p"]),
                                                       100 * fn(r["y"][idx], r["p"][idx]), {"n": len(r["y"])})
    scores, diffs = stats.compare(figs, labels, ("eval", "metric", "pooling"))
    for d in diffs:
        ra, rb = (results[c][d["pooling"]][d["eval"]] for c in (d["a"], d["b"]))
        fn = dict(metrics_of(d["eval"]))[d["metric"]]
        d["p_perm"] = stats.permutation_test(fn, rb["y"], ra["p"], rb["p"], n_boot, seed)
    return scores, diffs


def score_baselines(baseline, n_boot, seed):
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
            for ds, files in ((ds, files) for ds, files in sts.items() if f"{ds}.all" in res):
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
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] +
                     ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def with_ci(s, fmt="{:.1f}"):
    f = fmt.format
    return f"{f(s['score'])} [{f(s['lo'])}, {f(s['hi'])}]" if "lo" in s else f(s["score"])


def diff_cell(d, fmt="{:.1f}"):
    fd = fmt.replace("{:", "{:+").format
    q = f", q={d['q']:.3f}{' *' if d['survives'] else ''}" if "q" in d else ""
    return f"{fd(d['diff'])} [{fd(d['lo'])}, {fd(d['hi'])}], p={d['p']:.3f}{q}"


def score_table(scores, diffs, labels, keys=("eval", "metric", "pooling"), fmt="{:.1f}", base=None):
    """One row per key: the baseline when given (base: {key prefix: row}, the longest prefix wins),
    'score [CI]' per checkpoint, then each difference against its stats.reference()."""
    head = list(keys) + (["baseline"] if base else []) + labels + [
        f"{b} − {stats.reference(b, labels)} [95% CI], p" for b in labels[1:]]
    by_score = {tuple(s[k] for k in keys) + (s["ckpt"],): s for s in scores}
    by_diff = {tuple(d[k] for k in keys) + (d["a"],): d for d in diffs}
    rows = []
    for key in dict.fromkeys(tuple(s[k] for k in keys) for s in scores):
        row = [str(k) for k in key]
        if base:
            b = next((base[key[:n]] for n in range(len(key), 0, -1) if key[:n] in base), None)
            row.append("n/a" if b is None else with_ci(b, fmt))
        row += [with_ci(by_score[key + (c,)], fmt) if key + (c,) in by_score else "n/a" for c in labels]
        rows.append(row + [diff_cell(by_diff[key + (c,)], fmt) if key + (c,) in by_diff else "n/a"
                           for c in labels[1:]])
    return md_table(head, rows)


def seed_table(rows, keys=("eval", "metric", "pooling"), fmt="{:.1f}"):
    """stats.across_seeds as markdown: 'mean ± sd (n)' per group, each group's test against the first."""
    if not rows or not rows[0]["groups"]:
        return ""
    groups, f, fd = list(rows[0]["groups"]), fmt.format, fmt.replace("{:", "{:+").format
    head = list(keys) + [f"{g} mean ± sd (n)" for g in groups] + [
        f"{t['a']} − {groups[0]} over seeds [95% CI], p" for t in rows[0].get("tests", [])]
    cells = [[str(r[k]) for k in keys] +
             [f"{f(r['groups'][g]['mean'])} ± {f(r['groups'][g]['sd'])} ({r['groups'][g]['n']})"
              if g in r["groups"] else "n/a" for g in groups] +
             [f"{fd(t['diff'])} [{fd(t['lo'])}, {fd(t['hi'])}], {t['test']} t={t['t']:.2f}, "
              f"df={t['df']:.1f}, p={t['p']:.3f}" for t in r.get("tests", [])] for r in rows]
    return md_table(head, cells)


def senteval_table(rows, labels):
    by = {(r["dataset"], r["pooling"], r["ckpt"]): r for r in rows}
    cell = lambda r: f"{r['mean']:.1f} / {r['wmean']:.1f} / {r['all']:.1f}"  # noqa: E731
    return md_table(["dataset", "pooling"] + [f"{c}: mean / wmean / all" for c in labels],
                    [list(key) + [cell(by[key + (c,)]) if key + (c,) in by else "n/a" for c in labels]
                     for key in dict.fromkeys((r["dataset"], r["pooling"]) for r in rows)])


def pyplot():
    """matplotlib.pyplot on its file-only backend: reports are written on machines with no display."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def palette(labels):
    """{label: colour}: a hue per run group (stats.run_groups: <group>-s<seed>), its seeds in shades from
    dark to light, random-init grey, so a report over seeds reads by group; distinct for up to 18 groups."""
    import matplotlib
    tab10, tab20 = (matplotlib.colormaps[m].colors for m in ("tab10", "tab20"))
    hues = [c for c in tab10 + tab20[1::2] if len(set(c)) > 1]  # tab20's light hues after tab10's; no greys
    groups = [ls for ls in stats.run_groups(labels).values() if ls != [RANDOM]]
    colors = {RANDOM: (0.5, 0.5, 0.5)}
    for i, members in enumerate(groups):
        base = np.array(hues[i % len(hues)])
        for j, label in enumerate(members):
            colors[label] = tuple(map(float, base + (1 - base) * 0.5 * j / max(1, len(members) - 1)))
    return {label: colors[label] for label in labels}


def legend_labels(labels):
    """{label: its legend entry}: one entry per seed group ('<group>-s* (n seeds)', on its first checkpoint;
    matplotlib leaves out the others' '_' names), each other checkpoint under its label."""
    return {label: label if len(ls) == 1 else f"{g}-s* ({len(ls)} seeds)" if i == 0 else "_" + label
            for g, ls in stats.run_groups(labels).items() for i, label in enumerate(ls)}


def plot_scores(scores, labels, path, what="probe scores", base=None):
    """A bar per checkpoint with its bootstrap 95% CI for each (eval, metric), a panel per pooling; where the
    checkpoints come in seed groups, a bar per group at its mean over seeds with each seed a dot (the spread
    of training; each checkpoint's CI is in the tables). base {(eval, metric): score}: a dashed line each,
    the trivial baseline's score."""
    plt, colors, names = pyplot(), palette(labels), legend_labels(labels)
    groups = stats.run_groups(labels)
    grouped = any(len(members) > 1 for members in groups.values())  # only seed groups have several
    pools = list(dict.fromkeys(s["pooling"] for s in scores))
    keys = list(dict.fromkeys((s["eval"], s["metric"]) for s in scores))
    fig, axes = plt.subplots(len(pools), 1, figsize=(max(6, 0.9 * len(keys)), 2.2 * len(pools)),
                             squeeze=False)
    w = 0.8 / len(groups)
    by = {(s["eval"], s["metric"], s["pooling"], s["ckpt"]): s for s in scores}
    scored, base = {k[:3] for k in by}, base or {}
    nan = {"score": np.nan, "lo": np.nan, "hi": np.nan}  # e.g. no cosine row for attention pooling
    for ax, pool in zip(axes[:, 0], pools):
        for j, members in enumerate(groups.values()):
            x = np.arange(len(keys)) + (j - (len(groups) - 1) / 2) * w
            s = {f: np.array([[by.get(k + (pool, c), nan)[f] for k in keys] for c in members])
                 for f in ("score", "lo", "hi")}
            first = members[0]
            if len(members) == 1:
                err = np.maximum(0, [s["score"][0] - s["lo"][0], s["hi"][0] - s["score"][0]])
                ax.bar(x, s["score"][0], w, label=names[first], color=colors[first], yerr=err, capsize=2)
                continue
            ax.bar(x, s["score"].mean(0), w, label=names[first], color=colors[first], alpha=0.6)
            for c, score in zip(members, s["score"]):
                ax.scatter(x, score, s=9, color=colors[c], edgecolors="k", linewidths=0.4, zorder=3)
        if marked := [(i, base[k]) for i, k in enumerate(keys) if k in base and k + (pool,) in scored]:
            at, value = np.array(marked).T
            ax.hlines(value, at - 0.45, at + 0.45, colors="k", linestyles="--", lw=0.8,
                      label="baseline (no model)", zorder=4)
        ax.set_xticks(np.arange(len(keys)), [f"{e}\n{m}" for e, m in keys], fontsize=7)
        ax.set_ylabel(f"{pool}\nscore x100", fontsize=8)
        ax.axhline(0, color="k", lw=0.5)
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: the bars fill it
    axes[0, 0].set_title(what + (": bars the mean over seeds, dots each seed" if grouped else
                                 " with bootstrap 95% CIs"), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


# -----------------------------------------------------------------------------
# the run: check, embed and fit, score, write


MIN_RESAMPLES = 40  # n_boot and eval_geometry's n_sub: a 95% interval needs some beyond each 2.5% end
RESAMPLES_WHY = " (a 95% interval leaves 2.5% of the {} beyond each end)"


def check_settings(cfg):
    """The settings both analysis scripts share, each checked as train.py checks its own."""
    whole_number("n_folds", cfg.n_folds, 2, " (each fold is scored by a probe fitted on the others)")
    whole_number("n_boot", cfg.n_boot, MIN_RESAMPLES, RESAMPLES_WHY.format("resamples"))
    whole_number("max_train", cfg.max_train, cfg.n_folds,
                 f" (n_folds={cfg.n_folds}: every fold needs an example)")
    whole_number("batch_size", cfg.batch_size, 1)
    whole_number("threads", cfg.threads, 0, " (0: torch's default)")
    whole_number("seed", cfg.seed, 0)
    data.check_column(cfg.dataset, cfg.text_column)
    if cfg.encoder not in ("online", "target"):
        raise InputError(f"--encoder={cfg.encoder!r}: use online (trained by gradient) or target (a "
                         "hybrid's EMA)")
    if model.device_type(cfg.device) == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device={cfg.device}: no CUDA device here: pass --device=cpu")


def report_folder(report_dir, script):
    """Say in one line where report_dir cannot be written. It is created when the report is written, so that
    a run refused later (no checkpoint there) leaves no empty folder behind."""
    if not report_dir:
        raise InputError(f"--report_dir='': name the folder for the report, e.g. python {script} ... "
                         "--report_dir=report")
    try:
        writable(report_dir, keep=False)
    except OSError as e:
        raise InputError(f"--report_dir={report_dir} cannot be written ({e.strerror}): "
                         f"name a folder this user can write, e.g. python {script} ... --report_dir=report")


@contextmanager
def writing(report_dir):
    """The report's files written into report_dir (made here). A write that fails (a full disk) is one line:
    every result is cached by then, so the same command again is quick."""
    try:
        os.makedirs(report_dir, exist_ok=True)
        yield
    except OSError as e:
        if isinstance(e, InputError):
            raise
        raise InputError(write_failed(f"cannot write the report into {report_dir}", e,
                                      "run the same command again: its results are cached, so it is quick"))


def comma_subset(key, value, allowed):
    """--key=a,b as the names it lists, each once, in the order given; one line where one is not allowed."""
    listed = value.split(",") if isinstance(value, str) else []
    names = list(dict.fromkeys(v.strip() for v in listed if v.strip()))
    if not names or any(n not in allowed for n in names):
        raise InputError(f"--{key}={value}: use a comma-separated subset of {','.join(allowed)}")
    return names


def check_args(paths, cfg, script="probe.py"):
    """The poolings as a list, and the report folder checked for writing: bad settings stop here, before any
    work."""
    if not paths:
        raise InputError(f"name at least one checkpoint: python {script} out-hybrid-tiny out-mlm-tiny")
    check_settings(cfg)
    pools = comma_subset("poolings", cfg.poolings, POOLINGS)
    report_folder(cfg.report_dir, script)
    return pools


@contextmanager
def torch_threads(n):
    """torch's CPU threads at n (0: as they are) while an analysis runs, then as they were: a notebook that
    calls run() keeps its own setting."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_tasks(glue_dir, dataset, names=data.GLUE_TASKS):
    """The GLUE tasks named if they can be had, else None (the corpus probing sets instead), said in one
    line."""
    if (tasks := data.load_glue(glue_dir, names)) is None:
        if names != data.GLUE_TASKS:  # GLUE tasks asked for by name: probing sets would measure another thing
            raise InputError(f"--tasks={','.join(names)}: GLUE is unavailable (no --glue_dir, and the HF "
                             "hub / datasets cannot be reached): pass --glue_dir=../shared/data/glue or any "
                             "folder in the standard GLUE layout")
        print(f"GLUE is unavailable (no --glue_dir, and the HF hub / datasets cannot be reached): running on "
              f"the '{dataset}' corpus probing sets instead; for GLUE pass --glue_dir=../shared/data/glue or "
              f"any folder in the standard GLUE layout, or a copy of the hub's {data.GLUE_HUB}",
              file=sys.stderr)
    return tasks


def task_names(value):
    """--tasks as GLUE task names in data.GLUE_TASKS' order, each once."""
    names = comma_subset("tasks", value, data.GLUE_TASKS)
    return tuple(t for t in data.GLUE_TASKS if t in names)


def glue_task_there(glue_dir, task):
    """Whether glue_dir holds the task's files (read to know: a folder can lack one)."""
    try:
        return os.path.isdir(glue_dir) and data.load_glue(glue_dir, (task,)) is not None
    except InputError:
        return False


ATTENTIVE_REG_MIN = 1000  # STS-B examples under which the attentive probe's regression is unreliable


def suite(cfg, proto, tok, names=data.GLUE_TASKS, pools=POOLINGS):
    """(mode, cache name, its data key, baseline {eval: {'y', 'p'}}, notes, compute(emb, pooling)). A subset
    of the GLUE tasks (names) is cached under a name of its own, beside the whole suite's results; pools: the
    poolings the notes are about."""
    try:
        tasks = load_tasks(cfg.glue_dir, cfg.dataset, names)
    except MissingInput as e:  # a task's files not in --glue_dir: name those that are, if any
        if not (have := [t for t in names if glue_task_there(cfg.glue_dir, t)]):
            raise
        raise MissingInput(f"{e}; or probe only the tasks that are there: --tasks={','.join(have)}") from None
    if tasks is None:
        sentences = data.corpus_sentences(cfg.dataset, cfg.data_dir, column=cfg.text_column)
        sets, notes = data.probing_sets(sentences, source=repr(cfg.dataset))
        baseline = {name: {"y": s["y"], "p": constant_prediction(s["y"], s["y"])} for name, s in sets.items()}
        notes += ["baseline: the majority class", f"probing-set scores are {proto.n_folds}-fold CV "
                  "accuracies (folds stratified by class); the L2 strength is picked by the same CV"]
        return ("probing", "probing", digest(sets), baseline, notes,
                lambda emb, pooling: {k: run_cv_eval(emb, k, s, pooling, proto) for k, s in sets.items()})
    evals, notes = data.glue_evals(tasks, proto.max_train, proto.seed)
    notes += ["baseline: the train split's majority class for every dev example (MRPC: all-positive; CoLA: "
              "MCC 0), and for STS-B the cosine of bag-of-tokens count vectors (no model)"]
    notes += ["stsb-cos: unsupervised cosine of the two sentence embeddings, not a probe; no row for "
              "attention pooling, whose query is trained"] if "stsb" in names else []
    notes += [f"GLUE tasks probed: {', '.join(names)} of {', '.join(data.GLUE_TASKS)} (--tasks)"] \
        if names != data.GLUE_TASKS else []
    n_sts = next((len(ev[2]["y"]) for ev in evals if ev[1] == "stsb"), None)
    if "attention" in pools and n_sts is not None and n_sts < ATTENTIVE_REG_MIN:
        notes.append(f"stsb under attention pooling: trained on {n_sts:,} examples, fewer than the "
                     f"{ATTENTIVE_REG_MIN:,} the attentive regression needs (below them it can score under "
                     "zero: ANALYSIS.md)")
    name = "glue" if names == data.GLUE_TASKS else "glue-" + "+".join(names)
    return ("glue", name, digest(evals), baselines(evals, {}, {}, tok), notes,
            lambda emb, pool: {k: v for ev in evals for k, v in run_glue_eval(emb, ev, pool, proto).items()})


def add_senteval(cfg, sts, sick, proto, labels, embs, pools, results, baseline, notes):
    """SentEval's figures (data.load_senteval's sts and sick) into results, baseline and notes."""
    pairs, evals = data.senteval_tasks(sts, sick)
    more = per_checkpoint(labels, embs, pools, "senteval", probe_inputs(proto, digest(pairs, evals)),
                          lambda emb, pool: run_senteval(emb, sts, pairs, evals, pool, proto), "SentEval")
    for label in labels:
        for pooling in pools:
            results[label][pooling].update(more[label][pooling])
    baseline.update(baselines(evals, pairs, sts, embs[0].tok))
    notes.append(f"SentEval ({cfg.senteval_dir}): "
                 f"{', '.join(f'{d} ({len(f)} files)' for d, f in sts.items()) or 'no STS'}"
                 f"{'; SICK' if sick is not None else '; no SICK'}. STS: cosine Spearman per file, their "
                 "mean and size-weighted mean (SentEval) and 'all', one Spearman over a dataset's pairs "
                 "(SimCSE); SICK-R: cosine on SICK test; SICK-E: the probe trained on SICK train, on test")


def tables(report, labels):
    """probe.md's tables (GLUE or the probing sets; SentEval's 'all' and SICK, per file in probe.json; the
    seeds), and the scores the plot shows."""
    senteval = lambda ev: ev.startswith(("STS1", "sick"))  # noqa: E731
    base = {(b["eval"], b["metric"]): b for b in report["baselines"]}
    scores, diffs = report["scores"], report["diffs"]
    main = [s for s in scores if not senteval(s["eval"])]
    shown = [s for s in scores if senteval(s["eval"]) and s["eval"].endswith((".all", "-cos", "sicke"))]
    out = score_table(main, diffs, labels, base=base)
    out += "\n\nSentEval:\n\n" + score_table(shown, diffs, labels, base=base) if shown else ""
    out += ("\n\nSentEval STS, cosine Spearman x100 (mean and weighted mean over files as SentEval, 'all' as "
            "SimCSE):\n\n" + senteval_table(report["senteval"], labels)) if report["senteval"] else ""
    across = seed_table(report["across_seeds"])
    out += "\n\nAcross training seeds (checkpoints named <group>-s<seed>):\n\n" + across if across else ""
    return out, main + shown


def run(paths, cfg):
    """Embed and fit per checkpoint (cached), score, write probe.json, probe.md and probe_scores.png."""
    t0 = time.time()
    pools, names = check_args(paths, cfg), task_names(cfg.tasks)
    with torch_threads(cfg.threads):
        proto = Protocol(cfg.n_folds, cfg.seed, cfg.max_train, cfg.device)
        labels, embs = embedders(paths, cfg.encoder, cfg.device, cfg.batch_size, cfg.random_init, cfg.seed,
                                 cfg.unfinished, cfg.cache_dir)
        # SentEval is read before any work: a bad --senteval_dir stops here
        sts, sick = data.load_senteval(cfg.senteval_dir) if cfg.senteval_dir else ({}, None)
        mode, name, key, baseline, notes, compute = suite(cfg, proto, embs[0].tok, names, pools)
        results = per_checkpoint(labels, embs, pools, name, probe_inputs(proto, key), compute)
        if cfg.senteval_dir:
            add_senteval(cfg, sts, sick, proto, labels, embs, pools, results, baseline, notes)
        scores, diffs = score_all(results, labels, cfg.n_boot, cfg.seed)
        stats.control_fdr(diffs, apart={RANDOM})
        notes += checkpoint_notes(labels, embs, cfg.seed, cfg.random_init) + [
            "multiple comparisons: q = Benjamini-Hochberg adjusted p over every difference between "
            "checkpoints in this report (the differences to random-init are a family of their own); * marks "
            "q < 0.05"]
        report = {"mode": mode, "tasks": list(names) if mode == "glue" else [],
                  "checkpoints": [e.summary(c) for c, e in zip(labels, embs)], "notes": notes,
                  "n_boot": cfg.n_boot, "seed": cfg.seed, "max_train": cfg.max_train, "scores": scores,
                  "diffs": diffs,
                  "baselines": score_baselines(baseline, cfg.n_boot, cfg.seed),
                  "across_seeds": stats.across_seeds(scores, labels, ("eval", "metric", "pooling")),
                  "senteval": senteval_summary(results, sts), "seconds": time.time() - t0}
        table, shown = tables(report, labels)
        header = "\n".join([f"Probes ({mode}), encoder={cfg.encoder}; scores x100 with bootstrap 95% CIs "
                            f"over dev examples (B={cfg.n_boot}); differences: paired bootstrap CIs, "
                            "two-sided p."] + [f"- {n}" for n in notes])
        with writing(cfg.report_dir):
            data.save_json(report, os.path.join(cfg.report_dir, "probe.json"))
            with open(os.path.join(cfg.report_dir, "probe.md"), "w", encoding="utf-8") as f:
                f.write(header + "\n\n" + table + "\n")
            plot_scores(shown, labels, os.path.join(cfg.report_dir, "probe_scores.png"),
                        base={(b["eval"], b["metric"]): b["score"] for b in report["baselines"]})
        print(header + "\n\n" + table)
        print(f"wrote {cfg.report_dir}/probe.json, probe.md, probe_scores.png in {clock(time.time() - t0)}",
              file=sys.stderr)
        return report


if __name__ == "__main__":
    paths = configurator.configure(globals(), sys.argv[1:])
    run(paths, SimpleNamespace(**configurator.settings(globals())))
