"""AASIST / AASIST-L: parity with the official clovaai/aasist outputs and model sanity checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dpda.models import build_model, count_parameters
from dpda.models.aasist import (
    AASIST,
    AasistGraphBackend,
    GraphAttentionLayer,
    GraphPool,
    HtrgGraphAttentionLayer,
    ResidualBlock,
    load_official_aasist,
    min_input_length,
)
from dpda.models.sinc import SincConv

VARIANTS = {"aasist": "AASIST", "aasist-l": "AASIST-L"}
ATOL = RTOL = 1e-4
HOOKED = ["encoder", "GAT_layer_S", "GAT_layer_T", "pool_S", "pool_T", "HtrgGAT_layer_ST11", "HtrgGAT_layer_ST22"]


def _diff(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.abs(a.detach().float().numpy() - b).max())


@pytest.fixture(scope="module")
def meta(reference_dir):
    return json.loads((reference_dir / "aasist" / "aasist_state_dict_and_params.json").read_text())


@pytest.fixture(scope="module", params=list(VARIANTS))
def official_run(request, reference_dir):
    """Official weights loaded strictly; one eval forward per reference input (hooks on the random one)."""
    name = request.param
    tag = VARIANTS[name]
    model = load_official_aasist(reference_dir / "aasist" / f"{tag}.pth", name)
    ref = dict(np.load(reference_dir / "aasist" / f"{tag}_forward_ref.npz"))
    inter = {}

    def hook(key):
        def fn(_mod, _inp, out):
            if isinstance(out, tuple):
                for k, t in enumerate(out):
                    inter[f"{key}.out{k}"] = t.detach()
            else:
                inter[key] = out.detach()

        return fn

    handles = [getattr(model, k).register_forward_hook(hook(k)) for k in HOOKED]
    with torch.no_grad():
        out = {"": model(torch.from_numpy(ref["input"]), return_embedding=True)}
        for h in handles:
            h.remove()
        out["_structured"] = model(torch.from_numpy(ref["input_structured"]), return_embedding=True)
    return name, tag, model, ref, out, inter


# --------------------------------------------------------------------------- parity


def test_official_state_dict_layout(meta):
    for name, tag in VARIANTS.items():
        model = build_model(name)
        expected = meta[tag]["state_dict"]
        got = model.state_dict()
        assert list(got) == list(expected), name
        for key, spec in expected.items():
            assert list(got[key].shape) == spec["shape"], key
        assert count_parameters(model) == meta[tag]["n_trainable"]
    assert count_parameters(build_model("aasist")) == 297_866
    assert count_parameters(build_model("aasist-l")) == 85_306


def test_sinc_filterbank(reference_dir):
    ref = np.load(reference_dir / "aasist" / "AASIST_forward_ref.npz")
    sinc = SincConv(70, 128)
    assert sinc.kernel_size == 129
    assert "band_pass" not in sinc.state_dict()
    np.testing.assert_allclose(sinc.edges_hz, ref["sinc_mel_edges_hz"], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(sinc.band_pass.numpy(), ref["sinc_band_pass"], rtol=0, atol=1e-6)
    for name in VARIANTS:
        assert torch.equal(build_model(name).conv_time.band_pass, sinc.band_pass)


@pytest.mark.parametrize("suffix", ["", "_structured"])
def test_logits_and_embedding_match_official(official_run, suffix):
    name, _, _, ref, out, _ = official_run
    logits, emb = out[suffix]
    d_logits, d_emb = _diff(logits, ref["logits" + suffix]), _diff(emb, ref["last_hidden" + suffix])
    print(f"{name}{suffix}: max|dlogits|={d_logits:.3g} max|dembedding|={d_emb:.3g}")
    np.testing.assert_allclose(logits.numpy(), ref["logits" + suffix], atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(emb.numpy(), ref["last_hidden" + suffix], atol=ATOL, rtol=RTOL)
    # float64 "truth" of the official model
    np.testing.assert_allclose(logits.numpy(), ref["logits" + suffix + "_f64"], atol=ATOL, rtol=RTOL)
    assert emb.shape == (3, 160)


def test_intermediates_match_official(official_run):
    name, _, _, ref, _, inter = official_run
    keys = [
        "encoder",
        "GAT_layer_S",
        "GAT_layer_T",
        "pool_S",  # node order = topk order, identical when the scores match
        "pool_T",
        "HtrgGAT_layer_ST11.out0",
        "HtrgGAT_layer_ST11.out1",
        "HtrgGAT_layer_ST11.out2",  # master (stack node)
        "HtrgGAT_layer_ST22.out2",
    ]
    for key in keys:
        d = _diff(inter[key], ref["inter_" + key])
        print(f"{name} {key}: max|d|={d:.3g}")
        assert inter[key].shape == ref["inter_" + key].shape, key
        assert d <= ATOL, key


# --------------------------------------------------------------------------- behaviour


def test_batch_of_one_equals_batched():
    torch.manual_seed(0)
    model = build_model("aasist-l").eval()
    x = torch.randn(3, 3000) * 0.1
    with torch.no_grad():
        batched = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(single, batched, atol=1e-5, rtol=1e-5)


def test_training_step_gradients():
    torch.manual_seed(0)
    model = build_model("aasist").train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(2, 4000) * 0.1  # 1 temporal node; training needs B * nodes > 1 (BatchNorm)
    logits, emb = model(x, return_embedding=True, freq_aug=True)
    assert logits.shape == (2, 2) and emb.shape == (2, 160)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]), weight=torch.tensor([0.1, 0.9]))
    loss.backward()
    # official quirk: bn1 of blocks 2..6 is evaluated but its output is discarded -> no gradient
    dead = {f"encoder.{i}.0.bn1.{p}" for i in range(1, 6) for p in ("weight", "bias")}
    for pname, p in model.named_parameters():
        if pname in dead:
            assert p.grad is None, pname
        else:
            assert p.grad is not None, pname
            assert torch.isfinite(p.grad).all(), pname
    before = model.encoder[1][0].bn1.running_mean.clone()
    opt.step()
    model(x)  # bn1 running statistics are still updated in training mode
    assert not torch.equal(before, model.encoder[1][0].bn1.running_mean)


def test_apply_bn1_variant_trains_bn1():
    block = ResidualBlock([4, 8], apply_bn1=True)
    block(torch.randn(2, 4, 5, 30)).sum().backward()
    assert block.bn1.weight.grad is not None and block.conv_downsample.weight.grad is not None


def test_minimum_input_length():
    model = build_model("aasist-l").eval()
    assert model.min_input_length() == min_input_length() == 2315
    with torch.no_grad():
        assert model(torch.randn(2, 2315)).shape == (2, 2)
        with pytest.raises(ValueError):
            model(torch.randn(2, 2314))


def test_bf16_autocast_forward():
    torch.manual_seed(0)
    model = build_model("aasist").eval()
    x = torch.randn(2, 4000) * 0.1
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits, emb = model(x, return_embedding=True)
    assert logits.shape == (2, 2) and emb.shape == (2, 160)
    assert torch.isfinite(logits.float()).all()


def test_build_overrides_and_loader(reference_dir, tmp_path):
    small = build_model("aasist", gat_dims=[16, 16]).eval()
    assert small.out_layer.in_features == 80
    with torch.no_grad():
        assert small(torch.randn(1, 4000)).shape == (1, 2)
    model = load_official_aasist(reference_dir / "aasist" / "AASIST-L.pth", name="aasist-l")
    assert isinstance(model, AASIST) and not model.training
    with pytest.raises(ValueError):
        load_official_aasist(reference_dir / "aasist" / "AASIST-L.pth", name="rawnet2")


def test_freq_aug_masks_a_contiguous_filter_block():
    sinc = SincConv(70, 128)
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        masked = sinc._masked_filters(gen)
        zero_rows = torch.nonzero(masked.abs().sum(dim=1) == 0).flatten()
        assert len(zero_rows) < 20
        if len(zero_rows):
            assert torch.equal(zero_rows, torch.arange(int(zero_rows[0]), int(zero_rows[0]) + len(zero_rows)))


def test_building_blocks_for_other_front_ends():
    torch.manual_seed(0)
    backend = AasistGraphBackend(in_channels=64, num_spectral_nodes=42).eval()
    e = torch.randn(2, 64, 42, 20)
    with torch.no_grad():
        logits, emb = backend(e)
        assert logits.shape == (2, 2) and emb.shape == (2, 160)
        e_S, e_T = backend.readout_nodes(e)
        assert e_S.shape == (2, 42, 64) and e_T.shape == (2, 20, 64)
        torch.testing.assert_close(backend.forward_nodes(e_S, e_T)[0], logits)
        with pytest.raises(ValueError):
            backend.forward_nodes(e_S[:, :23], e_T)
    assert "pos_S" in backend.state_dict() and "GAT_layer_S.att_weight" in backend.state_dict()
    assert GraphAttentionLayer(8, 4, temperature=2.0)(torch.randn(2, 5, 8)).shape == (2, 5, 4)
    t, s, m = HtrgGraphAttentionLayer(8, 4)(torch.randn(2, 5, 8), torch.randn(2, 3, 8), torch.randn(1, 1, 8))
    assert t.shape == (2, 5, 4) and s.shape == (2, 3, 4) and m.shape == (2, 1, 4)
    assert GraphPool(0.5, 8, 0.3)(torch.randn(2, 7, 8)).shape == (2, 3, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    model = build_model("aasist-l").eval()
    x = torch.randn(2, 8000) * 0.1
    with torch.no_grad():
        ref = model(x)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        got = model.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
