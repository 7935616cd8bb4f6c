"""Gradient aligners: combine per-path (per-task) gradients into one update.

Pure tensor code, no training logic. An aligner is called on a ``(k, P)``
gradient tensor (k = 2 paths in DPDA training: original and augmented) and
returns the ``(P,)`` update; ``aligner.last_stats`` holds the statistics of
the call (cosine, dot, norms, conflict flag, method details). Low-precision
(bf16/fp16) gradients are aligned in float32.

=========  =================================================================
name       method (defaults = the DPDA paper code's conventions)
=========  =================================================================
none       mean of the gradients (the paper's "DPDA baseline")
sum        sum of the gradients
weighted   fixed weighted sum, ``weights: [w_recorded, w_augmented]`` (the tuned-weight control)
pcgrad     PCGrad, mean reduction (``reduction="sum", eps=1e-8``: LibMTL)
gradvac    GradVac, beta 0.5, whole model, EMA only when phi > 0 (stateful)
cagrad     CAGrad, c 0.5, 1/(1+c^2) rescale, SLSQP weights (``solver="exact"``)
mgda       MGDA, LibMTL's two-task closed form with its clamps
=========  =================================================================
"""

from __future__ import annotations

from typing import Dict, Type

from dpda.align.base import Aligner, gram_matrix, pair_stats
from dpda.align.cagrad import CAGrad
from dpda.align.gradvac import GradVac
from dpda.align.mgda import MGDA
from dpda.align.pcgrad import PCGrad
from dpda.align.simple import Mean, Sum, Weighted

ALIGNERS: Dict[str, Type[Aligner]] = {
    "none": Mean,
    "mean": Mean,
    "sum": Sum,
    "weighted": Weighted,
    "pcgrad": PCGrad,
    "gradvac": GradVac,
    "cagrad": CAGrad,
    "mgda": MGDA,
}


def build_aligner(name: str, **options) -> Aligner:
    """Build an aligner by name; ``options`` are the constructor's keyword arguments."""
    try:
        cls = ALIGNERS[name]
    except KeyError:
        raise ValueError(f"unknown aligner {name!r}; available: {', '.join(ALIGNERS)}") from None
    try:
        return cls(**options)
    except TypeError as e:
        raise ValueError(f"bad options for aligner {name!r}: {e}") from None


__all__ = [
    "Aligner", "ALIGNERS", "build_aligner", "gram_matrix", "pair_stats",
    "Mean", "Sum", "Weighted", "PCGrad", "GradVac", "CAGrad", "MGDA",
]
