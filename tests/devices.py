"""Device helpers for tests: the device matrix, and a guard that exposes device mixing on a CPU.

``DEVICES`` is ``["cpu"]`` plus ``"cuda"`` when a GPU is visible, so a test
parametrized with :data:`on_devices` runs on the CPU in CI and on both on a GPU
machine.

:func:`implicit_tensors_on_meta` catches, on a CPU-only machine, the bug that
makes code crash on CUDA: a tensor created without an explicit ``device``
(``torch.eye(k)``, ``torch.tensor([...])``, ``torch.zeros(n)``) lands on the
*default* device (the CPU), and the first operation that mixes it with the
model's CUDA tensors fails. Inside the guard

* the default device is ``meta``, so every tensor created without an explicit
  device is a meta tensor (no data), and
* every torch function call checks that its tensor arguments share one device,
  so mixing such a tensor with the real (CPU) inputs raises at the offending
  line, with the function name and the devices involved.

Run the code under test with its inputs on the CPU inside the guard: if it
creates each tensor on the device of its inputs (or on the CPU on purpose, with
``device="cpu"``), it runs exactly as without the guard.

Code outside the project that creates CPU tensors on purpose (the optimizers'
step counters, DataLoader collation) must stay outside the guard.
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Optional, Set

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

DEVICES: List[str] = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

#: ``@on_devices`` parametrizes a test's ``device`` argument over :data:`DEVICES`
on_devices = pytest.mark.parametrize("device", DEVICES)


class DeviceMixingError(AssertionError):
    """A torch operation received tensors on more than one device."""


class _SingleDeviceCheck(TorchFunctionMode):
    """Raises :class:`DeviceMixingError` when a torch function gets tensors on several devices."""

    def __torch_function__(self, func, types, args=(), kwargs: Optional[Dict[str, Any]] = None):
        kwargs = kwargs or {}
        devices: Set[torch.device] = set()
        for leaf in tree_leaves((args, kwargs)):
            if isinstance(leaf, torch.Tensor):
                devices.add(leaf.device)
        if len(devices) > 1:
            name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
            raise DeviceMixingError(
                f"{name} received tensors on {sorted(str(d) for d in devices)}: a tensor was created without "
                "an explicit device (it landed on the default device, 'meta' in this test)"
            )
        return func(*args, **kwargs)


@contextlib.contextmanager
def implicit_tensors_on_meta() -> Iterator[None]:
    """Default device ``meta`` and a same-device check on every torch call (see the module docstring)."""
    previous = torch.get_default_device()
    torch.set_default_device("meta")
    try:
        with _SingleDeviceCheck():
            yield
    finally:
        torch.set_default_device(previous)


def assert_on(device: Any, *tensors: Optional[torch.Tensor]) -> None:
    """Every given tensor (``None`` is skipped) is on ``device`` (type and, when given, index)."""
    want = torch.device(device)
    for t in tensors:
        if t is None:
            continue
        same = t.device.type == want.type and (want.index is None or t.device.index == want.index)
        assert same, f"tensor of shape {tuple(t.shape)} is on {t.device}, expected {want}"
