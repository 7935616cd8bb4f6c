"""A self-overwriting progress line for long jobs on a terminal (``dpda score``, ``dpda detect``).

Nothing is drawn when the stream is not a terminal, so logs and pipes stay clean.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """A single, self-overwriting progress line on a terminal (nothing when disabled or off a terminal).

    The line reads ``LABEL DONE/TOTAL[ ITEMS] (PCT%)  RATE UNIT/s  ETA H:MM:SS``,
    e.g. ``scored 120/1200 (10.0%)  35.2 utt/s  ETA 0:31``.
    """

    def __init__(
        self,
        total: int,
        enabled: bool = True,
        stream: Optional[TextIO] = None,
        every: float = 0.5,
        *,
        label: str = "scored",
        items: str = "",
        unit: str = "utt",
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(enabled) and bool(isatty and isatty())
        self.total = int(total)
        self.done = 0
        self.errors = 0
        self.start = time.monotonic()
        self.every = every
        self._last = 0.0
        self._width = 0
        self.label = label
        self.items = f" {items}" if items else ""
        self.unit = unit

    def update(self, n: int = 1, errors: int = 0) -> None:
        self.done += n
        self.errors += errors
        if self.enabled and (time.monotonic() - self._last >= self.every or self.done >= self.total):
            self._draw()

    def _draw(self) -> None:
        self._last = time.monotonic()
        elapsed = self._last - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = _clock((self.total - self.done) / rate) if rate > 0 else "?"
        text = f"{self.label} {self.done}/{self.total}{self.items} ({pct:.1f}%)  {rate:.1f} {self.unit}/s  ETA {eta}"
        if self.errors:
            text += f"  errors {self.errors}"
        pad = " " * max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + pad)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._width:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()


__all__ = ["Progress"]
