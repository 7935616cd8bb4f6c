"""The seed-level t test's p-value and Holm's adjustment (dpda.evaluation.multiplicity)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dpda.evaluation.multiplicity import holm_adjust, t_test_p
from dpda.evaluation.paired import t_interval


@pytest.mark.parametrize("diffs", [[-1.67, -1.33, -0.83, -0.17, -1.83], [0.5, -0.25, 1.0], [2.0, 2.5]])
def test_t_test_p_matches_scipy_and_the_t_interval(diffs):
    p = t_test_p(diffs)
    assert p == pytest.approx(stats.ttest_1samp(diffs, 0.0).pvalue, rel=1e-9)
    lo, hi = t_interval(diffs, 0.95)
    assert (p < 0.05) == (lo > 0 or hi < 0)
    # the interval at level 1 - p touches 0
    lo, hi = t_interval(diffs, 1.0 - p)
    assert min(abs(lo), abs(hi)) == pytest.approx(0.0, abs=1e-9)


def test_t_test_p_edge_cases():
    assert t_test_p([1.0]) is None
    assert t_test_p([0.0, 0.0, 0.0]) == 1.0
    assert t_test_p([0.5, 0.5]) == 0.0
    with pytest.raises(ValueError, match="finite"):
        t_test_p([0.1, float("nan")])


def test_holm_by_hand():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> kept monotone: 0.06
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-12)
    assert holm_adjust([0.3, None, 0.8]) == pytest.approx([0.6, None, 0.8], abs=1e-12)
    assert holm_adjust([0.9, 0.7]) == [1.0, 1.0]
    assert holm_adjust([]) == []
    with pytest.raises(ValueError, match="p-value 1"):
        holm_adjust([0.1, 1.5])


def test_holm_controls_the_family_wise_error_under_the_null():
    """Six true-null t tests of 5 seeds each: unadjusted, some p < 0.05 in ~26 % of families; Holm: <= 5 %."""
    rng = np.random.default_rng(0)
    families = 4000
    any_raw = any_holm = 0
    for _ in range(families):
        ps = [t_test_p(rng.standard_normal(5)) for _ in range(6)]
        any_raw += min(ps) < 0.05
        any_holm += min(holm_adjust(ps)) < 0.05
    assert 0.22 < any_raw / families < 0.30
    assert any_holm / families < 0.06
