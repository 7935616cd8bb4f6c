"""PCGrad: gradient surgery by projecting conflicting gradients (Yu et al., NeurIPS 2020).

For each task ``i`` the gradient ``g_i`` is visited against every task ``j``
(``i`` itself included, as in the public implementations): when the current
``g_i`` conflicts with the *original* ``g_j`` (negative dot product), its
component along ``g_j`` is removed, ``g_i <- g_i - (g_i . g_j) / (|g_j|^2 + eps) g_j``.
The modified gradients are then merged.

Defaults reproduce the DPDA paper code (and WeiChengTseng's Pytorch-PCGrad):
``reduction="mean"`` and ``eps=0``; entries where a task has no gradient are
merged with the sum. LibMTL's variant is ``reduction="sum", eps=1e-8``. The
visiting order is the identity by default (the originals shuffle it with
Python's ``random``; for two tasks the result does not depend on it);
``shuffle=True`` draws a random order per task from a seeded generator.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from dpda.align.base import COEFFICIENT_DEVICE, Aligner, combine, gram_matrix, pair_stats


def pcgrad_coefficients(
    gram: torch.Tensor, orders: Optional[Sequence[Sequence[int]]] = None, eps: float = 0.0
):
    """PCGrad in the basis of the original gradients.

    Args:
        gram: (k, k) float64 Gram matrix of the task gradients.
        orders: for each task ``i``, the order in which tasks ``j`` are visited
            (default ``range(k)``).
        eps: added to ``|g_j|^2`` in the projection.

    Returns:
        ``(alpha, n_projections)``: row ``i`` of the (k, k) ``alpha`` expresses
        the projected ``g_i`` as a combination of the original gradients.
    """
    k = gram.shape[0]
    alpha = torch.eye(k, dtype=torch.float64, device=gram.device)
    n_proj = 0
    for i in range(k):
        a = alpha[i].clone()
        for j in (range(k) if orders is None else orders[i]):
            dot = float(a @ gram[:, j])
            if dot < 0:
                a[j] -= dot / (float(gram[j, j]) + eps)
                n_proj += 1
        alpha[i] = a
    return alpha, n_proj


class PCGrad(Aligner):
    """Project conflicting gradients; ``reduction`` ``"mean"`` (paper code) or ``"sum"`` (LibMTL)."""

    name = "pcgrad"

    def __init__(self, reduction: str = "mean", eps: float = 0.0, shuffle: bool = False, seed: int = 0) -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction
        self.eps = float(eps)
        self.shuffle = shuffle
        # the visiting order is coefficient-side state: a CPU generator whatever the gradients' device
        self._generator = torch.Generator(device=COEFFICIENT_DEVICE).manual_seed(seed) if shuffle else None

    def _align(self, grads, has_grad, segments, inplace):
        gram = gram_matrix(grads)
        k = grads.shape[0]
        orders = None
        if self.shuffle:
            orders = [torch.randperm(k, generator=self._generator, device=COEFFICIENT_DEVICE).tolist() for _ in range(k)]
        alpha, n_proj = pcgrad_coefficients(gram, orders, self.eps)
        stats = pair_stats(gram)
        stats["n_projections"] = n_proj
        return combine(grads, alpha, self.reduction, has_grad, nonshared="sum", inplace=inplace), stats

    def state_dict(self):
        return {"generator": self._generator.get_state()} if self._generator is not None else {}

    def load_state_dict(self, state):
        if self._generator is not None and "generator" in state:
            self._generator.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8, device=COEFFICIENT_DEVICE))
        elif state:
            super().load_state_dict(state)

    def __repr__(self) -> str:
        return f"PCGrad(reduction={self.reduction!r}, eps={self.eps}, shuffle={self.shuffle})"
