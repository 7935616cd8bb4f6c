"""The window length has one owner: dpda.audio.crop's constants (the model registry and cards refer to them)."""

from __future__ import annotations

import tokenize
from pathlib import Path


def test_no_bare_window_length_outside_its_owner():
    """64600 / 66800 appear as numbers only in dpda.audio.crop (prose may name them; code uses the constants)."""
    src = Path(__file__).resolve().parents[1] / "src" / "dpda"
    found = []
    for path in sorted(src.rglob("*.py")):
        if path == src / "audio" / "crop.py":
            continue
        with open(path, encoding="utf-8") as f:
            for tok in tokenize.generate_tokens(f.readline):
                if tok.type == tokenize.NUMBER and tok.string in ("64600", "66800"):
                    found.append(f"{path.relative_to(src)}:{tok.start[0]}: {tok.line.strip()}")
    assert not found, "\n".join(found)
