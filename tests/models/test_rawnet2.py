"""Tests for the RawNet2 baseline (dpda.models.rawnet2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dpda.models import build_model, count_parameters
from dpda.models.rawnet2 import RAWNET2_DEFAULT_CONFIG
from dpda.models.sinc import mel_band_edges, sinc_band_pass_filters

#: trainable parameters of the default (ASVspoof 2021 baseline yaml) configuration
RAWNET2_FULL_PARAMS = 17_620_562
#: the same with the residual-block pre-activation BatchNorms of the papers (848 more)
RAWNET2_FULL_PREACT_PARAMS = 17_621_410

TINY = {"filts": [20, [20, 20], [20, 64], [64, 64]], "gru_node": 64, "nb_fc_node": 64}


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(0)
    return build_model("rawnet2", **TINY)


def _wave(b: int, t: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(b, t, generator=g)


def test_full_config_parameter_count():
    m = build_model("rawnet2")
    n = count_parameters(m)
    gru = sum(p.numel() for p in m.gru.parameters())
    print(f"rawnet2 (ASVspoof 2021 baseline config): {n:,} trainable parameters ({gru:,} in the GRU)")
    assert n == RAWNET2_FULL_PARAMS
    assert gru == 16_140_288
    # the only frozen weights are the fixed sinc filters, a buffer rather than a parameter
    assert [name for name, p in m.named_parameters() if not p.requires_grad] == []
    assert not any("sinc" in name for name, _ in m.named_parameters())
    assert m.sinc.band_pass.shape[-1] == 1025 and m.sinc.band_pass.shape[0] == 20
    assert not any(k.startswith("sinc.") for k in m.state_dict())
    assert m.embedding_dim == 1024 and m.min_num_samples == 3211
    n_pre = count_parameters(build_model("rawnet2", block_preactivation=True))
    assert n_pre == RAWNET2_FULL_PREACT_PARAMS


def test_sinc_filters_are_mel_spaced_band_passes():
    filt = sinc_band_pass_filters(mel_band_edges(20), 1025).astype(np.float64)
    freqs = np.fft.rfftfreq(16384, d=1 / 16000)
    gain = np.abs(np.fft.rfft(filt, n=16384, axis=1))  # (20, bins)
    mel = 2595 * np.log10(1 + np.array([0.0, 8000.0]) / 700)
    edges = 700 * (10 ** (np.linspace(mel[0], mel[1], 21) / 2595) - 1)
    for i in range(3, 20):  # bands wide enough to resolve with 1025 taps
        centre = 0.5 * (edges[i] + edges[i + 1])
        assert abs(gain[i, np.argmin(np.abs(freqs - centre))] - 1.0) < 0.05
        far = (freqs < edges[i] - 200) | (freqs > edges[i + 1] + 200)
        assert gain[i, far].max() < 0.02
    np.testing.assert_allclose(filt, filt[:, ::-1], atol=1e-7)  # symmetric (linear phase)


@pytest.mark.parametrize("length", [16000, 24000])
def test_forward_shapes_and_embedding(tiny, length):
    tiny.train()
    logits = tiny(_wave(2, length))
    assert logits.shape == (2, 2) and logits.dtype == torch.float32
    tiny.eval()
    with torch.no_grad():
        logits, emb = tiny(_wave(2, length), return_embedding=True)
    assert logits.shape == (2, 2)
    assert emb.shape == (2, 64) == (2, tiny.embedding_dim)
    torch.testing.assert_close(tiny.fc2(emb), logits)


def test_minimum_length(tiny):
    tiny.eval()
    assert tiny.min_num_samples == 1024 + 3**7 == 3211
    with torch.no_grad():
        assert tiny(_wave(1, 3211)).shape == (1, 2)
        with pytest.raises(ValueError, match="at least 3211"):
            tiny(_wave(1, 3210))


@pytest.mark.parametrize("preact", [False, True])
def test_training_step_gradients(preact):
    torch.manual_seed(1)
    m = build_model("rawnet2", block_preactivation=preact, **TINY)
    m.train()
    logits = m(_wave(2, 16000, seed=2))
    loss = nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
    assert torch.isfinite(loss)
    loss.backward()
    names = []
    for name, p in m.named_parameters():
        names.append(name)
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"
    assert any("pre_bn" in n for n in names) == preact


def test_eval_batch_one_equals_batched(tiny):
    tiny.eval()
    x = _wave(3, 16000, seed=3)
    with torch.no_grad():
        batched = tiny(x)
        single = torch.cat([tiny(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(single, batched, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_forward(tiny):
    tiny.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits, emb = tiny(_wave(2, 16000), return_embedding=True)
    assert logits.shape == (2, 2) and torch.isfinite(logits.float()).all()
    assert emb.shape == (2, 64)


def test_config_handling():
    filts = [20, [20, 20], [20, 64], [64, 64]]
    m = build_model("rawnet2", filts=filts, gru_node=32, nb_fc_node=16, nb_gru_layer=1, blocks=[1, 2])
    assert filts == [20, [20, 20], [20, 64], [64, 64]]  # caller's lists are not mutated
    assert RAWNET2_DEFAULT_CONFIG["filts"] == [20, [20, 20], [20, 128], [128, 128]]
    assert len(m.blocks) == 3 and m.min_num_samples == 1024 + 3**4
    assert m(_wave(2, 4000)).shape == (2, 2)
    with pytest.raises(TypeError):
        build_model("rawnet2", bogus=1)
    with pytest.raises(ValueError):
        build_model("rawnet2", filts=[20, [30, 30], [30, 64], [64, 64]])
    with pytest.raises(ValueError):
        build_model("rawnet2", in_channels=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward_backward():
    m = build_model("rawnet2", **TINY).cuda()
    x = _wave(2, 16000).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = m(x)
    nn.functional.cross_entropy(logits.float(), torch.tensor([0, 1], device="cuda")).backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(x).cpu(), m.cpu()(x.cpu()), rtol=1e-3, atol=1e-3)
