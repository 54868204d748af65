"""data.py's GLUE loaders (on small fixtures in the real formats) and probing sets."""

import os
import shutil

import numpy as np
import pytest

from conftest import ROOT
import data
from configurator import InputError

SHARED_GLUE = os.path.join(ROOT, "..", "shared", "data", "glue")


def test_each_glue_loader_on_fixture_files(glue_dir):
    tasks = data.load_glue(glue_dir)
    assert set(tasks) == set(data.GLUE_TASKS)
    sst2 = tasks["sst2"]
    assert len(sst2["train"]["a"]) == 60 and sst2["train"]["b"] is None and set(sst2["dev"]["y"]) == {0, 1}
    mrpc = tasks["mrpc"]["dev"]
    assert len(mrpc["a"]) == 30 and mrpc["a"][0].startswith('"')  # BOM gone from the header, quotes kept
    assert mrpc["y"][0] == 0 and mrpc["y"][1] == 1
    cola = tasks["cola"]["dev"]
    assert len(cola["a"]) == 30 and cola["a"][-1].endswith(".")  # the last line has no newline
    stsb = tasks["stsb"]["train"]
    assert stsb["y"].dtype == np.float64 and stsb["y"][1] == pytest.approx(1.0) and len(stsb["b"]) == 60
    mnli = tasks["mnli"]
    assert set(mnli) == {"train", "dev_matched", "dev_mismatched"}
    assert len(mnli["dev_matched"]["a"]) == 29  # the '-' gold label is dropped
    assert set(mnli["train"]["y"]) == {0, 1, 2}


def test_each_pair_is_read_from_its_own_columns(glue_dir):
    """Sentence a, sentence b and the label of every pair task are the named columns of each row."""
    tasks = data.load_glue(glue_dir, ("mrpc", "stsb", "mnli"))
    for folder, split, got, (a, b, y), label in (
            ("MRPC", "train", tasks["mrpc"]["train"], ("#1 String", "#2 String", "Quality"), int),
            ("STS-B", "dev", tasks["stsb"]["dev"], ("sentence1", "sentence2", "score"), float),
            ("MNLI", "train", tasks["mnli"]["train"], ("sentence1", "sentence2", "gold_label"),
             data.MNLI_LABELS.__getitem__)):
        with open(os.path.join(glue_dir, folder, f"{split}.tsv"), encoding="utf-8-sig") as f:
            head, *rows = [line.rstrip("\n").split("\t") for line in f]
        rows = [r for r in rows if r[head.index(y)] != "-"]
        assert got["a"] == [r[head.index(a)] for r in rows] and got["b"] == [r[head.index(b)] for r in rows]
        assert got["y"].tolist() == [label(r[head.index(y)]) for r in rows]


def test_mnli_subset_format(tmp_path):
    os.makedirs(tmp_path / "MNLI")
    for fn in data.MNLI_SUBSETS.values():
        (tmp_path / "MNLI" / fn).write_text("entailment\tA man runs .\tA person moves .\n"
                                            "contradiction\tIt is day .\tIt is night .\n")
    mnli = data.local_glue("mnli", str(tmp_path))
    assert set(mnli) == {"dev_matched", "dev_mismatched"}
    assert list(mnli["dev_matched"]["y"]) == [0, 2] and mnli["dev_matched"]["b"][1] == "It is night ."


def test_load_glue_gives_the_tasks_named(glue_dir):
    assert list(data.load_glue(glue_dir, "stsb")) == ["stsb"]  # one task by name, not its letters
    assert list(data.load_glue(glue_dir, ["cola", "sst2"])) == ["cola", "sst2"]
    with pytest.raises(InputError, match=r"GLUE tasks \['qnli'\]: name some of sst2, mrpc, mnli, cola, stsb"):
        data.load_glue(glue_dir, ("sst2", "qnli"))


def test_glue_files_saved_with_windows_line_ends_read_as_the_originals(glue_dir, tmp_path):
    """A .tsv re-saved on Windows ends its lines in \\r\\n: the last column (CoLA's sentence, MRPC's second)
    must not keep the \\r."""
    shutil.copytree(glue_dir, tmp_path / "glue")
    for path in (tmp_path / "glue").rglob("*.tsv"):
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    np.testing.assert_equal(data.load_glue(str(tmp_path / "glue")), data.load_glue(glue_dir))


def test_missing_glue_file_is_one_clear_error(glue_dir, tmp_path):
    os.makedirs(tmp_path / "SST-2")
    with pytest.raises(FileNotFoundError, match=".*SST-2/train.tsv not found"):
        data.load_glue(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="^--glue_dir"):
        data.load_glue(str(tmp_path / "nope"))


def test_subsample_is_deterministic_and_capped():
    split = {"a": [str(i) for i in range(100)], "b": None, "y": np.arange(100)}
    s1, s2 = data.subsample(split, 10, seed=0), data.subsample(split, 10, seed=0)
    assert s1["a"] == s2["a"] and len(s1["a"]) == 10 and list(s1["y"]) == [int(a) for a in s1["a"]]
    assert data.subsample(split, 0) is split and data.subsample(split, 1000) is split


def test_a_capped_pair_task_keeps_each_pair_and_its_label_together_in_their_order():
    split = {"a": [f"a{i}" for i in range(100)], "b": [f"b{i}" for i in range(100)], "y": np.arange(100)}
    s = data.subsample(split, 10, seed=3)
    assert [a[1:] for a in s["a"]] == [b[1:] for b in s["b"]] == [str(y) for y in s["y"]]
    assert list(s["y"]) == sorted(s["y"])  # the file's order


def split_of(tag, n):
    return {"a": [f"{tag} premise {i}" for i in range(n)], "b": [f"{tag} hypothesis {i}" for i in range(n)],
            "y": np.arange(n) % 3}


def test_glue_evals_train_on_train_and_cross_fit_mnli_without_one():
    """Each probe is scored on dev after training on train (capped at max_train); with only MNLI's two dev
    subsets, the matched one is scored by a probe trained on the mismatched one and vice versa: never on the
    examples it is scored on."""
    m, mm = split_of("m", 30), split_of("mm", 20)
    sst = {"train": split_of("s", 50), "dev": split_of("sd", 10)}
    evals, notes = data.glue_evals({"sst2": sst, "mnli": {"dev_matched": m, "dev_mismatched": mm}}, 40)
    by = {e[0]: e for e in evals}
    assert list(by) == ["sst2", "mnli-m", "mnli-mm"]
    assert by["mnli-m"][2:] == (mm, m, "mnli-dev_mismatched", "mnli-dev_matched")
    assert by["mnli-mm"][2:] == (m, mm, "mnli-dev_matched", "mnli-dev_mismatched")
    assert by["sst2"][3] is sst["dev"] and len(by["sst2"][2]["a"]) == 40
    assert set(by["sst2"][2]["a"]) <= set(sst["train"]["a"])
    assert any("cross-fitted" in n for n in notes) and any("sst2: probe trained on" in n for n in notes)


def test_probing_sets_are_what_they_claim():
    rng = np.random.default_rng(0)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    vocab = list(dict.fromkeys("".join(rng.choice(letters, rng.integers(3, 8))) for _ in range(2100)))[:2000]
    zipf = 1 / np.arange(1, 2001)
    sents = [" ".join(rng.choice(vocab, rng.integers(5, 29), p=zipf / zipf.sum())).capitalize() + "."
             for _ in range(1000)]
    sets, notes = data.probing_sets(sents, n_words=1000)
    assert notes and "WordContent" in notes[0]  # 1,000 sentences cannot fill 1,000 classes: scaled down, and said
    for s, y in zip(sets["sentlen"]["a"], sets["sentlen"]["y"]):
        lo, hi = data.SENTLEN_BINS[y]
        assert lo <= len(s.split()) <= hi
    binned = [s for s in sents if any(lo <= len(s.split()) <= hi for lo, hi in data.SENTLEN_BINS)]
    assert sets["sentlen"]["a"] == binned  # every sentence in a bin, the bins' ends included
    swapped = sets["bshift"]
    assert 0.4 < swapped["y"].mean() < 0.6
    for s, orig, y in zip(swapped["a"], sents, swapped["y"]):
        diff = [i for i, (a, b) in enumerate(zip(s.split(), orig.split())) if a != b]
        assert (diff == []) == (y == 0) and (y == 0 or (len(diff) == 2 and diff[1] == diff[0] + 1))
        # inside the sentence: the first word (capital) and the last (stop) stay; plain lower-case words move
        w = s.split()
        assert w[0] == orig.split()[0] and w[-1] == orig.split()[-1]
        assert all(w[i].isalpha() and w[i].islower() for i in diff)
    tok = data.get_tokenizer()
    mft = sets["mft"]
    assert np.bincount(mft["y"]).min() >= 5
    wc = sets["wordcontent"]
    assert len(set(wc["y"])) > 1 and np.bincount(wc["y"]).min() >= 5
    # each sentence holds one word of the probe's vocabulary, its class: a word in every sentence of its class
    # and in no sentence of another
    words = [set(data.words_of(s)) for s in wc["a"]]
    for c in set(wc["y"].tolist()):
        common = set.intersection(*(w for w, y in zip(words, wc["y"]) if y == c))
        elsewhere = set().union(*(w for w, y in zip(words, wc["y"]) if y != c))
        assert common - elsewhere, f"class {c}"
    again = data.probing_sets(sents, n_words=1000)[0]
    assert all(again[k]["a"] == sets[k]["a"] and (again[k]["y"] == sets[k]["y"]).all() for k in sets)
    assert data.most_frequent_token(tok.encode("the cat the dog the"), tok) == tok.encode(" the")[0]
    assert data.most_frequent_token(tok.encode("The cat saw the dog."), tok) == -1  # every token once: a tie
    assert data.most_frequent_token(tok.encode(" a b a b c"), tok) == -1  # ' a' and ' b' tie: dropped, not tie-broken
    assert all(data.most_frequent_token(ids, tok) != -1 for ids in tok.encode_batch(mft["a"]))


def test_bshift_never_moves_a_capital_or_a_punctuation_mark():
    """Names, commas and the final stop stay where they are: only two plain lower-case words swap."""
    sents = [f"Yesterday Alice, Bob and carol met Dave {w} in Paris." for w in ("here", "again", "twice")] * 20
    swapped = data.probing_sets(sents, min_class=1)[0]["bshift"]
    assert swapped["y"].sum() == 30  # every other sentence
    for s, orig in zip(swapped["a"], sents):
        moved = [a for a, b in zip(s.split(), orig.split()) if a != b]
        assert all(w.isalpha() and w.islower() for w in moved), s
    plain = ["the cat sat on the mat today"] * 40  # lower case, no stop: still never the first or last word
    for s in data.probing_sets(plain, min_class=1)[0]["bshift"]["a"]:
        assert s.split()[0] == "the" and s.split()[-1] == "today", s


@pytest.mark.skipif(not os.path.isdir(SHARED_GLUE), reason="../shared/data/glue not present")
def test_shared_glue_files_load_with_official_sizes():
    tasks = data.load_glue(SHARED_GLUE)
    sizes = {t: {s: len(v["a"]) for s, v in splits.items()} for t, splits in tasks.items()}
    assert sizes["sst2"] == {"train": 67349, "dev": 872}
    assert sizes["mrpc"] == {"train": 3668, "dev": 408}
    assert sizes["cola"] == {"train": 8551, "dev": 1043}
    assert sizes["stsb"] == {"train": 5749, "dev": 1500}
    assert sizes["mnli"] == {"dev_matched": 1000, "dev_mismatched": 1000}


def test_senteval_layout_with_the_real_files_quirks(senteval_dir, tmp_path):
    sts, sick = data.load_senteval(senteval_dir)
    assert list(sts) == ["STS12", "STS16"] and list(sts["STS12"]) == ["MSRpar", "surprise.OnWN"]
    # 24 pairs, every 7th unscored (3, 10, 17) -> 21 kept, their gold in order
    msr = sts["STS12"]["MSRpar"]
    assert len(msr["a"]) == len(msr["b"]) == len(msr["y"]) == 21
    assert msr["y"][:4].tolist() == [0.0, 1.0, 2.0, 4.0]
    head = sts["STS16"]["headlines"]
    assert len(head["y"]) == 21 and not any("\t" in s or "source" in s for s in head["a"] + head["b"])
    assert len(sick["test"]["a"]) == 30 and not any(s.endswith("\r") for s in sick["test"]["b"])
    assert sick["test"]["label"][:3].tolist() == [data.SICK_LABELS[k] for k in ("NEUTRAL", "ENTAILMENT", "CONTRADICTION")]
    assert sick["train"]["y"][1] == 1.9
    with pytest.raises(InputError, match="neither"):
        data.load_senteval(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not a folder"):
        data.load_senteval(str(tmp_path / "nope"))


GLUE_BREAKS = [  # (file, what is done to it, the start of the one line it gives)
    ("SST-2/train.tsv", lambda rows: rows[:2] + ["a fine film\tpositive"] + rows[3:],
     r"SST-2/train.tsv:3: 'positive' in column 2 is not 0/1"),
    ("MRPC/dev.tsv", lambda rows: rows[:2] + ["2" + rows[2][1:]] + rows[3:],  # a third class would crash the probe
     r"MRPC/dev.tsv:3: '2' in column 1 is not 0/1"),
    ("SST-2/dev.tsv", lambda rows: rows[:1], r"SST-2/dev.tsv has a header and no rows"),
    ("MRPC/train.tsv", lambda rows: rows[:3] + ["1\t101\tonly three fields"] + rows[4:],
     r"MRPC/train.tsv:4: 3 tab-separated fields where the format has at least 5: a broken row"),
    ("CoLA/dev.tsv", lambda rows: rows[:4] + ["gj04\tyes\t\tA sentence."] + rows[5:],
     r"CoLA/dev.tsv:5: 'yes' in column 2 is not 0/1"),
    ("STS-B/dev.tsv", lambda rows: rows[:2] + [rows[2].rsplit("\t", 1)[0] + "\tfive"] + rows[3:],
     r"STS-B/dev.tsv:3: 'five' in column 10 is not a float"),
    ("MNLI/dev_matched.tsv", lambda rows: [r.replace("sentence2\t", "hypothesis\t") for r in rows],
     r"MNLI/dev_matched.tsv has no column 'sentence2' in its header"),
]


@pytest.mark.parametrize("fn,change,line", GLUE_BREAKS, ids=[g[0] for g in GLUE_BREAKS])
def test_a_broken_glue_file_is_one_line_naming_file_and_row(fn, change, line, glue_dir, tmp_path):
    broken = tmp_path / "glue"
    shutil.copytree(glue_dir, broken)
    rows = (broken / fn).read_text(encoding="utf-8-sig").splitlines()
    (broken / fn).write_text("\n".join(change(rows)) + "\n")
    with pytest.raises(InputError, match=line) as e:
        data.load_glue(str(broken))
    assert "\n" not in str(e.value)


def test_mnli_subset_rows_are_checked(tmp_path):
    path = tmp_path / "sub.tsv"
    path.write_text("entailment\tA man sleeps.\tA person rests.\nmaybe\tA cat.\tAn animal.\n")
    with pytest.raises(InputError, match=r"sub.tsv:2: 'maybe' in column 1 is not entailment/neutral/contradiction"):
        data.mnli_subset(str(path))
    path.write_text("entailment\tA man\tsleeps.\tA person rests.\n")  # a tab inside a sentence: not cut there
    with pytest.raises(InputError, match=r"sub.tsv:1: 4 tab-separated fields where the format has 3"):
        data.mnli_subset(str(path))


# where a local copy of the hub's nyu-mll/glue holds a split: each layout the hub has used, one per task here
HUB_FILES = {"sst2": "{}-00000-of-00001.parquet", "cola": "glue-{}.parquet", "mrpc": "{}/0000.parquet",
             "stsb": "{}-00000-of-00001.parquet", "mnli": "{}-00000-of-00001.parquet"}


def write_hub_copy(tasks, root):
    """tasks (as load_glue gives them) written as the hub has them: its column and split names, a test
    split with no labels (-1) beside, MNLI's train in two shards."""
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    for task, splits in tasks.items():
        a, b = data.HUB_COLUMNS[task]
        for ours, theirs in {**data.hub_splits(task), "test": "test"}.items():
            s = splits.get(ours, splits["train"])
            labels = s["y"].tolist() if ours != "test" else [-1] * len(s["a"])
            cols = {a: s["a"], **({b: s["b"]} if b else {}), "label": labels, "idx": list(range(len(s["a"])))}
            shards = [cols] if not (task == "mnli" and ours == "train") else \
                [{k: v[:20] for k, v in cols.items()}, {k: v[20:] for k, v in cols.items()}]
            for k, shard in enumerate(shards):
                name = HUB_FILES[task].format(theirs)
                path = root / task / (name.replace("00000-of-00001", f"0000{k}-of-0000{len(shards)}"))
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(pa.table(shard), path)


def test_a_local_copy_of_the_hub_glue_reads_as_the_standard_layout(glue_dir, tmp_path):
    """--glue_dir may be the hub's nyu-mll/glue as downloaded (sst2/train-00000-of-00001.parquet, ...): the
    same examples give the same splits, so the same probes and cache keys."""
    tsv = data.load_glue(glue_dir)
    write_hub_copy(tsv, tmp_path / "hub")
    hub = data.load_glue(str(tmp_path / "hub"))
    assert set(hub) == set(tsv) and all(set(hub[t]) == set(tsv[t]) for t in tsv)
    for task in tsv:
        for split in tsv[task]:
            assert hub[task][split]["a"] == tsv[task][split]["a"] and hub[task][split]["b"] == tsv[task][split]["b"]
            assert hub[task][split]["y"].dtype == tsv[task][split]["y"].dtype
            np.testing.assert_array_equal(hub[task][split]["y"], tsv[task][split]["y"])
    # MNLI's train from its two shards, in order; its validation_matched, not test_matched beside it
    assert len(hub["mnli"]["train"]["a"]) == 59 and len(list((tmp_path / "hub" / "mnli").glob("train-*"))) == 2
    shutil.rmtree(tmp_path / "hub" / "cola")  # a task not downloaded is named as the hub names it
    with pytest.raises(FileNotFoundError, match=r"hub holds mnli, mrpc, sst2, stsb of nyu-mll/glue but not cola: "):
        data.load_glue(str(tmp_path / "hub"))


def test_glue_saved_with_datasets_save_to_disk_reads_as_the_standard_layout(glue_dir, tmp_path):
    """load_dataset("nyu-mll/glue", task).save_to_disk("glue/<task>") for use offline: its .arrow shards
    give the same splits as the standard layout; a split kept both as .parquet and .arrow is refused, not
    counted twice."""
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    tsv = data.load_glue(glue_dir)
    for task, splits in tsv.items():
        a, b = data.HUB_COLUMNS[task]
        columns = {ours: {a: s["a"], **({b: s["b"]} if b else {}), "label": s["y"].tolist()}
                   for ours, s in splits.items()}
        on_disk = datasets.DatasetDict({theirs: datasets.Dataset.from_dict(columns[ours])
                                        for ours, theirs in data.hub_splits(task).items()})
        on_disk.save_to_disk(str(tmp_path / "saved" / task))
    saved = data.load_glue(str(tmp_path / "saved"))
    for task in tsv:
        for split in tsv[task]:
            assert saved[task][split]["a"] == tsv[task][split]["a"]
            assert saved[task][split]["b"] == tsv[task][split]["b"]
            np.testing.assert_array_equal(saved[task][split]["y"], tsv[task][split]["y"])
    pa = pytest.importorskip("pyarrow")  # a shard in Arrow's file format (polars' write_ipc) reads the same
    shard = next((tmp_path / "saved" / "sst2" / "train").glob("*.arrow"))
    with pa.OSFile(str(shard)) as source:
        table = pa.ipc.open_stream(source).read_all()
    with pa.OSFile(str(shard), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    assert data.load_glue(str(tmp_path / "saved"), "sst2")["sst2"]["train"]["a"] == tsv["sst2"]["train"]["a"]
    write_hub_copy({"sst2": tsv["sst2"]}, tmp_path / "saved")  # the hub's .parquet beside them
    with pytest.raises(InputError, match=r"sst2 holds its train split both as .parquet and as .arrow: "
                                         r"keep one"):
        data.load_glue(str(tmp_path / "saved"))


def test_a_broken_hub_copy_is_one_line(glue_dir, tmp_path):
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    write_hub_copy(data.load_glue(glue_dir), tmp_path)
    dev, test = (tmp_path / "mrpc" / split / "0000.parquet" for split in ("validation", "test"))
    good = pq.read_table(dev)
    breaks = [  # (what the dev file becomes, the one line it gives)
        (None, r"mrpc has no validation split .*download the whole of nyu-mll/glue's mrpc"),
        (pq.read_table(test), r"mrpc/validation: labels \[-1\] outside 0..1: is it a test split"),
        (good.drop_columns(["sentence2"]), r"0000.parquet has no column 'sentence2': is it nyu-mll/glue's mrpc"),
        (good.set_column(0, "sentence1", pa.array([None] + good["sentence1"].to_pylist()[1:])),
         r"mrpc/validation: row 0 has no sentence1 \(a null\): re-download it"),
        (b"<html>rate limited</html>", r"0000.parquet is not a readable .parquet file: re-download it"),
    ]
    for content, line in breaks:
        dev.unlink(missing_ok=True)
        if isinstance(content, bytes):
            dev.write_bytes(content)
        elif content is not None:
            pq.write_table(content, dev)
        with pytest.raises(InputError, match=line) as e:
            data.load_glue(str(tmp_path))
        assert "\n" not in str(e.value)
