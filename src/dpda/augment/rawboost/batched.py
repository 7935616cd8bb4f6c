"""Batched RawBoost in PyTorch: a whole mini-batch per call, on CPU or CUDA.

Same three primitives and algorithms 0..8 as the original RawBoost
(Tak et al., ICASSP 2022) and as :mod:`dpda.augment.rawboost.reference`, with
the same parameter distributions, but every utterance of the batch is
processed at once, so augmentation can run inside the training step on the
accelerator instead of in the DataLoader workers.  The random stream is
PyTorch's (a ``torch.Generator`` on the input's device), so the output matches
the original *in distribution*, not draw for draw; use the reference module
when the original's exact draws matter.

Shapes and units
----------------
* ``x``: ``(B, T)`` waveforms, float16/bfloat16/float32/float64, amplitude in
  [-1, 1] as loaded by ``soundfile``/``librosa``; ``sr`` in Hz.  All
  arithmetic is float32 (filter *design* is float64, it is tiny); the result
  is cast back to ``x.dtype``.
* Per utterance (row) and per filter cascade: ``nBands`` centre frequencies
  ``fc ~ U(minF, maxF)`` Hz, bandwidths ``bw ~ U(minBW, maxBW)`` Hz, tap counts
  ``c = int(U(minCoeff, maxCoeff))`` made odd, gain ``G`` dB; ISD fraction
  ``beta ~ U(0, P)`` %; SSI ``SNR ~ U(SNRmin, SNRmax)`` dB.

How it is computed
------------------
* **Notch design** (:func:`band_stop_taps`, :func:`notch_cascade`): all
  ``B * K * nBands`` band-stop filters are designed at once as windowed sincs
  (``scipy.signal.firwin(c, [f1, f2], window="hamming", fs=sr)`` with
  ``pass_zero=True``, unit DC gain).  Each filter is centred in a common
  frame of ``Cmax`` taps (the largest odd count the draw can produce), so a
  row's filter is just zero-padded symmetrically; the ``nBands`` filters are
  cascaded by multiplying their spectra (FFT of size >= 1024), the cascade is
  normalised by ``max |H|`` on SciPy ``freqz``'s 512-point grid
  ``w = pi k / 512`` and multiplied by ``10 ** (G / 20)``.
* **FIR application** (:func:`fir_power_sum`): the original appends
  ``len(b) + 1`` zeros, runs ``lfilter`` and keeps ``[floor(N / 2), ...)``, i.e.
  the output is the zero-phase-filtered signal advanced by one sample,
  ``y[n] = sum_k b_c[k] x[n + 1 - k]`` (``b_c`` indexed from its centre).
  Centring in the common frame keeps exactly that alignment for every row.
  The convolution is done in the FFT domain by overlap-save (blocks of
  typically 4096 samples for 4-s inputs; for short inputs a single
  ``rfft`` of length ``>= T + Lp`` may win, the cost model picks): far cheaper
  than one 65536-point transform per signal *and* per filter.  LnL's ``N_f``
  orders are one batched pass: ``x ** 1 .. x ** N_f`` stacked as
  ``(B, N_f, blocks, N)``, multiplied by the ``N_f`` cascades' spectra and
  summed before a single ``irfft``.
* **ISD**: exactly ``int(T * beta / 100)`` positions per row, a uniformly
  random subset: the first entries of a random ordering of ``0..T-1`` up to
  the largest possible count ``int(T * P / 100)`` (a ``randperm`` per row on
  CPU, O(T); elsewhere the smallest of ``T`` random scores via one batched
  ``topk``), masked per row to its own count; the gains
  ``1 + g_sd * (2 u1 - 1) * (2 u2 - 1)`` are applied by ``gather``/``scatter``.
* **SSI**: white Gaussian noise filtered by one cascade per row, scaled to
  ``||x||_2 / 10 ** (SNR / 20)``.  The original's peak normalisation of the
  noise, its filter gain ``G`` and the ``max |H|`` normalisation cancel in that
  rescaling and are skipped.

No device synchronisation happens inside :func:`rawboost_batched` (all sizes
are static functions of ``T`` and the parameters).  On CPU the rows are
processed in small chunks (filter design and filtering), which keeps buffers
in cache and avoids page-faulting fresh multi-megabyte allocations on every
call: several times faster per row than whole-batch buffers; on CUDA a chunk
is normally the whole batch.

Typical use, inside the training step::

    augment = BatchedRawBoost(algo=4, seed=1234)   # or rawboost_batched(x, 4, gen)
    for wav, label in loader:                      # wav: (B, T) float, on the GPU
        wav = augment(wav.cuda(non_blocking=True))
        loss = criterion(model(wav), label.cuda())

Why one file of about 500 lines: the three primitives and the nine algorithms mirror
:mod:`dpda.augment.rawboost.reference` function for function, so the two are compared side by
side; split, that correspondence would be lost.
"""

from __future__ import annotations

import math
import numbers
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .params import ALGORITHMS, RawBoostParams

__all__ = [
    "BatchedRawBoost",
    "band_stop_taps",
    "fir_power_sum",
    "max_taps",
    "notch_cascade",
    "rawboost_batched",
]

_FREQZ_POINTS = 512  # scipy.signal.freqz default worN


# --------------------------------------------------------------------------- helpers


def _check_algo(algo: object) -> int:
    if isinstance(algo, bool) or not isinstance(algo, numbers.Integral) or not 0 <= int(algo) <= 8:
        choices = ", ".join(f"{k}={v}" for k, v in ALGORITHMS.items())
        raise ValueError(f"RawBoost algo must be an int in 0..8 ({choices}), got {algo!r}")
    return int(algo)


def _check_params(params: Optional[RawBoostParams], sr: int) -> RawBoostParams:
    if params is None:
        params = RawBoostParams()
    elif not isinstance(params, RawBoostParams):
        raise TypeError(f"params must be a RawBoostParams or None, got {type(params).__name__}")
    if int(params.nBands) < 1:
        raise ValueError(f"nBands must be >= 1, got {params.nBands}")
    if min(params.minCoeff, params.maxCoeff) < 1:
        raise ValueError(f"minCoeff/maxCoeff must be >= 1, got {params.minCoeff}/{params.maxCoeff}")
    if not sr > 0:
        raise ValueError(f"sr must be positive, got {sr}")
    return params


def _fft_len(n: int) -> int:
    """Smallest ``2**a * m`` (``m`` in 1, 3, 5, 9, 15) that is >= ``n``: fast for pocketfft and cuFFT."""
    best = None
    for m in (1, 3, 5, 9, 15):
        k = m
        while k < n:
            k *= 2
        best = k if best is None else min(best, k)
    return int(best)


def _uniform(shape: Sequence[int], low: object, high: object, generator: Optional[torch.Generator],
             device: torch.device) -> Tensor:
    """``low + (high - low) * u``, ``u ~ U[0, 1)`` in float64 (``low > high`` allowed, like NumPy)."""
    u = torch.rand(tuple(shape), generator=generator, device=device, dtype=torch.float64)
    if isinstance(low, Tensor) or isinstance(high, Tensor):
        return low + (high - low) * u
    return float(low) + (float(high) - float(low)) * u


def _coeff_bounds(params: RawBoostParams) -> Tuple[int, int]:
    """Range of ``int(U(minCoeff, maxCoeff))`` before it is made odd."""
    lo, hi = sorted((float(params.minCoeff), float(params.maxCoeff)))
    low = int(math.floor(lo))
    top = int(math.ceil(hi)) - 1 if hi > lo else int(math.floor(hi))
    return low, max(low, top)


def max_taps(params: RawBoostParams) -> int:
    """Largest (odd) band-filter tap count the draw can produce: the common frame length ``Cmax``."""
    top = _coeff_bounds(params)[1]
    return top if top % 2 else top + 1


def _norm_peak_(y: Tensor, always: bool) -> Tensor:
    """The original ``normWav`` per row, in place: divide by ``max |y|`` (always, or only where it exceeds 1)."""
    # two vectorised reductions: much faster on CPU than abs().amax() or aminmax()
    peak = torch.maximum(y.amax(dim=-1, keepdim=True), y.amin(dim=-1, keepdim=True).neg_())
    if not always:
        peak = torch.where(peak > 1, peak, torch.ones_like(peak))
    return y.div_(peak)


# --------------------------------------------------------------------------- filter design


def band_stop_taps(f1: Tensor, f2: Tensor, numtaps: Tensor, sr: float, frame: int) -> Tensor:
    """Hamming-windowed band-stop FIRs, centred in a ``frame``-tap frame.

    ``f1``, ``f2`` (Hz) and ``numtaps`` (odd integers <= ``frame``, ``frame`` odd)
    broadcast to a common shape ``S``; returns ``S + (frame,)`` float64 taps.
    The central ``numtaps`` taps equal ``scipy.signal.firwin(numtaps, [f1, f2],
    window="hamming", fs=sr)`` (``pass_zero=True``: band-stop, scaled to unit
    gain at DC); the others are zero.
    """
    if frame % 2 != 1:
        raise ValueError(f"frame must be odd, got {frame}")
    f1, f2, numtaps = torch.broadcast_tensors(f1, f2, numtaps)
    device = f1.device
    nyq = 0.5 * float(sr)
    m = torch.arange(frame, device=device, dtype=torch.float64) - (frame - 1) / 2  # tap offset from centre
    lo = (f1.to(torch.float64) / nyq).unsqueeze(-1)
    hi = (f2.to(torch.float64) / nyq).unsqueeze(-1)
    # ideal response of bands (0, lo) and (hi, 1): lo*sinc(lo m) + [1*sinc(m) = delta] - hi*sinc(hi m)
    h = lo * torch.sinc(lo * m) - hi * torch.sinc(hi * m) + (m == 0).to(torch.float64)
    c = numtaps.to(torch.float64).unsqueeze(-1)
    # symmetric Hamming window of length c, written around its centre (c = 1 -> [1])
    win = 0.54 + 0.46 * torch.cos(2 * math.pi * m / torch.clamp(c - 1, min=1.0))
    win = torch.where(m.abs() <= (c - 1) / 2, win, torch.zeros_like(win))
    h = h * win
    return h / h.sum(dim=-1, keepdim=True)


def notch_cascade(taps: Tensor, gain_db: Optional[Tensor] = None) -> Tensor:
    """Cascade (convolve) ``nBands`` centred band filters ``(..., nBands, frame)``.

    Returns ``(..., Lp)`` float64 with ``Lp = nBands * (frame - 1) + 1``, centred
    like its inputs.  With ``gain_db`` (shape ``...``) the cascade is divided by
    its ``max |H|`` on ``freqz``'s 512-point grid and multiplied by
    ``10 ** (gain_db / 20)``, as the original ``genNotchCoeffs``; without it it is
    returned unnormalised.
    """
    n_bands, frame = taps.shape[-2], taps.shape[-1]
    lp = n_bands * (frame - 1) + 1
    nd = 2 * _FREQZ_POINTS
    while nd < lp:  # linear (not circular) convolution, and a multiple of the freqz grid
        nd *= 2
    spec = torch.fft.rfft(taps, n=nd, dim=-1)
    h = spec[..., 0, :]
    for i in range(1, n_bands):
        h = h * spec[..., i, :]
    b = torch.fft.irfft(h, n=nd, dim=-1)[..., :lp]
    if gain_db is None:
        return b
    step = nd // (2 * _FREQZ_POINTS)
    peak = h[..., : nd // 2 : step].abs().amax(dim=-1)  # w = pi k / 512, k = 0..511
    scale = torch.pow(10.0, gain_db.to(torch.float64) / 20) / peak
    return b * scale.unsqueeze(-1)


def _random_notches(batch: int, count: int, gain_low: Optional[Tensor], gain_high: Optional[Tensor],
                    params: RawBoostParams, sr: float, generator: Optional[torch.Generator],
                    device: torch.device) -> Tensor:
    """``(batch, count, Lp)`` float32 random notch cascades (``genNotchCoeffs`` draws).

    ``gain_low``/``gain_high`` (shape ``(count,)``, dB) -> normalised cascades with
    ``G ~ U(low, high)``; ``None`` -> unnormalised (for SSI, where it cancels).
    """
    p = params
    nb = int(p.nBands)
    shape = (batch, count, nb)
    fc = _uniform(shape, p.minF, p.maxF, generator, device)
    bw = _uniform(shape, p.minBW, p.maxBW, generator, device)
    c_low, c_top = _coeff_bounds(p)
    c = torch.trunc(_uniform(shape, p.minCoeff, p.maxCoeff, generator, device)).clamp_(c_low, c_top)
    c = c + (torch.remainder(c, 2) == 0).to(c.dtype)  # the original makes every count odd
    half_bw = bw / 2
    f1 = fc - half_bw
    f2 = fc + half_bw
    nyq = 0.5 * float(sr)
    f1 = torch.where(f1 <= 0, torch.full_like(f1, 1e-3), f1)
    f2 = torch.where(f2 >= nyq, torch.full_like(f2, nyq - 1e-3), f2)
    gain = None
    if gain_low is not None and gain_high is not None:
        gain = _uniform((batch, count), gain_low, gain_high, generator, device)
    # design in chunks of rows: the (rows, count, nBands, >= 1024) spectra stay cache-sized on CPU
    frame = max_taps(p)
    lp = nb * (frame - 1) + 1
    out = torch.empty((batch, count, lp), dtype=torch.float32, device=device)
    budget = 1 << 18 if device.type == "cpu" else 1 << 26
    rows = max(1, budget // (count * nb * max(2 * _FREQZ_POINTS, lp)))
    for start in range(0, batch, rows):
        sl = slice(start, min(batch, start + rows))
        taps = band_stop_taps(f1[sl], f2[sl], c[sl], sr, frame)
        out[sl] = notch_cascade(taps, None if gain is None else gain[sl])
    return out


def _ols_block(t: int, lp: int, k: int) -> int:
    """FFT block length for overlap-save filtering of ``k`` signals of ``T = t`` samples with ``lp`` taps.

    Candidates: powers of two from ``2 * lp`` up to one block covering the whole
    signal, and the single full-length transform (``>= t + lp - 1``); the pick
    minimises ``((k + 1) * blocks + k) * N * (log2 N + 2)`` (signal and inverse
    transforms per block, plus the ``k`` filter transforms).  For 4 s at 16 kHz
    and the default 491-tap cascades this is 4096 (18 blocks), about half the
    work of one 65536-point transform per signal *and* per filter.
    """
    cands = []
    n = 256
    while n < 2 * lp:
        n *= 2
    while True:
        cands.append(n)
        if n - lp + 1 >= t:
            break
        n *= 2
    cands.append(_fft_len(t + lp - 1))
    best, best_cost = cands[0], math.inf
    for n in cands:
        hop = n - lp + 1
        blocks = -(-t // hop)
        cost = ((k + 1) * blocks + k) * n * (math.log2(n) + 2)
        if cost < best_cost:
            best, best_cost = n, cost
    return best


def fir_power_sum(x: Tensor, filters: Tensor, noise_generator: Optional[torch.Generator] = None,
                  noise: bool = False, block: Optional[int] = None) -> Tensor:
    """``sum_k FIR(s ** (k + 1), filters[:, k])`` with the original ``filterFIR`` alignment.

    ``x``: ``(B, T)`` float (``s = x``), or with ``noise=True`` only its shape,
    dtype and device are used and ``s`` is fresh white Gaussian noise drawn from
    ``noise_generator`` chunk by chunk (SSI).  ``filters``: ``(B, K, Lp)``
    centred filters, ``Lp`` odd.  Returns ``(B, T)`` with
    ``y[n] = lin[n + (Lp + 1) / 2]``, ``lin`` the full linear convolution --
    for an unpadded filter exactly the original's slice ``[floor(N/2), ...)``
    with ``N = len(b) + 1``.

    Overlap-save in the FFT domain: the signal is cut into blocks of ``block``
    samples (default :func:`_ols_block`) overlapping by ``Lp - 1``; the
    ``K`` powers of all blocks go through one batched ``rfft``, are multiplied
    by the ``K`` filter spectra, summed over ``K`` and brought back by one
    ``irfft``; the last ``block - Lp + 1`` samples of each block are kept (no
    circular wrap-around).  Rows are processed in chunks (small on CPU, where
    cache- and allocator-friendly buffers are several times faster per row).
    """
    batch, t = x.shape
    k, lp = filters.shape[1], filters.shape[2]
    n = _ols_block(t, lp, k) if block is None else int(block)
    hop = n - lp + 1
    if hop < 1:
        raise ValueError(f"block {n} is shorter than the filter ({lp} taps)")
    blocks = -(-t // hop)
    total = (blocks - 1) * hop + n
    left = (lp - 3) // 2  # output n reads x[n + (Lp+1)/2 - j], j = 0..Lp-1; may be -1 (crop)
    right = total - left - t
    budget = 1 << 18 if x.device.type == "cpu" else 1 << 27
    rows = max(1, budget // (k * blocks * n))
    out = torch.empty((batch, t), dtype=x.dtype, device=x.device)
    for start in range(0, batch, rows):
        stop = min(batch, start + rows)
        if noise:
            sig = torch.randn((stop - start, t), generator=noise_generator, device=x.device, dtype=x.dtype)
        else:
            sig = x[start:stop]
        frames = F.pad(sig, (left, right)).unfold(-1, n, hop)  # (rows, blocks, n), a view
        if k == 1:
            powers = frames.unsqueeze(1)
        else:
            powers = torch.empty((stop - start, k, blocks, n), dtype=x.dtype, device=x.device)
            powers[:, 0] = frames
            for i in range(1, k):
                torch.mul(powers[:, i - 1], frames, out=powers[:, i])
        spec = torch.fft.rfft(powers, dim=-1)
        spec.mul_(torch.fft.rfft(filters[start:stop].to(x.dtype), n=n, dim=-1).unsqueeze(2))
        y = torch.fft.irfft(spec.sum(dim=1), n=n, dim=-1)[..., lp - 1:]  # (rows, blocks, hop)
        out[start:stop] = y.reshape(stop - start, blocks * hop)[:, :t]
    return out


# --------------------------------------------------------------------------- the three primitives


def _lnl(x: Tensor, p: RawBoostParams, sr: float, g: Optional[torch.Generator]) -> Tensor:
    batch = x.shape[0]
    n_f = int(p.N_f)
    if n_f < 1:
        return torch.zeros_like(x)
    dev = x.device
    low = torch.full((n_f,), float(p.minG) - float(p.minBiasLinNonLin), dtype=torch.float64, device=dev)
    high = torch.full((n_f,), float(p.maxG) - float(p.maxBiasLinNonLin), dtype=torch.float64, device=dev)
    low[0], high[0] = float(p.minG), float(p.maxG)
    filters = _random_notches(batch, n_f, low, high, p, sr, g, dev)
    y = fir_power_sum(x, filters)
    y.sub_(y.mean(dim=-1, keepdim=True))
    return _norm_peak_(y, always=False)


def _random_subsets(batch: int, t: int, k: int, g: Optional[torch.Generator], device: torch.device) -> Tensor:
    """``(batch, k)`` int64: per row the first ``k`` entries of a uniformly random permutation of
    ``0..t-1``, so every prefix is a uniformly random subset.  CPU: ``randperm`` per row (O(t));
    other devices: the ``k`` smallest of ``t`` random scores, in order (one batched ``topk``)."""
    if device.type == "cpu":
        return torch.stack([torch.randperm(t, generator=g, device=device)[:k] for _ in range(batch)])
    scores = torch.rand((batch, t), generator=g, device=device)
    return torch.topk(scores, k, dim=-1, largest=False, sorted=True).indices


def _isd(x: Tensor, p: RawBoostParams, g: Optional[torch.Generator]) -> Tensor:
    batch, t = x.shape
    dev = x.device
    beta = _uniform((batch,), 0.0, p.P, g, dev)
    count = torch.floor(t * (beta / 100)).clamp_(0, t).to(torch.int64)  # int(len * beta / 100)
    kmax = min(t, max(0, int(math.floor(t * float(p.P) / 100))))  # static bound: no device sync
    y = x.clone()
    if kmax > 0:
        idx = _random_subsets(batch, t, kmax, g, dev)
        u = torch.rand((2, batch, kmax), generator=g, device=dev)
        factor = 1 + float(p.g_sd) * (2 * u[0] - 1) * (2 * u[1] - 1)
        keep = torch.arange(kmax, device=dev).unsqueeze(0) < count.clamp(max=kmax).unsqueeze(1)
        factor = torch.where(keep, factor, torch.ones_like(factor))
        y.scatter_(-1, idx, x.gather(-1, idx) * factor)
    return _norm_peak_(y, always=False)


def _ssi(x: Tensor, p: RawBoostParams, sr: float, g: Optional[torch.Generator]) -> Tensor:
    batch = x.shape[0]
    dev = x.device
    filters = _random_notches(batch, 1, None, None, p, sr, g, dev)
    noise = fir_power_sum(x, filters, g, noise=True)
    snr = _uniform((batch,), p.SNRmin, p.SNRmax, g, dev)
    target = torch.linalg.vector_norm(x, dim=-1) / torch.pow(10.0, 0.05 * snr).to(torch.float32)
    scale = target / torch.linalg.vector_norm(noise, dim=-1).clamp_min(torch.finfo(torch.float32).tiny)
    return noise.mul_(scale.unsqueeze(-1)).add_(x)


# --------------------------------------------------------------------------- public API


def rawboost_batched(
    x: Tensor,
    algo: int,
    generator: Optional[torch.Generator] = None,
    params: Optional[RawBoostParams] = None,
    sr: int = 16000,
) -> Tensor:
    """Apply RawBoost algorithm ``algo`` (0..8, see :data:`ALGORITHMS`) to every row of ``x``.

    ``x``: ``(B, T)`` waveforms on any device; each row gets its own random
    filters / ISD positions / SNR drawn from ``generator`` (a ``torch.Generator``
    on ``x.device``; ``None`` uses PyTorch's default generator for that device).
    The same generator state gives the same output.  ``params`` defaults to
    :class:`RawBoostParams` (the original defaults); ``sr`` in Hz.  Returns a new
    ``(B, T)`` tensor of ``x.dtype`` on ``x.device`` (computed in float32); ``x``
    is never modified.  ``algo`` outside 0..8 raises :class:`ValueError`
    (algo 0 returns a copy).
    """
    algo = _check_algo(algo)
    p = _check_params(params, sr)
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"x must have shape (B, T), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(f"generator is on {generator.device}, x on {x.device}: they must be on the same device")
    if algo == 0 or x.numel() == 0:
        return x.clone()
    sr_f = float(sr)
    xf = x.to(torch.float32).contiguous()
    if algo == 1:
        y = _lnl(xf, p, sr_f, generator)
    elif algo == 2:
        y = _isd(xf, p, generator)
    elif algo == 3:
        y = _ssi(xf, p, sr_f, generator)
    elif algo == 4:
        y = _ssi(_isd(_lnl(xf, p, sr_f, generator), p, generator), p, sr_f, generator)
    elif algo == 5:
        y = _isd(_lnl(xf, p, sr_f, generator), p, generator)
    elif algo == 6:
        y = _ssi(_lnl(xf, p, sr_f, generator), p, sr_f, generator)
    elif algo == 7:
        y = _ssi(_isd(xf, p, generator), p, sr_f, generator)
    else:  # 8: both branches on the original x, then conditional peak normalisation
        y = _lnl(xf, p, sr_f, generator)
        y = _norm_peak_(y.add_(_isd(xf, p, generator)), always=False)
    return y.to(x.dtype)


class BatchedRawBoost(torch.nn.Module):
    """RawBoost as a module, for use inside the training step on the model's device.

    ``BatchedRawBoost(algo=4, params=None, sr=16000, seed=None)``; ``forward(x)``
    maps ``(B, T)`` to ``(B, T)`` (same dtype and device) with fresh random
    parameters per row.  With ``seed`` the module keeps one ``torch.Generator``
    per device, seeded with ``seed`` on first use (reproducible; the state is not
    part of ``state_dict``); with ``seed=None`` it draws from PyTorch's default
    generator of ``x.device`` (so ``torch.manual_seed`` controls it).  It has no
    parameters or buffers and applies the augmentation in train and eval mode
    alike: call it only where augmentation is wanted.  In multi-process
    (DDP) training give every rank its own seed (e.g. ``seed + rank``), or the
    ranks draw identical augmentations.
    """

    def __init__(self, algo: int = 4, params: Optional[RawBoostParams] = None, sr: int = 16000,
                 seed: Optional[int] = None) -> None:
        super().__init__()
        self.algo = _check_algo(algo)
        self.sr = int(sr)
        self.params = _check_params(params, self.sr)
        self.seed = None if seed is None else int(seed)
        self._generators: Dict[str, torch.Generator] = {}

    def reseed(self, seed: Optional[int]) -> None:
        """Forget the per-device generators; the next call reseeds them with ``seed``."""
        self.seed = None if seed is None else int(seed)
        self._generators = {}

    def generator(self, device: torch.device) -> Optional[torch.Generator]:
        """The generator used for inputs on ``device`` (``None`` when unseeded)."""
        if self.seed is None:
            return None
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        key = str(device)
        gen = self._generators.get(key)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed)
            self._generators[key] = gen
        return gen

    def forward(self, x: Tensor) -> Tensor:
        return rawboost_batched(x, self.algo, self.generator(x.device), self.params, self.sr)

    def extra_repr(self) -> str:
        return f"algo={self.algo} [{ALGORITHMS[self.algo]}], sr={self.sr}, seed={self.seed}, params={self.params!r}"
