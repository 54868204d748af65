"""
nanoGPT's "poor man's configurator", as a function. A script keeps its settings as plain globals and calls

    args = configure(globals(), sys.argv[1:])

Arguments ending in .py are config files, executed in order over those globals; --key=value overrides one
setting (the value is read as a Python literal, else kept as a string); anything else is returned as a
positional argument. An unknown key or a value of the wrong type stops with one line that says what to do.
--help (or -h) prints the script's docstring and the lines of its source that set its settings, then the
values that the config files and overrides beside it change.

Bad input has one convention in every script: library code raises InputError (a ValueError; MissingInput is
also a FileNotFoundError), so a caller of the API can catch it, and configure() installs the hook that turns
an uncaught one into one line on stderr and exit code 2. A Ctrl-C outside training (train.py saves and
exits itself) is one line and exit code 130, the shell's code for SIGINT.
"""

import ast
import difflib
import glob
import os
import sys
import textwrap
import traceback
from contextlib import contextmanager


class InputError(ValueError):
    """Bad input: a setting, a file, a corpus. The message says what is wrong and what to do, in one line."""


class MissingInput(InputError, FileNotFoundError):
    """A file or folder the input names that is not there."""


def die(message):
    """Bad input: one line on stderr, exit code 2 (the shell's convention for a usage error)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def one_line_errors(kind, value, tb):
    """sys.excepthook of the scripts: InputError and Ctrl-C as one line, anything else as a traceback
    (a bug). Exits at once: the interpreter would give an uncaught exception exit code 1."""
    if not issubclass(kind, (InputError, KeyboardInterrupt)):
        return sys.__excepthook__(kind, value, tb)
    interrupted = issubclass(kind, KeyboardInterrupt)
    print("interrupted: run the same command again to go on where it stopped (prepared chunks and the "
          "analysis cache are kept)" if interrupted else f"error: {value}", file=sys.stderr)
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(130 if interrupted else 2)


def whole_number(key, value, lo, why=""):
    """The setting --key=value as a whole number >= lo, or one line that says so (why: the reason for lo).
    A bool is refused: True is an int to Python, and --max_iters=True would run one step."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise InputError(f"--{key}={value!r}: must be a whole number >= {lo}{why}")


def writable(folder, keep=True):
    """Create folder and a file in it, or raise OSError: where a run writes is checked before its work.
    keep=False removes the folders it made again, so a start refused later (bad data) leaves no trace."""
    made, head = [], os.path.abspath(folder)
    while not os.path.lexists(head):  # the missing levels, deepest first
        made.append(head)
        head = os.path.dirname(head)
    try:
        os.makedirs(folder, exist_ok=True)
        open(os.path.join(folder, ".writable"), "w", encoding="utf-8").close()
        os.remove(os.path.join(folder, ".writable"))
    finally:
        for d in made if not keep else []:
            if os.path.isdir(d):
                os.rmdir(d)


def write_failed(what, e, then):
    """The one line of a write that failed (a full disk: an OSError, or torch.save's RuntimeError): what could
    not be written, why, and what to do once the cause is mended."""
    return f"{what} ({getattr(e, 'strerror', None) or e}): mend the cause (a full disk?), then {then}"


@contextmanager
def atomic_file(path, mode="wb", tmp=""):
    """A file to write at path, written under a temporary name (tmp, default path + '.tmp') and renamed when the
    block ends: a kill leaves the old file or the new one, never half of one. A write or rename that fails (a
    full disk) removes the part written, which holds the space a next try needs."""
    tmp = tmp or path + ".tmp"
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        if os.path.isfile(tmp):
            os.remove(tmp)
        raise


def clock(seconds):
    """A duration as every script's progress lines print it: 1h23m, 4m05s or 12s."""
    s = round(seconds)
    h, m = divmod(s // 60, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s % 60:02d}s" if m else f"{s}s"


def settings(g):
    """The settable globals of a script: plain values, not modules, functions, lists (train.py's config_keys),
    private names or CONSTANTS."""
    return {k: v for k, v in g.items() if not k.startswith("_") and not k.isupper()
            and isinstance(v, (int, float, bool, str, type(None)))}


def unknown_key(key, known, where=""):
    close = difflib.get_close_matches(key, known, n=1) or \
        [k for k in known if "".join(w[0] for w in k.split("_")) == key]  # 'lr' -> 'learning_rate'
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(sorted(known))}"
    die(f"unknown config key '{key}'{where}: {hint}")


def no_value(key, default, following):
    """--key without '=VALUE': one line with the argument it was meant to be (argparse's --max_iters 100, or
    a flag's --compile)."""
    if following is not None and not following.startswith("-"):
        value = following
    else:
        value = "True" if isinstance(default, bool) else "VALUE"
    die(f"write --{key}={value} (one argument, with '=')")


def run_config_file(path, scope):
    """exec a config file; a syntax error or an exception in it is one line naming the file and line."""
    try:
        with open(path, encoding="utf-8") as f:
            code = compile(f.read(), path, "exec")
    except OSError:
        repo = os.path.dirname(os.path.abspath(__file__))
        if os.path.exists(ours := os.path.join(repo, path)):
            die(f"config file {path} not found in {os.getcwd()}: run from the repository, or name {ours}")
        stems = sorted(os.path.basename(f)[:-3] for f in glob.glob(os.path.join(repo, "config", "*.py")))
        close = difflib.get_close_matches(os.path.basename(path).removesuffix(".py"), stems, n=1)  # tiny.py
        die(f"config file {path} not found" + (f": did you mean config/{close[0]}.py?" if close else
                                              " (see config/ for the ones that exist)"))
    except SyntaxError as e:
        die(f"{path}:{e.lineno}: {e.msg}")
    try:
        exec(code, scope)
    except Exception as e:
        line = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == path][-1]
        die(f"{path}:{line}: {type(e).__name__}: {e}")


def setting_statements(source, keys):
    """The statements of a script's source that set keys before it calls configure() (at its top, or in its
    __main__ block), as (ast node, the keys it sets)."""
    body = []
    for node in ast.parse(source).body:
        main = isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)
        body += node.body if main else [node]
    found = []
    for node in body:
        if "configure(" in ast.unparse(node):
            break
        if isinstance(node, ast.Assign):
            names = {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.ImportFrom):
            names = {a.asname or a.name for a in node.names}
        else:
            continue
        if names & keys:
            found.append((node, names & keys))
    return found


def usage(g):
    """--help: the script's docstring, then the lines of its source that set its settings, comments and all
    (settings imported from another script of the repository: that script's lines for them)."""
    text, path = (g.get("__doc__") or "").strip(), g.get("__file__")
    if not path:
        return text
    with open(path, encoding="utf-8") as f:
        source = f.read()
    if not (found := setting_statements(source, set(settings(g)))):
        return text
    lines = source.splitlines()
    first, last = found[0][0].lineno - 1, found[-1][0].end_lineno
    while first > 0 and lines[first - 1].lstrip().startswith("#") and not lines[first - 1].startswith("# ---"):
        first -= 1  # the comments that introduce the block
    block = [textwrap.dedent("\n".join(lines[first:last]))]
    for node, names in found:
        module = isinstance(node, ast.ImportFrom) and os.path.join(os.path.dirname(path), f"{node.module}.py")
        if module and os.path.exists(module):
            with open(module, encoding="utf-8") as f:
                theirs = f.read()
            their_lines = theirs.splitlines()
            block.append(f"# {node.module}.py's:")
            block += [line for n, _ in setting_statements(theirs, names)
                      for line in their_lines[n.lineno - 1:n.end_lineno]]
    return f"{text}\n\nsettings (config files *.py, then --key=value, override them):\n" + "\n".join(block)


def apply_arguments(g, argv):
    """Run argv's config files and --key=value overrides over g, in order; return the other arguments."""
    known = settings(g)
    positional = []
    for i, arg in enumerate(argv):
        if arg.endswith(".py") and not arg.startswith("--"):
            scope = dict(g)
            run_config_file(arg, scope)
            for key, value in scope.items():
                if key.startswith("_") or key == "__builtins__" or (key in g and value is g[key]):
                    continue
                if key not in known:
                    unknown_key(key, known, f" in {arg}")
                g[key] = value
        elif arg.startswith("--"):
            key, sep, val = arg[2:].partition("=")
            if key not in known:
                unknown_key(key, known)
            if not sep:
                no_value(key, known[key], argv[i + 1] if i + 1 < len(argv) else None)
            try:
                value = ast.literal_eval(val)
            except (SyntaxError, ValueError):
                value = val
            default = g[key]
            if default is not None and not isinstance(value, type(default)):
                if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                    value = float(value)
                else:
                    kind = type(default).__name__
                    die(f"--{key} expects a{'n' if kind[0] in 'aeiou' else ''} {kind} (like {default!r}), got {val!r}")
            g[key] = value
        else:
            positional.append(arg)
    return positional


def changed_settings(before, g, argv):
    """--help's last lines: the settings that argv's config files and overrides change, beside their defaults,
    so that `python train.py config/hybrid.py config/tiny.py --help` shows the values that run would take."""
    after = settings(g)
    changed = [f"{k} = {after[k]!r}  # default {v!r}" for k, v in before.items()
               if after[k] != v or type(after[k]) is not type(v)]
    return f"\nthe values after {' '.join(argv)}:\n" + "\n".join(changed) if changed else ""


def configure(g, argv):
    """A script's settings from argv (config files, then --key=value) into its globals g; --help prints
    them."""
    sys.excepthook = one_line_errors
    for stream in (sys.stdout, sys.stderr):  # a console that cannot show λ prints \u03bb, and the run goes on
        getattr(stream, "reconfigure", lambda **_: None)(errors="backslashreplace")
    if "--help" not in argv and "-h" not in argv:
        return apply_arguments(g, argv)
    print(usage(g), flush=True)  # first: help is printed even where the arguments beside it are bad
    argv = [a for a in argv if a not in ("--help", "-h")]
    before = settings(g)
    positional = apply_arguments(g, argv)
    if text := changed_settings(before, g, [a for a in argv if a not in positional]):
        print(text)
    raise SystemExit(0)
