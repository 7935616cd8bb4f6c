"""The one-pass split's per-layer kernels (dpda.train.path_kernels): each layer kind, on its own and mixed with
parameters the kernels leave to functorch, gives each path exactly its two-pass gradient (float64) and the
running statistics two passes give; layers they cannot take (string padding, a weight computed from parameters,
autocast) keep the generic rule, with the same result."""

from __future__ import annotations

import contextlib
import copy
from typing import Callable, Dict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dpda.train.one_pass import OnePass
from tests.devices import on_devices


def ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)


class Net(nn.Module):
    """``pre`` shapes the (N, 240) waveforms for ``layer``; a generic parameter (``scale``, used by a plain
    multiplication) and a linear head follow, so every test also mixes kernel and generic gradients."""

    def __init__(self, layer: nn.Module, pre: Callable[[torch.Tensor], torch.Tensor], features: int) -> None:
        super().__init__()
        self.layer, self.pre = layer, pre
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, features))
        self.head = nn.Linear(features, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layer(self.pre(x))
        h = h.flatten(2).mean(-1) if h.dim() > 2 else h
        return self.head(torch.tanh(h) * self.scale)


def seq(n: int, c: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: x.view(x.shape[0], c, -1)


def tokens(d: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: x.view(x.shape[0], -1, d).transpose(1, 2).transpose(1, 2)  # (N, T, d), strided


def image(c: int, h: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: x.view(x.shape[0], c, h, -1)


class Tokens(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x):  # (N, T, d) -> (N, d, T) for the mean over time
        return self.layer(x).transpose(1, 2)


CASES: Dict[str, Callable[[], Net]] = {
    "linear": lambda: Net(Tokens(nn.Linear(8, 6)), tokens(8), 6),
    "linear_no_bias": lambda: Net(Tokens(nn.Linear(8, 6, bias=False)), tokens(8), 6),
    "conv1d": lambda: Net(nn.Conv1d(4, 6, 5, stride=2, padding=2, dilation=2), seq(0, 4), 6),
    "conv1d_groups_no_bias": lambda: Net(nn.Conv1d(4, 6, 3, groups=2, bias=False), seq(0, 4), 6),
    "conv1d_reflect": lambda: Net(nn.Conv1d(4, 6, 3, padding=1, padding_mode="reflect"), seq(0, 4), 6),
    "conv2d": lambda: Net(nn.Conv2d(2, 5, (3, 2), stride=(1, 2), padding=(1, 0)), image(2, 6), 5),
    "layer_norm": lambda: Net(Tokens(nn.LayerNorm(8)), tokens(8), 8),
    "group_norm": lambda: Net(nn.GroupNorm(2, 4), seq(0, 4), 4),
    "batch_norm1d": lambda: Net(nn.BatchNorm1d(4), seq(0, 4), 4),
    "batch_norm2d": lambda: Net(nn.BatchNorm2d(2), image(2, 6), 2),
    "batch_norm_no_affine": lambda: Net(nn.BatchNorm1d(4, affine=False), seq(0, 4), 4),
    "batch_norm_no_running_stats": lambda: Net(nn.BatchNorm1d(4, track_running_stats=False), seq(0, 4), 4),
}
#: the functions each case must route to the kernels (the head's F.linear is routed in every case)
ROUTED = {
    "linear": {"linear": 2}, "linear_no_bias": {"linear": 2}, "conv1d": {"conv1d": 1, "linear": 1},
    "conv1d_groups_no_bias": {"conv1d": 1, "linear": 1}, "conv1d_reflect": {"conv1d": 1, "linear": 1},
    "conv2d": {"conv2d": 1, "linear": 1}, "layer_norm": {"layer_norm": 1, "linear": 1},
    "group_norm": {"group_norm": 1, "linear": 1}, "batch_norm1d": {"batch_norm": 1, "linear": 1},
    "batch_norm2d": {"batch_norm": 1, "linear": 1}, "batch_norm_no_affine": {"batch_norm": 1, "linear": 1},
    "batch_norm_no_running_stats": {"batch_norm": 1, "linear": 1},
}


def two_pass(model: nn.Module, x, x_aug, y):
    params = [p for p in model.parameters() if p.requires_grad]
    return [torch.autograd.grad(ce(model(inp), y), params, allow_unused=True) for inp in (x, x_aug)]


def one_pass(model: nn.Module, x, x_aug, y, kernels: bool = True, autocast=contextlib.nullcontext):
    params = [p for p in model.parameters() if p.requires_grad]
    op = OnePass(model, params, kernels=kernels)
    lo, la, rows = op(x, x_aug, y, ce, autocast)
    return rows, op.last_routed, (lo, la)


def data(device: str, dtype=torch.float64, n: int = 3):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 240, generator=g, dtype=dtype).to(device)
    x_aug = (x + 0.3 * torch.randn(n, 240, generator=g, dtype=dtype).to(device)) * 1.7
    y = torch.tensor([0, 1, 1][:n], device=device)
    return x, x_aug, y


def assert_rows_equal(rows, ref, model):
    params = [p for p in model.parameters() if p.requires_grad]
    for k in range(2):
        for got, want, p in zip(rows[k], ref[k], params):
            got = torch.zeros_like(p) if got is None else got
            want = torch.zeros_like(p) if want is None else want
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def buffers(model: nn.Module):
    return {k: v.clone() for k, v in model.named_buffers()}


@on_devices
@pytest.mark.parametrize("case", list(CASES))
def test_each_layer_gives_each_path_its_two_pass_gradient(device, case):
    torch.manual_seed(0)
    model = CASES[case]().double().to(device).train()
    x, x_aug, y = data(device)
    ref_model, one_model = copy.deepcopy(model), copy.deepcopy(model)
    ref = two_pass(ref_model, x, x_aug, y)
    rows, routed, _ = one_pass(one_model, x, x_aug, y)
    assert routed == ROUTED[case]
    assert_rows_equal(rows, ref, model)
    want, got = buffers(ref_model), buffers(one_model)
    assert want.keys() == got.keys()
    for k in want:  # running mean / var after two sequential updates; num_batches_tracked + 2
        torch.testing.assert_close(got[k], want[k], rtol=1e-12, atol=1e-14, msg=k)


@on_devices
def test_batch_norm_in_eval_mode_and_frozen_affine(device):
    """A BatchNorm in eval mode (running statistics used, not updated) and one whose affine parameters are
    frozen (the input gradient still flows through the kernel)."""
    torch.manual_seed(0)
    layer = nn.Sequential(nn.Conv1d(4, 4, 3, padding=1), nn.BatchNorm1d(4), nn.BatchNorm1d(4))
    model = Net(layer, seq(0, 4), 4).double().to(device).train()
    with torch.no_grad():
        layer[1].running_mean.uniform_(-1, 1)
        layer[1].running_var.uniform_(0.5, 2)
    layer[1].eval()
    layer[2].weight.requires_grad_(False)
    layer[2].bias.requires_grad_(False)
    x, x_aug, y = data(device)
    ref_model, one_model = copy.deepcopy(model), copy.deepcopy(model)
    ref = two_pass(ref_model, x, x_aug, y)
    rows, routed, _ = one_pass(one_model, x, x_aug, y)
    assert routed == {"conv1d": 1, "batch_norm": 2, "linear": 1}
    assert_rows_equal(rows, ref, model)
    for k, v in buffers(ref_model).items():
        torch.testing.assert_close(buffers(one_model)[k], v, rtol=1e-12, atol=1e-14, msg=k)


class DerivedWeight(nn.Module):
    """A weight computed from parameters (as weight_norm does) and string padding: the generic rule."""

    def __init__(self) -> None:
        super().__init__()
        self.v = nn.Parameter(torch.randn(4, 4, 3))
        self.g = nn.Parameter(torch.ones(4, 1, 1))
        self.same = nn.Conv1d(4, 4, 3, padding="same")

    def forward(self, x):
        w = self.g * self.v / self.v.norm(dim=(1, 2), keepdim=True)
        return self.same(F.conv1d(x, w, padding=1))


@on_devices
def test_layers_the_kernels_cannot_take_keep_the_generic_rule(device):
    torch.manual_seed(0)
    model = Net(DerivedWeight(), seq(0, 4), 4).double().to(device).train()
    x, x_aug, y = data(device)
    ref = two_pass(copy.deepcopy(model), x, x_aug, y)
    rows, routed, _ = one_pass(copy.deepcopy(model), x, x_aug, y)
    assert routed == {"linear": 1}  # only the head: the derived weight and the "same" padding stay generic
    assert_rows_equal(rows, ref, model)


@pytest.mark.parametrize("case", ["linear", "conv1d", "conv2d", "layer_norm", "group_norm", "batch_norm1d"])
def test_autocast_bf16_gives_each_path_its_two_pass_gradient(case):
    """Under autocast the kernels cast as autocast casts the layer they replace (the CPU's lists here; CUDA's
    on a GPU machine: tests/train/test_one_pass.py's engine test under bf16) and match two bf16 passes."""
    torch.manual_seed(0)
    model = CASES[case]().train()
    x, x_aug, y = data("cpu", torch.float32)

    def bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)

    ref_model, one_model = copy.deepcopy(model), copy.deepcopy(model)
    params = [p for p in ref_model.parameters() if p.requires_grad]
    ref = []  # two bf16 passes, as the engine runs them (the loss on the bf16 logits)
    for inp in (x, x_aug):
        with bf16():
            out = ref_model(inp)
        ref.append(torch.autograd.grad(ce(out, y), params, allow_unused=True))
    fp32_model = copy.deepcopy(model)
    fp32_params = [p for p in fp32_model.parameters() if p.requires_grad]
    exact = [torch.autograd.grad(ce(fp32_model(inp), y), fp32_params, allow_unused=True) for inp in (x, x_aug)]
    rows, routed, _ = one_pass(one_model, x, x_aug, y, kernels=True, autocast=bf16)
    assert routed == ROUTED[case]
    for k in range(2):
        for got, want, f32 in zip(rows[k], ref[k], exact[k]):
            assert got is not None and got.dtype == torch.float32
            # as close to the two bf16 passes as bf16 rounding puts those from float32
            noise = max(float((want - f32).abs().max()), 1e-3 * float(f32.abs().max()))
            torch.testing.assert_close(got, want, rtol=0, atol=2 * noise)


def test_fewer_operators_than_the_generic_rules():
    """The point of the kernels: a BatchNorm / linear / conv network dispatches fewer operators per step."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not func.is_view:
                Count.n += 1
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    layer = nn.Sequential(nn.Conv1d(4, 8, 3), nn.BatchNorm1d(8), nn.ReLU(), nn.Conv1d(8, 4, 3), nn.BatchNorm1d(4))
    model = Net(layer, seq(0, 4), 4).train()
    x, x_aug, y = data("cpu", torch.float32)
    counts = {}
    for kernels in (False, True):
        m = copy.deepcopy(model)
        one_pass(m, x, x_aug, y, kernels=kernels)  # warm-up
        Count.n = 0
        with Count():
            one_pass(m, x, x_aug, y, kernels=kernels)
        counts[kernels] = Count.n
    assert counts[True] < 0.8 * counts[False], counts


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)

    def forward(self, x):  # (N, T, 8)
        q, k, v = self.qkv(x).view(x.shape[0], x.shape[1], 3, 2, 4).permute(2, 0, 3, 1, 4)
        mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device).tril()
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).flatten(2).transpose(1, 2)


@on_devices
def test_attention_runs_once_on_both_paths(device):
    torch.manual_seed(0)
    model = Net(Attention(), tokens(8), 8).double().to(device).train()
    x, x_aug, y = data(device)
    ref = two_pass(copy.deepcopy(model), x, x_aug, y)
    rows, routed, _ = one_pass(copy.deepcopy(model), x, x_aug, y)
    assert routed == {"linear": 2, "scaled_dot_product_attention": 1}
    assert_rows_equal(rows, ref, model)


class Recurrent(nn.Module):
    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x):  # (N, T, 8) -> (N, H, T)
        if not self.rnn.batch_first:
            return self.rnn(x.transpose(0, 1))[0].permute(1, 2, 0)
        return self.rnn(x)[0].transpose(1, 2)


@on_devices
@pytest.mark.parametrize("kind", ["lstm_bidirectional_time_first", "gru_two_layers"])
def test_recurrent_layers_run_once_per_half(device, kind):
    """functorch has no batching rule for LSTM / GRU: each half gets its own call with its own weights."""
    torch.manual_seed(0)
    rnn = (nn.LSTM(8, 3, bidirectional=True) if kind.startswith("lstm")
           else nn.GRU(8, 6, num_layers=2, batch_first=True))
    model = Net(Recurrent(rnn), tokens(8), 6).double().to(device).train()
    x, x_aug, y = data(device)
    ref = two_pass(copy.deepcopy(model), x, x_aug, y)
    rows, routed, _ = one_pass(copy.deepcopy(model), x, x_aug, y)
    assert routed == {kind[:kind.index("_")]: 1, "linear": 1}
    assert_rows_equal(rows, ref, model)


# -- copies (joint mode): the two halves are the joint batch twice, each scored by its path's loss --------------


def joint_reference(model: nn.Module, x, x_aug, y):
    """Joint mode's path gradients: one forward of ``[x; x_aug]``, one gradient per path loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    logits = model(torch.cat([x, x_aug]))
    b = x.shape[0]
    first = torch.autograd.grad(ce(logits[:b], y), params, retain_graph=True, allow_unused=True)
    return [first, torch.autograd.grad(ce(logits[b:], y), params, allow_unused=True)], logits


def copies_pass(model: nn.Module, x, x_aug, y):
    params = [p for p in model.parameters() if p.requires_grad]
    op = OnePass(model, params, joint=True)
    lo, la, rows = op(x, x_aug, y, ce, contextlib.nullcontext)
    return rows, op.last_routed, (lo, la)


@on_devices
@pytest.mark.parametrize("case", list(CASES))
def test_each_layer_gives_each_path_its_joint_gradient_from_copies(device, case):
    torch.manual_seed(0)
    model = CASES[case]().double().to(device).train()
    x, x_aug, y = data(device)
    ref_model, one_model = copy.deepcopy(model), copy.deepcopy(model)
    ref, logits = joint_reference(ref_model, x, x_aug, y)
    rows, routed, (lo, la) = copies_pass(one_model, x, x_aug, y)
    assert routed == ROUTED[case]
    assert_rows_equal(rows, ref, model)
    torch.testing.assert_close(lo, ce(logits[:3], y), rtol=1e-12, atol=0)
    torch.testing.assert_close(la, ce(logits[3:], y), rtol=1e-12, atol=0)
    want, got = buffers(ref_model), buffers(one_model)
    assert want.keys() == got.keys()
    for k in want:  # running mean / var after ONE joint update; num_batches_tracked + 1
        torch.testing.assert_close(got[k], want[k], rtol=1e-12, atol=1e-14, msg=k)


class DropoutAttention(Attention):
    def forward(self, x):  # (N, T, 8)
        q, k, v = self.qkv(x).view(x.shape[0], x.shape[1], 3, 2, 4).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=0.4).transpose(1, 2).flatten(2).transpose(1, 2)


@on_devices
@pytest.mark.parametrize("kind", ["attention", "lstm_two_layers", "dropout"])
def test_copies_draw_the_joint_forwards_random_numbers_once_for_both(device, kind):
    """Attention dropout and inter-layer RNN dropout (run per half, from the same random-number state) and a
    plain dropout (vmap's ``randomness="same"``): both copies use the mask the joint forward draws from the same
    state, so each path gets its joint gradient, and the stream is left where the joint forward leaves it."""
    torch.manual_seed(0)
    layer = {"attention": lambda: DropoutAttention(),
             "lstm_two_layers": lambda: Recurrent(nn.LSTM(8, 8, num_layers=2, dropout=0.5, batch_first=True)),
             "dropout": lambda: Tokens(nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5)))}[kind]()
    model = Net(layer, tokens(8), 8).double().to(device).train()
    x, x_aug, y = data(device)
    results = []
    for run in (joint_reference, copies_pass):
        torch.manual_seed(7)
        if device == "cuda":
            torch.cuda.manual_seed(7)
        rows = run(copy.deepcopy(model), x, x_aug, y)[0]
        results.append((rows, torch.rand(4, device=device)))
    assert_rows_equal(results[1][0], results[0][0], model)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=0, atol=0)
