"""Hand-crafted front-ends computed in torch (batched, differentiable, GPU-capable).

:class:`LFCC` -- linear-frequency cepstral coefficients, the front-end of the
ASVspoof 2021 LFCC-LCNN baseline (Wang & Yamagishi, "A comparative study on
recent neural spoofing countermeasures for synthetic speech detection",
Interspeech 2021).  For a waveform batch ``x`` of shape ``(B, T)`` it returns
``(B, 1 + T // hop_length, 3 * num_ceps)`` (static, delta, delta-delta).

Definitions, step by step (defaults in brackets):

1. **Pre-emphasis** [0.97]: ``y[0] = x[0]``, ``y[t] = x[t] - 0.97 x[t-1]``.
2. **Framing / window**: frames of ``win_length`` [320 = 20 ms] samples every
   ``hop_length`` [160 = 10 ms] samples, periodic Hamming window
   (``torch.hamming_window`` default).  Framing is *centred* as in
   ``torch.stft(center=True, pad_mode="constant")``, which the baseline uses:
   the signal is zero-padded by ``n_fft // 2`` on both sides and frame ``t``
   is centred on sample ``t * hop_length``; the window is zero-padded to
   ``n_fft`` symmetrically.  Hence ``1 + T // hop_length`` frames.
3. **Power spectrum**: ``|rfft_{n_fft}(frame)|^2`` [n_fft = 512 -> 257 bins].
4. **Band limit**: only bins ``[int(min_freq * (n_fft//2+1)), int(max_freq * (n_fft//2+1)))``
   are kept; ``min_freq``/``max_freq`` are fractions of the Nyquist frequency
   [0, 1 = full band].  (The 2021 LA baseline code keeps ``max_freq = 0.5``,
   i.e. the lower 4 kHz.)
5. **Linear triangular filter bank** [20 filters]: ``n_filters + 2`` edges
   equally spaced over the kept bins (first to last kept bin); filter ``j``
   rises linearly from edge ``j`` to 1 at edge ``j+1`` and falls to 0 at edge
   ``j+2`` (MATLAB ``trimf``, as in the ASVspoof LFCC reference code).
6. **Log**: ``log10(fbank + eps)`` with ``eps = finfo(float32).eps``
   (base-10, as the baseline).
7. **DCT-II, orthonormal** over the ``n_filters`` log energies; the first
   ``num_ceps`` [20] coefficients are kept.
8. **Energy** (optional, ``with_energy`` [False]): coefficient 0 is replaced by
   ``log10(sum_k P_k / n_fft + eps)`` over the kept bins (the baseline sets
   this to True).
9. **Deltas** (``with_delta`` [True]): ``d[t] = c[t+1] - c[t-1]`` with the
   first/last frame replicated at the edges (no division by 2, as in the
   baseline), then delta-delta = delta of delta.  Output is
   ``cat([c, d, dd], -1)``.

The computation always runs in float32 with autocast disabled (log of small
filter-bank energies is not safe in bf16/fp16); the output is float32.
The filter bank, DCT matrix and window are registered (non-persistent)
buffers, so ``.to(device)`` moves them and they do not enter state dicts.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LFCC", "dct_ii_matrix", "delta", "linear_filter_bank"]


def linear_filter_bank(n_bins: int, n_filters: int) -> np.ndarray:
    """Triangular filters equally spaced over ``n_bins`` FFT bins, shape ``(n_bins, n_filters)``, float64."""
    if n_bins < 2 or n_filters < 1:
        raise ValueError("need n_bins >= 2 and n_filters >= 1")
    pos = np.arange(n_bins, dtype=np.float64)
    edges = np.linspace(0.0, n_bins - 1.0, n_filters + 2)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (n_filters, 1)
    rise = (pos[None, :] - lo) / (mid - lo)
    fall = (hi - pos[None, :]) / (hi - mid)
    return np.clip(np.minimum(rise, fall), 0.0, None).T


def dct_ii_matrix(n: int, num_ceps: int) -> np.ndarray:
    """Orthonormal DCT-II as a ``(num_ceps, n)`` matrix: ``c = M @ v``."""
    k = np.arange(num_ceps, dtype=np.float64)[:, None]
    i = np.arange(n, dtype=np.float64)[None, :]
    m = np.cos(math.pi * k * (2.0 * i + 1.0) / (2.0 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m


def delta(feat: torch.Tensor) -> torch.Tensor:
    """``d[t] = feat[t+1] - feat[t-1]`` along dim 1 of ``(B, frames, dim)``, edges replicated."""
    padded = torch.cat([feat[:, :1], feat, feat[:, -1:]], dim=1)
    return padded[:, 2:] - padded[:, :-2]


class LFCC(nn.Module):
    """Linear-frequency cepstral coefficients (+ deltas), ``(B, T) -> (B, frames, dims)``.

    See the module docstring for every definition.  ``dims`` is
    ``3 * num_ceps`` with deltas, else ``num_ceps``.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        win_length: int = 320,
        hop_length: int = 160,
        n_fft: int = 512,
        n_filters: int = 20,
        num_ceps: int = 20,
        pre_emphasis: float = 0.97,
        min_freq: float = 0.0,
        max_freq: float = 1.0,
        with_energy: bool = False,
        with_delta: bool = True,
    ) -> None:
        super().__init__()
        if not 0 < win_length <= n_fft:
            raise ValueError(f"need 0 < win_length <= n_fft, got {win_length}, {n_fft}")
        if hop_length <= 0:
            raise ValueError("hop_length must be positive")
        if not 0.0 <= min_freq < max_freq <= 1.0:
            raise ValueError(f"need 0 <= min_freq < max_freq <= 1 (fractions of Nyquist), got {min_freq}, {max_freq}")
        if not 1 <= num_ceps <= n_filters:
            raise ValueError(f"need 1 <= num_ceps <= n_filters, got {num_ceps}, {n_filters}")
        self.sample_rate = int(sample_rate)
        self.win_length = int(win_length)
        self.hop_length = int(hop_length)
        self.n_fft = int(n_fft)
        self.n_filters = int(n_filters)
        self.num_ceps = int(num_ceps)
        self.pre_emphasis = float(pre_emphasis)
        self.min_freq = float(min_freq)
        self.max_freq = float(max_freq)
        self.with_energy = bool(with_energy)
        self.with_delta = bool(with_delta)

        n_bins_full = self.n_fft // 2 + 1
        self.min_bin = int(self.min_freq * n_bins_full)
        self.max_bin = int(self.max_freq * n_bins_full)
        fbank = linear_filter_bank(self.max_bin - self.min_bin, self.n_filters)
        self.register_buffer("window", torch.hamming_window(self.win_length, dtype=torch.float32), persistent=False)
        self.register_buffer("fbank", torch.from_numpy(fbank).float(), persistent=False)
        dct = dct_ii_matrix(self.n_filters, self.num_ceps)
        self.register_buffer("dct", torch.from_numpy(dct.T.copy()).float(), persistent=False)

    @property
    def out_dim(self) -> int:
        """Feature dimension of the output."""
        return self.num_ceps * (3 if self.with_delta else 1)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` input samples."""
        return 1 + num_samples // self.hop_length

    def extra_repr(self) -> str:
        return (
            f"sr={self.sample_rate}, win={self.win_length}, hop={self.hop_length}, n_fft={self.n_fft}, "
            f"bins=[{self.min_bin}, {self.max_bin}), n_filters={self.n_filters}, num_ceps={self.num_ceps}, "
            f"energy={self.with_energy}, delta={self.with_delta}"
        )

    def _power_by_convolution(self, x: torch.Tensor) -> torch.Tensor:
        """``|STFT|^2`` of ``(B, T)`` as in :meth:`forward`, as a strided convolution with a windowed DFT basis.

        Used only while exporting to ONNX (whose STFT has no complex output);
        returns ``(B, n_fft // 2 + 1, frames)``, the bins below ``min_bin`` zero.
        """
        n = torch.arange(self.n_fft, dtype=torch.float64)
        k = torch.arange(self.min_bin, self.max_bin, dtype=torch.float64)
        left = (self.n_fft - self.win_length) // 2  # torch.stft centres a short window in the n_fft frame
        window = torch.zeros(self.n_fft, dtype=torch.float64)
        window[left : left + self.win_length] = self.window.double().cpu()
        angle = 2.0 * math.pi * k[:, None] * n[None, :] / self.n_fft
        basis = torch.cat([torch.cos(angle), torch.sin(angle)]) * window  # (2 * kept bins, n_fft)
        pad = self.n_fft // 2
        framed = F.conv1d(F.pad(x[:, None, :], (pad, pad)), basis[:, None, :].to(x), stride=self.hop_length)
        re, im = framed.split(self.max_bin - self.min_bin, dim=1)
        return F.pad(re.square() + im.square(), (0, 0, self.min_bin, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 1:
            x = x.unsqueeze(0)
        if x.dim() != 2:
            raise ValueError(f"LFCC expects (B, T) waveforms, got shape {tuple(x.shape)}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            if self.pre_emphasis:
                x = torch.cat([x[:, :1], x[:, 1:] - self.pre_emphasis * x[:, :-1]], dim=1)
            if torch.onnx.is_in_onnx_export():  # ONNX's STFT has no complex output: the same DFT as a convolution
                power = self._power_by_convolution(x)
            else:
                spec = torch.stft(
                    x,
                    n_fft=self.n_fft,
                    hop_length=self.hop_length,
                    win_length=self.win_length,
                    window=self.window,
                    center=True,
                    pad_mode="constant",
                    onesided=True,
                    return_complex=True,
                )  # (B, bins, frames)
                power = spec.real.square() + spec.imag.square()
            power = power[:, self.min_bin : self.max_bin].transpose(1, 2)  # (B, frames, kept bins)
            eps = torch.finfo(torch.float32).eps
            log_fb = torch.log10(power @ self.fbank + eps)
            ceps = log_fb @ self.dct  # (B, frames, num_ceps)
            if self.with_energy:
                energy = torch.log10(power.sum(dim=-1) / self.n_fft + eps)
                ceps = torch.cat([energy.unsqueeze(-1), ceps[..., 1:]], dim=-1)
            if not self.with_delta:
                return ceps
            d1 = delta(ceps)
            d2 = delta(d1)
            return torch.cat([ceps, d1, d2], dim=-1)
