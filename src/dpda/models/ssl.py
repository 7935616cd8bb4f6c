"""Self-supervised (wav2vec 2.0 / XLS-R) front-end and the three DPDA back-ends.

Registered models (``build_model(name, **config)``):

* ``xlsr_aasist`` -- :class:`XLSRAASIST`, SSL-AASIST (Tak et al., Odyssey 2022):
  XLS-R features -> Linear(1024, 128) -> (B, 1, 128, T') -> max-pool (3, 3) ->
  BatchNorm2d + SELU -> six residual blocks (no pooling; channels 32, 32, 64,
  64, 64, 64) -> BatchNorm2d + SELU -> 1x1-conv attention map -> softmax
  attentive pooling over time (42 spectral nodes) and over frequency (temporal
  nodes) -> the AASIST graph back-end (``pool_ratios`` 0.5, temperatures 2, 2,
  100) -> Linear(160, 2). Parameter names follow the SSL-AASIST code, so its
  checkpoints load with :func:`load_ssl_aasist_checkpoint`.
* ``xlsr_conformer_tcm`` -- :class:`XLSRConformerTCM`: XLS-R -> Linear(1024, 144)
  -> 4 Conformer blocks with TCM attention (4 heads, kernel 31), CLS token ->
  Linear(144, 2). See :mod:`dpda.models.conformer` for exactly what TCM does here.
* ``xlsr_mamba`` -- :class:`XLSRMamba`: XLS-R -> Linear(1024, 144) -> dual-column
  bidirectional Mamba (6 + 6 blocks, d_state 16, expand 2) -> attention pooling
  per direction -> fusion -> Linear(144, 2). See :mod:`dpda.models.mamba`.

All: ``forward(x, return_embedding=False)`` with ``x`` (B, T) float32 16 kHz ->
logits (B, 2), class 1 = bona fide; ``return_embedding=True`` -> ``(logits,
embedding)``.

Common options (keyword arguments of every builder):

``ssl_pretrained``
    ``None`` (random init, config below), a local Hugging Face model directory
    (``Wav2Vec2Model.from_pretrained(path, local_files_only=True)``) or a
    fairseq checkpoint file such as ``xlsr2_300m.pt`` (converted on the fly by
    :mod:`dpda.models.fairseq_convert`; needs ``trust_pickle=True`` when the
    file cannot be loaded with ``weights_only=True`` -- it then executes pickled
    code, so only for trusted files). Nothing is ever downloaded.
``ssl_config``
    ``transformers.Wav2Vec2Config`` or a dict. Without ``ssl_pretrained`` a
    dict overrides :data:`XLSR_300M_HF_CONFIG` (the default, full-size XLS-R
    300M); with ``ssl_pretrained`` it overrides the loaded config (dropouts...).
``ssl_layer``
    ``"last"`` (default, as SSL-AASIST/DPDA: output of the last transformer
    layer after the final layer norm = fairseq ``features_only`` ``x`` = HF
    ``last_hidden_state``), an int ``k`` in ``[0, L]`` (HF ``hidden_states[k]``
    convention: 0 = input of the first transformer layer, ``k < L`` = raw output
    of layer ``k``, ``L`` = ``"last"``; negative values count from the end;
    layers above ``k`` are not run and their parameters -- and the final layer
    norm -- are frozen) or ``"weighted"`` (learned softmax-weighted sum of all
    ``L + 1`` hidden states, weights initialised equal).
``freeze_ssl``
    ``True``: front-end parameters get ``requires_grad=False``, the front-end
    always stays in eval mode and runs under ``no_grad`` (layer weights of
    ``"weighted"`` still train).
``gradient_checkpointing``
    recompute transformer layers in the backward pass (saves memory).

Spec-augment masking is off (fairseq ``mask=False``), so ``masked_spec_embed``
is unused and frozen. Mixed precision: the models run under ``torch.autocast``
(bf16/fp16); the Mamba scan, RMSNorm and pooling softmaxes accumulate in fp32.

Why one file of about 570 lines: the front-end and the three back-ends that share it are one
family (one checkpoint layout, one set of builders); each back-end's own layers live in
:mod:`~dpda.models.aasist`, :mod:`~dpda.models.conformer` and :mod:`~dpda.models.mamba`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from dpda.errors import PathLike

from .aasist import AasistGraphBackend, build_residual_encoder
from .conformer import ConformerTCMBackend
from .fairseq_convert import (
    XLSR_300M_HF_CONFIG,
    convert_fairseq_checkpoint,
    convert_ssl_aasist_checkpoint,
    load_fairseq_checkpoint,
)
from .mamba import BiMambaBackend

__all__ = [
    "XLSRAASIST",
    "XLSR_300M_HF_CONFIG",
    "SSLAASISTBackend",
    "SSLCountermeasure",
    "SSLFrontEnd",
    "XLSRConformerTCM",
    "XLSRMamba",
    "full_size_parameter_counts",
    "load_ssl_aasist_checkpoint",
    "make_wav2vec2_config",
]

LayerSpec = Union[str, int, None]


def make_wav2vec2_config(config: Any = None, **overrides: Any):
    """``Wav2Vec2Config`` from ``None`` (XLS-R 300M), a dict (overrides XLS-R 300M) or a config."""
    from transformers import Wav2Vec2Config

    if isinstance(config, Wav2Vec2Config):
        cfg = copy.deepcopy(config)
        for k, v in overrides.items():
            setattr(cfg, k, v)
        return cfg
    kwargs = dict(XLSR_300M_HF_CONFIG)
    if config is not None:
        kwargs.update(dict(config))
    kwargs.update(overrides)
    return Wav2Vec2Config(**kwargs)


def _pos_conv_style(model: nn.Module) -> str:
    return "parametrizations" if any(".parametrizations." in k for k in model.state_dict()) else "weight_norm"


_POS_NAMES = {
    "parametrizations": ("parametrizations.weight.original0", "parametrizations.weight.original1"),
    "weight_norm": ("weight_g", "weight_v"),
}


def _match_pos_conv_style(state: Dict[str, torch.Tensor], style: str) -> Dict[str, torch.Tensor]:
    """Rename the positional-conv weight-norm tensors of an HF state dict to ``style``."""
    base = "encoder.pos_conv_embed.conv."
    out = dict(state)
    for other, names in _POS_NAMES.items():
        if other == style:
            continue
        for src, dst in zip(names, _POS_NAMES[style]):
            if base + src in out:
                out[base + dst] = out.pop(base + src)
    return out


class SSLFrontEnd(nn.Module):
    """wav2vec 2.0 / XLS-R feature extractor: waveform (B, T) -> features (B, T', hidden_size).

    Args:
        config: ``Wav2Vec2Config`` or dict (see the module docstring).
        pretrained: local HF directory, fairseq checkpoint file, or ``None``.
        layer: ``"last"``, int ``k`` or ``"weighted"``.
        freeze: freeze the front-end (eval mode, no gradients).
        trust_pickle: allow ``weights_only=False`` for fairseq checkpoints.
        gradient_checkpointing: checkpoint each transformer layer in training.
        normalize_waveform: per-utterance zero-mean/unit-variance input
            normalisation (off: SSL-AASIST feeds the raw waveform).

    The wrapped ``transformers.Wav2Vec2Model`` is ``self.model`` (its state
    dict is the HF one, so ``save_pretrained``/``from_pretrained`` work). The
    forward pass calls its sub-modules directly (feature encoder, feature
    projection, positional conv, layers, final layer norm), which gives the
    same result as ``Wav2Vec2Model.forward`` without masking while allowing
    layer selection, truncation and checkpointing.
    """

    def __init__(
        self,
        config: Any = None,
        pretrained: Optional[PathLike] = None,
        layer: LayerSpec = "last",
        freeze: bool = False,
        trust_pickle: bool = False,
        gradient_checkpointing: bool = False,
        normalize_waveform: bool = False,
    ) -> None:
        super().__init__()
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        overrides: Dict[str, Any] = {}
        if isinstance(config, Mapping):
            overrides = dict(config)
        elif config is not None and not isinstance(config, Wav2Vec2Config):
            raise TypeError(f"ssl config must be a Wav2Vec2Config or a dict, got {type(config).__name__}")
        self.load_report = None
        if pretrained is None:
            self.model = Wav2Vec2Model(make_wav2vec2_config(config))
        else:
            path = Path(pretrained)
            if path.is_dir():
                cfg = Wav2Vec2Config.from_pretrained(str(path), local_files_only=True)
                if isinstance(config, Wav2Vec2Config):
                    cfg = copy.deepcopy(config)
                cfg.apply_spec_augment = False
                for k, v in overrides.items():
                    setattr(cfg, k, v)
                self.model = Wav2Vec2Model.from_pretrained(str(path), config=cfg, local_files_only=True)
            elif path.is_file():
                cfg, state, report = convert_fairseq_checkpoint(path, trust_pickle=trust_pickle, **overrides)
                self.model = Wav2Vec2Model(cfg)
                state = _match_pos_conv_style(state, _pos_conv_style(self.model))
                self.model.load_state_dict(state, strict=True)
                self.load_report = report
            else:
                raise FileNotFoundError(f"SSL checkpoint not found: {path}")
        cfg = self.model.config
        self.num_layers = int(cfg.num_hidden_layers)
        self.out_dim = int(cfg.hidden_size)
        self.stable_layer_norm = bool(cfg.do_stable_layer_norm)
        self.freeze = bool(freeze)
        self.gradient_checkpointing = bool(gradient_checkpointing)
        self.normalize_waveform = bool(normalize_waveform)

        # layer selection
        self.layer_weights: Optional[nn.Parameter] = None
        if layer is None or layer == "last":
            self.layer: Union[str, int] = "last"
        elif layer == "weighted":
            self.layer = "weighted"
            self.layer_weights = nn.Parameter(torch.zeros(self.num_layers + 1))
        elif isinstance(layer, int) and not isinstance(layer, bool):
            k = layer + self.num_layers + 1 if layer < 0 else layer
            if not 0 <= k <= self.num_layers:
                raise ValueError(f"ssl_layer {layer} out of range for a {self.num_layers}-layer model")
            self.layer = "last" if k == self.num_layers else k
        else:
            raise ValueError(f"ssl_layer must be 'last', 'weighted' or an int, got {layer!r}")

        # parameters that can never receive a gradient
        self.inactive_parameter_names: List[str] = []
        if not getattr(cfg, "apply_spec_augment", False) and hasattr(self.model, "masked_spec_embed"):
            self.inactive_parameter_names.append("masked_spec_embed")
        if isinstance(self.layer, int):
            for i in range(self.layer, self.num_layers):
                self.inactive_parameter_names += [
                    f"encoder.layers.{i}.{n}" for n, _ in self.model.encoder.layers[i].named_parameters()
                ]
            if self.stable_layer_norm:
                self.inactive_parameter_names += [
                    f"encoder.layer_norm.{n}" for n, _ in self.model.encoder.layer_norm.named_parameters()
                ]
        params = dict(self.model.named_parameters())
        for name in self.inactive_parameter_names:
            params[name].requires_grad_(False)
        if self.freeze:
            for p in self.model.parameters():
                p.requires_grad_(False)
            self.model.eval()

    # ------------------------------------------------------------------ helpers
    def train(self, mode: bool = True) -> SSLFrontEnd:
        super().train(mode)
        if self.freeze:
            self.model.eval()
        return self

    def frozen_parameter_names(self) -> List[str]:
        """Names (relative to this module) of front-end parameters with ``requires_grad=False``."""
        return [n for n, p in self.named_parameters() if not p.requires_grad]

    def num_frames(self, num_samples: int) -> int:
        """Number of output frames for ``num_samples`` input samples."""
        n = int(num_samples)
        for k, s in zip(self.model.config.conv_kernel, self.model.config.conv_stride):
            n = (n - k) // s + 1
        return n

    def layer_weight_probs(self) -> Optional[torch.Tensor]:
        """Softmax layer weights of ``ssl_layer="weighted"`` (else ``None``)."""
        return None if self.layer_weights is None else torch.softmax(self.layer_weights.detach().float(), 0)

    @staticmethod
    def _layer_out(out: Any) -> torch.Tensor:
        return out[0] if isinstance(out, (tuple, list)) else out

    def _run_layer(self, layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(lambda t: self._layer_out(layer(t)), h, use_reentrant=False)
        return self._layer_out(layer(h))

    def _hidden_states(self, x: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """(states h_0..h_{n-1} collected for 'weighted', selected output)."""
        m = self.model
        enc = m.encoder
        feats = m.feature_extractor(x).transpose(1, 2)
        h, _ = m.feature_projection(feats)
        if getattr(m.config, "apply_spec_augment", False) and self.training:
            h = m._mask_hidden_states(h)
        h = h + enc.pos_conv_embed(h)
        if not self.stable_layer_norm:
            h = enc.layer_norm(h)
        h = enc.dropout(h)

        weighted = self.layer == "weighted"
        n_run = self.layer if isinstance(self.layer, int) else self.num_layers
        states: List[torch.Tensor] = [h] if weighted else []
        layerdrop = float(getattr(m.config, "layerdrop", 0.0) or 0.0)
        for i in range(n_run):
            # LayerDrop follows the wrapped model's mode (a frozen front-end stays in eval mode); the draw
            # is a Python-level decision, taken from the global CPU RNG on purpose
            if m.training and layerdrop > 0.0 and float(torch.rand((), device="cpu")) < layerdrop:
                pass  # LayerDrop: skip the layer (the state is repeated)
            else:
                h = self._run_layer(enc.layers[i], h)
            if weighted and i < self.num_layers - 1:
                states.append(h)
        if isinstance(self.layer, int):
            return states, h
        last = enc.layer_norm(h) if self.stable_layer_norm else h
        if weighted:
            states.append(last)
        return states, last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x[:, 0] if x.size(1) == 1 else x[:, :, 0]
        if x.dim() != 2:
            raise ValueError(f"expected a (B, T) waveform batch, got shape {tuple(x.shape)}")
        if self.normalize_waveform:
            xf = x.float()
            x = ((xf - xf.mean(-1, keepdim=True)) / torch.sqrt(xf.var(-1, keepdim=True) + 1e-7)).to(x.dtype)
        if self.freeze:
            with torch.no_grad():
                states, out = self._hidden_states(x)
        else:
            states, out = self._hidden_states(x)
        if self.layer_weights is None:
            return out
        w = torch.softmax(self.layer_weights.float(), dim=0)
        stacked = torch.stack([s.float() for s in states], dim=0)  # (L+1, B, T', D)
        return (w.view(-1, 1, 1, 1) * stacked).sum(0).to(out.dtype)


# --------------------------------------------------------------------------- back-ends


class SSLAASISTBackend(AasistGraphBackend):
    """SSL-AASIST back-end: SSL features (B, T', in_dim) -> ``(logits, embedding (B, 5*gat_dims[1]))``.

    Module names follow the SSL-AASIST code (``LL``, ``first_bn``, ``encoder``
    (``encoder.<i>.0.*``), ``first_bn1``, ``attention``, then the graph
    back-end names of :class:`~dpda.models.aasist.AasistGraphBackend`).
    The residual blocks are those of :mod:`dpda.models.aasist` with their
    (1, 3) max-pool disabled, as in SSL-AASIST. Their ``bn1`` affine
    parameters never influence the output (SSL-AASIST quirk, see
    :class:`~dpda.models.aasist.ResidualBlock`) and are frozen. Spectral
    nodes: ``proj_dim // 3`` (42).
    """

    def __init__(
        self,
        in_dim: int = 1024,
        proj_dim: int = 128,
        filts: Sequence[Sequence[int]] = ((1, 32), (32, 32), (32, 64), (64, 64)),
        attention_dim: int = 128,
        gat_dims: Sequence[int] = (64, 32),
        pool_ratios: Sequence[float] = (0.5, 0.5, 0.5, 0.5),
        temperatures: Sequence[float] = (2.0, 2.0, 100.0, 100.0),
        num_classes: int = 2,
        dropout: float = 0.5,
        dropout_way: float = 0.2,
        pool_dropout: float = 0.3,
    ) -> None:
        nn.Module.__init__(self)
        channels = int(filts[-1][-1])
        self.LL = nn.Linear(in_dim, proj_dim)
        self.first_bn = nn.BatchNorm2d(num_features=1)
        self.first_bn1 = nn.BatchNorm2d(num_features=channels)
        self.encoder = build_residual_encoder([list(f) for f in filts], nested=True)
        for block in self.encoder.modules():
            if hasattr(block, "mp") and isinstance(block.mp, nn.MaxPool2d):
                block.mp = nn.Identity()  # SSL-AASIST's residual blocks do not pool
            bn1 = getattr(block, "bn1", None)
            if isinstance(bn1, nn.BatchNorm2d) and not getattr(block, "apply_bn1", False):
                # as in SSL-AASIST, bn1's output is discarded: its affine parameters can never
                # get a gradient, so they are frozen (kept in the state dict for checkpoints)
                bn1.weight.requires_grad_(False)
                bn1.bias.requires_grad_(False)
        self.attention = nn.Sequential(
            nn.Conv2d(channels, attention_dim, kernel_size=(1, 1)),
            nn.SELU(),
            nn.BatchNorm2d(attention_dim),
            nn.Conv2d(attention_dim, channels, kernel_size=(1, 1)),
        )
        self._init_graph_backend(
            in_channels=channels,
            num_spectral_nodes=proj_dim // 3,
            gat_dims=gat_dims,
            pool_ratios=pool_ratios,
            temperatures=temperatures,
            num_classes=num_classes,
            dropout=dropout,
            dropout_way=dropout_way,
            pool_dropout=pool_dropout,
        )

    def forward(self, feats: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        if feats.size(1) < 3:
            raise ValueError(f"SSL-AASIST needs at least 3 SSL frames, got {feats.size(1)}")
        x = self.LL(feats).transpose(1, 2).unsqueeze(1)  # (B, 1, proj_dim, T')
        x = F.max_pool2d(x, (3, 3))
        x = F.selu(self.first_bn(x))
        x = self.encoder(x)
        x = F.selu(self.first_bn1(x))  # (B, C, F, T)
        w = self.attention(x)
        # the pooling softmaxes run in at least fp32 (half-precision logits are upcast; fp64 stays fp64)
        w = w.to(torch.promote_types(w.dtype, torch.float32))
        e_S = (x * torch.softmax(w, dim=-1).to(x.dtype)).sum(dim=-1).transpose(1, 2)  # (B, F, C)
        e_T = (x * torch.softmax(w, dim=-2).to(x.dtype)).sum(dim=-2).transpose(1, 2)  # (B, T, C)
        return self.forward_nodes(e_S, e_T)


# --------------------------------------------------------------------------- full models


class SSLCountermeasure(nn.Module):
    """SSL front-end (``self.ssl``) + back-end (``self.backend``) with the dpda model convention."""

    def __init__(self, ssl: SSLFrontEnd, backend: nn.Module) -> None:
        super().__init__()
        self.ssl = ssl
        self.backend = backend

    def forward(
        self, x: torch.Tensor, return_embedding: bool = False
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        logits, embedding = self.backend(self.ssl(x))
        return (logits, embedding) if return_embedding else logits

    def frozen_parameter_names(self) -> List[str]:
        """Names of all parameters with ``requires_grad=False``."""
        return [n for n, p in self.named_parameters() if not p.requires_grad]


def _front_end(
    ssl_config: Any,
    ssl_pretrained: Optional[PathLike],
    ssl_layer: LayerSpec,
    freeze_ssl: bool,
    trust_pickle: bool,
    gradient_checkpointing: bool,
    normalize_waveform: bool,
) -> SSLFrontEnd:
    return SSLFrontEnd(
        config=ssl_config,
        pretrained=ssl_pretrained,
        layer=ssl_layer,
        freeze=freeze_ssl,
        trust_pickle=trust_pickle,
        gradient_checkpointing=gradient_checkpointing,
        normalize_waveform=normalize_waveform,
    )


class _XLSRModel(SSLCountermeasure):
    """An XLS-R front-end (see :func:`_front_end` for its options) with the back-end ``backend_cls``;
    further keyword arguments go to the back-end."""

    backend_cls: Any = None

    def __init__(
        self,
        ssl_config: Any = None,
        ssl_pretrained: Optional[PathLike] = None,
        ssl_layer: LayerSpec = "last",
        freeze_ssl: bool = False,
        trust_pickle: bool = False,
        gradient_checkpointing: bool = False,
        normalize_waveform: bool = False,
        **backend_kwargs: Any,
    ) -> None:
        ssl = _front_end(
            ssl_config, ssl_pretrained, ssl_layer, freeze_ssl, trust_pickle, gradient_checkpointing, normalize_waveform
        )
        super().__init__(ssl, self.backend_cls(in_dim=ssl.out_dim, **backend_kwargs))


class XLSRAASIST(_XLSRModel):
    """SSL-AASIST; ``backend_kwargs`` go to :class:`SSLAASISTBackend`."""

    backend_cls = SSLAASISTBackend


class XLSRConformerTCM(_XLSRModel):
    """XLSR-Conformer with TCM; ``backend_kwargs`` go to :class:`~dpda.models.conformer.ConformerTCMBackend`
    (defaults: the tcm_add / DPDA paper layout, ``dim=144, n_blocks=4, heads=4, kernel_size=31, ff_mult=4,
    conv_expansion=2``, sinusoidal positions, head tokens from the mean of all tokens; released checkpoints
    import with ``dpda import tcm_add`` / ``dpda_ga-conformer_tcm``)."""

    backend_cls = ConformerTCMBackend


class XLSRMamba(_XLSRModel):
    """XLSR-Mamba; ``backend_kwargs`` go to :class:`~dpda.models.mamba.BiMambaBackend`
    (``d_model=144, n_layers=6`` per direction, ``d_state=16, d_conv=4, expand=2``)."""

    backend_cls = BiMambaBackend


def build_xlsr_aasist(**config: Any) -> XLSRAASIST:
    """SSL-AASIST on XLS-R 300M (full size by default)."""
    return XLSRAASIST(**config)


def build_xlsr_conformer_tcm(**config: Any) -> XLSRConformerTCM:
    """XLSR-Conformer-TCM on XLS-R 300M (full size by default)."""
    return XLSRConformerTCM(**config)


def build_xlsr_mamba(**config: Any) -> XLSRMamba:
    """XLSR-Mamba (dual-column BiMamba) on XLS-R 300M (full size by default)."""
    return XLSRMamba(**config)


# --------------------------------------------------------------------------- checkpoints and counts


def load_ssl_aasist_checkpoint(
    model: SSLCountermeasure,
    source: Union[PathLike, Mapping[str, Any]],
    strict: bool = True,
    trust_pickle: bool = False,
) -> Dict[str, Any]:
    """Load an SSL-AASIST / DPDA checkpoint (keys ``ssl_model.model.*`` + back-end) into ``model``.

    The fairseq front-end keys are converted to HF names
    (:func:`~dpda.models.fairseq_convert.convert_ssl_aasist_checkpoint`) and
    loaded into ``model.ssl.model``; the remaining keys are loaded into
    ``model.backend`` unchanged -- which matches :class:`XLSRAASIST` (same
    names as SSL-AASIST). For other back-ends whose names differ, use
    ``strict=False`` (front-end loaded strictly, back-end keys returned).
    Returns ``{"report": ConversionReport, "backend_missing": [...],
    "backend_unexpected": [...]}``.
    """
    if isinstance(source, (str, Path)):
        ckpt = load_fairseq_checkpoint(source, trust_pickle)
    else:
        ckpt = dict(source)
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(ckpt.get(key), Mapping):
            ckpt = dict(ckpt[key])
            break
    hf_state, backend_state, report = convert_ssl_aasist_checkpoint(
        ckpt,
        weight_norm_style=_pos_conv_style(model.ssl.model),
        drop_mask_emb=not hasattr(model.ssl.model, "masked_spec_embed"),
    )
    model.ssl.model.load_state_dict(hf_state, strict=True)
    result = model.backend.load_state_dict(backend_state, strict=strict)
    return {
        "report": report,
        "backend_missing": list(result.missing_keys),
        "backend_unexpected": list(result.unexpected_keys),
    }


def full_size_parameter_counts(
    names: Sequence[str] = ("xlsr_aasist", "xlsr_conformer_tcm", "xlsr_mamba"),
) -> Dict[str, Dict[str, int]]:
    """Parameter counts of the full-size models, built on the meta device (no memory, no init cost).

    Returns ``{name: {"total", "ssl", "backend", "trainable"}}``; ``trainable``
    excludes the unused ``masked_spec_embed``.
    """
    from . import build_model

    counts: Dict[str, Dict[str, int]] = {}
    for name in names:
        with torch.device("meta"):
            model = build_model(name)
        counts[name] = {
            "total": sum(p.numel() for p in model.parameters()),
            "ssl": sum(p.numel() for p in model.ssl.parameters()),
            "backend": sum(p.numel() for p in model.backend.parameters()),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        }
    return counts
