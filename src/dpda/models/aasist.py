"""AASIST and AASIST-L (Jung et al., ICASSP 2022).

"AASIST: Audio anti-spoofing using integrated spectro-temporal graph attention
networks".  Raw waveform -> fixed sinc filter bank -> residual CNN encoder ->
spectral and temporal graphs -> graph attention + graph pooling ->
heterogeneous spectro-temporal graph attention with a stack node ("master"),
two parallel branches combined by element-wise max -> readout -> linear.

Module and parameter names follow the official implementation so that the
published checkpoints (``AASIST.pth``, ``AASIST-L.pth``) load with
``strict=True``; see :func:`load_official_aasist`.  Numerical quirks of the
official code that the checkpoints depend on are reproduced:

1. In every residual block except the first, ``bn1`` + SELU are evaluated but
   ``conv1`` is applied to the *raw* block input, so ``bn1`` has no influence on
   the output (its running statistics are still updated in training mode and
   its affine parameters never receive a gradient).  ``ResidualBlock(...,
   apply_bn1=True)`` gives the intended pre-activation block instead.
2. After the sinc convolution: ``abs`` -> 3x3 max-pool -> ``first_bn`` -> SELU.
3. The spectral positional embedding ``pos_S`` has a fixed node count (23 for
   70 sinc channels).
4. The stack node is passed un-expanded, shape ``(1, 1, D)`` (identical result
   by broadcasting).

Reusable building blocks (also used by SSL-AASIST):

* :class:`ResidualBlock` and :func:`build_residual_encoder` - 2-D residual CNN encoder.
* :class:`GraphAttentionLayer` - homogeneous graph attention layer.
* :class:`HtrgGraphAttentionLayer` - heterogeneous graph attention with a stack node.
* :class:`GraphPool` - top-k graph pooling.
* :class:`AasistGraphBackend` - everything after the encoder: takes the encoder
  output ``(B, C, F, T)`` (or spectral/temporal node features) and returns
  ``(logits, embedding)``.

Minimum input length of :class:`AASIST`: the time axis is divided by 3 seven
times (3x3 max-pool after the sinc layer and six ``(1, 3)`` pools) after the
``kernel_size - 1 = 128`` samples lost to the sinc convolution, so at least
``128 + 3**7 = 2315`` samples (0.145 s at 16 kHz) are required.  The number of
spectral nodes (23) does not depend on the length.

Why one file of about 580 lines: the sinc front-end, the encoder, the graph layers and the
model carry the official code's module names, which the checkpoint keys spell out; they are read
together when checking parity, and split they would be read across several files.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .sinc import SincConv

__all__ = [
    "AASIST",
    "AASIST_CONFIG",
    "AASIST_L_CONFIG",
    "AasistGraphBackend",
    "GraphAttentionLayer",
    "GraphPool",
    "HtrgGraphAttentionLayer",
    "ResidualBlock",
    "build_aasist",
    "build_aasist_l",
    "build_residual_encoder",
    "load_official_aasist",
    "min_input_length",
]

#: official ``config/AASIST.conf`` model section (``nb_samp``/``architecture`` omitted)
AASIST_CONFIG: Dict[str, Any] = {
    "first_conv": 128,
    "filts": [70, [1, 32], [32, 32], [32, 64], [64, 64]],
    "gat_dims": [64, 32],
    "pool_ratios": [0.5, 0.7, 0.5, 0.5],
    "temperatures": [2.0, 2.0, 100.0, 100.0],
}

#: official ``config/AASIST-L.conf`` model section
AASIST_L_CONFIG: Dict[str, Any] = {
    "first_conv": 128,
    "filts": [70, [1, 32], [32, 32], [32, 24], [24, 24]],
    "gat_dims": [24, 32],
    "pool_ratios": [0.4, 0.5, 0.7, 0.5],
    "temperatures": [2.0, 2.0, 100.0, 100.0],
}


def _xavier_param(*shape: int) -> nn.Parameter:
    p = nn.Parameter(torch.empty(*shape))
    nn.init.xavier_normal_(p)
    return p


def _node_batchnorm(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm1d over the feature axis of node features ``(B, N, D)``."""
    shape = x.shape
    return bn(x.reshape(-1, shape[-1])).reshape(shape)


def _pairwise_products(x: torch.Tensor) -> torch.Tensor:
    """``(B, N, D) -> (B, N, N, D)`` with entry ``[b, i, j] = x[b, j] * x[b, i]``."""
    return x.unsqueeze(1) * x.unsqueeze(2)


# --------------------------------------------------------------------------- encoder


class ResidualBlock(nn.Module):
    """2-D residual block of the AASIST encoder (official name ``Residual_block``).

    Args:
        nb_filts: ``(in_channels, out_channels)``.
        first: the first block of the encoder has no ``bn1``/pre-activation.
        apply_bn1: ``False`` (default) reproduces the official block, where
            ``conv1`` is applied to the raw input and ``bn1`` is computed only for
            its running statistics; ``True`` feeds ``SELU(bn1(x))`` to ``conv1``.

    ``conv1``: kernel (2, 3), padding (1, 1); ``bn2`` + SELU; ``conv2``: kernel
    (2, 3), padding (0, 1); a (1, 3) conv shortcut ``conv_downsample`` when the
    channel count changes; finally max-pool (1, 3).  Shape ``(B, C_in, H, W) ->
    (B, C_out, H, W // 3)``.
    """

    def __init__(self, nb_filts: Sequence[int], first: bool = False, apply_bn1: bool = False) -> None:
        super().__init__()
        c_in, c_out = int(nb_filts[0]), int(nb_filts[1])
        self.first = first
        self.apply_bn1 = apply_bn1
        if not first:
            self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=(2, 3), padding=(1, 1), stride=1)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=(2, 3), padding=(0, 1), stride=1)
        self.downsample = c_in != c_out
        if self.downsample:
            self.conv_downsample = nn.Conv2d(c_in, c_out, kernel_size=(1, 3), padding=(0, 1), stride=1)
        self.mp = nn.MaxPool2d((1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.first:
            out = x
        elif self.apply_bn1:
            out = F.selu(self.bn1(x))
        else:
            # official behaviour: bn1 output is discarded; only its running stats change
            if self.training:
                with torch.no_grad():
                    self.bn1(x)
            out = x
        out = self.conv1(out)
        out = F.selu(self.bn2(out))
        out = self.conv2(out)
        identity = self.conv_downsample(x) if self.downsample else x
        return self.mp(out + identity)


def build_residual_encoder(
    filts: Sequence[Sequence[int]], nested: bool = True, apply_bn1: bool = False
) -> nn.Sequential:
    """The six-block AASIST encoder from ``filts = [[1, c1], [c1, c2], [c2, c3], [c3, c4]]``.

    Blocks: ``filts[0]`` (first=True), ``filts[1]``, ``filts[2]``, then ``filts[3]``
    three times.  ``nested=True`` wraps every block in its own ``nn.Sequential``
    as the official AASIST does (keys ``encoder.<i>.0.*``); ``nested=False``
    gives a flat Sequential (keys ``encoder.<i>.*``, as in SSL-AASIST).
    """
    if len(filts) != 4:
        raise ValueError("filts must hold 4 (in, out) pairs")
    specs = [(filts[0], True), (filts[1], False), (filts[2], False)] + [(filts[3], False)] * 3
    blocks = [ResidualBlock(f, first=first, apply_bn1=apply_bn1) for f, first in specs]
    if nested:
        return nn.Sequential(*[nn.Sequential(b) for b in blocks])
    return nn.Sequential(*blocks)


# --------------------------------------------------------------------------- graph layers


class GraphAttentionLayer(nn.Module):
    """Graph attention over a fully connected homogeneous graph (official ``GraphAttentionLayer``).

    ``(B, N, in_dim) -> (B, N, out_dim)``.  Attention logits for nodes ``i, j``:
    ``w . tanh(W_a (h_i * h_j)) / temperature``, softmax over the neighbour axis;
    output ``SELU(BN(W_att (A h) + W_res h))``.  Input dropout 0.2.
    """

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0, input_dropout: float = 0.2) -> None:
        super().__init__()
        self.att_weight = _xavier_param(out_dim, 1)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(p=input_dropout)
        self.temp = float(temperature)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, D) -> (B, N, N, 1)``, normalised over dim -2."""
        scores = torch.tanh(self.att_proj(_pairwise_products(x)))
        scores = torch.matmul(scores, self.att_weight) / self.temp
        return torch.softmax(scores, dim=-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_drop(x)
        att = self.attention_map(x).squeeze(-1)
        out = self.proj_with_att(torch.matmul(att, x)) + self.proj_without_att(x)
        return F.selu(_node_batchnorm(self.bn, out))


class HtrgGraphAttentionLayer(nn.Module):
    """Heterogeneous graph attention with a stack node (official ``HtrgGraphAttentionLayer``).

    ``forward(x1, x2, master=None) -> (x1', x2', master')`` with ``x1`` the
    type-1 (temporal) nodes ``(B, N1, in_dim)``, ``x2`` the type-2 (spectral)
    nodes ``(B, N2, in_dim)`` and ``master`` the stack node ``(B or 1, 1, in_dim)``
    (mean of all nodes when ``None``).  Outputs have ``out_dim`` features.

    Both node types are first projected (``proj_type1``/``proj_type2``) and
    concatenated.  Node attention uses separate weight vectors for T-T
    (``att_weight11``), S-S (``att_weight22``) and T-S / S-T (``att_weight12``)
    pairs; the stack node attends to all nodes with ``att_projM``/``att_weightM``
    and is updated as ``W_attM (a^T h) + W_resM master``.  The nodes do not
    read the stack node.
    """

    def __init__(self, in_dim: int, out_dim: int, temperature: float = 1.0, input_dropout: float = 0.2) -> None:
        super().__init__()
        self.att_weight11 = _xavier_param(out_dim, 1)
        self.att_weight22 = _xavier_param(out_dim, 1)
        self.att_weight12 = _xavier_param(out_dim, 1)
        self.att_weightM = _xavier_param(out_dim, 1)
        self.proj_type1 = nn.Linear(in_dim, in_dim)
        self.proj_type2 = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_projM = nn.Linear(in_dim, out_dim)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.proj_with_attM = nn.Linear(in_dim, out_dim)
        self.proj_without_attM = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.input_drop = nn.Dropout(p=input_dropout)
        self.temp = float(temperature)

    def attention_map(self, x: torch.Tensor, n1: int) -> torch.Tensor:
        """Node attention ``(B, N, N, 1)`` for ``x = cat([type1 (n1 nodes), type2])``."""
        n = x.size(1)
        hidden = torch.tanh(self.att_proj(_pairwise_products(x)))  # (B, N, N, out)
        weights = torch.cat([self.att_weight11, self.att_weight22, self.att_weight12], dim=1)  # (out, 3)
        scores = torch.matmul(hidden, weights)  # (B, N, N, 3)
        # which weight vector scores pair (i, j): 0 = T-T, 1 = S-S, 2 = T-S or S-T
        pair_type = torch.full((n, n), 2, dtype=torch.long, device=x.device)
        pair_type[:n1, :n1] = 0
        pair_type[n1:, n1:] = 1
        index = pair_type.view(1, n, n, 1).expand(scores.size(0), n, n, 1)
        scores = torch.gather(scores, -1, index) / self.temp
        return torch.softmax(scores, dim=-2)

    def master_attention(self, x: torch.Tensor, master: torch.Tensor) -> torch.Tensor:
        """Stack-node attention over all nodes, ``(B, N, 1)`` normalised over the nodes."""
        scores = torch.tanh(self.att_projM(x * master))
        scores = torch.matmul(scores, self.att_weightM) / self.temp
        return torch.softmax(scores, dim=-2)

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, master: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n1, n2 = x1.size(1), x2.size(1)
        x = torch.cat([self.proj_type1(x1), self.proj_type2(x2)], dim=1)
        if master is None:
            master = x.mean(dim=1, keepdim=True)
        x = self.input_drop(x)

        att = self.attention_map(x, n1).squeeze(-1)  # (B, N, N)
        att_m = self.master_attention(x, master)  # (B, N, 1)
        master = self.proj_with_attM(torch.matmul(att_m.transpose(1, 2), x)) + self.proj_without_attM(master)

        out = self.proj_with_att(torch.matmul(att, x)) + self.proj_without_att(x)
        out = F.selu(_node_batchnorm(self.bn, out))
        return out[:, :n1], out[:, n1 : n1 + n2], master


class GraphPool(nn.Module):
    """Top-k graph pooling (official ``GraphPool``).

    Scores ``s = sigmoid(proj(dropout(h)))``; keeps the ``max(int(N * k), 1)``
    highest-scoring nodes of ``h * s``, **sorted by descending score** (the
    order of ``torch.topk``).  ``(B, N, D) -> (B, max(int(N*k), 1), D)``.
    """

    def __init__(self, k: float, in_dim: int, p: float) -> None:
        super().__init__()
        self.k = float(k)
        self.proj = nn.Linear(in_dim, 1)
        self.drop = nn.Dropout(p=p) if p > 0 else nn.Identity()
        self.sigmoid = nn.Sigmoid()

    def num_output_nodes(self, n: int) -> int:
        return max(int(n * self.k), 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        scores = torch.sigmoid(self.proj(self.drop(h)))  # (B, N, 1)
        if torch.onnx.is_in_onnx_export():
            # the same count, computed in the graph, so that an exported model keeps a variable-length input
            n_nodes = torch.as_tensor(h.shape[1], dtype=torch.float64)
            n_keep = torch.clamp(torch.floor(n_nodes * self.k), min=1).long()
        else:
            n_keep = self.num_output_nodes(h.size(1))
        _, idx = torch.topk(scores, n_keep, dim=1)
        idx = idx.expand(-1, -1, h.size(2))
        return torch.gather(h * scores, 1, idx)


# --------------------------------------------------------------------------- back-end


class AasistGraphBackend(nn.Module):
    """The AASIST back-end after the CNN encoder: graphs, attention, pooling, readout, classifier.

    Args:
        in_channels: channels ``C`` of the encoder output (= node feature size).
        num_spectral_nodes: number of spectral nodes ``F`` (size of ``pos_S``:
            23 for AASIST, 42 for SSL-AASIST with 128-dim features).
        gat_dims: ``[d0, d1]`` - GAT output size and heterogeneous-GAT output size.
        pool_ratios: ``[k_S, k_T, k_h, _]``; the 4th entry is unused (as officially).
        temperatures: ``[t_S, t_T, t_h, _]``; the 4th entry is unused (as officially).
        num_classes: output logits (2; class 1 = bona fide).
        dropout: dropout on the final embedding (0.5).
        dropout_way: dropout on each branch's outputs (0.2).
        pool_dropout: dropout inside the pooling score projection (0.3).

    ``forward(e)`` takes the encoder output ``(B, C, F, T)``, reads out
    spectral nodes ``max_t |e|`` ``(B, F, C)`` and temporal nodes ``max_f |e|``
    ``(B, T, C)`` and calls :meth:`forward_nodes`.  Front-ends with another
    readout (SSL-AASIST's attentive pooling) call :meth:`forward_nodes`
    directly.  Both return ``(logits (B, num_classes), embedding (B, 5*d1))``,
    embedding = ``[T_max, T_avg, S_max, S_avg, master]`` after dropout.

    Parameters/sub-modules carry the official names (``pos_S``, ``master1``,
    ``master2``, ``GAT_layer_S``, ``GAT_layer_T``, ``HtrgGAT_layer_ST11/12/21/22``,
    ``pool_S``, ``pool_T``, ``pool_hS1/hT1/hS2/hT2``, ``out_layer``).  A full
    model that needs these names at its top level (as the official checkpoints
    do) subclasses this class, calls ``nn.Module.__init__(self)``, registers its
    front-end modules and then ``self._init_graph_backend(...)`` (same
    arguments as this constructor); see :class:`AASIST`.
    """

    def __init__(
        self,
        in_channels: int,
        num_spectral_nodes: int = 23,
        gat_dims: Sequence[int] = (64, 32),
        pool_ratios: Sequence[float] = (0.5, 0.7, 0.5, 0.5),
        temperatures: Sequence[float] = (2.0, 2.0, 100.0, 100.0),
        num_classes: int = 2,
        dropout: float = 0.5,
        dropout_way: float = 0.2,
        pool_dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self._init_graph_backend(
            in_channels,
            num_spectral_nodes,
            gat_dims,
            pool_ratios,
            temperatures,
            num_classes,
            dropout,
            dropout_way,
            pool_dropout,
        )

    def _init_graph_backend(
        self,
        in_channels: int,
        num_spectral_nodes: int = 23,
        gat_dims: Sequence[int] = (64, 32),
        pool_ratios: Sequence[float] = (0.5, 0.7, 0.5, 0.5),
        temperatures: Sequence[float] = (2.0, 2.0, 100.0, 100.0),
        num_classes: int = 2,
        dropout: float = 0.5,
        dropout_way: float = 0.2,
        pool_dropout: float = 0.3,
    ) -> None:
        d0, d1 = int(gat_dims[0]), int(gat_dims[1])
        self.num_spectral_nodes = int(num_spectral_nodes)
        self.embedding_dim = 5 * d1
        self.pos_S = nn.Parameter(torch.randn(1, self.num_spectral_nodes, in_channels))
        self.master1 = nn.Parameter(torch.randn(1, 1, d0))
        self.master2 = nn.Parameter(torch.randn(1, 1, d0))
        self.drop = nn.Dropout(dropout)
        self.drop_way = nn.Dropout(dropout_way)

        self.GAT_layer_S = GraphAttentionLayer(in_channels, d0, temperature=temperatures[0])
        self.GAT_layer_T = GraphAttentionLayer(in_channels, d0, temperature=temperatures[1])
        self.HtrgGAT_layer_ST11 = HtrgGraphAttentionLayer(d0, d1, temperature=temperatures[2])
        self.HtrgGAT_layer_ST12 = HtrgGraphAttentionLayer(d1, d1, temperature=temperatures[2])
        self.HtrgGAT_layer_ST21 = HtrgGraphAttentionLayer(d0, d1, temperature=temperatures[2])
        self.HtrgGAT_layer_ST22 = HtrgGraphAttentionLayer(d1, d1, temperature=temperatures[2])

        self.pool_S = GraphPool(pool_ratios[0], d0, pool_dropout)
        self.pool_T = GraphPool(pool_ratios[1], d0, pool_dropout)
        self.pool_hS1 = GraphPool(pool_ratios[2], d1, pool_dropout)
        self.pool_hT1 = GraphPool(pool_ratios[2], d1, pool_dropout)
        self.pool_hS2 = GraphPool(pool_ratios[2], d1, pool_dropout)
        self.pool_hT2 = GraphPool(pool_ratios[2], d1, pool_dropout)

        self.out_layer = nn.Linear(self.embedding_dim, num_classes)

    @staticmethod
    def readout_nodes(e: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encoder output ``(B, C, F, T)`` -> spectral nodes ``(B, F, C)``, temporal nodes ``(B, T, C)``."""
        a = e.abs()
        return a.max(dim=3).values.transpose(1, 2), a.max(dim=2).values.transpose(1, 2)

    def _branch(
        self,
        out_T: torch.Tensor,
        out_S: torch.Tensor,
        master: torch.Tensor,
        layer1: HtrgGraphAttentionLayer,
        pool_S: GraphPool,
        pool_T: GraphPool,
        layer2: HtrgGraphAttentionLayer,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t, s, m = layer1(out_T, out_S, master=master)
        s = pool_S(s)
        t = pool_T(t)
        t_aug, s_aug, m_aug = layer2(t, s, master=m)
        return self.drop_way(t + t_aug), self.drop_way(s + s_aug), self.drop_way(m + m_aug)

    def forward_nodes(self, e_S: torch.Tensor, e_T: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Spectral nodes ``(B, F, C)`` (``F == num_spectral_nodes``; ``pos_S`` is added here)
        and temporal nodes ``(B, T, C)`` -> ``(logits, embedding)``."""
        if e_S.size(1) != self.num_spectral_nodes:
            raise ValueError(
                f"got {e_S.size(1)} spectral nodes, the positional embedding pos_S expects {self.num_spectral_nodes}"
            )
        out_S = self.pool_S(self.GAT_layer_S(e_S + self.pos_S))
        out_T = self.pool_T(self.GAT_layer_T(e_T))

        t1, s1, m1 = self._branch(
            out_T, out_S, self.master1, self.HtrgGAT_layer_ST11, self.pool_hS1, self.pool_hT1, self.HtrgGAT_layer_ST12
        )
        t2, s2, m2 = self._branch(
            out_T, out_S, self.master2, self.HtrgGAT_layer_ST21, self.pool_hS2, self.pool_hT2, self.HtrgGAT_layer_ST22
        )
        out_T = torch.maximum(t1, t2)
        out_S = torch.maximum(s1, s2)
        master = torch.maximum(m1, m2)

        embedding = torch.cat(
            [
                out_T.abs().max(dim=1).values,
                out_T.mean(dim=1),
                out_S.abs().max(dim=1).values,
                out_S.mean(dim=1),
                master.squeeze(1),
            ],
            dim=1,
        )
        embedding = self.drop(embedding)
        return self.out_layer(embedding), embedding

    def forward(self, e: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encoder output ``(B, C, F, T)`` -> ``(logits, embedding)``."""
        e_S, e_T = self.readout_nodes(e)
        return self.forward_nodes(e_S, e_T)


# --------------------------------------------------------------------------- full model


class AASIST(AasistGraphBackend):
    """AASIST / AASIST-L on raw 16 kHz waveforms.

    Args (official config names):
        first_conv: sinc filter length (even values are made odd: 128 -> 129).
        filts: ``[n_sinc, [1, c1], [c1, c2], [c2, c3], [c3, c4]]``.
        gat_dims, pool_ratios, temperatures: see :class:`AasistGraphBackend`.
        sample_rate: 16000.
        num_classes, dropout, dropout_way, pool_dropout: see :class:`AasistGraphBackend`.

    ``forward(x, return_embedding=False, freq_aug=False)``: ``x`` ``(B, T)``
    float waveform, ``T >= min_input_length()`` (2315 for the official
    configs; the checkpoints were trained on 64600).  Returns logits ``(B, 2)``
    (class 1 = bona fide) or ``(logits, embedding)``.  ``freq_aug=True`` is the
    official ``Freq_aug``: zero a random block of up to 19 sinc filters (use it
    only while training).

    dtype: the sinc filters are cast to the input dtype; under ``torch.autocast``
    every layer follows autocast's choice (bf16 on CPU works).
    """

    def __init__(
        self,
        first_conv: int = 128,
        filts: Sequence[Any] = (70, [1, 32], [32, 32], [32, 64], [64, 64]),
        gat_dims: Sequence[int] = (64, 32),
        pool_ratios: Sequence[float] = (0.5, 0.7, 0.5, 0.5),
        temperatures: Sequence[float] = (2.0, 2.0, 100.0, 100.0),
        sample_rate: int = 16000,
        num_classes: int = 2,
        dropout: float = 0.5,
        dropout_way: float = 0.2,
        pool_dropout: float = 0.3,
    ) -> None:
        nn.Module.__init__(self)
        n_sinc = int(filts[0])
        self.conv_time = SincConv(out_channels=n_sinc, kernel_size=first_conv, sample_rate=sample_rate)
        self.first_bn = nn.BatchNorm2d(num_features=1)
        self.encoder = build_residual_encoder(list(filts[1:]), nested=True)
        # 3x3 max-pool over the sinc channels gives the spectral node count
        self._init_graph_backend(
            in_channels=int(filts[-1][-1]),
            num_spectral_nodes=n_sinc // 3,
            gat_dims=gat_dims,
            pool_ratios=pool_ratios,
            temperatures=temperatures,
            num_classes=num_classes,
            dropout=dropout,
            dropout_way=dropout_way,
            pool_dropout=pool_dropout,
        )

    def min_input_length(self) -> int:
        """Shortest waveform (samples) that leaves at least one temporal node."""
        return self.conv_time.kernel_size - 1 + 3 ** (1 + len(self.encoder))

    def encode(self, x: torch.Tensor, freq_aug: bool = False) -> torch.Tensor:
        """Waveform ``(B, T)`` -> encoder output ``(B, C, F, T')``."""
        if x.dim() == 3 and x.size(1) == 1:
            x = x.squeeze(1)
        if x.dim() != 2:
            raise ValueError(f"expected a (B, T) waveform batch, got shape {tuple(x.shape)}")
        if x.size(1) < self.min_input_length():
            raise ValueError(f"input of {x.size(1)} samples is shorter than the minimum {self.min_input_length()}")
        h = self.conv_time(x.unsqueeze(1), mask=freq_aug)  # (B, n_sinc, T - K + 1)
        h = F.max_pool2d(h.unsqueeze(1).abs(), (3, 3))  # (B, 1, n_sinc // 3, .)
        h = F.selu(self.first_bn(h))
        return self.encoder(h)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, return_embedding: bool = False, freq_aug: bool = False
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        logits, embedding = super().forward(self.encode(x, freq_aug=freq_aug))
        return (logits, embedding) if return_embedding else logits


def min_input_length(first_conv: int = 128) -> int:
    """Minimum waveform length of AASIST/AASIST-L: ``kernel - 1 + 3**7`` (2315 for ``first_conv=128``)."""
    kernel = first_conv + 1 if first_conv % 2 == 0 else first_conv
    return kernel - 1 + 3**7


def _merge(base: Dict[str, Any], overrides: Dict[str, Any]) -> Dict[str, Any]:
    cfg = copy.deepcopy(base)
    for drop in ("architecture", "nb_samp"):  # accept an official config verbatim
        overrides.pop(drop, None)
    cfg.update(overrides)
    return cfg


def build_aasist(**config: Any) -> AASIST:
    """AASIST with the official ``AASIST.conf`` (297,866 parameters); kwargs override entries."""
    return AASIST(**_merge(AASIST_CONFIG, dict(config)))


def build_aasist_l(**config: Any) -> AASIST:
    """AASIST-L with the official ``AASIST-L.conf`` (85,306 parameters); kwargs override entries."""
    return AASIST(**_merge(AASIST_L_CONFIG, dict(config)))


def load_official_aasist(path: Union[str, Path], name: str = "aasist", map_location: Any = "cpu") -> AASIST:
    """Build ``name`` (``"aasist"`` or ``"aasist-l"``), load an official clovaai/aasist
    checkpoint (plain state dict) with ``strict=True`` and return it in eval mode."""
    builders = {"aasist": build_aasist, "aasist-l": build_aasist_l}
    key = name.lower()
    if key not in builders:
        raise ValueError(f"unknown AASIST variant {name!r}; use 'aasist' or 'aasist-l'")
    model = builders[key]()
    state = torch.load(str(path), map_location=map_location, weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    model.load_state_dict(state, strict=True)
    return model.eval()
