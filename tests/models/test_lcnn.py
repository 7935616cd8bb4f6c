"""Tests for the LFCC-LCNN baseline (dpda.models.lcnn)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dpda.models import build_model, count_parameters
from dpda.models.lcnn import LCNN_DEFAULT_CONFIG, LCNN_LFCC_CONFIG, MaxFeatureMap
from tests.devices import on_devices

#: trainable parameters of the default (published) configuration
LCNN_FULL_PARAMS = 269_826


@pytest.fixture(scope="module")
def model() -> nn.Module:
    # the published model is small (0.27M parameters): tests use the full size
    torch.manual_seed(0)
    return build_model("lcnn")


def _wave(b: int, t: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(b, t, generator=g)


def test_full_config_parameter_count(model):
    n = count_parameters(model)
    print(f"lcnn (ASVspoof 2021 LFCC-LCNN, 2-class output): {n:,} trainable parameters")
    assert n == LCNN_FULL_PARAMS
    # nothing is frozen: the LFCC front-end and the affine-free BatchNorms hold buffers only
    assert [name for name, p in model.named_parameters() if not p.requires_grad] == []
    assert count_parameters(model, trainable_only=False) == LCNN_FULL_PARAMS
    # the default front-end is the 2021 baseline's LFCC
    fe = model.frontend
    assert (fe.n_fft, fe.win_length, fe.hop_length, fe.n_filters, fe.out_dim) == (1024, 320, 160, 20, 60)
    assert (fe.min_bin, fe.max_bin, fe.with_energy) == (0, 256, True)


@pytest.mark.parametrize("length", [16000, 24000])
def test_forward_shapes_and_embedding(model, length):
    model.train()
    logits = model(_wave(2, length))
    assert logits.shape == (2, 2) and logits.dtype == torch.float32
    model.eval()
    with torch.no_grad():
        logits, emb = model(_wave(2, length), return_embedding=True)
    assert logits.shape == (2, 2)
    assert emb.shape == (2, 96) == (2, model.embedding_dim)
    torch.testing.assert_close(model.fc_out(emb), logits)


def test_minimum_length(model):
    model.eval()
    assert model.min_num_samples == 2400
    with torch.no_grad():
        assert model(_wave(1, 2400)).shape == (1, 2)
        with pytest.raises(ValueError, match="at least 2400"):
            model(_wave(1, 2399))


def test_training_step_gradients():
    torch.manual_seed(1)
    m = build_model("lcnn")
    m.train()
    logits = m(_wave(2, 16000, seed=2))
    loss = nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"


def test_eval_batch_one_equals_batched(model):
    model.eval()
    x = _wave(3, 16000, seed=3)
    with torch.no_grad():
        batched = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(single, batched, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_forward(model):
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits, emb = model(_wave(2, 16000), return_embedding=True)
    assert logits.shape == (2, 2) and torch.isfinite(logits.float()).all()
    assert emb.shape == (2, 96)


def test_config_overrides():
    m = build_model("lcnn", lfcc={"n_fft": 512, "max_freq": 1.0, "with_energy": False}, dropout=0.0)
    assert (m.frontend.n_fft, m.frontend.max_bin, m.frontend.with_energy) == (512, 257, False)
    assert count_parameters(m) == LCNN_FULL_PARAMS  # the front-end has no parameters
    assert LCNN_LFCC_CONFIG["n_fft"] == 1024 and LCNN_DEFAULT_CONFIG["lfcc"] is None  # defaults untouched
    with pytest.raises(TypeError):
        build_model("lcnn", bogus=1)
    with pytest.raises(TypeError):
        build_model("lcnn", lfcc={"bogus": 1})


def test_max_feature_map():
    x = torch.tensor([[[[1.0]], [[5.0]], [[4.0]], [[2.0]]]])  # (1, 4, 1, 1)
    assert MaxFeatureMap()(x).flatten().tolist() == [4.0, 5.0]


@on_devices
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_feature_map_gradient_is_torch_maximum(device, dtype):
    # the custom backward must give torch.maximum's gradient bit for bit (ties planted)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 8, 5, 7, generator=g, dtype=dtype)
    x[:, 4:, :2] = x[:, :4, :2]  # ties
    x = x.to(device)
    upstream = torch.randn(3, 4, 5, 7, generator=g, dtype=dtype).to(device)
    x1 = x.clone().requires_grad_(True)
    (MaxFeatureMap()(x1) * upstream).sum().backward()
    x2 = x.clone().requires_grad_(True)
    a, b = x2.chunk(2, dim=1)
    (torch.maximum(a, b) * upstream).sum().backward()
    assert x1.grad.device == x.device and x1.grad.dtype == dtype
    assert torch.equal(x1.grad, x2.grad)
    assert torch.equal(MaxFeatureMap()(x), torch.maximum(a, b).detach())


def test_max_feature_map_splits_the_gradient_at_ties_like_torch_maximum():
    # exact ties occur in training (routing them elsewhere changed a minibench run); torch.maximum gives each half g / 2
    x = torch.tensor([[[[2.0]], [[1.0]], [[2.0]], [[3.0]]]], requires_grad=True)  # a tie on channel 0
    (MaxFeatureMap()(x) * torch.tensor([3.0, 5.0]).view(1, 2, 1, 1)).sum().backward()
    assert x.grad.flatten().tolist() == [1.5, 0.0, 1.5, 5.0]
    with pytest.raises(ValueError, match="even channel count"):
        MaxFeatureMap()(torch.zeros(1, 3, 2, 2))


def test_max_feature_map_under_vmap_matches_a_loop():
    # the one-pass engines vmap the model over copies / paths
    g = torch.Generator().manual_seed(4)
    xs = torch.randn(2, 3, 6, 4, 4, generator=g)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return (MaxFeatureMap()(x) ** 2).sum()

    batched = torch.func.vmap(torch.func.grad(loss))(xs)
    looped = torch.stack([torch.func.grad(loss)(x) for x in xs])
    assert torch.equal(batched, looped)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward_backward():
    m = build_model("lcnn").cuda()
    x = _wave(2, 16000).cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        logits = m(x)
    nn.functional.cross_entropy(logits.float(), torch.tensor([0, 1], device="cuda")).backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(x).cpu(), m.cpu()(x.cpu()), rtol=1e-3, atol=1e-3)
