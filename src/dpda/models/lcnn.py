"""LFCC-LCNN, the ASVspoof 2021 LA/DF baseline countermeasure.

Architecture of the released 2021 baseline (Wang & Yamagishi, Interspeech
2021, "A comparative study on recent neural spoofing countermeasures for
synthetic speech detection"; LCNN after Lavrentyeva et al., Interspeech 2019),
re-implemented here:

* front-end: :class:`dpda.models.features.LFCC`, 60 dims (20 LFCC with
  c0 replaced by log energy, + delta + delta-delta), 20 ms / 10 ms frames,
  1024-point FFT, lower half of the band (0-4 kHz: bins ``[0, 256)``) -- the
  settings of the 2021 baseline code.  Override with ``lfcc={...}``; e.g.
  ``lfcc=dict(n_fft=512, max_freq=1.0, with_energy=False)`` gives the plain
  full-band 512-point LFCC;
* the LFCC matrix ``(B, frames, 60)`` is treated as a 1-channel image;
* 9 convolutions, each followed by Max-Feature-Map (MFM: split the channels in
  two halves, element-wise max -> half the channels), with 2x2 max-pooling
  and BatchNorm (no affine parameters) in between, channel widths
  ``64 (5x5) | pool | 64 (1x1), BN, 96 (3x3) | pool, BN | 96 (1x1), BN, 128 (3x3) |
  pool | 128 (1x1), BN, 64 (3x3), BN | 64 (1x1), BN, 64 (3x3) | pool`` (widths
  before MFM), then dropout 0.7;
* output ``(B, 32, frames // 16, 60 // 16 = 3)`` -> ``(B, frames // 16, 96)``;
* two bidirectional LSTM layers (hidden 48 per direction, 96 out) with a
  residual connection around the pair (``lstm(h) + h``), mean over time;
* linear layer 96 -> 2.

dpda conventions: ``forward(x)`` takes a raw waveform ``(B, T)`` at 16 kHz and
returns logits ``(B, 2)`` with class 1 = bona fide; ``return_embedding=True``
also returns the 96-dim time-pooled vector (the input of the output layer).

Deviation from the released baseline: the baseline has a single output unit
trained with sigmoid + BCE (score = that unit); dpda uses a 2-way linear layer
(+97 parameters) trained with cross-entropy, so the comparable score is
``logits[:, 1] - logits[:, 0]`` (``logits[:, 1]`` is dpda's score).

Size: 269,826 trainable parameters with the default config (the BatchNorms
have no affine parameters; the LFCC front-end has none).

Minimum input: the four 2x2 poolings need at least 16 frames, i.e.
``T >= 15 * hop_length = 2400`` samples (0.15 s) with the default hop.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dpda.models.features import LFCC

__all__ = ["LCNN", "LCNN_DEFAULT_CONFIG", "LCNN_LFCC_CONFIG", "MaxFeatureMap", "build_lcnn"]

#: LFCC settings of the ASVspoof 2021 LFCC-LCNN baseline code
LCNN_LFCC_CONFIG: dict[str, Any] = {
    "sample_rate": 16000,
    "win_length": 320,
    "hop_length": 160,
    "n_fft": 1024,
    "n_filters": 20,
    "num_ceps": 20,
    "pre_emphasis": 0.97,
    "min_freq": 0.0,
    "max_freq": 0.5,
    "with_energy": True,
    "with_delta": True,
}

#: default (published) configuration of :func:`build_lcnn`
LCNN_DEFAULT_CONFIG: dict[str, Any] = {
    "lfcc": None,  # None -> LCNN_LFCC_CONFIG; a dict overrides single entries of it
    "dropout": 0.7,
    "nb_classes": 2,
}


class _MaxOfHalves(torch.autograd.Function):
    """``max(x[:, :C/2], x[:, C/2:])`` with ``torch.maximum``'s gradient, computed faster.

    ``torch.maximum``'s backward (an equality test, a division, a select and a masked
    fill per input, then the ``cat`` of ``chunk``'s backward) is about a third of an
    LCNN training step on the CPU.  Here the forward saves which half won as one byte
    per output (2: the first, 0: the second, 1: a tie) and the backward is
    ``g * w`` and ``g - g * w`` with ``w = code / 2``: the same numbers bit for bit,
    ties included (each half gets ``g / 2``; exact float ties between two filters do
    occur in training: routing them whole to one half changed a minibench run within
    12 steps).
    """

    generate_vmap_rule = True  # forward and backward are plain torch operations

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=1)
        return torch.maximum(first, second)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        (x,) = inputs
        first, second = x.chunk(2, dim=1)
        ctx.save_for_backward(torch.gt(first, second).to(torch.uint8) + torch.ge(first, second))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (code,) = ctx.saved_tensors
        to_first = grad * code.to(grad.dtype).mul_(0.5)
        return torch.cat([to_first, grad - to_first], dim=1)


class MaxFeatureMap(nn.Module):
    """Max-Feature-Map over dim 1: ``max(x[:, :C/2], x[:, C/2:])``, ``(B, C, ...) -> (B, C/2, ...)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] % 2:
            raise ValueError(f"MaxFeatureMap needs an even channel count, got {x.shape[1]}")
        if torch.onnx.is_in_onnx_export():  # a constant channel count: ONNX's batch norm needs it
            half = int(x.shape[1]) // 2
            return torch.maximum(x[:, :half], x[:, half:])
        return _MaxOfHalves.apply(x)


def _conv_mfm(c_in: int, c_out: int, k: int) -> list:
    return [nn.Conv2d(c_in, c_out, kernel_size=k, stride=1, padding=k // 2), MaxFeatureMap()]


class LCNN(nn.Module):
    """LFCC-LCNN countermeasure: ``(B, T)`` waveform -> ``(B, nb_classes)`` logits."""

    #: number of 2x2 max-poolings (time and feature axes are divided by 2 ** this)
    POOLINGS = 4

    def __init__(
        self,
        lfcc: dict[str, Any] | None = None,
        dropout: float = 0.7,
        nb_classes: int = 2,
    ) -> None:
        super().__init__()
        lfcc_cfg = dict(LCNN_LFCC_CONFIG)
        if lfcc:
            unknown = set(lfcc) - set(lfcc_cfg)
            if unknown:
                raise TypeError(f"unknown LFCC option(s): {', '.join(sorted(unknown))}")
            lfcc_cfg.update(lfcc)
        self.frontend = LFCC(**lfcc_cfg)
        feat_dim = self.frontend.out_dim
        if feat_dim < 2**self.POOLINGS:
            raise ValueError(f"LFCC dimension {feat_dim} too small for {self.POOLINGS} 2x2 poolings")

        layers = (
            _conv_mfm(1, 64, 5)
            + [nn.MaxPool2d(2, 2)]
            + _conv_mfm(32, 64, 1)
            + [nn.BatchNorm2d(32, affine=False)]
            + _conv_mfm(32, 96, 3)
            + [nn.MaxPool2d(2, 2), nn.BatchNorm2d(48, affine=False)]
            + _conv_mfm(48, 96, 1)
            + [nn.BatchNorm2d(48, affine=False)]
            + _conv_mfm(48, 128, 3)
            + [nn.MaxPool2d(2, 2)]
            + _conv_mfm(64, 128, 1)
            + [nn.BatchNorm2d(64, affine=False)]
            + _conv_mfm(64, 64, 3)
            + [nn.BatchNorm2d(32, affine=False)]
            + _conv_mfm(32, 64, 1)
            + [nn.BatchNorm2d(32, affine=False)]
            + _conv_mfm(32, 64, 3)
            + [nn.MaxPool2d(2, 2), nn.Dropout(dropout)]
        )
        self.cnn = nn.Sequential(*layers)
        self.embedding_dim = 32 * (feat_dim // 2**self.POOLINGS)
        if self.embedding_dim % 2:
            raise ValueError("embedding dimension must be even for the BLSTM")
        hidden = self.embedding_dim // 2
        self.blstm1 = nn.LSTM(self.embedding_dim, hidden, batch_first=True, bidirectional=True)
        self.blstm2 = nn.LSTM(self.embedding_dim, hidden, batch_first=True, bidirectional=True)
        self.fc_out = nn.Linear(self.embedding_dim, nb_classes)
        self.nb_classes = nb_classes

    @property
    def min_num_samples(self) -> int:
        """Shortest input (samples) that yields at least one frame after the poolings."""
        return (2**self.POOLINGS - 1) * self.frontend.hop_length

    def forward(
        self, x: torch.Tensor, return_embedding: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 2:
            raise ValueError(f"LCNN expects (B, T) waveforms, got shape {tuple(x.shape)}")
        if x.shape[1] < self.min_num_samples:
            raise ValueError(f"LCNN needs at least {self.min_num_samples} samples, got {x.shape[1]}")
        feats = self.frontend(x)  # (B, frames, 60), float32
        h = self.cnn(feats.unsqueeze(1))  # (B, 32, frames // 16, 60 // 16)
        h = h.permute(0, 2, 1, 3).flatten(2)  # (B, frames // 16, 96)
        # The LSTMs run on the parameter dtype: CPU autocast does not cast RNN inputs,
        # while CUDA autocast casts them itself.
        h = h.to(self.blstm1.weight_ih_l0.dtype)
        out, _ = self.blstm1(h)
        out, _ = self.blstm2(out)
        emb = (out + h).mean(dim=1)  # (B, 96)
        logits = self.fc_out(emb)
        if return_embedding:
            return logits, emb
        return logits


def build_lcnn(**config: Any) -> LCNN:
    """LFCC-LCNN with the ASVspoof 2021 baseline sizes; ``config`` overrides :data:`LCNN_DEFAULT_CONFIG`."""
    unknown = set(config) - set(LCNN_DEFAULT_CONFIG)
    if unknown:
        raise TypeError(f"unknown lcnn option(s): {', '.join(sorted(unknown))}")
    cfg = dict(LCNN_DEFAULT_CONFIG)
    cfg.update(config)
    return LCNN(**cfg)
