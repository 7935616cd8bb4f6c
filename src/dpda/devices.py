"""Where a process runs: device names from configs and command lines, and one GPU per rank.

``device`` settings accept ``auto`` (CUDA when a GPU is visible, else the
CPU), ``cpu``, ``cuda`` or ``cuda:N``. Under ``torchrun`` each process (rank)
takes one GPU, ``cuda:LOCAL_RANK``, and talks to the others over NCCL; CPU
ranks use gloo. A launch with more ranks on a node than it has visible GPUs
stops before any work with a message that says so (instead of "invalid device
ordinal" from deep inside CUDA).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional

import torch

from dpda.errors import DpdaError


class DeviceError(DpdaError, ValueError):
    """A device setting that cannot be honoured on this machine."""


@dataclass(frozen=True)
class Placement:
    """The device of one process and the ``torch.distributed`` backend that suits it."""

    device: torch.device
    backend: str  # "nccl" for CUDA ranks, "gloo" otherwise


def _parse(name: str) -> torch.device:
    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceError(f"device {name!r} is not a device name; use auto, cpu, cuda or cuda:N") from None


def place_rank(
    device: str,
    *,
    world_size: int = 1,
    local_rank: int = 0,
    local_world_size: Optional[int] = None,
    cuda_count: Optional[int] = None,
) -> Placement:
    """The device and backend of rank ``local_rank`` of ``local_world_size`` on this node.

    Args:
        device: the setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ...).
        world_size: processes in the job (all nodes).
        local_rank / local_world_size: this process's index and the process count on this node
            (``LOCAL_RANK`` / ``LOCAL_WORLD_SIZE`` under torchrun; default: ``world_size``).
        cuda_count: visible GPUs (default: ``torch.cuda.device_count()``).
    Raises:
        DeviceError: CUDA asked for but absent, ``cuda:N`` beyond the visible GPUs, one fixed GPU for
            several ranks, or more ranks on this node than visible GPUs.
    """
    if cuda_count is None:
        cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    local_world_size = world_size if local_world_size is None else local_world_size
    name = str(device).strip()
    if name == "auto":
        name = "cuda" if cuda_count > 0 else "cpu"
    dev = _parse(name)
    if dev.type != "cuda":
        return Placement(dev, "gloo")
    if cuda_count == 0:
        raise DeviceError(f"device {name!r} requested but no CUDA device is available (use cpu or auto)")
    if world_size > 1:
        if dev.index is not None:
            raise DeviceError(
                f"device {name!r} would put all {world_size} ranks on one GPU; use device=cuda (or auto): "
                "rank r then runs on cuda:LOCAL_RANK"
            )
        if local_world_size > cuda_count:
            raise DeviceError(
                f"{local_world_size} ranks on this node but only {cuda_count} visible GPU(s): dpda runs one rank per "
                f"GPU; start torchrun with --nproc_per_node {cuda_count} (or fewer), or set device=cpu to train "
                "on the CPU with gloo"
            )
        return Placement(torch.device("cuda", local_rank), "nccl")
    index = 0 if dev.index is None else dev.index
    if index >= cuda_count:
        raise DeviceError(f"device {name!r} requested but only {cuda_count} GPU(s) are visible (cuda:0..cuda:{cuda_count - 1})")
    return Placement(torch.device("cuda", index), "nccl")


def place_from_env(device: str, env: Optional[Mapping[str, str]] = None) -> Placement:
    """:func:`place_rank` with the rank layout torchrun puts in the environment (one process: rank 0 of 1)."""
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1"))
    return place_rank(
        device,
        world_size=world,
        local_rank=int(env.get("LOCAL_RANK", "0")),
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", str(world))),
    )
