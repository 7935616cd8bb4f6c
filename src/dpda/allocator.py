"""CPU runs keep freed activation memory instead of handing it back to the kernel every step.

glibc serves allocations above its mmap threshold (128 KiB, rising to at most
32 MiB) with fresh ``mmap`` pages and returns them on ``free``. A training
step frees and re-allocates the same activation buffers every step, so each
step page-faults them in again: on the 2-core VM the demo took 86.7 M minor
page faults and spent more system time re-faulting than convolving.
:func:`keep_freed_memory` raises the mmap and trim thresholds (``mallopt``) so
that freed blocks stay in the heap and are reused. The cost is that the
process keeps its peak heap until it exits, which is what a training or
scoring process wants anyway. Only glibc on Linux has these knobs; elsewhere
nothing changes. ``DPDA_KEEP_FREED_MEMORY=0`` turns it off; glibc's own
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` variables, when set,
are left to rule.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: 1 GiB: blocks below it come from the heap and stay there when freed (glibc 2.36 accepts it; at 32 MiB,
#: its dynamic ceiling, the faults of a conv step barely change: 1.61 M against 0.13 M at 1 GiB)
THRESHOLD_BYTES = 1 << 30
ENV_SWITCH = "DPDA_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds to :data:`THRESHOLD_BYTES`; True when applied."""
    if os.environ.get(ENV_SWITCH, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False  # the user (or bench/minibench.py) chose through glibc's own variables
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, THRESHOLD_BYTES))
