"""Conformer back-end with Temporal-Channel Modelling (TCM) attention.

References: Gulati et al., "Conformer: Convolution-augmented Transformer for
Speech Recognition" (Interspeech 2020); Rosello et al., "A conformer-based
classifier for variable-length utterance processing in anti-spoofing"
(XLSR-Conformer, Interspeech 2023); Truong et al., "Temporal-Channel Modeling
in Multi-head Self-Attention for Synthetic Speech Detection" (Interspeech 2024).

By default the back-end computes exactly what the authors' public code does
(``ductuantruong/tcm_add`` ``model.py``/``conformer.py``, identical in the DPDA
paper code ``ductuantruong/dpda_ga`` ``nets/conformer_tcm.py``), so its released
checkpoints load through :mod:`dpda.models.published.conformer_tcm` and give the
same scores. Module names are dpda's own; the key mapping lives there.

What is implemented
-------------------
* :class:`ConformerBlock` (macaron Conformer, Gulati et al.)::

      x = x + 1/2 FFN(x)          FFN = LN, Linear(d, 4d), SiLU, Dropout, Linear(4d, d), Dropout
      x = x + Attn(x)             Attn = LN, MHSA (or TCM-MHSA), Dropout
      x = x + Conv(x)             Conv = LN, pointwise Conv(d, 2e), GLU, depthwise Conv(e, k=31),
                                         BatchNorm(e), SiLU, pointwise Conv(e, d), Dropout
      x = x + 1/2 FFN(x)
      x = LN(x)

  with ``e = conv_expansion * d`` (2 in the original code, as in lucidrains'
  Conformer; ``conv_expansion=1`` gives Gulati's e = d). Inputs are
  fixed-length batches, so no padding mask is used.

* :class:`TCMAttention` -- multi-head self-attention with temporal-channel
  modelling. Input ``X = [x_cls; x_1..x_T]`` of width ``d`` with ``H`` heads,
  ``d_h = d / H``:

  1. *Head-token generation.* The channels are split into the ``H`` head
     groups ``X_h`` (d_h each) and averaged over the tokens, ``c_h = mean X_h``.
     With ``style="tcm_add"`` (the original) the mean runs over all 1+T tokens,
     CLS included, and ``g_h = flatten(GELU(LN_{d_h}(split_H(W_g c_h + b_g)))) + e_h``:
     the shared linear ``W_g`` (d_h -> d) output is cut into ``H`` chunks of
     ``d_h`` that are layer-normalised separately (one ``LayerNorm(d_h)``), GELU
     follows, and a learned per-head embedding ``e_h`` (d, zero-initialised) is
     added. With ``style="simple"`` (dpda's earlier reading of the paper) the
     mean runs over the T temporal tokens and ``g_h = W_g c_h + b_g + e_h``.
  2. *MHSA over temporal-channel tokens.* Standard multi-head self-attention
     (scale ``d_h ** -0.5``; the QKV projection has no bias unless ``qkv_bias``)
     runs over ``[x_cls; x_1..x_T; g_1..g_H]`` (T+1+H tokens).
  3. *Classification-token enrichment.* After the output projection,
     ``o_cls <- o_cls + mean_t o_t + mean_h o_gh``; the head-token outputs are
     dropped (they are regenerated in every block).

  ``tcm=False`` gives the plain XLSR-Conformer attention (MHSA over
  ``[x_cls; x_1..x_T]``).

* :class:`ConformerTCMBackend` -- SSL features (B, T, 1024) -> Linear(1024,
  144) -> BatchNorm2d(1) over (B, 1, T, 144), i.e. one scalar set of statistics
  for all features, + SELU -> + sinusoidal positional table rows 0..T-1 (a
  persistent buffer of ``pos_emb_rows`` = 10000 rows, as in the original; added
  before the CLS token, which gets none) -> prepend a learned CLS token -> 4
  Conformer blocks (4 heads, kernel 31, FFN x4) -> the CLS output is the
  embedding (144) -> Linear(144, 2). 2,382,628 parameters (the table is a
  buffer).
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConformerBlock",
    "ConformerTCMBackend",
    "ConvModule",
    "FeedForwardModule",
    "MultiHeadSelfAttention",
    "TCMAttention",
    "TCM_STYLES",
    "sinusoidal_table",
]

#: head-token variants of :class:`TCMAttention`
TCM_STYLES = ("tcm_add", "simple")


def sinusoidal_table(rows: int, dim: int) -> torch.Tensor:
    """Transformer sinusoidal positions, (1, rows, dim) float32: even columns ``sin``, odd ``cos``
    of ``p / 10000 ** (2 * (i // 2) / dim)`` (angles in float64, rounded to float32 before sin/cos)."""
    pos = torch.arange(rows, dtype=torch.float64).unsqueeze(1)
    pair = torch.div(torch.arange(dim), 2, rounding_mode="floor").to(torch.float64)
    angle = (pos / torch.pow(torch.tensor(10000.0, dtype=torch.float64), 2.0 * pair / dim)).float()
    table = torch.empty_like(angle)
    table[:, 0::2] = torch.sin(angle[:, 0::2])
    table[:, 1::2] = torch.cos(angle[:, 1::2])
    return table.unsqueeze(0)


class FeedForwardModule(nn.Module):
    """Conformer feed-forward module (pre-LN, Swish)."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * mult),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(dim * mult, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvModule(nn.Module):
    """Conformer convolution module: (B, T, d) -> (B, T, d), inner width ``expansion * d``."""

    def __init__(self, dim: int, kernel_size: int = 31, dropout: float = 0.1, expansion: int = 2) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("kernel_size must be odd to keep the sequence length")
        if expansion < 1:
            raise ValueError(f"expansion must be >= 1, got {expansion}")
        inner = dim * expansion
        self.norm = nn.LayerNorm(dim)
        self.pointwise1 = nn.Conv1d(dim, 2 * inner, 1)
        self.depthwise = nn.Conv1d(inner, inner, kernel_size, padding=kernel_size // 2, groups=inner)
        self.bn = nn.BatchNorm1d(inner)
        self.pointwise2 = nn.Conv1d(inner, dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x).transpose(1, 2)  # (B, d, T)
        h = F.glu(self.pointwise1(h), dim=1)
        h = F.silu(self.bn(self.depthwise(h)))
        h = self.pointwise2(h)
        return self.dropout(h.transpose(1, 2))


class MultiHeadSelfAttention(nn.Module):
    """Plain multi-head self-attention (fused QKV projection, SDPA)."""

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.1, qkv_bias: bool = False) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.dim = dim
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.out = nn.Linear(dim, dim)
        self.attn_dropout = dropout

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout if self.training else 0.0)
        return self.out(o.transpose(1, 2).reshape(b, n, self.dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(x)


class TCMAttention(MultiHeadSelfAttention):
    """Multi-head self-attention with temporal-channel modelling (see the module docstring).

    ``forward(x)`` expects ``x = [cls; temporal tokens]`` (B, 1+T, d) and returns
    the same shape.
    """

    def __init__(
        self, dim: int, heads: int = 4, dropout: float = 0.1, qkv_bias: bool = False, style: str = "tcm_add"
    ) -> None:
        super().__init__(dim, heads, dropout, qkv_bias)
        if style not in TCM_STYLES:
            raise ValueError(f"unknown TCM style {style!r}; expected one of {TCM_STYLES}")
        self.style = style
        self.head_token_proj = nn.Linear(self.head_dim, dim)
        self.head_embed = nn.Parameter(torch.zeros(1, heads, dim))
        if style == "tcm_add":
            self.head_token_norm = nn.LayerNorm(self.head_dim)
        else:
            nn.init.normal_(self.head_embed, std=0.02)

    def head_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens to summarise (B, N, d) -> head tokens (B, H, d)."""
        b, n, _ = tokens.shape
        c = tokens.reshape(b, n, self.heads, self.head_dim).mean(dim=1)  # (B, H, d_h)
        g = self.head_token_proj(c)  # (B, H, d)
        if self.style == "tcm_add":
            g = g.reshape(b, self.heads, -1, self.head_dim)  # each head token cut into d / d_h chunks
            g = F.gelu(self.head_token_norm(g)).flatten(2)
        return g + self.head_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.size(1)
        if n < 2:
            raise ValueError("TCMAttention needs a CLS token and at least one temporal token")
        g = self.head_tokens(x if self.style == "tcm_add" else x[:, 1:])
        o = self.attend(torch.cat([x, g], dim=1))  # (B, 1+T+H, d)
        o_cls, o_t, o_g = o[:, :1], o[:, 1:n], o[:, n:]
        o_cls = o_cls + o_g.mean(dim=1, keepdim=True) + o_t.mean(dim=1, keepdim=True)
        return torch.cat([o_cls, o_t], dim=1)


class ConformerBlock(nn.Module):
    """Macaron Conformer block with plain or TCM self-attention."""

    def __init__(
        self,
        dim: int = 144,
        heads: int = 4,
        ff_mult: int = 4,
        kernel_size: int = 31,
        dropout: float = 0.1,
        attn_dropout: float = 0.1,
        tcm: bool = True,
        conv_expansion: int = 2,
        qkv_bias: bool = False,
        tcm_style: str = "tcm_add",
    ) -> None:
        super().__init__()
        self.ff1 = FeedForwardModule(dim, ff_mult, dropout)
        self.attn_norm = nn.LayerNorm(dim)
        if tcm:
            self.attn: MultiHeadSelfAttention = TCMAttention(dim, heads, attn_dropout, qkv_bias, tcm_style)
        else:
            self.attn = MultiHeadSelfAttention(dim, heads, attn_dropout, qkv_bias)
        self.attn_dropout = nn.Dropout(dropout)
        self.conv = ConvModule(dim, kernel_size, dropout, conv_expansion)
        self.ff2 = FeedForwardModule(dim, ff_mult, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn_dropout(self.attn(self.attn_norm(x)))
        x = x + self.conv(x)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class ConformerTCMBackend(nn.Module):
    """XLSR-Conformer(-TCM) back-end: SSL features (B, T, in_dim) -> ``(logits (B, 2), embedding (B, dim))``.

    The defaults reproduce the original tcm_add / dpda_ga code; ``conv_expansion=1,
    qkv_bias=True, tcm_style="simple", pos_emb_rows=0`` give dpda's earlier variant.
    ``pos_emb_rows`` bounds the number of frames (10000 rows: 200 s of XLS-R frames).
    """

    def __init__(
        self,
        in_dim: int = 1024,
        dim: int = 144,
        n_blocks: int = 4,
        heads: int = 4,
        ff_mult: int = 4,
        kernel_size: int = 31,
        dropout: float = 0.1,
        attn_dropout: float = 0.1,
        tcm: bool = True,
        num_classes: int = 2,
        conv_expansion: int = 2,
        qkv_bias: bool = False,
        tcm_style: str = "tcm_add",
        pos_emb_rows: int = 10000,
    ) -> None:
        super().__init__()
        if pos_emb_rows < 0:
            raise ValueError(f"pos_emb_rows must be >= 0, got {pos_emb_rows}")
        self.proj = nn.Linear(in_dim, dim)
        self.first_bn = nn.BatchNorm2d(num_features=1)
        self.selu = nn.SELU(inplace=False)
        self.pos_emb_rows = pos_emb_rows
        if pos_emb_rows:
            self.register_buffer("pos_emb", sinusoidal_table(pos_emb_rows, dim))
        else:
            self.pos_emb = None
        self.cls_token = nn.Parameter(torch.rand(1, 1, dim))  # U[0, 1), as the original
        self.blocks = nn.ModuleList(
            [
                ConformerBlock(
                    dim, heads, ff_mult, kernel_size, dropout, attn_dropout, tcm, conv_expansion, qkv_bias, tcm_style
                )
                for _ in range(n_blocks)
            ]
        )
        self.classifier = nn.Linear(dim, num_classes)
        self.embedding_dim = dim

    def forward(self, feats: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.proj(feats)
        x = self.selu(self.first_bn(x.unsqueeze(1)).squeeze(1))
        if self.pos_emb is not None:
            t = x.size(1)
            if t > self.pos_emb_rows:
                raise ValueError(f"{t} frames exceed the positional table ({self.pos_emb_rows} rows)")
            x = x + self.pos_emb[:, :t].to(x.dtype)
        x = torch.cat([self.cls_token.expand(x.size(0), -1, -1).to(x.dtype), x], dim=1)
        for block in self.blocks:
            x = block(x)
        emb = x[:, 0]
        return self.classifier(emb), emb
