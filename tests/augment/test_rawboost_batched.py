"""Tests for the batched PyTorch RawBoost (:mod:`dpda.augment.rawboost.batched`).

* Distribution parity with the original: for the reference signals ``sine1s`` and
  ``short0p3s`` and algos 1..8, one call on a batch of the same input repeated
  ``n`` times is compared with the statistics of the original over 200 seeds
  (``rawboost_distribution_stats.json``): means within ``MEAN_Z`` combined standard
  errors; standard deviations within ``STD_RTOL`` (widened to ``STD_Z`` standard
  errors of the std ratio for heavy-tailed statistics, where 200 draws pin the
  std down only loosely; the standard error uses the kurtosis of our sample;
  not compared above ``MAX_KURTOSIS_FOR_STD``, see there); and the original's
  5/25/50/75/95 % quantiles located at the matching levels of our empirical CDF.
* Exactness of the deterministic parts: the notch design against
  ``scipy.signal.firwin``/``freqz``, the FIR alignment against the reference
  ``filterFIR``, and LnL fed with the original's random draws against the stored
  outputs of the original.
* API behaviour: determinism, per-row randomness, shapes/dtypes, no in-place
  modification, algo validation, half precision, the module wrapper.
* Devices: every algorithm on each device of :data:`tests.devices.DEVICES` (the CPU always, CUDA
  when a GPU is visible), and on the CPU under :func:`tests.devices.implicit_tensors_on_meta`, which
  fails on any tensor created without an explicit device (it would land off the input's device).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import scipy.signal
import torch

from dpda.augment.rawboost.batched import (
    BatchedRawBoost,
    band_stop_taps,
    fir_power_sum,
    max_taps,
    notch_cascade,
    rawboost_batched,
)
from dpda.augment.chain import RawBoostStep
from dpda.augment.rawboost.params import RawBoostParams
from tests.devices import assert_on, implicit_tensors_on_meta, on_devices

SR = 16000
SEED = 20240611
BATCH = {"sine1s": 600, "short0p3s": 1000}  # utterances per parity call
N_REF = 200  # seeds behind every statistic of the original
MEAN_Z = 4.0
STD_RTOL = 0.20
STD_Z = 3.5
# Above this kurtosis (of our sample) the std of the original's 200 draws depends on whether a few
# rare outliers happened to be drawn, and is not compared (the quantiles still are).  With the fixed
# seeds below this skips the std of: sine1s ISD (= algo 2) n_samples_changed and max_abs, sine1s
# algo 8 max_abs and corr_with_input, short0p3s algo 8 corr_with_input.  Example, sine1s algo 8
# corr_with_input: the original's std is 0.023 over the json's 200 seeds but 0.056 over 9000 other
# seeds (ours: 0.048 over 30000); sine1s ISD max_abs: 0.045 (json) vs 0.032 (12000 seeds; ours 0.030).
MAX_KURTOSIS_FOR_STD = 25.0
QUANTILES = {"q05": 0.05, "q25": 0.25, "q50": 0.5, "q75": 0.75, "q95": 0.95}
QUANTILE_Z = 4.0
# json function name -> algo; LnL/ISD/SSI are algos 1/2/3 (identical statistics in the json)
FUNCTIONS = {"LnL": 1, "ISD": 2, "SSI": 3, **{f"algo{i}": i for i in range(1, 9)}}


# --------------------------------------------------------------------------- fixtures / helpers


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a small shared machine OpenMP threads that wait for each other make
    the batched CPU path several times slower; the results do not depend on the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def rb_dir(reference_dir: Path) -> Path:
    d = reference_dir / "rawboost"
    if not (d / "rawboost_distribution_stats.json").is_file():
        pytest.skip(f"RawBoost reference statistics not found in {d}")
    return d


@pytest.fixture(scope="module")
def ref_stats(rb_dir: Path) -> Dict:
    with open(rb_dir / "rawboost_distribution_stats.json", encoding="utf-8") as fh:
        return json.load(fh)["signals"]


@pytest.fixture(scope="module")
def ref_npz(rb_dir: Path):
    with np.load(rb_dir / "rawboost_reference.npz") as z:
        return {k: z[k] for k in z.files}


def _output_stats(x: np.ndarray, y: np.ndarray) -> Dict[str, np.ndarray]:
    """Per-row statistics as in the json: energy ratio (dB), changed samples, peak, Pearson corr."""
    x64 = x.astype(np.float64)
    y64 = y.astype(np.float64)
    xc = x64 - x64.mean()
    yc = y64 - y64.mean(axis=1, keepdims=True)
    return {
        "energy_ratio_db": 10 * np.log10((y64**2).sum(axis=1) / (x64**2).sum()),
        "n_samples_changed": (y != x[None].astype(y.dtype)).sum(axis=1).astype(np.float64),
        "max_abs": np.abs(y64).max(axis=1),
        "corr_with_input": (yc @ xc) / np.sqrt((yc**2).sum(axis=1) * (xc**2).sum()),
    }


def _isd_selected(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ISD's selected count, recovered from the output: ``y = x * f / s`` with ``f = 1`` off the
    selected positions, so ``y / x`` equals the row's common ``1 / s`` there (the row median, as at
    most ``P = 10`` % of the samples are selected) and differs on the selected ones."""
    nz = x != 0
    r = y[:, nz].astype(np.float64) / x[nz].astype(np.float64)
    base = np.median(r, axis=1, keepdims=True)
    return (np.abs(r / base - 1) > 1e-5).sum(axis=1).astype(np.float64)


def _check(mine: np.ndarray, ref: Dict[str, float], t: int, label: str) -> List[str]:
    """Return the failed checks (empty when the statistic matches the original)."""
    n = len(mine)
    m = float(mine.mean())
    s = float(mine.std(ddof=1))
    if ref["std"] == 0:
        # Constant in the original: only "every sample changed" (LnL/SSI outputs are float64 there).
        # Our float32 output can round an addition below half an ulp back to the input sample
        # (about 1 sample in 10^5), so allow 0.1 % of the samples.
        if not np.all(np.abs(mine - ref["mean"]) <= 1e-3 * t):
            return [f"{label}: constant {ref['mean']} in the original, ours spans {mine.min()}..{mine.max()}"]
        return []
    errors = []
    # mean: within MEAN_Z combined standard errors
    sem = s / math.sqrt(n)
    z = (m - ref["mean"]) / math.hypot(sem, ref["sem"])
    if abs(z) > MEAN_Z:
        errors.append(f"{label}: mean {m:.5g} vs {ref['mean']:.5g} (z = {z:.2f})")
    # std: within STD_RTOL, or STD_Z standard errors of the ratio (normal approximation, from our kurtosis)
    kurt = float(np.mean((mine - m) ** 4) / max(s**4, 1e-300))
    if kurt <= MAX_KURTOSIS_FOR_STD:
        se_ratio = math.sqrt(max(kurt - 1, 0.0) / 4 * (1 / N_REF + 1 / n))
        tol = max(STD_RTOL, STD_Z * se_ratio)
        if abs(s / ref["std"] - 1) > tol:
            errors.append(f"{label}: std {s:.5g} vs {ref['std']:.5g} (ratio {s / ref['std']:.3f}, tol {tol:.3f})")
    # quantiles (distribution-free): the original's q_p must sit at our empirical CDF level p
    for key, prob in QUANTILES.items():
        if key not in ref:
            continue
        below = float(np.mean(mine < ref[key]))
        at_or_below = float(np.mean(mine <= ref[key]))
        tol = QUANTILE_Z * math.sqrt(prob * (1 - prob) * (1 / N_REF + 1 / n))
        if not below - tol <= prob <= at_or_below + tol:
            errors.append(f"{label}: original's {key} = {ref[key]:.5g} is at our CDF {below:.3f}..{at_or_below:.3f}")
    return errors


# --------------------------------------------------------------------------- distribution parity


@pytest.mark.parametrize("algo", range(1, 9))
@pytest.mark.parametrize("signal", ["sine1s", "short0p3s"])
def test_distribution_matches_original(signal: str, algo: int, ref_stats: Dict, ref_npz: Dict) -> None:
    x = ref_npz[f"input__{signal}"]
    t = x.shape[0]
    gen = torch.Generator().manual_seed(SEED + 100 * algo + len(signal))
    xb = torch.from_numpy(x).repeat(BATCH[signal], 1)
    y = rawboost_batched(xb, algo, gen, sr=SR).numpy()
    assert y.dtype == np.float32 and np.isfinite(y).all()
    stats = _output_stats(x, y)
    if algo == 2:
        stats["ISD_n_selected=int(len*beta/100)"] = _isd_selected(x, y)
        stats["ISD_fraction_selected"] = stats["ISD_n_selected=int(len*beta/100)"] / t
    if algo == 3:
        noise = y.astype(np.float64) - x.astype(np.float64)
        stats["SSI_SNR_dB_drawn"] = 10 * np.log10((x.astype(np.float64) ** 2).sum() / (noise**2).sum(axis=1))
    errors: List[str] = []
    checked = 0
    for fn, fn_algo in FUNCTIONS.items():
        if fn_algo != algo or fn not in ref_stats[signal]:
            continue
        for name, ref in ref_stats[signal][fn].items():
            assert name in stats, f"statistic {name!r} of {fn} not covered"
            errors += _check(stats[name], ref, t, f"{signal}/{fn}/{name}")
            checked += 1
    assert checked >= 4
    assert not errors, "\n".join(errors)


# --------------------------------------------------------------------------- deterministic parts


@pytest.mark.parametrize(
    "numtaps, f1, f2",
    [(11, 0.001, 550.0), (99, 3000.0, 3900.0), (51, 7450.0, 7999.999), (31, 1234.5, 1800.25), (1, 100.0, 200.0),
     (75, 20.0, 1020.0)],
)
def test_band_stop_design_matches_firwin(numtaps: int, f1: float, f2: float) -> None:
    frame = 99
    h = band_stop_taps(torch.tensor(f1, dtype=torch.float64), torch.tensor(f2, dtype=torch.float64),
                       torch.tensor(numtaps), SR, frame).numpy()
    expected = scipy.signal.firwin(numtaps, [f1, f2], window="hamming", fs=SR)  # pass_zero=True: band-stop
    pad = (frame - numtaps) // 2
    np.testing.assert_allclose(h[pad: pad + numtaps], expected, rtol=0, atol=1e-10)
    assert np.all(h[:pad] == 0) and np.all(h[pad + numtaps:] == 0)
    # the float32 copy the filters are applied with is within ~1e-7
    np.testing.assert_allclose(h[pad: pad + numtaps].astype(np.float32), expected, rtol=0, atol=1e-6)


def _random_cascade_params(rng: np.random.Generator, n: int):
    f1 = rng.uniform(20, 7000, (n, 5))
    f2 = np.minimum(f1 + rng.uniform(100, 1000, (n, 5)), 7999.999)
    c = rng.integers(5, 50, (n, 5)) * 2 + 1
    gain = rng.uniform(-20, 0, n)
    return f1, f2, c, gain


def _scipy_cascade(f1, f2, c, gain) -> np.ndarray:
    b = np.ones(1)
    for i in range(len(c)):
        b = np.convolve(scipy.signal.firwin(int(c[i]), [f1[i], f2[i]], window="hamming", fs=SR), b)
    _, h = scipy.signal.freqz(b, 1, fs=SR)
    return 10 ** (gain / 20) * b / np.max(np.abs(h))


def test_notch_cascade_and_fir_alignment_match_original() -> None:
    from dpda.augment.rawboost.reference import fir_filter

    rng = np.random.default_rng(7)
    f1, f2, c, gain = _random_cascade_params(rng, 3)
    taps = band_stop_taps(torch.from_numpy(f1), torch.from_numpy(f2), torch.from_numpy(c), SR, 99)
    b = notch_cascade(taps, torch.from_numpy(gain))  # (3, Lp), centred in the common frame
    assert b.shape == (3, 5 * 98 + 1)
    x = rng.standard_normal((3, 3000))
    for block in (None, 1024, 2048, 8192):  # overlap-save with several block lengths, incl. a single block
        y = fir_power_sum(torch.from_numpy(x), b.unsqueeze(1), block=block).numpy()
        for r in range(3):
            expected_b = _scipy_cascade(f1[r], f2[r], c[r], gain[r])
            off = (b.shape[-1] - expected_b.size) // 2
            np.testing.assert_allclose(b[r, off: off + expected_b.size].numpy(), expected_b, rtol=0, atol=1e-12)
            np.testing.assert_allclose(y[r], fir_filter(x[r], expected_b), rtol=0, atol=1e-10)
    # float32 path
    y32 = fir_power_sum(torch.from_numpy(x).float(), b.float().unsqueeze(1)).numpy()
    for r in range(3):
        expected = fir_filter(x[r], _scipy_cascade(f1[r], f2[r], c[r], gain[r]))
        np.testing.assert_allclose(y32[r], expected, rtol=0, atol=2e-5 * np.abs(expected).max())


@pytest.mark.parametrize("signal", ["sine1s", "short0p3s"])
def test_lnl_with_original_draws_reproduces_original_output(signal: str, ref_npz: Dict) -> None:
    """Feed LnL's batched math the random values the original draws (legacy RandomState, in its
    order) and compare with the original's stored output: only float rounding remains."""
    p = RawBoostParams()
    x = ref_npz[f"input__{signal}"]
    for seed in (0, 1, 2):
        rs = np.random.RandomState(seed)
        f1 = np.zeros((p.N_f, p.nBands))
        f2 = np.zeros_like(f1)
        c = np.zeros((p.N_f, p.nBands), dtype=np.int64)
        gain = np.zeros(p.N_f)
        for i in range(p.N_f):
            lo, hi = (p.minG, p.maxG) if i == 0 else (p.minG - p.minBiasLinNonLin, p.maxG - p.maxBiasLinNonLin)
            for k in range(p.nBands):
                fc = rs.uniform(p.minF, p.maxF, (1,))[0]
                bw = rs.uniform(p.minBW, p.maxBW, (1,))[0]
                n = int(rs.uniform(p.minCoeff, p.maxCoeff, (1,))[0])
                c[i, k] = n + 1 if n % 2 == 0 else n
                f1[i, k] = fc - bw / 2 if fc - bw / 2 > 0 else 1e-3
                f2[i, k] = fc + bw / 2 if fc + bw / 2 < SR / 2 else SR / 2 - 1e-3
            gain[i] = rs.uniform(lo, hi, (1,))[0]
        taps = band_stop_taps(torch.from_numpy(f1), torch.from_numpy(f2), torch.from_numpy(c), SR, max_taps(p))
        b = notch_cascade(taps, torch.from_numpy(gain)).unsqueeze(0)  # (1, N_f, Lp)
        y = fir_power_sum(torch.from_numpy(x.astype(np.float64))[None], b)[0].numpy()
        y = y - y.mean()
        y = y / np.abs(y).max() if np.abs(y).max() > 1 else y
        expected = ref_npz[f"out__LnL__{signal}__seed{seed}"]
        # the original raises the float32 input to the powers in float32: ~1e-8 differences
        np.testing.assert_allclose(y, expected, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- API behaviour


def _speechish(b: int, t: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    tt = torch.arange(t) / SR
    return (0.4 * torch.sin(2 * math.pi * 220 * tt) + 0.05 * torch.randn(b, t, generator=g)).float()


@pytest.mark.parametrize("algo", range(0, 9))
def test_shape_dtype_determinism_and_no_inplace(algo: int) -> None:
    x = _speechish(4, 4000)
    x_before = x.clone()
    y1 = rawboost_batched(x, algo, torch.Generator().manual_seed(3))
    y2 = rawboost_batched(x, algo, torch.Generator().manual_seed(3))
    assert torch.equal(x, x_before)
    assert y1.shape == x.shape and y1.dtype == x.dtype and y1.device == x.device
    assert torch.isfinite(y1).all()
    assert torch.equal(y1, y2)
    if algo == 0:
        assert torch.equal(y1, x) and y1.data_ptr() != x.data_ptr()
    else:
        assert not torch.equal(y1, x)
        y3 = rawboost_batched(x, algo, torch.Generator().manual_seed(4))
        assert not torch.equal(y1, y3)


@pytest.mark.parametrize("algo", range(1, 9))
def test_rows_of_identical_inputs_differ(algo: int) -> None:
    x = _speechish(1, 3000).repeat(6, 1)
    y = rawboost_batched(x, algo, torch.Generator().manual_seed(11))
    for i in range(6):
        for j in range(i + 1, 6):
            assert not torch.equal(y[i], y[j]), (i, j)


def test_generator_state_advances_and_default_generator() -> None:
    x = _speechish(2, 2000)
    g = torch.Generator().manual_seed(5)
    a = rawboost_batched(x, 4, g)
    b = rawboost_batched(x, 4, g)
    assert not torch.equal(a, b)
    torch.manual_seed(9)
    c = rawboost_batched(x, 4)
    torch.manual_seed(9)
    assert torch.equal(c, rawboost_batched(x, 4))


@pytest.mark.parametrize("bad", [9, -1, 1.0, True, "4", None])
def test_invalid_algo_raises(bad) -> None:
    with pytest.raises(ValueError):
        rawboost_batched(_speechish(1, 100), bad)
    with pytest.raises(ValueError):
        BatchedRawBoost(algo=bad)


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError):
        rawboost_batched(torch.zeros(100), 4)  # not (B, T)
    with pytest.raises(TypeError):
        rawboost_batched(torch.zeros(2, 100, dtype=torch.int16), 4)
    with pytest.raises(TypeError):
        rawboost_batched(_speechish(1, 100), 4, params={"N_f": 3})


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes(dtype: torch.dtype) -> None:
    x = _speechish(3, 3000).to(dtype)
    for algo in (1, 4, 8):
        y = rawboost_batched(x, algo, torch.Generator().manual_seed(1))
        assert y.dtype == dtype and y.shape == x.shape
        assert torch.isfinite(y).all()
        ref = rawboost_batched(x.float(), algo, torch.Generator().manual_seed(1))
        tol = 1e-6 if dtype == torch.float64 else 2e-2
        assert torch.allclose(y.float(), ref, atol=tol, rtol=0)  # computed in float32 either way


@pytest.mark.parametrize("t", [1, 7, 150, 600])
def test_short_inputs(t: int) -> None:
    x = _speechish(3, t)
    for algo in range(1, 9):
        y = rawboost_batched(x, algo, torch.Generator().manual_seed(2))
        assert y.shape == x.shape and torch.isfinite(y).all()
    assert rawboost_batched(x[:0], 4).shape == (0, t)


def test_isd_count_is_exact_and_bounded() -> None:
    # small amplitude: no peak renormalisation, so exactly the selected samples change
    x = 0.01 * _speechish(200, 5000)
    g = torch.Generator().manual_seed(8)
    y = rawboost_batched(x, 2, g)
    changed = (y != x).sum(dim=1)
    assert int(changed.max()) <= int(5000 * RawBoostParams().P / 100)
    frac = changed.double().mean().item() / 5000
    assert abs(frac - 0.05) < 0.01  # beta ~ U(0, 10) %
    # P = 0 selects nothing
    y0 = rawboost_batched(x, 2, g, params=RawBoostParams(P=0))
    assert torch.equal(y0, x)


def test_params_are_used() -> None:
    x = _speechish(64, 4000)
    g = torch.Generator().manual_seed(0)
    quiet = RawBoostParams(SNRmin=60, SNRmax=60)
    y = rawboost_batched(x, 3, g, params=quiet)
    snr = 10 * torch.log10((x.double() ** 2).sum(1) / ((y.double() - x.double()) ** 2).sum(1))
    assert torch.allclose(snr, torch.full_like(snr, 60.0), atol=0.05)
    # fixed tap counts, a single band, even/odd maxCoeff: runs and differs from the defaults
    for p in (RawBoostParams(minCoeff=31, maxCoeff=31, nBands=1), RawBoostParams(maxCoeff=101), RawBoostParams(N_f=1)):
        out = rawboost_batched(x, 1, torch.Generator().manual_seed(0), params=p)
        assert torch.isfinite(out).all()
    assert max_taps(RawBoostParams()) == 99 and max_taps(RawBoostParams(maxCoeff=101)) == 101


def test_module_wrapper() -> None:
    x = _speechish(4, 3000)
    m1 = BatchedRawBoost(algo=4, seed=123)
    m2 = BatchedRawBoost(algo=4, seed=123)
    a = m1(x)
    assert torch.equal(a, m2(x))
    assert torch.equal(a, rawboost_batched(x, 4, torch.Generator().manual_seed(123)))
    assert not torch.equal(a, m1(x))  # the generator advances
    m1.reseed(123)
    assert torch.equal(a, m1(x))
    assert "algo=4" in repr(m1)
    assert list(m1.parameters()) == [] and m1.state_dict() == {}
    torch.manual_seed(1)
    u = BatchedRawBoost(algo=2)(x)  # unseeded: default generator
    torch.manual_seed(1)
    assert torch.equal(u, BatchedRawBoost(algo=2)(x))


@on_devices
def test_every_algo_runs_on_the_device_of_its_input(device: str) -> None:
    x = _speechish(4, 16000).to(device)
    for algo in range(0, 9):
        y = rawboost_batched(x, algo, torch.Generator(device=device).manual_seed(0))
        assert y.device == x.device and y.shape == x.shape and torch.isfinite(y).all()
        assert torch.equal(y, rawboost_batched(x, algo, torch.Generator(device=device).manual_seed(0)))
    half = rawboost_batched(x.half(), 4, torch.Generator(device=device).manual_seed(0))
    assert half.dtype == torch.float16 and half.device == x.device
    # a generator on another device is refused (on a CPU-only machine: a CPU generator, a meta input)
    foreign = x if x.device.type != "cpu" else torch.empty(x.shape, device="meta")
    with pytest.raises(ValueError, match="same device"):
        rawboost_batched(foreign, 4, torch.Generator(device="cpu").manual_seed(0))


@on_devices
def test_module_keeps_one_generator_per_device(device: str) -> None:
    x = _speechish(2, 3000).to(device)
    m = BatchedRawBoost(algo=4, seed=1)
    first = m(x)
    assert first.device == x.device
    assert m.generator(x.device).device.type == torch.device(device).type
    assert not torch.equal(first, m(x))  # that generator advances
    m.reseed(1)
    assert torch.equal(first, m(x))
    assert torch.equal(first, rawboost_batched(x, 4, torch.Generator(device=device).manual_seed(1)))


@pytest.mark.parametrize("algo", range(0, 9))
def test_creates_no_tensor_off_the_input_device(algo: int) -> None:
    x = _speechish(3, 4000)
    expected = rawboost_batched(x, algo, torch.Generator(device="cpu").manual_seed(6))
    with implicit_tensors_on_meta():
        y = rawboost_batched(x, algo, torch.Generator(device="cpu").manual_seed(6))
    assert_on("cpu", y)
    assert torch.equal(y, expected)


def test_default_generator_module_and_chain_step_under_the_guard() -> None:
    """The other entry points to the batched path: PyTorch's default generator, the seeded module and
    the chain's ``RawBoostStep.apply_batch`` (the only chain step that works on torch tensors)."""
    x = _speechish(2, 3000)
    step = RawBoostStep(algo=5)
    torch.manual_seed(3)
    expected = [rawboost_batched(x, 4), BatchedRawBoost(algo=8, seed=2)(x), step.apply_batch(x)]
    torch.manual_seed(3)
    with implicit_tensors_on_meta():
        got = [rawboost_batched(x, 4), BatchedRawBoost(algo=8, seed=2)(x), step.apply_batch(x)]
    assert_on("cpu", *got)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
