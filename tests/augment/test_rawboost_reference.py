"""Parity of dpda's RawBoost with the original implementation: the same draws, the same values.

The reference outputs (``rawboost/rawboost_reference.npz`` in the shared
reference folder) were produced by the original RawBoost (NumPy 2.3.5) after
``np.random.seed(k)``; we replay them with ``np.random.RandomState(k)`` and require

* exactly: the same dtype and shape, the same MT19937 position and cached-Gaussian
  flag after the call (so the same random draws, in the same order), an unmodified input;
* the values to within :data:`ULPS` units in the last place of the output's peak
  ``max |ref|`` (see :func:`tolerance` for the precision that unit is taken in).

Why not bit for bit: NumPy's transcendental kernels (``power``, ``exp``, the
``sin``/``cos`` behind SciPy's ``firwin``/``freqz``) are vectorised per CPU and
accurate to a few ULP, not correctly rounded, so their last bits depend on the
NumPy build and the CPU it runs on. Measured: on a GPU machine with NumPy 2.5.2,
56 of the 77 outputs differed by 5.6e-17 .. 4.4e-16; here (NumPy 2.4.6, AVX-512)
all 77 are identical, and with the AVX2/AVX-512 kernels switched off
(``NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR"``) 47 differ:
the outputs without LnL by at most 1 ULP of their peak, those with LnL by
up to 1.35e-8 (0.11 float32 ULP of the peak) because ``x ** 3 .. x ** 5`` of the
float32 input change in their last float32 bit. OpenBLAS is the other source:
SSI scales its noise by ``np.linalg.norm(x, 2)``, a float32 BLAS dot for a
float32 input, whose summation order is the CPU kernel's. With the AVX-512
kernels (SkylakeX) all 77 are identical; with the Haswell kernels (any AVX2 CPU
without AVX-512, or ``OPENBLAS_CORETYPE=Haswell`` as set on an AMD EPYC machine
here, 2026-12-02) the outputs with SSI on the float32 input differ by up to
1.5e-8 (0.51 float32 ULP of the peak) and those with LnL by up to 7 float64 ULP
(Prescott kernels). A real deviation is far larger: replaying with another seed
changes every output by at least 0.029.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dpda.augment.rawboost.params import RawBoostParams
from dpda.augment.rawboost.reference import (
    RawBoost,
    isd_additive_noise,
    lnl_convolutive_noise,
    rawboost,
    ssi_additive_noise,
)

SR = 16000
FUNCS = ["LnL", "ISD", "SSI"] + [f"algo{k}" for k in range(1, 9)]
SIGNAL_SEEDS = {"sine1s": (0, 1, 2), "rand4s": (0,), "short0p3s": (0, 1, 2)}
#: every stored output: 11 functions x 7 (signal, seed) pairs = 77
OUTPUT_KEYS = [f"out__{fn}__{sig}__seed{s}" for fn in FUNCS for sig, seeds in SIGNAL_SEEDS.items() for s in seeds]
#: functions that apply LnL to the input, i.e. raise it to the powers 1..N_f in its own dtype
WITH_LNL = {"LnL", "algo1", "algo4", "algo5", "algo6", "algo8"}
#: functions whose SSI takes the norm of the float32 input (or of ISD's float32 output) in float32
WITH_SSI_ON_INPUT = {"SSI", "algo3", "algo7"}
#: functions whose output inherits rounding of the input's precision (float32 here)
IN_INPUT_PRECISION = WITH_LNL | WITH_SSI_ON_INPUT
#: accepted max |y - ref|, in ULP of the output's peak (see :func:`tolerance`). Seen between NumPy
#: builds: 4.4e-16 at most on the GPU machine, i.e. at most 8 float64 ULP of any stored output's
#: peak (all >= 0.28); 1 ULP and 0.11 float32 ULP with the SIMD kernels switched off (module
#: docstring); 0.51 float32 ULP with OpenBLAS's Haswell kernels. 16 ULP is 9e-16 .. 2e-6 absolute;
#: another seed changes every output by >= 0.029.
ULPS = 16


@pytest.fixture(scope="module")
def reference(reference_dir: Path):
    folder = reference_dir / "rawboost"
    with np.load(folder / "rawboost_reference.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads((folder / "rawboost_reference.json").read_text())
    return arrays, meta


def _run(fn: str, x: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    if fn == "LnL":
        return lnl_convolutive_noise(x, SR, rng)
    if fn == "ISD":
        return isd_additive_noise(x, rng)
    if fn == "SSI":
        return ssi_additive_noise(x, SR, rng)
    return rawboost(x, SR, int(fn[len("algo") :]), rng)


def tolerance(fn: str, x: np.ndarray, ref: np.ndarray) -> float:
    """Largest ``max |y - ref|`` accepted for function ``fn`` of input ``x`` with reference output ``ref``.

    :data:`ULPS` units in the last place of ``max |ref|``, in the precision the
    output is computed in: the output's dtype, except for the functions with
    LnL, which raise the input to powers in the input's dtype (float32 here),
    and those whose SSI scales by the input's norm, a float32 BLAS dot, so that
    a last-bit difference of ``x ** k`` or of ``||x||_2`` reaches the float64
    output.
    """
    precision = x.dtype if fn in IN_INPUT_PRECISION else ref.dtype
    peak = np.max(np.abs(ref)).astype(precision)
    return float(ULPS * np.spacing(peak))


def _signal(n: int = 4800, seed: int = 3) -> np.ndarray:
    t = np.arange(n) / SR
    noise = np.random.default_rng(seed).standard_normal(n)
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.02 * noise).astype(np.float32)


def test_reference_holds_exactly_the_expected_outputs(reference):
    arrays, meta = reference
    assert sorted(k for k in arrays if k.startswith("out__")) == sorted(OUTPUT_KEYS)
    assert meta["sr"] == SR
    assert meta["args"] == RawBoostParams().as_dict()


@pytest.mark.parametrize("key", OUTPUT_KEYS)
def test_same_draws_as_original_and_values_within_ulps(reference, key):
    arrays, meta = reference
    _, fn, sig, seed = key.split("__")
    x = arrays[f"input__{sig}"]
    x_before = x.copy()
    rng = np.random.RandomState(int(seed[len("seed") :]))
    y = _run(fn, x, rng)
    expected = arrays[key]
    info = meta["outputs"][key[len("out__") :]]
    assert y.dtype == expected.dtype == np.dtype(info["dtype"])
    assert y.shape == expected.shape
    diff = float(np.max(np.abs(y.astype(np.float64) - expected.astype(np.float64))))
    tol = tolerance(fn, x, expected)
    assert diff <= tol, f"max |y - ref| = {diff:.3g} > {tol:.3g} ({ULPS} ULP of the peak)"
    state = rng.get_state()
    assert state[2] == info["mt_pos_after"]
    assert state[3] == info["has_gauss_after"]
    np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("algo", range(9))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_input_not_modified_and_global_rng_untouched(algo, dtype):
    x = _signal().astype(dtype)
    x_before = x.copy()
    global_before = np.random.get_state()
    y = rawboost(x, SR, algo, np.random.RandomState(7))
    np.testing.assert_array_equal(x, x_before)
    assert y is not x and y.shape == x.shape
    global_after = np.random.get_state()
    assert global_after[2] == global_before[2] and np.array_equal(global_after[1], global_before[1])


def test_algo0_returns_equal_copy_and_draws_nothing():
    x = _signal()
    rng = np.random.RandomState(0)
    pos = rng.get_state()[2]
    y = rawboost(x, SR, 0, rng)
    assert np.array_equal(y, x) and y.dtype == x.dtype and y is not x
    assert rng.get_state()[2] == pos


@pytest.mark.parametrize("algo", [9, -1, 2.0, "4", True, None])
def test_bad_algo_raises(algo):
    with pytest.raises(ValueError, match=r"algo must be an int in 0\.\.8"):
        rawboost(_signal(), SR, algo, np.random.RandomState(0))
    with pytest.raises(ValueError, match=r"algo must be an int in 0\.\.8"):
        RawBoost(algo=algo)


def test_numpy_integer_algo_accepted():
    x = _signal()
    a = rawboost(x, SR, np.int64(2), np.random.RandomState(1))
    b = rawboost(x, SR, 2, np.random.RandomState(1))
    assert np.array_equal(a, b)


def test_unknown_parameter_raises():
    with pytest.raises(ValueError, match="unknown RawBoost parameter.*SNR_min"):
        rawboost(_signal(), SR, 3, np.random.RandomState(0), SNR_min=5)
    with pytest.raises(ValueError, match="unknown RawBoost parameter"):
        RawBoost(algo=3, snr=5)


def test_bad_inputs_raise():
    with pytest.raises(TypeError, match="RandomState"):
        rawboost(_signal(), SR, 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="1-D"):
        rawboost(np.zeros((2, 100), np.float32), SR, 1, np.random.RandomState(0))
    with pytest.raises(ValueError, match="non-empty"):
        rawboost(np.zeros(0, np.float32), SR, 2, np.random.RandomState(0))
    with pytest.raises(TypeError, match="floating-point"):
        rawboost(np.zeros(100, np.int16), SR, 2, np.random.RandomState(0))


def test_overrides_change_output():
    x = _signal()
    default = rawboost(x, SR, 3, np.random.RandomState(0))
    quiet = rawboost(x, SR, 3, np.random.RandomState(0), SNRmin=100, SNRmax=100)
    assert not np.array_equal(default, quiet)
    # at 100 dB SNR the added noise is 1e-5 of the signal's norm
    assert np.linalg.norm(quiet - x) == pytest.approx(1e-5 * np.linalg.norm(x), rel=1e-6)
    assert np.linalg.norm(default - x) > 1e-3 * np.linalg.norm(x)
    # overrides == the same values passed through params; overrides apply on top of params
    via_params = rawboost(x, SR, 3, np.random.RandomState(0), RawBoostParams(SNRmin=100, SNRmax=100))
    assert np.array_equal(quiet, via_params)
    on_top = rawboost(x, SR, 3, np.random.RandomState(0), RawBoostParams(SNRmin=1), SNRmin=100, SNRmax=100)
    assert np.array_equal(quiet, on_top)


def test_isd_override_p_zero_is_identity_up_to_normalisation():
    x = _signal()
    y = rawboost(x, SR, 2, np.random.RandomState(3), P=0)
    assert y.dtype == np.float32 and np.array_equal(y, x)


def test_rawboost_object_seeding():
    x = _signal()
    aug = RawBoost(algo=4, sr=SR, seed=0)
    first = aug(x)
    assert np.array_equal(first, rawboost(x, SR, 4, np.random.RandomState(0)))
    second = aug(x)
    assert not np.array_equal(first, second)  # the object's RNG advances
    aug.reseed(0)
    assert np.array_equal(aug(x), first)
    # an explicit rng is used instead of (and does not advance) the object's own
    aug.reseed(0)
    own_pos = aug.rng.get_state()[2]
    assert np.array_equal(aug(x, np.random.RandomState(0)), first)
    assert aug.rng.get_state()[2] == own_pos
    assert "LnL -> ISD -> SSI" in repr(aug)


def test_rawboost_object_overrides():
    x = _signal()
    aug = RawBoost(algo=3, seed=5, SNRmin=100, SNRmax=100)
    assert aug.params.SNRmin == 100
    assert np.array_equal(aug(x), rawboost(x, SR, 3, np.random.RandomState(5), SNRmin=100, SNRmax=100))


def test_tolerance_is_a_few_ulp_of_the_peak_in_the_working_precision():
    x32 = np.array([0.25, -0.5], dtype=np.float32)
    ref64 = np.array([0.75, -1.5])  # peak 1.5: float64 ULP 2**-52, float32 ULP 2**-23
    assert tolerance("algo2", x32, ref64) == ULPS * 2.0**-52  # ISD only: in neither set, so the output's dtype
    assert tolerance("SSI", x32, ref64) == ULPS * 2.0**-23  # the norm of the float32 input
    assert tolerance("algo4", x32, ref64) == ULPS * 2.0**-23
    assert tolerance("SSI", x32.astype(np.float64), ref64) == ULPS * 2.0**-52
    assert tolerance("ISD", x32, ref64.astype(np.float32)) == ULPS * 2.0**-23
    assert tolerance("LnL", x32.astype(np.float64), ref64) == ULPS * 2.0**-52
