"""Metric behaviour that does not need the reference files."""

from __future__ import annotations

import numpy as np
import pytest

from dpda.metrics import (
    act_dcf,
    asv_operating_point,
    cllr,
    compute_eer,
    det_curve,
    min_dcf,
    min_tdcf_2021,
    tdcf_2021_weights,
)


def test_eer_hand_computed():
    # sorted: 0.1 s, 0.3 b, 0.4 s, 0.8 b, 0.85 s, 0.9 b -> frr == far == 1/3 after rejecting 3 trials
    eer, thr = compute_eer([0.9, 0.8, 0.3], [0.1, 0.4, 0.85])
    assert eer == pytest.approx(1 / 3)
    assert thr == 0.4


def test_det_curve_shape_and_ends():
    rng = np.random.default_rng(0)
    frr, far, thr = det_curve(rng.normal(1, 1, 50), rng.normal(-1, 1, 70))
    assert frr.shape == far.shape == thr.shape == (121,)
    assert (frr[0], far[0], frr[-1], far[-1]) == (0.0, 1.0, 1.0, 0.0)
    assert np.all(np.diff(frr) >= 0) and np.all(np.diff(far) <= 0)
    assert np.all(np.diff(thr) >= 0)


def test_eer_invariant_to_monotonic_transform():
    rng = np.random.default_rng(1)
    b, s = rng.normal(1, 1, 300), rng.normal(-1, 1.3, 500)
    e1, t1 = compute_eer(b, s)
    e2, t2 = compute_eer(np.exp(b), np.exp(s))
    assert e1 == e2 and np.exp(t1) == pytest.approx(t2)


def test_eer_matches_bruteforce_on_distinct_scores():
    rng = np.random.default_rng(2)
    b, s = rng.normal(0.8, 1, 200), rng.normal(-0.8, 1, 300)
    best = None
    for t in np.sort(np.concatenate([b, s])):
        frr, far = np.mean(b < t), np.mean(s >= t)
        if best is None or abs(frr - far) < best[0]:
            best = (abs(frr - far), (frr + far) / 2)
    assert compute_eer(b, s)[0] == pytest.approx(best[1], abs=1.0 / 200)


def test_perfect_and_inverted():
    assert compute_eer([2, 3], [0, 1])[0] == 0.0
    assert compute_eer([0, 1], [2, 3])[0] == 1.0


@pytest.mark.parametrize("bad", [([], [1.0]), ([1.0], []), ([np.nan], [1.0])])
def test_bad_inputs_raise(bad):
    with pytest.raises(ValueError):
        compute_eer(*bad)


def test_cllr_reference_points():
    # Uninformative LLR = 0 gives exactly 1 bit; perfect large LLRs approach 0.
    assert cllr([0.0], [0.0]) == pytest.approx(1.0)
    assert cllr([50.0], [-50.0]) < 1e-20
    assert np.isfinite(cllr([-1e4], [1e4]))


def test_dcf_bounds():
    rng = np.random.default_rng(3)
    b, s = rng.normal(2, 1, 100), rng.normal(-2, 1, 100)
    assert 0 <= min_dcf(b, s).dcf <= act_dcf(b, s).dcf + 1e-12
    # a system that accepts everything costs Cfa*Pspoof / min(...) = 0.5/0.5 = 1
    assert act_dcf([10.0], [10.0]).dcf == pytest.approx(1.0)


def test_tdcf_of_a_perfect_cm_is_the_asv_only_cost():
    rng = np.random.default_rng(4)
    asv = asv_operating_point(rng.normal(4, 1, 200), rng.normal(-4, 1, 300), rng.normal(1, 2, 100))
    c0, c1, c2 = tdcf_2021_weights(asv)
    res = min_tdcf_2021([1.0, 2.0], [-1.0, -2.0], asv)
    # a perfect CM has a point with Pmiss_cm = Pfa_cm = 0: only C0 remains
    assert res.min_tdcf == pytest.approx(c0 / (c0 + min(c1, c2)))
    # accepting everything costs (C0 + C2) / (C0 + min(C1, C2)) = curve[0]
    assert res.curve[0] == pytest.approx((c0 + c2) / (c0 + min(c1, c2)))
