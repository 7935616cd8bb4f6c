"""Tests for dpda.audio.crop: fixed-length padding, cropping and windowing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpda.audio import (
    AASIST_NUM_SAMPLES,
    DPDA_NUM_SAMPLES,
    pad_or_crop,
    random_crop,
    sliding_windows,
)


def _both(values, dtype=np.float32):
    a = np.asarray(values, dtype=dtype)
    return [a, torch.from_numpy(a.copy())]


def _np(x):
    return x.numpy() if isinstance(x, torch.Tensor) else x


def test_constants():
    assert AASIST_NUM_SAMPLES == 64600
    assert DPDA_NUM_SAMPLES == 66800


@pytest.mark.parametrize("x", _both([1, 2, 3]))
def test_pad_repeat_exact(x):
    y = pad_or_crop(x, 8)
    assert type(y) is type(x) and y.dtype == x.dtype
    np.testing.assert_array_equal(_np(y), [1, 2, 3, 1, 2, 3, 1, 2])


@pytest.mark.parametrize("x", _both([1, 2, 3]))
def test_pad_zero_exact(x):
    y = pad_or_crop(x, 6, mode="zero")
    assert type(y) is type(x) and y.dtype == x.dtype
    np.testing.assert_array_equal(_np(y), [1, 2, 3, 0, 0, 0])


@pytest.mark.parametrize("x", _both(np.arange(10)))
@pytest.mark.parametrize("mode", ["repeat", "zero"])
def test_crop_takes_first_n(x, mode):
    y = pad_or_crop(x, 4, mode=mode)
    np.testing.assert_array_equal(_np(y), [0, 1, 2, 3])
    np.testing.assert_array_equal(_np(pad_or_crop(x, 10, mode=mode)), np.arange(10))


def test_pad_matches_aasist_convention():
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    n = AASIST_NUM_SAMPLES
    np.testing.assert_array_equal(pad_or_crop(x, n), np.tile(x, n // 1000 + 1)[:n])


def test_result_does_not_alias_input():
    x = np.arange(10, dtype=np.float32)
    y = pad_or_crop(x, 4)
    y[0] = 99
    assert x[0] == 0
    t = torch.arange(10.0)
    pad_or_crop(t, 4)[0] = 99
    assert t[0] == 0


@pytest.mark.parametrize("x", _both(np.arange(5)))
def test_invalid_arguments(x):
    for fn in (pad_or_crop, random_crop, sliding_windows):
        with pytest.raises(ValueError, match="n_samples"):
            fn(x, 0)
        with pytest.raises(ValueError, match="n_samples"):
            fn(x, -3)
        with pytest.raises(ValueError, match="empty"):
            fn(x[:0], 4)
        with pytest.raises(ValueError, match="1-D"):
            fn(x.reshape(1, -1), 4)
    with pytest.raises(ValueError, match="mode"):
        pad_or_crop(x, 4, mode="reflect")
    with pytest.raises(ValueError, match="hop"):
        sliding_windows(x, 2, hop=0)


def test_random_crop_deterministic_numpy():
    x = np.arange(1000, dtype=np.float32)
    a = random_crop(x, 100, np.random.default_rng(7))
    b = random_crop(x, 100, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    # a contiguous slice of the input
    assert a.shape == (100,) and np.all(np.diff(a) == 1)
    starts = {int(random_crop(x, 100, np.random.default_rng(s))[0]) for s in range(20)}
    assert len(starts) > 10
    assert all(0 <= s <= 900 for s in starts)


def test_random_crop_deterministic_torch():
    x = torch.arange(1000, dtype=torch.float32)
    a = random_crop(x, 100, torch.Generator().manual_seed(3))
    b = random_crop(x, 100, torch.Generator().manual_seed(3))
    assert isinstance(a, torch.Tensor) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert torch.all(torch.diff(a) == 1)
    starts = {int(random_crop(x, 100, torch.Generator().manual_seed(s))[0]) for s in range(20)}
    assert len(starts) > 10
    # a numpy generator also works for tensors
    c = random_crop(x, 100, np.random.default_rng(1))
    assert isinstance(c, torch.Tensor) and c.shape == (100,)


def test_random_crop_reaches_both_ends():
    x = np.arange(12, dtype=np.float32)
    rng = np.random.default_rng(0)
    firsts = {int(random_crop(x, 10, rng)[0]) for _ in range(200)}
    assert firsts == {0, 1, 2}


@pytest.mark.parametrize("x", _both([1, 2, 3]))
def test_random_crop_short_repeat_pads(x):
    y = random_crop(x, 7, np.random.default_rng(0))
    assert type(y) is type(x)
    np.testing.assert_array_equal(_np(y), [1, 2, 3, 1, 2, 3, 1])
    np.testing.assert_array_equal(_np(random_crop(x, 3, np.random.default_rng(0))), [1, 2, 3])


@pytest.mark.parametrize("x", _both(np.arange(10)))
def test_sliding_windows_cover_tail(x):
    w = sliding_windows(x, 4)
    assert type(w) is type(x) and w.dtype == x.dtype
    np.testing.assert_array_equal(_np(w), [[0, 1, 2, 3], [4, 5, 6, 7], [6, 7, 8, 9]])


@pytest.mark.parametrize("x", _both(np.arange(10)))
def test_sliding_windows_hop(x):
    w = _np(sliding_windows(x, 4, hop=3))
    np.testing.assert_array_equal(w, [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]])
    w = _np(sliding_windows(x, 4, hop=2))
    np.testing.assert_array_equal(w[:, 0], [0, 2, 4, 6])
    np.testing.assert_array_equal(w[-1], [6, 7, 8, 9])


@pytest.mark.parametrize("x", _both(np.arange(8)))
def test_sliding_windows_exact_multiple(x):
    np.testing.assert_array_equal(_np(sliding_windows(x, 4)), [[0, 1, 2, 3], [4, 5, 6, 7]])
    np.testing.assert_array_equal(_np(sliding_windows(x, 8)), [np.arange(8)])


@pytest.mark.parametrize("x", _both([1, 2, 3]))
def test_sliding_windows_short_signal(x):
    w = sliding_windows(x, 5)
    assert tuple(w.shape) == (1, 5)
    np.testing.assert_array_equal(_np(w), [[1, 2, 3, 1, 2]])


def test_sliding_windows_every_sample_covered():
    for length in (16, 17, 64, 100):
        for hop in (1, 3, 7, 16):
            x = np.arange(length)
            w = sliding_windows(x, 16, hop=hop)
            assert w.shape[1] == 16
            assert set(w.ravel().tolist()) == set(range(length))
            assert w[-1, -1] == length - 1
