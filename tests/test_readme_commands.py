"""Every command the README shows exists as written: each ``python infer.py ...`` line parses
with the real parser (a renamed command or flag fails here), each ``train.py`` config and
``prepare`` corpus kind named exists, and each Python import it shows resolves. The docs
under docs/ are held to the same for the module paths they name."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

from codecgen.cli.parser import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _shell_lines(text: str) -> list[str]:
    """Commands in ```bash blocks, continuation lines joined, comments dropped."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("  #")[0].split(" # ")[0].strip()
            if command:
                lines.append(command)
    return lines


def _without_optional_parts(command: str) -> str:
    return re.sub(r"\[[^\]]*\]", "", command)  # "[--n-q 2]" marks an optional flag


INFER = [c for c in _shell_lines(README) if c.startswith("python infer.py")]
TRAIN = [c for c in _shell_lines(README) if c.startswith("python train.py")]


def test_the_readme_shows_commands():
    assert len(INFER) >= 10 and len(TRAIN) >= 5


@pytest.mark.parametrize("command", INFER)
def test_each_infer_command_parses(command):
    words = shlex.split(_without_optional_parts(command))[2:]
    build_parser().parse_args(words)  # SystemExit (exit 2) on an unknown command or flag


@pytest.mark.parametrize("command", TRAIN)
def test_each_train_command_names_a_config_that_exists(command):
    configs = re.findall(r"--config (\S+)", command)
    assert configs, command
    for config in configs:
        assert (ROOT / config).is_file(), config


def test_corpus_kinds_and_scripts_named_exist():
    from codecgen.datamodules import prepare

    for kind in re.findall(r"python -m codecgen\.datamodules\.prepare (\w+)", README):
        with pytest.raises(SystemExit) as exit_:
            prepare.main([kind, "--help"])
        assert exit_.value.code == 0, kind
    for script in re.findall(r"(scripts/\S+\.(?:py|sh)|benchmarks/\S+\.py)", README):
        assert (ROOT / script).is_file(), script


def test_python_names_in_readme_and_docs_resolve():
    texts = [README] + [p.read_text() for p in (ROOT / "docs").glob("*.md")]
    imports = set()
    for text in texts:
        imports |= set(re.findall(r"from (codecgen[\w.]*) import ([\w, ]+)", text))
    assert imports
    for module, names in imports:
        loaded = importlib.import_module(module)
        for name in (n.strip() for n in names.split(",")):
            assert hasattr(loaded, name), f"{module}.{name}"
    for path in set(re.findall(r"`(codecgen/[\w/]+\.py)`", "\n".join(texts))):
        assert (ROOT / path).is_file(), path
