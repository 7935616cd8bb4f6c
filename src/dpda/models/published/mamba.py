"""XLSR-Mamba / DPDA-GA ``--model mamba`` checkpoints -> :class:`~dpda.models.mamba.BiMambaBackend`.

The original back-end (swagshaw/XLSR-Mamba ``model.py:Model``; byte-identical
``mamba_blocks.py`` in ductuantruong/dpda_ga ``nets/mamba.py``) is

* ``LL`` (Linear 1024 -> 144), ``first_bn`` (BatchNorm2d(1)), SELU;
* ``conformer`` -- a ``MixerModel`` (the attribute keeps the name of the
  Conformer model it replaced) holding ``forward_layers.{i}`` and
  ``backward_layers.{i}`` (mamba_ssm 1.1.4 ``Block``: ``norm`` (RMSNorm) and
  ``mixer`` (``Mamba``)), one ``norm_f`` shared by both columns,
  ``f_attention_pool`` / ``b_attention_pool`` (Linear(144, 1)), ``LL``
  (Linear 288 -> 144) and ``classifier`` (Linear 144 -> 2).

Every tensor keeps its layout; only the names change:

==========================================  ============================================
original                                    dpda ``model.backend``
==========================================  ============================================
``LL.*``                                    ``proj.*``
``first_bn.*``                              ``first_bn.*``
``conformer.forward_layers.{i}.*``          ``forward_column.layers.{i}.*``
``conformer.backward_layers.{i}.*``         ``backward_column.layers.{i}.*``
``conformer.norm_f.weight``                 ``norm_f.weight`` (``shared_final_norm=True``)
``conformer.f_attention_pool.*``            ``pool_forward.score.*``
``conformer.b_attention_pool.*``            ``pool_backward.score.*``
``conformer.LL.*``                          ``fusion.*``
``conformer.classifier.*``                  ``classifier.*``
==========================================  ============================================

Inside a block the names are mamba_ssm's (``norm.weight``, ``mixer.A_log``,
``mixer.D``, ``mixer.in_proj.weight``, ``mixer.conv1d.{weight,bias}``,
``mixer.x_proj.weight``, ``mixer.dt_proj.{weight,bias}``,
``mixer.out_proj.weight``), which :class:`~dpda.models.mamba.MambaBlock` uses
too. :data:`MODEL_CONFIG` switches on the original's quirks (shared final
norm, the final add+norm on the back-end input, input dropout); see
:mod:`dpda.models.mamba`.
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Tuple

import torch

from dpda.audio.crop import AASIST_NUM_SAMPLES, DPDA_NUM_SAMPLES

from . import PublishedFormat, check_layout, register_format

__all__ = ["MODEL_CONFIG", "make_map_backend", "map_backend", "original_key_map", "original_shapes"]

#: the original hyper-parameters (XLSR-Mamba main.py: --emb-size 144 --num_encoders 12 -> 6 blocks per direction)
_DIMS = dict(in_dim=1024, d_model=144, n_layers=6, d_state=16, d_conv=4, expand=2)

#: ``build_model("xlsr_mamba", **MODEL_CONFIG)`` (and ``BiMambaBackend(**MODEL_CONFIG)``) reproduce the original
MODEL_CONFIG: Dict[str, object] = dict(
    d_model=_DIMS["d_model"],
    n_layers=_DIMS["n_layers"],
    d_state=_DIMS["d_state"],
    d_conv=_DIMS["d_conv"],
    expand=_DIMS["expand"],
    dt_rank=math.ceil(_DIMS["d_model"] / 16),
    norm_eps=1e-5,
    residual_in_fp32=True,
    shared_final_norm=True,
    final_residual="input",
    dropout=0.1,
    input_dropout=0.1,
)

_BLOCK_PARAMS = (
    "mixer.A_log",
    "mixer.D",
    "mixer.in_proj.weight",
    "mixer.conv1d.weight",
    "mixer.conv1d.bias",
    "mixer.x_proj.weight",
    "mixer.dt_proj.weight",
    "mixer.dt_proj.bias",
    "mixer.out_proj.weight",
    "norm.weight",
)


def _block_shapes(d_model: int, d_state: int, d_conv: int, d_inner: int, dt_rank: int) -> Dict[str, Tuple[int, ...]]:
    return {
        "mixer.A_log": (d_inner, d_state),
        "mixer.D": (d_inner,),
        "mixer.in_proj.weight": (2 * d_inner, d_model),
        "mixer.conv1d.weight": (d_inner, 1, d_conv),
        "mixer.conv1d.bias": (d_inner,),
        "mixer.x_proj.weight": (dt_rank + 2 * d_state, d_inner),
        "mixer.dt_proj.weight": (d_inner, dt_rank),
        "mixer.dt_proj.bias": (d_inner,),
        "mixer.out_proj.weight": (d_model, d_inner),
        "norm.weight": (d_model,),
    }


def original_shapes(
    in_dim: int = 1024,
    d_model: int = 144,
    n_layers: int = 6,
    d_state: int = 16,
    d_conv: int = 4,
    expand: int = 2,
) -> Dict[str, Tuple[int, ...]]:
    """Every original back-end key with its shape, in the original state-dict order."""
    d_inner = expand * d_model
    dt_rank = math.ceil(d_model / 16)
    shapes: Dict[str, Tuple[int, ...]] = {
        "LL.weight": (d_model, in_dim),
        "LL.bias": (d_model,),
        "first_bn.weight": (1,),
        "first_bn.bias": (1,),
        "first_bn.running_mean": (1,),
        "first_bn.running_var": (1,),
        "first_bn.num_batches_tracked": (),
    }
    block = _block_shapes(d_model, d_state, d_conv, d_inner, dt_rank)
    for column in ("forward_layers", "backward_layers"):
        for i in range(n_layers):
            for name in _BLOCK_PARAMS:
                shapes[f"conformer.{column}.{i}.{name}"] = block[name]
    shapes.update(
        {
            "conformer.norm_f.weight": (d_model,),
            "conformer.f_attention_pool.weight": (1, d_model),
            "conformer.f_attention_pool.bias": (1,),
            "conformer.b_attention_pool.weight": (1, d_model),
            "conformer.b_attention_pool.bias": (1,),
            "conformer.LL.weight": (d_model, 2 * d_model),
            "conformer.LL.bias": (d_model,),
            "conformer.classifier.weight": (2, d_model),
            "conformer.classifier.bias": (2,),
        }
    )
    return shapes


_TOP_LEVEL = {
    "LL.": "proj.",
    "first_bn.": "first_bn.",
    "conformer.forward_layers.": "forward_column.layers.",
    "conformer.backward_layers.": "backward_column.layers.",
    "conformer.norm_f.": "norm_f.",
    "conformer.f_attention_pool.": "pool_forward.score.",
    "conformer.b_attention_pool.": "pool_backward.score.",
    "conformer.LL.": "fusion.",
    "conformer.classifier.": "classifier.",
}


def _rename(key: str) -> str:
    for old, new in _TOP_LEVEL.items():
        if key.startswith(old):
            return new + key[len(old) :]
    raise KeyError(key)  # pragma: no cover - only called on keys of original_shapes


def original_key_map(n_layers: int = 6) -> Dict[str, str]:
    """Original key -> ``BiMambaBackend`` key (with :data:`MODEL_CONFIG`), in the original order."""
    return {k: _rename(k) for k in original_shapes(n_layers=n_layers)}


def make_map_backend(**dims: int):
    """A strict mapper for an original back-end of the given dimensions (see :func:`original_shapes`)."""
    expected = original_shapes(**dims)

    def _map(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        check_layout(state, expected, "XLSR-Mamba back-end")
        return {_rename(k): state[k] for k in expected}

    return _map


#: the mapper for the released checkpoints (144-dim, 6 blocks per direction, 1024-dim XLS-R features)
map_backend = make_map_backend(**_DIMS)

register_format(
    PublishedFormat(
        name="xlsr_mamba",
        architecture="xlsr_mamba",
        repos=("swagshaw/XLSR-Mamba",),
        crop_samples=AASIST_NUM_SAMPLES,
        map_backend=map_backend,
        model_config=dict(MODEL_CONFIG),
        notes="XLSR-Mamba (Xiao & Das, SPL 2025): XLS-R + dual-column bidirectional Mamba, 2x6 blocks, dim 144",
    )
)

register_format(
    PublishedFormat(
        name="dpda_ga-mamba",
        architecture="xlsr_mamba",
        repos=("ductuantruong/dpda_ga",),
        crop_samples=DPDA_NUM_SAMPLES,
        map_backend=map_backend,
        model_config=dict(MODEL_CONFIG),
        notes="DPDA paper code (dpda_ga main.py --model mamba): the XLSR-Mamba back-end, same keys",
    )
)
