"""Bit-exact parity of dpda's RawBoost with the original implementation.

The reference outputs (``rawboost/rawboost_reference.npz`` in the shared
reference folder) were produced by the original RawBoost after
``np.random.seed(k)``; we replay them with ``np.random.RandomState(k)`` and
require identical arrays (``np.array_equal``, same dtype) -- no tolerance --
and the same MT19937 position (and cached-Gaussian flag) after the call.
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
def test_bit_exact_against_original(reference, key):
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
    assert np.array_equal(y, expected), f"max |diff| = {np.max(np.abs(y - expected))}"
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
