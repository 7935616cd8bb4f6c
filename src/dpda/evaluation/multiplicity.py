"""Several comparisons at once: the seed-level t test and Holm's adjustment.

A table of paired comparisons (:mod:`dpda.evaluation.paired`) tests several
methods on several splits against one baseline; with six comparisons at the
5 % level, the chance that at least one interval excludes 0 although no method
differs is up to 26 %. :func:`holm_adjust` turns the per-comparison p-values
into Holm's step-down adjusted ones (Holm 1979), which control that
family-wise error rate at the nominal level without assuming independence:
a comparison is resolved family-wise when its adjusted p is below 0.05.

:func:`t_test_p` is the p-value that matches the seed-level t interval of
:func:`dpda.evaluation.power.t_interval`: the two-sided one-sample Student t
test of the per-seed differences against 0 (the interval at level L excludes
0 exactly when p < 1 - L).
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import numpy as np


def t_test_p(diffs: Sequence[float]) -> Optional[float]:
    """Two-sided p of the one-sample t test of ``diffs`` against 0 (None for fewer than 2 values).

    All differences equal: p = 1 when they are 0, else 0 (no spread, a nonzero mean).
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2:
        return None
    if not np.all(np.isfinite(d)):
        raise ValueError(f"differences must be finite, got {d.tolist()}")
    sd = float(d.std(ddof=1))
    mean = float(d.mean())
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    from scipy.stats import t

    stat = mean / (sd / math.sqrt(d.size))
    return float(min(1.0, 2.0 * t.sf(abs(stat), d.size - 1)))


def holm_adjust(p_values: Sequence[Optional[float]]) -> List[Optional[float]]:
    """Holm's step-down adjusted p-values, in the order given; None entries are left out of the family.

    With m p-values sorted ascending, the k-th (1-based) becomes ``max_{j <= k} min(1, (m - j + 1) p_(j))``.
    """
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    for p, i in present:
        if not 0.0 <= p <= 1.0 or math.isnan(p):
            raise ValueError(f"p-value {i} is {p!r}; expected a number in [0, 1]")
    m = len(present)
    out: List[Optional[float]] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


__all__ = ["holm_adjust", "t_test_p"]
