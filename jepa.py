"""
Everything JEPA (Assran et al. 2023, I-JEPA, carried over to text as in the paper):
target spans and the context view, the EMA target encoder, the predictor, the latent loss,
the learned balance between the JEPA and MLM losses, and the hybrid objective over one shared encoder.

One training step of the hybrid:
  clean x ──► target encoder (EMA, no grad) ──► layer_norm ──► targets at the span positions
  MLM view  ──┐
  context   ──┴► encoder (one batched forward of 2B) ──► MLM head at masked positions ──► L_mlm
  (= MLM view with the spans [MASK]ed)        └──────► predictor (mask tokens at the spans) ──► L_jepa
  L = balance(L_mlm, L_jepa)
"""

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from model import Block, EncoderConfig, MaskedLM, init_weights, sincos_positions, transformer_flops

# -----------------------------------------------------------------------------
# target spans and the context view (computed on the CPU with the data, from their own generator)


def sample_target_spans(lengths, T, generator, n_spans=2, min_frac=0.10, max_frac=0.25):
    """n_spans disjoint contiguous spans per sequence, each of a length drawn uniformly between
    min_frac and max_frac of that sequence's real length, placed inside positions 1 .. length-1
    ([CLS] at 0 is never a target). Returns positions (B, M) and a validity mask (B, M) with
    M = n_spans * floor(max_frac * T) fixed, so shapes stay static; unused slots point at 0."""
    B = lengths.size(0)
    lengths = lengths.float()
    lo = torch.clamp(torch.ceil(min_frac * lengths), min=1)
    hi = torch.maximum(torch.floor(max_frac * lengths), lo)
    span_len = (lo[:, None] + torch.floor(torch.rand(B, n_spans, generator=generator) * (hi - lo + 1)[:, None])).long()
    slack = (lengths.long() - 1) - span_len.sum(1)  # free positions once the spans are laid down
    assert (slack >= 0).all(), "spans do not fit: lower n_spans or max_frac"
    # sorted offsets into the slack, one per span, keep the spans in order and apart
    gaps = torch.sort(torch.floor(torch.rand(B, n_spans, generator=generator) * (slack + 1)[:, None]).long(), 1).values
    starts = 1 + gaps + torch.cumsum(span_len, 1) - span_len
    max_len = int(math.floor(max_frac * T))
    offs = torch.arange(max_len)
    valid = offs[None, None, :] < span_len[:, :, None]
    pos = torch.where(valid, starts[:, :, None] + offs, 0)
    return pos.view(B, -1), valid.view(B, -1)


def add_context_view(batch, generator, mask_id, n_spans=2, min_frac=0.10, max_frac=0.25):
    """Adds the target spans and the context view: the MLM view with every span token set to [MASK],
    so the context never sees a target token."""
    idx = batch["idx"]
    lengths = torch.full((idx.size(0),), idx.size(1))  # packed pre-training batches have no padding
    tgt_pos, tgt_valid = sample_target_spans(lengths, idx.size(1), generator, n_spans, min_frac, max_frac)
    tgt_mask = torch.zeros_like(idx, dtype=torch.bool).scatter_(1, tgt_pos, tgt_valid)
    batch.update(tgt_pos=tgt_pos, tgt_valid=tgt_valid, tgt_mask=tgt_mask,
                 ctx_input=batch["mlm_input"].masked_fill(tgt_mask, mask_id))
    return batch


# -----------------------------------------------------------------------------
# EMA target encoder


def make_target_encoder(encoder):
    """A frozen fp32 copy of the online encoder. Make it before torch.compile wraps the encoder."""
    target = copy.deepcopy(encoder).float().eval()
    target.requires_grad_(False)
    return target


def ema_momentum(progress, start=0.996, end=1.0):
    """I-JEPA's schedule: linear from start to end over training (progress in [0, 1])."""
    return start + (end - start) * min(max(progress, 0.0), 1.0)


@torch.no_grad()
def ema_update(target, online, momentum):
    """target <- momentum * target + (1 - momentum) * online, all parameters in one fused call."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), 1.0 - momentum)


@torch.no_grad()
def target_features(target, idx, tgt_pos):
    """The target encoder's final states on the clean sequence, parameter-free layer_norm, at the spans."""
    h = target(idx)
    h = F.layer_norm(h.float(), (h.size(-1),))
    return torch.gather(h, 1, tgt_pos.unsqueeze(-1).expand(-1, -1, h.size(-1)))


def feature_std(targets, valid):
    """Std over target tokens of each feature, averaged over features: tends to 0 when targets collapse."""
    return targets[valid].float().std(0).mean()


def rankme(targets, valid):
    """RankMe (Garrido et al. 2023) of the batch's target tokens: exp of the entropy of their normalised
    singular values, between 1 (every token on one direction: collapse) and min(tokens, width). Unlike the
    std it sees a collapse onto a few directions, however large their spread."""
    x = targets[valid].double()  # float64: the sqrt below would turn float32 rounding into spurious directions
    s = torch.linalg.eigvalsh(x.T @ x).clamp(min=0).sqrt()  # singular values of x via its small Gram matrix
    p = s / s.sum() + 1e-7
    return torch.exp(-(p * torch.log(p)).sum())


# -----------------------------------------------------------------------------
# predictor and loss


class Predictor(nn.Module):
    """Narrow pre-LN Transformer: encoder states -> width d_p, a learned mask token at the target
    positions, fixed positions, blocks, back to the encoder width; read out at the targets."""

    def __init__(self, enc_width, width, depth, n_head, block_size, dropout=0.0, bias=True):
        super().__init__()
        self.config = EncoderConfig(block_size=block_size, n_layer=depth, n_head=n_head, n_embd=width,
                                    dropout=dropout, bias=bias)
        self.proj_in = nn.Linear(enc_width, width, bias=bias)
        self.mask_token = nn.Parameter(torch.zeros(width))
        self.register_buffer("wpe", sincos_positions(block_size, width), persistent=False)
        self.blocks = nn.ModuleList([Block(self.config) for _ in range(depth)])
        self.ln_f = nn.LayerNorm(width, bias=bias)
        self.proj_out = nn.Linear(width, enc_width, bias=bias)
        self.apply(init_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, h, tgt_mask, tgt_pos):
        x = self.proj_in(h)
        x = torch.where(tgt_mask.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        x = x + self.wpe[: x.size(1)]
        for block in self.blocks:
            x = block(x)
        x = self.proj_out(self.ln_f(x))
        return torch.gather(x, 1, tgt_pos.unsqueeze(-1).expand(-1, -1, x.size(-1)))

    def flops_per_token(self, enc_width, backward=True):
        c = self.config
        proj = 2 * 2 * enc_width * c.n_embd  # proj_in and proj_out
        return transformer_flops(self.blocks, c.n_layer, c.n_embd, c.block_size, backward) + \
            (3 if backward else 1) * proj


def jepa_loss(pred, target, valid, kind="cosine"):
    """Mean over target positions of 1 - cos(pred, target) (the paper's), or of smooth_l1."""
    pred, target = pred.float(), target.float()
    if kind == "cosine":
        per_pos = 1.0 - F.cosine_similarity(pred, target, dim=-1)
    elif kind == "smooth_l1":
        per_pos = F.smooth_l1_loss(pred, target, reduction="none").mean(-1)
    else:
        raise ValueError(f"unknown jepa_loss '{kind}': use cosine or smooth_l1")
    valid = valid.to(per_pos.dtype)
    return (per_pos * valid).sum() / valid.sum()


# -----------------------------------------------------------------------------
# balance between the two losses


class Balance(nn.Module):
    """'sigmoid': the paper's L = λ L_jepa + (1 - λ) L_mlm with λ = sigmoid(w), w learned from 0.
        dL/dw = λ(1 - λ)(L_jepa - L_mlm) < 0 while the cosine loss sits below the MLM cross-entropy, and
        Adam normalises the step, so w rises by about its learning rate every step whatever the losses:
        λ's trajectory is set by w's learning rate (train.py's balance_lr), not by the data.
    'uncertainty': Kendall et al. 2018, L = Σ exp(-s_i) L_i + s_i with learned log-variances s_i;
        the optimum exp(-s_i) = 1 / L_i keeps both weights positive.
    'fixed': L = λ L_jepa + (1 - λ) L_mlm with λ = fixed_lambda."""

    def __init__(self, rule="sigmoid", fixed_lambda=0.5):
        super().__init__()
        self.rule = rule
        if rule == "sigmoid":
            self.w = nn.Parameter(torch.zeros(()))
        elif rule == "uncertainty":
            self.log_var = nn.Parameter(torch.zeros(2))  # (mlm, jepa)
        elif rule == "fixed":
            self.register_buffer("lam", torch.tensor(float(fixed_lambda)))
        else:
            raise ValueError(f"unknown balance '{rule}': use sigmoid, uncertainty or fixed")

    def forward(self, l_mlm, l_jepa):
        """Returns the total loss and the effective weights (w_mlm, w_jepa), detached."""
        if self.rule == "uncertainty":
            w = torch.exp(-self.log_var)
            loss = w[0] * l_mlm + w[1] * l_jepa + self.log_var.sum()
            return loss, (w[0].detach(), w[1].detach())
        lam = torch.sigmoid(self.w) if self.rule == "sigmoid" else self.lam
        return lam * l_jepa + (1 - lam) * l_mlm, ((1 - lam).detach(), lam.detach())


def param_groups(model, weight_decay, balance_lr, balance_wd):
    """AdamW groups for a MaskedLM or a Hybrid, and the parameters to clip: weights decay, biases and
    LayerNorms don't, and the balance (w or the log-variances) has its own learning rate (a fraction
    'lr_scale' of the model's) and decay, and stays out of gradient clipping (|dL/dw| = 2.3 at init would
    rescale the whole model's gradient)."""
    balance = [p for n, p in model.named_parameters() if n.startswith("balance.")]
    params = [p for n, p in model.named_parameters() if not n.startswith("balance.")]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
            {"params": balance, "weight_decay": balance_wd, "lr_scale": balance_lr}], params


# -----------------------------------------------------------------------------
# the hybrid objective: MLM + JEPA over one shared encoder


class Hybrid(MaskedLM):

    def __init__(self, config, views="separate", loss="cosine", balance="sigmoid", fixed_lambda=0.5,
                 pred_depth=6, pred_width=192, pred_n_head=6):
        super().__init__(config)
        assert views in ("separate", "shared"), f"unknown jepa_views '{views}': use separate or shared"
        self.views, self.loss_kind = views, loss
        self.predictor = Predictor(config.n_embd, pred_width, pred_depth, pred_n_head, config.block_size,
                                   config.dropout, config.bias)
        self.balance = Balance(balance, fixed_lambda)

    def forward(self, batch):
        """batch holds the MLM view, the context view, the spans and the target features."""
        B = batch["idx"].size(0)
        if self.views == "separate":  # the paper's: MLM from the MLM view, JEPA from the context view
            h = self.encoder(torch.cat([batch["mlm_input"], batch["ctx_input"]]))
            h_mlm, h_ctx = h[:B], h[B:]
        elif self.training:  # one view serves both losses: ~40% cheaper
            h_mlm = h_ctx = self.encoder(batch["ctx_input"])
        else:  # but the reported MLM loss is always the MLM view's, the task every objective is compared on
            h_mlm, h_ctx = self.encoder(batch["mlm_input"]), self.encoder(batch["ctx_input"])
        l_mlm = self.mlm_loss(h_mlm, batch["mlm_pos"], batch["mlm_labels"])
        pred = self.predictor(h_ctx, batch["tgt_mask"], batch["tgt_pos"])
        l_jepa = jepa_loss(pred, batch["targets"], batch["tgt_valid"], self.loss_kind)
        loss, (w_mlm, w_jepa) = self.balance(l_mlm, l_jepa)
        return loss, {"mlm": l_mlm.detach(), "jepa": l_jepa.detach(), "w_mlm": w_mlm, "w_jepa": w_jepa}

    def flops_per_token(self, n_masked, backward=True):
        """Online encoder on 1 or 2 views + MLM head + predictor, and the target encoder's forward."""
        views = 2 if self.views == "separate" else 1
        enc = self.encoder.flops_per_token(backward)
        return super().flops_per_token(n_masked, backward) + (views - 1) * enc + \
            self.predictor.flops_per_token(self.config.n_embd, backward) + self.encoder.flops_per_token(False)
