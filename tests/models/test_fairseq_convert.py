"""fairseq wav2vec 2.0 -> HF key conversion, checkpoint loading and SSL-AASIST checkpoints.

fairseq cannot run here, so the fairseq layout is built by hand from its
documented module names (tiny sizes): ``feature_extractor.conv_layers.N.0``
(conv) / ``.2.1`` (layer norm, "layer_norm" mode) / ``.2`` (group norm of layer
0, "default" mode), ``layer_norm``, ``post_extract_proj``,
``encoder.pos_conv.0`` (weight norm, dim 2), ``encoder.layers.N.self_attn.*``,
``self_attn_layer_norm``, ``fc1``, ``fc2``, ``final_layer_norm``,
``encoder.layer_norm``, ``mask_emb`` and the pre-training heads ``quantizer``,
``project_q``, ``final_proj``. The tests check that every key is consumed or
explicitly dropped, that loading is strict, and that the converted model
reproduces the model the fairseq-layout tensors came from.
"""

from __future__ import annotations

import argparse
import enum
import pickle
import sys
import types

import pytest
import torch

pytest.importorskip("transformers")
from transformers import Wav2Vec2Model

from dpda.models import build_model
from dpda.models.fairseq_convert import (
    XLSR_300M_FAIRSEQ_CFG,
    XLSR_300M_HF_CONFIG,
    convert_fairseq_checkpoint,
    convert_fairseq_state_dict,
    convert_ssl_aasist_checkpoint,
    fairseq_cfg_to_hf_config,
    fairseq_key_to_hf,
    infer_fairseq_model_cfg,
    load_fairseq_checkpoint,
    parse_conv_feature_layers,
)
from dpda.models.ssl import SSLFrontEnd, load_ssl_aasist_checkpoint, make_wav2vec2_config

# fairseq cfg of the tiny model (conv_feature_layers as a fairseq string)
TINY_FS_CFG = dict(
    XLSR_300M_FAIRSEQ_CFG,
    encoder_layers=2,
    encoder_embed_dim=32,
    encoder_ffn_embed_dim=64,
    encoder_attention_heads=2,
    conv_feature_layers="[(16, 10, 10)] + [(16, 8, 8)]",
    conv_pos=16,
    conv_pos_groups=4,
)
TINY_HF = dict(
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


def _hf_model(**overrides) -> Wav2Vec2Model:
    torch.manual_seed(0)
    return Wav2Vec2Model(make_wav2vec2_config(TINY_HF, **overrides)).eval()


def _pos_g_v(hf_state):
    base = "encoder.pos_conv_embed.conv."
    if base + "parametrizations.weight.original0" in hf_state:
        return hf_state[base + "parametrizations.weight.original0"], hf_state[
            base + "parametrizations.weight.original1"
        ]
    return hf_state[base + "weight_g"], hf_state[base + "weight_v"]


def fairseq_layout(model: Wav2Vec2Model, pos_style: str = "weight_norm", extras: bool = True) -> dict:
    """The state dict fairseq's Wav2Vec2Model would have for the same weights (written by hand)."""
    hf = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = model.config
    fs = {"mask_emb": hf["masked_spec_embed"]}
    for i in range(len(cfg.conv_dim)):
        fs[f"feature_extractor.conv_layers.{i}.0.weight"] = hf[f"feature_extractor.conv_layers.{i}.conv.weight"]
        if cfg.conv_bias:
            fs[f"feature_extractor.conv_layers.{i}.0.bias"] = hf[f"feature_extractor.conv_layers.{i}.conv.bias"]
        norm = ".2.1" if cfg.feat_extract_norm == "layer" else ".2"
        if cfg.feat_extract_norm == "layer" or i == 0:
            for p in ("weight", "bias"):
                fs[f"feature_extractor.conv_layers.{i}{norm}.{p}"] = hf[
                    f"feature_extractor.conv_layers.{i}.layer_norm.{p}"
                ]
    for p in ("weight", "bias"):
        fs[f"layer_norm.{p}"] = hf[f"feature_projection.layer_norm.{p}"]
        fs[f"post_extract_proj.{p}"] = hf[f"feature_projection.projection.{p}"]
        fs[f"encoder.layer_norm.{p}"] = hf[f"encoder.layer_norm.{p}"]
    fs["encoder.pos_conv.0.bias"] = hf["encoder.pos_conv_embed.conv.bias"]
    g, v = _pos_g_v(hf)
    if pos_style == "weight_norm":
        fs["encoder.pos_conv.0.weight_g"], fs["encoder.pos_conv.0.weight_v"] = g, v
    elif pos_style == "parametrizations":
        fs["encoder.pos_conv.0.parametrizations.weight.original0"] = g
        fs["encoder.pos_conv.0.parametrizations.weight.original1"] = v
    else:  # weight norm removed: the effective weight
        fs["encoder.pos_conv.0.weight"] = v * (g / torch.linalg.vector_norm(v, dim=(0, 1), keepdim=True))
    for n in range(cfg.num_hidden_layers):
        src, dst = f"encoder.layers.{n}.", f"encoder.layers.{n}."
        for p in ("weight", "bias"):
            for proj in ("k", "q", "v", "out"):
                fs[f"{dst}self_attn.{proj}_proj.{p}"] = hf[f"{src}attention.{proj}_proj.{p}"]
            fs[f"{dst}self_attn_layer_norm.{p}"] = hf[f"{src}layer_norm.{p}"]
            fs[f"{dst}fc1.{p}"] = hf[f"{src}feed_forward.intermediate_dense.{p}"]
            fs[f"{dst}fc2.{p}"] = hf[f"{src}feed_forward.output_dense.{p}"]
            fs[f"{dst}final_layer_norm.{p}"] = hf[f"{src}final_layer_norm.{p}"]
    if extras:  # pre-training heads (dropped by the converter)
        fs["quantizer.vars"] = torch.randn(1, 2 * 8, 4)
        fs["quantizer.weight_proj.weight"] = torch.randn(16, 16)
        fs["quantizer.weight_proj.bias"] = torch.randn(16)
        fs["project_q.weight"] = torch.randn(8, 8)
        fs["project_q.bias"] = torch.randn(8)
        fs["final_proj.weight"] = torch.randn(8, 32)
        fs["final_proj.bias"] = torch.randn(8)
    return fs


@pytest.fixture(scope="module")
def wave() -> torch.Tensor:
    return 0.1 * torch.randn(2, 8000, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("pos_style", ["weight_norm", "parametrizations", "plain"])
def test_round_trip_complete_and_strict(pos_style, wave):
    src = _hf_model()
    fs = fairseq_layout(src, pos_style)
    hf_state, report = convert_fairseq_state_dict(fs)
    assert report.unmapped == []
    assert set(report.mapped) | set(report.dropped) == set(fs)
    assert sorted(report.dropped) == sorted(k for k in fs if k.startswith(("quantizer.", "project_q.", "final_proj.")))
    dst = _hf_model()
    torch.nn.init.normal_(dst.encoder.layers[0].attention.q_proj.weight)  # make sure weights really change
    result = dst.load_state_dict(hf_state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert set(hf_state) == set(src.state_dict())
    with torch.no_grad():
        assert torch.allclose(dst(wave).last_hidden_state, src(wave).last_hidden_state, atol=1e-5)


def test_group_norm_post_ln_variant(wave):
    # wav2vec 2.0 base style: "default" extractor (group norm on conv 0 only), no conv bias, post-LN
    src = _hf_model(feat_extract_norm="group", conv_bias=False, do_stable_layer_norm=False)
    fs = fairseq_layout(src, extras=False)
    assert "feature_extractor.conv_layers.0.2.weight" in fs and "feature_extractor.conv_layers.1.2.weight" not in fs
    hf_state, _report = convert_fairseq_state_dict(fs)
    dst = _hf_model(feat_extract_norm="group", conv_bias=False, do_stable_layer_norm=False)
    dst.load_state_dict(hf_state, strict=True)
    fe_src = SSLFrontEnd(src.config).eval()
    fe_src.model.load_state_dict(src.state_dict())
    with torch.no_grad():
        assert torch.allclose(dst(wave).last_hidden_state, src(wave).last_hidden_state, atol=1e-5)
        assert torch.allclose(fe_src(wave), src(wave).last_hidden_state, atol=1e-5)  # own loop, post-LN path


def test_unknown_keys_and_prefixes():
    fs = fairseq_layout(_hf_model(), extras=False)
    with pytest.raises(KeyError):
        convert_fairseq_state_dict({**fs, "encoder.layers.0.mystery.weight": torch.zeros(1)})
    _, report = convert_fairseq_state_dict({**fs, "mystery": torch.zeros(1)}, strict=False)
    assert report.unmapped == ["mystery"]
    # DataParallel and fine-tuned CTC prefixes
    ddp = {f"module.{k}": v for k, v in fs.items()}
    assert set(convert_fairseq_state_dict(ddp)[0]) == set(convert_fairseq_state_dict(fs)[0])
    ctc = {f"w2v_encoder.w2v_model.{k}": v for k, v in fs.items()}
    ctc["w2v_encoder.proj.weight"] = torch.zeros(3, 32)
    out, report = convert_fairseq_state_dict(ctc)
    assert set(out) == set(convert_fairseq_state_dict(fs)[0]) and report.dropped == ["w2v_encoder.proj.weight"]
    assert fairseq_key_to_hf("encoder.layers.3.fc1.weight") == "encoder.layers.3.feed_forward.intermediate_dense.weight"
    assert fairseq_key_to_hf("encoder.pos_conv.0.weight_g", "weight_norm") == "encoder.pos_conv_embed.conv.weight_g"
    assert fairseq_key_to_hf("nothing.here") is None
    # mask_emb is dropped when the HF config has no masked_spec_embed
    out, report = convert_fairseq_state_dict(fs, drop_mask_emb=True)
    assert "mask_emb" in report.dropped and "masked_spec_embed" not in out


def test_config_conversion():
    assert (
        parse_conv_feature_layers(XLSR_300M_FAIRSEQ_CFG["conv_feature_layers"])
        == [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    )
    with pytest.raises(ValueError):
        parse_conv_feature_layers("__import__('os').getcwd()")
    cfg = fairseq_cfg_to_hf_config(XLSR_300M_FAIRSEQ_CFG)
    for key in (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "conv_bias",
        "do_stable_layer_norm",
    ):
        assert getattr(cfg, key) == XLSR_300M_HF_CONFIG[key], key
    for key in ("conv_dim", "conv_kernel", "conv_stride"):
        assert tuple(getattr(cfg, key)) == XLSR_300M_HF_CONFIG[key]
    assert (
        cfg.feat_extract_norm == "layer"
        and cfg.num_conv_pos_embeddings == 128
        and cfg.num_conv_pos_embedding_groups == 16
    )
    assert cfg.apply_spec_augment is False
    base = fairseq_cfg_to_hf_config({"extractor_mode": "default", "layer_norm_first": False, "encoder_layerdrop": 0.05})
    assert base.feat_extract_norm == "group" and not base.do_stable_layer_norm and base.layerdrop == 0.05
    # a bare state dict: shapes give everything except strides/heads
    inferred = infer_fairseq_model_cfg(fairseq_layout(_hf_model()))
    assert (
        inferred["encoder_layers"] == 2
        and inferred["encoder_embed_dim"] == 32
        and inferred["encoder_ffn_embed_dim"] == 64
    )
    assert (
        inferred["conv_pos"] == 16 and inferred["conv_pos_groups"] == 4 and inferred["extractor_mode"] == "layer_norm"
    )


def test_checkpoint_file_with_namespace_args(tmp_path, wave):
    src = _hf_model()
    path = tmp_path / "tiny_fairseq.pt"
    torch.save({"args": argparse.Namespace(**TINY_FS_CFG), "cfg": None, "model": fairseq_layout(src)}, path)
    ckpt = load_fairseq_checkpoint(path)  # Namespace is allow-listed: weights_only=True suffices
    assert isinstance(ckpt["args"], argparse.Namespace)
    config, hf_state, _report = convert_fairseq_checkpoint(path)
    assert (config.hidden_size, config.num_hidden_layers, tuple(config.conv_stride)) == (32, 2, (10, 8))
    fe = SSLFrontEnd(pretrained=path).eval()
    assert fe.load_report is not None and fe.load_report.unmapped == []
    with torch.no_grad():
        assert torch.allclose(fe(wave), src(wave).last_hidden_state, atol=1e-5)
    # hydra-style cfg dict
    torch.save({"cfg": {"model": dict(TINY_FS_CFG)}, "model": fairseq_layout(src)}, tmp_path / "hydra.pt")
    assert convert_fairseq_checkpoint(tmp_path / "hydra.pt")[0].intermediate_size == 64
    # a plain state dict: config inferred, with overrides for what shapes cannot tell
    torch.save(fairseq_layout(src), tmp_path / "bare.pt")
    config, hf_state, _ = convert_fairseq_checkpoint(tmp_path / "bare.pt", conv_stride=(10, 8), num_attention_heads=2)
    model = Wav2Vec2Model(config).eval()
    model.load_state_dict(hf_state, strict=True)
    with torch.no_grad():
        assert torch.allclose(model(wave).last_hidden_state, src(wave).last_hidden_state, atol=1e-5)


class _FakeFairseqObject:
    def __init__(self) -> None:
        self.value = 3


class _FakeChoiceEnum(enum.Enum):  # like fairseq's ChoiceEnum config values
    LAYER_NORM = "layer_norm"


def test_untrusted_pickle_requires_opt_in(tmp_path, wave):
    # objects of a module that is not importable at load time (like fairseq's own classes)
    mod = types.ModuleType("fake_fairseq_meters")
    for cls, name in ((_FakeFairseqObject, "Meter"), (_FakeChoiceEnum, "ChoiceEnum")):
        cls.__module__ = "fake_fairseq_meters"
        cls.__qualname__ = name
        setattr(mod, name, cls)
    sys.modules["fake_fairseq_meters"] = mod
    src = _hf_model()
    try:
        path = tmp_path / "with_objects.pt"
        model_cfg = dict(TINY_FS_CFG, extractor_mode=_FakeChoiceEnum.LAYER_NORM)
        torch.save({"cfg": {"model": model_cfg}, "model": fairseq_layout(src), "extra": _FakeFairseqObject()}, path)
        unreadable = tmp_path / "unreadable_cfg.pt"
        torch.save({"cfg": {"model": _FakeFairseqObject()}, "model": fairseq_layout(src)}, unreadable)
    finally:
        del sys.modules["fake_fairseq_meters"]
    with pytest.raises(RuntimeError, match="trust_pickle"):
        load_fairseq_checkpoint(path)
    with pytest.warns(UserWarning, match="executes pickled code"):
        ckpt = load_fairseq_checkpoint(path, trust_pickle=True)
    assert ckpt["extra"].value == 3 and type(ckpt["extra"]).__name__ == "Meter"  # inert stub
    with pytest.raises(pickle.PicklingError):
        pickle.dumps(ckpt["extra"])
    with pytest.warns(UserWarning):
        config, hf_state, report = convert_fairseq_checkpoint(path, trust_pickle=True)
    assert report.unmapped == [] and config.hidden_size == 32 and config.feat_extract_norm == "layer"
    model = Wav2Vec2Model(config).eval()
    model.load_state_dict(hf_state, strict=True)
    with torch.no_grad():
        assert torch.allclose(model(wave).last_hidden_state, src(wave).last_hidden_state, atol=1e-5)
    # a cfg that cannot be read falls back to inferring the architecture from the tensors
    with pytest.warns(UserWarning):
        config, _, _ = convert_fairseq_checkpoint(
            unreadable, trust_pickle=True, conv_stride=(10, 8), num_attention_heads=2
        )
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (32, 2, 64)


TINY_AASIST = dict(proj_dim=12, filts=((1, 4), (4, 4), (4, 8), (8, 8)), attention_dim=8, gat_dims=(8, 8))
#: back-end parameter names of the public SSL-AASIST model (subset)
SSL_AASIST_NAMES = [
    "LL.weight",
    "first_bn.running_mean",
    "first_bn1.weight",
    "encoder.0.0.conv1.weight",
    "encoder.1.0.bn1.weight",
    "encoder.2.0.conv_downsample.weight",
    "attention.0.weight",
    "attention.2.running_var",
    "attention.3.bias",
    "pos_S",
    "master1",
    "master2",
    "GAT_layer_S.att_weight",
    "GAT_layer_T.proj_with_att.weight",
    "HtrgGAT_layer_ST11.att_weight12",
    "HtrgGAT_layer_ST22.proj_without_attM.bias",
    "pool_S.proj.weight",
    "pool_hT2.proj.bias",
    "out_layer.weight",
]


def test_ssl_aasist_checkpoint(tmp_path, wave):
    torch.manual_seed(0)
    src = build_model("xlsr_aasist", ssl_config=TINY_HF, **TINY_AASIST).eval()
    backend_state = src.backend.state_dict()
    assert set(SSL_AASIST_NAMES) <= set(backend_state)
    ckpt = {f"ssl_model.model.{k}": v for k, v in fairseq_layout(src.ssl.model).items()}
    ckpt.update(backend_state)

    _hf_state, backend, report = convert_ssl_aasist_checkpoint(ckpt)
    assert report.unmapped == [] and set(backend) == set(backend_state)
    assert len(report.mapped) + len(report.dropped) + len(backend) == len(ckpt)

    torch.manual_seed(1)
    dst = build_model("xlsr_aasist", ssl_config=TINY_HF, **TINY_AASIST).eval()
    path = tmp_path / "ssl_aasist.pth"
    torch.save({f"module.{k}": v for k, v in ckpt.items()}, path)  # saved from DataParallel
    info = load_ssl_aasist_checkpoint(dst, path)
    assert info["backend_missing"] == [] and info["backend_unexpected"] == []
    with torch.no_grad():
        assert torch.allclose(dst(wave), src(wave), atol=1e-5)
    with pytest.raises(KeyError):
        convert_ssl_aasist_checkpoint(backend_state)
    # other back-ends: the SSL part still loads strictly, foreign back-end keys are reported
    mamba = build_model("xlsr_mamba", ssl_config=TINY_HF, d_model=8, n_layers=1, d_state=4).eval()
    info = load_ssl_aasist_checkpoint(mamba, ckpt, strict=False)
    assert "LL.weight" in info["backend_unexpected"]
    assert torch.equal(
        mamba.ssl.model.feature_projection.projection.weight, src.ssl.model.feature_projection.projection.weight
    )
