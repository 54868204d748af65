"""train.py end to end on the CPU: losses fall, kill-and-resume is exact, bad input gives one clear line."""

import ast
import json
import math
import os
import pathlib
import platform
import re
import runpy
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import configurator
import data
import jepa
import model
import probe
from conftest import ROOT, read_json, run_here, script_settings

# a micro model on the embedded corpus: seconds per run on 2 cores
MICRO = ["--n_layer=1", "--n_embd=64", "--n_head=2", "--block_size=64", "--batch_size=8", "--pred_depth=1",
         "--pred_width=32", "--pred_n_head=2", "--eval_iters=4", "--log_interval=1"]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("data"))
    data.prepare("embedded", d, 8192)  # the vocabulary of config/tiny.py, which every run here uses
    return d


def train(*args, check=True, env=None):
    """train.py with args, in this process; in a process of its own where it must see another environment."""
    if env is None:
        p = run_here("train.py", *args)
    else:
        p = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, env=env)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def read_log(out_dir):
    with open(os.path.join(out_dir, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_dropout_acts_on_the_training_steps_after_an_evaluation(data_dir, tmp_path):
    """The evaluation at step 0 runs in eval mode and hands the model back in training mode: with dropout the
    training losses that follow differ from those of the same run without it."""
    def losses(dropout):
        out = str(tmp_path / f"out-{dropout}")
        train("config/mlm.py", "config/tiny.py", *MICRO, f"--data_dir={data_dir}", f"--out_dir={out}",
              "--max_iters=3", "--eval_interval=100", f"--dropout={dropout}")
        return [r["mlm"] for r in read_log(out) if "mlm" in r]
    without, with_dropout = losses(0.0), losses(0.3)
    assert len(without) == 3 and all(a != b for a, b in zip(without, with_dropout))


@pytest.mark.parametrize("config", ["config/hybrid.py", "config/mlm.py"])
def test_tiny_run_lowers_its_losses(config, data_dir, tmp_path):
    out = str(tmp_path / "out")
    p = train(config, "config/tiny.py", *MICRO, f"--data_dir={data_dir}", f"--out_dir={out}",
              "--max_iters=80", "--eval_interval=40", "--learning_rate=2e-3")
    log = read_log(out)
    unigram = {r["val_unigram"] for r in log if "val_unigram" in r}
    assert len(unigram) == 1 and f"unigram {min(unigram):.4f}" in p.stdout  # one line, beside every val
    # from ~ln(8k) = 9.0 two thirds of the way down to the unigram line, which depends on the corpus: the
    # embedded one is the running Python's own docs (80 steps go 79-81% of the way on Python 3.10 to 3.13)
    val = [r["val_mlm"] for r in log if "val_mlm" in r]
    assert len(val) == 3 and val[-1] < val[0] - 2 / 3 * (val[0] - min(unigram))
    n_train = os.path.getsize(os.path.join(data_dir, "embedded-v8192", "train.bin")) // 2
    assert f"{n_train:,} train tokens (this run reads them {80 * 8 * 64 / n_train:.3g} times)" in p.stdout
    assert "WARNING" not in p.stderr  # the embedded corpus' val split is large enough to measure on
    train_mlm = [r["mlm"] for r in log if "mlm" in r]
    assert sum(train_mlm[-10:]) / 10 < sum(train_mlm[:10]) / 10 - 1.0
    if config == "config/hybrid.py":
        jepa_loss = [r["jepa"] for r in log if "jepa" in r]
        assert sum(jepa_loss[-10:]) < sum(jepa_loss[:10])
        assert all(0 < r["lambda"] < 1 and r["tgt_std"] > 0 for r in log if "lambda" in r)
        assert "λ" in p.stdout and "tok/s" in p.stdout
    steps = [line for line in p.stdout.splitlines() if re.match(r"iter \d+: mlm", line)]
    assert len(steps) == 80 and all(re.search(r", (\d+h\d\dm|\d+m\d\ds|\d+s) left$", line) for line in steps[1:])
    assert re.fullmatch(rf"done: 80 iters \(in (\d+m)?\d+s\); {out}/ckpt.pt and {out}/log.jsonl",
                        p.stdout.strip().splitlines()[-1])
    ckpt = torch.load(os.path.join(out, "ckpt.pt"), weights_only=True)
    assert ckpt["iter_num"] == ckpt["max_iters"] == 80 and (ckpt["target"] is None) == (config == "config/mlm.py")


def micro_step_flops():
    """FLOPs of one step of the MICRO hybrid (tiny.py's vocabulary), counted from its modules: the head at the
    K = ceil(0.15 x 64) = 10 masked slots of each 64-token sequence, 8 sequences a step."""
    cfg = model.EncoderConfig(vocab_size=data.get_tokenizer(8192).vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=64, rope=True)
    return jepa.Hybrid(cfg, pred_depth=1, pred_width=32, pred_n_head=2).flops_per_token(10) * 8 * 64


@pytest.fixture(scope="module")
def budget_run(data_dir, tmp_path_factory):
    """A hybrid given 7.5 steps' FLOPs, every step logged, its balance by uncertainty (read only)."""
    out = str(tmp_path_factory.mktemp("budget"))
    step = micro_step_flops()
    p = train("config/hybrid.py", "config/tiny.py", *MICRO, f"--data_dir={data_dir}", f"--out_dir={out}",
              f"--max_flops={7.5 * step}", "--eval_interval=100", "--balance=uncertainty")
    return out, step, p.stdout


def test_a_flop_budget_buys_the_whole_steps_it_pays_for(budget_run):
    """--max_flops: as many whole steps as the budget pays for (7 of 7.5), never more, each counted with the MLM
    head at the masked slots only; the schedule is that many steps long."""
    out, step, stdout = budget_run
    log = [r for r in read_log(out) if "flops" in r]
    assert [r["iter"] for r in log] == list(range(1, 8))
    assert [r["flops"] for r in log] == pytest.approx([i * step for i in range(1, 8)], rel=1e-12)
    ckpt = torch.load(os.path.join(out, "ckpt.pt"), weights_only=True)
    assert ckpt["iter_num"] == ckpt["max_iters"] == 7 and ckpt["flops_done"] <= 7.5 * step
    assert "7 iters on 1 x cpu" in stdout


def test_a_stop_after_past_a_flop_budget_is_refused(data_dir, tmp_path):
    """The budget's step count is known only once the model's FLOPs are: --stop_after at or past it is then one
    line, before any step or any out_dir."""
    step = micro_step_flops()
    err = refused_here("config/hybrid.py", "config/tiny.py", *MICRO, f"--data_dir={data_dir}",
                       f"--out_dir={tmp_path / 'out'}", f"--max_flops={7.5 * step}", "--stop_after=7")
    assert err.startswith("error: --stop_after=7: must be below the 7 iters of --max_flops=")
    assert not (tmp_path / "out").exists()


def test_the_learning_rate_warms_up_to_its_peak_and_never_past_it(budget_run):
    """A warmup shorter than a step (5% of 7 steps) reaches learning_rate at once and never overshoots it;
    then the cosine falls to min_lr (tiny.py's 1e-3 and 1e-4) at the end of the budget."""
    lrs = [r["lr"] for r in read_log(budget_run[0]) if "lr" in r]
    assert lrs[0] == 1e-3 and all(1e-4 < lr <= 1e-3 for lr in lrs)
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] == pytest.approx(1e-4 + 0.45e-3 * (1 + math.cos(
        math.pi * (6 / 7 - 0.05) / 0.95)))


def test_lambda_is_the_jepa_weights_share_under_every_balance(budget_run):
    """The logged λ is w_jepa / (w_mlm + w_jepa), in (0, 1) under every rule: with balance='uncertainty' both
    log-variances start at 0, so λ starts at 0.5 (its weights themselves start at 1 each)."""
    log = [r for r in read_log(budget_run[0]) if "lambda" in r]
    assert log[0]["w_mlm"] == pytest.approx(1.0, abs=1e-2) and log[0]["w_jepa"] == pytest.approx(1.0, abs=1e-2)
    assert log[0]["lambda"] == pytest.approx(0.5, abs=1e-2) and all(0 < r["lambda"] < 1 for r in log)


def rewind(ckpt_path):
    """A finished run's checkpoint, made to look as if written halfway (a resume of a finished run does
    nothing): the steps after it are redone from other weights, but the checks before them see a resume."""
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["iter_num"], ckpt["flops_done"] = ckpt["iter_num"] // 2, ckpt["flops_done"] / 2
    torch.save(ckpt, ckpt_path)


def resume_args(data_dir):
    return ["config/hybrid.py", "config/tiny.py", *MICRO, f"--data_dir={data_dir}", "--max_iters=60",
            "--eval_interval=10", "--dropout=0.1"]  # dropout: the torch RNG must be restored too


def losses(log):
    return [(r["iter"], r.get("mlm"), r.get("jepa"), r.get("val_mlm"), r.get("val_jepa")) for r in log]


@pytest.fixture(scope="module")
def reference_run(data_dir, tmp_path_factory):
    """The out_dir of the run that interrupted-and-resumed ones must reproduce: a trained hybrid (read only)."""
    ref = str(tmp_path_factory.mktemp("ref"))
    train(*resume_args(data_dir), f"--out_dir={ref}")
    return ref


@pytest.fixture(scope="module")
def uninterrupted(reference_run):
    return losses(read_log(reference_run))


def start_and_wait(args, until, **kw):
    """train.py in the background, once until() holds (or it has ended)."""
    proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, stdout=subprocess.DEVNULL, **kw)
    deadline = time.time() + 120
    while not until() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    return proc


def test_kill_and_resume_reproduces_the_losses(data_dir, uninterrupted, tmp_path):
    args = resume_args(data_dir)
    out = str(tmp_path / "killed")
    ckpt = os.path.join(out, "ckpt.pt")
    proc = start_and_wait([*args, f"--out_dir={out}"], lambda: os.path.exists(ckpt), stderr=subprocess.DEVNULL)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed_from = torch.load(ckpt, weights_only=True)["iter_num"]
    assert resumed_from < 60, "the run finished before it could be killed"
    train(*args, f"--out_dir={out}", "--init_from=resume")
    assert losses(read_log(out)) == uninterrupted  # bit for bit, before and after the kill


def test_ctrl_c_saves_the_step_and_the_printed_command_resumes_exactly(data_dir, uninterrupted, tmp_path):
    """SIGINT mid-run: the step finishes, the checkpoint is written, one line names the command that resumes
    (the run's own configs and settings), exit code 130; that command, run as printed, continues exactly."""
    out = str(tmp_path / "interrupted")
    log = os.path.join(out, "log.jsonl")
    started = lambda: os.path.exists(log) and len(pathlib.Path(log).read_text().splitlines()) >= 5  # noqa: E731
    proc = start_and_wait([*resume_args(data_dir), f"--out_dir={out}"], started, stderr=subprocess.PIPE, text=True)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130 and "Traceback" not in err, err
    m = re.fullmatch(r"interrupted at iter (\d+): resume with python train.py (.*)", err.strip().splitlines()[-1])
    assert m and torch.load(os.path.join(out, "ckpt.pt"), weights_only=True)["iter_num"] == int(m[1]) < 60
    assert shlex.split(m[2]) == [*resume_args(data_dir), f"--out_dir={out}", "--init_from=resume"]
    train(*shlex.split(m[2]))
    assert losses(read_log(out)) == uninterrupted


def test_the_printed_command_names_the_script_as_it_was_run(data_dir, tmp_path):
    """Started from another folder as python /path/to/train.py, a run says how to go on in those words: the
    printed command, run as printed from that folder, finishes it."""
    script = os.path.join(ROOT, "train.py")
    args = [os.path.join(ROOT, a) if a.startswith("config/") else a for a in resume_args(data_dir)]
    p = run_here(script, *args, "--out_dir=paused", "--stop_after=5", cwd=tmp_path)
    assert p.returncode == 0 and "go on with python " in p.stdout
    command = shlex.split(p.stdout.strip().splitlines()[-1].split("go on with ", 1)[1])
    assert command[:2] == ["python", script]
    p = run_here(script, *command[2:], cwd=tmp_path)
    assert p.returncode == 0
    assert p.stdout.strip().splitlines()[-1].startswith("done: 60 iters (the last 55 in ")


def test_stop_after_trains_the_start_of_the_planned_run_and_the_printed_command_finishes_it(
        data_dir, uninterrupted, tmp_path):
    """--stop_after=25 of a 60-step run: the first 25 steps of the 60-step schedule (not one squeezed into 25),
    a val record and a checkpoint there (off the eval steps), exit 0 and the command that goes on, which, run as
    printed, ends where the uninterrupted run ends, bit for bit."""
    out = str(tmp_path / "paused")
    p = train(*resume_args(data_dir), f"--out_dir={out}", "--stop_after=25")
    m = re.fullmatch(r"stopped after iter 25 of 60 \((?:\d+m)?\d+s\), as --stop_after asks: go on with "
                     r"python train.py (.*)", p.stdout.strip().splitlines()[-1])
    assert m and shlex.split(m[1]) == [*resume_args(data_dir), f"--out_dir={out}", "--init_from=resume"]
    log = read_log(out)
    assert log[-1]["iter"] == 25 and "val_mlm" in log[-1]
    ckpt = torch.load(os.path.join(out, "ckpt.pt"), weights_only=True)
    assert ckpt["iter_num"] == 25 and ckpt["command"] == f"python train.py {m[1]}"  # what probe.py says finishes it
    err = refused_here(*resume_args(data_dir), f"--out_dir={out}", "--init_from=resume",
                       "--stop_after=25")
    assert err.startswith("error: --stop_after=25: ") and "is at iter 25 already" in err
    card = pathlib.Path(model.export(out, str(tmp_path / "export")), "README.md").read_text()
    assert "(online encoder), 25 of the 60 steps its run planned (unfinished)," in card
    p = train(*shlex.split(m[1]))
    assert re.match(r"done: 60 iters \(the last 35 in (?:\d+m)?\d+s\)", p.stdout.strip().splitlines()[-1])
    resumed = losses(read_log(out))
    assert [r for r in resumed if r[0] == 25 and r[3] is not None] == [losses(log)[-1]]  # kept by the resume
    assert [r for r in resumed if not (r[0] == 25 and r[3] is not None)] == uninterrupted


def test_the_balance_trajectory_script_follows_train_pys_settings_and_schedule(reference_run, data_dir, monkeypatch):
    """results/balance/trajectory.py reads train.py's defaults and the config files, and copies train.get_lr:
    both must give what train.py ran with (its checkpoint's settings, the learning rate of every logged step)."""
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # configure() installs its own
    script = runpy.run_path(os.path.join(ROOT, "results", "balance", "trajectory.py"))
    args = resume_args(data_dir)
    cfg = script["settings_of"](" ".join(args[:2]), [*args[2:], f"--out_dir={reference_run}"])
    ran = torch.load(os.path.join(reference_run, "ckpt.pt"), weights_only=True)["config"]
    assert {k: cfg[k] for k in ran} == ran
    lrs = [(r["iter"], r["lr"]) for r in read_log(reference_run) if "lr" in r]
    assert len(lrs) == 60 and all(lr == script["get_lr"](i - 1, **cfg) for i, lr in lrs)  # logged after the step


def test_fill_mask_gives_the_probabilities_of_the_training_loss(reference_run, tmp_path):
    """model.fill_mask: [CLS] text [SEP] with each [MASK] as the mask token (the space before it joins the
    masked word), the run's own MLM head, and p = exp(-the training loss) for the token it names."""
    ckpt = torch.load(os.path.join(reference_run, "ckpt.pt"), weights_only=True)
    tok, cfg = data.get_tokenizer(ckpt["config"]["vocab_ranks"]), ckpt["config"]
    text = "The function returns the [MASK] of a [MASK]."
    ids, pos = model.mask_ids(tok, text)
    assert ids == [tok.cls_id, *tok.encode("The function returns the"), tok.mask_id, *tok.encode(" of a"),
                   tok.mask_id, *tok.encode("."), tok.sep_id] and [ids[i] for i in pos] == [tok.mask_id] * 2
    best = model.fill_mask(reference_run, text, k=3)
    hybrid = jepa.Hybrid(model.EncoderConfig(**ckpt["model_args"]), cfg["jepa_views"], cfg["jepa_loss"], cfg["balance"],
                         cfg["fixed_lambda"], cfg["pred_depth"], cfg["pred_width"], cfg["pred_n_head"]).eval()
    hybrid.load_state_dict(ckpt["model"])  # the whole trained model, as train.py saved it
    # beside each p, what ignoring the context gives: the token's frequency in the run's training split
    unigram = np.exp(data.unigram_logp(data.corpus_folder(cfg["dataset"], cfg["data_dir"], cfg["vocab_ranks"]), tok))
    with torch.no_grad():
        h = hybrid.encoder(torch.tensor([ids]))
        for j, mask_best in enumerate(best):
            logits = hybrid.head(h[0, pos[j]])
            top = logits[:tok.n_normal].topk(3).indices.tolist()
            assert [t for t, _, _ in mask_best] == [tok.decode([i]) for i in top]
            loss = hybrid.mlm_loss(h, torch.tensor([[pos[j]]]), torch.tensor([[top[0]]]))
            assert mask_best[0][1] == pytest.approx(math.exp(-loss.item()), rel=1e-5)
            assert mask_best[0][1] >= mask_best[1][1] >= mask_best[2][1]
            assert mask_best[0][2] == pytest.approx(unigram[top[0]], rel=1e-6)
    assert model.run_unigram({**ckpt, "data": {"source": "another corpus"}}, tok) is None
    for bad, says in (("no mask here", "no \\[MASK\\] in"), ("[MASK] " + "word " * 200, "the model reads at most")):
        with pytest.raises(configurator.InputError, match=says):
            model.fill_mask(reference_run, bad)
    with pytest.raises(configurator.InputError, match="holds no MLM head"):
        model.fill_mask(model.export(reference_run, str(tmp_path / "export")), text)
    with pytest.raises(configurator.InputError, match=f"^--k=40000: at most {tok.n_normal:,}, the run's text tokens"):
        model.fill_mask(reference_run, text, k=40000)
    ckpt["model"]["head.decoder.bias"][tok.n_normal:] = 1e4  # a head that puts all its mass on the specials
    torch.save(ckpt, tmp_path / "specials.pt")
    filled = model.fill_mask(str(tmp_path / "specials.pt"), text, k=3)
    named = [t for mask_best in filled for t, _, _ in mask_best]
    assert len(named) == 6 and all(named)  # text tokens still: a special is never a target (decodes to '')


@pytest.mark.parametrize("which", ["online", "target"])
def test_an_export_encodes_as_its_checkpoint_bit_for_bit_without_pickle(which, reference_run, tmp_path, monkeypatch):
    texts = ["A man plays a guitar.", "x", "The documentation of a module says what it does."]
    out = str(tmp_path / "export")
    p = subprocess.run([sys.executable, "model.py", "export", reference_run, f"--which={which}", f"--out={out}"],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(out)) == ["README.md", "config.json", "model.safetensors"]
    assert f"({which} encoder), 60 steps," in pathlib.Path(out, "README.md").read_text()
    config = read_json(os.path.join(out, "config.json"))
    assert config["which"] == which and config["training"]["objective"] == "hybrid"
    assert {k: config["training"][k] for k in ("val_mlm", "val_unigram")} == data.last_val(reference_run)
    assert config["training"]["data"]["source"]["python"] == platform.python_version()  # the embedded corpus
    ref = {p: probe.encode(reference_run, texts, pooling=p, which=which, device="cpu") for p in ("mean", "max")}
    monkeypatch.setattr(torch, "load", None)  # an export is read without pickle
    for pooling, X in ref.items():
        assert np.array_equal(probe.encode(out, texts, pooling=pooling, which=which, device="cpu"), X)
    assert probe.Embedder(out, which).val == data.last_val(reference_run)  # the reports' val loss, with no log
    with pytest.raises(ValueError, match=f"an export of the {which} encoder only"):
        probe.encode(out, texts, which={"online": "target", "target": "online"}[which])


def test_a_damaged_export_is_one_line(reference_run, tmp_path):
    out = model.export(reference_run, str(tmp_path / "e"))
    os.rename(os.path.join(out, "config.json"), os.path.join(out, "c.json"))
    with pytest.raises(FileNotFoundError, match=r"e has no config.json: an export holds model.safetensors and"):
        model.load_encoder(out)
    config = read_json(os.path.join(out, "c.json"))
    config["encoder"]["n_embd"] = 32
    pathlib.Path(out, "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"the weights do not match config.json: blocks.0.attn.proj.bias is "
                                         r"\(64,\) in model.safetensors, \(32,\) by config.json"):
        model.load_encoder(out)
    os.rename(os.path.join(out, "c.json"), os.path.join(out, "config.json"))
    with open(os.path.join(out, "model.safetensors"), "r+b") as f:
        f.truncate(os.path.getsize(os.path.join(out, "model.safetensors")) // 2)
    with pytest.raises(ValueError, match=r"model.safetensors is truncated or not a safetensors file"):
        model.load_encoder(out)
    p = subprocess.run([sys.executable, "model.py", "export", str(tmp_path / "none")], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.startswith("error: no checkpoint at") and len(p.stderr.splitlines()) == 1


def test_an_export_replaces_an_earlier_export_and_nothing_else(reference_run, tmp_path):
    out = tmp_path / "e"
    model.export(reference_run, str(out))
    online = model.load_checkpoint(str(out))["saved"]  # the analysis cache's key of an export: its weights
    os.makedirs(out / "analysis_cache")  # what probe.py leaves in a folder it has analysed
    assert model.export(reference_run, str(out), "target") == str(out)  # an earlier export: replaced
    assert read_json(os.path.join(out, "config.json"))["which"] == "target"
    assert model.load_checkpoint(str(out))["saved"] != online  # so the cache left there is not reused
    shutil.copytree(out, tmp_path / "copy")
    assert model.load_checkpoint(str(tmp_path / "copy"))["saved"] == model.load_checkpoint(str(out))["saved"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "README.md").write_text("my own notes")
    with pytest.raises(configurator.InputError, match=r"^--out=.*mine holds other files \(README.md\): name a new folder"):
        model.export(reference_run, str(tmp_path / "mine"))
    (out / "notes.txt").write_text("mine, beside an earlier export")
    with pytest.raises(configurator.InputError, match=r"^--out=.* holds other files \(notes.txt\)"):
        model.export(reference_run, str(out))
    assert (tmp_path / "mine" / "README.md").read_text() == "my own notes"
    (tmp_path / "a-file").write_text("")
    with pytest.raises(configurator.InputError, match=r"^--out=.*a-file/e cannot be written \(Not a directory\)"):
        model.export(reference_run, str(tmp_path / "a-file" / "e"))
    os.remove(out / "notes.txt")
    os.remove(out / "config.json")
    os.makedirs(out / "config.json")  # a file that cannot be written, as on a full disk
    with pytest.raises(configurator.InputError, match=r"^--out=.*e cannot be written \(Is a directory\): mend the "
                                                      r"cause \(a full disk\?\), then export again"):
        model.export(reference_run, str(out))
    assert sorted(os.listdir(out)) == ["README.md", "analysis_cache", "config.json", "model.safetensors"]  # no part
    mlm = {**torch.load(os.path.join(reference_run, "ckpt.pt"), weights_only=True), "target": None}
    torch.save(mlm, tmp_path / "mlm.pt")
    with pytest.raises(configurator.InputError, match="has no target encoder .*: use --which=online"):
        model.export(str(tmp_path / "mlm.pt"), str(tmp_path / "t"), "target")


def test_a_new_run_never_overwrites_one_and_a_failed_start_makes_no_folder(data_dir, tmp_path):
    out = tmp_path / "out"
    train("config/mlm.py", "config/tiny.py", *MICRO, f"--data_dir={data_dir}", f"--out_dir={out}", "--max_iters=2",
          "--eval_interval=2")
    before = {f: (out / f).read_bytes() for f in ("log.jsonl", "ckpt.pt")}
    err = refused_here("config/mlm.py", "config/tiny.py", *MICRO, f"--data_dir={tmp_path}/fresh",
                       f"--out_dir={out}")
    assert err.strip() == (f"error: --out_dir={out} holds a run's checkpoint: continue it with --init_from=resume, "
                           f"or start this run in another --out_dir (or remove {out})")
    assert {f: (out / f).read_bytes() for f in ("log.jsonl", "ckpt.pt")} == before
    short = tmp_path / "short.txt"  # val holds documents 0 and 100 only: fewer tokens than one block of 64
    short.write_text("\n\n".join(f"Document {i} is short." for i in range(150)))
    p = train("config/mlm.py", "config/tiny.py", *MICRO, f"--dataset={short}", f"--data_dir={tmp_path}/d",
              f"--out_dir={tmp_path}/new/out", check=False)
    assert p.returncode == 2 and p.stderr.splitlines()[-1].startswith("error: ") and "Traceback" not in p.stderr
    assert re.search(r"val.bin holds \d+ tokens, not more than one block of 64", p.stderr)
    assert not (tmp_path / "new").exists()  # checked for writing, and not left behind
    (tmp_path / "a-file").write_text("")
    err = refused_here("config/mlm.py", "config/tiny.py", *MICRO, f"--data_dir={tmp_path}/fresh",
                       f"--out_dir={tmp_path}/a-file/out")
    assert err.strip() == (f"error: --out_dir={tmp_path}/a-file/out cannot be written (Not a directory): pass a "
                           "folder you can write to")
    assert not (tmp_path / "fresh").exists()  # both refused before any data work


@pytest.mark.skipif(data.fcntl is None, reason="no advisory locks on this platform")
def test_a_second_run_in_an_out_dir_in_use_is_refused(data_dir, tmp_path):
    """The same command started twice: the second would truncate the first's log and overwrite its checkpoints."""
    out = tmp_path / "out"
    fd = data.lock(str(out), "train", wait=False)  # as the first run holds it, from its start to its end
    try:
        err = refused_here("config/mlm.py", "config/tiny.py", *MICRO, f"--data_dir={data_dir}",
                           f"--out_dir={out}")
    finally:
        os.close(fd)
    assert err.strip() == (f"error: --out_dir={out} is in use by another training run now: wait for it to end "
                           "(or stop it), or start this one in another --out_dir")
    assert not out.exists()
    fd = data.lock(str(out), "train", wait=False)
    assert fd is not None  # the refused run took nothing
    os.close(fd)


def test_a_resume_on_data_other_than_the_runs_is_refused(tmp_path):
    """A corpus edited (or prepared by another reader) since the run began would feed other batches."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    words = "the a cat dog sat ran on under mat tree big small red old new house river stone".split()
    rng = np.random.default_rng(0)
    (corpus / "a.txt").write_text("\n\n".join(" ".join(rng.choice(words, 40)) + "." for _ in range(400)))
    args = ["config/mlm.py", "config/tiny.py", *MICRO, f"--dataset={corpus}", f"--data_dir={tmp_path}/d",
            f"--out_dir={tmp_path}/out", "--max_iters=4", "--eval_interval=2"]
    train(*args)
    rewind(tmp_path / "out" / "ckpt.pt")
    train(*args, "--init_from=resume")  # the same data: resumed
    rewind(tmp_path / "out" / "ckpt.pt")
    meta = (tmp_path / "d" / "corpus-v8192" / "meta.json").read_text()
    (corpus / "b.txt").write_text("\n\n".join(f"Document {i} is new." for i in range(200)))
    p = train(*args, "--init_from=resume", check=False)
    assert p.returncode == 2 and p.stderr.strip() == (
        f"error: {tmp_path}/d/corpus-v8192 is not the data this run began on (b.txt changed since): resume on the "
        "corpus it began on, or start a new run in another --out_dir")
    assert (tmp_path / "d" / "corpus-v8192" / "meta.json").read_text() == meta  # refused before preparing it again
    # the source gone, and in its place a copy of data/ prepared from the edited corpus: what was prepared counts
    shutil.rmtree(tmp_path / "d" / "corpus-v8192")
    shutil.copytree(data.prepare(str(corpus), str(tmp_path / "d2"), 8192), tmp_path / "d" / "corpus-v8192")
    shutil.rmtree(corpus)
    p = train(*args, "--init_from=resume", check=False)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith(
        f"error: {tmp_path}/d/corpus-v8192 is not the data this run began on (b.txt changed since)")


def test_unknown_config_key(tmp_path):
    p = train("config/tiny.py", "--lr=1e-3", check=False)
    assert p.returncode == 2 and p.stderr.strip() == "error: unknown config key 'lr': did you mean 'learning_rate'?"
    bad = tmp_path / "bad.py"
    bad.write_text("n_layers = 3\n")
    p = train(str(bad), check=False)
    assert p.returncode != 0 and "unknown config key 'n_layers'" in p.stderr and "'n_layer'" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,meant", [(["--max_iters", "100"], "--max_iters=100"), (["--rope"], "--rope=True"),
                                       (["--rope", "--compile=False"], "--rope=True"),
                                       (["--out_dir"], "--out_dir=VALUE")])
def test_a_setting_without_its_value_says_the_argument_it_was_meant_to_be(args, meant, tmp_path):
    """argparse's habits: a value after a space, a flag given alone."""
    err = refused_here("config/tiny.py", *args, f"--data_dir={tmp_path}")
    assert err == f"error: write {meant} (one argument, with '=')\n" and not os.listdir(tmp_path)


@pytest.mark.parametrize("text,line", [("n_layer = 2\nn_embd = = 64\n", "bad.py:2: invalid syntax"),
                                       ("n_layer = 2\n\nn_embd = width\n", "bad.py:3: NameError: name 'width' is "
                                                                           "not defined")])
def test_a_broken_config_file_is_one_line_naming_file_and_line(text, line, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # configure() installs the scripts' own
    (tmp_path / "bad.py").write_text(text)
    with pytest.raises(SystemExit) as e:
        configurator.configure({"n_layer": 6, "n_embd": 512}, [str(tmp_path / "bad.py")])
    assert e.value.code == 2 and capsys.readouterr().err == f"error: {tmp_path}/{line}\n"


def test_a_config_file_named_from_outside_the_repository_says_where_it_is(tmp_path, monkeypatch, capsys):
    """From another folder, where the repository's file is; a name close to one of config/, that one."""
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.chdir(tmp_path)  # python /path/to/train.py config/hybrid.py, from another folder
    for name, says in (("config/hybrid.py", f" in {tmp_path}: run from the repository, or name "
                                            f"{os.path.join(ROOT, 'config', 'hybrid.py')}"),
                       ("config/hybird.py", ": did you mean config/hybrid.py?"),
                       ("tiny.py", ": did you mean config/tiny.py?"),
                       ("config/other.py", " (see config/ for the ones that exist)")):
        with pytest.raises(SystemExit):
            configurator.configure({"n_layer": 6}, [name])
        assert capsys.readouterr().err == f"error: config file {name} not found{says}\n"


def test_durations_read_as_hours_and_minutes_minutes_and_seconds_or_seconds():
    """configurator.clock, as every progress line prints a duration: rounded to the second, two digits after
    the largest unit, so that a column of them lines up."""
    assert [configurator.clock(s) for s in (0.4, 12, 59.6, 245, 3599.4, 3725, 36000)] == \
        ["0s", "12s", "1m00s", "4m05s", "59m59s", "1h02m", "10h00m"]


def test_bad_input_exits_2_and_a_ctrl_c_130_each_with_one_line(monkeypatch, capsys):
    """The scripts' excepthook: an InputError is its message and exit code 2 (a usage error), a Ctrl-C outside
    training one line and 130 (the shell's code for SIGINT); anything else is a bug, and keeps its traceback."""
    def exit_(code):
        raise SystemExit(code)
    monkeypatch.setattr(configurator.os, "_exit", exit_)
    for error, code, line in ((configurator.InputError("--k=0: must be >= 1"), 2, "error: --k=0: must be >= 1"),
                              (KeyboardInterrupt(), 130, "interrupted: run the same command again")):
        with pytest.raises(SystemExit) as stop:
            configurator.one_line_errors(type(error), error, None)
        err = capsys.readouterr().err
        assert stop.value.code == code and err.startswith(line) and err.count("\n") == 1
    monkeypatch.setattr(sys, "__excepthook__", lambda *a: print("traceback", file=sys.stderr))
    configurator.one_line_errors(ValueError, ValueError("a bug"), None)
    assert capsys.readouterr().err == "traceback\n"


def test_a_whole_number_for_a_float_setting_is_that_float_and_a_bool_is_not_a_number(monkeypatch, capsys):
    """--max_flops=96623342387200 is a float setting written as an int: it becomes the float, so a checkpoint's
    config, --help and the JSON logs hold the setting's own type; True for a float is refused."""
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    g = {"max_flops": 0.0, "learning_rate": 5e-4}
    assert configurator.configure(g, ["--max_flops=96623342387200", "--learning_rate=1"]) == []
    assert g == {"max_flops": 96623342387200.0, "learning_rate": 1.0}
    assert all(type(v) is float for v in g.values())
    with pytest.raises(SystemExit):
        configurator.configure(g, ["--learning_rate=True"])
    assert capsys.readouterr().err == "error: --learning_rate expects a float (like 1.0), got 'True'\n"


def test_constants_are_not_settings(monkeypatch, capsys):
    import eval_geometry
    import probe
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    for module, constant in ((probe, "POOLINGS"), (eval_geometry, "GEOMETRY_CODE"), (data, "VAL_EVERY")):
        assert constant in vars(module) and constant not in configurator.settings(vars(module))
    with pytest.raises(SystemExit):
        configurator.configure(dict(vars(probe)), ["--POOLINGS=('mean',)"])
    assert capsys.readouterr().err.startswith("error: unknown config key 'POOLINGS'")


@pytest.mark.parametrize("command", [["data.py", "no-such-corpus"],
                                     ["train.py", "config/tiny.py", "--dataset=nope", "--out_dir=OUT"],
                                     ["probe.py", "no-such-run"], ["eval_geometry.py", "no-such-run"]],
                         ids=lambda c: c[0])
def test_every_script_gives_bad_input_one_line_and_exit_code_2(command, tmp_path):
    args = [a.replace("OUT", str(tmp_path / "out")) for a in command[1:]]  # not the checkout's out-hybrid-tiny
    p = subprocess.run([sys.executable, os.path.join(ROOT, command[0]), *args, f"--data_dir={tmp_path}"],
                       cwd=ROOT if command[0] == "train.py" else tmp_path, capture_output=True, text=True)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert p.stderr.startswith("error: ") and ("nope" in p.stderr or "no-such" in p.stderr)


@pytest.mark.parametrize("script", ["train.py", "probe.py", "eval_geometry.py", "bench.py", "data.py", "model.py"])
def test_help_shows_every_setting_the_script_takes_with_its_line(script, tmp_path):
    """--help (or -h): the script's docstring, then the source lines that set its settings (comments and
    all), exactly the keys its configurator takes (an unknown key's error lists those), and no work."""
    taken = script_settings(script)
    with open(os.path.join(ROOT, script)) as f:
        doc = ast.get_docstring(ast.parse(f.read()))
    for flag in ("--help", "-h"):
        p = run_here(script, flag, *[f"--data_dir={tmp_path}"] * ("data_dir" in taken))  # where it writes
        assert p.returncode == 0 and p.stderr == "" and p.stdout.startswith(doc + "\n\nsettings")
        assert set(re.findall(r"^(\w+) = ", p.stdout, re.M)) == taken
    assert "dropout = 0.0\n" in run_here("train.py", "-h").stdout  # a line of the source, as written there
    assert os.listdir(tmp_path) == []


def test_help_after_config_files_shows_the_values_the_run_would_take(tmp_path):
    """The source's defaults are not what `train.py config/hybrid.py config/tiny.py` runs with: --help ends
    with each setting its arguments change, beside the default; a bad argument is still one line, after it."""
    p = run_here("train.py", "config/hybrid.py", "config/tiny.py", "--max_iters=5", "--help", f"--out_dir={tmp_path}")
    assert p.returncode == 0 and p.stderr == ""
    args = f"config/hybrid.py config/tiny.py --max_iters=5 --out_dir={tmp_path}"
    head, tail = p.stdout.split(f"\nthe values after {args}:\n")
    assert head.startswith(run_here("train.py", "--help").stdout.strip())
    assert "max_iters = 5  # default 100000" in tail and "rope = True  # default False" in tail
    assert "objective" not in tail  # config/hybrid.py sets it to its default: not a change
    assert f"out_dir = '{tmp_path}'" in tail and os.listdir(tmp_path) == []
    p = run_here("train.py", "config/tiny.py", "--max_itrs=5", "--help")
    assert p.returncode == 2 and "settings" in p.stdout and "did you mean 'max_iters'" in p.stderr


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_keeps_the_one_before(data_dir, tmp_path):
    """A full disk at a save (here: the temp file's name taken by a folder) stops training with one line, not
    torch's writer's traceback; the checkpoint before stays whole and the printed command resumes from it."""
    out = tmp_path / "out"
    args = ["config/hybrid.py", "config/tiny.py", *MICRO, f"--data_dir={data_dir}", f"--out_dir={out}",
            "--max_iters=6", "--eval_interval=2", "--stop_after=2"]
    train(*args)
    (out / "ckpt.pt.tmp").mkdir()
    p = train(*args[:-1], "--init_from=resume", check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {out}/ckpt.pt cannot be written at iter 2 (") and \
        line.endswith("the last checkpoint is whole: mend the cause (a full disk?), then python train.py " + " ".join(args[:-1])
                      + " --init_from=resume")
    assert torch.load(out / "ckpt.pt", weights_only=False)["iter_num"] == 2
    (out / "ckpt.pt.tmp").rmdir()
    train(*args[:-1], "--init_from=resume")
    assert torch.load(out / "ckpt.pt", weights_only=False)["iter_num"] == 6


def test_a_file_is_written_whole_or_not_at_all(tmp_path):
    """configurator.atomic_file, under every checkpoint, meta.json and cache file: a block that fails part-way
    leaves the file before as it was and no part behind; one that ends well replaces it."""
    path = str(tmp_path / "f.json")
    with configurator.atomic_file(path, "w") as f:
        f.write("old")
    with pytest.raises(OSError, match="No space left"):
        with configurator.atomic_file(path, "w") as f:
            f.write("half of the new")
            raise OSError(28, "No space left on device")
    assert os.listdir(tmp_path) == ["f.json"] and pathlib.Path(path).read_text() == "old"
    with configurator.atomic_file(path, "w", tmp=path + ".7.tmp") as f:
        f.write("new")
    assert os.listdir(tmp_path) == ["f.json"] and pathlib.Path(path).read_text() == "new"
    os.makedirs(tmp_path / "taken")
    with pytest.raises(OSError, match="Is a directory"):  # the rename fails: no part left either
        with configurator.atomic_file(str(tmp_path / "taken"), "w") as f:
            f.write("new")
    assert sorted(os.listdir(tmp_path)) == ["f.json", "taken"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full (a device that is always full)")
def test_a_log_that_cannot_be_written_is_one_line(data_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.symlink("/dev/full", out / "log.jsonl")  # every write: No space left on device
    p = train("config/hybrid.py", "config/tiny.py", *MICRO, f"--data_dir={data_dir}", f"--out_dir={out}",
              "--max_iters=4", check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1] == (f"error: {out}/log.jsonl cannot be written at iter 0 (OSError: [Errno "
                                                 "28] No space left on device): mend the cause (a full disk?), then "
                                                 "start again")


def test_corrupt_checkpoint(data_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "ckpt.pt").write_bytes(b"not a checkpoint")
    (out / "log.jsonl").write_text("")
    p = train("config/hybrid.py", "config/tiny.py", f"--data_dir={data_dir}", f"--out_dir={out}",
              "--init_from=resume", check=False)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "is corrupt" in p.stderr and "Traceback" not in p.stderr


def test_an_ascii_console_neither_stops_a_run_nor_changes_its_files(data_dir, tmp_path):
    """Under an ASCII-only locale (no UTF-8 mode): the config files, which hold λ, are read as the UTF-8 they
    are; the log lines show λ as \\u03bb; the log and the checkpoint are written as anywhere else."""
    env = {**os.environ, "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    out = str(tmp_path / "out")
    p = train("config/hybrid.py", "config/tiny.py", *MICRO, f"--data_dir={data_dir}", f"--out_dir={out}",
              "--max_iters=3", "--eval_interval=3", env=env)
    assert "\\u03bb 0.50" in p.stdout and "λ" not in p.stdout
    assert p.stdout.strip().splitlines()[-1].startswith("done: 3 iters")
    assert [r["iter"] for r in read_log(out) if "val_mlm" in r] == [0, 3] and os.path.isfile(f"{out}/ckpt.pt")


def test_wikipedia_without_network_says_what_to_run(tmp_path):
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there: no hub, on any machine
    env.pop("HF_HUB_OFFLINE", None)
    p = train("config/hybrid.py", "--device=cpu", "--dtype=float32", f"--data_dir={tmp_path}", check=False, env=env)
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1
    assert "python data.py wikipedia" in p.stderr
    assert not os.listdir(tmp_path)  # nothing half-prepared left behind


def torchrun(*args, nproc=2, env=None, timeout=300, **kw):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, **kw)


def ddp_args(data_dir):
    return ["config/hybrid.py", "config/tiny.py", *MICRO, f"--data_dir={data_dir}", "--backend=gloo", "--device=cpu",
            "--grad_accum=2", "--max_iters=40", "--eval_interval=20", "--learning_rate=2e-3", "--peak_flops=1e12",
            "--dropout=0.1"]  # dropout: each process's torch RNG must be restored too


@pytest.fixture(scope="module")
def ddp_reference(data_dir, tmp_path_factory):
    """The README's DDP command on the CPU (gloo), run once: (its stdout, its out_dir), read only."""
    out = str(tmp_path_factory.mktemp("ddp"))
    p = torchrun(*ddp_args(data_dir), f"--out_dir={out}")
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout, out


def test_ddp_on_cpu_trains_with_identical_weights_on_every_rank(ddp_reference):
    """Every process starts from and keeps the same online and target weights, the global batch is
    batch_size, the loss falls, and MFU is per device."""
    stdout, out = ddp_reference
    assert "global batch 8 sequences = 2 processes x 2 micro-steps x 2 sequences" in stdout
    log = read_log(out)
    sums = [r["rank_param_sums"] for r in log if "rank_param_sums" in r]
    assert len(sums) == 3  # iters 0 (after init), 20 and 40
    for per_rank in sums:
        assert per_rank[0] == per_rank[1]  # [online, target] sums, bit for bit
    val = [r["val_mlm"] for r in log if "val_mlm" in r]
    assert val[-1] < val[0] - 1.0
    for r in (r for r in log if "mfu" in r):
        flops_per_iter = r["flops"] / r["iter"]
        assert r["mfu"] == pytest.approx(flops_per_iter * r["tok_per_s"] / (8 * 64) / (2 * 1e12), rel=1e-6)
    ckpt = torch.load(os.path.join(out, "ckpt.pt"), weights_only=True)
    for stream in ("data", "spans"):  # each process draws its own windows and its own target spans
        assert len(ckpt["rng"][stream]) == 2 and not torch.equal(*ckpt["rng"][stream])


def test_val_losses_are_the_global_batchs_whatever_the_processes_and_micro_steps(data_dir, ddp_reference, tmp_path):
    """Rank 0 evaluates on batch_size sequences, not its micro-batch: the DDP run's val losses at iter 0 (the
    same initial weights) are those of one process without gradient accumulation."""
    out = str(tmp_path / "one")
    train(*[a for a in ddp_args(data_dir) if not a.startswith(("--backend", "--grad_accum"))], f"--out_dir={out}",
          "--stop_after=1")
    one, ddp = read_log(out)[0], read_log(ddp_reference[1])[0]
    assert one["iter"] == ddp["iter"] == 0
    for key in ("val_mlm", "val_jepa", "val_unigram"):
        assert one[key] == pytest.approx(ddp[key], rel=1e-5)


def test_ddp_ctrl_c_stops_every_rank_after_one_step_and_resumes_to_the_uninterrupted_run(data_dir, ddp_reference,
                                                                                       tmp_path):
    """Ctrl-C to torchrun (it passes the signal on; it kills workers that are still running 30 s later): every
    process stops after the same step, long before the next log step, the checkpoint holds that step, and the
    printed command continues to the uninterrupted run's weights and losses (evaluating every 10 steps
    instead of 20 changes nothing)."""
    # no log step before the end; the first checkpoint at 10 leaves 30 steps to signal in
    args, (_, ref) = [*ddp_args(data_dir), "--log_interval=40", "--eval_interval=10"], ddp_reference
    out = str(tmp_path / "interrupted")
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "train.py", *args, f"--out_dir={out}"], cwd=ROOT, start_new_session=True, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    ckpt = os.path.join(out, "ckpt.pt")
    deadline = time.time() + 180
    while not os.path.exists(ckpt) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # as a terminal's Ctrl-C: to the launcher alone
    err = proc.communicate(timeout=120)[1]
    lines = re.findall(r"interrupted at iter (\d+): resume with torchrun --standalone --nproc_per_node=2 "
                       r"train.py (.*)", err)
    assert len(lines) == 1, err[-3000:]  # rank 0 says it, once
    (it, command), = lines
    assert 10 < int(it) < 40 and torch.load(ckpt, weights_only=True)["iter_num"] == int(it), err[-3000:]
    assert shlex.split(command) == [*args, f"--out_dir={out}", "--init_from=resume"]
    p = torchrun(*shlex.split(command))
    assert p.returncode == 0, p.stderr[-3000:]

    def figures(log):  # the reference's val lines (at 0, 20, 40) and the last step's (the only train line here)
        return [(r["iter"], r.get("mlm"), r.get("jepa"), r.get("lambda"), r.get("val_mlm"), r.get("rank_param_sums"))
                for r in log if r["iter"] % 20 == 0 and ("val_mlm" in r or r["iter"] == 40)]
    assert figures(read_log(out)) == figures(read_log(ref))


def test_a_nan_on_one_rank_stops_every_rank(data_dir, tmp_path):
    out = str(tmp_path / "nan")
    p = torchrun("config/hybrid.py", "config/tiny.py", *MICRO, f"--data_dir={data_dir}", f"--out_dir={out}",
                 "--backend=gloo", "--max_iters=30", "--eval_interval=10", env={"TRAIN_INJECT_NAN": "1:3"},
                 timeout=120)  # a rank left waiting in an all-reduce would hang until the timeout
    assert p.returncode != 0
    line = "error: loss not finite at iter 4"
    assert p.stderr.count(line) == 2, p.stderr  # the same line from both ranks (their writes may interleave)
    assert "start a new run" in p.stderr and "init_from=resume" not in p.stderr  # resume would refuse new settings
    assert max(r["iter"] for r in read_log(out)) == 3


@pytest.mark.parametrize("arg,key", [("--batch_size=0", "batch_size"), ("--n_head=7", "n_head"),
                                     ("--jepa_views=both", "jepa_views"), ("--balance=foo", "balance"),
                                     ("--mlm_prob=1.5", "mlm_prob"), ("--n_spans=9", "n_spans"),
                                     ("--mlm_prob=0.003", "mlm_prob"), ("--span_min=0.3", "span_max"),
                                     ("--ema_start=2.0", "ema_start"), ("--out_dir=", "out_dir"),
                                     ("--text_column=abstract", "text_column"),
                                     ("--dtype=float16", "dtype"), ("--learning_rate=0.0", "learning_rate"),
                                     ("--max_iters=True", "max_iters"), ("--stop_after=-1", "stop_after"),
                                     ("--stop_after=1000", "stop_after"), ("--device=mps", "device"),
                                     ("--device=gpu", "device")])
def test_a_bad_setting_gives_one_line_and_exit_code_2(arg, key, tmp_path):
    """train.py checks every setting before any work (test_every_script_gives_bad_input_one_line_and_exit_code_2
    runs the script as its own process)."""
    out, d = tmp_path / "out", tmp_path / "data"
    err = refused_here("config/hybrid.py", "config/tiny.py", f"--out_dir={out}", arg, f"--data_dir={d}")
    assert err.startswith(f"error: --{key}=")
    assert not out.exists() and not d.exists()  # nothing written


def refused_here(*args):
    """The one line of train.py's refusal of args (exit code 2)."""
    p = train(*args, check=False)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    return p.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
def test_the_paper_config_without_cuda_names_every_flag_a_cpu_run_takes(tmp_path):
    """Followed as written, the advice runs: the flags it names are all a CPU needs (no second refusal)."""
    err = refused_here("config/hybrid.py", f"--data_dir={tmp_path}", f"--out_dir={tmp_path}/out")
    flags = re.fullmatch(r"error: no CUDA device here: add config/tiny.py for a CPU run, or pass (.*)\n", err)[1]
    err = refused_here("config/hybrid.py", *flags.split(), f"--data_dir={tmp_path}", f"--out_dir={tmp_path}/out",
                       "--init_from=resume")  # refused later, for the missing checkpoint: the device's checks pass
    assert f"no checkpoint at {tmp_path}/out" in err


def test_a_node_without_the_prepared_corpus_says_so_at_once(data_dir, tmp_path):
    """torchrun on two nodes, each with a disk of its own (two launches on this machine, the second with an
    empty --data_dir): rank 0 prepares on its node only, so the other node stops with one line that says what to
    do, where its rank prepared the corpus itself while rank 0 waited in its first collective, past its timeout
    on Wikipedia."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
              "--master_addr=127.0.0.1", f"--master_port={port}"]
    args = ["config/mlm.py", "config/tiny.py", *MICRO, "--backend=gloo", "--device=cpu", "--max_iters=4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    node0 = subprocess.Popen([*launch, "--node_rank=0", "train.py", *args, f"--data_dir={data_dir}",
                              f"--out_dir={tmp_path}/out"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        node1 = subprocess.run([*launch, "--node_rank=1", "train.py", *args, f"--data_dir={tmp_path}/local",
                                f"--out_dir={tmp_path}/out"], cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=120)
    finally:
        node0.kill()
        node0.wait()
    folder = os.path.join(tmp_path, "local", "embedded-v8192")
    assert node1.returncode != 0 and f"error: {folder} is not prepared on the node of rank 1: on several nodes pass " \
        f"a --data_dir that every node sees, or prepare it on each node first (python data.py embedded " \
        f"--data_dir={tmp_path}/local --vocab_ranks=8192 --text_column=text)\n" in node1.stderr, node1.stderr[-2000:]
    assert not os.path.exists(folder)


def test_ddp_on_cpu_processes_with_nccl_is_one_line_before_the_process_group(tmp_path, monkeypatch):
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):  # as torchrun sets them
        monkeypatch.setenv(key, value)
    err = refused_here("config/mlm.py", "config/tiny.py", f"--out_dir={tmp_path}/out")
    assert err.strip() == "error: --backend='nccl': NCCL is for CUDA devices: CPU processes take --backend=gloo"
    assert not torch.distributed.is_initialized()


def test_a_resume_by_another_number_of_processes_is_refused(data_dir, ddp_reference):
    """A checkpoint holds each process's data and span streams: a resume by one process of a run of two would
    drop one of them, so it is refused in one line, and nothing is written."""
    before = read_log(ddp_reference[1])
    err = refused_here(*ddp_args(data_dir), f"--out_dir={ddp_reference[1]}", "--init_from=resume")
    assert "was written by 2 processes, not 1: resume with as many" in err and read_log(ddp_reference[1]) == before


def test_a_resume_with_other_method_settings_is_refused(data_dir, tmp_path):
    out = str(tmp_path / "out")
    args = ["config/hybrid.py", "config/tiny.py", *MICRO, f"--data_dir={data_dir}", f"--out_dir={out}",
            "--max_iters=4", "--eval_interval=2"]
    train(*args)
    for changed, key in (("--balance=uncertainty", "balance"), ("--n_spans=1", "n_spans"), ("--max_iters=8", "max_iters"),
                         ("--learning_rate=3e-4", "learning_rate"), ("--seed=7", "seed")):
        err = refused_here(*args, "--init_from=resume", changed)
        assert err.startswith(f"error: --{key}=") and "differs from" in err
    fresh = tmp_path / "fresh"  # refused before the data is prepared: a refusal costs no preparation
    err = refused_here(*args, "--init_from=resume", "--n_spans=1", f"--data_dir={fresh}")
    assert err.startswith("error: --n_spans=") and not fresh.exists()
    err = refused_here(*args, "--init_from=resume", f"--out_dir={out}-typo", f"--data_dir={fresh}")
    assert f"no checkpoint at {out}-typo" in err and not fresh.exists()
    before = {fn: (tmp_path / "out" / fn).read_bytes() for fn in ("ckpt.pt", "log.jsonl")}
    p = train(*args, "--init_from=resume", "--log_interval=2")  # reporting may change
    assert p.stdout.strip() == f"{out}/ckpt.pt is a finished run (4 of 4 iters): nothing to resume"
    assert {fn: (tmp_path / "out" / fn).read_bytes() for fn in before} == before


def test_the_target_encoder_follows_the_online_one_by_the_ema(data_dir, tmp_path):
    """train.py moves the target after every step: at momentum 0 (ema_start = ema_end = 0) it is the online
    encoder itself, however far training moved that from their common initialisation."""
    out = str(tmp_path / "out")
    train("config/hybrid.py", "config/tiny.py", *MICRO, f"--data_dir={data_dir}", f"--out_dir={out}",
          "--max_iters=3", "--ema_start=0.0", "--ema_end=0.0")
    ckpt = torch.load(os.path.join(out, "ckpt.pt"), weights_only=True)
    online, target = (model.encoder_of(ckpt, which).state_dict() for which in ("online", "target"))
    torch.testing.assert_close(target, online, rtol=0, atol=1e-7)
    assert [r["ema"] for r in read_log(out) if "ema" in r] == [0.0] * 3


def test_the_balance_weight_is_not_clipped_and_has_its_own_learning_rate(data_dir, tmp_path):
    """A clip of 1e-9 shrinks the model's gradient to nothing; w's first Adam step must still be its full
    learning rate: balance_lr x the model's (warmup) learning rate at step 0. Every group takes beta1 and
    beta2 (Adam's first step is lr x sign(g) whatever they are)."""
    out = str(tmp_path / "out")
    train("config/hybrid.py", "config/tiny.py", *MICRO, f"--data_dir={data_dir}", f"--out_dir={out}",
          "--max_iters=1", "--learning_rate=1e-3", "--warmup_frac=0.0", "--grad_clip=1e-9",
          "--balance_lr=0.2", "--beta1=0.8", "--beta2=0.95")
    ckpt = torch.load(os.path.join(out, "ckpt.pt"), weights_only=True)
    assert [tuple(g["betas"]) for g in ckpt["optimizer"]["param_groups"]] == [(0.8, 0.95)] * 3
    # one step at the schedule's start (no warmup: the full learning rate); dL/dw < 0, so w rises by one
    # full Adam step of its own learning rate
    assert ckpt["model"]["balance.w"].item() == pytest.approx(0.2 * 1e-3, rel=1e-4)
    bias = ckpt["model"]["encoder.ln_f.bias"]  # a model parameter: clipped, so its Adam step is ~g/eps of 1e-3
    assert bias.abs().max().item() < 0.5e-3


def test_a_checkpoint_that_would_run_code_is_refused(data_dir, tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    out = tmp_path / "out"
    out.mkdir()
    torch.save({"model_args": {}, "model": {}, "payload": Payload()}, out / "ckpt.pt")
    (out / "log.jsonl").write_text("")
    p = train("config/hybrid.py", "config/tiny.py", f"--data_dir={data_dir}", f"--out_dir={out}", "--init_from=resume",
              check=False)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "refused" in p.stderr
    assert not marker.exists()


def test_collapse_watch_warns_then_stops(data_dir, tmp_path):
    """RankMe of the target tokens is logged; under rankme_warn every line warns, under rankme_stop training
    stops with one line (thresholds set above any real value here, to trip them)."""
    args = ["config/hybrid.py", "config/tiny.py", *MICRO, f"--data_dir={data_dir}", "--max_iters=6", "--eval_interval=3"]
    p = train(*args, f"--out_dir={tmp_path / 'warn'}", "--rankme_warn=1e6")
    ranks = [r["tgt_rankme"] for r in read_log(str(tmp_path / "warn")) if "tgt_rankme" in r]
    assert len(ranks) == 6 and all(1.0 <= r <= 64 for r in ranks)  # between 1 and the width, 64
    assert p.stderr.count("WARNING: the target features are near collapse") == 6
    p = train(*args, f"--out_dir={tmp_path / 'stop'}", "--rankme_stop=1e6", check=False)
    assert p.returncode != 0 and p.stderr.strip().splitlines()[-1].startswith("error: target features collapsed at iter 1")


def test_resume_survives_a_log_line_cut_by_the_kill(data_dir, tmp_path):
    out = tmp_path / "out"
    args = ["config/hybrid.py", "config/tiny.py", *MICRO, f"--data_dir={data_dir}", f"--out_dir={out}",
            "--max_iters=4", "--eval_interval=2"]
    train(*args)
    ref = read_log(str(out))
    rewind(out / "ckpt.pt")  # as if the kill came after step 2
    with open(out / "log.jsonl", "a") as f:
        f.write('{"iter": 3, "mlm": 7.')  # half a line, as a SIGKILL mid-write leaves it
    p = train(*args, "--init_from=resume", check=False)
    assert p.returncode == 0, p.stderr
    assert [r["iter"] for r in read_log(str(out))][:len(ref)] == [r["iter"] for r in ref]
