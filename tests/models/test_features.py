"""Tests for dpda.models.features.LFCC against an independent numpy/scipy computation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import scipy.signal
import torch

from dpda.models.features import LFCC, dct_ii_matrix, linear_filter_bank


def reference_lfcc(
    x: np.ndarray,
    sr: int = 16000,
    win: int = 320,
    hop: int = 160,
    n_fft: int = 512,
    n_filters: int = 20,
    num_ceps: int = 20,
    min_freq: float = 0.0,
    max_freq: float = 1.0,
    with_energy: bool = False,
) -> np.ndarray:
    """LFCC + deltas of one waveform, float64, written from the definitions (frame loop, Hz-labelled trimf)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.empty_like(x)
    y[0] = x[0]
    y[1:] = x[1:] - 0.97 * x[:-1]
    # centred frames: zero-pad n_fft // 2 on each side, window centred in the n_fft frame
    padded = np.concatenate([np.zeros(n_fft // 2), y, np.zeros(n_fft // 2)])
    window = np.zeros(n_fft)
    offset = (n_fft - win) // 2
    window[offset : offset + win] = scipy.signal.get_window("hamming", win, fftbins=True)
    n_frames = 1 + len(y) // hop
    power = np.empty((n_frames, n_fft // 2 + 1))
    for t in range(n_frames):
        frame = padded[t * hop : t * hop + n_fft] * window
        power[t] = np.abs(np.fft.rfft(frame)) ** 2
    n_bins = n_fft // 2 + 1
    lo, hi = int(min_freq * n_bins), int(max_freq * n_bins)
    power = power[:, lo:hi]
    # triangular filters on a linear frequency axis spanning the kept band
    freqs = sr / 2 * np.linspace(min_freq, max_freq, hi - lo)
    edges = np.linspace(freqs[0], freqs[-1], n_filters + 2)
    fbank = np.zeros((hi - lo, n_filters))
    for j in range(n_filters):
        a, b, c = edges[j], edges[j + 1], edges[j + 2]
        for k, f in enumerate(freqs):
            if a < f < b:
                fbank[k, j] = (f - a) / (b - a)
            elif b <= f < c:
                fbank[k, j] = (c - f) / (c - b)
    eps = np.finfo(np.float32).eps
    ceps = scipy.fft.dct(np.log10(power @ fbank + eps), type=2, norm="ortho", axis=1)[:, :num_ceps]
    if with_energy:
        ceps[:, 0] = np.log10(power.sum(axis=1) / n_fft + eps)

    def delta(a: np.ndarray) -> np.ndarray:
        p = np.concatenate([a[:1], a, a[-1:]], axis=0)
        return p[2:] - p[:-2]

    d1 = delta(ceps)
    return np.concatenate([ceps, d1, delta(d1)], axis=1)


def _signal(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000.0
    return (0.1 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)


CONFIGS = {
    "plain-512": {},
    "asvspoof2021-lcnn": {"n_fft": 1024, "max_freq": 0.5, "with_energy": True},
    "band-limited": {"min_freq": 0.25, "max_freq": 0.75, "num_ceps": 13},
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_lfcc_matches_numpy_reference(name):
    cfg = CONFIGS[name]
    lfcc = LFCC(**cfg)
    xs = [_signal(16000, 1), _signal(16000, 2)]
    out = lfcc(torch.from_numpy(np.stack(xs))).numpy()
    ncep = cfg.get("num_ceps", 20)
    assert out.shape == (2, 101, 3 * ncep)
    assert out.dtype == np.float32
    for i, x in enumerate(xs):
        ref = reference_lfcc(x, **cfg)
        np.testing.assert_allclose(out[i], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("length", [2400, 16000, 16037, 24000])
def test_lfcc_shapes_variable_length(length):
    lfcc = LFCC()
    x = torch.from_numpy(np.stack([_signal(length, 3), _signal(length, 4)]))
    out = lfcc(x)
    assert out.shape == (2, 1 + length // 160, 60) == (2, lfcc.num_frames(length), lfcc.out_dim)
    assert torch.isfinite(out).all()
    # batched == one at a time
    torch.testing.assert_close(out[1:], lfcc(x[1:]), rtol=1e-5, atol=1e-5)


def test_lfcc_odd_length_matches_reference():
    x = _signal(16037, 5)
    out = LFCC()(torch.from_numpy(x)[None]).numpy()[0]
    np.testing.assert_allclose(out, reference_lfcc(x), rtol=1e-4, atol=1e-4)


def test_lfcc_options_and_buffers():
    lfcc = LFCC(with_delta=False)
    assert lfcc(torch.randn(1, 8000)).shape == (1, 51, 20)
    assert lfcc.out_dim == 20
    assert list(lfcc.parameters()) == []
    assert lfcc.state_dict() == {}  # buffers are non-persistent (derived from the config)
    assert {n for n, _ in lfcc.named_buffers()} == {"window", "fbank", "dct"}
    with pytest.raises(ValueError):
        LFCC(max_freq=1.5)
    with pytest.raises(ValueError):
        LFCC(num_ceps=30)


def test_filter_bank_and_dct_helpers():
    fb = linear_filter_bank(257, 20)
    assert fb.shape == (257, 20)
    assert np.all(fb >= 0) and np.all(fb.sum(axis=0) > 0)
    # interior bins are covered by exactly two overlapping triangles summing to one
    interior = fb[13:-13].sum(axis=1)
    np.testing.assert_allclose(interior, 1.0, atol=1e-12)
    d = dct_ii_matrix(20, 20)
    np.testing.assert_allclose(d @ d.T, np.eye(20), atol=1e-12)
    v = np.random.default_rng(0).standard_normal(20)
    np.testing.assert_allclose(d @ v, scipy.fft.dct(v, type=2, norm="ortho"), atol=1e-12)


def test_lfcc_autocast_and_input_gradient():
    lfcc = LFCC()
    x = torch.from_numpy(_signal(4000, 6))[None].requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lfcc(x)
    assert out.dtype == torch.float32  # computed in float32 with autocast disabled
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
