"""Small file helpers: atomic writes (an interrupted job never leaves a half-written file), finding audio files."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, List, Sequence

from dpda.errors import PathLike


def current_umask() -> int:
    """The process's file-creation mask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read it by setting it, then put it back at once
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it over ``path`` on success.

    The result gets the permissions of a plain ``open(path, "w")``: ``0o666``
    less the umask (``mkstemp`` would leave the private ``0o600``). On an
    exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write UTF-8 text to ``path`` atomically (flushed and fsynced before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


#: audio file extensions found in folders (lower case)
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")


def scan_audio(directory: PathLike, extensions: Sequence[str] = AUDIO_EXTENSIONS, *, joined: bool = False) -> List[str]:
    """Sorted paths of the audio files below ``directory``: POSIX paths relative to it, or joined to it.

    ``extensions``: lower-case suffixes to keep (compared case-insensitively).
    Follows symbolic links to folders (each real folder visited once); hidden
    files and folders (``.name``) are skipped. Uses ``os.scandir``, so
    hundreds of thousands of files list quickly.
    """
    wanted = tuple(e.lower() for e in extensions)
    found: List[str] = []
    seen = set()
    stack = [("", str(directory))]
    while stack:
        prefix, folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                rel = prefix + entry.name
                if entry.is_dir():
                    stack.append((rel + "/", entry.path))
                elif os.path.splitext(entry.name)[1].lower() in wanted and entry.is_file():
                    found.append(rel)
    found.sort()
    return [os.path.join(str(directory), rel) for rel in found] if joined else found
