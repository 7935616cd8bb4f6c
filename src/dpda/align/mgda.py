"""MGDA: the minimum-norm point in the convex hull of the task gradients (Sener & Koltun, NeurIPS 2018).

The update is ``sum_i w_i g_i`` with the weights on the simplex that minimise
its norm (no averaging: the weights sum to one).

For two tasks the default reproduces LibMTL (``mgda_gn='none'``): the closed
form ``gamma = (g2.g2 - g1.g2) / |g1 - g2|^2`` with LibMTL's clamps
(``gamma = 0.999`` when ``g1.g2 >= g1.g1``, else ``0.001`` when
``g1.g2 >= g2.g2``). For more tasks the minimum-norm problem is solved
exactly by enumerating the faces of the simplex (fine for the few tasks of
dual-path training); LibMTL approximates it iteratively.
"""

from __future__ import annotations

import itertools

import torch

from dpda.align.base import Aligner, gram_matrix, pair_stats, weighted_sum


def min_norm_weights_2(v11: float, v12: float, v22: float) -> float:
    """Weight of g1 in LibMTL's two-vector minimum-norm element (with its clamps)."""
    if v12 >= v11:
        return 0.999
    if v12 >= v22:
        return 0.001
    return (v22 - v12) / (v11 + v22 - 2 * v12)


def min_norm_weights_exact(gram: torch.Tensor) -> torch.Tensor:
    """Exact minimum-norm weights on the simplex, by enumerating faces (k small)."""
    k = gram.shape[0]
    best_val, best_w = float("inf"), None
    for size in range(1, k + 1):
        for face in itertools.combinations(range(k), size):
            idx = list(face)
            sub = gram[idx][:, idx]
            ones = torch.ones(size, dtype=torch.float64, device=gram.device)
            try:
                sol = torch.linalg.solve(sub, ones)
            except RuntimeError:  # singular face: a lower-dimensional face covers it
                continue
            total = float(sol.sum())
            if total <= 0:
                continue
            w_face = sol / total
            if bool((w_face < -1e-12).any()):
                continue
            w = torch.zeros(k, dtype=torch.float64, device=gram.device)
            w[idx] = w_face.clamp_min(0)
            val = float(w @ gram @ w)
            if best_w is None or val < best_val - 1e-15 * max(1.0, abs(best_val)):
                best_val, best_w = val, w
    if best_w is None:  # all gradients zero
        return torch.full((k,), 1.0 / k, dtype=torch.float64, device=gram.device)
    return best_w


class MGDA(Aligner):
    """Minimum-norm combination of the task gradients."""

    name = "mgda"

    def _align(self, grads, has_grad, segments, inplace):
        gram = gram_matrix(grads)
        k = grads.shape[0]
        if k == 1:
            w = torch.ones(1, dtype=torch.float64, device=gram.device)
        elif k == 2:
            gamma = min_norm_weights_2(float(gram[0, 0]), float(gram[0, 1]), float(gram[1, 1]))
            w = torch.tensor([gamma, 1 - gamma], dtype=torch.float64, device=gram.device)
        else:
            w = min_norm_weights_exact(gram)
        out = weighted_sum(grads, w, inplace)
        stats = pair_stats(gram)
        stats["weights"] = w.tolist()
        return out, stats
