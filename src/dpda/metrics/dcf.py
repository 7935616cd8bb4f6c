"""ASVspoof 5 track-1 metrics: minDCF, actDCF and Cllr.

The cost model is the challenge's: ``Pspoof = 0.05``, ``Cmiss = 1``,
``Cfa = 10``; DCFs are normalised by the cost of the better of the two
trivial systems, ``min(Cmiss (1 - Pspoof), Cfa Pspoof)``.

``min_dcf`` searches the DET points of :func:`dpda.metrics.det_curve` (same tie
convention as the EER). ``act_dcf`` and ``cllr`` treat scores as log-likelihood
ratios (natural log), so they are only meaningful for calibrated scores.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from dpda.metrics.eer import as_scores, det_curve

ASV5_PSPOOF = 0.05
ASV5_CMISS = 1.0
ASV5_CFA = 10.0


class DcfResult(NamedTuple):
    """Normalised DCF and the threshold it was measured at."""

    dcf: float
    threshold: float


def _default_cost(p_spoof: float, c_miss: float, c_fa: float) -> float:
    return min(c_miss * (1 - p_spoof), c_fa * p_spoof)


def min_dcf(
    bonafide_scores: ArrayLike,
    spoof_scores: ArrayLike,
    p_spoof: float = ASV5_PSPOOF,
    c_miss: float = ASV5_CMISS,
    c_fa: float = ASV5_CFA,
) -> DcfResult:
    """Minimum normalised DCF over the DET points (first minimum wins ties)."""
    det = det_curve(bonafide_scores, spoof_scores)
    p_bona = 1 - p_spoof
    cost = c_miss * det.frr * p_bona + c_fa * det.far * (1 - p_bona)
    k = int(np.argmin(cost))
    return DcfResult(float(cost[k] / _default_cost(p_spoof, c_miss, c_fa)), float(det.thresholds[k]))


def bayes_threshold(p_spoof: float = ASV5_PSPOOF, c_miss: float = ASV5_CMISS, c_fa: float = ASV5_CFA) -> float:
    """Bayes decision threshold on an LLR: ``-ln(Cmiss (1 - Pspoof) / (Cfa Pspoof))``."""
    return -math.log(c_miss * (1 - p_spoof) / (c_fa * p_spoof))


def act_dcf(
    bonafide_scores: ArrayLike,
    spoof_scores: ArrayLike,
    p_spoof: float = ASV5_PSPOOF,
    c_miss: float = ASV5_CMISS,
    c_fa: float = ASV5_CFA,
) -> DcfResult:
    """Actual normalised DCF of LLR scores at the Bayes threshold (accept when ``>=``)."""
    bona = as_scores(bonafide_scores, "bona fide")
    spoof = as_scores(spoof_scores, "spoof")
    thr = bayes_threshold(p_spoof, c_miss, c_fa)
    p_miss = np.sum(bona < thr) / bona.size
    p_fa = np.sum(spoof >= thr) / spoof.size
    p_bona = 1 - p_spoof
    cost = c_miss * p_bona * p_miss + c_fa * (1 - p_bona) * p_fa
    return DcfResult(float(cost / _default_cost(p_spoof, c_miss, c_fa)), thr)


def cllr(bonafide_scores: ArrayLike, spoof_scores: ArrayLike) -> float:
    """Log-likelihood-ratio cost in bits, for natural-log LLR scores.

    ``0.5 (mean ln(1 + e^-s_bona) + mean ln(1 + e^s_spoof)) / ln 2``, computed
    with ``logaddexp`` so that extreme scores (|s| > 709) give the finite,
    correct value where the official ``log1p(exp(.))`` code overflows to inf.
    """
    bona = as_scores(bonafide_scores, "bona fide")
    spoof = as_scores(spoof_scores, "spoof")
    c_bona = np.mean(np.logaddexp(0.0, -bona))
    c_spoof = np.mean(np.logaddexp(0.0, spoof))
    return float(0.5 * (c_bona + c_spoof) / np.log(2))
