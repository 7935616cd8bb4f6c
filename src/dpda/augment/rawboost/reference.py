"""Reference-exact RawBoost data augmentation (NumPy / SciPy, one utterance at a time).

RawBoost (H. Tak, M. Kamble, J. Patino, M. Todisco, N. Evans, "RawBoost: A Raw Data
Boosting and Augmentation Method applied to Automatic Speaker Verification
Anti-Spoofing", ICASSP 2022) distorts a raw waveform with three kinds of
randomised, data-independent noise:

* **LnL** -- linear and non-linear convolutive noise: ``y = sum_i FIR_i(x ** i)``
  for ``i = 1 .. N_f``, each ``FIR_i`` a cascade of ``nBands`` random band-stop
  (notch) filters; orders ``i >= 2`` get a lower gain.
* **ISD** -- impulsive signal-dependent additive noise: up to ``P`` % of the
  samples are scaled by ``1 + g_sd * (2u1 - 1) * (2u2 - 1)``.
* **SSI** -- stationary signal-independent additive noise: white Gaussian noise,
  coloured by a random notch-filter cascade, added at a random SNR (dB).

Algorithms (``algo`` argument, as in the original ``process_Rawboost_feature``):

====  ==========================================================================
algo  processing
====  ==========================================================================
0     identity (a copy of the input is returned)
1     LnL
2     ISD
3     SSI
4     LnL -> ISD -> SSI (each stage applied to the previous stage's output)
5     LnL -> ISD
6     LnL -> SSI
7     ISD -> SSI
8     ``norm_wav(LnL(x) + ISD(x))``: both applied to the *original* ``x``
====  ==========================================================================

The original silently returns the input for any other ``algo``; dpda is
stricter and raises :class:`ValueError` unless ``algo`` is an ``int`` in 0..8.

**Exactness guarantee.** With ``rng = np.random.RandomState(seed)`` every
function here makes exactly the random draws of the original implementation
(TakHemlata/RawBoost-antispoofing, commit 4f161a8) after
``np.random.seed(seed)``, in the same order, leaves ``rng`` at the same
MT19937 position as the original leaves the global state, and returns the
same shape and dtype (LnL and SSI return float64; ISD keeps the input dtype,
e.g. float32 in -> float32 out) with the same operations on the same values.
The output values equal the original's except in the last bits that NumPy's
vectorised kernels (``power``, ``exp``, the ``sin``/``cos`` of SciPy's filter
design) and OpenBLAS's dot kernels leave to the build and the CPU: bit for bit
where they agree, otherwise within 16 ULP of the output's peak -- float64 ULP,
or float32 ULP for the algorithms with LnL on a float32 input (LnL raises the
input to powers in its own dtype) or SSI on it (SSI scales by the input's
L2 norm, a float32 dot whose summation order is the BLAS kernel's). This is
checked against stored reference outputs in
``tests/augment/test_rawboost_reference.py``. Unlike the original, this code
runs on NumPy >= 2.4 (the original converts shape-(1,) arrays with
``int()``/``float()``, which NumPy 2.4 rejects); conversions are done with
``.item()`` exactly where the original converted, while the filter gain ``G``
and the ``SNR`` stay shape-(1,) arrays (as in the original) because
``10 ** (G / 20)`` on an array and on a Python float can differ in the last bit.

**RNG protocol.** Every random draw comes from the explicit
``np.random.RandomState`` passed in -- never from the global NumPy state -- in
the original's order (``U(a, b)`` is ``rng.uniform(low=a, high=b, size=(1,))``):

* notch design (16 draws with default ``nBands=5``): per band ``U(minF, maxF)``
  -> centre, ``U(minBW, maxBW)`` -> bandwidth, ``U(minCoeff, maxCoeff)`` -> taps;
  then one ``U(minG, maxG)`` -> gain, drawn even when ``minG == maxG``.
* LnL: ``N_f`` notch designs (80 draws by default).
* ISD: ``U(0, P)``, ``rng.permutation(len(x))``, ``rng.rand(n)``, ``rng.rand(n)``.
* SSI: ``rng.normal(0, 1, len(x))``, one notch design, ``U(SNRmin, SNRmax)``.

For a training pipeline use :class:`RawBoost`, which owns a ``RandomState``.
"""

from __future__ import annotations

import numbers
from typing import Any, Union

import numpy as np
from scipy import signal

from dpda.augment.rawboost.params import ALGORITHMS, RawBoostParams

__all__ = [
    "RawBoost",
    "fir_filter",
    "isd_additive_noise",
    "lnl_convolutive_noise",
    "norm_wav",
    "notch_coefficients",
    "rawboost",
    "ssi_additive_noise",
]


# --------------------------------------------------------------------------- helpers


def _check_rng(rng: Any) -> np.random.RandomState:
    if not isinstance(rng, np.random.RandomState):
        raise TypeError(
            f"rng must be a numpy.random.RandomState (the legacy MT19937 stream the original "
            f"RawBoost draws from), got {type(rng).__name__}"
        )
    return rng


def _check_signal(x: Any) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"RawBoost expects a 1-D waveform (samples,), got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("RawBoost expects a non-empty waveform, got 0 samples")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"RawBoost expects a floating-point waveform (e.g. float32), got dtype {x.dtype}")
    return x


def _uniform1(rng: np.random.RandomState, low: float, high: float) -> np.ndarray:
    """One legacy uniform draw in [low, high) as a shape-(1,) float64 array (low > high is legal)."""
    return rng.uniform(low=low, high=high, size=(1,))


def norm_wav(x: np.ndarray, always: bool = False) -> np.ndarray:
    """Peak normalisation: divide by ``max|x|`` if ``always`` or if ``max|x| > 1``.

    Returns a new array (or ``x`` itself when nothing is done); the dtype is kept.
    """
    peak = np.amax(np.abs(x))
    if always or peak > 1:
        return x / peak
    return x


def notch_coefficients(
    sr: int,
    rng: np.random.RandomState,
    *,
    n_bands: int,
    min_f: float,
    max_f: float,
    min_bw: float,
    max_bw: float,
    min_coeff: int,
    max_coeff: int,
    min_g: float,
    max_g: float,
) -> np.ndarray:
    """Random cascade of ``n_bands`` FIR band-stop filters, peak-normalised, with a random gain.

    Each band: centre frequency ``fc ~ U(min_f, max_f)`` Hz, bandwidth
    ``bw ~ U(min_bw, max_bw)`` Hz, ``c = int(U(min_coeff, max_coeff))`` taps
    (made odd by adding 1 if even); cut-offs ``fc -/+ bw/2`` Hz clipped to
    ``(0, sr/2)`` (0.001 Hz and ``sr/2 - 0.001`` Hz); a Hamming-window
    ``firwin`` band-stop design at ``sr`` Hz. The bands are cascaded by
    convolution, the cascade is divided by its peak magnitude response (512-point
    ``freqz``) and multiplied by ``10 ** (G / 20)``, ``G ~ U(min_g, max_g)`` dB.

    Makes ``3 * n_bands + 1`` uniform draws from ``rng``. Returns float64 taps
    (odd length ``sum(c) - n_bands + 1``).
    """
    _check_rng(rng)
    nyquist = sr / 2
    b: np.ndarray | None = None
    for _ in range(n_bands):
        fc = _uniform1(rng, min_f, max_f)
        bw = _uniform1(rng, min_bw, max_bw)
        taps = int(_uniform1(rng, min_coeff, max_coeff).item())  # original: int(shape-(1,) array)
        if taps % 2 == 0:
            taps += 1
        f1 = fc - bw / 2
        f2 = fc + bw / 2
        low = 1 / 1000 if f1[0] <= 0 else f1.item()  # original: float(f1)
        high = nyquist - 1 / 1000 if f2[0] >= nyquist else f2.item()
        h = signal.firwin(taps, [low, high], window="hamming", fs=sr)
        b = h if b is None else np.convolve(h, b)
    if b is None:  # n_bands == 0: the original's cascade is the scalar 1
        b = np.ones(1)
    gain_db = _uniform1(rng, min_g, max_g)  # kept as a shape-(1,) array on purpose
    _, response = signal.freqz(b, 1, fs=sr)
    return np.power(10, gain_db / 20) * b / np.amax(np.abs(response))


def fir_filter(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Apply FIR taps ``b`` to ``x`` as the original does; output has ``len(x)`` samples (float64).

    ``N = len(b) + 1`` zeros are appended, ``lfilter(b, 1, .)`` is run, and samples
    ``[N // 2, len(x) + N - N // 2)`` are kept (one sample more than the group
    delay for odd ``len(b)``).
    """
    n_pad = b.shape[0] + 1
    padded = np.pad(x, (0, n_pad), "constant")
    y = signal.lfilter(b, 1, padded)
    return y[int(n_pad / 2) : int(y.shape[0] - n_pad / 2)]


def _notch(sr: int, rng: np.random.RandomState, p: RawBoostParams, min_g: float, max_g: float) -> np.ndarray:
    return notch_coefficients(
        sr,
        rng,
        n_bands=p.nBands,
        min_f=p.minF,
        max_f=p.maxF,
        min_bw=p.minBW,
        max_bw=p.maxBW,
        min_coeff=p.minCoeff,
        max_coeff=p.maxCoeff,
        min_g=min_g,
        max_g=max_g,
    )


# --------------------------------------------------------------------------- primitives


def lnl_convolutive_noise(
    x: np.ndarray, sr: int, rng: np.random.RandomState, params: RawBoostParams | None = None
) -> np.ndarray:
    """LnL: linear and non-linear convolutive noise (float64 output, ``len(x)`` samples).

    ``y = sum_{i=1..N_f} fir_filter(x ** i, b_i)`` with ``b_i`` from
    :func:`notch_coefficients`; gain range ``[minG, maxG]`` dB for ``i = 1`` and
    ``[minG - minBiasLinNonLin, maxG - maxBiasLinNonLin]`` dB for ``i >= 2``.
    The mean is removed and ``y`` is divided by ``max|y|`` if that exceeds 1.
    ``sr`` in Hz. Makes ``N_f * (3 * nBands + 1)`` uniform draws.
    """
    x = _check_signal(x)
    _check_rng(rng)
    p = params if params is not None else RawBoostParams()
    y = np.zeros(x.shape[0], dtype=np.float64)
    min_g, max_g = p.minG, p.maxG
    for i in range(p.N_f):
        if i == 1:
            min_g = p.minG - p.minBiasLinNonLin
            max_g = p.maxG - p.maxBiasLinNonLin
        b = _notch(sr, rng, p, min_g, max_g)
        y = y + fir_filter(np.power(x, i + 1), b)
    y = y - np.mean(y)
    return norm_wav(y, always=False)


def isd_additive_noise(x: np.ndarray, rng: np.random.RandomState, params: RawBoostParams | None = None) -> np.ndarray:
    """ISD: impulsive signal-dependent additive noise (keeps the input dtype).

    ``beta ~ U(0, P)`` %; ``n = int(len(x) * beta / 100)`` random distinct sample
    positions get ``x[p] + g_sd * x[p] * (2u1 - 1) * (2u2 - 1)`` with
    ``u1, u2 ~ U[0, 1)``; then divided by ``max|y|`` if that exceeds 1.
    Draws: one uniform, one permutation of ``len(x)``, two ``rand(n)``.
    """
    x = _check_signal(x)
    _check_rng(rng)
    p = params if params is not None else RawBoostParams()
    beta = _uniform1(rng, 0, p.P)
    y = x.copy()
    length = x.shape[0]
    n = int((length * (beta / 100)).item())  # original: int(shape-(1,) array)
    pos = rng.permutation(length)[:n]
    f_r = (2 * rng.rand(pos.shape[0]) - 1) * (2 * rng.rand(pos.shape[0]) - 1)
    r = p.g_sd * x[pos] * f_r
    y[pos] = x[pos] + r
    return norm_wav(y, always=False)


def ssi_additive_noise(
    x: np.ndarray, sr: int, rng: np.random.RandomState, params: RawBoostParams | None = None
) -> np.ndarray:
    """SSI: stationary signal-independent additive noise (float64 output).

    White noise ``N(0, 1)`` of ``len(x)`` samples is filtered by a
    :func:`notch_coefficients` cascade (``sr`` in Hz, gain ``[minG, maxG]`` dB),
    peak-normalised, scaled to ``||x||_2 / 10 ** (SNR / 20)`` with
    ``SNR ~ U(SNRmin, SNRmax)`` dB, and added to ``x``.
    Draws: ``normal(0, 1, len(x))``, one notch design, one uniform.
    """
    x = _check_signal(x)
    _check_rng(rng)
    p = params if params is not None else RawBoostParams()
    noise = rng.normal(0, 1, x.shape[0])
    b = _notch(sr, rng, p, p.minG, p.maxG)
    noise = fir_filter(noise, b)
    noise = norm_wav(noise, always=True)
    snr_db = _uniform1(rng, p.SNRmin, p.SNRmax)  # kept as a shape-(1,) array on purpose
    noise = noise / np.linalg.norm(noise, 2) * np.linalg.norm(x, 2) / 10.0 ** (0.05 * snr_db)
    return x + noise


# --------------------------------------------------------------------------- public entry points


def _check_algo(algo: Any) -> int:
    if isinstance(algo, (bool, np.bool_)) or not isinstance(algo, numbers.Integral) or not 0 <= int(algo) <= 8:
        choices = ", ".join(f"{k}={v}" for k, v in ALGORITHMS.items())
        raise ValueError(f"RawBoost algo must be an int in 0..8 ({choices}), got {algo!r}")
    return int(algo)


def _resolve_params(params: RawBoostParams | None, overrides: dict) -> RawBoostParams:
    if params is not None and not isinstance(params, RawBoostParams):
        raise TypeError(f"params must be a RawBoostParams or None, got {type(params).__name__}")
    base = params if params is not None else RawBoostParams()
    return base.replace(**overrides) if overrides else base  # unknown names -> ValueError


def rawboost(
    x: np.ndarray,
    sr: int,
    algo: int,
    rng: np.random.RandomState,
    params: RawBoostParams | None = None,
    **overrides: Any,
) -> np.ndarray:
    """Apply RawBoost algorithm ``algo`` (0..8, see the module docstring) to a 1-D waveform.

    ``sr`` in Hz; ``rng`` is the ``np.random.RandomState`` all draws come from;
    ``params`` defaults to :class:`RawBoostParams` (the original ``main.py``
    defaults) and ``overrides`` replace individual fields, e.g.
    ``rawboost(x, 16000, 4, rng, SNRmin=5)``. Unknown parameter names or an
    ``algo`` outside 0..8 raise :class:`ValueError`. The input is never modified;
    algo 0 returns a copy. Output dtype as the original: float32 input gives
    float32 for algo 2 (ISD only) and float64 for algos 1, 3-8.
    """
    algo = _check_algo(algo)
    p = _resolve_params(params, overrides)
    x = _check_signal(x)
    _check_rng(rng)
    if algo == 0:
        return x.copy()
    if algo == 1:
        return lnl_convolutive_noise(x, sr, rng, p)
    if algo == 2:
        return isd_additive_noise(x, rng, p)
    if algo == 3:
        return ssi_additive_noise(x, sr, rng, p)
    if algo == 4:
        y = lnl_convolutive_noise(x, sr, rng, p)
        y = isd_additive_noise(y, rng, p)
        return ssi_additive_noise(y, sr, rng, p)
    if algo == 5:
        y = lnl_convolutive_noise(x, sr, rng, p)
        return isd_additive_noise(y, rng, p)
    if algo == 6:
        y = lnl_convolutive_noise(x, sr, rng, p)
        return ssi_additive_noise(y, sr, rng, p)
    if algo == 7:
        y = isd_additive_noise(x, rng, p)
        return ssi_additive_noise(y, sr, rng, p)
    # algo == 8: both branches see the original x; LnL draws first.
    y1 = lnl_convolutive_noise(x, sr, rng, p)
    y2 = isd_additive_noise(x, rng, p)
    return norm_wav(y1 + y2, always=False)


SeedLike = Union[None, int, np.ndarray]


class RawBoost:
    """Callable RawBoost augmentation with its own ``np.random.RandomState``.

    ``RawBoost(algo=4, sr=16000, params=None, seed=None, **overrides)``;
    ``aug(x)`` draws from the object's own RNG, ``aug(x, rng)`` from ``rng``.
    ``seed=None`` seeds from OS entropy.

    DataLoader use: a worker process receives a *copy* of this object, RNG state
    included, so without reseeding every worker would produce the same
    augmentations. Call :meth:`reseed` with a distinct seed in each worker
    (e.g. from a ``worker_init_fn``).
    """

    def __init__(
        self,
        algo: int = 4,
        sr: int = 16000,
        params: RawBoostParams | None = None,
        seed: SeedLike = None,
        **overrides: Any,
    ) -> None:
        self.algo = _check_algo(algo)
        self.sr = int(sr)
        self.params = _resolve_params(params, overrides)
        self.rng = np.random.RandomState(seed)

    def reseed(self, seed: SeedLike) -> None:
        """Re-seed the object's RNG (``seed`` as for ``np.random.RandomState``)."""
        self.rng.seed(seed)

    def __call__(self, x: np.ndarray, rng: np.random.RandomState | None = None) -> np.ndarray:
        return rawboost(x, self.sr, self.algo, self.rng if rng is None else rng, self.params)

    def __repr__(self) -> str:
        return f"RawBoost(algo={self.algo} [{ALGORITHMS[self.algo]}], sr={self.sr}, params={self.params!r})"
