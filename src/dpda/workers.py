"""DataLoader worker processes that die with their parent, and a worker count that fits the machine.

A DataLoader's workers notice a dead parent only at their next poll; after a
``kill -9`` of ``dpda score`` or ``dpda train`` they lingered for minutes,
each holding its copy of the dataset. :func:`die_with_parent` asks Linux to
send the worker SIGKILL when the process that forked it dies
(``prctl(PR_SET_PDEATHSIG)``); elsewhere it does nothing and the DataLoader's
own watchdog applies. :func:`default_workers` is the count PyTorch itself
considers safe (the CPUs this process may run on), at most 4.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Callable, Optional

#: prctl option: signal to deliver when the parent dies (linux/prctl.h)
_PR_SET_PDEATHSIG = 1
#: upper bound of the default worker count (audio decoding rarely needs more per GPU)
MAX_DEFAULT_WORKERS = 4


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else ``os.cpu_count()``)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """DataLoader workers by default: the usable CPUs, at most :data:`MAX_DEFAULT_WORKERS`.

    PyTorch warns ("suggested max number of worker") when ``num_workers``
    exceeds the usable CPUs; this never does.
    """
    return min(MAX_DEFAULT_WORKERS, usable_cpus())


def die_with_parent(parent_pid: Optional[int] = None) -> bool:
    """Have the kernel SIGKILL this process when its parent dies (Linux); True when armed.

    ``parent_pid``: the pid the caller expects as parent; when the parent has
    already changed (it died before the call), the process exits at once.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the parent died between the fork and the prctl call
    return True


class WorkerInit:
    """A picklable DataLoader ``worker_init_fn``: arm :func:`die_with_parent`, then call ``then(worker_id)``."""

    def __init__(self, then: Optional[Callable[[int], None]] = None) -> None:
        self.parent_pid = os.getpid()
        self.then = then

    def __call__(self, worker_id: int) -> None:
        die_with_parent(self.parent_pid)
        if self.then is not None:
            self.then(worker_id)
