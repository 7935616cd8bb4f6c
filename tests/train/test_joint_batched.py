"""Joint mode's one pass (DualPathEngine(mode="joint", one_pass=True)): both path gradients from one vmapped
forward/backward over two copies of the joint batch (``joint_one_pass="copies"``, the default) or from one
backward pass batched over the two loss cotangents (``"batched_backward"``) equal the two backward passes, on
every model family; a model that cannot be batched falls back once, with a warning, to the same result."""

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
from tests.train.test_one_pass import FAMILIES, running_stats, without_dropout


FORMS = ("copies", "batched_backward")


def seen_and_update(model: nn.Module, one_pass: bool, x, x_aug, y, steps: int = 1, form: str = "copies"):
    recorder = Recorder()
    engine = DualPathEngine(model, recorder, mode="joint", one_pass=one_pass, joint_one_pass=form)
    outs = [engine.compute_gradients(x, x_aug, y) for _ in range(steps)]
    grads = torch.cat([p.grad.reshape(-1) for p in trainable(model) if p.grad is not None])
    return recorder.seen.cpu(), outs[-1], grads, engine


@on_devices
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", list(FAMILIES))
def test_one_pass_matches_two_backward_passes(device, name, form):
    torch.manual_seed(0)
    model = without_dropout(build_model(name, **FAMILIES[name])).to(device)
    x, x_aug, y = batch(b=3, t=16000, device=device)
    seen0, out0, grad0, _ = seen_and_update(copy.deepcopy(model), False, x, x_aug, y)
    seen1, out1, grad1, engine = seen_and_update(copy.deepcopy(model), True, x, x_aug, y, form=form)
    assert engine.one_pass_fallback is None
    assert (engine._one_pass is not None) == (form == "copies")
    scale = float(seen0.abs().max())
    torch.testing.assert_close(seen1, seen0, rtol=0, atol=1e-4 * scale)
    torch.testing.assert_close(grad1.cpu(), grad0.cpu(), rtol=0, atol=1e-4 * float(grad0.abs().max()))
    if form == "batched_backward":  # the same forward pass
        assert out1.loss_orig == out0.loss_orig and out1.loss_aug == out0.loss_aug
    else:  # the joint forward of 2B utterances, computed for two copies at once
        assert out1.loss_orig == pytest.approx(out0.loss_orig, rel=1e-5)
        assert out1.loss_aug == pytest.approx(out0.loss_aug, rel=1e-5)


@pytest.mark.parametrize("form", FORMS)
def test_one_pass_equals_the_reference_on_a_net_with_frozen_and_unused_parameters(form):
    torch.manual_seed(0)
    model = TinyNet()
    x, x_aug, y = batch()
    want = torch.stack(reference_grads(copy.deepcopy(model), x, x_aug, y, "joint",
                                       DualPathEngine(model, "none").loss_fn))
    seen, _, _, engine = seen_and_update(model, True, x, x_aug, y, steps=2, form=form)
    torch.testing.assert_close(seen, want, rtol=1e-5, atol=1e-6)
    assert engine.one_pass_fallback is None
    assert model.unused.grad is None and model.frozen.weight.grad is None


@pytest.mark.parametrize("name", ["lcnn", "rawnet2"])
def test_copies_draw_the_joint_forwards_dropout_mask_and_update_running_statistics_once(name):
    """Dropout ON (LCNN 0.7, RawNet2's): both copies use the one mask that the joint forward draws from the same
    random-number state (their inputs are contiguous, so the masks are laid out alike), and BatchNorm's running
    statistics get one update (num_batches_tracked + 1), as after one joint forward."""
    torch.manual_seed(0)
    model = build_model(name, **FAMILIES[name]).train()
    x, x_aug, y = batch(b=3, t=16000)
    results = []
    for one_pass in (False, True):
        m = copy.deepcopy(model)
        torch.manual_seed(5)
        seen, out, _, engine = seen_and_update(m, one_pass, x, x_aug, y)
        assert engine.one_pass_fallback is None
        results.append((seen, out, running_stats(m), torch.rand(3)))
    (seen0, out0, stats0, after0), (seen1, out1, stats1, after1) = results
    torch.testing.assert_close(seen1, seen0, rtol=0, atol=1e-4 * float(seen0.abs().max()))
    assert out1.loss_orig == pytest.approx(out0.loss_orig, rel=1e-5)
    assert stats1.keys() == stats0.keys() and stats0
    for k in stats0:
        torch.testing.assert_close(stats1[k], stats0[k], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(after1, after0, rtol=0, atol=0)  # the same random numbers were consumed


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
    """The copies fail (a custom Function without a vmap rule), then the batched backward (a host read): each
    warns once, and the two backward passes give the unbatched result."""
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
            assert engine.one_pass_fallback is not None and engine._one_pass is None
            messages = [str(w.message) for w in caught]
            assert sum("one-pass gradients not used" in m and "batched over the two losses" in m
                       for m in messages) == 1, messages
            assert sum("batched backward not used" in m and "two backward passes" in m for m in messages) == 1
    torch.testing.assert_close(results[1][0], results[0][0], rtol=0, atol=0)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=0, atol=0)


def test_one_pass_is_the_default_on_cuda_only():
    engine = DualPathEngine(TinyNet(), "pcgrad", mode="joint")
    assert engine._use_one_pass(torch.device("cuda")) and not engine._use_one_pass(torch.device("cpu"))
    assert not DualPathEngine(TinyNet(), "pcgrad", mode="joint", one_pass=False)._use_one_pass(torch.device("cuda"))
    assert DualPathEngine(TinyNet(), "pcgrad", mode="joint", one_pass=True)._use_one_pass(torch.device("cpu"))


@on_devices
@pytest.mark.parametrize("mode, form", [("joint", "copies"), ("joint", "batched_backward"), ("split", "copies")])
@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_batched_passes_under_autocast_match_the_unbatched_ones(device, mode, form, amp_dtype):
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
        engine = DualPathEngine(copy.deepcopy(model), recorder, mode=mode, amp_dtype=amp_dtype, one_pass=one_pass,
                                joint_one_pass=form)
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


class OutOfMemoryWhenBatched(nn.Module):
    """Raises CUDA's out-of-memory error inside the vmapped forward (after a BatchNorm has updated its running
    statistics), as the copies' twice-the-activations forward would on a GPU that is too small."""

    def forward(self, x):
        from torch._C._functorch import is_batchedtensor
        if is_batchedtensor(x):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x


def test_copies_out_of_memory_on_the_first_step_fall_back_to_the_batched_backward_as_if_never_tried():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Unflatten(1, (1, -1)), nn.Conv1d(1, 4, 9, stride=4), nn.BatchNorm1d(4), nn.ReLU(),
                         nn.Dropout(0.3), OutOfMemoryWhenBatched(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                         nn.Linear(4, 2))
    x, x_aug, y = batch()
    results = []
    for form in ("copies", "batched_backward"):
        model = copy.deepcopy(base)
        torch.manual_seed(3)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            seen, _, grads, engine = seen_and_update(model, True, x, x_aug, y, steps=2, form=form)
        results.append((seen, grads, running_stats(model), torch.rand(2)))
        messages = [str(w.message) for w in caught if "not used" in str(w.message)]
        if form == "copies":
            assert len(messages) == 1 and "OutOfMemoryError" in messages[0], messages
            assert "batched over the two losses" in messages[0]
            assert engine._one_pass is None and engine._joint_batched
        else:
            assert not messages
    for got, want in zip(results[0][:2] + (results[0][3],), results[1][:2] + (results[1][3],)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    for k, v in results[1][2].items():
        torch.testing.assert_close(results[0][2][k], v, rtol=0, atol=0)
