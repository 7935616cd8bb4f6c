"""The engine's flat gradient buffer: writing per-parameter gradients into it, and the random-number state
saved around a first batched try (:class:`~dpda.train.engine.DualPathEngine`)."""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn


def rng_state(device: torch.device) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def set_rng_state(device: torch.device, state: Tuple[torch.Tensor, Optional[torch.Tensor]]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def write_flat(out: torch.Tensor, grads: Sequence[Optional[torch.Tensor]], params: Sequence[nn.Parameter],
               zeros: Optional[Dict[Tuple[int, int], torch.Tensor]] = None) -> None:
    """Flatten ``grads`` (one per parameter; None = no gradient, written as zeros) into ``out`` with one ``cat``.

    ``out`` is a row ``(P,)`` of the engine's buffer with gradients shaped like
    the parameters, or the whole buffer ``(2, P)`` with gradients ``(2,
    *shape)`` (both paths at once). Gradients of another dtype (a
    low-precision model) are converted. ``zeros``: a cache of the zero parts
    (never written to), so a parameter that never gets a gradient (an unused
    layer) costs no operator per step.
    """
    lead = tuple(out.shape[:-1])
    parts = []
    for i, (g, p) in enumerate(zip(grads, params)):
        if g is not None:
            parts.append(g.reshape(*lead, -1))
            continue
        key = (i, len(lead))
        z = zeros.get(key) if zeros is not None else None
        if z is None or z.dtype != out.dtype or z.device != out.device:
            z = out.new_zeros(*lead, p.numel())
            if zeros is not None:
                zeros[key] = z
        parts.append(z)
    if all(t.dtype == out.dtype for t in parts):
        torch.cat(parts, dim=-1, out=out)
    else:
        out.copy_(torch.cat([t.to(out.dtype) for t in parts], dim=-1))
