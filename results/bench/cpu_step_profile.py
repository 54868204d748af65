"""
Where one CPU training step of config/tiny.py's (or config/cpu.py's) model spends its time: the phases train.py
runs (making the batch, the target encoder's features, forward, backward, clipping, AdamW, the EMA update),
each timed alone over `steps` steps on the embedded corpus, then torch.profiler's costliest operators.

$ python results/bench/cpu_step_profile.py                              # quickstart hybrid, 2 threads
$ python results/bench/cpu_step_profile.py --objective=mlm --n_layer=4 --batch_size=32   # config/cpu.py's MLM
$ python results/bench/cpu_step_profile.py --pred_depth=1 --split_views=True             # levers
"""
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import data  # noqa: E402
import jepa  # noqa: E402
from configurator import configure  # noqa: E402
from model import EncoderConfig, MaskedLM  # noqa: E402

objective = "hybrid"
n_layer = 2  # config/tiny.py's model; config/cpu.py: 4 layers, batch 32
batch_size = 16
pred_depth = 2
pred_width = 64
split_views = False  # the two online views as two encoder passes of batch_size, not one of 2 x batch_size
threads = 2
steps = 30
operators = True  # also print torch.profiler's costliest operators over 5 steps
configure(globals(), sys.argv[1:])
PHASES = ("batch", "target", "forward", "backward", "clip", "adamw", "ema")


class TwoPasses(torch.nn.Module):
    """The encoder run on each half of its input apart (split_views): smaller matrices, same result."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, idx):
        return torch.cat([self.encoder(half) for half in idx.chunk(2)])


def build(tok):
    torch.manual_seed(1337)
    cfg = EncoderConfig(vocab_size=tok.vocab_size, block_size=128, n_layer=n_layer, n_head=4, n_embd=128, rope=True)
    model = jepa.Hybrid(cfg, "separate", "cosine", "sigmoid", 0.5, pred_depth, pred_width, 4) \
        if objective == "hybrid" else MaskedLM(cfg)
    target = jepa.make_target_encoder(model.encoder) if objective == "hybrid" else None
    flops_per_token = model.flops_per_token(math.ceil(0.15 * 128))
    if split_views:
        model.encoder = TwoPasses(model.encoder)  # target copied the plain encoder above
    groups, params = jepa.param_groups(model, 0.01, 0.1, 0.0)
    return model, target, params, torch.optim.AdamW(groups, lr=1e-3), flops_per_token


def step(model, target, params, opt, batches, spans, tok):
    """One training step as train.py runs it on the CPU; returns each phase's seconds."""
    t = [time.perf_counter()]
    b = batches.next()
    if target is not None:
        jepa.add_context_view(b, spans, tok.mask_id, 2, 0.10, 0.25)
    t.append(time.perf_counter())
    if target is not None:
        b["targets"] = jepa.target_features(target, b["idx"], b["tgt_pos"])
    t.append(time.perf_counter())
    loss, _ = model(b)
    t.append(time.perf_counter())
    loss.backward()
    t.append(time.perf_counter())
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    t.append(time.perf_counter())
    opt.step()
    opt.zero_grad(set_to_none=True)
    t.append(time.perf_counter())
    if target is not None:
        jepa.ema_update(target, model.encoder.encoder if split_views else model.encoder, 0.996)
    t.append(time.perf_counter())
    return [b - a for a, b in zip(t, t[1:])]


def main():
    torch.set_num_threads(threads)
    tok = data.get_tokenizer(8192)
    folder = data.prepare("embedded", "data", 8192)
    batches = data.PackedBatches(os.path.join(folder, "train.bin"), 128, batch_size, 0.15, 1337, tok)
    spans = torch.Generator().manual_seed(1)
    model, target, params, opt, fpt = build(tok)
    times = [step(model, target, params, opt, batches, spans, tok) for _ in range(steps + 5)][5:]
    total = statistics.median(sum(t) for t in times)
    print(f"{objective}, {n_layer}L/128, batch {batch_size} x 128, predictor {pred_depth}x{pred_width}, split_views "
          f"{split_views}, {threads} threads: {1e3 * total:.1f} ms a step (median of {steps}), "
          f"{batch_size * 128 / total:,.0f} tokens/s, {fpt * batch_size * 128 / total / 1e9:.1f} GFLOP/s")
    for i, name in enumerate(PHASES):
        ms = 1e3 * statistics.median(t[i] for t in times)
        print(f"  {name:<9} {ms:7.2f} ms  {ms / 1e3 / total:6.1%}")
    if operators:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as p:
            for _ in range(5):
                step(model, target, params, opt, batches, spans, tok)
        print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
