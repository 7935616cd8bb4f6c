"""A run's checkpoints: the resume files and the top-k epochs by the monitored metric.

``RUN_DIR/checkpoints/``::

    last.pt          full training state after the last completed checkpoint
    last.prev.pt     the one before (resumed from when last.pt is unreadable)
    epoch_NNN.pt     weights (a model file) of the top-k epochs by the monitored metric

Like SpeechBrain's ``Checkpointer`` with keep-top-k: after every epoch the
epoch's weights are kept when they rank among the ``train.top_k`` lowest
values of the monitored metric (ties: the earlier epoch first), and the file
of the epoch that falls out is deleted. The ranking ``(value, epoch, file)``
is part of the full state, so a resumed run keeps the same files.

RNG states: :func:`capture_rng` / :func:`restore_rng` save and restore the
torch CPU and CUDA generators and the device augmentation's generator.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

import torch

from dpda.errors import DpdaError
from dpda.train.build import DeviceAugment
from dpda.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

#: one kept epoch: (monitored value, epoch (1-based), file name under checkpoints/)
TopK = Tuple[float, int, str]


class Checkpointer:
    """Writes and reads ``RUN_DIR/checkpoints`` (only the main rank writes).

    Args:
        ckpt_dir: ``RUN_DIR/checkpoints``.
        top_k: epochs kept (``train.top_k`` >= 1).
        is_main: whether this rank writes files.
    """

    def __init__(self, ckpt_dir: Path, top_k: int, is_main: bool = True) -> None:
        self.dir = Path(ckpt_dir)
        self.top_k = top_k
        self.is_main = is_main
        #: the kept epochs, best first
        self.topk: List[TopK] = []

    # ------------------------------------------------------------------ resume files
    def has_last(self) -> bool:
        """Whether there is anything to resume from (``last.pt`` or ``last.prev.pt``)."""
        return any((self.dir / name).exists() for name in ("last.pt", "last.prev.pt"))

    def save_last(self, state: Dict[str, Any]) -> None:
        """``last.pt`` := ``state``; the previous ``last.pt`` becomes ``last.prev.pt``."""
        if not self.is_main:
            return
        last = self.dir / "last.pt"
        if last.exists():
            os.replace(last, self.dir / "last.prev.pt")
        save_checkpoint(last, state)

    def load_last(self, warn: Callable[[str], None]) -> Dict[str, Any]:
        """The newest readable resume file (on the CPU); ``warn`` says when ``last.pt`` was unreadable.

        Raises :class:`DpdaError` when there is none.
        """
        errors = []
        for name in ("last.pt", "last.prev.pt"):
            path = self.dir / name
            if not path.exists():
                continue
            try:
                state = load_checkpoint(path, map_location="cpu")
                if errors:
                    warn(f"warning: {errors[-1]}; resuming from {path.name} instead")
                return state
            except CheckpointError as e:
                errors.append(str(e))
        run_dir = self.dir.parent
        raise DpdaError(f"{run_dir}: nothing to resume from"
                        + (f" ({'; '.join(errors)})" if errors else " (no checkpoints/last.pt)"))

    # ------------------------------------------------------------------ top-k epochs
    def keep_if_top(self, epoch: int, value: float, payload: Callable[[], Dict[str, Any]]) -> bool:
        """Keep epoch ``epoch`` (0-based) when ``value`` ranks among the top k; True when kept.

        ``payload()`` gives the model file to write (called only when kept, on the main rank).
        """
        if len(self.topk) >= self.top_k and value >= max(t[0] for t in self.topk):
            return False
        name = f"epoch_{epoch + 1:03d}.pt"
        if self.is_main:
            save_checkpoint(self.dir / name, payload())
        self.topk.append((value, epoch + 1, name))
        self.topk.sort(key=lambda t: (t[0], t[1]))
        while len(self.topk) > self.top_k:
            _, _, dropped = self.topk.pop()
            if self.is_main:
                (self.dir / dropped).unlink(missing_ok=True)
        return True

    def load_states(self) -> Dict[str, Dict[str, torch.Tensor]]:
        """``file name -> model state dict`` of the kept epochs."""
        return {name: load_checkpoint(self.dir / name)["model_state"] for _, _, name in self.topk}

    def restore_topk(self, topk: Sequence[Sequence[Any]]) -> None:
        """The ranking of a full state (tuples come back from a checkpoint as lists)."""
        self.topk = [tuple(x) for x in topk]  # type: ignore[misc]


def capture_rng(device: torch.device, augment: DeviceAugment) -> Dict[str, Any]:
    """The RNG states of a full checkpoint: torch CPU, the augmentation generator (and its device type), CUDA."""
    rng: Dict[str, Any] = {"torch": torch.get_rng_state(), "augment": augment.generator.get_state(),
                           "augment_device": device.type}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: Dict[str, Any], augment: DeviceAugment, global_step: int, log: Callable[[str], None]) -> None:
    """RNG states of a checkpoint, which may come from another device (resume of a CUDA run on the CPU, ...).

    The CPU stream is the same everywhere. The augmentation generator continues
    exactly on the same device type and is reseeded on another one
    (:meth:`DeviceAugment.restore`, said in ``log``). CUDA states are restored
    for the GPUs both machines have.
    """
    torch.set_rng_state(rng["torch"].to(device="cpu", dtype=torch.uint8))
    saved_on = rng.get("augment_device")
    if not augment.restore(rng["augment"], saved_on, global_step):
        log(f"note: the checkpoint's augmentation RNG comes from {saved_on or 'another device'} and cannot continue "
            f"on {augment.device.type}; reseeded it (the random augmentations differ from an uninterrupted run)")
    cuda_states = rng.get("cuda") or []
    if torch.cuda.is_available() and cuda_states:
        for index in range(min(len(cuda_states), torch.cuda.device_count())):
            torch.cuda.set_rng_state(cuda_states[index].to(device="cpu", dtype=torch.uint8), index)


__all__ = ["Checkpointer", "TopK", "capture_rng", "restore_rng"]
