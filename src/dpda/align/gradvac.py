"""GradVac: gradient vaccine (Wang et al., ICLR 2021).

For task ``i`` and each other task ``j``, with the current ``g_i`` and the
original ``g_j``: ``phi = g_i.g_j / (|g_i||g_j| + eps)``. When ``phi`` is
below the EMA target ``phi_hat[i, j]``, ``g_i`` is moved towards ``g_j`` so
that their cosine reaches the target::

    g_i += g_j |g_i| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2)) / (|g_j| sqrt(1 - phi_hat^2) + eps)

and the target follows ``phi_hat <- (1 - beta) phi_hat + beta phi``.

Defaults reproduce the DPDA paper code: ``beta=0.5``, one group for the whole
model, the EMA updated only when ``phi > 0`` (``ema="positive"``), merge by
the mean. LibMTL's variant: ``ema="always"`` (targets can become negative),
``reduction="sum"``. ``granularity="segments"`` keeps one target per segment
of the flat gradient (per layer or per parameter; the engine passes the
segments), as in the paper's layer-wise variants.

State (``state_dict``): the targets ``phi_hat``, shape (groups, k, k), float64
on the CPU (coefficient-side state, whatever the gradients' device; a state
saved on one device loads on any other).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from dpda.align.base import COEFFICIENT_DEVICE, Aligner, combine, gram_matrix, pair_stats


def gradvac_coefficients(gram: torch.Tensor, rho: torch.Tensor, beta: float, ema: str, eps: float = 1e-8):
    """One GradVac step in the basis of the original gradients.

    Args:
        gram: (k, k) float64 Gram matrix.
        rho: (k, k) float64 EMA targets; updated in place.
    Returns:
        (k, k) coefficients ``alpha`` (row i = modified g_i).
    """
    k = gram.shape[0]
    alpha = torch.eye(k, dtype=torch.float64, device=gram.device)
    for i in range(k):
        a = alpha[i].clone()
        for j in range(k):
            if j == i:
                continue
            norm_i = math.sqrt(max(float(a @ gram @ a), 0.0))
            norm_j = math.sqrt(max(float(gram[j, j]), 0.0))
            phi = float(a @ gram[:, j]) / (norm_i * norm_j + eps)
            phi = min(1.0, max(-1.0, phi))  # rounding can leave |cos| above 1 (the originals then give NaN)
            target = float(rho[i, j])
            if phi < target:
                a[j] += norm_i * (target * math.sqrt(1 - phi * phi) - phi * math.sqrt(1 - target * target)) / (
                    norm_j * math.sqrt(1 - target * target) + eps
                )
            if ema == "always" or phi > 0:
                rho[i, j] = (1 - beta) * target + beta * phi
        alpha[i] = a
    return alpha


class GradVac(Aligner):
    """Gradient vaccine with EMA cosine targets (stateful)."""

    name = "gradvac"

    def __init__(
        self,
        beta: float = 0.5,
        ema: str = "positive",
        reduction: str = "mean",
        granularity: str = "model",
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if ema not in ("positive", "always"):
            raise ValueError(f"ema must be 'positive' (paper code) or 'always' (LibMTL), got {ema!r}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        if granularity not in ("model", "segments"):
            raise ValueError(f"granularity must be 'model' or 'segments', got {granularity!r}")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.beta, self.ema, self.reduction, self.granularity, self.eps = float(beta), ema, reduction, granularity, eps
        self.rho: Optional[torch.Tensor] = None

    def _align(self, grads, has_grad, segments, inplace):
        k, p = grads.shape
        if self.granularity == "model":
            segments = [(0, p)]
        elif not segments:
            raise ValueError("GradVac(granularity='segments') needs the gradient segments (start, stop) at each call")
        if self.rho is None:
            self.rho = torch.zeros(len(segments), k, k, dtype=torch.float64, device=COEFFICIENT_DEVICE)
        elif self.rho.shape != (len(segments), k, k):
            raise ValueError(
                f"GradVac state has shape {tuple(self.rho.shape)} but this call has {len(segments)} segment(s) "
                f"and {k} tasks; call reset() when the model or the task count changes"
            )
        if len(segments) == 1 and segments[0] == (0, p):
            gram = gram_matrix(grads)
            alpha = gradvac_coefficients(gram, self.rho[0], self.beta, self.ema, self.eps)
            out = combine(grads, alpha, self.reduction, has_grad, nonshared="sum", inplace=inplace)
        else:
            gram = torch.zeros(k, k, dtype=torch.float64, device=COEFFICIENT_DEVICE)
            out = grads[0] if inplace else torch.empty(p, dtype=grads.dtype, device=grads.device)
            for s, (a, b) in enumerate(segments):
                g = gram_matrix(grads[:, a:b])
                gram += g
                alpha = gradvac_coefficients(g, self.rho[s], self.beta, self.ema, self.eps)
                hg = None if has_grad is None else has_grad[:, a:b]
                part = combine(grads[:, a:b], alpha, self.reduction, hg, nonshared="sum", inplace=inplace)
                if not inplace:
                    out[a:b] = part
        stats = pair_stats(gram)
        off = ~torch.eye(k, dtype=torch.bool, device=COEFFICIENT_DEVICE)
        stats["phi_hat_mean"] = float(self.rho[:, off].mean()) if k > 1 else 0.0
        return out, stats

    def state_dict(self):
        return {"rho": None if self.rho is None else self.rho.clone()}

    def load_state_dict(self, state):
        unknown = set(state) - {"rho"}
        if unknown:
            raise ValueError(f"unexpected GradVac state keys {sorted(unknown)}")
        rho = state.get("rho")
        self.rho = None if rho is None else torch.as_tensor(rho).to(device=COEFFICIENT_DEVICE, dtype=torch.float64).clone()

    def reset(self) -> None:
        self.rho = None

    def __repr__(self) -> str:
        return (f"GradVac(beta={self.beta}, ema={self.ema!r}, reduction={self.reduction!r}, "
                f"granularity={self.granularity!r})")
