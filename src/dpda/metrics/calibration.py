"""Affine score calibration by (prior-weighted) logistic regression.

A countermeasure score ``s`` (``logit[:, 1]`` of a dpda model, higher = more
bona fide) is mapped to a probability

    P(bona fide | s) = sigmoid(a * s + b)

with ``(a, b)`` fitted on a labelled development set by
:func:`fit_logistic_calibration` and applied by :func:`calibrated_probability`.

Prior weighting (as in the BOSARIS toolkit's linear calibration): bona fide
trials share a total weight ``prior`` and spoof trials ``1 - prior``, so the
fitted posterior is the one for a class prior of ``prior`` whatever the class
counts of the development set are. With the default ``prior=0.5``,
``a * s + b`` is a natural-log likelihood ratio (the form the ASVspoof 5
actDCF and Cllr expect). ``prior=None`` fits the plain, unweighted logistic
regression (posterior for the class proportions of the data itself).

Fitting is Newton's method (iteratively reweighted least squares) on the
standardised scores, with step halving so the loss never increases, and
everything computed through ``logaddexp`` so no ``exp`` overflows. A small L2
penalty ``l2 * a'^2 / 2`` on the slope ``a'`` of the *standardised* score
(the intercept is not penalised; the loss is the weighted mean, total weight
1) keeps the solution finite when the two classes are perfectly separable;
its effect on non-separable data is negligible (default ``l2 = 1e-6``).

Depends on NumPy only.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

#: default L2 penalty on the slope of the standardised score
DEFAULT_L2 = 1e-6


def _as_scores(x: ArrayLike, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"no {what} scores: calibration needs both bona fide and spoof scores")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} scores contain NaN or inf values")
    return arr


def _log_sigmoid(z: np.ndarray) -> np.ndarray:
    """log(sigmoid(z)) = -log(1 + exp(-z)), stable for any z."""
    return -np.logaddexp(0.0, -z)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(_log_sigmoid(z))


def fit_logistic_calibration(
    bonafide_scores: ArrayLike,
    spoof_scores: ArrayLike,
    prior: Optional[float] = 0.5,
    *,
    l2: float = DEFAULT_L2,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> Tuple[float, float]:
    """Fit ``P(bona fide | s) = sigmoid(a * s + b)``; return ``(a, b)``.

    Args:
        bonafide_scores, spoof_scores: development-set scores of each class
            (higher = more bona fide); both must be non-empty and finite.
        prior: bona fide prior the posterior is fitted for (bona fide trials
            weigh ``prior`` in total, spoof trials ``1 - prior``); ``None``
            weighs every trial equally (the data's own class proportions).
        l2: L2 penalty on the slope of the standardised score (see module
            docstring); keeps separable data finite.
        max_iter: maximum Newton iterations (a few suffice usually).
        tol: stop when the Newton step's largest component is below this.

    Returns:
        ``(a, b)`` as Python floats, always finite.
    """
    bona = _as_scores(bonafide_scores, "bona fide")
    spoof = _as_scores(spoof_scores, "spoof")
    if prior is not None and not 0.0 < float(prior) < 1.0:
        raise ValueError(f"prior must be in (0, 1) or None, got {prior!r}")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")

    s = np.concatenate([bona, spoof])
    t = np.concatenate([np.ones(bona.size), -np.ones(spoof.size)])  # +1 bona fide, -1 spoof
    if prior is None:
        w = np.full(s.size, 1.0 / s.size)
    else:
        p = float(prior)
        w = np.concatenate([np.full(bona.size, p / bona.size), np.full(spoof.size, (1.0 - p) / spoof.size)])

    # Standardise so the penalty and the convergence test do not depend on the score scale.
    mu = float(np.sum(w * s))
    sd = float(np.sqrt(np.sum(w * (s - mu) ** 2)))
    if not sd > 0.0 or not math.isfinite(sd):
        sd = 1.0
    x = (s - mu) / sd

    def loss(theta: np.ndarray) -> float:
        z = theta[0] * x + theta[1]
        return float(np.sum(w * np.logaddexp(0.0, -t * z)) + 0.5 * l2 * theta[0] ** 2)

    # Start from the weighted class log-odds (the best constant model).
    w_bona = float(np.sum(w[t > 0]))
    theta = np.array([0.0, math.log(w_bona / (1.0 - w_bona))])
    current = loss(theta)
    for _ in range(max_iter):
        z = theta[0] * x + theta[1]
        # d/dz of w*log(1+exp(-t z)) = -w t sigmoid(-t z); second derivative w sigmoid(z) sigmoid(-z)
        r = -w * t * _sigmoid(-t * z)
        h = w * np.exp(_log_sigmoid(z) + _log_sigmoid(-z))
        grad = np.array([np.sum(r * x) + l2 * theta[0], np.sum(r)])
        hess = np.array([[np.sum(h * x * x) + l2, np.sum(h * x)], [np.sum(h * x), np.sum(h)]])
        hess += 1e-12 * np.eye(2)  # guards a singular Hessian when l2 = 0 and the data separate
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            step = grad
        # Step halving: accept the first step length that does not increase the loss.
        scale = 1.0
        while True:
            candidate = theta - scale * step
            value = loss(candidate)
            if value <= current or scale < 1e-10:
                break
            scale *= 0.5
        if value > current:  # no descent possible: converged to machine precision
            break
        theta, current = candidate, value
        if float(np.max(np.abs(scale * step))) < tol:
            break

    a = theta[0] / sd
    b = theta[1] - theta[0] * mu / sd
    return float(a), float(b)


def calibrated_probability(scores: ArrayLike, a: float, b: float) -> Union[float, np.ndarray]:
    """``sigmoid(a * s + b)``: P(bona fide | s) for calibration ``(a, b)``.

    Computed as ``exp(-logaddexp(0, -(a s + b)))`` (no overflow). A scalar
    score gives a Python float, an array an array of float64 of its shape.
    """
    arr = np.asarray(scores, dtype=np.float64)
    p = _sigmoid(float(a) * arr + float(b))
    if arr.ndim == 0:
        return float(p)
    return p


__all__ = ["fit_logistic_calibration", "calibrated_probability", "DEFAULT_L2"]
