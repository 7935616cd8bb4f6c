"""Stopping a training run cleanly at SIGINT (Ctrl-C) or SIGTERM (a scheduler's preemption).

While :class:`StopRequest` is active (a context manager around the epochs of
:meth:`dpda.train.trainer.Trainer.fit`), the first SIGINT or SIGTERM only sets
a flag: the loop finishes the gradient step it is in, writes ``last.pt`` at
that step and raises :class:`TrainingInterrupted` (a ``KeyboardInterrupt``:
``dpda train`` exits with code 130). ``--resume`` then continues from exactly
that step, so nothing trained before the signal is lost (without it, up to
``--checkpoint-every`` steps were). A second signal stops at once
(``KeyboardInterrupt``), from the last checkpoint written before it.

SLURM sends SIGTERM and, ``KillWait`` seconds later (30 s by default),
SIGKILL: one step plus the checkpoint write must fit in that time. A signal
that arrives during validation takes effect after the epoch's checkpoint.

With several ranks each step ends with a MAX all-reduce of the flag (one int
tensor on the rank's device), so all ranks stop after the same step even when
the signal reaches only one of them; rank 0 writes the checkpoint. Handlers
are installed only in the main thread (Python delivers signals there) and the
previous handlers come back when the context ends.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any, Dict, Optional

import torch
import torch.distributed as dist

#: the signals that ask a run to stop after its current step
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """Raised after the training state at a step boundary was written to ``last.pt``."""


class StopRequest:
    """Turns the first SIGINT/SIGTERM into a flag read at step boundaries.

    Args:
        device: where the flag's all-reduce runs with several ranks (the rank's device).
        world: number of ranks (1: no collective).
        announce: whether this process writes the one-line acknowledgement to stderr (rank 0).
    """

    def __init__(self, device: torch.device, world: int = 1, announce: bool = True) -> None:
        self.device = torch.device(device)
        self.world = world
        self.announce = announce
        #: name of the signal received first (None: none yet)
        self.signal_name: Optional[str] = None
        self._previous: Dict[int, Any] = {}

    # ------------------------------------------------------------------ handlers
    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.signal_name is not None:
            raise KeyboardInterrupt  # the second signal: stop now
        self.signal_name = signal.Signals(signum).name
        if self.announce:  # os.write: no buffered stream is re-entered from a handler
            os.write(2, f"\n{self.signal_name}: stopping after this step and writing a checkpoint "
                        "(send it again to stop at once)\n".encode())

    # ------------------------------------------------------------------ the flag
    @property
    def received(self) -> bool:
        """Whether this process received a stop signal (no collective)."""
        return self.signal_name is not None

    def requested(self) -> bool:
        """Whether any rank received a stop signal; every rank must call it at the same step."""
        if self.world == 1:
            return self.received
        flag = torch.tensor([1 if self.received else 0], dtype=torch.int32, device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


__all__ = ["STOP_SIGNALS", "StopRequest", "TrainingInterrupted"]
