"""The augmentation protocol, its base class and the helpers every augmentation shares.

Every augmentation is a callable object ``aug(x, rng) -> y``:

* ``x``: 1-D float32 waveform ``(T,)`` at the sample rate (Hz) the
  augmentation was built for (``sr=16000`` by default); amplitudes in the
  usual [-1, 1] full-scale convention.
* ``rng``: a :class:`numpy.random.Generator`; **every** random draw comes from
  it, so the same generator state gives the same output (see
  :mod:`dpda.augment.seeding` for deriving one per utterance / epoch / worker).
* ``y``: float32 array of the same length ``T``.

``aug.apply(x, rng)`` returns ``(y, trace)`` where ``trace`` is a list of
dicts, one per leaf step that actually ran, saying what it drew (noise file
and SNR, RIR, codec bitrate, ...). ``aug(x, rng)`` is ``aug.apply(x, rng)[0]``.

This module imports no augmentation: the leaves (:mod:`~dpda.augment.noise`,
:mod:`~dpda.augment.reverb`, :mod:`~dpda.augment.codec`,
:mod:`~dpda.augment.filters`) and the combinators
(:mod:`~dpda.augment.combinators`) build on it, and the YAML builder
(:mod:`~dpda.augment.builder`) on all of them.
"""

from __future__ import annotations

import numbers
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from dpda.errors import DpdaError

Trace = List[Dict[str, Any]]
Range = Tuple[float, float]


class ChainConfigError(DpdaError, ValueError):
    """An augmentation chain configuration is invalid; the message names the key path."""


class Augmentation:
    """Base class: subclasses implement :meth:`apply`; calling returns the signal only."""

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Trace]:
        raise NotImplementedError

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(x, rng)[0]


def as_signal(x: Any, what: str = "x") -> np.ndarray:
    """Check that ``x`` is a finite 1-D signal; return it as float32 (no copy when already float32)."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{what} must be a 1-D waveform (T,), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must hold real numbers, got dtype {a.dtype}")
    a = a.astype(np.float32, copy=False)
    if a.size and not np.all(np.isfinite(a)):
        raise ValueError(f"{what} holds NaN or inf samples")
    return a


def check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (e.g. np.random.default_rng(seed)), got {type(rng).__name__}"
        )
    return rng


def peak_limit(y: np.ndarray) -> np.ndarray:
    """Scale ``y`` down uniformly so that ``max|y| == 1`` if it exceeds 1; otherwise return it unchanged.

    A single gain for the whole utterance: no clipping, so waveform shape
    and SNR are preserved.
    """
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > 1.0:
        y = y / peak
    return y


def mean_power(x: np.ndarray) -> float:
    """Mean square over the whole signal (float64)."""
    return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0


def parse_range(value: Any, what: str, *, lo: Optional[float] = None, hi: Optional[float] = None) -> Range:
    """A number ``v`` -> ``(v, v)``; a pair ``[a, b]`` with ``a <= b`` -> ``(a, b)``; optionally bounded."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{what} must be a number or a [low, high] pair, got {value!r}")
    if isinstance(value, numbers.Real):
        pair = (float(value), float(value))
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in value
    ):
        pair = (float(value[0]), float(value[1]))
    else:
        raise ValueError(f"{what} must be a number or a [low, high] pair, got {value!r}")
    if not all(np.isfinite(pair)):
        raise ValueError(f"{what} must be finite, got {value!r}")
    if pair[0] > pair[1]:
        raise ValueError(f"{what}: low {pair[0]:g} > high {pair[1]:g}")
    if lo is not None and pair[0] < lo:
        raise ValueError(f"{what} must be >= {lo:g}, got {value!r}")
    if hi is not None and pair[1] > hi:
        raise ValueError(f"{what} must be <= {hi:g}, got {value!r}")
    return pair


def draw(rng: np.random.Generator, r: Range) -> float:
    """Uniform draw in ``[r[0], r[1]]``; a degenerate range returns its value without drawing."""
    return r[0] if r[0] == r[1] else float(rng.uniform(r[0], r[1]))


def check_probability(p: Any, what: str = "p") -> float:
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{what} must be a probability in [0, 1], got {p!r}")
    return float(p)


def check_sr(sr: Any) -> int:
    """``sr`` as a positive integer sample rate in Hz; ValueError otherwise."""
    if isinstance(sr, (bool, np.bool_)) or not isinstance(sr, numbers.Integral) or int(sr) <= 0:
        raise ValueError(f"sr must be a positive integer sample rate in Hz, got {sr!r}")
    return int(sr)


_check_sr = check_sr  # the name the leaves used before

__all__ = [
    "Augmentation", "ChainConfigError", "Range", "Trace", "as_signal", "check_probability", "check_rng", "check_sr",
    "draw", "mean_power", "parse_range", "peak_limit",
]
