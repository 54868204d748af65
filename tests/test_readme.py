"""The README's commands run as written: every script and config file a fenced command names exists, and
every key it sets is a setting of that script."""

import ast
import os
import re
import shlex

from conftest import ROOT


def readme_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line.startswith(("python", "torchrun"))]


def script_settings(script):
    """The names a script's --key=value can set, found without running it: what its top level (and its
    __main__ block) assigns or imports by name, as configurator.settings() reads them, CONSTANTS aside."""
    tree = ast.parse(open(os.path.join(ROOT, script)).read())
    body = list(tree.body) + [n for top in tree.body if isinstance(top, ast.If) for n in top.body]
    names = {t.id for n in body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    names |= {a.asname or a.name for n in body if isinstance(n, ast.ImportFrom) for a in n.names}
    return {n for n in names if not n.startswith("_") and not n.isupper()}


def test_every_readme_command_names_files_and_settings_that_exist():
    commands = readme_commands()
    assert len(commands) >= 8
    for words in commands:
        scripts = [w for w in words if w.endswith(".py") and not w.startswith(("-", "config/"))]
        if words[:3] == ["python", "-m", "pytest"]:
            assert os.path.isdir(os.path.join(ROOT, words[-1]))
            continue
        assert scripts and os.path.exists(os.path.join(ROOT, scripts[0])), words
        for w in words:
            if w.startswith("config/"):
                assert os.path.exists(os.path.join(ROOT, w)), w
            if w.startswith("--") and "=" in w and not w.startswith(("--standalone", "--nproc_per_node")):
                key = w[2:].split("=")[0]
                assert key in script_settings(scripts[0]), (scripts[0], key)
