"""Equal error rate and DET curve with the ASVspoof tie convention.

Scores are detection scores where higher means "more bona fide". The DET
curve follows the official ASVspoof / AASIST evaluation code exactly:

* bona fide and spoof scores are concatenated (bona fide first) and sorted
  with a *stable* sort, so within a block of tied scores bona fide trials come
  first and the curve has "partial" points inside the tie;
* point ``k`` (``0..N``) rejects the ``k`` lowest-scoring trials:
  ``frr[k]`` = fraction of bona fide among them, ``far[k]`` = fraction of spoof
  *not* among them; ``thresholds[0] = min - 0.001``, ``thresholds[k]`` = the
  ``k``-th smallest score;
* the EER is ``(frr[k] + far[k]) / 2`` at the *first* ``k`` minimising
  ``|frr - far|``; its threshold is ``thresholds[k]``.

No interpolation (unlike ``sklearn.metrics.roc_curve`` based scripts, which
drop tied points and give different EERs on tied or coarse scores).
"""

from __future__ import annotations

from typing import NamedTuple, Tuple

import numpy as np
from numpy.typing import ArrayLike


class DetCurve(NamedTuple):
    """DET curve points, each an array of length N + 1 (N = number of trials)."""

    frr: np.ndarray
    far: np.ndarray
    thresholds: np.ndarray


def as_scores(values: ArrayLike, name: str) -> np.ndarray:
    """1-D float64 array of scores; raises ValueError on NaN or an empty set."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"no {name} scores: both classes need at least one trial")
    bad = np.isnan(arr)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} {name} score(s) are NaN")
    return arr


def det_curve(bonafide_scores: ArrayLike, spoof_scores: ArrayLike) -> DetCurve:
    """DET curve points (miss rate of bona fide, false-alarm rate of spoof).

    Args:
        bonafide_scores: (N_b,) scores of bona fide trials.
        spoof_scores: (N_s,) scores of spoof trials.
    """
    bona = as_scores(bonafide_scores, "bona fide")
    spoof = as_scores(spoof_scores, "spoof")
    n_b, n_s = bona.size, spoof.size
    scores = np.concatenate([bona, spoof])
    is_bona = np.concatenate([np.ones(n_b), np.zeros(n_s)])
    order = np.argsort(scores, kind="mergesort")  # stable: ties keep bona fide first
    bona_rejected = np.cumsum(is_bona[order])
    rank = np.arange(1, n_b + n_s + 1)
    spoof_accepted = n_s - (rank - bona_rejected)
    frr = np.concatenate([[0.0], bona_rejected / n_b])
    far = np.concatenate([[1.0], spoof_accepted / n_s])
    sorted_scores = scores[order]
    thresholds = np.concatenate([[sorted_scores[0] - 0.001], sorted_scores])
    return DetCurve(frr, far, thresholds)


def eer_from_det(curve: DetCurve) -> Tuple[float, float, int]:
    """(EER, threshold, index) of a DET curve: first minimum of ``|frr - far|``."""
    k = int(np.argmin(np.abs(curve.frr - curve.far)))
    eer = float(np.mean((curve.frr[k], curve.far[k])))
    return eer, float(curve.thresholds[k]), k


def compute_eer(bonafide_scores: ArrayLike, spoof_scores: ArrayLike) -> Tuple[float, float]:
    """Equal error rate (a fraction in [0, 1], not percent) and its threshold.

    Identical (scores and thresholds) to ``compute_eer`` of the ASVspoof 2019 /
    2021 / 5 evaluation packages and AASIST, including the handling of ties.
    """
    eer, threshold, _ = eer_from_det(det_curve(bonafide_scores, spoof_scores))
    return eer, threshold
