"""Common machinery of the gradient aligners.

Every aligner here combines k task gradients ``grads`` (a ``(k, P)`` tensor)
into one update ``(P,)``. All methods implemented (mean, sum, PCGrad, GradVac,
CAGrad, MGDA) produce an update that is a linear combination of the original
gradients, with coefficients that depend only on their inner products. So an
aligner works in two steps:

1. the ``(k, k)`` Gram matrix ``G = grads @ grads.T`` (one pass over the
   gradients, on their device; float32 accumulation, coefficient algebra in float64);
2. a small ``(k, k)`` problem gives a coefficient matrix ``alpha`` whose row
   ``i`` expresses the modified gradient of task ``i`` in the basis of the
   original gradients (``g_i' = sum_m alpha[i, m] g_m``);

and the update is ``reduce_i(alpha) @ grads`` (mean or sum over tasks). No
``(k, P)`` copy of the gradients is ever made: the extra memory is the ``(P,)``
result. This is mathematically identical to the per-vector loops of the
original implementations (which project, clone and re-concatenate every
gradient), and matches their outputs to float32 rounding.

Entries where some task has no gradient (``has_grad`` False, e.g. a parameter
that only one path uses) follow the paper code: they are merged with the
*sum* of the tasks' modified gradients instead of the reduction (PCGrad,
GradVac), as in the public code; see each aligner.

Devices: the gradients stay on their device (CPU or GPU). The ``(k, k)``
coefficient algebra runs on the CPU in float64 **on purpose**, and this module
is the only place that moves data for it: :func:`gram_matrix` brings the Gram
matrix to :data:`COEFFICIENT_DEVICE`, and :func:`weighted_sum` / :func:`combine`
take the ``k`` weights back to the gradients' device. With k = 2 to 5 the
algebra is a few dozen scalar steps with Python branching; on a GPU each would
cost a kernel launch and a synchronisation, on the CPU it costs microseconds.
Every tensor the coefficient code creates uses ``device=gram.device``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import torch

Segments = Sequence[Tuple[int, int]]

#: where the small (k, k) coefficient algebra of every aligner runs (see the module docstring)
COEFFICIENT_DEVICE = torch.device("cpu")


def as_grad_matrix(grads: torch.Tensor) -> torch.Tensor:
    """Validate a ``(k, P)`` gradient matrix; low-precision grads are upcast to float32."""
    if not isinstance(grads, torch.Tensor):
        raise TypeError(f"grads must be a torch.Tensor of shape (k, P), got {type(grads).__name__}")
    if grads.dim() != 2 or grads.shape[0] < 1:
        raise ValueError(f"grads must have shape (k, P) with k >= 1 tasks, got {tuple(grads.shape)}")
    if not grads.is_floating_point():
        raise TypeError(f"grads must be floating point, got {grads.dtype}")
    if grads.dtype in (torch.float16, torch.bfloat16):
        grads = grads.float()
    return grads


def gram_matrix(grads: torch.Tensor) -> torch.Tensor:
    """``(k, k)`` float64 Gram matrix of the rows of ``grads``, on :data:`COEFFICIENT_DEVICE`.

    The product is accumulated on the gradients' device in their dtype; only
    the k*k result crosses to the CPU (one synchronisation per call).
    """
    return (grads @ grads.T).to(device=COEFFICIENT_DEVICE, dtype=torch.float64)


def to_grads_device(weights: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Coefficients ``weights`` (k,) moved to the gradients' device and dtype (the way back from the CPU)."""
    return weights.to(device=grads.device, dtype=grads.dtype)


def pair_stats(gram: torch.Tensor) -> Dict[str, Any]:
    """Conflict statistics of task gradients from their Gram matrix.

    For k = 2: ``dot``, ``cos``, ``norms`` and ``conflict`` (dot < 0). For
    k > 2: ``cos_matrix``, ``norms`` and ``conflict`` (any negative pair).
    """
    g = gram.detach().to(COEFFICIENT_DEVICE)
    norms = g.diagonal().clamp_min(0).sqrt()
    denom = torch.outer(norms, norms)
    cos = torch.where(denom > 0, g / denom.clamp_min(1e-300), torch.zeros_like(g))
    k = g.shape[0]
    if k == 2:
        return {
            "dot": float(g[0, 1]),
            "cos": float(cos[0, 1]),
            "norms": [float(norms[0]), float(norms[1])],
            "conflict": bool(g[0, 1] < 0),
        }
    off = ~torch.eye(k, dtype=torch.bool, device=g.device)
    return {"cos_matrix": cos.tolist(), "norms": norms.tolist(), "conflict": bool((g[off] < 0).any())}


def weighted_sum(grads: torch.Tensor, weights: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``weights @ grads``; with ``inplace`` the result overwrites (and is) ``grads[0]``."""
    w = weights.to(torch.float64).tolist()
    if not inplace:
        return to_grads_device(weights, grads) @ grads
    out = grads[0]
    out.mul_(w[0])
    for m in range(1, grads.shape[0]):
        if w[m] != 0.0:
            out.add_(grads[m], alpha=w[m])
    return out


def combine(
    grads: torch.Tensor,
    alpha: torch.Tensor,
    reduction: str,
    has_grad: Optional[torch.Tensor] = None,
    nonshared: str = "sum",
    inplace: bool = False,
) -> torch.Tensor:
    """Update ``reduce_i(alpha[i]) @ grads``; ``alpha`` is ``(k, k)`` (float64).

    ``reduction`` is ``"mean"`` or ``"sum"`` over tasks. Where ``has_grad``
    (``(k, P)`` bool) is False for some task, ``nonshared`` decides: ``"sum"``
    (sum of the modified gradients) or ``"first"`` (task 0's original gradient).
    With ``inplace`` the update is written into ``grads[0]`` (no new ``(P,)`` tensor).
    """
    if reduction == "mean":
        weights = alpha.mean(dim=0)
    elif reduction == "sum":
        weights = alpha.sum(dim=0)
    else:
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    other = mask = None
    if has_grad is not None:
        shared = has_grad.all(dim=0)
        if not bool(shared.all()):
            mask = ~shared
            if nonshared == "sum":
                other = to_grads_device(alpha.sum(dim=0), grads) @ grads[:, mask]
            elif nonshared == "first":
                other = grads[0, mask].clone()
            else:
                raise ValueError(f"nonshared must be 'sum' or 'first', got {nonshared!r}")
    out = weighted_sum(grads, weights, inplace)
    if mask is not None:
        out[mask] = other
    return out


class Aligner:
    """Base class: ``aligner(grads, has_grad=None, segments=None, inplace=False) -> (P,)`` update.

    ``has_grad`` ((k, P) bool) marks entries where a task has no gradient;
    ``segments`` lists (start, stop) ranges of the flat vector (per module),
    used by GradVac's segment granularity. With ``inplace=True`` the update
    overwrites ``grads[0]`` (no extra (P,) tensor; the training engine uses this).
    ``last_stats`` holds the statistics of the last call (a dict of Python
    numbers). Stateless aligners have empty ``state_dict()``.
    """

    name = "aligner"

    def __init__(self) -> None:
        self.last_stats: Dict[str, Any] = {}

    def __call__(
        self,
        grads: torch.Tensor,
        has_grad: Optional[torch.Tensor] = None,
        segments: Optional[Segments] = None,
        inplace: bool = False,
    ) -> torch.Tensor:
        original = grads
        grads = as_grad_matrix(grads)
        if inplace and grads is not original:
            raise ValueError("inplace alignment needs float32/float64 gradients")
        if has_grad is not None and has_grad.shape != grads.shape:
            raise ValueError(f"has_grad must have the shape of grads {tuple(grads.shape)}, got {tuple(has_grad.shape)}")
        with torch.no_grad():
            out, stats = self._align(grads, has_grad, segments, inplace)
        self.last_stats = stats
        return out

    def _align(self, grads, has_grad, segments, inplace) -> Tuple[torch.Tensor, Dict[str, Any]]:  # pragma: no cover
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{self.name} is stateless; unexpected state keys {sorted(state)}")

    def reset(self) -> None:
        """Forget any state (GradVac's EMA targets)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
