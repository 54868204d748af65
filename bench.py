"""
How fast is a training step, against the hardware and against the paper's official recipe?

Times full training steps (target features, forward, backward, clip, optimizer step, EMA update) of
objective in {mlm, hybrid with separate views, hybrid with a shared view, the official recipe} for each
model size, on synthetic batches of the same shapes train.py feeds, and the throughput of sentence
embedding extraction. Prints one table and writes it as JSON.

$ python bench.py                       # on a GPU: paper 6L/512 at T=128, BERT-base at T=128 and 512
$ python bench.py --sizes=paper --objectives=hybrid-shared,official
$ python bench.py --device=cpu          # a tiny model in a few seconds (what the test suite runs)
$ python bench.py --device=cpu --sizes=cpu --threads=2 --objectives=mlm,hybrid-separate   # config/cpu.py's model

FLOPs per token follow model.transformer_flops: 6 per matmul weight (forward + backward) + 12 L d T for
attention, the MLM head counted at the K masked positions only, the target encoder forward only.
"""

import gc
import math
import os
import re
import statistics
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

import data
import jepa
from configurator import configure, die, settings, whole_number, writable
from model import EncoderConfig, MaskedLM, peak_flops
from model import device_type as device_type_of

# -----------------------------------------------------------------------------
# settings (--key=value overrides them; '' / 0 / None mean "the device's default", set below)
device = "cuda"
sizes = ""  # comma-separated names of SIZES; '': paper,bert-base-128,bert-base-512 on CUDA, tiny on the CPU
objectives = "mlm,hybrid-separate,hybrid-shared,official"
batch_size = 0  # sequences per step; 0: each size's default
warmup_iters = 0  # untimed steps after the first (compile) one; 0: 10 on CUDA, 1 on the CPU
iters = 0  # timed steps; 0: 30 on CUDA, 5 on the CPU
compile = None  # None: torch.compile on CUDA only, as train.py's configs do
# levers to measure (the defaults are train.py's torch.compile(model, fullgraph=True, dynamic=False)):
# compile_mode='reduce-overhead' adds CUDA graphs, 'max-autotune' both autotuning and CUDA graphs
fullgraph = True
compile_mode = ""  # '': torch.compile's default mode
dtype = ""  # '': bfloat16 autocast on CUDA, float32 on the CPU (train.py's defaults)
mlm_prob = 0.15  # train.py's defaults from here to span_max
n_spans = 2
span_min = 0.10
span_max = 0.25
# the official recipe's padded batches: one article per sequence, truncated to T. Article lengths in
# tokens are lognormal; median and spread are an assumption about Wikipedia, not a measurement
article_median = 330
article_sigma = 1.1
embed = True  # also time embedding extraction
embed_sentences = 0  # 0: 16384 on CUDA, 128 on the CPU
embed_batch_size = 0  # 0: 256 on CUDA, 32 on the CPU
threads = 0  # torch CPU threads; 0: 1 on the CPU (see below), torch's default on CUDA
# AdamW's implementation: '' as train.py (fused on CUDA, torch's default on the CPU), 'fused', 'foreach', 'for-loop'
optimizer_impl = ""
matmul_ceiling = 0.0  # FLOP/s that a large matmul in the rows' dtype reaches here; 0: measured at start
profile = True  # on CUDA: profile a few steps of each row after timing and keep its top kernels
out = ""  # the JSON file; '': out-bench/<device name>.json (results/bench/ holds the ones the README quotes)
seed = 0
# -----------------------------------------------------------------------------
extra = configure(globals(), sys.argv[1:])
if extra:
    die(f"unexpected argument {extra[0]!r}: pass --key=value")
for key in ("batch_size", "warmup_iters", "iters", "embed_sentences", "embed_batch_size", "threads"):
    whole_number(key, globals()[key], 0, " (0: the device's default)")
whole_number("seed", seed, 0)
device_type = device_type_of(device)
on_cuda = device_type == "cuda"
if on_cuda and not torch.cuda.is_available():
    die("no CUDA device here: pass --device=cpu (a tiny model) or run on a GPU")
sizes = sizes or ("paper,bert-base-128,bert-base-512" if on_cuda else "tiny")
warmup_iters = warmup_iters or (10 if on_cuda else 1)
iters = iters or (30 if on_cuda else 5)
compile = on_cuda if compile is None else compile
dtype = dtype or ("bfloat16" if on_cuda else "float32")
embed_sentences = embed_sentences or (16384 if on_cuda else 128)
embed_batch_size = embed_batch_size or (256 if on_cuda else 32)
# the tiny CPU model gains nothing from more threads, and OpenMP threads spinning against other processes
# on a shared machine cost 7x (a whole CPU bench: 6 s on one thread, 42 s on two, on a loaded 2-core box)
threads = threads or (torch.get_num_threads() if on_cuda else 1)
torch.set_num_threads(threads)
if dtype not in ("float32", "bfloat16"):
    die(f"dtype={dtype}: use float32 or bfloat16 (autocast)")
if optimizer_impl not in ("", "fused", "foreach", "for-loop"):
    die(f"optimizer_impl={optimizer_impl}: use '', fused, foreach or for-loop")
if compile_mode not in ("", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
    die(f"compile_mode={compile_mode}: use '', default, reduce-overhead, max-autotune or max-autotune-no-cudagraphs")
if compile_mode and not compile:
    die(f"compile_mode={compile_mode} is torch.compile's: pass --compile=True with it")
config = {k: v for k, v in settings(globals()).items() if k not in ("extra", "on_cuda", "device_type")}  # as resolved

# model sizes: encoder, sequence length, default batch, predictor (train.py's default predictor throughout
# the GPU sizes); the CPU configs with their own vocabulary (vocab_ranks) and rotary positions
PRED = dict(pred_depth=6, pred_width=192, pred_n_head=6)
CPU_RECIPE = dict(vocab_ranks=8192, rope=True, pred_depth=2, pred_width=64, pred_n_head=4)
SIZES = {
    "tiny": dict(n_layer=2, n_embd=64, n_head=2, block_size=64, batch_size=4, pred_depth=1, pred_width=32,
                 pred_n_head=2),
    "quickstart": dict(n_layer=2, n_embd=128, n_head=4, block_size=128, batch_size=16, **CPU_RECIPE),  # config/tiny.py
    "cpu": dict(n_layer=4, n_embd=128, n_head=4, block_size=128, batch_size=32, **CPU_RECIPE),  # config/cpu.py
    "paper": dict(n_layer=6, n_embd=512, n_head=8, block_size=128, batch_size=256, **PRED),
    "bert-base-128": dict(n_layer=12, n_embd=768, n_head=12, block_size=128, batch_size=256, **PRED),
    "bert-base-512": dict(n_layer=12, n_embd=768, n_head=12, block_size=512, batch_size=64, **PRED),
}
OBJECTIVES = ("mlm", "hybrid-separate", "hybrid-shared", "official")
size_names, objective_names = sizes.split(","), objectives.split(",")
for s in size_names:
    if s not in SIZES:
        die(f"unknown size '{s}': use {', '.join(SIZES)}")
for o in objective_names:
    if o not in OBJECTIVES:
        die(f"unknown objective '{o}': use {', '.join(OBJECTIVES)}")

torch.manual_seed(seed)
torch.backends.cuda.matmul.allow_tf32 = True  # as train.py
torch.backends.cudnn.allow_tf32 = True
tok = data.get_tokenizer()  # each row switches to its size's vocabulary (size_config)
ptdtype = getattr(torch, dtype)
autocast = nullcontext() if dtype == "float32" else torch.autocast(device_type, dtype=ptdtype)
peak = peak_flops(device)


def cpu_name():
    """'<model name> (N cores, <torch's kernel ISA>)': on the CPU, timings depend on AVX2 vs AVX-512 kernels."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "CPU")
    except OSError:
        model = "CPU"
    return f"{model} ({os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()})"


device_name = torch.cuda.get_device_name() if on_cuda else "cpu"
out = out or os.path.join("out-bench", re.sub(r"[^A-Za-z0-9_.-]+", "_", device_name) + ".json")
try:  # before the minutes of timing
    writable(os.path.dirname(out) or ".", keep=False)
except OSError as e:
    die(f"--out={out} cannot be written ({e.strerror}): name a file in a folder you can write")


def sync():
    if on_cuda:
        torch.cuda.synchronize()


def measure_matmul_ceiling(dtype, n, reps):
    """Median FLOP/s of an n^3 matmul on random data (zeros run faster than real data), with this process's
    threads on the CPU: the most a training step of the same dtype can hope for here."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times)


# the achievable ceiling of this very machine, beside the datasheet peak: bf16 on the GPU, fp32 on the CPU
# (and bf16 there too where the rows run in bf16: CPUs with AVX512-BF16 or AMX run it faster; one without
# them emulates it at ~1 GFLOP/s, half a minute of measuring that an fp32 bench does not need)
ceiling = matmul_ceiling or (measure_matmul_ceiling(torch.bfloat16, 8192, 20) if on_cuda else
                             measure_matmul_ceiling(torch.float32, 1024, 10))
cpu_bf16_ceiling = measure_matmul_ceiling(torch.bfloat16, 1024, 10) if not on_cuda and dtype == "bfloat16" else None


def to_device(batch):
    return {k: v.pin_memory().to(device, non_blocking=True) if on_cuda else v for k, v in batch.items()}

# -----------------------------------------------------------------------------
# synthetic batches of the shapes train.py feeds. A few distinct batches are made ahead and cycled, so
# the step is timed alone; the CPU time to make one is reported beside it (train.py makes the next batch
# while the GPU works, so it is hidden as long as it stays below the step time)


def packed_batch(B, T, gen, hybrid):
    """As data.PackedBatches.next + train.get_batch: [CLS] + random text ids, BERT's corruption, spans."""
    idx = torch.randint(tok.n_normal, (B, T), generator=gen)
    idx[:, 0] = tok.cls_id
    batch = data.mask_tokens(idx, gen, tok, mlm_prob)
    if hybrid:
        jepa.add_context_view(batch, gen, tok.mask_id, n_spans, span_min, span_max)
    return batch


def padded_batch(B, T, gen):
    """The official recipe's batch: one article per sequence, truncated to T, padded to T, with a key
    padding mask; the MLM labels as a (B, T) map with -100 at unselected positions (head at every position)."""
    lengths = torch.exp(math.log(article_median) + article_sigma * torch.randn(B, generator=gen))
    lengths = lengths.round().long().clamp(8, T)  # >= 8 so that two target spans always fit
    pad_mask = torch.arange(T)[None, :] < lengths[:, None]
    idx = torch.randint(tok.n_normal, (B, T), generator=gen).masked_fill(~pad_mask, tok.pad_id)
    idx[:, 0] = tok.cls_id
    batch = data.mask_tokens(idx, gen, tok, mlm_prob)  # [PAD] and [CLS] are never selected
    tgt_pos, tgt_valid = jepa.sample_target_spans(lengths, T, gen, n_spans, span_min, span_max)
    tgt_mask = torch.zeros_like(idx, dtype=torch.bool).scatter_(1, tgt_pos, tgt_valid)
    labels = torch.full_like(idx, -100).scatter_(1, batch["mlm_pos"], batch["mlm_labels"])
    batch.update(pad_mask=pad_mask, tgt_pos=tgt_pos, tgt_valid=tgt_valid, tgt_mask=tgt_mask, labels=labels,
                 ctx_input=batch["mlm_input"].masked_fill(tgt_mask, tok.mask_id))
    return batch

# -----------------------------------------------------------------------------
# models and steps


def size_config(size):
    """The size's EncoderConfig; switches tok to the size's vocabulary, which its batches are then drawn from."""
    global tok
    s = SIZES[size]
    tok = data.get_tokenizer(s.get("vocab_ranks", data.N_RANKS))
    return EncoderConfig(vocab_size=tok.vocab_size, block_size=s["block_size"], n_layer=s["n_layer"],
                         n_head=s["n_head"], n_embd=s["n_embd"], rope=s.get("rope", False))


def build(size, enc_config, objective):
    """The model, target encoder, optimizer and the parameters to clip, exactly as train.py builds them."""
    s = SIZES[size]
    if objective == "mlm":
        model = MaskedLM(enc_config)
    else:  # the official recipe is the paper's hybrid (separate views), run differently
        views = "shared" if objective == "hybrid-shared" else "separate"
        model = jepa.Hybrid(enc_config, views, "cosine", "sigmoid", 0.5, s["pred_depth"], s["pred_width"],
                            s["pred_n_head"])
    model.to(device)
    target = jepa.make_target_encoder(model.encoder) if objective != "mlm" else None
    groups, clipped = jepa.param_groups(model, 0.01, 0.1, 0.0)  # train.py's defaults
    impl = optimizer_impl or ("fused" if on_cuda else "")
    optimizer = torch.optim.AdamW(groups, lr=5e-4, betas=(0.9, 0.98), fused=impl == "fused" or None,
                                  foreach=True if impl == "foreach" else False if impl == "for-loop" else None)
    return model, target, optimizer, clipped


def make_train_step(model, target, optimizer, clipped, use_compile):
    """One iteration of train.py's loop (grad_accum=1, no DDP). train.py is a script, so its loop cannot
    be imported: these lines mirror it and must follow it when it changes."""
    opts = dict(fullgraph=fullgraph, dynamic=False, mode=compile_mode or None)
    compiled = torch.compile(model, **opts) if use_compile else model
    target_forward = (torch.compile(target, **opts) if use_compile else target) if target is not None else None

    def step(batch):
        for group in optimizer.param_groups:
            group["lr"] = 5e-4 * group.get("lr_scale", 1.0)
        if target is not None:
            with autocast:
                batch["targets"] = jepa.target_features(target_forward, batch["idx"], batch["tgt_pos"])
        with autocast:
            loss, _ = compiled(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(clipped, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if target is not None:
            jepa.ema_update(target, model.encoder, 0.996)
        return loss
    return step


def make_official_step(model, target, optimizer):
    """The paper's official recipe, rebuilt from our modules: eager; fp16 autocast with a GradScaler (on
    the CPU: float32 and no scaler, as fp16 autocast is a CUDA recipe); padded batches with a key padding
    mask; the two online views as two separate encoder passes; the MLM head over every position. The
    optimizer and the EMA update are ours (fused AdamW, one _foreach_lerp_), so the row isolates these five."""
    fp16 = torch.autocast("cuda", dtype=torch.float16) if on_cuda else nullcontext()
    scaler = torch.amp.GradScaler("cuda") if on_cuda else None

    def step(batch):
        for group in optimizer.param_groups:
            group["lr"] = 5e-4
        pad = batch["pad_mask"]
        with fp16, torch.no_grad():  # the target encoder sees the clean, padded article
            h = target(batch["idx"], pad)
            h = F.layer_norm(h.float(), (h.size(-1),))
            targets = torch.gather(h, 1, batch["tgt_pos"].unsqueeze(-1).expand(-1, -1, h.size(-1)))
        with fp16:
            h_mlm = model.encoder(batch["mlm_input"], pad)
            h_ctx = model.encoder(batch["ctx_input"], pad)
            logits = model.head(h_mlm)  # (B, T, V): every position, padding included
            l_mlm = F.cross_entropy(logits.float().view(-1, logits.size(-1)), batch["labels"].view(-1),
                                    ignore_index=-100)
            pred = model.predictor(h_ctx, batch["tgt_mask"], batch["tgt_pos"])
            l_jepa = jepa.jepa_loss(pred, targets, batch["tgt_valid"])
            loss, _ = model.balance(l_mlm, l_jepa)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        jepa.ema_update(target, model.encoder, 0.996)
        return loss
    return step


def flop_parts(model, objective, T):
    """Analytic FLOPs per token of each part, from the models' own counters. The official recipe executes
    the head at all T positions; its useful FLOPs (for MFU) are those of hybrid-separate, the same model."""
    K = math.ceil(mlm_prob * T)
    enc = model.encoder.flops_per_token()
    head_at = T if objective == "official" else K
    parts = {"encoder": enc, "views": 2 if objective in ("hybrid-separate", "official") else 1,
             "mlm_head": MaskedLM.flops_per_token(model, head_at) - enc,
             "target": model.encoder.flops_per_token(False) if objective != "mlm" else 0,
             "predictor": model.predictor.flops_per_token(model.config.n_embd) if objective != "mlm" else 0}
    executed = parts["views"] * enc + parts["mlm_head"] + parts["target"] + parts["predictor"]
    total = model.flops_per_token(K)
    if objective != "official":  # the parts must add up to the counter train.py uses for its FLOP budget
        assert math.isclose(executed, total, rel_tol=1e-12), (objective, executed, total)
    return {**parts, "total": total, "executed": executed}


def median_step_seconds(step, batches, n_warmup, n_timed):
    """The first step alone (compile, autotuning, allocator warm-up), then n_warmup untimed steps, then
    n_timed steps: each timed by CUDA events on the GPU (by perf_counter on the CPU). Returns the first
    step's seconds, the median and min step seconds, the mean wall seconds per timed step (which also sees
    host stalls between steps), the graphs compiled during the timed steps, and the last loss."""
    from torch._dynamo.utils import counters
    sync()
    t0 = time.perf_counter()
    loss = step(batches[0])
    sync()
    first = time.perf_counter() - t0
    for i in range(n_warmup):
        loss = step(batches[(i + 1) % len(batches)])
    sync()
    graphs = counters["stats"]["unique_graphs"]
    times = []
    t0 = time.perf_counter()
    for i in range(n_timed):
        b = batches[i % len(batches)]
        if on_cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            loss = step(b)
            end.record()
            times.append((start, end))
        else:
            t1 = time.perf_counter()
            loss = step(b)
            times.append(time.perf_counter() - t1)
    sync()
    wall = (time.perf_counter() - t0) / n_timed
    if on_cuda:
        times = [s.elapsed_time(e) / 1e3 for s, e in times]
    recompiles = counters["stats"]["unique_graphs"] - graphs
    return first, statistics.median(times), min(times), wall, recompiles, loss.item()


def top_kernels(step, batches, n=3, top=12):
    """GPU kernels of n steps by total time: where a step's time goes, and which attention kernel ran."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    try:
        with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
            for i in range(n):
                step(batches[i % len(batches)])
            sync()
        events = [e for e in prof.key_averages() if e.device_time_total > 0]
    except Exception as e:  # the profile is a diagnostic: a profiler that fails here must not lose the timings
        print(f"warning: profiling failed ({type(e).__name__}: {e})", file=sys.stderr)
        return {"error": f"{type(e).__name__}: {e}"}
    total = sum(e.device_time_total for e in events)
    events.sort(key=lambda e: -e.device_time_total)
    names = [e.key.lower() for e in events]
    attention = sorted({k for k in ("flash", "fmha", "efficient_attention", "mem_eff") if any(k in x for x in names)})
    return {"attention_kernels": attention,
            "top": [{"kernel": e.key[:120], "ms_per_step": e.device_time_total / 1e3 / n,
                     "share": e.device_time_total / total} for e in events[:top]]}


def bench_row(size, objective):
    s = SIZES[size]
    enc_config = size_config(size)
    B, T = batch_size or s["batch_size"], s["block_size"]
    torch._dynamo.reset()  # fresh compile caches: rows must not share (or exhaust) each other's
    gc.collect()
    if on_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model, target, optimizer, clipped = build(size, enc_config, objective)
    gen = torch.Generator().manual_seed(seed)
    official = objective == "official"
    make = (lambda: padded_batch(B, T, gen)) if official else (lambda: packed_batch(B, T, gen, objective != "mlm"))
    t0 = time.perf_counter()
    cpu_batches = [make() for _ in range(4)]
    data_ms = (time.perf_counter() - t0) / len(cpu_batches) * 1e3
    batches = [to_device(b) for b in cpu_batches]
    use_compile = compile and not official
    step = make_official_step(model, target, optimizer) if official else \
        make_train_step(model, target, optimizer, clipped, use_compile)
    first, med, best, wall, recompiles, loss = median_step_seconds(step, batches, warmup_iters, iters)
    assert math.isfinite(loss), f"{size}/{objective}: loss {loss}"
    kernels = top_kernels(step, batches) if on_cuda and profile else None
    slots = B * T
    real = sum(int(b["pad_mask"].sum()) for b in cpu_batches) / len(cpu_batches) if official else slots
    flops = flop_parts(model, objective, T)
    row = {"name": f"{size}/{objective}", "size": size, "objective": objective, "batch_size": B, "block_size": T,
           "vocab_size": tok.vocab_size, "mlm_positions": math.ceil(mlm_prob * T),
           **{k: v for k, v in s.items() if k not in ("batch_size", "block_size")},
           "compile": use_compile, "fullgraph": fullgraph and use_compile,
           "compile_mode": (compile_mode or "default") if use_compile else None,
           "dtype": ("float16+GradScaler" if on_cuda else "float32") if official else dtype,
           "optimizer_impl": optimizer_impl or ("fused" if on_cuda else "default"),
           "tokens_per_step": slots, "real_tokens_per_step": real, "pad_frac": 1 - real / slots,
           "first_step_s": first, "ms_per_step": med * 1e3, "ms_per_step_min": best * 1e3,
           "ms_per_step_wall": wall * 1e3, "tok_per_s": real / med, "slot_tok_per_s": slots / med,
           "data_ms_per_batch": data_ms, "recompiles_timed": recompiles, "loss": loss,
           "flops_per_token": flops,
           # MFU: useful model FLOPs (per real token, head at the masked positions) per second over the peak;
           # HFU: what the step executes (per slot, padding and the full head included) over the peak
           "mfu": flops["total"] * real / med / peak if peak else None,
           "hfu": flops["executed"] * slots / med / peak if peak else None,
           "of_matmul_ceiling": flops["total"] * real / med / ceiling if ceiling else None,
           "of_bf16_ceiling": flops["total"] * real / med / cpu_bf16_ceiling if cpu_bf16_ceiling else None,
           "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if on_cuda else None,
           "kernels": kernels}
    del model, target, optimizer, clipped, step, batches
    return row

# -----------------------------------------------------------------------------
# embedding extraction: sentences/s of Encoder.embed (mean pooling) on padded batches of realistic
# sentence lengths, length-sorted (each batch padded to its own longest) and, for contrast, in random order


def bench_embed(size):
    config = size_config(size)
    encoder = MaskedLM(config).encoder.to(device).eval()
    gen = torch.Generator().manual_seed(seed)
    # sentence lengths in tokens, [CLS] included: lognormal around 24 (a GLUE / SentEval sentence), 5 to 60
    lengths = torch.exp(math.log(24) + 0.5 * torch.randn(embed_sentences, generator=gen)).round().long()
    lengths = lengths.clamp(5, min(60, config.block_size)).tolist()
    ids = torch.randint(tok.n_normal, (embed_sentences, max(lengths)), generator=gen)
    ids[:, 0] = tok.cls_id

    def batches(order):
        for i in range(0, len(order), embed_batch_size):
            chunk = order[i:i + embed_batch_size]
            L = max(lengths[j] for j in chunk)
            pad_mask = torch.arange(L)[None, :] < torch.tensor([lengths[j] for j in chunk])[:, None]
            yield ids[chunk, :L].masked_fill(~pad_mask, tok.pad_id), pad_mask

    def run(order):
        prepared = [(i.to(device), m.to(device)) for i, m in batches(order)]  # tokenization is not timed
        with torch.no_grad(), autocast:
            encoder.embed(*prepared[0])  # warm-up
            sync()
            t0 = time.perf_counter()
            for idx, pad_mask in prepared:
                encoder.embed(idx, pad_mask, "mean")
            sync()
        real = sum(lengths)
        slots = sum(i.numel() for i, _ in prepared)
        return {"sent_per_s": len(order) / (time.perf_counter() - t0), "pad_frac": 1 - real / slots}

    by_length = sorted(range(embed_sentences), key=lambda j: lengths[j])
    shuffled = torch.randperm(embed_sentences, generator=gen).tolist()
    sorted_run, random_run = run(by_length), run(shuffled)
    return {"size": size, "sentences": embed_sentences, "batch_size": embed_batch_size,
            "mean_len": sum(lengths) / len(lengths), "compile": False, "dtype": dtype,
            "sorted": sorted_run, "random": random_run}

# -----------------------------------------------------------------------------
# run, print, save


rows = [bench_row(s, o) for s in size_names for o in objective_names]
embeds = [bench_embed(s) for s in size_names] if embed else []

M = 1e6
print(f"{device_name if on_cuda else cpu_name()}, torch {torch.__version__}, {dtype}, compile={compile}, "
      f"{warmup_iters}+{iters} steps, {threads} CPU threads"
      + (f", peak {peak / 1e12:.0f} TFLOP/s" if peak else ", no MFU (peak FLOP/s unknown here)")
      + (f", measured bf16 matmul ceiling {ceiling / 1e12:.0f} TFLOP/s" if on_cuda else
         f", measured matmul ceiling fp32 {ceiling / 1e9:.0f} GFLOP/s"
         + (f" (bf16 {cpu_bf16_ceiling / 1e9:.0f})" if cpu_bf16_ceiling else "")))
head = (f"{'row':<28} {'B x T':>9} {'tok/s':>10} {'ms/step':>8} {'1st s':>6} {'MFU':>6} {'ofCeil':>6} {'mem GB':>7} "
        f"{'enc':>8} {'xv':>2} {'head':>8} {'target':>8} {'pred':>8} {'total':>8}  (MFLOP/token)")
print(head)
print("-" * len(head))
for r in rows:
    f = r["flops_per_token"]
    mfu = f"{100 * r['mfu']:5.1f}%" if r["mfu"] is not None else "     -"
    ofc = f"{100 * r['of_matmul_ceiling']:5.1f}%" if r["of_matmul_ceiling"] is not None else "     -"
    mem = f"{r['peak_mem_gb']:7.1f}" if r["peak_mem_gb"] is not None else "      -"
    print(f"{r['name']:<28} {r['batch_size']:>4}x{r['block_size']:<4} {r['tok_per_s']:>10,.0f} "
          f"{r['ms_per_step']:>8.2f} {r['first_step_s']:>6.1f} {mfu} {ofc} {mem} {f['encoder'] / M:>8.2f} "
          f"{f['views']:>2} {f['mlm_head'] / M:>8.2f} {f['target'] / M:>8.2f} {f['predictor'] / M:>8.2f} "
          f"{f['total'] / M:>8.2f}")
if any(r["objective"] == "official" for r in rows):
    print("official: tok/s counts real (non-pad) tokens; its head column runs at all T positions, its total (for MFU) "
          "at the masked ones")
for r in rows:
    if r["kernels"] and "top" in r["kernels"]:
        k = r["kernels"]
        print(f"{r['name']}: attention {','.join(k['attention_kernels']) or 'none found'}; top kernels: "
              + "; ".join(f"{100 * t['share']:.0f}% {t['kernel'][:48]}" for t in k["top"][:5]))
for e in embeds:
    print(f"embed {e['size']}: {e['sorted']['sent_per_s']:,.0f} sentences/s length-sorted "
          f"({100 * e['sorted']['pad_frac']:.0f}% padding), {e['random']['sent_per_s']:,.0f} in random order "
          f"({100 * e['random']['pad_frac']:.0f}% padding); {e['sentences']} sentences of {e['mean_len']:.1f} "
          "tokens on average")

os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
data.save_json({"device": device_name, "cpu": cpu_name(), "torch": torch.__version__,
                "command": "python " + " ".join(sys.argv), "peak_flops": peak, "matmul_ceiling": ceiling,
                "cpu_bf16_matmul_ceiling": cpu_bf16_ceiling, "settings": config, "rows": rows, "embed": embeds,
                "analysis_wall_time": "not measured by bench.py: time probe.py and eval_geometry.py on one checkpoint"},
               out)
print(f"wrote {out}")
