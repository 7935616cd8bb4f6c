"""Fixed-length views of variable-length waveforms.

All functions take a 1-D signal of shape ``(T,)`` (``T`` in samples), either
a :class:`numpy.ndarray` or a :class:`torch.Tensor`, and return the same type
with the same dtype (and device, for tensors). Results never share memory
with the input.

Two conventions are common in the field and both are provided:

* evaluation: keep the first ``n`` samples of a long signal, repeat (tile) a
  short one until it is ``n`` samples long (:func:`pad_or_crop`); this is
  what AASIST and the DPDA paper's code do;
* training: a uniformly random ``n``-sample crop of a long signal, repeat
  padding of a short one (:func:`random_crop`).

:func:`sliding_windows` cuts a whole utterance into ``n``-sample windows for
full-utterance scoring.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Optional, TypeVar, Union

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily: the numpy paths work without it (torch-free ONNX deployments)
    import torch

#: Input length used by AASIST (about 4.04 s at 16 kHz), in samples.
AASIST_NUM_SAMPLES = 64600
#: Input length used by the DPDA paper's code (4.175 s at 16 kHz), in samples.
DPDA_NUM_SAMPLES = 66800

Signal = TypeVar("Signal", np.ndarray, "torch.Tensor")
RandomSource = Union[np.random.Generator, "torch.Generator"]


def _is_tensor(x: object) -> bool:
    """Whether ``x`` is a torch tensor, without importing torch (none can exist before torch is imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


_MODES = ("repeat", "zero")


def _check_signal(x: object, n_samples: int) -> int:
    """Validate inputs; return the signal length in samples."""
    if not (isinstance(x, np.ndarray) or _is_tensor(x)):
        raise TypeError(f"expected a numpy array or torch tensor, got {type(x).__name__}")
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D signal of shape (T,), got shape {tuple(x.shape)}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if n_samples <= 0:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples}")
    length = int(x.shape[0])
    if length == 0:
        raise ValueError("cannot crop or pad an empty signal (length 0)")
    return length


def _copy(x: Signal) -> Signal:
    return x.clone() if _is_tensor(x) else x.copy()


def _repeat_pad(x: Signal, n_samples: int) -> Signal:
    """Tile ``x`` and keep the first ``n_samples`` samples."""
    reps = n_samples // int(x.shape[0]) + 1
    if _is_tensor(x):
        return x.repeat(reps)[:n_samples].clone()
    return np.tile(x, reps)[:n_samples].copy()


def _zero_pad(x: Signal, n_samples: int) -> Signal:
    missing = n_samples - int(x.shape[0])
    if _is_tensor(x):
        import torch

        return torch.cat([x, x.new_zeros(missing)])
    return np.concatenate([x, np.zeros(missing, dtype=x.dtype)])


def pad_or_crop(x: Signal, n_samples: int, mode: str = "repeat") -> Signal:
    """Return exactly ``n_samples`` samples of ``x``, deterministically.

    Args:
        x: signal of shape ``(T,)`` (numpy array or torch tensor).
        n_samples: output length in samples, e.g. :data:`AASIST_NUM_SAMPLES`
            (64600) or :data:`DPDA_NUM_SAMPLES` (66800).
        mode: how to lengthen a short signal: ``"repeat"`` (default) tiles
            it (``np.tile(x, n // T + 1)[:n]``); ``"zero"`` appends zeros.

    Returns:
        Shape ``(n_samples,)``, same type and dtype as ``x``. If
        ``T >= n_samples`` it is the FIRST ``n_samples`` samples.

    Raises:
        ValueError: ``n_samples <= 0``, ``x`` is empty or not 1-D, or
            ``mode`` is unknown.
    """
    length = _check_signal(x, n_samples)
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if length >= n_samples:
        return _copy(x[:n_samples])
    if mode == "zero":
        return _zero_pad(x, n_samples)
    return _repeat_pad(x, n_samples)


def _random_start(high: int, rng: Optional[RandomSource]) -> int:
    """Uniform integer in ``[0, high]``."""
    if rng is None:
        rng = np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, high + 1))
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(rng, torch.Generator):
        return int(torch.randint(0, high + 1, (1,), generator=rng, device=rng.device).item())
    raise TypeError(
        f"rng must be a numpy.random.Generator or torch.Generator, got {type(rng).__name__}"
    )


def random_crop(x: Signal, n_samples: int, rng: Optional[RandomSource] = None) -> Signal:
    """Return a random ``n_samples``-long crop of ``x`` (training convention).

    If ``T > n_samples`` the start is drawn uniformly from
    ``[0, T - n_samples]``; otherwise ``x`` is repeat-padded as in
    :func:`pad_or_crop` (no randomness used).

    Args:
        x: signal of shape ``(T,)`` (numpy array or torch tensor).
        n_samples: output length in samples.
        rng: a :class:`numpy.random.Generator` or a :class:`torch.Generator`
            (either works for either input type); the same seed gives the
            same crop. ``None`` uses a fresh, unseeded numpy generator.

    Returns:
        Shape ``(n_samples,)``, same type and dtype as ``x``.
    """
    length = _check_signal(x, n_samples)
    if length <= n_samples:
        return _repeat_pad(x, n_samples) if length < n_samples else _copy(x)
    start = _random_start(length - n_samples, rng)
    return _copy(x[start : start + n_samples])


def sliding_windows(x: Signal, n_samples: int, hop: Optional[int] = None) -> Signal:
    """Cut ``x`` into ``n_samples``-long windows for full-utterance scoring.

    Windows start at ``0, hop, 2*hop, ...``; if the last of these does not
    reach the end of the signal, one more window aligned to the end
    (starting at ``T - n_samples``) is added, so the tail is always covered
    (it may overlap its neighbour by more than ``n_samples - hop``). A
    signal shorter than ``n_samples`` gives a single repeat-padded window.

    Args:
        x: signal of shape ``(T,)`` (numpy array or torch tensor).
        n_samples: window length in samples.
        hop: distance between window starts in samples; default
            ``n_samples`` (no overlap). A hop larger than ``n_samples``
            leaves gaps between windows.

    Returns:
        Shape ``(num_windows, n_samples)``, same type and dtype as ``x``.
    """
    length = _check_signal(x, n_samples)
    if hop is None:
        hop = n_samples
    if isinstance(hop, bool) or not isinstance(hop, (int, np.integer)) or hop <= 0:
        raise ValueError(f"hop must be a positive integer or None, got {hop!r}")
    if length <= n_samples:
        return pad_or_crop(x, n_samples, mode="repeat")[None, :]
    last = length - n_samples
    starts = list(range(0, last + 1, int(hop)))
    if starts[-1] != last:
        starts.append(last)
    if _is_tensor(x):
        import torch

        idx = torch.tensor(starts, device=x.device)[:, None] + torch.arange(
            n_samples, device=x.device
        )
        return x[idx]
    idx = np.asarray(starts)[:, None] + np.arange(n_samples)
    return x[idx]
