"""Aligners on any device: no tensor created off the gradients' device, state that travels.

The guard (:func:`tests.devices.implicit_tensors_on_meta`) runs each aligner
with CPU gradients while every tensor created without an explicit device lands
on ``meta``; before the fix PCGrad's ``torch.eye(k)`` and GradVac's targets did,
which is what crashed on CUDA. The device-parametrized tests compare each
device's result with the CPU's (the CPU is held to the published code by
``test_parity.py``).
"""

from __future__ import annotations

import io
from typing import Any, Dict

import pytest
import torch

from dpda.align import build_aligner
from dpda.align.base import COEFFICIENT_DEVICE, gram_matrix
from tests.devices import assert_on, implicit_tensors_on_meta, on_devices

#: (aligner name, constructor options): every aligner and each option that takes another code path
VARIANTS = [
    ("none", {}),
    ("sum", {}),
    ("weighted", {"weights": [0.3, 0.7]}),
    ("pcgrad", {}),
    ("pcgrad", {"reduction": "sum", "eps": 1e-8, "shuffle": True, "seed": 3}),
    ("gradvac", {}),
    ("gradvac", {"ema": "always", "reduction": "sum"}),
    ("gradvac", {"granularity": "segments"}),
    ("cagrad", {}),
    ("cagrad", {"solver": "exact", "rescale": 2}),
    ("mgda", {}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}" for n, o in VARIANTS]
SEGMENTS = [(0, 40), (40, 100), (100, 160)]


def conflicting_grads(k: int = 2, p: int = 160, seed: int = 0, device: Any = "cpu") -> torch.Tensor:
    """(k, P) float32 gradients where task 1 conflicts with task 0 (negative dot product)."""
    g = torch.randn(k, p, generator=torch.Generator(device="cpu").manual_seed(seed), device="cpu")
    g[1] = -0.8 * g[0] + 0.4 * g[1]
    return g.to(device)


def has_grad_mask(k: int, p: int, device: Any) -> torch.Tensor:
    """Task 1 has no gradient on the last 30 entries (a parameter only the first path uses)."""
    mask = torch.ones(k, p, dtype=torch.bool, device=device)
    mask[1, p - 30:] = False
    return mask


def run_steps(name: str, options: Dict[str, Any], device: Any, k: int = 2, steps: int = 3, **call: Any):
    """Three calls of a fresh aligner (state evolves); returns (aligner, updates on the CPU)."""
    aligner = build_aligner(name, **options)
    outs = []
    for step in range(steps):
        g = conflicting_grads(k, seed=step, device=device)
        mask = call.get("has_grad")
        kwargs = dict(call)
        if mask is not None:
            kwargs["has_grad"] = mask.to(device)
            g[~kwargs["has_grad"]] = 0
        outs.append(aligner(g, segments=SEGMENTS, **kwargs).cpu())
    return aligner, outs


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
@pytest.mark.parametrize("call", [{}, {"inplace": True}, {"has_grad": "mask"}], ids=["plain", "inplace", "partial"])
def test_no_tensor_is_created_off_the_gradients_device(name, options, call):
    if call.get("has_grad") == "mask":
        call = {"has_grad": has_grad_mask(2, 160, "cpu")}
    _, expected = run_steps(name, options, "cpu", **call)
    with implicit_tensors_on_meta():
        aligner, got = run_steps(name, options, "cpu", **call)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    state = aligner.state_dict()
    for value in state.values():
        if isinstance(value, torch.Tensor):
            assert_on(COEFFICIENT_DEVICE, value)


@pytest.mark.parametrize("name", ["pcgrad", "gradvac", "mgda", "none"])
def test_more_than_two_tasks_under_the_guard(name):
    _, expected = run_steps(name, {}, "cpu", k=3)
    with implicit_tensors_on_meta():
        _, got = run_steps(name, {}, "cpu", k=3)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@on_devices
@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_update_on_device_matches_the_cpu(device, name, options):
    _, expected = run_steps(name, options, "cpu")
    aligner, got = run_steps(name, options, device)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # the returned update lives with the gradients, the state with the coefficient algebra
    g = conflicting_grads(device=device)
    assert_on(device, aligner(g, segments=SEGMENTS))
    buf = g.clone()
    assert aligner(buf, segments=SEGMENTS, inplace=True).data_ptr() == buf[0].data_ptr()
    for value in aligner.state_dict().values():
        if isinstance(value, torch.Tensor):
            assert_on(COEFFICIENT_DEVICE, value)


@on_devices
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_gradients_on_device(device, dtype):
    g = conflicting_grads(device=device).to(dtype)
    for name in ("pcgrad", "gradvac", "cagrad"):
        out = build_aligner(name)(g)
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        assert_on(device, out)


@on_devices
def test_gram_matrix_comes_to_the_coefficient_device(device):
    g = conflicting_grads(device=device)
    gram = gram_matrix(g)
    assert gram.dtype == torch.float64
    assert_on(COEFFICIENT_DEVICE, gram)
    torch.testing.assert_close(gram, (g.cpu() @ g.cpu().T).double(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("saved_on", ["cpu", "cuda"])
@pytest.mark.parametrize("name", ["gradvac", "pcgrad"])
def test_state_saved_on_one_device_continues_on_another(saved_on, name):
    if saved_on == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA to save from")
    options = {"shuffle": True, "seed": 5} if name == "pcgrad" else {}
    k = 3  # with three tasks PCGrad's shuffled visiting order matters
    first = build_aligner(name, **options)
    for step in range(2):
        first(conflicting_grads(k, seed=step, device=saved_on))
    blob = io.BytesIO()
    torch.save(first.state_dict(), blob)
    blob.seek(0)
    state = torch.load(blob, map_location="cpu", weights_only=True)
    for resume_on in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        second = build_aligner(name, **options)
        second.load_state_dict(state)
        reference = build_aligner(name, **options)
        reference.load_state_dict(first.state_dict())
        g = conflicting_grads(k, seed=9, device=resume_on)
        torch.testing.assert_close(second(g).cpu(), reference(g.cpu()), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.tensor(second.last_stats["cos_matrix"], device="cpu"),
                                   torch.tensor(reference.last_stats["cos_matrix"], device="cpu"), rtol=1e-5, atol=1e-6)
