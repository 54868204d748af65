"""
Pre-train a BERT-style encoder with MLM, or with the hybrid JEPA + MLM objective of
"Predict and Reconstruct" (2026). One GPU, CPU, or several GPUs through DDP:

$ python train.py config/hybrid.py                         # the paper's setting, one GPU
$ python train.py config/hybrid.py config/tiny.py          # a few minutes on a laptop CPU
$ python train.py config/hybrid.py --stop_after=2000       # its first 2,000 steps (a health check), resumable
$ torchrun --standalone --nproc_per_node=8 train.py config/hybrid.py
$ torchrun --standalone --nproc_per_node=2 train.py config/hybrid.py config/tiny.py --device=cpu --backend=gloo
"""

import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from contextlib import nullcontext

import torch
from torch.distributed import destroy_process_group, init_process_group
from torch.nn.parallel import DistributedDataParallel as DDP

import data
import jepa
from configurator import atomic_file, clock, configure, die, settings, whole_number, writable
from model import EncoderConfig, MaskedLM, load_checkpoint, planned_iters
from model import device_type as device_type_of
from model import peak_flops as peak_flops_of

# -----------------------------------------------------------------------------
# default config: the paper's hybrid on Wikipedia (config/*.py and --key=value override these)
# I/O
out_dir = "out-hybrid"
init_from = "scratch"  # 'scratch' or 'resume' (from out_dir/ckpt.pt)
eval_interval = 1000
eval_iters = 50
log_interval = 10
# data
dataset = "wikipedia"  # 'wikipedia', 'embedded', or a local file or folder (.txt, .jsonl, .csv, ...: data.py)
text_column = "text"  # the JSON field, or .csv/.parquet/.arrow column, that holds a local corpus' text
data_dir = "data"
vocab_ranks = 32000  # cl100k's first vocab_ranks BPE ranks (a smaller prefix is a valid, cheaper BPE)
batch_size = 256  # sequences per optimizer step, all processes together (the paper's batch)
grad_accum = 1  # micro-steps per optimizer step in each process: each takes batch_size / (processes * grad_accum)
mlm_prob = 0.15
# model
n_layer = 6
n_head = 8
n_embd = 512
block_size = 128
dropout = 0.0
bias = True
tie_mlm_head = False
rope = False  # rotary positions in attention instead of fixed sin-cos added to the embeddings
# objective
objective = "hybrid"  # 'hybrid' (JEPA + MLM) or 'mlm'
jepa_views = "separate"  # 'separate' (the paper's) or 'shared'
jepa_loss = "cosine"  # 'cosine' (the paper's) or 'smooth_l1'
balance = "sigmoid"  # 'sigmoid' (the paper's λ = sigmoid(w)), 'uncertainty' (Kendall et al.) or 'fixed'
fixed_lambda = 0.5  # the JEPA weight when balance='fixed'
n_spans = 2
span_min = 0.10  # each target span is 10-25% of the sequence
span_max = 0.25
pred_depth = 6
pred_width = 192
pred_n_head = 6
ema_start = 0.996  # EMA momentum, linear to ema_end over training (I-JEPA)
ema_end = 1.0
# λ = sigmoid(w) (or the log-variances) in an AdamW group of its own: w climbs by ~its learning rate every
# step (see jepa.Balance), so this fraction of the model's learning rate sets how fast the MLM weight falls
balance_lr = 0.1
balance_wd = 0.0
# the target features' health, logged every log_interval: RankMe of the batch's target tokens (jepa.rankme);
# a warning below rankme_warn, a stop below rankme_stop or when their std across tokens falls below collapse_std
rankme_warn = 10.0
rankme_stop = 2.0
collapse_std = 1e-3
# budget: max_flops > 0 trains until that many counted FLOPs are spent, else for max_iters
max_iters = 100000
max_flops = 0.0
stop_after = 0  # > 0: stop, checkpointed, after this step, the schedule still the whole budget's: a resume goes on
# optimizer
learning_rate = 5e-4
min_lr = 5e-5
warmup_frac = 0.02  # of the budget
weight_decay = 0.01
beta1 = 0.9
beta2 = 0.98
grad_clip = 1.0
# system
device = "cuda"
dtype = "bfloat16"  # 'float32' or 'bfloat16' (autocast; CUDA only)
compile = True
backend = "nccl"
peak_flops = 0.0  # one device's peak FLOP/s, for MFU; 0: the datasheet value of a known GPU (model.py), else none
seed = 1337
# -----------------------------------------------------------------------------
config_keys = list(settings(globals()))
extra = configure(globals(), sys.argv[1:])
if extra:
    die(f"unexpected argument {extra[0]!r}: pass config files (*.py) and --key=value")
config = {k: globals()[k] for k in config_keys}  # saved in the checkpoint


def check(key, ok, allowed):
    """Every setting is checked before any work: a bad one stops with one line and exit code 2."""
    if not ok:
        die(f"--{key}={globals()[key]!r}: {allowed}")


def positive_int(key):
    whole_number(key, globals()[key], 1)


def fraction(key, lo_open=False, hi_open=False, lo=0.0, hi=1.0):
    v = globals()[key]
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (lo < v if lo_open else lo <= v) and \
        (v < hi if hi_open else v <= hi)
    check(key, ok, f"must be a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}")


def one_of(key, values):
    check(key, globals()[key] in values, "must be one of " + ", ".join(repr(v) for v in values))


for key in ("eval_interval", "eval_iters", "log_interval", "batch_size", "grad_accum", "n_layer", "n_head", "n_embd",
            "block_size", "n_spans", "pred_depth", "pred_width", "pred_n_head", "max_iters"):
    positive_int(key)
whole_number("stop_after", stop_after, 0)
check("stop_after", max_flops > 0 or stop_after < max_iters,
      f"must be below max_iters={max_iters} (0: train to the end)")
check("out_dir", out_dir != "", "name the folder for the run's checkpoint and log (out-hybrid by default)")
one_of("init_from", ("scratch", "resume"))
one_of("objective", ("hybrid", "mlm"))
one_of("jepa_views", ("separate", "shared"))
one_of("jepa_loss", ("cosine", "smooth_l1"))
one_of("balance", ("sigmoid", "uncertainty", "fixed"))
one_of("dtype", ("float32", "bfloat16"))
one_of("backend", ("nccl", "gloo"))
check("n_head", n_embd % n_head == 0, f"must divide n_embd={n_embd}")
check("pred_n_head", pred_width % pred_n_head == 0, f"must divide pred_width={pred_width}")
check("block_size", block_size >= 8, "must be >= 8 (a [CLS] token, masked tokens and target spans)")
fraction("mlm_prob", lo_open=True, hi_open=True)
check("mlm_prob", mlm_prob * (block_size - 1) > 0.5,  # data.mask_tokens rounds: none would leave no MLM loss
      f"selects no token of a {block_size}-token window: use more than {0.5 / (block_size - 1):.4f}")
fraction("dropout", hi_open=True)
fraction("fixed_lambda")
fraction("span_min", lo_open=True, hi_open=True)
fraction("span_max", lo_open=True, hi_open=True)
check("span_max", span_max >= span_min, f"must be >= span_min={span_min}")
widest = max(math.floor(span_max * block_size), math.ceil(span_min * block_size), 1)
check("n_spans", n_spans * widest <= block_size - 1,
      f"{n_spans} spans of up to {widest} tokens do not fit in {block_size - 1}: at most {(block_size - 1) // widest}")
fraction("ema_start")
fraction("ema_end")
check("ema_end", ema_end >= ema_start, f"must be >= ema_start={ema_start}")
for key in ("max_flops", "min_lr", "weight_decay", "grad_clip", "balance_lr", "balance_wd", "peak_flops",
            "rankme_warn", "rankme_stop", "collapse_std"):
    fraction(key, hi=math.inf)
fraction("learning_rate", lo_open=True, hi=math.inf)
check("min_lr", min_lr <= learning_rate, f"must be <= learning_rate={learning_rate}")
fraction("warmup_frac", hi_open=True)
fraction("beta1", hi_open=True)
fraction("beta2", hi_open=True)
check("seed", isinstance(seed, int) and not isinstance(seed, bool), "must be a whole number")
tok = data.get_tokenizer(vocab_ranks)  # checks vocab_ranks
data.check_column(dataset, text_column)
hybrid = objective == "hybrid"

# DDP: one process per device under torchrun. Every process holds the same model and sees its own data
ddp = int(os.environ.get("RANK", -1)) != -1
world = int(os.environ["WORLD_SIZE"]) if ddp else 1
check("batch_size", batch_size % (world * grad_accum) == 0,
      f"must be a multiple of {world} processes x grad_accum={grad_accum}")
micro_batch = batch_size // (world * grad_accum)
device_type = device_type_of(device)
if device_type == "cuda" and not torch.cuda.is_available():
    die("no CUDA device here: add config/tiny.py for a CPU run, or pass --device=cpu --dtype=float32 --compile=False")
check("dtype", device_type == "cuda" or dtype == "float32",
      "bfloat16 autocast is for CUDA; on the CPU pass --dtype=float32")
check("backend", not ddp or device_type == "cuda" or backend == "gloo", "NCCL is for CUDA devices: CPU processes "
      "take --backend=gloo")
if ddp:
    init_process_group(backend=backend)
    signal_group = torch.distributed.new_group(backend="gloo")  # agreeing on a stop is CPU work: no GPU waits
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if device.startswith("cuda"):  # else CPU processes with backend='gloo', as the tests run it
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
else:
    rank = 0
master = rank == 0

# a resume is read and checked before the data and the model: a refusal costs no preparation
ckpt_path = os.path.join(out_dir, "ckpt.pt")
log_path = os.path.join(out_dir, "log.jsonl")
if init_from == "resume":
    ckpt = load_checkpoint(ckpt_path, map_location=device)
    if ckpt.get("stripped"):
        die(f"{ckpt_path} is stripped of its weights (for the analysis only): resume from the full checkpoint")
    # the run must go on as it began: only where it writes, how often it reports and how it runs may change
    free = ("out_dir", "init_from", "eval_interval", "eval_iters", "log_interval", "data_dir", "device",
            "compile", "backend", "peak_flops", "rankme_warn", "rankme_stop", "collapse_std", "stop_after")
    for key in config_keys:
        if key not in free and ckpt["config"].get(key) != config[key]:
            die(f"--{key}={config[key]!r} differs from {ckpt['config'].get(key)!r} in {ckpt_path}: resume with "
                "the checkpoint's settings, or start a new run in another --out_dir")
    if len(ckpt["rng"]["data"]) != world:
        die(f"{ckpt_path} was written by {len(ckpt['rng']['data'])} processes, not {world}: resume with as many")
    if ckpt["iter_num"] == planned_iters(ckpt):  # its checkpoint and log stay as they are
        if master:
            print(f"{ckpt_path} is a finished run ({ckpt['iter_num']} of {ckpt['iter_num']} iters): nothing to resume")
        if ddp:
            destroy_process_group()
        raise SystemExit(0)
    check("stop_after", stop_after == 0 or stop_after > ckpt["iter_num"],
          f"{ckpt_path} is at iter {ckpt['iter_num']} already: pass a later step, or leave it out to train to the end")
elif os.path.exists(ckpt_path):  # a finished run may be hours of GPU time: a new one never overwrites it
    die(f"--out_dir={out_dir} holds a run's checkpoint: continue it with --init_from=resume, or start this run "
        f"in another --out_dir (or remove {out_dir})")

# one run at a time in out_dir (the same command started twice, a scheduler's retry while the first still
# runs): two would truncate each other's log and overwrite each other's checkpoints
run_lock = data.lock(out_dir, "train", wait=False) if master else -1  # held until this process ends
if run_lock is None:
    die(f"--out_dir={out_dir} is in use by another training run now: wait for it to end (or stop it), or start "
        "this one in another --out_dir")
if master:  # before the data work too (hours on Wikipedia); a resume's checks above only read, and a failed
    # start leaves an earlier run in out_dir as it was, and no new out_dir
    try:
        writable(out_dir, keep=False)
    except OSError as e:
        die(f"--out_dir={out_dir} cannot be written ({e.strerror}): pass a folder you can write to")


def check_same_data(made_from, folder):
    """A resume goes on over the data its run began on (made_from None: not known yet): other data would
    give other batches. Checkpoints from before the record carry none, and pass."""
    if init_from == "resume" and made_from is not None and ckpt.get("data", made_from) != made_from:
        die(f"{folder} is not the data this run began on ({data.what_changed(ckpt['data'], made_from)} since): "
            "resume on the corpus it began on, or start a new run in another --out_dir")


# data: prepared once (rank 0), then random packed windows; the data stream has its own generator,
# so the hybrid and the MLM baseline with the same seed see the same batches in the same order
folder = data.corpus_folder(dataset, data_dir, vocab_ranks)
if init_from == "resume":  # before an edited corpus is prepared again (hours on Wikipedia)
    check_same_data(data.source_record(dataset, vocab_ranks, text_column), folder)
if master:
    data.prepare(dataset, data_dir, vocab_ranks, text_column)
if ddp:
    torch.distributed.barrier()
meta = data.read_meta(folder) or {}
if not meta.get("complete"):  # on another node: rank 0 prepared into its own disk
    die(f"{folder} is not prepared on the node of rank {rank}: on several nodes pass a --data_dir that every node "
        f"sees, or prepare it on each node first (python data.py {dataset} --data_dir={data_dir} "
        f"--vocab_ranks={vocab_ranks} --text_column={text_column})")
made_from = meta["made_from"]  # the corpus' files, reader, tokenizer and split rule
check_same_data(made_from, folder)  # a copied data/ without its source: what was prepared

torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
autocast = nullcontext() if dtype == "float32" else torch.autocast(device_type, dtype=getattr(torch, dtype))
tokens_per_iter = batch_size * block_size
train_batches = data.PackedBatches(os.path.join(folder, "train.bin"), block_size, micro_batch, mlm_prob, seed + rank,
                                   tok)
data.PackedBatches(os.path.join(folder, "val.bin"), block_size, batch_size, mlm_prob, seed, tok)  # refuses a short val
span_gen = torch.Generator().manual_seed(seed + rank + 10_000)


def get_batch(batches, spans):
    batch = batches.next()
    if hybrid:
        jepa.add_context_view(batch, spans, tok.mask_id, n_spans, span_min, span_max)
    return {k: v.pin_memory().to(device, non_blocking=True) if device_type == "cuda" else v
            for k, v in batch.items()}


def next_train_batch():
    """Draws a training batch, remembering the generators' states before it: batches are drawn one
    step ahead, and a checkpoint must rewind to the batch not yet trained on."""
    global batch_rng
    batch_rng = {"data": train_batches.generator.get_state(), "spans": span_gen.get_state()}
    return get_batch(train_batches, span_gen)


# model: the same seed on every process, so all start from identical online and target weights
torch.manual_seed(seed)
model_args = dict(vocab_size=tok.vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head,
                  n_embd=n_embd, dropout=dropout, bias=bias, tie_mlm_head=tie_mlm_head, rope=rope)
enc_config = EncoderConfig(**model_args)
if hybrid:
    model = jepa.Hybrid(enc_config, jepa_views, jepa_loss, balance, fixed_lambda, pred_depth, pred_width, pred_n_head)
else:
    model = MaskedLM(enc_config)
model.to(device)
target = jepa.make_target_encoder(model.encoder) if hybrid else None  # before compile: a plain module
torch.manual_seed(seed + rank)  # from here on (dropout), each process draws its own stream

groups, model_params = jepa.param_groups(model, weight_decay, balance_lr, balance_wd)  # model_params: clipped
optimizer = torch.optim.AdamW(groups, lr=learning_rate, betas=(beta1, beta2), fused=device_type == "cuda")

n_masked = math.ceil(mlm_prob * block_size)
flops_per_iter = model.flops_per_token(n_masked) * tokens_per_iter
if max_flops > 0:
    max_iters = int(max_flops // flops_per_iter)
    if max_iters < 1:
        die(f"--max_flops={max_flops:.3g}: less than one iteration ({flops_per_iter:.3g} FLOPs)")
    check("stop_after", stop_after < max_iters, f"must be below the {max_iters} iters of --max_flops={max_flops:.3g}")
until = stop_after or max_iters  # the step this command trains to

if master:  # made only now that the data and the model have passed their checks
    os.makedirs(out_dir, exist_ok=True)

iter_num, flops_done = 0, 0.0
if init_from == "resume":
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if hybrid:
        target.load_state_dict(ckpt["target"])
    iter_num, flops_done = ckpt["iter_num"], ckpt["flops_done"]
    train_batches.generator.set_state(ckpt["rng"]["data"][rank])
    span_gen.set_state(ckpt["rng"]["spans"][rank])
    torch.set_rng_state(ckpt["rng"]["torch"][rank])
    if device_type == "cuda":
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"][rank])
    if master:  # drop what a killed run logged after its last checkpoint, and the val record the loop redoes
        redone = iter_num % eval_interval == 0  # (a stop_after's val record can be off the eval steps)
        records = data.read_log(log_path)
        with open(log_path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in records
                         if r["iter"] < iter_num or (r["iter"] == iter_num and not ("val_mlm" in r and redone)))
    del ckpt
elif master:
    open(log_path, "w", encoding="utf-8").close()

raw_model = model
if compile:  # static shapes all the way (fixed MLM slots and span slots): one graph, no graph breaks
    model = torch.compile(model, fullgraph=True, dynamic=False)
    target_forward = torch.compile(target, fullgraph=True, dynamic=False) if hybrid else None
else:
    target_forward = target
eval_model = model  # evaluation runs on rank 0 alone, outside DDP and its collectives
if ddp:
    model = DDP(model, device_ids=[local_rank] if device_type == "cuda" else None)
inject_nan = os.environ.get("TRAIN_INJECT_NAN", "")  # tests only: "RANK:ITER" makes that rank's loss NaN there


def add_targets(batch):
    with autocast:
        batch["targets"] = jepa.target_features(target_forward, batch["idx"], batch["tgt_pos"])
    return batch


def progress(it):
    return it / max_iters


def get_lr(it):
    """Linear warmup to learning_rate, never past it (a warmup that ends inside a step reaches it at that
    step), then cosine to min_lr, by fraction of the budget (steps or FLOPs alike)."""
    p = progress(it)
    if p < warmup_frac:
        return learning_rate * min((p + 1 / max_iters) / warmup_frac, 1.0)
    decay = min((p - warmup_frac) / (1 - warmup_frac), 1.0)
    return min_lr + 0.5 * (learning_rate - min_lr) * (1 + math.cos(math.pi * decay))


@torch.no_grad()
def estimate_val():
    """Mean losses over the same eval_iters val batches every time (fixed generators)."""
    eval_model.eval()
    # the global batch: the same val sequences however many processes and micro-steps train
    batches = data.PackedBatches(os.path.join(folder, "val.bin"), block_size, batch_size, mlm_prob, seed, tok)
    spans = torch.Generator().manual_seed(seed + 1)
    totals = {}
    for _ in range(eval_iters):
        batch = get_batch(batches, spans)
        if hybrid:
            add_targets(batch)
        with autocast:
            _, stats = eval_model(batch)
        for k in ("mlm", "jepa"):
            if k in stats:
                totals[k] = totals.get(k, 0.0) + stats[k].item() / eval_iters
    eval_model.train()
    return totals


def command(*drop):
    """The command that continues this run as it was started, less the settings in drop; the script named
    as it was (python /path/to/train.py from another folder)."""
    script = shlex.quote(sys.argv[0])
    launcher = f"torchrun --standalone --nproc_per_node={world} {script}" if ddp else f"python {script}"
    args = [a for a in sys.argv[1:] if not a.startswith(tuple(f"--{k}=" for k in ("init_from",) + drop))]
    return " ".join([launcher, shlex.join(args), "--init_from=resume"])


resume_command = command()  # continues this command (to its stop_after, if any)
finish_command = command("stop_after")  # finishes the run
try:  # the code's commit, for an exported encoder's card
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(os.path.abspath(__file__)),
                            capture_output=True, encoding="utf-8").stdout.strip() or None
except OSError:  # no git on this machine
    commit = None


def cannot_write(path, e):
    """The one line that stops training where a write failed (a full disk): the last checkpoint is whole."""
    return SystemExit(f"error: {path} cannot be written at iter {iter_num} ({type(e).__name__}: {e}): "
                      + (f"the last checkpoint is whole: mend the cause (a full disk?), then {resume_command}"
                         if os.path.exists(ckpt_path) else "mend the cause (a full disk?), then start again"))


def save_checkpoint():
    rng = {**batch_rng, "torch": torch.get_rng_state(),
           "cuda": torch.cuda.get_rng_state() if device_type == "cuda" else None}
    if ddp:  # every rank's streams, so a resumed run continues each one
        gathered = [None] * world
        torch.distributed.all_gather_object(gathered, rng)
        rng = {k: [r[k] for r in gathered] for k in rng}
    else:
        rng = {k: [v] for k, v in rng.items()}
    if not master:
        return
    ckpt = {"model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
            "target": target.state_dict() if hybrid else None, "model_args": model_args, "config": config,
            "iter_num": iter_num, "max_iters": max_iters, "flops_done": flops_done, "rng": rng, "data": made_from,
            "saved": time.time(),  # the analysis cache's key: it survives a copy, where the file's mtime does not
            "command": finish_command, "commit": commit}
    try:
        with atomic_file(ckpt_path) as f:  # a kill leaves the old checkpoint or the new one
            torch.save(ckpt, f)
    except (OSError, RuntimeError) as e:  # a full disk: torch's writer says "file write failed"
        raise cannot_write(ckpt_path, e)


def rank_param_sums():
    """[online, target] parameter sums of every process: the same, bit for bit, while the processes agree."""
    sums = [sum(p.double().sum().item() for p in raw_model.parameters()),
            sum(p.double().sum().item() for p in target.parameters()) if hybrid else 0.0]
    gathered = [None] * world
    torch.distributed.all_gather_object(gathered, sums)
    return gathered


def log(record):
    try:
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:
        raise cannot_write(log_path, e)


def time_left(step_s, eval_s):
    """What is left of the run at step_s seconds a step and eval_s an evaluation (with its checkpoint)."""
    evals_left = math.ceil(until / eval_interval) - math.ceil(iter_num / eval_interval) + 1  # and the last
    return clock(step_s * (until - iter_num) + eval_s * evals_left)


def stop_reason(record):
    """Why training must stop after this record, or ''."""
    bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        return (f"{', '.join(bad)} not finite at iter {record['iter']}: start a new run (another --out_dir) with a "
                "lower learning_rate or a larger warmup_frac; a resume keeps the run's settings")
    if record.get("tgt_std", 1.0) < collapse_std or record.get("tgt_rankme", math.inf) < rankme_stop:
        return (f"target features collapsed at iter {record['iter']} (std {record['tgt_std']:.2e}, RankMe "
                f"{record['tgt_rankme']:.2f}; stops below collapse_std={collapse_std}, rankme_stop={rankme_stop}): "
                "raise ema_start or lower learning_rate")
    return ""


interrupted = []  # the signals received: Ctrl-C (SIGINT) or a scheduler's SIGTERM


def on_signal(signum, frame):
    """The first signal lets the step finish and the checkpoint be written; a second Ctrl-C stops at once
    (the last checkpoint stays whole: it is written atomically). torchrun passes its Ctrl-C on to each worker,
    which runs in a session of its own: a terminal's Ctrl-C reaches a worker once."""
    if interrupted and signum == signal.SIGINT:
        print(f"stopped at once: resume from the last checkpoint with {resume_command}", file=sys.stderr)
        raise SystemExit(130)
    if not interrupted and master:
        print(f"{signal.Signals(signum).name}: finishing the step to save a checkpoint (Ctrl-C again stops at once)",
              file=sys.stderr)
    interrupted.append(signum)


def stop_if(reason):
    """Every process decides together: a stop seen by one process stops all, each with the same line
    (a process that left alone would leave the others waiting in the next all-reduce)."""
    if ddp:
        reasons = [None] * world
        torch.distributed.all_gather_object(reasons, reason)
        reason = next((r for r in reasons if r), "")
    if reason:
        if ddp:
            destroy_process_group()
        raise SystemExit(f"error: {reason}")


def interrupt_now():
    """Whether a signal stops training after this step. Under DDP every process must stop at the same step,
    and soon: torchrun kills its workers 30 s after it forwards a Ctrl-C. So the processes agree after every
    step, by a one-number all-reduce on the CPU (gloo), which leaves the GPU's queue alone."""
    if not ddp:
        return bool(interrupted)
    flag = torch.tensor([len(interrupted)])
    torch.distributed.all_reduce(flag, group=signal_group)
    return flag.item() > 0


# training loop
signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGTERM, on_signal)
peak = peak_flops or peak_flops_of(device)
if master:
    n_params = sum(p.numel() for p in raw_model.parameters())
    print(f"{objective}: {n_params / 1e6:.1f}M trainable parameters, {flops_per_iter / tokens_per_iter / 1e6:.1f} "
          f"MFLOPs/token, {max_iters} iters on {world} x {device} ({dtype})"
          + (f", stopping after iter {stop_after}" if stop_after else ""))
    print(f"global batch {batch_size} sequences = {world} process{'es' * (world > 1)} x {grad_accum} "
          f"micro-step{'s' * (grad_accum > 1)} x {micro_batch} sequences; {tokens_per_iter:,} tokens/iter")
    info, warning = data.split_lines(folder, max_iters * tokens_per_iter, mlm_prob)
    print(info)
    if warning:
        print(warning, file=sys.stderr)
    # the line every val MLM loss is read against: what ignoring the context scores on the same val targets
    unigram = data.unigram_xent(folder, block_size, batch_size, mlm_prob, seed, eval_iters, tok)
    print(f"val unigram cross-entropy {unigram:.4f}: a model that has learned nothing from the context scores this")
batch = next_train_batch()
t0 = started = time.time()
first_iter = iter_num  # where this command began: 0, or a resume's step
step_s, intervals, eval_s = 0.0, 0, 0.0  # a step's seconds, smoothed over the logged intervals after the first
while True:
    if iter_num % eval_interval == 0 or iter_num == until:
        reason, eval_t0 = "", time.time()
        sums = rank_param_sums() if ddp else None
        if master:
            val = estimate_val()
            print(f"iter {iter_num}: val mlm {val['mlm']:.4f}, unigram {unigram:.4f}"
                  + (f", val jepa {val['jepa']:.4f}" if hybrid else ""))
            record = {"iter": iter_num, **{f"val_{k}": v for k, v in val.items()}, "val_unigram": unigram}
            reason = stop_reason(record)
            if sums:
                record["rank_param_sums"] = sums
                if any(s != sums[0] for s in sums):
                    reason = f"the processes' weights differ at iter {iter_num} (parameter sums {sums})"
            if not reason:
                log(record)
        stop_if(reason)
        if iter_num > 0:
            save_checkpoint()
        t0 = time.time()
        eval_s = t0 - eval_t0
    if iter_num == until:
        break

    lr = get_lr(iter_num)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    for micro in range(grad_accum):
        if ddp:  # all-reduce the gradients only once, on the last micro-step
            model.require_backward_grad_sync = micro == grad_accum - 1
        if hybrid:
            add_targets(batch)
        with autocast:
            loss, stats = model(batch)
        if inject_nan == f"{rank}:{iter_num}":
            loss = loss * float("nan")
        next_batch = next_train_batch()  # on the CPU while the GPU works
        (loss / grad_accum).backward()
        batch, done = next_batch, batch
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model_params, grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if hybrid:
        # the schedule at the end of this step: the last step's update uses ema_end exactly
        momentum = jepa.ema_momentum(progress(iter_num + 1), ema_start, ema_end)
        jepa.ema_update(target, raw_model.encoder, momentum)
    iter_num += 1
    flops_done += flops_per_iter

    if iter_num % log_interval == 0:  # every process checks its own figures; rank 0 writes them
        dt = (time.time() - t0) / log_interval
        t0 = time.time()
        intervals += 1  # the first one holds the compile and the warm-up
        step_s = dt if intervals <= 2 else 0.9 * step_s + 0.1 * dt
        record = {"iter": iter_num, "lr": lr, "loss": loss.item(), **{k: v.item() for k, v in stats.items()}}
        if hybrid:
            record["lambda"] = record["w_jepa"] / (record["w_mlm"] + record["w_jepa"])
            record["ema"] = momentum
            record["tgt_std"] = jepa.feature_std(done["targets"], done["tgt_valid"]).item()
            record["tgt_rankme"] = jepa.rankme(done["targets"], done["tgt_valid"]).item()
        record.update(tok_per_s=tokens_per_iter / dt, flops=flops_done)
        if peak:  # FLOPs of all processes over the peak of all their devices
            record["mfu"] = flops_per_iter / dt / (peak * world)
        stop_if(stop_reason(record))
        if master:
            log(record)
            line = f"iter {iter_num}: mlm {record['mlm']:.4f}"
            if hybrid:
                line += (f", jepa {record['jepa']:.4f}, λ {record['lambda']:.3f}, ema {momentum:.4f}, "
                         f"tgt std {record['tgt_std']:.3f}, RankMe {record['tgt_rankme']:.1f}")
            line += f", {record['tok_per_s']:,.0f} tok/s"
            line += f", mfu {100 * record['mfu']:.1f}%" if peak else ""
            print(line + f", {flops_done:.3g} FLOPs" + (f", {time_left(step_s, eval_s)} left" if intervals > 1 else ""))
            if hybrid and record["tgt_rankme"] < rankme_warn:
                print(f"WARNING: the target features are near collapse at iter {iter_num}: RankMe "
                      f"{record['tgt_rankme']:.2f} < rankme_warn={rankme_warn} (std {record['tgt_std']:.3f})",
                      file=sys.stderr)
    if interrupt_now():  # the step is done and batch_rng points at the next batch: resume is exact
        save_checkpoint()
        if master:
            print(f"interrupted at iter {iter_num}: resume with {resume_command}", file=sys.stderr)
        if ddp:
            destroy_process_group()
        raise SystemExit(130)

if ddp:  # leave together: a process that closes its connections while another still works can abort it
    torch.distributed.barrier()
    destroy_process_group()
if master and until < max_iters:
    print(f"stopped after iter {until} of {max_iters} ({clock(time.time() - started)}), as --stop_after asks: go on "
          f"with {finish_command}")
elif master:
    took = f"the last {max_iters - first_iter} in " if first_iter else "in "
    print(f"done: {max_iters} iters ({took}{clock(time.time() - started)}); {ckpt_path} and {log_path}")
