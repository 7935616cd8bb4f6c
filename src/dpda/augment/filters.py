"""Band limitation (telephone band and similar channels).

:class:`BandLimit` applies a zero-phase Butterworth band-pass (or high-pass /
low-pass when one edge is None) with :func:`scipy.signal.sosfiltfilt`: the
filter runs forwards and backwards, so there is no delay and the magnitude
response is that of the Butterworth squared (order ``order`` per pass,
-6 dB at the edge frequencies). Edges are in Hz; each may be a number or a
``[low, high]`` range drawn uniformly per call. An upper edge at or above
the Nyquist frequency (``sr / 2``) means no low-pass.

Examples: ``BandLimit(300, 3400)`` (narrow-band telephone),
``BandLimit(50, 7000)`` (wide-band telephone), ``BandLimit([200, 500], [3000, 4000])``.
"""

from __future__ import annotations

import numbers
from typing import Any, Dict, Optional, Tuple

import numpy as np
from scipy.signal import butter, sosfiltfilt

from dpda.augment.base import Augmentation, Range, Trace, as_signal, check_rng, check_sr, draw, parse_range


class BandLimit(Augmentation):
    """Zero-phase Butterworth band-limiting between ``low`` and ``high`` Hz.

    Args:
        low: high-pass edge in Hz (number, ``[a, b]`` range, or None for none).
        high: low-pass edge in Hz (number, ``[a, b]`` range, or None for none).
        order: Butterworth order of each pass (the zero-phase response has
            twice this order).
        sr: sample rate in Hz.
    """

    def __init__(self, low: Any = 300.0, high: Any = 3400.0, *, order: int = 4, sr: int = 16000) -> None:
        self.sr = check_sr(sr)
        nyq = self.sr / 2.0
        if isinstance(order, (bool, np.bool_)) or not isinstance(order, numbers.Integral) or not 1 <= int(order) <= 12:
            raise ValueError(f"order must be an integer in 1..12, got {order!r}")
        self.order = int(order)
        self.low: Optional[Range] = None if low is None else parse_range(low, "low (Hz)", lo=0.0)
        self.high: Optional[Range] = None if high is None else parse_range(high, "high (Hz)", lo=0.0)
        if self.low is None and self.high is None:
            raise ValueError("give low and/or high (Hz)")
        if self.low is not None and self.low[1] >= nyq:
            raise ValueError(f"low must be below the Nyquist frequency {nyq:g} Hz, got {low!r}")
        if self.low is not None and self.high is not None and self.low[1] >= self.high[0]:
            raise ValueError(f"low ({low!r} Hz) must be below high ({high!r} Hz)")
        self._fixed = None
        if (self.low is None or self.low[0] == self.low[1]) and (self.high is None or self.high[0] == self.high[1]):
            self._fixed = self._design(None if self.low is None else self.low[0], None if self.high is None else self.high[0])

    def _design(self, lo: Optional[float], hi: Optional[float]) -> Optional[np.ndarray]:
        nyq = self.sr / 2.0
        if hi is not None and hi >= nyq:
            hi = None
        if lo is not None and lo <= 0:
            lo = None
        if lo is None and hi is None:
            return None
        if lo is None:
            return butter(self.order, hi, btype="lowpass", fs=self.sr, output="sos")
        if hi is None:
            return butter(self.order, lo, btype="highpass", fs=self.sr, output="sos")
        return butter(self.order, [lo, hi], btype="bandpass", fs=self.sr, output="sos")

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Trace]:
        check_rng(rng)
        x = as_signal(x)
        lo = None if self.low is None else draw(rng, self.low)
        hi = None if self.high is None else draw(rng, self.high)
        info: Dict[str, Any] = {"step": "bandlimit", "low_hz": lo, "high_hz": hi}
        sos = self._fixed if self._fixed is not None else self._design(lo, hi)
        if sos is None or x.size < 2:
            return x.copy(), [info]
        # default padlen of sosfiltfilt, limited so that short signals still work
        padlen = 3 * (2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum())))
        y = sosfiltfilt(sos, x.astype(np.float64), padlen=min(padlen, x.size - 1))
        return y.astype(np.float32), [info]

    def __repr__(self) -> str:
        def fmt(r: Optional[Range]) -> str:
            return "None" if r is None else (f"{r[0]:g}" if r[0] == r[1] else f"[{r[0]:g}, {r[1]:g}]")

        return f"BandLimit(low={fmt(self.low)}, high={fmt(self.high)}, order={self.order}, sr={self.sr})"


__all__ = ["BandLimit"]
