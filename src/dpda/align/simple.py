"""No alignment: the mean (the paper's "DPDA baseline"), the sum, or a fixed weighted sum of the task gradients."""

from __future__ import annotations

import math

import torch

from dpda.align.base import Aligner, combine, gram_matrix, pair_stats


class Mean(Aligner):
    """Mean of the task gradients = gradient of the mean loss (registered as ``none``)."""

    name = "none"

    def _align(self, grads, has_grad, segments, inplace):
        gram = gram_matrix(grads)
        k = grads.shape[0]
        alpha = torch.eye(k, dtype=torch.float64, device=gram.device)
        return combine(grads, alpha, "mean", has_grad, nonshared="sum", inplace=inplace), pair_stats(gram)


class Sum(Aligner):
    """Sum of the task gradients = gradient of the summed loss."""

    name = "sum"

    def _align(self, grads, has_grad, segments, inplace):
        gram = gram_matrix(grads)
        alpha = torch.eye(grads.shape[0], dtype=torch.float64, device=gram.device)
        return combine(grads, alpha, "sum", has_grad, inplace=inplace), pair_stats(gram)


class Weighted(Aligner):
    """Fixed weighted sum of the task gradients = gradient of ``sum_i w_i L_i`` (registered as ``weighted``).

    The equal-compute control of gradient surgery: no alignment, a tuned weight
    per path. ``weights`` holds one finite, non-negative number per task (in
    DPDA training ``[w_recorded, w_augmented]``), not all zero; weights that
    sum to 1 keep the step size of ``none`` (``[0.5, 0.5]`` is ``none`` on
    every entry both paths reach). Unlike ``none``, an entry that only some
    tasks reach gets the same weighted sum of what they contribute (still
    the gradient of the weighted loss), not their plain sum.
    """

    name = "weighted"

    def __init__(self, weights=(0.5, 0.5)) -> None:
        super().__init__()
        if isinstance(weights, (str, bytes)) or not hasattr(weights, "__len__") or len(weights) < 1:
            raise ValueError(f"weights must be a list with one number per path, e.g. [0.3, 0.7]; got {weights!r}")
        values = []
        for i, w in enumerate(weights):
            if isinstance(w, bool) or not isinstance(w, (int, float)):
                raise ValueError(f"weights[{i}] must be a number, got {w!r}")
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"weights[{i}] must be finite and >= 0, got {w!r}")
            values.append(float(w))
        if sum(values) <= 0:
            raise ValueError(f"weights must not all be zero, got {list(weights)!r}")
        self.weights = values

    def _align(self, grads, has_grad, segments, inplace):
        k = grads.shape[0]
        if len(self.weights) != k:
            raise ValueError(f"weighted: {len(self.weights)} weights for {k} task gradients")
        gram = gram_matrix(grads)
        alpha = torch.diag(torch.tensor(self.weights, dtype=torch.float64, device=gram.device))
        stats = pair_stats(gram)
        stats["weights"] = list(self.weights)
        return combine(grads, alpha, "sum", has_grad, nonshared="sum", inplace=inplace), stats

    def __repr__(self) -> str:
        return f"Weighted(weights={self.weights})"
