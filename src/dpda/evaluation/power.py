"""Seed-level statistics of paired differences: the Student-t interval and the power statements (torch-free).

:func:`t_interval` is the seed-only view of a paired comparison (the mean of
the per-seed differences, Student t with ``n - 1`` degrees of freedom).
:func:`seeds_needed` and :func:`trials_factor_needed` answer "how many seeds,
or how large a test set, would a two-sided paired test at ``1 - level`` need
to detect a difference ``delta`` with ``power``": the variance of the mean
paired difference over ``n`` seeds on one fixed test set is
``seed_sd**2 / n + trial_se**2`` (EER points), and the test set's share does
not shrink with seeds. :mod:`dpda.evaluation.paired` reports them for every
comparison and re-exports these names.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Optional, Sequence, Tuple

import numpy as np


def _t_quantile(p: float, dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(p, dof))


def t_interval(diffs: Sequence[float], level: float) -> Optional[Tuple[float, float]]:
    """Student-t interval of the mean of ``diffs`` (None for fewer than two values)."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2:
        return None
    half = _t_quantile(0.5 + level / 2.0, d.size - 1) * float(d.std(ddof=1)) / math.sqrt(d.size)
    m = float(d.mean())
    return m - half, m + half


def _power_quantile(level: float, power: float, dof: Optional[int] = None) -> float:
    """``q`` of the power condition ``q * SE <= delta`` of a two-sided test at ``1 - level`` with ``power``:
    normal quantiles, or Student-t quantiles with ``dof`` degrees of freedom."""
    if dof is None:
        return NormalDist().inv_cdf(0.5 + level / 2.0) + NormalDist().inv_cdf(power)
    return _t_quantile(0.5 + level / 2.0, dof) + _t_quantile(power, dof)


def trials_factor_needed(seed_sd: Optional[float], trial_se: float, delta: float, n_seeds: Optional[int] = None,
                         level: float = 0.95, power: float = 0.8) -> Optional[float]:
    """How many times larger the test set must be for ``delta`` to be detectable.

    Assumes the test set's sampling error of the paired difference shrinks as ``1 / sqrt(trials)``
    (both classes grown in proportion). With ``n_seeds=None`` the seeds are unlimited (only the test
    set's error counts, normal quantiles); with ``n_seeds`` seeds and a known ``seed_sd`` the t
    quantiles with ``n_seeds - 1`` degrees of freedom and the seeds' share of the variance count
    too. Returns a factor >= 1 (1.0: the present test set is large enough), or None when
    ``n_seeds`` seeds are too few at any test-set size (or the spread is unknown).
    """
    if delta <= 0:
        raise ValueError(f"delta must be > 0, got {delta!r}")
    if n_seeds is None:
        q, seed_var = _power_quantile(level, power), 0.0
    else:
        if n_seeds < 2:
            raise ValueError(f"n_seeds must be >= 2, got {n_seeds!r}")
        if seed_sd is None or not math.isfinite(seed_sd):
            return None
        q, seed_var = _power_quantile(level, power, n_seeds - 1), seed_sd ** 2 / n_seeds
    room = (delta / q) ** 2 - seed_var  # the variance the test set may still have
    if room <= 0:
        return None
    return max(trial_se ** 2 / room, 1.0)


def seeds_needed(seed_sd: Optional[float], trial_se: float, delta: float, level: float = 0.95,
                 power: float = 0.8, max_seeds: int = 10_000, seeds_planned: int = 8) -> Tuple[Optional[int], str]:
    """Seeds per method for a two-sided paired test at ``1 - level`` with ``power`` to detect a difference ``delta``.

    Variance of the mean paired difference over ``n`` seeds on one fixed test
    set: ``seed_sd**2 / n + trial_se**2`` (the test set's error does not shrink
    with seeds). The smallest ``n >= 2`` with
    ``(t_{level} + t_{power}) * sqrt(seed_sd**2 / n + trial_se**2) <= delta``
    (t quantiles with ``n - 1`` degrees of freedom). Returns ``(n, note)``, or
    ``(None, reason)`` when no number of seeds is enough (the test set's own
    error is too large; the reason then says how much larger the test set must
    be, with unlimited seeds and with ``seeds_planned``, see :func:`trials_factor_needed`)
    or the spread is unknown.
    """
    if delta <= 0:
        raise ValueError(f"delta must be > 0, got {delta!r}")
    if seed_sd is None or not math.isfinite(seed_sd):
        return None, "the seed-to-seed spread is unknown (one seed)"
    if _power_quantile(level, power) * trial_se >= delta:
        unlimited = trials_factor_needed(seed_sd, trial_se, delta, None, level, power)
        planned = trials_factor_needed(seed_sd, trial_se, delta, seeds_planned, level, power)
        with_planned = (f"with {seeds_planned} seeds, about {planned:.1f}x larger" if planned is not None else
                        f"{seeds_planned} seeds are too few at any test-set size")
        return None, (f"not reachable by adding seeds: the test set's own sampling error (SE {trial_se:.2f} points) "
                      f"is too large for a {delta:.2f}-point difference; a larger test set is needed (at least "
                      f"{unlimited:.1f}x as many trials even with unlimited seeds; {with_planned})")
    for n in range(2, max_seeds + 1):
        if _power_quantile(level, power, n - 1) * math.sqrt(seed_sd ** 2 / n + trial_se ** 2) <= delta:
            return n, f"{n} seeds per method"
    return None, f"more than {max_seeds} seeds"


__all__ = ["seeds_needed", "t_interval", "trials_factor_needed"]
