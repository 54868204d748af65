"""Shared fixtures: tiny random checkpoints, GLUE files in the real formats, a corpus; the scripts run in-process."""

import contextlib
import io
import json
import os
import random
import re
import runpy
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import configurator  # noqa: E402
import data  # noqa: E402
import model  # noqa: E402


def read_json(path):
    with open(path) as f:
        return json.load(f)


THREADS = torch.get_num_threads()  # a new process's: probe.py and bench.py set their own


@pytest.fixture(scope="session", autouse=True)
def temp_dir(tmp_path_factory):
    """The temp dir of this session's scripts and of the processes they start: data.lock's files go there, and
    with it where pytest removes its old sessions, not into the machine's /tmp."""
    folder = tmp_path_factory.mktemp("tmp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", str(folder))
        mp.setattr(tempfile, "tempdir", str(folder))
        yield folder


@pytest.fixture(autouse=True)
def fresh_threads():
    """Each test starts with the threads of a new process: float sums, and so the tests' exact figures, depend
    on how a reduction is split."""
    torch.set_num_threads(THREADS)
    yield


def run_here(script, *args, cwd=ROOT):
    """A script of the repository (train.py, probe.py, ...) run with args from cwd in this process, as its
    __main__, as a CompletedProcess: a Python start with torch costs 3-4 s, more than most of the tests' runs.
    What the end of its process would do is done here: the run lock it holds to the end is released; its signal
    handlers, excepthook, working folder, torch threads and random state are restored. SystemExit and InputError
    end it as they end the script: an exit code, or the excepthook's one line. A run that must see another
    environment, be killed or start processes runs as a process of its own."""
    out, err, held, lock = io.StringIO(), io.StringIO(), [], data.lock
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}  # train.py installs its own
    threads, rng = torch.get_num_threads(), torch.get_rng_state()  # the scripts set both
    torch.set_num_threads(THREADS)  # as the script's own process would start

    def lock_and_keep(folder, kind, wait=True):
        fd = lock(folder, kind, wait)
        if kind == "train" and fd is not None and fd >= 0:
            held.append(fd)
        return fd
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.chdir(cwd)
        mp.setattr(sys, "argv", [script, *args])
        mp.setattr(sys, "excepthook", sys.excepthook)  # configure() installs the scripts' own
        mp.setattr(data, "lock", lock_and_keep)
        code = 0
        try:
            # sys.argv[0] as the interpreter gives it: train.py in the repository, a path from elsewhere
            here = not os.path.isabs(script) and os.path.abspath(cwd) == ROOT
            runpy.run_path(script if here else os.path.join(ROOT, script), run_name="__main__")
        except SystemExit as stop:  # as the interpreter ends on it: None is 0, a message goes to stderr with 1
            code = 0 if stop.code is None else stop.code
            if not isinstance(code, int):
                print(code, file=sys.stderr)
                code = 1
        except configurator.InputError as e:
            print(f"error: {e}", file=sys.stderr)
            code = 2
        finally:
            for fd in held:
                os.close(fd)
            for s, handler in handlers.items():
                signal.signal(s, handler)
            torch.set_num_threads(threads)
            torch.set_rng_state(rng)
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())


def script_settings(script):
    """The keys that script's --key=value takes: those its configurator lists for an unknown one."""
    err = run_here(script, "--zzzzzz=1").stderr
    return set(re.fullmatch(r"error: unknown config key 'zzzzzz': valid keys: (.*)\n", err)[1].split(", "))


WORDS = ("good fine great bad awful poor movie film plot actor scene story music cat dog house tree river city "
         "car road book paper table window garden").split()


@pytest.fixture(scope="session")
def tiny_ckpts(tmp_path_factory):
    """Two out_dirs with differently seeded 2-layer, 32-wide encoders, saved as train.py saves them: an MLM
    run's and a hybrid's (online encoder only), so the reports compare the two objectives."""
    dirs = []
    for s in (0, 1):
        d = tmp_path_factory.mktemp(f"out-{s}")
        torch.manual_seed(s)
        config = model.EncoderConfig(n_layer=2, n_head=2, n_embd=32)
        enc = model.Encoder(config)
        torch.save({"model_args": asdict(config), "model": {"encoder." + k: v for k, v in enc.state_dict().items()},
                    "target": None, "config": {"objective": ("mlm", "hybrid")[s]}, "iter_num": 0}, d / "ckpt.pt")
        dirs.append(str(d))
    return dirs


def sentence(rng, label=None):
    w = [rng.choice(WORDS) for _ in range(rng.randint(4, 10))]
    if label is not None:
        w.insert(rng.randint(0, len(w)), "great" if label else "awful")
    return " ".join(w)


@pytest.fixture(scope="session")
def glue_dir(tmp_path_factory):
    """A standard GLUE layout, small, with each task's quirks: MRPC's byte-order mark and quotes, CoLA's
    header-less four columns, STS-B's ten columns, MNLI's many columns and a '-' gold label."""
    root = tmp_path_factory.mktemp("glue")
    rng = random.Random(0)
    for task in ("SST-2", "MRPC", "CoLA", "STS-B", "MNLI"):
        os.makedirs(root / task)
    for split, n in (("train", 60), ("dev", 30)):
        ys = [i % 2 for i in range(n)]
        with open(root / "SST-2" / f"{split}.tsv", "w") as f:
            f.write("sentence\tlabel\n" + "".join(f"{sentence(rng, y)} \t{y}\n" for y in ys))
        with open(root / "MRPC" / f"{split}.tsv", "w", encoding="utf-8-sig") as f:
            f.write("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
            f.write("".join(f"{y}\t{100 + i}\t{200 + i}\t\"{sentence(rng, y)}\" he said.\t{sentence(rng)}\n"
                            for i, y in enumerate(ys)))
        with open(root / "CoLA" / f"{split}.tsv", "w") as f:
            f.write("\n".join(f"gj04\t{y}\t{'' if y else '*'}\t{sentence(rng, y)}." for y in ys))  # no final newline
        with open(root / "STS-B" / f"{split}.tsv", "w") as f:
            f.write("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n")
            f.write("".join(f"{i}\tmain-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\t{sentence(rng)}\t"
                            f"{sentence(rng)}\t{5 * (i % 6) / 5:.3f}\n" for i in range(n)))
    head = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
            "sentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n")
    labels = ["entailment", "neutral", "contradiction"]
    for split, n in (("train", 60), ("dev_matched", 30), ("dev_mismatched", 30)):
        with open(root / "MNLI" / f"{split}.tsv", "w") as f:
            f.write(head)
            for i in range(n):
                gold = "-" if i == 0 else labels[i % 3]
                a, b = sentence(rng), sentence(rng)
                f.write(f"{i}\t{i}\t{i}e\tfiction\t( {a} )\t( {b} )\t(ROOT {a})\t(ROOT {b})\t{a}\t{b}\t"
                        f"{labels[i % 3]}\t{labels[i % 3]}\t\t\t\t{gold}\n")
    return str(root)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A text corpus for data.prepare: blank-line separated documents of prose sentences (every 100th
    document is held out, so 30 held-out documents of 15 sentences)."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    rng = random.Random(1)
    docs = []
    for _ in range(3000):
        docs.append(" ".join(sentence(rng).capitalize() + "." for _ in range(15)))
    path.write_text("\n\n".join(docs) + "\n")
    return str(path)


@pytest.fixture(scope="session")
def senteval_dir(tmp_path_factory):
    """SentEval's data/downstream layout, small, with the real files' quirks: gold files whose empty lines mark
    unscored pairs, STS16 inputs with extra source columns, SICK's test file with CRLF line endings."""
    root = tmp_path_factory.mktemp("senteval")
    rng = random.Random(2)
    for ds, files, extra in (("STS12", ("MSRpar", "surprise.OnWN"), False), ("STS16", ("headlines",), True)):
        folder = root / "STS" / f"{ds}-en-test"
        os.makedirs(folder)
        for i, name in enumerate(files):
            n = 24 + 6 * i
            rows = [f"{sentence(rng)}\t{sentence(rng)}" + ("\tsource-a\tsource-b" if extra else "") for _ in range(n)]
            gold = [f"{(j % 6):.2f}" if j % 7 != 3 else "" for j in range(n)]  # every 7th pair unscored
            (folder / f"STS.input.{name}.txt").write_text("\n".join(rows) + "\n")
            (folder / f"STS.gs.{name}.txt").write_text("\n".join(gold) + "\n")
    os.makedirs(root / "SICK")
    labels = ["NEUTRAL", "ENTAILMENT", "CONTRADICTION"]
    for fn, n, eol in (("SICK_train.txt", 60, "\n"), ("SICK_trial.txt", 15, "\n"), ("SICK_test_annotated.txt", 30, "\r\n")):
        lines = ["pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment"]
        lines += [f"{i}\t{sentence(rng)}\t{sentence(rng)}\t{1 + (i % 5) * 0.9:.1f}\t{labels[i % 3]}" for i in range(n)]
        with open(root / "SICK" / fn, "w", newline="") as f:
            f.write(eol.join(lines) + eol)
    return str(root)
