"""train.py end to end on the CPU: losses fall, kill-and-resume is exact, bad input gives one clear line."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a micro model on the embedded corpus: seconds per run on 2 cores
MICRO = ["--n_layer=1", "--n_embd=64", "--n_head=2", "--block_size=64", "--batch_size=8", "--pred_depth=1",
         "--pred_width=32", "--pred_n_head=2", "--eval_iters=4", "--log_interval=1"]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("data"))
    data.prepare("embedded", d)
    return d


def train(*args, check=True, **kw):
    p = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, **kw)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def read_log(out_dir):
    with open(os.path.join(out_dir, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("config", ["config/hybrid.py", "config/mlm.py"])
def test_tiny_run_lowers_its_losses(config, data_dir, tmp_path):
    out = str(tmp_path / "out")
    p = train(config, "config/tiny.py", *MICRO, f"--data_dir={data_dir}", f"--out_dir={out}",
              "--max_iters=80", "--eval_interval=40", "--learning_rate=2e-3")
    log = read_log(out)
    val = [r["val_mlm"] for r in log if "val_mlm" in r]
    assert len(val) == 3 and val[-1] < val[0] - 2.0  # from ~ln(32k) = 10.4 to well below
    train_mlm = [r["mlm"] for r in log if "mlm" in r]
    assert sum(train_mlm[-10:]) / 10 < sum(train_mlm[:10]) / 10 - 1.5
    if config == "config/hybrid.py":
        jepa_loss = [r["jepa"] for r in log if "jepa" in r]
        assert sum(jepa_loss[-10:]) < sum(jepa_loss[:10])
        assert all(0 < r["lambda"] < 1 and r["tgt_std"] > 0 for r in log if "lambda" in r)
        assert "λ" in p.stdout and "tok/s" in p.stdout
    ckpt = torch.load(os.path.join(out, "ckpt.pt"), weights_only=False)
    assert ckpt["iter_num"] == 80 and (ckpt["target"] is None) == (config == "config/mlm.py")


def test_kill_and_resume_reproduces_the_losses(data_dir, tmp_path):
    args = ["config/hybrid.py", "config/tiny.py", *MICRO, f"--data_dir={data_dir}", "--max_iters=60",
            "--eval_interval=10", "--dropout=0.1"]  # dropout: the torch RNG must be restored too
    ref = str(tmp_path / "ref")
    train(*args, f"--out_dir={ref}")

    out = str(tmp_path / "killed")
    proc = subprocess.Popen([sys.executable, "train.py", *args, f"--out_dir={out}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = os.path.join(out, "ckpt.pt")
    deadline = time.time() + 120
    while not os.path.exists(ckpt) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed_from = torch.load(ckpt, weights_only=False)["iter_num"]
    assert resumed_from < 60, "the run finished before it could be killed"
    train(*args, f"--out_dir={out}", "--init_from=resume")

    def losses(log):
        return [(r["iter"], r.get("mlm"), r.get("jepa"), r.get("val_mlm"), r.get("val_jepa")) for r in log]
    assert losses(read_log(out)) == losses(read_log(ref))  # bit for bit, before and after the kill


def test_unknown_config_key(tmp_path):
    p = train("config/tiny.py", "--lr=1e-3", check=False)
    assert p.returncode != 0 and p.stderr.strip() == "error: unknown config key 'lr': did you mean 'learning_rate'?"
    bad = tmp_path / "bad.py"
    bad.write_text("n_layers = 3\n")
    p = train(str(bad), check=False)
    assert p.returncode != 0 and "unknown config key 'n_layers'" in p.stderr and "'n_layer'" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_corrupt_checkpoint(data_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "ckpt.pt").write_bytes(b"not a checkpoint")
    (out / "log.jsonl").write_text("")
    p = train("config/hybrid.py", "config/tiny.py", f"--data_dir={data_dir}", f"--out_dir={out}",
              "--init_from=resume", check=False)
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1
    assert "is corrupt" in p.stderr and "Traceback" not in p.stderr


def test_wikipedia_without_network_says_what_to_run(tmp_path):
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there: no hub, on any machine
    env.pop("HF_HUB_OFFLINE", None)
    p = train("config/hybrid.py", f"--data_dir={tmp_path}", check=False, env=env)
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1
    assert "python data.py wikipedia" in p.stderr
    assert not os.listdir(tmp_path)  # nothing half-prepared left behind


def test_ddp_on_cpu_lowers_the_loss(data_dir, tmp_path):
    """Two processes under torchrun with gloo: the DDP path (no_sync accumulation, rank streams,
    gathered RNG states in the checkpoint) runs end to end and trains."""
    out = str(tmp_path / "ddp")
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "train.py", "config/hybrid.py", "config/tiny.py", *MICRO, f"--data_dir={data_dir}",
                        f"--out_dir={out}", "--backend=gloo", "--grad_accum=4", "--max_iters=40",
                        "--eval_interval=40", "--learning_rate=2e-3"],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr
    val = [r["val_mlm"] for r in read_log(out) if "val_mlm" in r]
    assert val[-1] < val[0] - 1.0
    ckpt = torch.load(os.path.join(out, "ckpt.pt"), weights_only=False)
    assert len(ckpt["rng"]["data"]) == 2  # one data stream per rank, each resumable
    assert not torch.equal(ckpt["rng"]["data"][0], ckpt["rng"]["data"][1])
