"""No alignment: the mean (the paper's "DPDA baseline") or the sum of the task gradients."""

from __future__ import annotations

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
