"""Logistic score calibration (prior-weighted, regularised Newton)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dpda.metrics.calibration import calibrated_probability, fit_logistic_calibration


def logistic_data(a: float, b: float, n: int = 100_000, seed: int = 0):
    rng = np.random.default_rng(seed)
    s = rng.normal(0.5, 2.5, n)
    bona = rng.random(n) < 1.0 / (1.0 + np.exp(-(a * s + b)))
    return s[bona], s[~bona]


def test_recovers_known_parameters():
    bona, spoof = logistic_data(1.7, -0.8)
    a, b = fit_logistic_calibration(bona, spoof, prior=None)
    assert a == pytest.approx(1.7, rel=0.03) and b == pytest.approx(-0.8, abs=0.05)
    # the empirical prior as weight is the unweighted fit
    pi = bona.size / (bona.size + spoof.size)
    assert fit_logistic_calibration(bona, spoof, prior=pi) == pytest.approx((a, b), rel=1e-6)
    # prior 0.5 shifts the intercept by the log prior odds: a*s+b becomes a log-likelihood ratio
    a5, b5 = fit_logistic_calibration(bona, spoof, prior=0.5)
    assert a5 == pytest.approx(a, rel=0.02)
    assert b5 == pytest.approx(b - math.log(pi / (1 - pi)), abs=0.03)


def test_invariant_to_score_scale_and_shift():
    bona, spoof = logistic_data(1.0, 0.3, n=20_000, seed=1)
    a, b = fit_logistic_calibration(bona, spoof)
    a2, b2 = fit_logistic_calibration(100 * bona + 7, 100 * spoof + 7)
    s = np.linspace(-5, 5, 11)
    np.testing.assert_allclose(calibrated_probability(100 * s + 7, a2, b2), calibrated_probability(s, a, b), atol=1e-6)


def test_separable_data_stays_finite():
    for scale in (1.0, 1e6):
        a, b = fit_logistic_calibration(scale * np.array([1.0, 2.0, 3.0]), scale * np.array([-1.0, -2.0, -3.0]))
        assert math.isfinite(a) and math.isfinite(b) and a > 0
        assert calibrated_probability(2.0 * scale, a, b) > 0.99 and calibrated_probability(-2.0 * scale, a, b) < 0.01
    a, b = fit_logistic_calibration([1.0, 1.0], [1.0, 1.0])  # no information: P = prior
    assert a == 0.0 and calibrated_probability(1.0, a, b) == pytest.approx(0.5)


def test_probability_is_monotonic_stable_and_shaped():
    s = np.linspace(-1e4, 1e4, 2001)
    p = calibrated_probability(s, 1.3, 0.2)
    assert p.shape == s.shape and np.all(np.diff(p) >= 0) and p[0] == 0.0 and p[-1] == 1.0
    assert np.all(np.isfinite(p))
    assert isinstance(calibrated_probability(0.0, 1.0, 0.0), float)
    assert calibrated_probability(0.0, 1.0, 0.0) == 0.5


def test_bad_inputs():
    with pytest.raises(ValueError, match="no spoof"):
        fit_logistic_calibration([1.0], [])
    with pytest.raises(ValueError, match="NaN"):
        fit_logistic_calibration([1.0, float("nan")], [0.0])
    with pytest.raises(ValueError, match="prior"):
        fit_logistic_calibration([1.0], [0.0], prior=1.0)
