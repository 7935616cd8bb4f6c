"""CAGrad: conflict-averse gradient descent (Liu et al., NeurIPS 2021).

With ``A = G G^T`` (Gram matrix of the k task gradients, float32 as in the
originals), ``g0 = sqrt(mean(A) + 1e-8)`` (the norm of the mean gradient) and
``c' = c g0 + 1e-8``, the task weights ``w`` minimise, over the simplex,
``w^T A 1/k + c' sqrt(w^T A w + 1e-8)``. With ``g_w = sum_i w_i g_i`` the update is::

    (mean_i g_i + c' / (|g_w| + 1e-8) g_w) / (1 + c^2)      (rescale=1)

Defaults reproduce the DPDA paper code and LibMTL: ``c=0.5``, ``rescale=1``,
and the weights found by SciPy's SLSQP from the uniform start
(``solver="slsqp"``; SciPy is imported only then). ``solver="exact"`` solves
the two-task problem to float64 precision instead (SLSQP's weights are off by
up to 5e-4 on near-orthogonal gradients). ``rescale=0`` skips the division,
``rescale=2`` divides by ``1 + c``. Entries where some task has no gradient
take task 0's gradient, and the weights are computed on shared entries only
(paper code).
"""

from __future__ import annotations

import math

import torch

from dpda.align.base import Aligner, gram_matrix, pair_stats, to_grads_device, weighted_sum


def _objective(w, a, b, c):
    return float(w @ a @ b) + c * math.sqrt(max(float(w @ a @ w), 0.0) + 1e-8)


def cagrad_weights_exact(a: torch.Tensor, c: float) -> torch.Tensor:
    """Two-task CAGrad weights, the exact minimiser (golden-section search on a convex function)."""
    if a.shape != (2, 2):
        raise ValueError("solver='exact' supports two tasks; use solver='slsqp' for more")
    a = a.double()
    b = torch.full((2,), 0.5, dtype=torch.float64, device=a.device)

    def f(t: float) -> float:
        return _objective(torch.tensor([t, 1 - t], dtype=torch.float64, device=a.device), a, b, c)

    lo, hi = 0.0, 1.0
    inv_phi = (math.sqrt(5) - 1) / 2
    x1, x2 = hi - inv_phi * (hi - lo), lo + inv_phi * (hi - lo)
    f1, f2 = f(x1), f(x2)
    for _ in range(200):
        if f1 <= f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - inv_phi * (hi - lo)
            f1 = f(x1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + inv_phi * (hi - lo)
            f2 = f(x2)
        if hi - lo < 1e-15:
            break
    candidates = [0.0, 1.0, (lo + hi) / 2]
    t = min(candidates, key=f)
    return torch.tensor([t, 1 - t], dtype=torch.float64, device=a.device)


def cagrad_weights_slsqp(a: torch.Tensor, c: float) -> torch.Tensor:
    """CAGrad weights from SciPy's SLSQP, uniform start, default options (as the originals)."""
    import numpy as np
    from scipy.optimize import minimize

    k = a.shape[0]
    a_np = a.detach().to(device="cpu", dtype=torch.float64).numpy()
    b = np.ones(k) / k

    def objective(w):
        return float(w @ a_np @ b + c * np.sqrt(w @ a_np @ w + 1e-8))

    res = minimize(
        objective,
        np.ones(k) / k,
        bounds=[(0.0, 1.0)] * k,
        constraints=({"type": "eq", "fun": lambda w: 1.0 - np.sum(w)},),
    )
    return torch.from_numpy(np.asarray(res.x, dtype=np.float64)).to(a.device)


class CAGrad(Aligner):
    """Conflict-averse gradient: the mean gradient plus a bounded worst-case improvement."""

    name = "cagrad"

    def __init__(self, c: float = 0.5, rescale: int = 1, solver: str = "slsqp") -> None:
        super().__init__()
        if solver not in ("slsqp", "exact"):
            raise ValueError(f"solver must be 'slsqp' (paper code) or 'exact', got {solver!r}")
        if rescale not in (0, 1, 2):
            raise ValueError(f"rescale must be 0, 1 or 2, got {rescale}")
        if c < 0:
            raise ValueError(f"c must be >= 0, got {c}")
        self.c, self.rescale, self.solver = float(c), rescale, solver

    def _align(self, grads, has_grad, segments, inplace):
        k = grads.shape[0]
        shared = None
        if has_grad is not None:
            shared = has_grad.all(dim=0)
            if bool(shared.all()):
                shared = None
        g_shared = grads if shared is None else grads[:, shared]
        gram32 = gram_matrix(g_shared).float()  # float32 as the originals; on COEFFICIENT_DEVICE
        g0 = torch.sqrt(gram32.mean() + 1e-8)
        c_eff = float(self.c * g0 + 1e-8)
        gram = gram32.double()
        if self.solver == "exact":
            w = cagrad_weights_exact(gram, c_eff)
        else:
            w = cagrad_weights_slsqp(gram, c_eff)
        gw_norm = math.sqrt(max(float(w @ gram @ w), 0.0))
        coef = torch.full((k,), 1.0 / k, dtype=torch.float64, device=gram.device) + (c_eff / (gw_norm + 1e-8)) * w
        if self.rescale == 1:
            coef = coef / (1 + self.c**2)
        elif self.rescale == 2:
            coef = coef / (1 + self.c)
        if shared is None:
            out = weighted_sum(grads, coef, inplace)
        else:
            part = to_grads_device(coef, grads) @ g_shared
            out = grads[0] if inplace else grads[0].clone()
            out[shared] = part
        stats = pair_stats(gram)
        stats["weights"] = w.tolist()
        return out, stats

    def __repr__(self) -> str:
        return f"CAGrad(c={self.c}, rescale={self.rescale}, solver={self.solver!r})"
