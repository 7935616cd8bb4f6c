"""The gradient steps: one interface built once from the config; loss unscaling and rank helpers."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from dpda.align import build_aligner
from dpda.config import from_dict
from dpda.train import LossScaler, weighted_cross_entropy
from dpda.train.config import RunConfig
from dpda.train.ranks import average_over_ranks, broadcast_from_rank0, rank_and_world, ranks_agree
from dpda.train.steps import DualPathStep, GradientStep, SinglePathStep, build_step


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))


def run_config(**train) -> RunConfig:
    return from_dict(RunConfig, {"train": train})


def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 16, generator=g), torch.randn(4, 16, generator=g), torch.tensor([0, 1, 1, 0])


@pytest.mark.parametrize(("train", "kind", "aligner"), [
    ({"mode": "single"}, SinglePathStep, None),
    ({"mode": "dual"}, DualPathStep, "none"),
    ({"mode": "dpda", "aligner": {"name": "gradvac"}}, DualPathStep, "gradvac"),
    ({"mode": "dpda", "engine_mode": "split", "one_pass": "on"}, DualPathStep, "pcgrad"),
    ({"mode": "dpda", "one_pass": "on", "joint_one_pass": "batched_backward"}, DualPathStep, "pcgrad"),
])
def test_build_step_is_the_mode_of_the_config(train, kind, aligner):
    step = build_step(run_config(**train), tiny_model(), weighted_cross_entropy())
    assert isinstance(step, GradientStep) and type(step) is kind
    if aligner is not None:
        assert type(step.engine.aligner) is type(build_aligner(aligner))
        assert step.engine.mode == train.get("engine_mode", "joint")
        assert step.engine.one_pass is {"on": True}.get(train.get("one_pass", "auto"))
        assert step.engine.joint_one_pass == train.get("joint_one_pass", "copies")


def test_the_interface_cannot_be_used_unfinished():
    with pytest.raises(TypeError):
        GradientStep(tiny_model())  # type: ignore[abstract]


@pytest.mark.parametrize("mode", ["single", "dpda"])
def test_a_step_leaves_a_clipped_update_and_its_checkpoint_entries(mode):
    model = tiny_model()
    step = build_step(run_config(mode=mode, grad_clip=1e-3), model, weighted_cross_entropy())
    out = step(*batch())
    assert not out.skipped and len(out.stats["norms"]) == 2 and out.stats["norms"][0] > 1e-3
    total = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters()))
    assert float(total) == pytest.approx(1e-3, rel=1e-4)
    assert set(step.state_dict()) == {"engine", "scaler"}


def test_single_path_step_is_plain_backprop_of_the_augmented_path():
    model, reference = tiny_model(), tiny_model()
    loss_fn = weighted_cross_entropy()
    x, x_aug, y = batch()
    out = SinglePathStep(model, loss_fn)(x, x_aug, y)
    loss = loss_fn(reference(x_aug), y)
    loss.backward()
    assert out.loss_orig == out.loss_aug == float(loss.detach())
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p.grad, q.grad)


def test_float16_single_path_step_skips_a_non_finite_step_and_saves_its_scale():
    model = tiny_model()
    step = SinglePathStep(model, weighted_cross_entropy(), amp_dtype=torch.float16)
    assert step.loss_scaler is not None
    step.loss_scaler.scale = float("inf")  # every scaled gradient overflows
    out = step(*batch())
    assert out.skipped and all(p.grad is None for p in model.parameters())
    other = SinglePathStep(tiny_model(), weighted_cross_entropy(), amp_dtype=torch.float16)
    other.load_state_dict(step.state_dict())
    assert other.loss_scaler.state_dict() == step.loss_scaler.state_dict()


def test_loss_scaler_unscales_in_place_and_backs_off_on_overflow():
    scaler = LossScaler(init_scale=8.0)
    g = [torch.full((3,), 8.0), torch.full((2, 2), 16.0)]
    assert scaler.unscale_(g) is False
    assert torch.equal(g[0], torch.ones(3)) and torch.equal(g[1], torch.full((2, 2), 2.0)) and scaler.scale == 8.0
    assert scaler.unscale_([torch.tensor([1.0, float("inf")])]) is True and scaler.scale == 4.0


def test_rank_helpers_are_no_ops_in_one_process():
    model = tiny_model()
    before = [t.clone() for t in model.state_dict().values()]
    t = torch.arange(3.0)
    assert rank_and_world() == (0, 1)
    broadcast_from_rank0(model)
    average_over_ranks(t)
    assert torch.equal(t, torch.arange(3.0)) and ranks_agree(model)
    assert all(torch.equal(a, b) for a, b in zip(before, model.state_dict().values()))
