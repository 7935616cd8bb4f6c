"""Conformer back-end with Temporal-Channel Modelling (TCM) attention.

References: Gulati et al., "Conformer: Convolution-augmented Transformer for
Speech Recognition" (Interspeech 2020); Rosello et al., "A conformer-based
classifier for variable-length utterance processing in anti-spoofing"
(XLSR-Conformer, Interspeech 2023); Truong et al., "Temporal-Channel Modeling
in Multi-head Self-Attention for Synthetic Speech Detection" (Interspeech 2024).

What is implemented
-------------------
* :class:`ConformerBlock` (macaron Conformer, Gulati et al.)::

      x = x + 1/2 FFN(x)          FFN = LN, Linear(d, 4d), SiLU, Dropout, Linear(4d, d), Dropout
      x = x + Attn(x)             Attn = LN, MHSA (or TCM-MHSA), Dropout
      x = x + Conv(x)             Conv = LN, pointwise Conv(d, 2d), GLU, depthwise Conv(k=31),
                                         BatchNorm, SiLU, pointwise Conv(d, d), Dropout
      x = x + 1/2 FFN(x)
      x = LN(x)

  No positional encoding is added (the SSL features already carry position
  information from wav2vec 2.0's convolutional positional embedding, and the
  depthwise convolution is position aware); inputs are fixed-length batches,
  so no padding mask is used.

* :class:`TCMAttention` -- our implementation of TCM from the paper's
  description (the paper gives three parts; the exact layer shapes below are
  our choices). Input ``X = [x_cls; x_1..x_T]`` of width ``d`` with ``H`` heads,
  ``d_h = d / H``:

  1. *Head-token generation.* The channels of the temporal tokens are split
     into the ``H`` head groups ``X_h`` (T x d_h). Each group is averaged over
     time, ``c_h = mean_t X_h[t]`` (d_h), and lifted to a full-width head token
     ``g_h = W_g c_h + b_g + e_h`` with a linear layer ``W_g`` (d_h -> d) shared by
     all heads and a learned per-head embedding ``e_h`` (d) that tells the head
     tokens apart. Extra parameters per block: ``d_h*d + d + H*d`` (5,904 for
     d=144, H=4; 23,616 for 4 blocks -- the paper reports ~0.03 M).
  2. *MHSA over temporal-channel tokens.* Standard multi-head self-attention is
     applied to the joint sequence ``[x_cls; x_1..x_T; g_1..g_H]`` (T+1+H tokens),
     so every temporal token can attend to the channel (head) summaries and the
     head tokens attend to all time steps.
  3. *Classification-token enrichment.* The attention outputs of the temporal
     tokens ``o_1..o_T`` and of the head tokens ``o_g1..o_gH`` are averaged and added
     to the CLS output: ``o_cls <- o_cls + mean_t o_t + mean_h o_gh``. The head-token
     outputs are then discarded (they are regenerated in every block).

  ``tcm=False`` gives the plain XLSR-Conformer attention (MHSA over
  ``[x_cls; x_1..x_T]``).

* :class:`ConformerTCMBackend` -- SSL features (B, T, 1024) -> Linear(1024,
  144) -> BatchNorm (one channel) + SELU -> prepend a learned CLS token -> 4
  Conformer blocks (4 heads, kernel 31, FFN x4) -> the CLS output is the
  embedding (144) -> Linear(144, 2). About 2.1 M parameters.
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
]


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
    """Conformer convolution module: (B, T, d) -> (B, T, d)."""

    def __init__(self, dim: int, kernel_size: int = 31, dropout: float = 0.1) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("kernel_size must be odd to keep the sequence length")
        self.norm = nn.LayerNorm(dim)
        self.pointwise1 = nn.Conv1d(dim, 2 * dim, 1)
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.bn = nn.BatchNorm1d(dim)
        self.pointwise2 = nn.Conv1d(dim, dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x).transpose(1, 2)  # (B, d, T)
        h = F.glu(self.pointwise1(h), dim=1)
        h = F.silu(self.bn(self.depthwise(h)))
        h = self.pointwise2(h)
        return self.dropout(h.transpose(1, 2))


class MultiHeadSelfAttention(nn.Module):
    """Plain multi-head self-attention (fused QKV projection, SDPA)."""

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.dim = dim
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
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

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__(dim, heads, dropout)
        self.head_token_proj = nn.Linear(self.head_dim, dim)
        self.head_embed = nn.Parameter(torch.zeros(1, heads, dim))
        nn.init.normal_(self.head_embed, std=0.02)

    def head_tokens(self, temporal: torch.Tensor) -> torch.Tensor:
        """Temporal tokens (B, T, d) -> head tokens (B, H, d)."""
        b, t, _ = temporal.shape
        c = temporal.reshape(b, t, self.heads, self.head_dim).mean(dim=1)  # (B, H, d_h)
        return self.head_token_proj(c) + self.head_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.size(1)
        if n < 2:
            raise ValueError("TCMAttention needs a CLS token and at least one temporal token")
        g = self.head_tokens(x[:, 1:])
        o = self.attend(torch.cat([x, g], dim=1))  # (B, 1+T+H, d)
        o_cls, o_t, o_g = o[:, :1], o[:, 1:n], o[:, n:]
        o_cls = o_cls + o_t.mean(dim=1, keepdim=True) + o_g.mean(dim=1, keepdim=True)
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
    ) -> None:
        super().__init__()
        self.ff1 = FeedForwardModule(dim, ff_mult, dropout)
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = (TCMAttention if tcm else MultiHeadSelfAttention)(dim, heads, attn_dropout)
        self.attn_dropout = nn.Dropout(dropout)
        self.conv = ConvModule(dim, kernel_size, dropout)
        self.ff2 = FeedForwardModule(dim, ff_mult, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn_dropout(self.attn(self.attn_norm(x)))
        x = x + self.conv(x)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class ConformerTCMBackend(nn.Module):
    """XLSR-Conformer(-TCM) back-end: SSL features (B, T, in_dim) -> ``(logits (B, 2), embedding (B, dim))``."""

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
    ) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        self.first_bn = nn.BatchNorm2d(num_features=1)
        self.selu = nn.SELU(inplace=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.cls_token, std=0.02)
        self.blocks = nn.ModuleList(
            [ConformerBlock(dim, heads, ff_mult, kernel_size, dropout, attn_dropout, tcm) for _ in range(n_blocks)]
        )
        self.classifier = nn.Linear(dim, num_classes)
        self.embedding_dim = dim

    def forward(self, feats: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.proj(feats)
        x = self.selu(self.first_bn(x.unsqueeze(1)).squeeze(1))
        x = torch.cat([self.cls_token.expand(x.size(0), -1, -1).to(x.dtype), x], dim=1)
        for block in self.blocks:
            x = block(x)
        emb = x[:, 0]
        return self.classifier(emb), emb
