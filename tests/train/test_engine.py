"""The dual-path engine gives exactly the per-path gradients it defines."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from dpda.align import Aligner, build_aligner
from dpda.train import DualPathEngine, LossScaler, weighted_cross_entropy
from tests.devices import assert_on, implicit_tensors_on_meta, on_devices


class TinyNet(nn.Module):
    """(B, T) -> (B, 2) with a conv, BatchNorm, a frozen layer and an unused parameter."""

    def __init__(self, batchnorm: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 9, stride=4)
        self.norm = nn.BatchNorm1d(4) if batchnorm else nn.Identity()
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        self.head = nn.Linear(4, 2)
        self.unused = nn.Parameter(torch.ones(3))

    def forward(self, x):
        h = torch.relu(self.norm(self.conv(x.unsqueeze(1)))).mean(-1)
        return self.head(torch.tanh(self.frozen(h)))


class Recorder(Aligner):
    """Test aligner: records the two path gradients it receives, returns their sum."""

    name = "recorder"

    def _align(self, grads, has_grad, segments, inplace):
        self.seen = grads.clone()
        out = grads[0].add_(grads[1]) if inplace else grads.sum(0)
        return out, {}


def batch(seed=0, b=4, t=200, device="cpu"):
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(b, t, generator=g, device="cpu")
    x_aug = x + 0.3 * torch.randn(b, t, generator=g, device="cpu")
    y = torch.tensor([0, 1, 1, 0][:b], device="cpu")
    return x.to(device), x_aug.to(device), y.to(device)


def trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def flat(grads):
    return torch.cat([g.reshape(-1).cpu() for g in grads])


def reference_grads(model, x, x_aug, y, mode, loss_fn):
    """Per-path gradients by plain autograd (unused parameters count as zero)."""
    params = trainable(model)
    if mode == "joint":
        logits = model(torch.cat([x, x_aug]))
        losses = [loss_fn(logits[: len(x)], y), loss_fn(logits[len(x):], y)]
        g = [torch.autograd.grad(l, params, retain_graph=True, allow_unused=True) for l in losses]
    else:
        g = [torch.autograd.grad(loss_fn(model(inp), y), params, allow_unused=True) for inp in (x, x_aug)]
    return [flat([torch.zeros_like(p) if gi is None else gi for gi, p in zip(path, params)]) for path in g]


@on_devices
@pytest.mark.parametrize("mode", ["joint", "split"])
def test_per_path_gradients_are_exact(device, mode):
    torch.manual_seed(0)
    model = TinyNet().to(device)
    twin = copy.deepcopy(model)
    loss_fn = weighted_cross_entropy()
    x, x_aug, y = batch(device=device)
    rec = Recorder()
    engine = DualPathEngine(model, rec, loss_fn=loss_fn, mode=mode)
    out = engine.compute_gradients(x, x_aug, y)
    assert_on(device, rec.seen, *(p.grad for p in trainable(model)))
    g0, g1 = reference_grads(twin, x, x_aug, y, mode, loss_fn)
    torch.testing.assert_close(rec.seen[0].cpu(), g0, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(rec.seen[1].cpu(), g1, rtol=1e-5, atol=1e-7)
    assert out.loss_orig > 0 and out.loss_aug > 0 and not out.skipped
    # the installed update is the aligner's output, viewed per parameter
    torch.testing.assert_close(flat([p.grad if p.grad is not None else torch.zeros_like(p) for p in trainable(model)]), g0 + g1)
    # BatchNorm running statistics: joint updates once on 2B, split once per path
    twin_stats = twin.norm.running_mean
    torch.testing.assert_close(model.norm.running_mean, twin_stats)


def test_joint_and_split_differ_with_batchnorm_but_not_without():
    x, x_aug, y = batch(1)
    for bn, should_differ in ((True, True), (False, False)):
        torch.manual_seed(0)
        base = TinyNet(batchnorm=bn)
        seen = {}
        for mode in ("joint", "split"):
            rec = Recorder()
            DualPathEngine(copy.deepcopy(base), rec, mode=mode).compute_gradients(x, x_aug, y)
            seen[mode] = rec.seen
        differ = not torch.allclose(seen["joint"], seen["split"], rtol=1e-4, atol=1e-6)
        assert differ == should_differ


def test_frozen_and_unused_parameters_are_left_untouched():
    torch.manual_seed(0)
    model = TinyNet()
    frozen_before = model.frozen.weight.detach().clone()
    unused_before = model.unused.detach().clone()
    engine = DualPathEngine(model, "pcgrad")
    opt = torch.optim.AdamW(trainable(model), lr=1e-2, weight_decay=0.5)
    for seed in range(3):
        engine.step(*batch(seed), opt)
    assert model.unused.grad is None
    assert torch.equal(model.unused.detach(), unused_before)  # no weight decay on a gradient-less parameter
    assert torch.equal(model.frozen.weight.detach(), frozen_before)
    assert model.head.weight.grad is not None


@on_devices
@pytest.mark.parametrize("name", ["none", "pcgrad", "gradvac", "cagrad", "mgda"])
def test_update_equals_aligner_on_autograd_gradients(device, name):
    torch.manual_seed(0)
    model = TinyNet(batchnorm=False).to(device)
    twin = copy.deepcopy(model)
    x, x_aug, y = batch(2, device=device)
    engine = DualPathEngine(model, build_aligner(name))
    out = engine.compute_gradients(x, x_aug, y)
    g = torch.stack(reference_grads(twin, x, x_aug, y, "joint", engine.loss_fn))
    expected = build_aligner(name)(g)
    got = flat([p.grad if p.grad is not None else torch.zeros_like(p) for p in trainable(model)])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    assert {"cos", "dot", "norms", "conflict"} <= set(out.stats)
    assert out.stats["cos"] == pytest.approx(float(g[0] @ g[1] / (g[0].norm() * g[1].norm())), rel=1e-4, abs=1e-6)


def test_module_cosines():
    torch.manual_seed(0)
    engine = DualPathEngine(TinyNet(), "none", module_stats=True)
    out = engine.compute_gradients(*batch())
    assert set(out.stats["module_cos"]) == {"conv", "norm", "head", "unused"}
    assert all(-1.0 <= c <= 1.0 for c in out.stats["module_cos"].values())


@on_devices
def test_non_finite_gradient_skips_the_step_and_backs_off(device):
    torch.manual_seed(0)
    model = TinyNet(batchnorm=False).to(device)
    before = [p.detach().clone() for p in model.parameters()]
    scaler = LossScaler(init_scale=2.0**16)
    engine = DualPathEngine(model, "gradvac", loss_scaler=scaler)
    opt = torch.optim.SGD(trainable(model), lr=0.1)
    x, x_aug, y = batch(device=device)
    x_aug[0, 5] = float("inf")  # a non-finite gradient in one path only
    out = engine.step(x, x_aug, y, opt)
    assert out.skipped and scaler.scale == 2.0**15
    assert all(torch.equal(a, p.detach()) for a, p in zip(before, model.parameters()))
    assert engine.aligner.state_dict()["rho"] is None  # aligner state untouched by a skipped step
    engine.loss_scaler.scale = 1024.0
    out = engine.step(*batch(device=device), opt)
    assert not out.skipped and not all(torch.equal(a, p.detach()) for a, p in zip(before, model.parameters()))


@on_devices
def test_loss_scaling_does_not_change_the_update(device):
    torch.manual_seed(0)
    base = TinyNet(batchnorm=False).to(device)
    x, x_aug, y = batch(3, device=device)
    grads = []
    for scaler in (None, LossScaler(init_scale=256.0)):
        model = copy.deepcopy(base)
        DualPathEngine(model, "cagrad", loss_scaler=scaler).compute_gradients(x, x_aug, y)
        grads.append(flat([p.grad for p in trainable(model) if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


@on_devices
@pytest.mark.parametrize("mode", ["joint", "split"])
@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_autocast_runs(device, mode, amp_dtype):
    torch.manual_seed(0)
    engine = DualPathEngine(TinyNet().to(device), "pcgrad", mode=mode, amp_dtype=amp_dtype)
    out = engine.compute_gradients(*batch(device=device))
    assert (engine.loss_scaler is not None) == (amp_dtype == torch.float16)
    grads = [p.grad for p in trainable(engine.model) if p.grad is not None]
    assert not out.skipped and grads and all(torch.isfinite(g).all() for g in grads)
    assert_on(device, *grads)


#: every aligner in both modes, and the mixed-precision paths with the paper's two aligners
GUARD_CASES = [(a, m, None) for a in ("none", "sum", "pcgrad", "gradvac", "cagrad", "mgda") for m in ("joint", "split")] + [
    (a, m, d) for a in ("pcgrad", "gradvac") for m in ("joint", "split") for d in (torch.bfloat16, torch.float16)]


@pytest.mark.parametrize(("name", "mode", "amp_dtype"), GUARD_CASES,
                         ids=[f"{a}-{m}-{str(d).replace('torch.', '')}" for a, m, d in GUARD_CASES])
def test_engine_step_creates_no_tensor_off_the_model_device(name, mode, amp_dtype):
    """The dual-path step with CPU inputs while implicitly created tensors land on 'meta' (see tests/devices.py)."""
    torch.manual_seed(0)
    base = TinyNet()
    results = []
    for guarded in (False, True):
        model = copy.deepcopy(base)
        engine = DualPathEngine(model, name, mode=mode, amp_dtype=amp_dtype, module_stats=True)
        x, x_aug, y = batch()
        if guarded:
            with implicit_tensors_on_meta():
                out = engine.compute_gradients(x, x_aug, y)
        else:
            out = engine.compute_gradients(x, x_aug, y)
        assert not out.skipped
        results.append(flat([p.grad if p.grad is not None else torch.zeros_like(p) for p in trainable(model)]))
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=0)


@on_devices
def test_state_dict_round_trip(device):
    torch.manual_seed(0)
    engine = DualPathEngine(TinyNet().to(device), "gradvac", loss_scaler=LossScaler(init_scale=64.0))
    engine.compute_gradients(*batch(device=device))
    state = engine.state_dict()
    other = DualPathEngine(TinyNet(), "gradvac", loss_scaler=LossScaler())  # resumed on the CPU
    other.load_state_dict(state)
    assert other.loss_scaler.scale == 64.0
    torch.testing.assert_close(other.aligner.state_dict()["rho"], engine.aligner.state_dict()["rho"])
    assert not other.compute_gradients(*batch(1)).skipped


def test_bad_inputs():
    with pytest.raises(ValueError, match="mode"):
        DualPathEngine(TinyNet(), "none", mode="both")
    engine = DualPathEngine(TinyNet(), "none")
    x, x_aug, y = batch()
    with pytest.raises(ValueError, match="same batch size"):
        engine.compute_gradients(x, x_aug[:2], y)


def test_conflict_tracker_summarises_steps():
    from dpda.train import ConflictTracker, StepOutput

    t = ConflictTracker()
    t.update(StepOutput(1.0, 1.0, {"cos": -0.5, "conflict": True, "norms": [1.0, 3.0]}))
    t.update(StepOutput(1.0, 1.0, {"cos": 0.5, "conflict": False, "norms": [3.0, 1.0]}))
    t.update(StepOutput(1.0, 1.0, {}, skipped=True))
    s = t.summary()
    assert s == {"steps": 2, "skipped": 1, "conflict_rate": 0.5, "mean_cos": 0.0, "mean_norm_orig": 2.0, "mean_norm_aug": 2.0}
    t.reset()
    assert t.summary()["steps"] == 0
