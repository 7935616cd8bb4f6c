"""Input windows and window batching: NumPy only, no torch (usable with any runtime).

Input windows (``mode``)
    ``"fixed"``: the first ``crop_samples`` samples, a shorter utterance
    repeat-padded (tiled) to that length (:func:`dpda.audio.pad_or_crop`):
    what AASIST and the DPDA paper do, and the default of ``dpda score`` so
    that results are comparable with published numbers.
    ``"full"``: :func:`dpda.audio.sliding_windows` of ``crop_samples`` with
    hop ``hop`` (default ``crop_samples``, no overlap, plus one window aligned
    to the end) covering the whole utterance; the utterance score is the
    MEAN of ``logit[:, 1]`` over its windows. The default of ``dpda detect``,
    which takes files of any length.

Batching (:func:`score_windows`)
    Windows of consecutive utterances are packed into batches of
    ``batch_size`` windows (an utterance's windows may straddle two batches),
    so memory is O(batch_size + one utterance) and the composition of the
    batches depends only on the order of the utterances. The model is any
    ``forward(batch) -> scores`` callable: ``(B, crop_samples)`` float32 in,
    ``(B,)`` scores out (:meth:`dpda.inference.Scorer.forward` for torch, or
    an ONNX session wrapped the same way).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from dpda.audio.crop import pad_or_crop, sliding_windows

MODES = ("fixed", "full")

#: a model on windows: ``(B, crop_samples)`` float32 -> ``(B,)`` scores
Forward = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class WindowSpec:
    """How a waveform becomes model inputs: picklable, so DataLoader workers can do it."""

    crop_samples: int
    mode: str = "fixed"
    hop: Optional[int] = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if int(self.crop_samples) <= 0:
            raise ValueError(f"crop_samples must be positive, got {self.crop_samples}")
        if self.hop is not None and int(self.hop) <= 0:
            raise ValueError(f"hop must be a positive number of samples, got {self.hop}")

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        """``(T,)`` float32 samples -> ``(num_windows, crop_samples)`` float32 windows."""
        x = np.asarray(waveform, dtype=np.float32)
        if self.mode == "fixed":
            return pad_or_crop(x, int(self.crop_samples), mode="repeat")[None, :]
        return sliding_windows(x, int(self.crop_samples), None if self.hop is None else int(self.hop))


class _Pending:
    __slots__ = ("key", "windows", "next_row", "total")

    def __init__(self, key: Any, windows: np.ndarray) -> None:
        self.key = key
        self.windows = windows
        self.next_row = 0
        self.total = 0.0


def _run_batch(forward: Forward, pending: Deque[_Pending], n: int,
               on_batch: Optional[Callable[[int], None]] = None) -> None:
    rows: List[np.ndarray] = []
    owners: List[Tuple[_Pending, int]] = []
    need = n
    for item in pending:
        if need == 0:
            break
        left = item.windows.shape[0] - item.next_row
        if left <= 0:
            continue
        take = min(left, need)
        rows.append(item.windows[item.next_row : item.next_row + take])
        owners.append((item, take))
        item.next_row += take
        need -= take
    scores = forward(np.concatenate(rows, axis=0) if len(rows) > 1 else rows[0])
    pos = 0
    for item, take in owners:
        item.total += float(np.sum(scores[pos : pos + take]))
        pos += take
    if on_batch is not None:
        on_batch(n)


def _pop_done(pending: Deque[_Pending]) -> Iterator[Tuple[Any, float]]:
    while pending and pending[0].next_row >= pending[0].windows.shape[0]:
        item = pending.popleft()
        yield item.key, item.total / item.windows.shape[0]


def score_windows(
    forward: Forward,
    items: Iterable[Tuple[Any, np.ndarray]],
    *,
    batch_size: int,
    crop_samples: int,
    on_batch: Optional[Callable[[int], None]] = None,
) -> Iterator[Tuple[Any, float]]:
    """Score ``(key, windows)`` pairs with ``forward``; yield ``(key, mean score)`` in order.

    ``windows``: ``(n, crop_samples)`` (from a :class:`WindowSpec`). Windows of
    consecutive items share batches of ``batch_size`` windows; an item is
    yielded as soon as all its windows are scored. ``on_batch(n)`` is called
    after each forward pass of ``n`` windows (progress displays).
    """
    pending: Deque[_Pending] = deque()
    unscored = 0
    for key, windows in items:
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[0] == 0 or windows.shape[1] != crop_samples:
            raise ValueError(f"{key}: expected windows of shape (n, {crop_samples}), got {windows.shape}")
        pending.append(_Pending(key, windows))
        unscored += windows.shape[0]
        while unscored >= batch_size:
            _run_batch(forward, pending, batch_size, on_batch)
            unscored -= batch_size
            yield from _pop_done(pending)
    while unscored > 0:
        n = min(batch_size, unscored)
        _run_batch(forward, pending, n, on_batch)
        unscored -= n
        yield from _pop_done(pending)


__all__ = ["MODES", "Forward", "WindowSpec", "score_windows"]
