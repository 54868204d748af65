"""The README's commands run as written: every script and config file a fenced command names exists, and
every key it sets is a setting of that script."""

import os
import pathlib
import re
import shlex

from conftest import ROOT, script_settings


def readme_commands():
    text = pathlib.Path(ROOT, "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line.startswith(("python", "torchrun"))]


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
