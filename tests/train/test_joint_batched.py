"""Joint mode's batched backward (DualPathEngine(mode="joint", one_pass=True)): both path gradients from one
backward pass batched over the two loss cotangents equal the two backward passes, on every model family; a
model whose backward cannot be batched falls back once, with a warning, to the same result."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn as nn

from dpda.models import build_model
from dpda.train import DualPathEngine
from tests.devices import on_devices
from tests.train.test_engine import Recorder, TinyNet, batch, reference_grads, trainable
from tests.train.test_one_pass import FAMILIES, without_dropout


def seen_and_update(model: nn.Module, one_pass: bool, x, x_aug, y, steps: int = 1):
    recorder = Recorder()
    engine = DualPathEngine(model, recorder, mode="joint", one_pass=one_pass)
    outs = [engine.compute_gradients(x, x_aug, y) for _ in range(steps)]
    grads = torch.cat([p.grad.reshape(-1) for p in trainable(model) if p.grad is not None])
    return recorder.seen.cpu(), outs[-1], grads, engine


@on_devices
@pytest.mark.parametrize("name", list(FAMILIES))
def test_batched_backward_matches_two_backward_passes(device, name):
    torch.manual_seed(0)
    model = without_dropout(build_model(name, **FAMILIES[name])).to(device)
    x, x_aug, y = batch(b=3, t=16000, device=device)
    seen0, out0, grad0, _ = seen_and_update(copy.deepcopy(model), False, x, x_aug, y)
    seen1, out1, grad1, engine = seen_and_update(copy.deepcopy(model), True, x, x_aug, y)
    assert engine.one_pass_fallback is None
    scale = float(seen0.abs().max())
    torch.testing.assert_close(seen1, seen0, rtol=0, atol=1e-4 * scale)
    torch.testing.assert_close(grad1.cpu(), grad0.cpu(), rtol=0, atol=1e-4 * float(grad0.abs().max()))
    assert out1.loss_orig == out0.loss_orig and out1.loss_aug == out0.loss_aug  # same forward pass


def test_batched_backward_equals_the_reference_on_a_net_with_frozen_and_unused_parameters():
    torch.manual_seed(0)
    model = TinyNet()
    x, x_aug, y = batch()
    want = torch.stack(reference_grads(copy.deepcopy(model), x, x_aug, y, "joint",
                                       DualPathEngine(model, "none").loss_fn))
    seen, _, _, engine = seen_and_update(model, True, x, x_aug, y, steps=2)
    torch.testing.assert_close(seen, want, rtol=1e-5, atol=1e-6)
    assert engine.one_pass_fallback is None
    assert model.unused.grad is None and model.frozen.weight.grad is None


class Unbatchable(torch.autograd.Function):
    """A custom backward that reads a value to the host: vmap (the batched backward) cannot run it."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        if float(g.abs().max()) > 1e9:
            g = g / 1e9
        return g * 2


class WithHostReadInBackward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 9, stride=4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = Unbatchable.apply(self.conv(x.unsqueeze(1)))
        return self.head(h.mean(-1))


def test_a_backward_that_cannot_be_batched_falls_back_once_with_the_same_gradients():
    torch.manual_seed(0)
    base = WithHostReadInBackward()
    x, x_aug, y = batch()
    results = []
    for one_pass in (False, True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            seen, _, grads, engine = seen_and_update(copy.deepcopy(base), one_pass, x, x_aug, y, steps=2)
        results.append((seen, grads))
        if one_pass:
            assert engine.one_pass_fallback is not None
            assert sum("batched backward not used" in str(w.message) for w in caught) == 1
    torch.testing.assert_close(results[1][0], results[0][0], rtol=0, atol=0)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=0, atol=0)


def test_batched_backward_is_the_default_on_cuda_only():
    engine = DualPathEngine(TinyNet(), "pcgrad", mode="joint")
    assert engine._use_one_pass(torch.device("cuda")) and not engine._use_one_pass(torch.device("cpu"))
    assert not DualPathEngine(TinyNet(), "pcgrad", mode="joint", one_pass=False)._use_one_pass(torch.device("cuda"))
    assert DualPathEngine(TinyNet(), "pcgrad", mode="joint", one_pass=True)._use_one_pass(torch.device("cpu"))


@on_devices
@pytest.mark.parametrize("mode", ["joint", "split"])
@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_batched_passes_under_autocast_match_the_unbatched_ones(device, mode, amp_dtype):
    """Both batched passes under autocast (the split kernels cast as autocast would; float16 with its loss
    scaler): the path gradients the aligner sees are the unbatched passes' within half-precision rounding.
    (A network without a data-dependent selection: AASIST's top-k graph pooling may pick other nodes when
    half-precision rounding differs, which changes the gradient discontinuously.)"""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Unflatten(1, (1, -1)), nn.Conv1d(1, 8, 9, stride=4), nn.BatchNorm1d(8), nn.ReLU(),
                          nn.Conv1d(8, 8, 5, stride=2), nn.GroupNorm(2, 8), nn.GELU(), nn.Flatten(1, 1),
                          Transpose(), nn.LayerNorm(8), nn.Linear(8, 8), nn.Tanh(), Transpose(),
                          nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 2)).to(device)
    x, x_aug, y = batch(b=3, t=4000, device=device)
    seen = []
    for one_pass in (False, True):
        recorder = Recorder()
        engine = DualPathEngine(copy.deepcopy(model), recorder, mode=mode, amp_dtype=amp_dtype, one_pass=one_pass)
        out = engine.compute_gradients(x, x_aug, y)
        assert not out.skipped and engine.one_pass_fallback is None
        seen.append(recorder.seen.cpu())
    scale = float(seen[0].abs().max())
    torch.testing.assert_close(seen[1], seen[0], rtol=0, atol=2e-2 * scale)
    cos = torch.nn.functional.cosine_similarity(seen[1], seen[0], dim=1)
    assert bool((cos > 0.999).all()), cos


class Transpose(nn.Module):
    def forward(self, x):
        return x.transpose(1, 2)
