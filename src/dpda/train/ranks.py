"""Ranks under ``torchrun``: the one owner of what the gradient steps do across processes.

Both gradient steps (:mod:`dpda.train.steps`: the single path, and the
dual-path engine) start from rank 0's weights and average their gradients
over the ranks here, so the update equals the single-process update on the
global batch (the concatenation of every rank's batch). Outside ``torchrun``
(``torch.distributed`` not initialised) there is one rank and every function
is a no-op.
"""

from __future__ import annotations

import weakref
from typing import Any, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn


def join_process_group(backend: str, **init_kwargs: Any) -> None:
    """``torch.distributed.init_process_group(backend, **init_kwargs)``, after importing what would hold the group.

    ``torch.distributed.nn`` binds ``group.WORLD`` as a default argument of its
    functions when it is first imported, and the first optimizer imports it (through
    ``torch._dynamo``). Imported after the group exists, it keeps the group alive past
    ``destroy_process_group``: gloo's worker threads then outlive the script and free
    their last collective's tensors while the interpreter shuts down, which aborts the
    process (SIGABRT, "terminate called without an active exception"; 1 exit in 40-150
    here, i.e. a torchrun job reported failed after it finished). Imported before,
    the default is ``None`` and :func:`leave_process_group` frees the group.
    """
    import torch._dynamo  # noqa: F401  (imports torch.distributed.nn)
    import torch.distributed.nn  # noqa: F401

    dist.init_process_group(backend, **init_kwargs)


def leave_process_group(barrier: bool = True) -> bool:
    """Destroy the default process group; True if that freed it (its threads joined, nothing left to abort).

    ``barrier``: wait for the other ranks first (after a finished run; not after an
    error, when they may never arrive), so no rank tears down a connection its peer
    still uses.
    """
    group = weakref.ref(dist.group.WORLD)
    if barrier:
        dist.barrier()
    dist.destroy_process_group()
    return group() is None


def rank_and_world() -> Tuple[int, int]:
    """``(rank, world size)``: ``(0, 1)`` outside an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def broadcast_from_rank0(module: nn.Module) -> None:
    """Every parameter and buffer of ``module`` := rank 0's (in place; nothing with one rank)."""
    if rank_and_world()[1] == 1:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def average_over_ranks(*tensors: torch.Tensor) -> None:
    """Each tensor := its mean over the ranks (an all-reduce sum, then a division; in place).

    One collective per tensor: give one flat buffer rather than many small
    tensors where it matters. Nothing with one rank.
    """
    world = rank_and_world()[1]
    if world == 1:
        return
    for t in tensors:
        dist.all_reduce(t)
        t.div_(world)


def ranks_agree(model: nn.Module) -> bool:
    """All ranks hold identical weights (one float64 checksum per rank, compared; True with one rank)."""
    world = rank_and_world()[1]
    if world == 1:
        return True
    with torch.no_grad():
        total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    gathered = [torch.zeros_like(total) for _ in range(world)]
    dist.all_gather(gathered, total)
    return all(bool(torch.equal(g, gathered[0])) for g in gathered)


__all__ = ["average_over_ranks", "broadcast_from_rank0", "join_process_group", "leave_process_group", "rank_and_world",
           "ranks_agree"]
