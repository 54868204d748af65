"""Tokenizer, corpus preparation, MLM corruption and the run log's readers."""

import csv
import gzip
import hashlib
import json
import lzma
import math
import os
import pathlib
import re
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import torch

import data
from configurator import InputError
from conftest import ROOT, read_json


def test_tokenizer_round_trip_and_layout():
    tok = data.get_tokenizer()
    for text in ["Hello, world!", "  leading spaces\nand\ttabs\n\n", "naïve café — 東京 😀", "x" * 1000, ""]:
        ids = tok.encode(text)
        assert all(0 <= i < tok.n_normal for i in ids)
        assert tok.decode(ids) == text
    assert (tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id) == tuple(range(32000, 32004))
    assert tok.vocab_size % 128 == 0 and tok.vocab_size >= tok.mask_id + 1
    assert tok.decode([tok.cls_id] + tok.encode("a b") + [tok.sep_id, tok.pad_id]) == "a b"  # specials dropped
    assert len(tok.encode("the the the the")) == 4  # real merges survive the truncation, not bytes


def test_every_vocabulary_allowed_fits_the_prepared_files(tmp_path):
    """train.bin holds uint16 ids: the largest vocabulary allowed puts [MASK] at 65535, and one rank more is
    refused in one line before any work (it overflowed in the middle of preparing)."""
    tok = data.get_tokenizer(data.MAX_RANKS)
    assert tok.mask_id == 2**16 - 1 and tok.vocab_size == 2**16
    for n in (data.MAX_RANKS + 1, 100_000, 255):
        with pytest.raises(InputError, match=rf"--vocab_ranks={n}: must be a whole number from 256 .* to 65532"):
            data.prepare("embedded", str(tmp_path), n)
    assert os.listdir(tmp_path) == []


def test_mlm_corruption_rates_and_specials():
    tok = data.get_tokenizer()
    g = torch.Generator().manual_seed(0)
    B, T = 2000, 128
    idx = torch.randint(tok.n_normal, (B, T), generator=g)
    idx[:, 0] = tok.cls_id
    idx[:, 40] = idx[:, 90] = tok.sep_id  # document boundaries in a packed window
    b = data.mask_tokens(idx, g, tok, 0.15)
    used = b["mlm_labels"] != -100
    eligible = T - 3
    assert b["mlm_pos"].shape == (B, 20)  # ceil(0.15 * 128) static slots
    assert (used.sum(1) == round(0.15 * eligible)).all()  # exactly 15% of each sequence's text tokens
    pos = b["mlm_pos"][used]
    assert not ((pos == 0) | (pos == 40) | (pos == 90)).any()  # no special token is ever selected
    assert torch.equal(b["mlm_input"][:, [0, 40, 90]], idx[:, [0, 40, 90]])
    assert torch.equal(b["mlm_labels"][used], idx.gather(1, b["mlm_pos"])[used])
    new = b["mlm_input"].gather(1, b["mlm_pos"])[used]
    orig = b["mlm_labels"][used]
    n = used.sum().item()
    masked = (new == tok.mask_id).float().mean().item()
    kept = (new == orig).float().mean().item()
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1) < 0.01  # 10% random includes 1/32000 chance of orig
    rand = new[(new != tok.mask_id) & (new != orig)]
    assert abs(len(rand) / n - 0.1) < 0.01 and (rand < tok.n_normal).all()
    selected = torch.zeros_like(idx, dtype=torch.bool).scatter(1, b["mlm_pos"], used)  # topk: distinct slots
    assert torch.equal(b["mlm_input"][~selected], idx[~selected])  # nothing else changes


def write_corpus(folder):
    os.makedirs(folder)
    with open(os.path.join(folder, "a.txt"), "w") as f:
        for i in range(30):
            f.write(f"Document {i} talks about topic {i * 7}.\nIt has two lines.\n\n")
    with lzma.open(os.path.join(folder, "b.txt.xz"), "wt") as f:  # WikiExtractor layout, compressed
        f.write('<doc id="1" url="u" title="Stub">\nStub\n</doc>\n')
        f.write('<doc id="2" url="u" title="Real">\nReal\n\nReal is an article body.\n</doc>\n')
    with open(os.path.join(folder, "c.jsonl"), "w") as f:
        for i in range(5):
            f.write(json.dumps({"text": f"json document {i}"}) + "\n")


def test_local_documents(tmp_path):
    write_corpus(tmp_path / "corpus")
    docs = list(data.local_docs(str(tmp_path / "corpus")))
    assert len(docs) == 30 + 1 + 5  # the title-only stub is dropped
    assert docs[0] == "Document 0 talks about topic 0.\nIt has two lines."
    assert docs[30] == "Real is an article body."  # markup and the repeated title are gone
    assert docs[-1] == "json document 4"


def test_columnar_files_give_a_document_a_row(tmp_path):
    """A .parquet (a 'text' column), an .arrow in Arrow's file format, and datasets' save_to_disk folder (its
    .arrow shards in the stream format, a DatasetDict's splits in name order, beside their JSON metadata):
    each row of 'text' a document, the other columns not read."""
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    datasets = pytest.importorskip("datasets")
    docs = [f"Row {i} of the table.\n\nIts second paragraph." for i in range(12)]
    pq.write_table(pa.table({"id": list(range(12)), "text": docs}), tmp_path / "rows.parquet", row_group_size=5)
    assert list(data.local_docs(str(tmp_path / "rows.parquet"))) == docs
    table = pa.table({"text": docs})  # Arrow's file format (polars' write_ipc), in two record batches
    with pa.OSFile(str(tmp_path / "rows.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=7)
    assert list(data.local_docs(str(tmp_path / "rows.arrow"))) == docs
    datasets.disable_progress_bars()
    datasets.Dataset.from_dict({"text": docs, "id": list(range(12))}).save_to_disk(tmp_path / "saved", num_shards=3)
    assert len(data.local_files(str(tmp_path / "saved"))) == 3
    assert list(data.local_docs(str(tmp_path / "saved"))) == docs
    splits = datasets.DatasetDict({"validation": datasets.Dataset.from_dict({"text": docs[8:]}),
                                   "train": datasets.Dataset.from_dict({"text": docs[:8]})})
    splits.save_to_disk(tmp_path / "dict")
    assert list(data.local_docs(str(tmp_path / "dict"))) == docs
    assert data.walk(str(tmp_path / "dict"))[1] == ["dataset_dict.json"] + [
        os.path.join(split, f) for split in ("train", "validation") for f in ("dataset_info.json", "state.json")]


def test_text_column_names_the_field_or_column_that_holds_the_text(tmp_path, capsys):
    """Corpora whose text is not under "text" (PubMed's abstract, The Stack's content): --text_column names it,
    the error says so, and meta.json records it, so a corpus prepared from another column is prepared again."""
    rows = [{"text": f"Title {i}.", "abstract": f"Abstract {i} says what was found."} for i in range(150)]
    pubmed, d = str(tmp_path / "pubmed.jsonl"), str(tmp_path / "data")
    (tmp_path / "pubmed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert list(data.local_docs(pubmed, "abstract")) == [r["abstract"] for r in rows]
    with pytest.raises(InputError, match=r'pubmed.jsonl:1: no string "body" field \(the line has keys text, '
                                         r"abstract\): name the field that holds the text with --text_column=NAME"):
        list(data.local_docs(pubmed, "body"))
    out = data.prepare(pubmed, d)
    assert "column" not in data.read_meta(out)["made_from"]  # corpora prepared before the setting stay valid
    capsys.readouterr()
    assert data.prepare(pubmed, d, column="abstract") == out
    assert "out of date (its text column changed): preparing it again" in capsys.readouterr().err
    assert data.read_meta(out)["made_from"]["column"] == "abstract"
    text = data.get_tokenizer().decode(np.fromfile(os.path.join(out, "train.bin"), dtype=np.uint16).tolist())
    assert "Abstract 1 says" in text and "Title" not in text
    for dataset, column, says in (("embedded", "abstract", "for local JSON and columnar files; embedded is read as"),
                                  ("wikipedia", "abstract", "for local JSON and columnar"), (pubmed, "", "name the")):
        with pytest.raises(InputError, match=f"^--text_column={column!r}: {says}"):
            data.prepare(dataset, d, column=column)
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    stack = str(tmp_path / "stack.parquet")
    pq.write_table(pa.table({"id": [1, 2], "content": ["def f(): pass", "x = 1"]}), stack)
    with pytest.raises(InputError, match=r"stack.parquet: no 'text' column \(it has id, content\): name the one "
                                         r"that holds the text with --text_column=NAME"):
        list(data.local_docs(stack))
    assert list(data.local_docs(stack, "content")) == ["def f(): pass", "x = 1"]


def test_web_corpora_shards_are_read_as_they_come(tmp_path):
    """C4's and Dolma's JSON-lines shards (.json.gz: a compressed .json in a folder is text, a plain one
    metadata) and the Pile's and SlimPajama's .jsonl.zst (zstd through pyarrow, frames joined): each line's
    "text" a document, in file order; a .zst that is not one is one line."""
    pa = pytest.importorskip("pyarrow")
    rows = [{"text": f"Page {i} of the crawl.\n\nIts second paragraph.", "url": f"u{i}"} for i in range(6)]
    lines = [(json.dumps(r) + "\n").encode() for r in rows]
    (tmp_path / "c4" / "en").mkdir(parents=True)
    for n in range(2):
        with gzip.open(tmp_path / "c4" / "en" / f"c4-train.0000{n}-of-00002.json.gz", "wb") as f:
            f.writelines(lines[3 * n:3 * n + 3])
    (tmp_path / "c4" / "dataset_info.json").write_text('{"text": "metadata, not a document"}\n')
    assert list(data.local_docs(str(tmp_path / "c4"))) == [r["text"] for r in rows]
    assert data.walk(str(tmp_path / "c4"))[1] == ["dataset_info.json"]
    zst = str(tmp_path / "pile.jsonl.zst")
    with open(zst, "wb") as f:
        for n in range(2):  # two zstd frames, as a file concatenated from parts has
            f.write(pa.compress(b"".join(lines[3 * n:3 * n + 3]), codec="zstd", asbytes=True))
    assert list(data.local_docs(zst)) == [r["text"] for r in rows]
    with open(zst, "wb") as f:
        f.write(pa.compress("Caf\xe9 au lait.\n".encode("latin-1"), codec="zstd", asbytes=True))
    with pytest.raises(InputError, match=r"pile.jsonl.zst:1: not UTF-8 text"):
        list(data.local_docs(zst))
    (tmp_path / "fake.txt.zst").write_bytes(b"<html>rate limited</html>")
    with pytest.raises(InputError, match=r"fake.txt.zst: cannot be read as .txt.zst \(.*\): is it what its name says"):
        list(data.local_docs(str(tmp_path / "fake.txt.zst")))


def test_wikiextractor_output_is_read_as_it_comes(tmp_path):
    """WikiExtractor writes AA/wiki_00, AA/wiki_01, ... (.bz2 with --compress): <doc> records, or one JSON
    object per line with --json. A folder of either is a corpus as it stands, with no renaming."""
    out = tmp_path / "extracted"
    (out / "AA").mkdir(parents=True)
    (out / "AA" / "wiki_00").write_text('<doc id="1" url="u" title="Ant">\nAnt\n\nAnts are insects.\n</doc>\n'
                                        '<doc id="2" url="u" title="Stub">\nStub\n</doc>\n')
    with lzma.open(out / "AA" / "wiki_01.xz", "wt") as f:
        f.write('<doc id="3" url="u" title="Bee">\nBee\n\nBees make honey.\nThey fly.\n</doc>\n')
    (out / "AB").mkdir()
    (out / "AB" / "wiki_00").write_text("".join(json.dumps({"id": str(i), "title": f"T{i}", "text": f"Body {i}."})
                                                + "\n" for i in (4, 5)))
    (out / "README").write_text("not an article")
    assert list(data.local_docs(str(out))) == ["Ants are insects.", "Bees make honey.\nThey fly.", "Body 4.",
                                               "Body 5."]
    assert data.walk(str(out))[1] == ["README"]


def test_wikitext_files_are_plain_text(tmp_path):
    """WikiText's wiki.test.raw (and WikiText-103's .tokens): paragraphs and ' = Title = ' lines at blank lines."""
    (tmp_path / "wiki.test.raw").write_text(" \n = Ant = \n \n Ants are insects . \n \n = Bee = \n \n")
    assert list(data.local_docs(str(tmp_path / "wiki.test.raw"))) == ["= Ant =", "Ants are insects .", "= Bee ="]


OTHER_KINDS = [("table.tsv", "not a corpus file .*rename plain text .txt"),
               ("notes", "not a corpus file .*rename plain text .txt"),
               ("enwiki-latest-pages-articles.xml.bz2",
                "an XML dump, not text: extract its articles first .*WikiExtractor .* then --dataset=extracted$")]


@pytest.mark.parametrize("name, says", OTHER_KINDS)
def test_a_file_of_another_kind_is_refused_not_read_as_text(name, says, tmp_path):
    """Read as text, a .tsv would put its tabs and quotes in the corpus, a Wikipedia dump its XML and
    wikitext: it is one line instead, that says what to do."""
    (tmp_path / name).write_text("\n\n".join(f'"text","Row {i}"' for i in range(300)))
    with pytest.raises(InputError, match=f"^{re.escape(str(tmp_path / name))}: {says}"):
        data.prepare(str(tmp_path / name), str(tmp_path / "d"))
    assert not os.path.exists(tmp_path / "d" / name)


def test_the_case_of_a_file_name_does_not_matter(tmp_path):
    """NOTES.TXT (Windows, old archives) and B.JSONL.GZ are the .txt and the .jsonl.gz they are."""
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "NOTES.TXT").write_text("A note.\n\nAnother note.\n")
    with gzip.open(tmp_path / "c" / "B.JSONL.GZ", "wt") as f:
        f.write('{"text": "A row."}\n')
    assert list(data.local_docs(str(tmp_path / "c"))) == ["A row.", "A note.", "Another note."]
    assert list(data.local_docs(str(tmp_path / "c" / "NOTES.TXT"))) == ["A note.", "Another note."]


def test_a_json_named_alone_is_json_lines_or_one_array(tmp_path, monkeypatch):
    """datasets' to_json writes JSON lines to a .json; other tools write one array: both are the .jsonl's
    documents. A .json in a folder is not read (save_to_disk's and a hub copy's metadata), and the error of a
    folder of nothing else says to name it."""
    docs = [f"Document {i} is about topic {i}." for i in range(5)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    (tmp_path / "lines.json").write_text((tmp_path / "c.jsonl").read_text())
    rows = [{"text": d, "id": i} for i, d in enumerate(docs)]
    (tmp_path / "array.json").write_text("\n" + json.dumps(rows, indent=1))  # the '[' on line 2
    for name in ("lines.json", "array.json"):
        assert list(data.local_docs(str(tmp_path / name))) == list(data.local_docs(str(tmp_path / "c.jsonl")))
    bad = {"cut.json": ('[{"text": "a"},\n{"text": "b"', r"cut.json:2: not JSON"),
           "record.json": ('[{"text": "a"}, {"body": "b"}]', r'record.json: record 1: no string "text" field \(the '
                                                             r"record has keys body\)"),
           "object.json": ('{\n "data": [{"text": "a"}]\n}\n', r"object.json:1: not a JSON object .*: a .json holds "
                                                              r"JSON lines .* or one array of them")}
    for name, (content, line) in bad.items():
        (tmp_path / name).write_text(content)
        with pytest.raises(InputError, match=line):
            list(data.local_docs(str(tmp_path / name)))
    monkeypatch.setattr(data, "MAX_JSON_CHARS", 100)  # an array past it is refused before it is parsed whole
    with pytest.raises(InputError, match=r"array.json:8: a JSON array of over 100 characters, which is read "
                                         r"whole: write it as JSON lines"):
        list(data.local_docs(str(tmp_path / "array.json")))
    assert len(list(data.local_docs(str(tmp_path / "lines.json")))) == 5  # JSON lines stream, at any size
    (tmp_path / "folder").mkdir()
    os.rename(tmp_path / "lines.json", tmp_path / "folder" / "train.json")
    with pytest.raises(InputError, match=r"a plain .json or a .csv in a folder is taken for metadata: name "
                                         r".*train.json on its own"):
        data.prepare(str(tmp_path / "folder"), str(tmp_path / "d"))


def test_a_csv_named_alone_gives_a_document_a_row_of_its_text_column(tmp_path, monkeypatch):
    """A .csv as pandas' to_csv writes it: a header, quoted fields holding commas, quotes and line breaks
    (CRLF rows), a byte-order mark; compressed too. In a folder it is named and not read, like a .json."""
    docs = [f'Article {i}, with "quotes",\r\nand a second line.' for i in range(5)]
    with open(tmp_path / "a.csv", "w", newline="", encoding="utf-8-sig") as f:
        csv.writer(f).writerows([["id", "body"]] + [[i, d] for i, d in enumerate(docs)])
    assert list(data.local_docs(str(tmp_path / "a.csv"), "body")) == docs
    with gzip.open(tmp_path / "b.csv.gz", "wt", newline="") as f:
        csv.writer(f).writerows([["text"]] + [[d] for d in docs])
    assert list(data.local_docs(str(tmp_path / "b.csv.gz"))) == docs
    bad = {"a.csv": r"a.csv: no 'text' column in its header \(it has id, body\): name the one that holds the "
                    r"text with --text_column=NAME",
           "open.csv": ('id,text\n1,"a quote left open\n2,b\n',
                        r"open.csv:3: not CSV \(unexpected end of data\)"),
           "ragged.csv": ("id,text\n1,fine\n2,one, two\n", r"ragged.csv:3: 3 fields where the header has 2"),
           "empty.csv": ("", r"empty.csv: empty: a .csv needs a header row"),
           "long.csv": ('text\n"' + "x" * 2000 + '"\n',
                        r"long.csv:2: a field of over 1,000 characters \(no article or book is that long\)")}
    monkeypatch.setattr(data, "MAX_DOC_CHARS", 1000)
    for name, content in bad.items():
        if isinstance(content, tuple):
            content, line = content
            (tmp_path / name).write_text(content)
        else:
            line = content
        with pytest.raises(InputError, match=line):
            list(data.local_docs(str(tmp_path / name)))
    files, others = data.walk(str(tmp_path))
    assert files == [] and {"a.csv", "b.csv.gz"} <= set(others)


def test_a_txt_without_blank_lines_stops_before_it_fills_the_memory(tmp_path, monkeypatch):
    """One sentence a line and no blank line (BookCorpus' layout) is one document to a .txt: a large one
    would be held in memory whole, then tokenized whole; it stops at MAX_DOC_CHARS, naming the line."""
    monkeypatch.setattr(data, "MAX_DOC_CHARS", 1000)
    (tmp_path / "lines.txt").write_text("".join(f"Sentence number {i} of the book.\n" for i in range(500)))
    with pytest.raises(InputError, match=r"lines.txt:32: one document of over 1,000 characters: a .txt ends a "
                                         r"document at a blank line"):
        data.prepare(str(tmp_path / "lines.txt"), str(tmp_path / "d"))
    assert not os.path.exists(tmp_path / "d" / "lines.txt")


def test_a_txt_without_line_breaks_is_refused_without_reading_it_whole(tmp_path, monkeypatch):
    """A text with no line break at all (a minified dump) is refused at MAX_DOC_CHARS, having read about that
    much of it: the file's one line is never held in memory whole."""
    monkeypatch.setattr(data, "MAX_DOC_CHARS", 1000)
    (tmp_path / "dump.txt").write_text("word " * 4_000_000)  # 20 MB on one line
    tracemalloc.start()
    with pytest.raises(InputError, match=r"dump.txt:1: one document of over 1,000 characters"):
        list(data.local_docs(str(tmp_path / "dump.txt")))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000, f"{peak:,} bytes held while reading a 20 MB line"


def test_a_corpus_is_prepared_in_a_folder_of_its_own_name(tmp_path, monkeypatch):
    """--dataset=. or .. is the folder it names: prepared into data/<that name>, not into data/ itself or
    the folder above it."""
    write_corpus(tmp_path / "notes" / "sub")
    monkeypatch.chdir(tmp_path / "notes" / "sub")
    assert data.prepare(".", str(tmp_path / "d")) == str(tmp_path / "d" / "sub")
    assert data.prepare("..", str(tmp_path / "d")) == str(tmp_path / "d" / "notes")
    assert data.corpus_folder("/", "data") == os.path.join("data", "corpus")
    assert data.corpus_folder("my corpus/.hidden.jsonl", "data", 8192) == os.path.join("data", "hidden.jsonl-v8192")


def test_linked_folders_are_read_once(tmp_path):
    """A folder linked into the corpus (shards on another disk) is read, once however many links reach it;
    a link back up ends."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.txt").write_text("Document b.")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("Document a.")
    for name, target in (("linked", "../elsewhere"), ("twice", "../elsewhere"), ("up", "..")):
        os.symlink(target, tmp_path / "corpus" / name)
    assert list(data.local_docs(str(tmp_path / "corpus"))) == ["Document a.", "Document b."]


def test_a_file_reached_twice_is_read_once_and_named(tmp_path, capsys):
    """A second link to a corpus file, or a hard link, is read once: its documents would otherwise sit in both
    splits (every 100th document is val), making the val loss a train loss. The prepare line names it."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("\n\n".join(f"Document {i} is about topic {i}." for i in range(300)))
    os.symlink("a.txt", corpus / "b.txt")
    os.link(corpus / "a.txt", corpus / "c.txt")
    (corpus / "d.txt").write_text("Document d.")
    assert data.walk(str(corpus)) == ([str(corpus / f) for f in ("a.txt", "d.txt")],
                                      ["b.txt (the file a.txt again)", "c.txt (the file a.txt again)"])
    meta = read_json(os.path.join(data.prepare(str(corpus), str(tmp_path / "data")), "meta.json"))
    assert meta["docs"] == 301
    assert "or read already): b.txt (the file a.txt again), c.txt (the file a.txt again)" in capsys.readouterr().err


def test_a_broken_link_among_the_corpus_files_is_one_line(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("Document a.")
    os.symlink("gone.txt", tmp_path / "corpus" / "b.txt")
    os.symlink("gone.csv", tmp_path / "corpus" / "notes.csv")  # not a corpus file: named, not read
    with pytest.raises(InputError, match=r"corpus/b.txt: cannot be read \(No such file or directory\): mend the "
                                         r"link, or remove it from"):
        data.prepare(str(tmp_path / "corpus"), str(tmp_path / "data"))
    assert not os.path.exists(tmp_path / "data" / "corpus")


def test_a_folder_that_cannot_be_listed_is_one_line_not_skipped(tmp_path, monkeypatch):
    (tmp_path / "corpus" / "locked").mkdir(parents=True)
    (tmp_path / "corpus" / "a.txt").write_text("Document a.")
    scandir = os.scandir

    def refused(path):  # what chmod 000 does to anyone but root
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)
    monkeypatch.setattr(os, "scandir", refused)
    with pytest.raises(InputError, match=r"corpus/locked: cannot be listed \(Permission denied\): make it readable"):
        data.local_files(str(tmp_path / "corpus"))


def test_a_folder_says_which_of_its_files_it_does_not_read(tmp_path, capsys):
    """A .json (JSON lines by another name) or a .csv beside the corpus files is not read, and is named; hidden
    files and folders (.DS_Store, macOS's ._a.txt, Jupyter's copies in .ipynb_checkpoints/) are neither."""
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.txt").write_text("\n\n".join(f"Document {i} is about topic {i}." for i in range(300)))
    (corpus / "sub" / "b.json").write_text('{"text": "not read"}\n')
    (corpus / "c.csv").write_text("a,b\n")
    (corpus / ".DS_Store").write_text("")
    (corpus / "._a.txt").write_bytes(b"\x00\x05\x16\x07 macOS metadata, not UTF-8")
    (corpus / ".ipynb_checkpoints").mkdir()
    (corpus / ".ipynb_checkpoints" / "a-checkpoint.txt").write_text("A copy of a.txt, not a document of its own.")
    assert data.walk(str(corpus)) == ([str(corpus / "a.txt")], ["c.csv", os.path.join("sub", "b.json")])
    data.prepare(str(corpus), str(tmp_path / "data"))
    assert "not read (2 files: not .txt/.jsonl/.parquet/.arrow files, WikiText's .raw/.tokens or WikiExtractor's " \
           "wiki_NN, optionally .xz/.gz/.bz2/.zst, or read already): c.csv, sub/b.json" in capsys.readouterr().err


READER_TOKENS = {1: "c879794f4114"}  # data.READER -> a digest of the tokens write_corpus' files give under it


def test_an_edit_that_changes_a_sources_tokens_comes_with_a_new_reader_version(tmp_path, monkeypatch, capsys):
    """Corpora prepared by an older reader are prepared again only where data.READER changes with the tokens."""
    write_corpus(tmp_path / "corpus")
    (tmp_path / "corpus" / "d.txt").write_bytes(  # a Windows editor's file: a BOM and CRLF line ends
        ("\ufeff" + "\r\n\r\n".join(f"Windows document {i}.\r\nLine two." for i in range(120))).encode())
    out = data.prepare(str(tmp_path / "corpus"), str(tmp_path / "data"))
    tokens = hashlib.sha1(b"".join(pathlib.Path(out, f).read_bytes() for f in ("train.bin", "val.bin")))
    assert READER_TOKENS.get(data.READER) == tokens.hexdigest()[:12], (
        f"the corpus' tokens have changed: bump data.READER and pin {tokens.hexdigest()[:12]} for it here")
    monkeypatch.setattr(data, "READER", data.READER + 1)
    capsys.readouterr()
    data.prepare(str(tmp_path / "corpus"), str(tmp_path / "data"))
    assert "out of date (its reader changed): preparing it again" in capsys.readouterr().err


def test_files_saved_with_a_byte_order_mark_or_crlf_read_as_plain_utf8(tmp_path):
    """Editors on Windows write a BOM and CRLF line ends: neither may reach the tokens, nor break a .jsonl."""
    (tmp_path / "w.txt").write_bytes("\ufeffFirst doc.\r\nLine two.\r\n\r\nSecond doc.\r\n".encode())
    (tmp_path / "w.jsonl").write_bytes(("\ufeff" + json.dumps({"text": "json doc"}) + "\r\n").encode())
    assert list(data.file_docs(str(tmp_path / "w.txt"))) == ["First doc.\nLine two.", "Second doc."]
    assert list(data.file_docs(str(tmp_path / "w.jsonl"))) == ["json doc"]


def assert_same_splits(folder, *others):
    """Prepared corpora with the same train.bin and val.bin, token for token."""
    for split in ("train", "val"):
        a = np.fromfile(os.path.join(folder, f"{split}.bin"), dtype=np.uint16)
        for other in others:
            assert np.array_equal(a, np.fromfile(os.path.join(other, f"{split}.bin"), dtype=np.uint16))


def test_prepare_is_idempotent_and_resumes(tmp_path, monkeypatch):
    write_corpus(tmp_path / "corpus")
    tok = data.get_tokenizer()
    out = data.prepare(str(tmp_path / "corpus"), str(tmp_path / "d1"))
    train = np.fromfile(os.path.join(out, "train.bin"), dtype=np.uint16)
    val = np.fromfile(os.path.join(out, "val.bin"), dtype=np.uint16)
    docs = list(data.local_docs(str(tmp_path / "corpus")))
    expected_val = [t for i, d in enumerate(docs) if i % 100 == 0 for t in tok.encode(d) + [tok.sep_id]]
    assert val.tolist() == expected_val
    assert len(train) + len(val) == sum(len(tok.encode(d)) + 1 for d in docs)
    stamp = os.path.getmtime(os.path.join(out, "train.bin"))
    assert data.prepare(str(tmp_path / "corpus"), str(tmp_path / "d1")) == out  # re-used, not redone
    assert os.path.getmtime(os.path.join(out, "train.bin")) == stamp

    # an interrupted run: a few chunks saved, then garbage written after the last save
    monkeypatch.setattr(data, "CHUNK_DOCS", 4)
    folder = str(tmp_path / "d2")
    real_docs = data.corpus_docs

    def dying_docs(*args):
        for i, d in enumerate(real_docs(*args)):
            if i == 13:
                raise KeyboardInterrupt
            yield d
    monkeypatch.setattr(data, "corpus_docs", dying_docs)
    with pytest.raises(KeyboardInterrupt):
        data.prepare(str(tmp_path / "corpus"), folder)
    out2 = os.path.join(folder, "corpus")
    with open(os.path.join(out2, "meta.json")) as f:
        meta = json.load(f)
    assert meta["docs"] == 12 and not meta["complete"]  # three chunks of 4 saved
    with open(os.path.join(out2, "train.bin"), "ab") as f:
        f.write(b"\x01\x02" * 50)
    monkeypatch.setattr(data, "corpus_docs", real_docs)
    data.prepare(str(tmp_path / "corpus"), folder)
    # and chunks bounded by characters (long documents, books: memory), not by a count of documents
    monkeypatch.setattr(data, "CHUNK_DOCS", 2000)
    monkeypatch.setattr(data, "CHUNK_CHARS", 100)
    docs = iter(["a" * 60, "b" * 30, "c" * 20, "d" * 200, "e"])
    assert [len(data.next_chunk(docs)) for _ in range(4)] == [3, 1, 1, 0]  # until a chunk holds >= 100
    out3 = data.prepare(str(tmp_path / "corpus"), str(tmp_path / "d3"))
    assert_same_splits(out, out2, out3)


def test_a_broken_hub_stream_keeps_what_was_prepared_and_the_same_command_goes_on(tmp_path, monkeypatch):
    """Hours into Wikipedia a network error is likely: one line, the chunks prepared kept, and the same
    command ends with the files an unbroken stream gives. A stream that never starts writes nothing."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # check_hub: no network needed
    monkeypatch.setattr(data, "CHUNK_DOCS", 4)
    articles = [f"Article {i} is about the topic numbered {i}." for i in range(250)]
    breaks = []  # where the next stream raises

    def stream(*args, split=None, streaming=None):
        assert (args, split, streaming) == (data.WIKIPEDIA, "train", True)
        stop = breaks.pop(0) if breaks else len(articles)
        for i, text in enumerate(articles):
            if i == stop:
                raise ConnectionError("Connection reset by peer")
            yield {"text": text, "title": str(i)}
    monkeypatch.setattr(datasets, "load_dataset", stream)
    breaks.append(0)
    with pytest.raises(InputError, match=r"cannot be streamed from the HF hub \(ConnectionError: Connection reset"):
        data.prepare("wikipedia", str(tmp_path / "d"))
    assert not os.path.exists(tmp_path / "d" / "wikipedia")
    breaks.append(10)
    with pytest.raises(data.StoppedPartway, match=r"stream of wikimedia/wikipedia 20231101.en stopped after 10 "
                                                r"documents \(ConnectionError: .*\): run the same command again"):
        data.prepare("wikipedia", str(tmp_path / "d"))
    with open(tmp_path / "d" / "wikipedia" / "meta.json") as f:
        assert json.load(f)["docs"] == 8  # two chunks of 4 kept
    breaks.append(30)  # breaks again while it goes on
    with pytest.raises(data.StoppedPartway, match="stopped after 30 documents"):
        data.prepare("wikipedia", str(tmp_path / "d"))
    out = data.prepare("wikipedia", str(tmp_path / "d"))
    whole = data.prepare("wikipedia", str(tmp_path / "whole"))
    assert all(os.path.getsize(os.path.join(out, f"{split}.bin")) > 0 for split in ("train", "val"))
    assert_same_splits(out, whole)


def test_progress_in_a_log_file_is_whole_lines(tmp_path, monkeypatch, capsys):
    """Redrawn in place (\\r) on a terminal, progress would be one ever-growing line in the log of a run in the
    background: there it is a line a minute (here every chunk), and the summary its own line."""
    write_corpus(tmp_path / "corpus")
    monkeypatch.setattr(data, "CHUNK_DOCS", 4)
    clock = iter(range(0, 10**6, 61))  # a minute and a second between two looks at the clock
    monkeypatch.setattr(data.time, "time", lambda: next(clock))
    data.prepare(str(tmp_path / "corpus"), str(tmp_path / "d"))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if " docs" in line]
    assert "\r" not in err and len(lines) == 10  # 36 documents: 9 chunks, then the summary
    assert lines[0].startswith("  4 docs, ") and lines[-1].startswith("  36 docs: ")


def test_a_full_disk_while_preparing_keeps_the_chunks_and_the_same_command_goes_on(tmp_path, monkeypatch):
    """A write that fails (a full disk) after a chunk's tokens were appended and before meta was saved: one
    line, the folder kept; the same command drops the unsaved tail and ends with the files of an unbroken run."""
    write_corpus(tmp_path / "corpus")
    corpus = str(tmp_path / "corpus")
    monkeypatch.setattr(data, "CHUNK_DOCS", 4)
    real, calls = data.append_chunk, []

    def filling(*args):
        calls.append(1)
        real(*args)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
    monkeypatch.setattr(data, "append_chunk", filling)
    with pytest.raises(data.StoppedPartway, match=r"corpus cannot be written \(No space left on device\): mend the "
                                                  r"cause \(a full disk\?\), then run the same command again"):
        data.prepare(corpus, str(tmp_path / "d"))
    with open(tmp_path / "d" / "corpus" / "meta.json") as f:
        assert json.load(f)["docs"] == 8  # the third chunk's tokens were written, its meta not
    monkeypatch.setattr(data, "append_chunk", real)
    save_json = data.save_json

    def full_at_the_end(meta, path):  # the last save, the one that marks the corpus complete
        if meta["complete"]:
            raise OSError(28, "No space left on device")
        save_json(meta, path)
    monkeypatch.setattr(data, "save_json", full_at_the_end)
    with pytest.raises(data.StoppedPartway, match=r"corpus cannot be written \(No space left on device\)"):
        data.prepare(corpus, str(tmp_path / "d"))
    monkeypatch.setattr(data, "save_json", save_json)
    out, whole = data.prepare(corpus, str(tmp_path / "d")), data.prepare(corpus, str(tmp_path / "whole"))
    assert data.read_meta(out)["complete"]
    assert_same_splits(out, whole)


@pytest.mark.skipif(data.fcntl is None, reason="no advisory locks on this platform")
def test_a_second_process_waits_for_a_corpus_being_prepared_and_then_reuses_it(tmp_path):
    """Two runs started at once on an unprepared corpus: one prepares, the other waits (two writers would
    append every document twice)."""
    write_corpus(tmp_path / "corpus")
    corpus, d = str(tmp_path / "corpus"), str(tmp_path / "d")
    out = os.path.join(d, "corpus")
    with data.locked(out):  # this process is preparing it
        p = subprocess.Popen([sys.executable, os.path.join(ROOT, "data.py"), corpus, f"--data_dir={d}"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stderr.readline() == f"waiting for another process that is preparing {out}\n"
        assert not os.path.exists(d)
        data.prepare_once(corpus, out, data.N_RANKS)
        stamp = os.path.getmtime(os.path.join(out, "train.bin"))
    with p:  # closes its pipes
        assert p.wait(timeout=60) == 0 and p.stderr.read() == ""  # re-used, not prepared again
        assert p.stdout.read().startswith(f"{out}: 36 documents, ")
    assert os.path.getmtime(os.path.join(out, "train.bin")) == stamp


def test_packed_batches(tmp_path):
    tok = data.get_tokenizer()
    np.arange(1000, dtype=np.uint16).tofile(tmp_path / "x.bin")
    batches = data.PackedBatches(str(tmp_path / "x.bin"), 16, 8, 0.15, seed=0)
    b = batches.next()
    assert b["idx"].shape == (8, 16) and (b["idx"][:, 0] == tok.cls_id).all()
    assert ((b["idx"][:, 2:] - b["idx"][:, 1:-1]) == 1).all()  # contiguous windows of the stream
    # the same seed gives the same stream: the hybrid and the MLM baseline see the same data
    again = data.PackedBatches(str(tmp_path / "x.bin"), 16, 8, 0.15, seed=0).next()
    assert all(torch.equal(b[k], again[k]) for k in b)


def test_unknown_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither 'embedded', 'wikipedia' nor an existing path"):
        data.prepare(str(tmp_path / "nope"), str(tmp_path / "d"))


def test_an_empty_data_dir_is_refused_not_taken_for_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="^--data_dir='': name the folder"):
        data.prepare("embedded", "")
    assert os.listdir(tmp_path) == []


def test_an_edit_of_the_embedded_extractor_prepares_that_corpus_again(tmp_path, monkeypatch, capsys):
    """The embedded corpus is this Python's docstrings as data.embedded_docs picks them: a fork that edits the
    picking must not train on the corpus the old code made."""
    def docs():
        return (f"Document number {i} says something." for i in range(150))

    def other_docs():
        return (f"Document number {i} says something else." for i in range(150))
    monkeypatch.setattr(data, "embedded_docs", docs)
    out = data.prepare("embedded", str(tmp_path))
    assert data.prepare("embedded", str(tmp_path)) == out and "out of date" not in capsys.readouterr().err
    monkeypatch.setattr(data, "embedded_docs", other_docs)
    data.prepare("embedded", str(tmp_path))
    assert "is out of date (extractor changed): preparing it again" in capsys.readouterr().err
    tok = data.get_tokenizer()
    assert tok.encode(" else")[0] in np.fromfile(os.path.join(out, "train.bin"), dtype=np.uint16)


def test_unigram_line_by_hand(tmp_path):
    """Every val target is token 5, seen 300 times in 1,000 training tokens: the unigram cross-entropy is
    -log((300 + 1) / (1000 + n_normal)) with add-one smoothing over the text vocabulary, whichever positions
    the masking picks; the unused slots (K = ceil(0.15 x 64) = 10 slots, 9 of 63 text tokens picked) do not
    count."""
    tok = data.get_tokenizer()
    np.array([5] * 300 + [7] * 700, dtype=np.uint16).tofile(tmp_path / "train.bin")
    np.full(2000, 5, dtype=np.uint16).tofile(tmp_path / "val.bin")
    got = data.unigram_xent(str(tmp_path), 64, 4, 0.15, seed=0, n_batches=3)
    assert got == pytest.approx(-math.log(301 / (1000 + tok.n_normal)), rel=1e-9)


def test_the_unigram_line_of_a_large_corpus_reads_blocks_spread_over_all_of_it(tmp_path):
    """Past max_tokens the frequencies come from 100 blocks spread evenly over the train split, not from its
    start: a corpus whose first half is one token and second half another gives both about the same."""
    np.array([5] * 50_000 + [7] * 50_000, dtype=np.uint16).tofile(tmp_path / "train.bin")
    logp = data.unigram_logp(str(tmp_path), max_tokens=10_000)
    assert logp[5] == pytest.approx(logp[7], abs=0.05)


def test_a_run_says_how_often_it_reads_its_data_and_warns_of_a_val_split_too_small_to_measure_on(tmp_path):
    np.zeros(20_000, dtype=np.uint16).tofile(tmp_path / "train.bin")
    np.zeros(6_000, dtype=np.uint16).tofile(tmp_path / "val.bin")
    data.save_json({"val_every": 100}, str(tmp_path / "meta.json"))
    info, warning = data.split_lines(str(tmp_path), 50_000, 0.15)
    assert info == f"{tmp_path}: 20,000 train tokens (this run reads them 2.5 times), 6,000 val tokens"
    assert warning.startswith("WARNING: the val split holds 6,000 tokens, ~900 masked targets") and "100th" in warning
    assert data.split_lines(str(tmp_path), 50_000, 0.2)[1] is None  # 1,200 targets


def test_log_curves_and_last_val_read_the_log(tmp_path):
    (tmp_path / "log.jsonl").write_text('{"iter": 0, "mlm": 9.0, "jepa": 1.0, "lambda": 0.5}\n'
                                        '{"iter": 0, "val_mlm": 9.1}\n'
                                        '{"iter": 10, "mlm": 8.0, "jepa": 0.5, "lambda": 0.4}\n'
                                        '{"iter": 10, "val_mlm": 6.5, "val_unigram": 7.0}\n{"iter": 2')
    curves = data.log_curves(str(tmp_path), ("lambda", "val_mlm", "val_unigram", "tgt_rankme"))
    assert curves["lambda"] == ([0, 10], [0.5, 0.4])
    assert curves["val_mlm"] == ([0, 10], [9.1, 6.5])  # the line cut by a kill left out
    assert curves["val_unigram"] == ([10], [7.0])
    assert "tgt_rankme" not in curves  # no record holds it
    assert data.last_val(str(tmp_path)) == {"val_mlm": 6.5, "val_unigram": 7.0}
    (tmp_path / "mlm").mkdir()
    assert data.last_val(str(tmp_path / "mlm")) == {}  # no log
    assert data.log_curves(str(tmp_path / "mlm"), ("val_mlm",)) == {}
    (tmp_path / "log.jsonl").write_text('{"iter": 0, "mlm": 9.0}\n')
    assert data.log_curves(str(tmp_path), ("lambda",)) == {}


def test_a_prepared_corpus_follows_its_source(tmp_path, capsys):
    """meta.json records what a corpus was made from: an empty source is refused before anything is written,
    an edited one (even at the same size) is prepared again and says so, a copy elsewhere is re-used, and
    another corpus under the same name is refused rather than overwritten."""
    src, d = tmp_path / "my.txt", str(tmp_path / "data")
    src.write_text("")
    with pytest.raises(InputError, match="holds no documents"):
        data.prepare(str(src), d)
    assert not os.path.exists(d)
    src.write_text("\n\n".join(f"Document {i} is about topic {i}." for i in range(300)))
    out = data.prepare(str(src), d)
    stamp = os.path.getmtime(os.path.join(out, "train.bin"))
    assert data.prepare(str(src), d) == out and os.path.getmtime(os.path.join(out, "train.bin")) == stamp
    src.write_text(src.read_text().replace("topic 150.", "thing 150."))  # the same size, other text
    capsys.readouterr()
    data.prepare(str(src), d)
    assert "data/my.txt is out of date (my.txt changed): preparing it again" in capsys.readouterr().err
    train = np.fromfile(os.path.join(out, "train.bin"), dtype=np.uint16).tolist()
    assert "thing 150." in data.get_tokenizer().decode(train)
    copy = tmp_path / "copy" / "my.txt"
    copy.parent.mkdir()
    copy.write_bytes(src.read_bytes())
    stamp = os.path.getmtime(os.path.join(out, "train.bin"))
    assert data.prepare(str(copy), d) == out and os.path.getmtime(os.path.join(out, "train.bin")) == stamp
    copy.write_text("Another corpus.\n\nWith other text.")
    with pytest.raises(InputError, match="holds .*my.txt, not .*copy/my.txt: remove"):
        data.prepare(str(copy), d)


def test_a_prepared_folder_named_as_the_corpus_says_the_arguments_that_name_it(tmp_path):
    """data/my.txt-v8192 named as --dataset (it looks like the corpus): one line with the arguments that name
    it, and those arguments find it."""
    src = tmp_path / "my.txt"
    src.write_text("\n\n".join(f"Document {i} is about topic {i}." for i in range(300)))
    out = data.prepare(str(src), str(tmp_path / "data"), 8192)
    with pytest.raises(InputError, match=r"my.txt-v8192 is a corpus data.py prepared, not its source: name "
                                         r"it by --dataset=(\S+) --data_dir=(\S+) --vocab_ranks=8192$") as e:
        data.prepare(out, str(tmp_path / "other"))
    dataset, data_dir = re.search(r"--dataset=(\S+) --data_dir=(\S+)", str(e.value)).groups()
    assert data.prepare(dataset, data_dir, 8192) == out and not os.path.exists(tmp_path / "other")


def test_a_copy_of_a_prepared_corpus_cut_short_is_one_line_not_less_text(tmp_path):
    """data/NAME copied from a machine with network (the source not here): a split shorter than meta.json
    records, or a meta.json cut short, stops with one line, where training would take the shorter split."""
    src, d = tmp_path / "my.txt", str(tmp_path / "data")
    src.write_text("\n\n".join(f"Document {i} is about topic {i}." for i in range(300)))
    out = data.prepare(str(src), d)
    os.remove(src)
    assert data.prepare(str(src), d) == out  # a whole copy is used as it is
    train, meta = os.path.join(out, "train.bin"), os.path.join(out, "meta.json")
    whole = os.path.getsize(train)
    os.truncate(train, whole - 3)
    with pytest.raises(InputError, match=rf"train.bin is {whole - 3:,} bytes where .*meta.json records "
                                         rf"{whole // 2:,} tokens \({whole:,} bytes\): copy .* again"):
        data.prepare(str(src), d)
    os.truncate(meta, 20)
    with pytest.raises(InputError, match=r"meta.json cannot be read \(.*\): copy .* again, or remove it to "
                                         r"prepare it again$"):
        data.prepare(str(src), d)


def test_a_corpus_too_small_for_both_splits_is_refused_and_left_nowhere(tmp_path):
    (tmp_path / "one.txt").write_text("A single document of text.\n")  # it is held out: no train text
    with pytest.raises(InputError, match="1 document gives 0 train and .* more than 100 documents with text "
                                         r"\(a .txt ends a document at a blank line"):
        data.prepare(str(tmp_path / "one.txt"), str(tmp_path / "d"))
    assert os.listdir(tmp_path / "d") == []
    rows = [{"text": "" if i % 100 == 0 else f"Document number {i} holds a sentence."} for i in range(150)]
    (tmp_path / "blank_val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match="150 documents give .* train and 2 val tokens; every 100th"):
        data.prepare(str(tmp_path / "blank_val.jsonl"), str(tmp_path / "d"))  # the val split: two [SEP]s


BAD_FILES = [  # (file name, content, the start of the one line it gives)
    ("latin.txt", b"A good line.\n\nThen caf\xe9 au lait.\n", r"latin.txt:3: not UTF-8 text"),
    ("broken.jsonl", b'{"text": "fine"}\n{"text": "cut\n', r"broken.jsonl:2: not a JSON object"),
    ("other.jsonl", b'{"content": "a", "id": 1}\n', r'other.jsonl:1: no string "text" field \(the line has keys '
                                                    r"content, id\)"),
    ("null.jsonl", b'{"text": "fine"}\n{"text": null}\n',
     r'null.jsonl:2: no string "text" field \(the line has "text": null\)'),
    ("fake.txt.gz", b"plain text, not gzip\n", r"fake.txt.gz: cannot be read as .txt.gz"),
    ("fake.arrow", b"<html>rate limited</html>", r"fake.arrow: cannot be read as .arrow"),
    ("fake.parquet", b"<html>rate limited</html>", r"fake.parquet: cannot be read as .parquet"),
    ("notes.csv", b"a,b\n", r"no corpus files under .*only-csv \(\.txt/\.jsonl/\.parquet/\.arrow files"),
]


@pytest.mark.parametrize("name,content,line", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_bad_source_file_is_one_line_and_leaves_nothing(name, content, line, tmp_path, monkeypatch):
    """A folder with a good file first and the bad one after it: the bad one is found after chunks of the
    good one were written; the error names the file (and line), and nothing is left to be taken for a corpus."""
    monkeypatch.setattr(data, "CHUNK_DOCS", 4)
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    (corpus / f"z-{name}").write_bytes(content)
    if name.endswith(".csv"):
        corpus = tmp_path / "only-csv"
        corpus.mkdir()
        (corpus / name).write_bytes(content)
    with pytest.raises(InputError, match=line) as e:
        data.prepare(str(corpus), str(tmp_path / "d"))
    assert "\n" not in str(e.value) and not os.path.exists(tmp_path / "d" / corpus.name)
    os.remove(corpus / (name if name.endswith(".csv") else f"z-{name}"))
    if not name.endswith(".csv"):  # fixed, the next run prepares from scratch
        assert data.prepare(str(corpus), str(tmp_path / "d")) == str(tmp_path / "d" / "corpus")


def test_data_cli_bad_input_is_one_line_with_exit_code_2(tmp_path):
    (tmp_path / "other.jsonl").write_text('{"body": "x"}\n')
    p = subprocess.run([sys.executable, os.path.join(ROOT, "data.py"), "other.jsonl"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.splitlines() == [
        'error: other.jsonl:1: no string "text" field (the line has keys body): name the field that holds the text '
        'with --text_column=NAME, or write each document as {"text": ...}']
    assert not os.path.exists(tmp_path / "data" / "other.jsonl")
