"""Atomic writes leave files with the permissions any other tool would give them."""

from __future__ import annotations

import os
import stat

import pytest

from dpda.fileio import atomic_path, atomic_write_text, current_umask


@pytest.fixture
def umask():
    """Set a umask for the test and restore the caller's afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    assert current_umask() == mask
    atomic_write_text(tmp_path / "a.txt", "x")
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"y")
    for name in ("a.txt", "b.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin"]


def test_scan_audio_one_walker_for_corpora_and_noise_folders(tmp_path):
    from dpda.fileio import scan_audio

    for rel in ("b/x.WAV", "a.flac", "c.mp3", ".hidden.wav", ".cache/y.wav", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)  # each real folder once
    assert scan_audio(tmp_path) == ["a.flac", "b/x.WAV", "c.mp3"]
    assert scan_audio(tmp_path, (".wav", ".flac"), joined=True) == [str(tmp_path / "a.flac"), str(tmp_path / "b/x.WAV")]
