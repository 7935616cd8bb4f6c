"""Resumable score files: the ``.partial`` file ``dpda score`` appends to, and the final score file.

A partial file starts with a header line naming the scoring setup
(``# dpda score partial: model=... mode=... crop=... hop=... sr=... amp=...``),
then holds one ``UTT_ID SCORE`` line per scored utterance, in the order they
were scored. The final file holds the same lines in protocol order, written
atomically. Scores are written with :data:`SCORE_FORMAT` (9 significant
digits: a float32 round-trips exactly).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Dict, Optional, Sequence, Set, TextIO

import numpy as np

from dpda.fileio import atomic_path
from dpda.inference.errors import ScoringError

#: score format in score files: 9 significant digits round-trip a float32 exactly
SCORE_FORMAT = "{:.9g}"

PARTIAL_SUFFIX = ".partial"
ERRORS_SUFFIX = ".errors"
_HEADER_PREFIX = "# dpda score partial:"


def write_header(f: TextIO, setup: str) -> None:
    """Start an empty partial file with the line naming its scoring setup."""
    f.write(f"{_HEADER_PREFIX} {setup}\n")
    f.flush()


def read_partial(partial: Path, known: Dict[str, int], setup: Optional[str] = None) -> Set[str]:
    """Ids already scored in a partial score file; repairs its tail in place.

    A last line without a newline (the write was interrupted) is cut off, so
    that utterance is scored again. A header naming a different scoring setup,
    a malformed complete line, an id outside the manifest or an id scored
    twice raise :class:`ScoringError` (delete the partial file to start over).
    """
    done: Set[str] = set()
    if not partial.exists():
        return done
    hint = f"; delete {partial} to score from scratch"
    complete_bytes = 0
    cut_short = False
    with open(partial, "rb") as f:  # streamed: memory stays O(1) besides the id set
        for no, raw_bytes in enumerate(f, start=1):
            if not raw_bytes.endswith(b"\n"):
                cut_short = True  # the last write was interrupted: drop it, that utterance is rescored
                break
            complete_bytes += len(raw_bytes)
            raw = raw_bytes.decode("utf-8", errors="replace").rstrip("\r\n")
            line = raw.strip()
            if not line:
                continue
            if line.startswith("#"):
                if line.startswith(_HEADER_PREFIX) and setup is not None:
                    previous = line[len(_HEADER_PREFIX) :].strip()
                    if previous != setup:
                        raise ScoringError(
                            f"{partial} was written by a different scoring setup ({previous}), "
                            f"not this one ({setup}); re-run with the same model and options to resume" + hint
                        )
                continue
            fields = line.split()
            try:
                value = float(fields[1]) if len(fields) == 2 else float("nan")
            except ValueError:
                value = float("nan")
            if not math.isfinite(value):
                raise ScoringError(f"{partial}:{no}: expected 'UTT_ID SCORE', got {raw!r}" + hint)
            if fields[0] not in known:
                raise ScoringError(f"{partial}:{no}: utterance {fields[0]} is not in the protocol being scored" + hint)
            if fields[0] in done:
                raise ScoringError(f"{partial}:{no}: utterance {fields[0]} is scored twice" + hint)
            done.add(fields[0])
    if cut_short:
        with open(partial, "r+b") as f:
            f.truncate(complete_bytes)
            f.flush()
            os.fsync(f.fileno())
    return done


def finalise(partial: Path, out: Path, ids: Sequence[str], index: Dict[str, int]) -> int:
    """Write the partial file's scores to ``out`` atomically, in manifest order; return the count."""
    scores = np.zeros(len(ids), dtype=np.float64)
    have = np.zeros(len(ids), dtype=bool)
    with open(partial, "r", encoding="utf-8") as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            utt, value = line.split()
            i = index[utt]
            scores[i] = float(value)
            have[i] = True
    with atomic_path(out) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for i in np.flatnonzero(have):
                f.write(f"{ids[i]} {SCORE_FORMAT.format(scores[i])}\n")
            f.flush()
            os.fsync(f.fileno())
    return int(have.sum())


__all__ = ["SCORE_FORMAT", "PARTIAL_SUFFIX", "ERRORS_SUFFIX", "read_partial", "write_header", "finalise"]
