"""Conformer-TCM and bidirectional Mamba back-ends; the torch selective scan against a naive loop."""

from __future__ import annotations

import pytest
import torch

from dpda.models.conformer import ConformerBlock, ConformerTCMBackend, ConvModule, TCMAttention
from dpda.models.mamba import (
    BiMambaBackend,
    MambaMixer,
    has_mamba_ssm,
    selective_scan,
    selective_scan_ref,
    selective_scan_torch,
)


def _scan_inputs(b=2, d=5, n=3, length=23, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g).to(dtype)

    A = -torch.rand(d, n, generator=g) * 4 - 0.1
    return dict(
        u=r(b, d, length),
        delta=r(b, d, length),
        A=A,
        B=r(b, n, length),
        C=r(b, n, length),
        D=r(d),
        z=r(b, d, length),
        delta_bias=r(d),
    )


@pytest.mark.parametrize("chunk", [None, 1, 4, 7, 23, 64])
def test_torch_scan_matches_naive_loop(chunk):
    kw = _scan_inputs()
    ref = selective_scan_ref(**kw, delta_softplus=True)
    out = selective_scan_torch(**kw, delta_softplus=True, chunk_size=chunk)
    assert out.shape == kw["u"].shape
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)


def test_torch_scan_without_optional_terms_and_length_one():
    kw = _scan_inputs(length=1)
    kw["delta"] = kw["delta"].abs()  # no softplus below: keep the step sizes positive
    for drop in ({}, {"D": None}, {"z": None}, {"delta_bias": None}):
        args = {**kw, **drop}
        assert torch.allclose(selective_scan_torch(**args), selective_scan_ref(**args), atol=1e-6)
    kw = _scan_inputs(length=50, seed=3)
    kw["delta"] = kw["delta"].abs()
    args = {**kw, "D": None, "z": None, "delta_bias": None}
    assert torch.allclose(selective_scan_torch(**args, chunk_size=8), selective_scan_ref(**args), atol=1e-5)


def test_torch_scan_gradients_match_naive_loop():
    base = _scan_inputs(length=17, seed=1)
    grads = []
    for fn in (selective_scan_ref, lambda **k: selective_scan_torch(**k, chunk_size=5)):
        kw = {k: v.clone().requires_grad_(True) for k, v in base.items()}
        fn(**kw, delta_softplus=True).pow(2).sum().backward()
        grads.append({k: v.grad for k, v in kw.items()})
    for k in base:
        assert torch.allclose(grads[0][k], grads[1][k], atol=1e-4, rtol=1e-4), k


def test_scan_stable_for_strong_decay():
    # large delta * |A|: exp of positive numbers would overflow in a cumulative-product formulation
    kw = _scan_inputs(length=200, seed=2)
    kw["delta"] = kw["delta"].abs() * 30
    out = selective_scan_torch(**kw, chunk_size=50)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, selective_scan_ref(**kw), atol=1e-4)


def test_scan_accumulates_in_fp32_under_autocast():
    kw = _scan_inputs(length=30, seed=4, dtype=torch.bfloat16)
    kw["A"] = kw["A"].float()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = selective_scan(**kw, delta_softplus=True)
    ref = selective_scan_ref(**{k: v.float() for k, v in kw.items()}, delta_softplus=True)
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), ref, atol=0.05, rtol=0.02)
    if not has_mamba_ssm():  # this CI has no mamba_ssm: dispatch falls back to torch
        assert torch.equal(selective_scan(**kw), selective_scan_torch(**kw))


def test_mamba_mixer_is_causal_and_columns_directional():
    torch.manual_seed(0)
    mixer = MambaMixer(8, d_state=4, d_conv=4, expand=2).eval()
    assert mixer.dt_rank == 1 and mixer.d_inner == 16
    x = torch.randn(2, 20, 8)
    y = mixer(x)
    x2 = x.clone()
    x2[:, 12:] += 1.0
    y2 = mixer(x2)
    assert torch.allclose(y[:, :12], y2[:, :12], atol=1e-6) and not torch.allclose(y[:, 12:], y2[:, 12:])

    backend = BiMambaBackend(in_dim=8, d_model=8, n_layers=2, d_state=4).eval()
    with torch.no_grad():
        h = torch.randn(1, 20, 8)
        f1 = backend.forward_column(h)
        b1 = backend.backward_column(h.flip(1)).flip(1)
        h2 = h.clone()
        h2[:, 10] += 1.0
        f2 = backend.forward_column(h2)
        b2 = backend.backward_column(h2.flip(1)).flip(1)
    assert torch.allclose(f1[:, :10], f2[:, :10], atol=1e-6)  # forward column: past only
    assert torch.allclose(b1[:, 11:], b2[:, 11:], atol=1e-6)  # backward column: future only
    assert not torch.allclose(b1[:, :10], b2[:, :10])


def test_bimamba_backend_train_step_and_autocast():
    torch.manual_seed(0)
    backend = BiMambaBackend(in_dim=24, d_model=16, n_layers=2, d_state=4)
    feats = torch.randn(3, 37, 24)
    logits, emb = backend(feats)
    assert logits.shape == (3, 2) and emb.shape == (3, 16)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 1])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in backend.parameters())
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        logits, _ = backend.eval()(feats)
    assert torch.isfinite(logits.float()).all()


def test_mamba_full_size_defaults():
    backend = BiMambaBackend()
    mixer = backend.forward_column.layers[0].mixer
    assert (mixer.d_model, mixer.d_inner, mixer.d_state, mixer.d_conv, mixer.dt_rank) == (144, 288, 16, 4, 9)
    assert len(backend.forward_column.layers) == len(backend.backward_column.layers) == 6
    per_block = sum(p.numel() for p in backend.forward_column.layers[0].parameters())
    assert per_block == 145_584
    assert sum(p.numel() for p in backend.parameters()) == 1_937_094
    assert torch.allclose(-torch.exp(mixer.A_log[0]), -torch.arange(1, 17, dtype=torch.float32))


def test_tcm_attention_parts():
    torch.manual_seed(0)
    attn = TCMAttention(dim=16, heads=4, dropout=0.0).eval()  # tcm_add's head tokens (the default)
    extra = sum(p.numel() for n, p in attn.named_parameters() if n.startswith(("head_token", "head_embed")))
    assert extra == 4 * 16 + 16 + 4 * 16 + 2 * 4  # d_h*d + d + H*d + LayerNorm(d_h)
    assert attn.qkv.bias is None
    x = torch.randn(2, 11, 16, requires_grad=True)
    out = attn(x)
    assert out.shape == x.shape
    out[:, 0].sum().backward()  # the CLS output reads the head tokens
    assert attn.head_token_proj.weight.grad.abs().sum() > 0 and attn.head_embed.grad.abs().sum() > 0
    assert attn.head_token_norm.weight.grad.abs().sum() > 0
    g = attn.head_tokens(x.detach())
    assert g.shape == (2, 4, 16)
    # each head token: Linear(d_h, d) cut into d_h chunks, LayerNorm(d_h) on each, GELU, + per-head embedding
    c = x.detach().reshape(2, 11, 4, 4).mean(dim=1)
    h = attn.head_token_proj(c).reshape(2, 4, 4, 4)
    want = torch.nn.functional.gelu(torch.nn.functional.layer_norm(h, (4,), attn.head_token_norm.weight,
                                                                   attn.head_token_norm.bias)).flatten(2)
    assert torch.allclose(g, want + attn.head_embed, atol=1e-6)
    with pytest.raises(ValueError):
        attn(torch.randn(2, 1, 16))

    simple = TCMAttention(dim=16, heads=4, dropout=0.0, qkv_bias=True, style="simple").eval()
    extra = sum(p.numel() for n, p in simple.named_parameters() if n.startswith(("head_token", "head_embed")))
    assert extra == 4 * 16 + 16 + 4 * 16 and simple.qkv.bias is not None
    assert simple(x.detach()).shape == x.shape
    with pytest.raises(ValueError):
        TCMAttention(dim=16, heads=4, style="other")


def test_conformer_blocks_and_backend():
    torch.manual_seed(0)
    assert ConvModule(16, kernel_size=7)(torch.randn(2, 9, 16)).shape == (2, 9, 16)
    with pytest.raises(ValueError):
        ConvModule(16, kernel_size=8)
    block = ConformerBlock(dim=16, heads=2, kernel_size=7, tcm=False)
    assert block(torch.randn(2, 9, 16)).shape == (2, 9, 16)

    backend = ConformerTCMBackend(in_dim=24, dim=16, n_blocks=2, heads=2, kernel_size=7)
    logits, emb = backend(torch.randn(3, 30, 24))
    assert logits.shape == (3, 2) and emb.shape == (3, 16)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 1])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in backend.parameters())
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        logits, _ = backend.eval()(torch.randn(3, 30, 24))
    assert torch.isfinite(logits.float()).all()


def test_conformer_full_size_defaults():
    backend = ConformerTCMBackend()  # the original tcm_add / dpda_ga back-end
    assert len(backend.blocks) == 4
    attn = backend.blocks[0].attn
    assert isinstance(attn, TCMAttention) and attn.heads == 4 and attn.dim == 144 and attn.style == "tcm_add"
    assert backend.blocks[0].conv.depthwise.kernel_size == (31,)
    assert backend.blocks[0].conv.depthwise.in_channels == 288  # conv expansion 2
    assert backend.pos_emb.shape == (1, 10000, 144) and "pos_emb" in backend.state_dict()
    total = sum(p.numel() for p in backend.parameters())
    plain = sum(p.numel() for p in ConformerTCMBackend(tcm=False).parameters())
    assert total == 2_382_628 and total - plain == 4 * (36 * 144 + 144 + 4 * 144 + 2 * 36) == 23_904
    assert len(backend.state_dict()) == 159
    earlier = ConformerTCMBackend(conv_expansion=1, qkv_bias=True, tcm_style="simple", pos_emb_rows=0)
    assert earlier.pos_emb is None and sum(p.numel() for p in earlier.parameters()) == 2_114_500
    with pytest.raises(ValueError):
        ConformerTCMBackend(in_dim=8, dim=16, n_blocks=1, heads=2, kernel_size=3, pos_emb_rows=5)(torch.randn(1, 6, 8))
