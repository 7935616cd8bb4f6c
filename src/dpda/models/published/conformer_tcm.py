"""XLS-R + Conformer-TCM checkpoints of tcm_add and of the DPDA paper code.

``ductuantruong/tcm_add`` (``model.py:Model``: ``LL``, ``first_bn``, ``conformer`` =
``MyConformer`` with ``conformer.py:ConformerBlock``) and ``ductuantruong/dpda_ga``
(``main.py --model conformer_tcm``, ``nets/conformer_tcm.py``) save the same
back-end keys; :func:`map_backend` renames them onto
:class:`~dpda.models.conformer.ConformerTCMBackend`, whose defaults compute what
the original computes (:data:`MODEL_CONFIG` spells the options out).

Key table (``{i}`` = block index, ``{n}`` = 1 or 2)::

    LL.{weight,bias}                                    proj.*
    first_bn.{weight,bias,running_*,num_batches_tracked} first_bn.*
    conformer.positional_emb          (1, R, d)         pos_emb            (buffer, same shape)
    conformer.class_token             (1, d)            cls_token          (1, 1, d)  reshaped
    conformer.fc5.*                                     classifier.*
    conformer.encoder_blocks.{i}.
        ff{n}.fn.norm.*                                 blocks.{i}.ff{n}.net.0.*
        ff{n}.fn.fn.net.0.*                             blocks.{i}.ff{n}.net.1.*
        ff{n}.fn.fn.net.3.*                             blocks.{i}.ff{n}.net.4.*
        attn.norm.*                                     blocks.{i}.attn_norm.*
        attn.fn.qkv.weight                              blocks.{i}.attn.qkv.weight
        attn.fn.proj.*                                  blocks.{i}.attn.out.*
        attn.fn.ht_proj.*                               blocks.{i}.attn.head_token_proj.*
        attn.fn.ht_norm.*                               blocks.{i}.attn.head_token_norm.*
        attn.fn.pos_embed             (1, H, d)         blocks.{i}.attn.head_embed
        conv.net.0.*                  LayerNorm         blocks.{i}.conv.norm.*
        conv.net.2.*                  Conv1d(d, 4d, 1)  blocks.{i}.conv.pointwise1.*
        conv.net.4.conv.*             depthwise         blocks.{i}.conv.depthwise.*
        conv.net.5.*                  BatchNorm1d(2d)   blocks.{i}.conv.bn.*
        conv.net.7.*                  Conv1d(2d, d, 1)  blocks.{i}.conv.pointwise2.*
        post_norm.*                                     blocks.{i}.norm.*

The qkv layout (rows ``[q; k; v]``, each ``[head 0 | head 1 | ...]``) and the
convolution weights have the same layout on both sides.

:func:`map_backend` is strict: an unknown key, a missing key or a shape that
disagrees with the hyper-parameters the other keys imply raises, naming the
original keys.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from dpda.audio.crop import DPDA_NUM_SAMPLES

from . import PublishedFormat, register_format

__all__ = ["MODEL_CONFIG", "infer_hparams", "map_backend"]

#: ``build_model("xlsr_conformer_tcm", **MODEL_CONFIG)`` is the original back-end (main.py defaults
#: ``--emb-size 144 --heads 4 --kernel_size 31 --num_encoders 4``; every dropout of the original is 0)
MODEL_CONFIG: Dict[str, Any] = dict(
    dim=144,
    n_blocks=4,
    heads=4,
    ff_mult=4,
    kernel_size=31,
    conv_expansion=2,
    qkv_bias=False,
    tcm=True,
    tcm_style="tcm_add",
    pos_emb_rows=10000,
    num_classes=2,
    dropout=0.0,
    attn_dropout=0.0,
)

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_WB = ("weight", "bias")

# hyper-parameter names used in the shape templates below
#   in_dim, d (model width), C (classes), R (positional rows), H (heads), dh (head width),
#   f (FFN width), e (conv inner width), k (depthwise kernel)
Shape = Tuple[Any, ...]

# top-level keys: original name -> (dpda name, shape template, dpda shape template or None if equal)
_TOP: Dict[str, Tuple[str, Shape, Optional[Shape]]] = {
    "LL.weight": ("proj.weight", ("d", "in_dim"), None),
    "LL.bias": ("proj.bias", ("d",), None),
    **{f"first_bn.{p}": (f"first_bn.{p}", () if p == "num_batches_tracked" else (1,), None) for p in _BN},
    "conformer.positional_emb": ("pos_emb", (1, "R", "d"), None),
    "conformer.class_token": ("cls_token", (1, "d"), (1, 1, "d")),
    "conformer.fc5.weight": ("classifier.weight", ("C", "d"), None),
    "conformer.fc5.bias": ("classifier.bias", ("C",), None),
}

# per-block keys: suffix after "conformer.encoder_blocks.{i}." -> (suffix after "blocks.{i}.", shape template)
_BLOCK: Dict[str, Tuple[str, Shape]] = {}
for _n in ("1", "2"):
    _BLOCK.update(
        {
            f"ff{_n}.fn.norm.weight": (f"ff{_n}.net.0.weight", ("d",)),
            f"ff{_n}.fn.norm.bias": (f"ff{_n}.net.0.bias", ("d",)),
            f"ff{_n}.fn.fn.net.0.weight": (f"ff{_n}.net.1.weight", ("f", "d")),
            f"ff{_n}.fn.fn.net.0.bias": (f"ff{_n}.net.1.bias", ("f",)),
            f"ff{_n}.fn.fn.net.3.weight": (f"ff{_n}.net.4.weight", ("d", "f")),
            f"ff{_n}.fn.fn.net.3.bias": (f"ff{_n}.net.4.bias", ("d",)),
        }
    )
_BLOCK.update(
    {
        "attn.norm.weight": ("attn_norm.weight", ("d",)),
        "attn.norm.bias": ("attn_norm.bias", ("d",)),
        "attn.fn.pos_embed": ("attn.head_embed", (1, "H", "d")),
        "attn.fn.qkv.weight": ("attn.qkv.weight", ("3d", "d")),
        "attn.fn.proj.weight": ("attn.out.weight", ("d", "d")),
        "attn.fn.proj.bias": ("attn.out.bias", ("d",)),
        "attn.fn.ht_proj.weight": ("attn.head_token_proj.weight", ("d", "dh")),
        "attn.fn.ht_proj.bias": ("attn.head_token_proj.bias", ("d",)),
        "attn.fn.ht_norm.weight": ("attn.head_token_norm.weight", ("dh",)),
        "attn.fn.ht_norm.bias": ("attn.head_token_norm.bias", ("dh",)),
        "conv.net.0.weight": ("conv.norm.weight", ("d",)),
        "conv.net.0.bias": ("conv.norm.bias", ("d",)),
        "conv.net.2.weight": ("conv.pointwise1.weight", ("2e", "d", 1)),
        "conv.net.2.bias": ("conv.pointwise1.bias", ("2e",)),
        "conv.net.4.conv.weight": ("conv.depthwise.weight", ("e", 1, "k")),
        "conv.net.4.conv.bias": ("conv.depthwise.bias", ("e",)),
        **{f"conv.net.5.{p}": (f"conv.bn.{p}", () if p == "num_batches_tracked" else ("e",)) for p in _BN},
        "conv.net.7.weight": ("conv.pointwise2.weight", ("d", "e", 1)),
        "conv.net.7.bias": ("conv.pointwise2.bias", ("d",)),
        "post_norm.weight": ("norm.weight", ("d",)),
        "post_norm.bias": ("norm.bias", ("d",)),
    }
)

_BLOCK_KEY = re.compile(r"^conformer\.encoder_blocks\.(\d+)\.(.+)$")
_SHOW = 5  # offending keys named in an error message


def _first(keys: Sequence[str]) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def _split(state: Mapping[str, torch.Tensor]) -> Tuple[Dict[str, Tuple[Optional[int], str]], List[str]]:
    """Original key -> (block index or None, table key); plus the keys no table row matches."""
    known: Dict[str, Tuple[Optional[int], str]] = {}
    unknown: List[str] = []
    for key in state:
        m = _BLOCK_KEY.match(key)
        if key in _TOP:
            known[key] = (None, key)
        elif m and m.group(2) in _BLOCK:
            known[key] = (int(m.group(1)), m.group(2))
        else:
            unknown.append(key)
    return known, unknown


def _resolve(template: Shape, hp: Mapping[str, int]) -> Tuple[int, ...]:
    out = []
    for t in template:
        if isinstance(t, int):
            out.append(t)
        elif t[0].isdigit():  # "3d", "2e"
            out.append(int(t[0]) * hp[t[1:]])
        else:
            out.append(hp[t])
    return tuple(out)


def _template(where: Tuple[Optional[int], str]) -> Shape:
    block, name = where
    return _TOP[name][1] if block is None else _BLOCK[name][1]


def infer_hparams(state: Mapping[str, torch.Tensor]) -> Dict[str, int]:
    """Hyper-parameters an original back-end state dict implies (``in_dim, d, C, R, H, dh, f, e, k,
    n_blocks``), each the value most keys agree on, so that one corrupted key is outvoted."""
    known, _ = _split(state)
    votes: Dict[str, Counter] = {}
    for key, where in known.items():
        shape = tuple(state[key].shape)
        template = _template(where)
        if len(shape) != len(template):
            continue
        for t, s in zip(template, shape):
            if isinstance(t, int):
                continue
            if t[0].isdigit():
                factor, t = int(t[0]), t[1:]
                if s % factor:
                    continue
                s //= factor
            votes.setdefault(t, Counter())[s] += 1
    hp = {name: c.most_common(1)[0][0] for name, c in votes.items()}
    blocks = {where[0] for where in known.values() if where[0] is not None}
    hp["n_blocks"] = max(blocks) + 1 if blocks else 0
    return hp


def map_backend(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Original tcm_add / dpda_ga back-end state dict -> ``ConformerTCMBackend`` state dict.

    Raises ``KeyError`` naming the first unknown or missing original keys, and
    ``ValueError`` naming the keys whose shapes disagree with the others.
    """
    known, unknown = _split(state)
    if unknown:
        raise KeyError(f"unknown Conformer-TCM back-end keys: {_first(unknown)}")
    hp = infer_hparams(state)
    expected = set(_TOP) | {
        f"conformer.encoder_blocks.{i}.{name}" for i in range(hp["n_blocks"]) for name in _BLOCK
    }
    missing = expected - set(state)
    if missing:
        raise KeyError(f"missing Conformer-TCM back-end keys: {_first(list(missing))}")
    bad = []
    for key, where in known.items():
        try:
            want = _resolve(_template(where), hp)
        except KeyError:  # a hyper-parameter no key voted for
            want = None
        if tuple(state[key].shape) != want:
            bad.append(f"{key} {tuple(state[key].shape)} (expected {want})")
    if hp.get("H", 0) * hp.get("dh", 0) != hp.get("d", -1):
        bad.append(f"heads {hp.get('H')} x head width {hp.get('dh')} != width {hp.get('d')} (conformer.*.attn.fn.*)")
    if bad:
        raise ValueError(f"Conformer-TCM back-end shapes disagree: {_first(bad)}")
    out: Dict[str, torch.Tensor] = {}
    for key, (block, name) in known.items():
        tensor = state[key]
        if block is None:
            target, _, reshape = _TOP[name]
            if reshape is not None:
                tensor = tensor.reshape(_resolve(reshape, hp))
        else:
            target = f"blocks.{block}.{_BLOCK[name][0]}"
        out[target] = tensor
    return out


_NOTE = "XLS-R + Conformer-TCM (4 blocks, d 144, 4 heads, k 31, head tokens)"

register_format(
    PublishedFormat(
        name="dpda_ga-conformer_tcm",
        architecture="xlsr_conformer_tcm",
        repos=("ductuantruong/dpda_ga",),
        crop_samples=DPDA_NUM_SAMPLES,
        map_backend=map_backend,
        model_config=dict(MODEL_CONFIG),
        notes=_NOTE + "; DPDA paper code, main.py --model conformer_tcm",
    )
)
register_format(
    PublishedFormat(
        name="tcm_add",
        architecture="xlsr_conformer_tcm",
        repos=("ductuantruong/tcm_add",),
        crop_samples=DPDA_NUM_SAMPLES,
        map_backend=map_backend,
        model_config=dict(MODEL_CONFIG),
        notes=_NOTE + "; Truong et al., Interspeech 2024",
    )
)
