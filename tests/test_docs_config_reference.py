"""docs/training.md's configuration reference is the one generated from the typed schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import pytest

from dpda.config import reference_table, replace_generated, schema_keys
from dpda.train.config import RunConfig, config_reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "training.md"


def test_training_md_holds_the_generated_reference():
    text = DOC.read_text(encoding="utf-8")
    assert replace_generated(text, "config reference", config_reference()) == text, (
        "docs/training.md's configuration reference disagrees with dpda.train.config: "
        "run python docs/config_reference.py")


def test_every_key_is_in_the_reference_with_its_default():
    table = config_reference()
    for key, _, f, _ in schema_keys(RunConfig):
        assert f"| `{key}` |" in table, key
    assert "| `data.sample_rate` | int | `16000` | Hz |" in table
    assert "| `data.crop_samples` | int | `64600` | samples |" in table


@dataclass
class _Inner:
    b: int = 3


@dataclass
class _Toy:
    a: float = 0.5
    inner: _Inner = field(default_factory=_Inner)
    maybe: Optional[_Inner] = None
    extra: Dict[str, int] = field(default_factory=dict)


def test_a_key_without_a_description_or_a_stale_description_fails():
    docs = {"_Toy.a": ("s", "a"), "_Inner.b": ("", "b"), "_Toy.maybe": ("", "m"), "_Toy.extra": ("", "e")}
    table = reference_table(_Toy, docs)
    assert [r.split("|")[1].strip() for r in table.splitlines()[2:]] == ["`a`", "`inner.b`", "`maybe`", "`maybe.b`",
                                                                          "`extra`"]
    with pytest.raises(KeyError, match="without a description: \\['_Toy.extra'\\]"):
        reference_table(_Toy, {k: v for k, v in docs.items() if k != "_Toy.extra"})
    with pytest.raises(KeyError, match="descriptions of no key: \\['_Toy.gone'\\]"):
        reference_table(_Toy, {**docs, "_Toy.gone": ("", "")})
