"""
nanoGPT's "poor man's configurator", as a function. A script keeps its settings as plain globals and calls

    args = configure(globals(), sys.argv[1:])

Arguments ending in .py are config files, executed in order over those globals; --key=value overrides one
setting (the value is read as a Python literal, else kept as a string); anything else is returned as a
positional argument. An unknown key or a value of the wrong type stops with one line that says what to do.
"""

import ast
import difflib
import sys


def die(message):
    """Bad input: one line on stderr, exit code 2 (the shell's convention for a usage error)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def settings(g):
    """The settable globals of a script: plain values, not modules, functions or private names."""
    return {k: v for k, v in g.items()
            if not k.startswith("_") and isinstance(v, (int, float, bool, str, tuple, list, type(None)))}


def unknown_key(key, known, where=""):
    close = difflib.get_close_matches(key, known, n=1) or \
        [k for k in known if "".join(w[0] for w in k.split("_")) == key]  # 'lr' -> 'learning_rate'
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(sorted(known))}"
    die(f"unknown config key '{key}'{where}: {hint}")


def configure(g, argv):
    known = settings(g)
    positional = []
    for arg in argv:
        if arg.endswith(".py") and not arg.startswith("--"):
            try:
                with open(arg) as f:
                    source = f.read()
            except OSError:
                die(f"config file {arg} not found (see config/ for the ones that exist)")
            scope = dict(g)
            exec(source, scope)
            for key, value in scope.items():
                if key.startswith("_") or key == "__builtins__" or (key in g and value is g[key]):
                    continue
                if key not in known:
                    unknown_key(key, known, f" in {arg}")
                g[key] = value
        elif arg.startswith("--"):
            key, sep, val = arg[2:].partition("=")
            if not sep:
                die(f"write --{key}=VALUE (with '=')")
            if key not in known:
                unknown_key(key, known)
            try:
                value = ast.literal_eval(val)
            except (SyntaxError, ValueError):
                value = val
            default = g[key]
            if default is not None and not isinstance(value, type(default)):
                if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                    value = float(value)
                else:
                    die(f"--{key} expects a {type(default).__name__} (like {default!r}), got {val!r}")
            g[key] = value
        else:
            positional.append(arg)
    return positional
