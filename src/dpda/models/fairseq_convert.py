"""Convert fairseq wav2vec 2.0 / XLS-R checkpoints to Hugging Face ``Wav2Vec2Model``.

fairseq is *not* needed. The converter is a key-mapping table from the
module names of fairseq's ``Wav2Vec2Model`` to those of
``transformers.Wav2Vec2Model``:

=====================================================  ============================================
fairseq                                                Hugging Face
=====================================================  ============================================
``feature_extractor.conv_layers.N.0.{weight,bias}``    ``feature_extractor.conv_layers.N.conv.*``
``feature_extractor.conv_layers.N.2[.1].{weight,bias}``  ``feature_extractor.conv_layers.N.layer_norm.*``
                                                       (layer norm in "layer_norm" mode, ``.2.1``;
                                                       group norm of layer 0 in "default" mode, ``.2``)
``layer_norm.*``                                       ``feature_projection.layer_norm.*``
``post_extract_proj.*``                                ``feature_projection.projection.*``
``encoder.pos_conv.0.bias``                            ``encoder.pos_conv_embed.conv.bias``
``encoder.pos_conv.0.weight_g`` / ``...weight_v``      weight-norm magnitude / direction, written as
(or ``...parametrizations.weight.original0/1``;        ``...conv.parametrizations.weight.original0/1``
or a plain ``...weight``: g is recomputed)             (torch >= 2.1) or ``...conv.weight_g/_v``
``encoder.layers.N.self_attn.{k,q,v,out}_proj.*``      ``encoder.layers.N.attention.{k,q,v,out}_proj.*``
``encoder.layers.N.self_attn_layer_norm.*``            ``encoder.layers.N.layer_norm.*``
``encoder.layers.N.fc1.*`` / ``fc2.*``                 ``encoder.layers.N.feed_forward.intermediate_dense.*``
                                                       / ``...feed_forward.output_dense.*``
``encoder.layers.N.final_layer_norm.*``                ``encoder.layers.N.final_layer_norm.*``
``encoder.layer_norm.*``                               ``encoder.layer_norm.*``
``mask_emb``                                           ``masked_spec_embed``
``quantizer.*``, ``project_q.*``, ``final_proj.*``,    dropped (pre-training heads)
``target_glu.*``
=====================================================  ============================================

Keys of fine-tuned CTC checkpoints (``w2v_encoder.w2v_model.`` prefix) are
accepted too (``w2v_encoder.proj`` is dropped). Every other key is an error in
strict mode; :class:`ConversionReport` lists what was mapped, dropped and
left over, and loading into the HF model is then done with ``strict=True``.

The config comes from the checkpoint's ``cfg["model"]`` (fairseq >= 0.10,
hydra) or ``args`` (older, an ``argparse.Namespace``): see
:func:`fairseq_cfg_to_hf_config`. XLS-R 300M (``xlsr2_300m.pt``): 24 layers,
1024 dims, 16 heads, FFN 4096, ``layer_norm_first`` (HF
``do_stable_layer_norm=True``), ``extractor_mode="layer_norm"`` (HF
``feat_extract_norm="layer"``), ``conv_bias=True``, 7 conv layers
``[(512,10,5)] + [(512,3,2)]*4 + [(512,2,2)]*2``, positional conv of kernel 128
in 16 groups.

Loading a fairseq ``.pt`` file
------------------------------
fairseq checkpoints are pickles that hold ``argparse.Namespace`` objects and
other Python objects besides tensors. :func:`load_fairseq_checkpoint` first
tries ``torch.load(weights_only=True)`` with ``argparse.Namespace`` allow-listed
(safe). If that fails, loading needs ``weights_only=False`` -- **which executes
arbitrary code from the pickle**: only do it for files you trust, by passing
``trust_pickle=True`` (a warning is issued). Classes of modules that are not
installed (fairseq, omegaconf, ...) are replaced by inert stubs, so fairseq is
still not required. A plain state dict (``{name: tensor}``) is accepted too.
SSL-AASIST/DPDA checkpoints (front-end under ``ssl_model.model.``) are split
by :func:`convert_ssl_aasist_checkpoint`.

Why one file of about 600 lines: the key-mapping table above, the configuration translation
and the checkpoint readers are one conversion, read and checked together against fairseq's
module names.
"""

from __future__ import annotations

import argparse
import ast
import enum
import pickle
import re
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from dpda.errors import PathLike

__all__ = [
    "DROPPED_PREFIXES",
    "XLSR_300M_FAIRSEQ_CFG",
    "XLSR_300M_HF_CONFIG",
    "ConversionReport",
    "convert_fairseq_checkpoint",
    "convert_fairseq_state_dict",
    "convert_ssl_aasist_checkpoint",
    "default_weight_norm_style",
    "extract_model_cfg",
    "extract_state_dict",
    "fairseq_cfg_to_hf_config",
    "fairseq_key_to_hf",
    "infer_fairseq_model_cfg",
    "load_fairseq_checkpoint",
    "parse_conv_feature_layers",
]


#: fairseq model cfg of XLS-R 300M (architecture fields; dropouts as the published HF port)
XLSR_300M_FAIRSEQ_CFG: Dict[str, Any] = {
    "_name": "wav2vec2",
    "extractor_mode": "layer_norm",
    "encoder_layers": 24,
    "encoder_embed_dim": 1024,
    "encoder_ffn_embed_dim": 4096,
    "encoder_attention_heads": 16,
    "activation_fn": "gelu",
    "layer_norm_first": True,
    "conv_feature_layers": "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]",
    "conv_bias": True,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "dropout_input": 0.1,
    "encoder_layerdrop": 0.0,
    "mask_prob": 0.65,
}

#: ``transformers.Wav2Vec2Config`` kwargs of XLS-R 300M as used by dpda (full size).
#: Spec-augment masking is off (SSL-AASIST/DPDA call fairseq with ``mask=False``);
#: ``mask_time_prob > 0`` only keeps the ``masked_spec_embed`` parameter so that
#: ``mask_emb`` loads strictly. ``layerdrop=0`` (deterministic forward).
XLSR_300M_HF_CONFIG: Dict[str, Any] = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "hidden_act": "gelu",
    "conv_dim": (512, 512, 512, 512, 512, 512, 512),
    "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
    "conv_stride": (5, 2, 2, 2, 2, 2, 2),
    "conv_bias": True,
    "feat_extract_norm": "layer",
    "feat_extract_activation": "gelu",
    "do_stable_layer_norm": True,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "layer_norm_eps": 1e-5,
    "hidden_dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.1,
    "layerdrop": 0.0,
    "apply_spec_augment": False,
    "mask_time_prob": 0.05,
    "mask_feature_prob": 0.0,
}

#: fairseq parameters without an HF ``Wav2Vec2Model`` counterpart (pre-training / CTC heads)
DROPPED_PREFIXES: Tuple[str, ...] = ("quantizer.", "project_q.", "final_proj.", "target_glu.", "w2v_encoder.proj.")

_CTC_PREFIX = "w2v_encoder.w2v_model."

# --------------------------------------------------------------------------- config


def _safe_eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _safe_eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_safe_eval(e) for e in node.elts)
    if isinstance(node, ast.List):
        return [_safe_eval(e) for e in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _safe_eval(node.left), _safe_eval(node.right)
        return left + right if isinstance(node.op, ast.Add) else left * right
    raise ValueError(f"unsupported expression in conv_feature_layers: {ast.dump(node)}")


def parse_conv_feature_layers(spec: Union[str, Sequence[Sequence[int]]]) -> List[Tuple[int, int, int]]:
    """fairseq ``conv_feature_layers`` (e.g. ``"[(512, 10, 5)] + [(512, 3, 2)] * 4"``) ->
    ``[(dim, kernel, stride), ...]``. Parsed without ``eval`` (literals, ``+`` and ``*`` only)."""
    value = _safe_eval(ast.parse(spec, mode="eval")) if isinstance(spec, str) else spec
    layers = [tuple(int(v) for v in layer) for layer in value]
    if not layers or any(len(layer) != 3 for layer in layers):
        raise ValueError(f"conv_feature_layers must be a list of (dim, kernel, stride) triples, got {spec!r}")
    return layers  # type: ignore[return-value]


def _cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def _to_plain(cfg: Any) -> Dict[str, Any]:
    if cfg is None:
        return {}
    if isinstance(cfg, Mapping):
        return dict(cfg)
    if isinstance(cfg, argparse.Namespace):
        return dict(vars(cfg))
    if hasattr(cfg, "items"):
        return dict(cfg.items())
    state = getattr(cfg, "__dict__", None)
    if isinstance(state, dict):  # stubbed omegaconf objects etc.
        return {k: v for k, v in state.items() if not k.startswith("_")}
    raise TypeError(f"cannot read a fairseq config from {type(cfg).__name__}")


def extract_model_cfg(checkpoint: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The fairseq model cfg of a checkpoint dict (``cfg["model"]`` or ``args``), or ``None``.

    For fine-tuned CTC checkpoints the cfg of the inner wav2vec 2.0 model
    (``w2v_args``) is returned.
    """
    model_cfg: Optional[Dict[str, Any]] = None
    cfg = checkpoint.get("cfg") if isinstance(checkpoint, Mapping) else None
    if cfg is not None and _cfg_get(cfg, "model") is not None:
        model_cfg = _to_plain(_cfg_get(cfg, "model"))
    elif isinstance(checkpoint, Mapping) and checkpoint.get("args") is not None:
        model_cfg = _to_plain(checkpoint["args"])
    if model_cfg is not None and model_cfg.get("w2v_args") is not None:
        inner = model_cfg["w2v_args"]
        inner_model = _cfg_get(inner, "model")
        model_cfg = _to_plain(inner_model if inner_model is not None else inner)
    if not model_cfg or "encoder_embed_dim" not in model_cfg:
        return None  # unreadable (e.g. a stubbed omegaconf object): infer from the tensors instead
    return model_cfg


def _plain_value(value: Any) -> Any:
    """Enum members (also stubbed ones from unimportable modules) -> their value."""
    if isinstance(value, enum.Enum):
        return value.value
    if getattr(type(value), "_dpda_stub", False):
        args = value.__dict__.get("_stub_args", ())
        if len(args) == 1:
            return args[0]
    return value


def fairseq_cfg_to_hf_config(model_cfg: Mapping[str, Any], **overrides: Any):
    """fairseq wav2vec 2.0 model cfg -> ``transformers.Wav2Vec2Config`` (missing fields: XLS-R 300M values).

    Mapping: ``encoder_layers -> num_hidden_layers``, ``encoder_embed_dim ->
    hidden_size``, ``encoder_ffn_embed_dim -> intermediate_size``,
    ``encoder_attention_heads -> num_attention_heads``, ``activation_fn ->
    hidden_act``, ``layer_norm_first -> do_stable_layer_norm``,
    ``extractor_mode`` ("layer_norm" -> "layer", "default" -> "group"),
    ``conv_feature_layers -> conv_dim/conv_kernel/conv_stride``, ``conv_bias``,
    ``conv_pos -> num_conv_pos_embeddings``, ``conv_pos_groups ->
    num_conv_pos_embedding_groups``, ``dropout -> hidden_dropout``,
    ``attention_dropout``, ``activation_dropout``, ``dropout_input ->
    feat_proj_dropout``, ``encoder_layerdrop -> layerdrop``. Spec-augment is
    disabled (``apply_spec_augment=False``). ``overrides`` win.
    """
    from transformers import Wav2Vec2Config

    c = dict(XLSR_300M_FAIRSEQ_CFG)
    c.update({k: _plain_value(v) for k, v in dict(model_cfg).items() if v is not None})
    conv = parse_conv_feature_layers(c["conv_feature_layers"])
    mode = str(c["extractor_mode"])
    if mode not in ("layer_norm", "default"):
        raise ValueError(f"unsupported fairseq extractor_mode {mode!r}")
    kwargs: Dict[str, Any] = dict(
        hidden_size=int(c["encoder_embed_dim"]),
        num_hidden_layers=int(c["encoder_layers"]),
        num_attention_heads=int(c["encoder_attention_heads"]),
        intermediate_size=int(c["encoder_ffn_embed_dim"]),
        hidden_act=str(c["activation_fn"]),
        conv_dim=tuple(layer[0] for layer in conv),
        conv_kernel=tuple(layer[1] for layer in conv),
        conv_stride=tuple(layer[2] for layer in conv),
        conv_bias=bool(c["conv_bias"]),
        feat_extract_norm="layer" if mode == "layer_norm" else "group",
        feat_extract_activation="gelu",
        do_stable_layer_norm=bool(c["layer_norm_first"]),
        num_conv_pos_embeddings=int(c["conv_pos"]),
        num_conv_pos_embedding_groups=int(c["conv_pos_groups"]),
        layer_norm_eps=1e-5,
        hidden_dropout=float(c["dropout"]),
        attention_dropout=float(c["attention_dropout"]),
        activation_dropout=float(c["activation_dropout"]),
        feat_proj_dropout=float(c["dropout_input"]),
        layerdrop=float(c["encoder_layerdrop"]),
        apply_spec_augment=False,
        mask_time_prob=0.05,
        mask_feature_prob=0.0,
    )
    kwargs.update(overrides)
    return Wav2Vec2Config(**kwargs)


def infer_fairseq_model_cfg(state: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """Best-effort fairseq model cfg from a bare state dict (no ``cfg``/``args``).

    Dimensions, layer counts, kernels and groups are read from tensor shapes;
    what shapes cannot tell (conv strides, attention heads, ``layer_norm_first``)
    falls back to XLS-R conventions: strides ``(5, 2, 2, ...)``, heads =
    ``embed_dim // 64``, ``layer_norm_first = (extractor_mode == "layer_norm")``.
    """
    state = _strip_known_prefixes(state)
    conv_idx = sorted(
        {int(m.group(1)) for k in state if (m := re.match(r"feature_extractor\.conv_layers\.(\d+)\.0\.weight$", k))}
    )
    if not conv_idx:
        raise KeyError("no feature_extractor.conv_layers.N.0.weight keys: not a fairseq wav2vec 2.0 state dict")
    conv = []
    for i in conv_idx:
        w = state[f"feature_extractor.conv_layers.{i}.0.weight"]
        conv.append((int(w.shape[0]), int(w.shape[2]), 5 if i == 0 else 2))
    layer_mode = any(re.match(r"feature_extractor\.conv_layers\.1\.2", k) for k in state) or any(
        k.startswith("feature_extractor.conv_layers.0.2.1.") for k in state
    )
    layers = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.layers\.(\d+)\.", k))}
    dim = int(state["post_extract_proj.weight"].shape[0]) if "post_extract_proj.weight" in state else conv[-1][0]
    ffn = int(state["encoder.layers.0.fc1.weight"].shape[0]) if "encoder.layers.0.fc1.weight" in state else 4 * dim
    pos_v = None
    for name in (
        "encoder.pos_conv.0.weight_v",
        "encoder.pos_conv.0.parametrizations.weight.original1",
        "encoder.pos_conv.0.weight",
    ):
        if name in state:
            pos_v = state[name]
            break
    cfg = dict(XLSR_300M_FAIRSEQ_CFG)
    cfg.update(
        encoder_layers=len(layers),
        encoder_embed_dim=dim,
        encoder_ffn_embed_dim=ffn,
        encoder_attention_heads=max(dim // 64, 1),
        extractor_mode="layer_norm" if layer_mode else "default",
        layer_norm_first=bool(layer_mode),
        conv_feature_layers=repr(conv),
        conv_bias="feature_extractor.conv_layers.0.0.bias" in state,
    )
    if pos_v is not None:
        cfg.update(conv_pos=int(pos_v.shape[2]), conv_pos_groups=max(dim // int(pos_v.shape[1]), 1))
    return cfg


# --------------------------------------------------------------------------- loading


def _make_stub(module: str, name: str) -> type:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_stub_args"] = args
        self.__dict__.update(kwargs)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_stub_state"] = state

    def __reduce_ex__(self, protocol: int) -> Any:  # pragma: no cover - stubs are not re-pickled
        raise pickle.PicklingError(f"stub for {module}.{name} cannot be pickled")

    cls = type(
        name,
        (),
        {"__init__": __init__, "__setstate__": __setstate__, "__reduce_ex__": __reduce_ex__, "_dpda_stub": True},
    )
    cls.__module__ = f"<stub {module}>"
    cls.__qualname__ = name
    return cls


class _StubbingUnpickler(pickle.Unpickler):
    """Unpickler that replaces classes of modules that cannot be imported by inert stubs."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return _make_stub(module, name)


_stubbing_pickle = types.ModuleType("dpda_stubbing_pickle")
_stubbing_pickle.Unpickler = _StubbingUnpickler  # type: ignore[attr-defined]
_stubbing_pickle.load = pickle.load  # type: ignore[attr-defined]
_stubbing_pickle.__name__ = "dpda_stubbing_pickle"


def load_fairseq_checkpoint(path: PathLike, trust_pickle: bool = False) -> Dict[str, Any]:
    """Load a fairseq checkpoint (or plain state dict) from ``path`` on the CPU, without fairseq.

    Tries ``torch.load(weights_only=True)`` (with ``argparse.Namespace``
    allow-listed) first. fairseq checkpoints usually also hold other pickled
    objects; then ``trust_pickle=True`` is required and the file is loaded with
    ``weights_only=False``, **which runs code from the pickle** -- only for
    trusted files. Unimportable classes become stubs. Returns the loaded dict.
    """
    path = str(path)
    try:
        safe = getattr(torch.serialization, "safe_globals", None)
        if safe is not None:
            with safe([argparse.Namespace]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        else:  # pragma: no cover - torch < 2.5
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        if not trust_pickle:
            raise RuntimeError(
                f"{path} cannot be loaded with torch.load(weights_only=True) ({type(err).__name__}: {err}). "
                "fairseq checkpoints contain pickled Python objects; loading them needs weights_only=False, "
                "which executes code from the file. If you trust it, pass trust_pickle=True."
            ) from err
        warnings.warn(
            f"loading {path} with torch.load(weights_only=False): this executes pickled code from the file; "
            "only do this for checkpoints from a trusted source",
            stacklevel=2,
        )
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_stubbing_pickle)
    if not isinstance(obj, dict):
        raise TypeError(f"{path}: expected a checkpoint dict or state dict, got {type(obj).__name__}")
    return obj


def extract_state_dict(checkpoint: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """The model state dict of a checkpoint: ``checkpoint["model"]`` (fairseq),
    ``["state_dict"]``/``["model_state_dict"]``, or the mapping itself if all values are tensors."""
    for key in ("model", "state_dict", "model_state_dict"):
        inner = checkpoint.get(key) if isinstance(checkpoint, Mapping) else None
        if isinstance(inner, Mapping) and inner and all(torch.is_tensor(v) for v in inner.values()):
            return dict(inner)
    if all(torch.is_tensor(v) for v in checkpoint.values()):
        return dict(checkpoint)
    raise KeyError("no state dict found (expected a 'model' entry or a mapping of tensors)")


# --------------------------------------------------------------------------- key mapping

#: sentinel returned by :func:`fairseq_key_to_hf` for parameters that are dropped
DROP = "<drop>"

_RULES: List[Tuple[re.Pattern, str]] = [
    (re.compile(r"^mask_emb$"), "masked_spec_embed"),
    (
        re.compile(r"^feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)$"),
        r"feature_extractor.conv_layers.\1.conv.\2",
    ),
    (
        re.compile(r"^feature_extractor\.conv_layers\.(\d+)\.2(?:\.1)?\.(weight|bias)$"),
        r"feature_extractor.conv_layers.\1.layer_norm.\2",
    ),
    (re.compile(r"^layer_norm\.(weight|bias)$"), r"feature_projection.layer_norm.\1"),
    (re.compile(r"^post_extract_proj\.(weight|bias)$"), r"feature_projection.projection.\1"),
    (re.compile(r"^encoder\.pos_conv\.0\.bias$"), "encoder.pos_conv_embed.conv.bias"),
    (re.compile(r"^encoder\.pos_conv\.0\.(?:weight_g|parametrizations\.weight\.original0)$"), "<pos_g>"),
    (re.compile(r"^encoder\.pos_conv\.0\.(?:weight_v|parametrizations\.weight\.original1)$"), "<pos_v>"),
    (re.compile(r"^encoder\.pos_conv\.0\.weight$"), "<pos_w>"),
    (
        re.compile(r"^encoder\.layers\.(\d+)\.self_attn\.(k|q|v|out)_proj\.(weight|bias)$"),
        r"encoder.layers.\1.attention.\2_proj.\3",
    ),
    (re.compile(r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)$"), r"encoder.layers.\1.layer_norm.\2"),
    (
        re.compile(r"^encoder\.layers\.(\d+)\.fc1\.(weight|bias)$"),
        r"encoder.layers.\1.feed_forward.intermediate_dense.\2",
    ),
    (re.compile(r"^encoder\.layers\.(\d+)\.fc2\.(weight|bias)$"), r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (
        re.compile(r"^encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)$"),
        r"encoder.layers.\1.final_layer_norm.\2",
    ),
    (re.compile(r"^encoder\.layer_norm\.(weight|bias)$"), r"encoder.layer_norm.\1"),
]


def default_weight_norm_style() -> str:
    """``"parametrizations"`` when HF builds the positional conv with
    ``torch.nn.utils.parametrizations.weight_norm`` (torch >= 2.1), else ``"weight_norm"``."""
    return "parametrizations" if hasattr(nn.utils.parametrizations, "weight_norm") else "weight_norm"


def _pos_names(style: str) -> Tuple[str, str]:
    base = "encoder.pos_conv_embed.conv."
    if style == "parametrizations":
        return base + "parametrizations.weight.original0", base + "parametrizations.weight.original1"
    if style == "weight_norm":
        return base + "weight_g", base + "weight_v"
    raise ValueError(f"unknown weight-norm style {style!r}")


def fairseq_key_to_hf(key: str, weight_norm_style: Optional[str] = None) -> Optional[str]:
    """HF name for one fairseq key, :data:`DROP` for dropped keys, ``None`` if unknown.

    A plain ``encoder.pos_conv.0.weight`` maps to ``"<pos_w>"`` (it is split
    into magnitude and direction by :func:`convert_fairseq_state_dict`).
    """
    key = key.removeprefix(_CTC_PREFIX)
    if key.startswith(DROPPED_PREFIXES):
        return DROP
    g_name, v_name = _pos_names(weight_norm_style or default_weight_norm_style())
    for pattern, repl in _RULES:
        if pattern.match(key):
            out = pattern.sub(repl, key)
            return {"<pos_g>": g_name, "<pos_v>": v_name}.get(out, out)
    return None


@dataclass
class ConversionReport:
    """What happened to every source key."""

    mapped: Dict[str, str] = field(default_factory=dict)  #: source key -> HF key
    dropped: List[str] = field(default_factory=list)  #: source keys without an HF counterpart
    unmapped: List[str] = field(default_factory=list)  #: unknown source keys (an error in strict mode)
    other: Dict[str, torch.Tensor] = field(default_factory=dict)  #: non-SSL keys (SSL-AASIST back-end)

    def summary(self) -> str:
        return f"{len(self.mapped)} mapped, {len(self.dropped)} dropped, {len(self.unmapped)} unmapped"


def _strip_known_prefixes(state: Mapping[str, Any]) -> Dict[str, Any]:
    if state and all(k.startswith("module.") for k in state):  # DataParallel / DDP
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def convert_fairseq_state_dict(
    state: Mapping[str, torch.Tensor],
    weight_norm_style: Optional[str] = None,
    strict: bool = True,
    drop_mask_emb: bool = False,
) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """Rename a fairseq wav2vec 2.0 state dict to ``transformers.Wav2Vec2Model`` names.

    Args:
        state: fairseq parameter names -> tensors (``module.`` and
            ``w2v_encoder.w2v_model.`` prefixes are accepted).
        weight_norm_style: naming of the target positional-conv weight norm
            (default: what the installed torch/transformers use).
        strict: raise ``KeyError`` if any key is neither mapped nor dropped.
        drop_mask_emb: drop ``mask_emb`` (for HF configs without ``masked_spec_embed``).

    Returns ``(hf_state_dict, report)``; tensors are shared, not copied.
    """
    style = weight_norm_style or default_weight_norm_style()
    g_name, v_name = _pos_names(style)
    report = ConversionReport()
    out: Dict[str, torch.Tensor] = {}
    for key, value in _strip_known_prefixes(state).items():
        target = fairseq_key_to_hf(key, style)
        if target is None:
            report.unmapped.append(key)
            continue
        if target == DROP or (drop_mask_emb and target == "masked_spec_embed"):
            report.dropped.append(key)
            continue
        if target == "<pos_w>":
            # un-normalised conv weight: weight norm over dim 2 -> g = ||w|| over dims (0, 1)
            out[g_name] = torch.linalg.vector_norm(value.float(), dim=(0, 1), keepdim=True).to(value.dtype)
            out[v_name] = value
            report.mapped[key] = f"{g_name} + {v_name}"
            continue
        if target in out:
            raise KeyError(f"two source keys map to {target!r} (second: {key!r})")
        out[target] = value
        report.mapped[key] = target
    if strict and report.unmapped:
        raise KeyError(f"{len(report.unmapped)} fairseq keys have no Wav2Vec2Model counterpart: {report.unmapped[:10]}")
    return out, report


def convert_fairseq_checkpoint(
    source: Union[PathLike, Mapping[str, Any]],
    trust_pickle: bool = False,
    weight_norm_style: Optional[str] = None,
    strict: bool = True,
    **config_overrides: Any,
):
    """fairseq checkpoint (path or loaded dict, or a plain state dict) ->
    ``(Wav2Vec2Config, hf_state_dict, ConversionReport)``.

    The config comes from ``cfg["model"]``/``args`` or, for a bare state dict,
    from :func:`infer_fairseq_model_cfg`. Build the model with
    ``Wav2Vec2Model(config)`` and ``load_state_dict(hf_state, strict=True)``.
    """
    ckpt = load_fairseq_checkpoint(source, trust_pickle) if isinstance(source, (str, Path)) else source
    state = extract_state_dict(ckpt)
    model_cfg = extract_model_cfg(ckpt) if ckpt is not state else None
    if model_cfg is None:
        model_cfg = infer_fairseq_model_cfg(state)
    config = fairseq_cfg_to_hf_config(model_cfg, **config_overrides)
    keep_mask = config.mask_time_prob > 0 or config.mask_feature_prob > 0
    hf_state, report = convert_fairseq_state_dict(state, weight_norm_style, strict, drop_mask_emb=not keep_mask)
    return config, hf_state, report


def convert_ssl_aasist_checkpoint(
    state_dict: Mapping[str, torch.Tensor],
    ssl_prefix: str = "ssl_model.model.",
    weight_norm_style: Optional[str] = None,
    strict: bool = True,
    drop_mask_emb: bool = False,
) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor], ConversionReport]:
    """Split an SSL-AASIST / DPDA checkpoint into ``(hf_ssl_state, backend_state, report)``.

    Those models keep the fairseq ``Wav2Vec2Model`` at ``ssl_model.model`` and
    their back-end at the top level (``LL``, ``first_bn``, ``encoder``,
    ``attention``, ``pos_S``, ``GAT_layer_S``, ..., ``out_layer`` for
    SSL-AASIST). Keys under ``ssl_prefix`` are converted with
    :func:`convert_fairseq_state_dict`; all other keys are returned unchanged
    in ``backend_state`` (``module.`` prefixes are stripped first).
    """
    state = _strip_known_prefixes(state_dict)
    ssl_part = {k[len(ssl_prefix) :]: v for k, v in state.items() if k.startswith(ssl_prefix)}
    if not ssl_part:
        raise KeyError(f"no keys start with {ssl_prefix!r}; not an SSL-AASIST-style checkpoint")
    backend = {k: v for k, v in state.items() if not k.startswith(ssl_prefix)}
    hf_state, report = convert_fairseq_state_dict(ssl_part, weight_norm_style, strict, drop_mask_emb)
    report.other = backend
    return hf_state, backend, report
