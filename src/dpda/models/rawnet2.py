"""RawNet2, the ASVspoof 2021 LA/DF end-to-end baseline countermeasure.

Re-implementation of the model of Tak et al., "End-to-end anti-spoofing with
RawNet2" (ICASSP 2021), with the sizes of the ASVspoof 2021 baseline's
``model_config_RawNet.yaml`` as defaults (:data:`RAWNET2_DEFAULT_CONFIG`):

* **sinc front-end** (:class:`dpda.models.sinc.SincConv`, shared with AASIST): ``filts[0]`` = 20 fixed
  Hamming-windowed ideal band-pass FIR filters of ``first_conv`` = 1024 -> 1025
  taps (an even length is bumped to odd, as in the baseline); band edges
  equally spaced on the (HTK) mel scale between 0 Hz and 8 kHz.  The filters
  are *not* learned: they are a non-persistent buffer, not parameters.
* ``|.|`` -> max-pool 3 -> BatchNorm -> SELU;
* ``blocks[0]`` = 2 residual blocks with ``filts[1]`` = [20, 20] channels, then
  ``blocks[1]`` = 4 with ``filts[2]`` = [20, 128] (the first changes 20 -> 128,
  the rest keep 128; ``filts[3]`` is not used, as in the baseline code).
  A block is ``conv3 -> BN -> LeakyReLU(0.3) -> conv3``, plus the input (through
  a 1x1 conv where the width changes), then max-pool 3;
* after each block, filter-wise feature-map scaling (FMS):
  ``s = sigmoid(Linear(mean_t(x)))``, ``x = x * s + s``;
* BatchNorm -> SELU -> 3-layer GRU (``gru_node`` = 1024) -> last time step ->
  ``Linear(1024, nb_fc_node = 1024)`` -> ``Linear(1024, 2)`` (no non-linearity
  between the two, as in the baseline).

dpda conventions: ``forward(x)`` takes ``(B, T)`` raw waveforms at 16 kHz and
returns raw logits ``(B, 2)``, class 1 = bona fide; the baseline applies
``log_softmax`` and scores with its class-1 output, which is a monotonic
function of ``logits[:, 1] - logits[:, 0]`` (dpda's score is ``logits[:, 1]``).
``return_embedding=True`` also returns the ``nb_fc_node`` (1024)-dim output of
the first fully connected layer, the input of the output layer.

Residual-block pre-activation: the RawNet2 papers put ``BN -> LeakyReLU`` in
front of the first convolution of every block but the first, and the released
2021 baseline creates that BatchNorm but then feeds the *un-normalised* block
input to the convolution, so those BatchNorms are dead (they never receive a
gradient).  By default (``block_preactivation=False``) dpda reproduces what the
released model computes and does not create the dead BatchNorms (848 parameters
with the default sizes); ``block_preactivation=True`` gives the papers' block.

Size with the default config: 17,620,562 trainable parameters (16,140,288 of
them in the GRU), 17,621,410 counting the baseline's 848 dead BatchNorm
parameters; the fixed sinc filters (20 x 1025) are not parameters.  The
often-quoted 25.43M (e.g. the AASIST paper's table) corresponds to the wider
speaker-verification RawNet2 sizes ``filts=[128, [128, 128], [128, 512],
[512, 512]]`` (25,430,018 here), not to the 2021 baseline's yaml.

Minimum input: ``first_conv`` taps + 7 max-poolings by 3 need
``T >= 1024 + 3 ** 7 = 3211`` samples (0.2 s) with the default config
(:attr:`RawNet2.min_num_samples`).  The baseline trains on 64600-sample
(~4 s) crops (``nb_samp``, kept in the config for reference only).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dpda.audio.crop import AASIST_NUM_SAMPLES
from dpda.models.sinc import SincConv

__all__ = ["RAWNET2_DEFAULT_CONFIG", "RawNet2", "build_rawnet2"]

#: default (published, ASVspoof 2021 baseline) configuration of :func:`build_rawnet2`
RAWNET2_DEFAULT_CONFIG: dict[str, Any] = {
    "nb_samp": AASIST_NUM_SAMPLES,
    "first_conv": 1024,
    "in_channels": 1,
    "filts": [20, [20, 20], [20, 128], [128, 128]],
    "blocks": [2, 4],
    "nb_fc_node": 1024,
    "gru_node": 1024,
    "nb_gru_layer": 3,
    "nb_classes": 2,
    "sample_rate": 16000,
    "block_preactivation": False,
}


class _ResidualBlock(nn.Module):
    """``[BN -> LReLU ->] conv3 -> BN -> LReLU -> conv3`` + shortcut, then max-pool 3."""

    def __init__(self, c_in: int, c_out: int, preactivation: bool) -> None:
        super().__init__()
        self.pre_bn = nn.BatchNorm1d(c_in) if preactivation else None
        self.conv1 = nn.Conv1d(c_in, c_out, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel_size=3, padding=1)
        self.shortcut = nn.Conv1d(c_in, c_out, kernel_size=1) if c_in != c_out else None
        self.pool = nn.MaxPool1d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.pre_bn(x), 0.3) if self.pre_bn is not None else x
        out = self.conv2(F.leaky_relu(self.bn(self.conv1(out)), 0.3))
        identity = self.shortcut(x) if self.shortcut is not None else x
        return self.pool(out + identity)


class _ScaledBlock(nn.Module):
    """Residual block followed by filter-wise feature-map scaling ``x * s + s``."""

    def __init__(self, c_in: int, c_out: int, preactivation: bool) -> None:
        super().__init__()
        self.block = _ResidualBlock(c_in, c_out, preactivation)
        self.fms = nn.Linear(c_out, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(x)
        s = torch.sigmoid(self.fms(x.mean(dim=-1))).unsqueeze(-1)
        return x * s + s


def _pair(v: Any, what: str) -> tuple[int, int]:
    if not (isinstance(v, (list, tuple)) and len(v) == 2):
        raise ValueError(f"{what} must be a pair [in, out], got {v!r}")
    return int(v[0]), int(v[1])


class RawNet2(nn.Module):
    """RawNet2 countermeasure: ``(B, T)`` waveform -> ``(B, nb_classes)`` logits (see the module docstring)."""

    def __init__(
        self,
        nb_samp: int = AASIST_NUM_SAMPLES,
        first_conv: int = 1024,
        in_channels: int = 1,
        filts: Sequence[Any] = (20, (20, 20), (20, 128), (128, 128)),
        blocks: Sequence[int] = (2, 4),
        nb_fc_node: int = 1024,
        gru_node: int = 1024,
        nb_gru_layer: int = 3,
        nb_classes: int = 2,
        sample_rate: int = 16000,
        block_preactivation: bool = False,
    ) -> None:
        super().__init__()
        if in_channels != 1:
            raise ValueError(f"RawNet2 takes mono waveforms (in_channels=1), got {in_channels}")
        if len(filts) < 3:
            raise ValueError("filts must be [sinc_filters, [in, out], [in, out], ...]")
        if len(blocks) != 2 or min(blocks) < 1:
            raise ValueError(f"blocks must be two positive counts, got {blocks!r}")
        n_sinc = int(filts[0])
        a_in, a_out = _pair(filts[1], "filts[1]")
        b_in, b_out = _pair(filts[2], "filts[2]")
        if a_in != n_sinc:
            raise ValueError(f"filts[1][0] ({a_in}) must equal the number of sinc filters ({n_sinc})")
        if b_in != a_out:
            raise ValueError(f"filts[2][0] ({b_in}) must equal filts[1][1] ({a_out})")
        self.nb_samp = int(nb_samp)
        self.config = {
            "nb_samp": nb_samp,
            "first_conv": first_conv,
            "in_channels": in_channels,
            "filts": copy.deepcopy(list(filts)),
            "blocks": list(blocks),
            "nb_fc_node": nb_fc_node,
            "gru_node": gru_node,
            "nb_gru_layer": nb_gru_layer,
            "nb_classes": nb_classes,
            "sample_rate": sample_rate,
            "block_preactivation": block_preactivation,
        }

        self.sinc = SincConv(n_sinc, int(first_conv), int(sample_rate))
        self.first_bn = nn.BatchNorm1d(n_sinc)
        stages: list[nn.Module] = []
        c = n_sinc
        for i in range(int(blocks[0])):
            # the first block of all has no pre-activation (its input was just BN + SELU'd)
            stages.append(_ScaledBlock(c, a_out, preactivation=block_preactivation and i > 0))
            c = a_out
        for _ in range(int(blocks[1])):
            stages.append(_ScaledBlock(c, b_out, preactivation=block_preactivation))
            c = b_out
        self.blocks = nn.Sequential(*stages)
        self.bn_before_gru = nn.BatchNorm1d(c)
        self.gru = nn.GRU(c, int(gru_node), num_layers=int(nb_gru_layer), batch_first=True)
        self.fc1 = nn.Linear(int(gru_node), int(nb_fc_node))
        self.fc2 = nn.Linear(int(nb_fc_node), int(nb_classes))
        self.embedding_dim = int(nb_fc_node)
        self.nb_classes = int(nb_classes)
        self.min_num_samples = self.sinc.kernel_size - 1 + 3 ** (1 + len(stages))

    def forward(
        self, x: torch.Tensor, return_embedding: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 2:
            raise ValueError(f"RawNet2 expects (B, T) waveforms, got shape {tuple(x.shape)}")
        if x.shape[1] < self.min_num_samples:
            raise ValueError(f"RawNet2 needs at least {self.min_num_samples} samples, got {x.shape[1]}")
        h = self.sinc(x)
        h = F.selu(self.first_bn(F.max_pool1d(h.abs(), 3)))
        h = self.blocks(h)
        h = F.selu(self.bn_before_gru(h)).transpose(1, 2)  # (B, frames, C)
        # run the GRU on the parameter dtype: CPU autocast does not cast RNN inputs,
        # CUDA autocast casts them itself
        h = h.to(self.gru.weight_ih_l0.dtype)
        if h.is_cuda:
            self.gru.flatten_parameters()
        h, _ = self.gru(h)
        emb = self.fc1(h[:, -1])
        logits = self.fc2(emb)
        if return_embedding:
            return logits, emb
        return logits


def build_rawnet2(**config: Any) -> RawNet2:
    """RawNet2 with the ASVspoof 2021 baseline sizes; ``config`` overrides :data:`RAWNET2_DEFAULT_CONFIG`."""
    unknown = set(config) - set(RAWNET2_DEFAULT_CONFIG)
    if unknown:
        raise TypeError(f"unknown rawnet2 option(s): {', '.join(sorted(unknown))}")
    cfg = copy.deepcopy(RAWNET2_DEFAULT_CONFIG)
    cfg.update(copy.deepcopy(config))
    return RawNet2(**cfg)
