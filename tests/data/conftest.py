"""Shared fixtures of the corpus-protocol tests: fixture files and tiny audio."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    """Folder of the protocol fixture files."""
    return FIXTURES


def _write_audio(path: Path, seconds: float = 0.05, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    data = (0.1 * rng.standard_normal(int(seconds * sr))).astype("float32")
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}[path.suffix.lower()]
    sf.write(str(path), data, sr, format=fmt)
    return path


@pytest.fixture
def write_audio() -> Callable[..., Path]:
    """``write_audio(path)`` writes a 50 ms noise clip (wav, flac or ogg by suffix)."""
    return _write_audio
