"""
The encoder: a bidirectional pre-LN Transformer (BERT-style, as in the paper), its MLM head,
sentence embeddings, and the FLOP count that train.py and bench.py use for MFU.

Everything JEPA-specific (predictor, target encoder, losses, balance) lives in jepa.py.

$ python model.py fill out-mlm-tiny "The function returns the [MASK]."   # what the MLM head predicts there
$ python model.py export out-hybrid-tiny --which=target                   # one encoder as safetensors
"""

import hashlib
import json
import math
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from configurator import InputError, MissingInput, atomic_file, writable, write_failed


@dataclass
class EncoderConfig:
    vocab_size: int = 32128  # tokenizer vocab padded to a multiple of 128 (see data.py)
    block_size: int = 128
    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 512
    dropout: float = 0.0
    bias: bool = True
    tie_mlm_head: bool = False  # tie the MLM output matrix to the token embeddings
    rope: bool = False  # rotary positions (Su et al. 2021) in attention instead of sin-cos added to the input


def sincos_positions(n_pos, dim):
    """Fixed sin-cos absolute positions (Vaswani et al. 2017), shape (n_pos, dim)."""
    pos = torch.arange(n_pos, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(n_pos, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


def rotate(x):
    """Rotary positions: each pair of channels of q or k (B, nh, T, hd) turned by an angle proportional to its
    position, so q·k depends on the offset between two tokens: 'look at my neighbour' is one direction to
    learn, where absolute positions make the model learn it for every position pair."""
    T, hd = x.size(-2), x.size(-1)
    freq = 10000.0 ** (-torch.arange(0, hd, 2, device=x.device, dtype=torch.float32) / hd)
    angle = torch.arange(T, device=x.device, dtype=torch.float32)[:, None] * freq
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class SelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.rope = config.rope
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, attn_mask=None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if self.rope:
            q, k = rotate(q), rotate(k)
        # attn_mask is None in packed pre-training, which lets SDPA pick the flash kernel;
        # with padding it is a (B, 1, 1, T) boolean key mask (True = attend).
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LN block; also used by the JEPA predictor (at its own width)."""

    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, attn_mask=None):
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.mlp(self.ln_2(x))


def key_padding_mask(pad_mask):
    """(B, T) bool, True at real tokens -> SDPA's (B, 1, 1, T) mask, or None if nothing is padded."""
    if pad_mask is None or bool(pad_mask.all()):
        return None
    return pad_mask[:, None, None, :]


class Encoder(nn.Module):
    """Token embeddings + fixed positions + pre-LN blocks + final LayerNorm -> (B, T, C) states."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        # sin-cos values have RMS 1/sqrt(2) per dimension, 35x the token embeddings' init std of 0.02: at that
        # scale the positions drown the tokens and the model sits long on the unigram plateau. Scaled to RMS 0.02.
        self.register_buffer("wpe", 0.02 * math.sqrt(2) * sincos_positions(config.block_size, config.n_embd),
                             persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.apply(init_weights)
        # GPT-2's scaled init of the residual projections keeps the residual stream's variance flat in depth
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def forward(self, idx, pad_mask=None):
        T = idx.size(1)
        assert T <= self.config.block_size, f"sequence of {T} tokens, block_size is {self.config.block_size}"
        attn_mask = key_padding_mask(pad_mask)
        x = self.wte(idx) if self.config.rope else self.wte(idx) + self.wpe[:T]
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, attn_mask)
        return self.ln_f(x)

    @torch.no_grad()
    def embed(self, idx, pad_mask, pooling="mean"):
        """Sentence embeddings (B, C) from token ids and a (B, T) bool mask of real tokens."""
        return pool(self(idx, pad_mask), pad_mask, pooling)

    def flops_per_token(self, backward=True):
        return transformer_flops(self.blocks, self.config.n_layer, self.config.n_embd,
                                 self.config.block_size, backward)


def pool(h, pad_mask, pooling):
    """Pool token states (B, T, C) over real tokens. 'first' is the [CLS] position."""
    m = pad_mask.unsqueeze(-1).to(h.dtype)
    if pooling == "mean":
        return (h * m).sum(1) / m.sum(1).clamp(min=1)
    if pooling == "max":
        return h.masked_fill(~pad_mask.unsqueeze(-1), float("-inf")).amax(1)
    if pooling == "first":
        return h[:, 0]
    raise ValueError(f"unknown pooling '{pooling}': use mean, max or first ('attention' is a trained probe, see probe.py)")


class MLMHead(nn.Module):
    """BERT's head: Linear -> GELU -> LayerNorm -> Linear to the vocabulary."""

    def __init__(self, config, wte=None):
        super().__init__()
        self.dense = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.ln = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.decoder = nn.Linear(config.n_embd, config.vocab_size, bias=True)
        self.apply(init_weights)
        if config.tie_mlm_head:
            self.decoder.weight = wte.weight

    def forward(self, h):
        return self.decoder(self.ln(F.gelu(self.dense(h))))


class MaskedLM(nn.Module):
    """Encoder + MLM head. The loss is computed only at the K selected positions per sequence:
    gathering before the head saves the (T - K) / T of the vocab projection that BERT wastes."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.head = MLMHead(config, self.encoder.wte)

    def mlm_loss(self, h, mlm_pos, mlm_labels):
        """h (B, T, C); mlm_pos (B, K) positions; mlm_labels (B, K) token ids, -100 on unused slots."""
        hk = torch.gather(h, 1, mlm_pos.unsqueeze(-1).expand(-1, -1, h.size(-1)))
        logits = self.head(hk)
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), mlm_labels.view(-1), ignore_index=-100)

    def forward(self, batch):
        """The pure-MLM objective; returns the loss and the figures train.py logs."""
        loss = self.mlm_loss(self.encoder(batch["mlm_input"]), batch["mlm_pos"], batch["mlm_labels"])
        return loss, {"mlm": loss.detach()}

    def flops_per_token(self, n_masked, backward=True):
        """Encoder + the head at n_masked positions per sequence (of block_size tokens)."""
        c = self.config
        head = (c.n_embd * c.n_embd + c.n_embd * c.vocab_size) * n_masked / c.block_size
        return self.encoder.flops_per_token(backward) + (6 if backward else 2) * head


def init_weights(module):
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)


def transformer_flops(blocks, n_layer, n_embd, seq_len, backward=True):
    """FLOPs per token of a stack of blocks (PaLM appendix B, as nanoGPT): 2 per weight of every
    matmul forward, plus 2 * 2 * T * d per layer for QK^T and AV; the backward pass costs twice the forward."""
    n_matmul = sum(m.weight.numel() for m in blocks.modules() if isinstance(m, nn.Linear))
    fwd = 2 * n_matmul + 4 * n_layer * n_embd * seq_len
    return 3 * fwd if backward else fwd


def device_type(device):
    """'cpu' or 'cuda' for a --device setting (cpu, cuda, cuda:1), else a one-line InputError: the code runs on
    those two (the collapse watch and the probes compute in float64, which MPS lacks)."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise InputError(f"--device={device}: not a device torch knows: use cpu, cuda or cuda:N")
    if kind not in ("cpu", "cuda"):
        raise InputError(f"--device={device}: use cpu, cuda or cuda:N (this code computes its collapse watch and "
                         "probes in float64, which MPS lacks)")
    return kind


# peak dense bf16 tensor-core FLOP/s by NVIDIA's datasheets, for MFU; the first key in the device's name counts,
# so the PCIe and NVL cards (lower clocks) come before the SXM ones ('NVIDIA H100 80GB HBM3')
PEAK_FLOPS = {"H100 PCIe": 756e12, "H100 NVL": 835e12, "H200 NVL": 835e12, "H100": 989e12, "H200": 989e12,
              "A100": 312e12}


def peak_flops(device):
    """One device's peak FLOP/s, or None where it is not a GPU we know (no MFU is printed then)."""
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def load_checkpoint(path, map_location="cpu"):
    """Read a train.py checkpoint (a file, or an out_dir holding ckpt.pt), or an exported folder (export()) as
    one, or raise an InputError that says what is wrong in one line."""
    if is_export(path):
        return read_export(path)
    if os.path.isdir(path):
        folder, path = path, os.path.join(path, "ckpt.pt")
        runs = [] if os.path.exists(path) else \
            sorted(d for d in os.listdir(folder) if os.path.exists(os.path.join(folder, d, "ckpt.pt")))
        if runs:  # a folder of runs (results/cpu/ckpt) named for one
            named = ", ".join(os.path.join(folder, r) for r in runs[:3]) + (" ..." if len(runs) > 3 else "")
            raise MissingInput(f"no checkpoint at {path}, but {folder} holds runs: name them ({named})")
    if not os.path.exists(path):
        raise MissingInput(f"no checkpoint at {path}: train one first "
                           "(python train.py config/hybrid.py config/tiny.py)")
    try:  # weights_only: tensors and plain values only, so a checkpoint from elsewhere cannot run code
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
        assert isinstance(ckpt, dict) and "model_args" in ckpt and ("model" in ckpt or ckpt.get("stripped"))
    except Exception as e:
        if not path.endswith((".pt", ".pth", ".ckpt")):  # a run's log.jsonl or another of its files, named
            raise InputError(f"{path} is not a checkpoint (train.py writes ckpt.pt): name the run's out_dir")
        raise InputError(f"checkpoint {path} is corrupt, not from train.py, or holds more than tensors and plain "
                         f"values ({type(e).__name__}): refused; delete it and resume from another, or train again "
                         "with --init_from=scratch")
    ckpt.setdefault("saved", os.path.getmtime(path))  # the analysis cache's key; older checkpoints: the mtime
    return ckpt


WEIGHTS = ("model", "target", "optimizer")


def strip_checkpoint(path, dst):
    """The checkpoint without its weights and optimizer state, a few kB: enough for probe.py and
    eval_geometry.py to answer from the analysis cache beside it. A paper-size checkpoint (0.6 GB) cannot
    leave the GPU machine; this can, so a report can take in checkpoints analysed in earlier sessions."""
    stub = {k: v for k, v in load_checkpoint(path).items() if k not in WEIGHTS}
    stub["stripped"] = True
    with atomic_file(dst) as f:
        torch.save(stub, f)


def planned_iters(ckpt):
    """The iterations the checkpoint's run was set to train, or None where the checkpoint does not say
    (before train.py saved max_iters, a --max_flops run's count was not stored)."""
    cfg = ckpt.get("config") or {}
    if "max_iters" in ckpt:
        return ckpt["max_iters"]
    return None if cfg.get("max_flops") or "max_iters" not in cfg else cfg["max_iters"]


def tokenizer_of(ckpt):
    """The tokenizer a checkpoint was trained with (its vocab_ranks)."""
    import data  # data.py does not import this file
    return data.get_tokenizer((ckpt.get("config") or {}).get("vocab_ranks", data.N_RANKS))


def load_encoder(path, which="online", device="cpu"):
    """The frozen encoder of a checkpoint: 'online' (trained by gradient) or 'target' (the EMA copy)."""
    ckpt = load_checkpoint(path)
    return encoder_of(ckpt, which, path).to(device).eval(), ckpt


def encoder_of(ckpt, which="online", path="the checkpoint", flag="which"):
    """The checkpoint's online or target encoder; flag is the setting that chose it, named where it cannot be."""
    if ckpt.get("stripped"):
        raise InputError(f"{path} is a stripped checkpoint (no weights, strip_checkpoint): use the full one")
    if ckpt.get("exported", which) != which:
        raise InputError(f"{path} is an export of the {ckpt['exported']} encoder only: use {flag}={ckpt['exported']}")
    encoder = Encoder(EncoderConfig(**ckpt["model_args"]))
    if which == "online":
        prefix = "encoder."
        state = {k[len(prefix):]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
    elif which == "target":
        if ckpt.get("target") is None:
            raise InputError(f"{path} has no target encoder (objective='mlm'): use {flag}=online")
        state = ckpt["target"]
    else:
        raise InputError(f"unknown encoder '{which}': use online or target")
    encoder.load_state_dict(state)
    return encoder


# -----------------------------------------------------------------------------
# fill-mask: what a checkpoint's MLM head predicts, for a look at what pre-training learned


def mask_ids(tok, text):
    """[CLS] text [SEP] as the analysis tokenizes a sentence, each '[MASK]' in text as the mask token (a space
    before it goes with the masked word, as BPE attaches it); and the masks' positions."""
    pieces = text.split("[MASK]")
    if len(pieces) < 2:
        raise InputError(f"no [MASK] in {text!r}: write [MASK] where a word is to be predicted")
    ids, pos = [tok.cls_id], []
    for i, piece in enumerate(pieces):
        if i:
            pos.append(len(ids))
            ids.append(tok.mask_id)
        ids += tok.encode(piece.rstrip(" ") if i < len(pieces) - 1 else piece)
    return ids + [tok.sep_id], pos


def run_unigram(ckpt, tok):
    """p of every text token under the run's training split (data.unigram_logp), or None where that split is
    not here (in the run's data_dir, prepared from the files the run was)."""
    import data
    cfg = ckpt.get("config") or {}
    folder = data.corpus_folder(cfg.get("dataset", ""), cfg.get("data_dir", "data"), tok.n_normal)
    meta = data.read_meta(folder) if os.path.exists(os.path.join(folder, "train.bin")) else None
    if meta is None or meta.get("made_from") != ckpt.get("data", meta.get("made_from")):
        return None
    return torch.from_numpy(data.unigram_logp(folder, tok)).exp()


@torch.no_grad()
def fill_mask(path, text, k=5):
    """The k likeliest text tokens at each [MASK] of text by the run's own MLM head: [[(token, p, p_unigram),
    ...] per mask], p under the head's softmax (exp(-the training loss) for that token), p_unigram the
    token's frequency in the run's training split (None where that corpus is not prepared here)."""
    ckpt = load_checkpoint(path)
    if ckpt.get("stripped") or ckpt.get("exported"):
        raise InputError(f"{path} holds no MLM head (an export or a weightless copy has the encoder alone): "
                         "name the run's out_dir")
    tok = tokenizer_of(ckpt)
    if k > tok.n_normal:
        raise InputError(f"--k={k}: at most {tok.n_normal:,}, the run's text tokens")
    ids, pos = mask_ids(tok, text)
    if len(ids) > ckpt["model_args"]["block_size"]:
        raise InputError(f"{len(ids)} tokens with [CLS] and [SEP]: the model reads at most "
                         f"{ckpt['model_args']['block_size']}")
    mlm = MaskedLM(EncoderConfig(**ckpt["model_args"])).eval()
    mlm.load_state_dict({name: v for name, v in ckpt["model"].items() if name.startswith(("encoder.", "head."))})
    probs = mlm.head(mlm.encoder(torch.tensor([ids]))[0, pos]).float().softmax(-1)
    best_p, best_id = probs[:, :tok.n_normal].topk(k)  # text tokens only: the specials are never a target
    unigram = run_unigram(ckpt, tok)
    return [[(tok.decode([i]), p, None if unigram is None else unigram[i].item())
             for i, p in zip(row_ids.tolist(), row_p.tolist())] for row_ids, row_p in zip(best_id, best_p)]


# -----------------------------------------------------------------------------
# portable weights: one encoder as model.safetensors + config.json (the Hugging Face convention), no pickle

EXPORT_FILES = ("model.safetensors", "config.json")


def is_export(path):
    return os.path.isdir(path) and not os.path.exists(os.path.join(path, "ckpt.pt")) and \
        any(os.path.exists(os.path.join(path, f)) for f in EXPORT_FILES)


def safetensors_torch():
    try:
        import safetensors.torch
    except ImportError:
        raise InputError("exported weights are read and written with safetensors: pip install safetensors")
    return safetensors.torch


def export_config(ckpt, which, path):
    """config.json: the encoder's shape, the tokenizer, and how the weights were trained."""
    import data  # last_val; data.py does not import this file
    cfg = ckpt.get("config") or {}
    tok = tokenizer_of(ckpt)
    return {"format": "predict-reconstruct encoder, version 1", "encoder": ckpt["model_args"], "which": which,
            "pooling": "mean",
            "tokenizer": {"name": tok.enc.name, "vocab_ranks": tok.n_normal, "pad_id": tok.pad_id,
                          "cls_id": tok.cls_id, "sep_id": tok.sep_id, "mask_id": tok.mask_id},
            "training": {"objective": cfg.get("objective"), "iter_num": ckpt.get("iter_num"),
                         "max_iters": planned_iters(ckpt), "flops": ckpt.get("flops_done"),
                         **data.last_val(path), "commit": ckpt.get("commit"), "config": cfg,
                         "data": ckpt.get("data")}}  # the corpus' files (digests), reader, tokenizer and split


MODEL_CARD = """# {name}

A BERT-style text encoder ({n_layer} layers, {n_embd} wide, {block_size} tokens) pre-trained with the
**{objective}** objective of "Predict and Reconstruct" ({which} encoder), {steps}, {flops:.3g} FLOPs;
validation MLM loss {val_mlm} against a unigram line of {val_unigram} (what ignoring the context scores).
Tokenizer: {tokenizer} (cl100k's first ranks plus [PAD] [CLS] [SEP] [MASK]). Source commit: {commit}.

    from probe import encode                 # from the project's repository: model.py, data.py, probe.py
    X = encode("{name}", ["A sentence.", "Another one."], pooling="mean")

or `model.load_encoder("{name}")` for the module. model.safetensors holds the weights (float32), config.json the
shape, tokenizer and training run.
"""


def steps_done(ckpt):
    """'N steps', or 'N of the M steps its run planned (unfinished)': a run stopped early has not decayed its
    learning rate, and its weights are not that run's result."""
    n, planned = ckpt.get("iter_num"), planned_iters(ckpt)
    return f"{n} steps" if planned in (None, n) else f"{n} of the {planned} steps its run planned (unfinished)"


def check_export_folder(out):
    """out can be written, and holds nothing but an earlier export (and its analysis cache) to replace: an
    export never overwrites a file of the user's (a README.md of their own)."""
    have = set(os.listdir(out)) if os.path.isdir(out) else set()
    earlier = set(EXPORT_FILES) <= have  # its model card is then a README.md of ours
    if theirs := sorted(have - {*EXPORT_FILES, "README.md", "analysis_cache"} if earlier else have):
        raise InputError(f"--out={out} holds other files ({', '.join(theirs[:3])}{' ...' if len(theirs) > 3 else ''}): "
                         "name a new folder, or an earlier export to replace it")
    try:
        writable(out)
    except OSError as e:
        raise InputError(f"--out={out} cannot be written ({e.strerror}): name a folder you can write")


def export(path, out="", which="online"):
    """Write one encoder of a checkpoint to out (default: <out_dir>-<which>): model.safetensors (its weights
    only, float32), config.json and a model card, README.md. Returns out."""
    ckpt = load_checkpoint(path)
    encoder = encoder_of(ckpt, which, path, flag="--which")
    import data  # run_dir; data.py does not import this file
    run = data.run_dir(path)
    out = out or f"{os.path.normpath(run)}-{which}"
    config = export_config(ckpt, which, run)
    check_export_folder(out)
    state = {k: v.detach().float().contiguous() for k, v in encoder.state_dict().items()}
    card = {**ckpt["model_args"], **{k: v if v is not None else "unknown" for k, v in config["training"].items()},
            **{k: f"{config['training'][k]:.4f}" if k in config["training"] else "unknown"
               for k in ("val_mlm", "val_unigram")},
            "name": os.path.basename(os.path.normpath(out)), "which": which,
            "tokenizer": config["tokenizer"]["name"], "flops": config["training"]["flops"] or 0.0,
            "steps": steps_done(ckpt)}
    try:  # each file whole or not at all, written as the user's usual file mode has it
        with atomic_file(os.path.join(out, "model.safetensors")) as f:
            f.write(safetensors_torch().save(state))
        with atomic_file(os.path.join(out, "config.json"), "w") as f:
            json.dump(config, f, indent=1)
        with atomic_file(os.path.join(out, "README.md"), "w") as f:
            f.write(MODEL_CARD.format(**card))
    except OSError as e:
        raise InputError(write_failed(f"--out={out} cannot be written", e, "export again"))
    return out


def read_export(folder):
    """An exported folder as load_checkpoint returns a checkpoint, its analysis-cache key the weights'
    digest; a missing file, a config that does not match the tensors or a damaged file is an InputError."""
    if missing := [f for f in EXPORT_FILES if not os.path.exists(os.path.join(folder, f))]:
        raise MissingInput(f"{folder} has no {missing[0]}: an export holds {' and '.join(EXPORT_FILES)} "
                           "(python model.py export OUT_DIR)")
    weights = os.path.join(folder, "model.safetensors")
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        with torch.device("meta"):  # the names and shapes the config implies, without allocating them
            shapes = {k: tuple(v.shape) for k, v in Encoder(EncoderConfig(**cfg["encoder"])).state_dict().items()}
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{folder}/config.json is not an export's config ({type(e).__name__}: {e}): export it again")
    with open(weights, "rb") as f:
        raw = f.read()  # once: the tensors and the cache key's digest
    try:
        state = safetensors_torch().load(raw)
    except Exception as e:  # safetensors' own error type, raised for a truncated or foreign file
        raise InputError(f"{weights} is truncated or not a safetensors file ({e}): export it again")
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != shapes:
        k = sorted(k for k in shapes.keys() | got.keys() if shapes.get(k) != got.get(k))[0]
        raise InputError(f"{folder}: the weights do not match config.json: {k} is {got.get(k, 'missing')} in "
                         f"model.safetensors, {shapes.get(k, 'not in the encoder')} by config.json")
    digest = hashlib.sha1(raw).hexdigest()[:16]
    which, t = cfg["which"], cfg["training"]
    return {"model_args": cfg["encoder"], "exported": which, "config": t["config"], "iter_num": t["iter_num"],
            "max_iters": t["max_iters"], "saved": digest, "target": state if which == "target" else None,
            "val": {k: t[k] for k in ("val_mlm", "val_unigram") if k in t},  # an export has no log.jsonl
            "model": {"encoder." + k: v for k, v in state.items()} if which == "online" else {}}


if __name__ == "__main__":
    import sys

    import configurator
    which = "online"  # the encoder to export: 'online' (trained by gradient) or 'target' (a hybrid's EMA copy)
    out = ""  # the folder to write; '' = <out_dir>-<which>
    k = 5  # fill: the likeliest tokens shown at each [MASK]
    args = configurator.configure(globals(), sys.argv[1:])
    if len(args) == 3 and args[0] == "fill":
        configurator.whole_number("k", k, 1)
        filled = fill_mask(args[1], args[2], k)
        for n, best in enumerate(filled, 1):
            print(f"[MASK] {n}: " + ", ".join(f"{t!r} {p:.3f}" + (f" (unigram {q:.3f})" if q is not None else "")
                                             for t, p, q in best))
        if filled[0][0][2] is None:
            print("(no unigram line beside them: the run's corpus is not prepared here as it was)")
    elif len(args) == 2 and args[0] == "export":
        print(f"wrote {export(args[1], out, which)}: model.safetensors, config.json, README.md")
    else:
        configurator.die("usage: python model.py export OUT_DIR|CKPT [--which=online|target] [--out=DIR], or "
                         "python model.py fill OUT_DIR \"The [MASK] sat on the mat.\" [--k=5]")
