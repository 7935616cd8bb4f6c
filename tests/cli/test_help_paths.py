"""Every file that a command's help names exists in the repository (issue 11 item 15)."""

from __future__ import annotations

import re

from dpda.cli.main import build_parser
from tests.conftest import REPO_ROOT

PATH = re.compile(r"\b((?:docs|configs|bench|examples)/[\w./-]+\.(?:md|yaml|py|csv|txt))")


def _help_texts():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        yield name, p.format_help()


def test_files_named_in_help_exist():
    named = {}
    for command, text in _help_texts():
        for path in PATH.findall(text.replace("\n", " ")):
            named.setdefault(path, command)
    assert "docs/training.md" in named and "configs/augment.yaml" in named
    missing = {p: c for p, c in named.items() if not (REPO_ROOT / p).exists()}
    assert not missing, f"help texts name files that do not exist: {missing}"
