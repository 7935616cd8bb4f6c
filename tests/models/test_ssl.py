"""SSL front-end and the three XLS-R countermeasures, on tiny random configs (no downloads)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")

from dpda.models import build_model, count_parameters
from dpda.models.ssl import (
    XLSR_300M_HF_CONFIG,
    SSLFrontEnd,
    full_size_parameter_counts,
    make_wav2vec2_config,
)

# Tiny wav2vec 2.0: 2 layers of width 32. Total conv stride 80 (kernel 10/8, stride 10/8) gives
# 200 frames for 1 s of audio -- about what XLS-R gives for the 4 s crops used in training.
TINY_SSL = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16, 16),
    conv_kernel=(10, 8),
    conv_stride=(10, 8),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
TINY_BACKENDS = {
    "xlsr_aasist": dict(proj_dim=12, filts=((1, 4), (4, 4), (4, 8), (8, 8)), attention_dim=8, gat_dims=(8, 8)),
    "xlsr_conformer_tcm": dict(dim=16, n_blocks=2, heads=2, kernel_size=7),
    "xlsr_mamba": dict(d_model=16, n_layers=2, d_state=4),
}
NAMES = list(TINY_BACKENDS)
#: SSL-AASIST residual blocks discard bn1's output (official quirk): these never get gradients
AASIST_BN1 = {f"backend.encoder.{i}.0.bn1.{p}" for i in range(1, 6) for p in ("weight", "bias")}


def tiny(name: str, **kwargs):
    torch.manual_seed(0)
    return build_model(name, ssl_config=TINY_SSL, **TINY_BACKENDS[name], **kwargs)


@pytest.fixture(scope="module")
def wave() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return 0.1 * torch.randn(2, 16000, generator=g)


def _train_step(model, x):
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    opt.zero_grad()
    logits = model(x)
    loss = F.cross_entropy(logits, torch.tensor([0, 1]))
    loss.backward()
    return loss, opt


def _bad_grads(model):
    return [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())
    ]


@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes_embedding_and_bf16_autocast(name, wave):
    model = tiny(name).eval()
    with torch.no_grad():
        logits = model(wave)
        logits2, emb = model(wave, return_embedding=True)
    assert logits.shape == (2, 2) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert torch.equal(logits, logits2)
    assert emb.shape[0] == 2 and emb.dim() == 2 and emb.shape[1] == model.backend.embedding_dim
    assert model.ssl.num_frames(16000) == 200
    # bf16 autocast forward
    with torch.no_grad(), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        logits_bf16 = model(wave)
    assert logits_bf16.shape == (2, 2)
    assert torch.isfinite(logits_bf16.float()).all()


@pytest.mark.parametrize("name", NAMES)
def test_training_step_finite_grads(name, wave):
    model = tiny(name)
    loss, opt = _train_step(model, wave)
    assert torch.isfinite(loss)
    assert _bad_grads(model) == []
    expected_frozen = {"ssl.model.masked_spec_embed"} | (AASIST_BN1 if name == "xlsr_aasist" else set())
    assert set(model.frozen_parameter_names()) == expected_frozen
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_freeze_ssl(wave):
    model = tiny("xlsr_mamba", freeze_ssl=True)
    before = {n: p.detach().clone() for n, p in model.ssl.named_parameters()}
    _loss, opt = _train_step(model, wave)
    assert model.training and not model.ssl.model.training  # front-end kept in eval mode
    frozen = set(model.frozen_parameter_names())
    assert frozen == {f"ssl.{n}" for n in before}  # exactly the whole front-end
    assert all(p.grad is None for p in model.ssl.parameters())
    assert _bad_grads(model) == []
    opt.step()
    assert all(torch.equal(p, before[n]) for n, p in model.ssl.named_parameters())
    trainable = count_parameters(model)
    assert trainable == count_parameters(model.backend)


def test_weighted_layer_sum_gets_gradients(wave):
    model = tiny("xlsr_conformer_tcm", ssl_layer="weighted")
    assert model.ssl.layer_weights.shape == (TINY_SSL["num_hidden_layers"] + 1,)
    _train_step(model, wave)
    g = model.ssl.layer_weights.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    assert _bad_grads(model) == []
    # with a frozen front-end the layer weights still learn
    frozen = tiny("xlsr_conformer_tcm", ssl_layer="weighted", freeze_ssl=True)
    _train_step(frozen, wave)
    assert frozen.ssl.layer_weights.grad is not None and frozen.ssl.layer_weights.grad.abs().sum() > 0
    assert set(frozen.frozen_parameter_names()) == {f"ssl.model.{n}" for n, _ in frozen.ssl.model.named_parameters()}


def _capture(module, pre=False):
    store = {}

    def hook(mod, args, out=None):
        value = args[0] if pre else out
        store["h"] = value[0] if isinstance(value, (tuple, list)) else value

    handle = module.register_forward_pre_hook(hook) if pre else module.register_forward_hook(hook)
    return store, handle


def test_layer_selection_matches_hf_forward(wave):
    torch.manual_seed(0)
    fe = SSLFrontEnd(TINY_SSL).eval()
    hf = fe.model
    with torch.no_grad():
        ref_last = hf(wave).last_hidden_state
        assert torch.allclose(fe(wave), ref_last, atol=1e-5)
        s0, h0 = _capture(hf.encoder.layers[0], pre=True)
        s1, h1 = _capture(hf.encoder.layers[0])
        hf(wave)
        h0.remove()
        h1.remove()
    for layer, ref in ((0, s0["h"]), (1, s1["h"]), (-1, ref_last), (2, ref_last)):
        sel = SSLFrontEnd(TINY_SSL, layer=layer)
        sel.model.load_state_dict(hf.state_dict())
        with torch.no_grad():
            assert torch.allclose(sel.eval()(wave), ref, atol=1e-5), layer
    with pytest.raises(ValueError):
        SSLFrontEnd(TINY_SSL, layer=3)
    with pytest.raises(ValueError):
        SSLFrontEnd(TINY_SSL, layer="middle")


def test_chosen_layer_trains(wave):
    model = tiny("xlsr_aasist", ssl_layer=1)
    loss, _ = _train_step(model, wave)
    assert torch.isfinite(loss)
    assert _bad_grads(model) == []
    frozen = set(model.frozen_parameter_names())
    assert {n for n in frozen if n.startswith("ssl.")} == {"ssl.model.masked_spec_embed"} | {
        f"ssl.model.{n}"
        for n, _ in model.ssl.model.named_parameters()
        if n.startswith(("encoder.layers.1.", "encoder.layer_norm."))
    }


def test_local_directory_loading(tmp_path, wave):
    src = tiny("xlsr_mamba").eval()
    src.ssl.model.save_pretrained(str(tmp_path))
    fe = SSLFrontEnd(pretrained=tmp_path).eval()
    with torch.no_grad():
        assert torch.allclose(fe(wave), src.ssl(wave), atol=1e-6)
    assert fe.model.config.apply_spec_augment is False
    # through the registry, with a config override
    model = build_model(
        "xlsr_mamba", ssl_pretrained=str(tmp_path), ssl_config={"hidden_dropout": 0.0}, **TINY_BACKENDS["xlsr_mamba"]
    )
    assert model.ssl.model.config.hidden_dropout == 0.0
    assert torch.equal(
        model.ssl.model.encoder.layers[0].attention.q_proj.weight,
        src.ssl.model.encoder.layers[0].attention.q_proj.weight,
    )
    with pytest.raises(FileNotFoundError):
        SSLFrontEnd(pretrained=tmp_path / "missing")


def test_default_config_is_xlsr_300m():
    cfg = make_wav2vec2_config()
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (
        24,
        1024,
        16,
        4096,
    )
    assert cfg.do_stable_layer_norm and cfg.feat_extract_norm == "layer" and cfg.conv_bias
    assert (cfg.num_conv_pos_embeddings, cfg.num_conv_pos_embedding_groups) == (128, 16)
    assert tuple(cfg.conv_stride) == (5, 2, 2, 2, 2, 2, 2) and tuple(cfg.conv_kernel) == (10, 3, 3, 3, 3, 2, 2)
    assert cfg.apply_spec_augment is False
    assert make_wav2vec2_config({"num_hidden_layers": 3}).num_hidden_layers == 3
    assert XLSR_300M_HF_CONFIG["hidden_size"] == 1024


def _wav2vec2_params(cfg) -> int:
    """Analytic parameter count of an HF Wav2Vec2Model with layer-norm conv features."""
    n, c_in = 0, 1
    for c, k in zip(cfg.conv_dim, cfg.conv_kernel):
        n += c * c_in * k + c + 2 * c  # conv + bias + layer norm
        c_in = c
    d, f = cfg.hidden_size, cfg.intermediate_size
    n += 2 * c_in + c_in * d + d  # feature projection (LN + linear)
    n += d * (d // cfg.num_conv_pos_embedding_groups) * cfg.num_conv_pos_embeddings + cfg.num_conv_pos_embeddings + d
    layer = 4 * (d * d + d) + 2 * d + (d * f + f) + (f * d + d) + 2 * d
    return n + 2 * d + cfg.num_hidden_layers * layer + d  # encoder LN, layers, masked_spec_embed


def test_full_size_parameter_counts_on_meta_device():
    counts = full_size_parameter_counts(["xlsr_conformer_tcm"])["xlsr_conformer_tcm"]
    assert counts["ssl"] == _wav2vec2_params(make_wav2vec2_config()) == 315_438_720
    assert counts["backend"] == 2_382_628  # the tcm_add layout (conv expansion 2, head-token projection and LayerNorm)
    assert counts["total"] == counts["ssl"] + counts["backend"]
    assert counts["trainable"] == counts["total"] - 1024  # masked_spec_embed unused
    # back-ends at full size are small: build them for real
    from dpda.models.mamba import BiMambaBackend
    from dpda.models.ssl import SSLAASISTBackend

    assert sum(p.numel() for p in BiMambaBackend().parameters()) == 1_937_094
    assert sum(p.numel() for p in SSLAASISTBackend().parameters()) == 447_242
