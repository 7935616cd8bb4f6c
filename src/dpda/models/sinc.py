"""Fixed mel-spaced sinc band-pass filter bank (the RawNet2 / AASIST front-end).

The filters are *not* learned: ``out_channels`` ideal band-pass filters whose
cut-off frequencies are equally spaced on the mel scale between 0 Hz and the
Nyquist frequency, windowed with a Hamming window.  They are computed once in
``__init__`` (with the float32 rounding of the official code, so they match it exactly) and kept in a non-persistent
buffer, so they follow ``.to(device)`` but never appear in the state dict
(the official AASIST / RawNet2 checkpoints do not contain them).

Construction of the band edges (as in the AASIST paper's front-end):

* an FFT grid ``f = (sr // 2) * linspace(0, 1, nfft // 2 + 1)`` with ``nfft = 512``,
* mel scale ``m(f) = 2595 log10(1 + f / 700)``,
* ``out_channels + 1`` edges equally spaced in mel between ``m(f).min()`` and ``m(f).max()``,
  mapped back to Hz.

Filter ``i`` is ``hamming(K) * (2 f_hi/sr sinc(2 f_hi n/sr) - 2 f_lo/sr sinc(2 f_lo n/sr))``
for ``n = -(K-1)/2 .. (K-1)/2``; an even ``kernel_size`` is bumped to the next odd number.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["SincConv", "hz_to_mel", "mel_band_edges", "mel_to_hz", "sinc_band_pass_filters"]


def hz_to_mel(hz):
    """HTK mel scale: ``2595 * log10(1 + hz / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_band_edges(n_filters: int, sample_rate: int = 16000, nfft: int = 512) -> np.ndarray:
    """``n_filters + 1`` band edges (Hz, float64) equally spaced on the mel scale in ``[0, sr/2]``."""
    grid = int(sample_rate / 2) * np.linspace(0.0, 1.0, nfft // 2 + 1)
    mel = hz_to_mel(grid)
    return mel_to_hz(np.linspace(mel.min(), mel.max(), n_filters + 1))


def sinc_band_pass_filters(
    edges_hz: np.ndarray, kernel_size: int, sample_rate: int = 16000, float32_like_official: bool = True
) -> np.ndarray:
    """Hamming-windowed ideal band-pass FIR filters, shape ``(len(edges_hz) - 1, kernel_size)``.

    With ``float32_like_official=True`` (default) the sinc argument ``2 f n / sr``
    and the sinc itself are evaluated in float32 and the result is float32,
    which reproduces the official AASIST / RawNet2 filters bit for bit; with
    ``False`` everything is float64 (differs by ~1.5e-7 for AASIST).
    """
    if kernel_size % 2 == 0:
        raise ValueError("kernel_size must be odd")
    edges = np.asarray(edges_hz, dtype=np.float64)
    half = (kernel_size - 1) / 2
    n = np.arange(-half, half + 1, dtype=np.float64)  # (K,)
    window = np.hamming(kernel_size)
    if float32_like_official:
        n32 = n.astype(np.float32)

        def lowpass(fc: float) -> np.ndarray:
            arg = (np.float32(2.0 * fc) * n32) / np.float32(sample_rate)  # float32
            y = np.float32(np.pi) * np.where(arg == 0, np.float32(1e-20), arg)
            return (2.0 * fc / sample_rate) * (np.sin(y) / y).astype(np.float64)

        rows = [(lowpass(edges[i + 1]) - lowpass(edges[i])).astype(np.float32) for i in range(len(edges) - 1)]
        return window.astype(np.float32)[None, :] * np.stack(rows)

    def lowpass64(fc: np.ndarray) -> np.ndarray:  # (F,) -> (F, K)
        norm = 2.0 * fc[:, None] / sample_rate
        return norm * np.sinc(norm * n[None, :])

    return window[None, :] * (lowpass64(edges[1:]) - lowpass64(edges[:-1]))


class SincConv(nn.Module):
    """Fixed mel-scale sinc filter bank applied as a 1-D convolution.

    Args:
        out_channels: number of band-pass filters (70 in AASIST, 20 in RawNet2).
        kernel_size: filter length; an even value is increased by one (AASIST: 128 -> 129).
        sample_rate: sampling rate in Hz.
        in_channels: must be 1 (mono waveform).
        nfft: size of the frequency grid used to derive the mel range.

    Input ``(B, 1, T)`` or ``(B, T)``; output ``(B, out_channels, T - kernel_size + 1)``
    (no padding, stride 1, no bias).

    ``mask=True`` in :meth:`forward` zeroes a random block of ``A ~ U{0..19}``
    consecutive filters starting at a uniformly drawn index (frequency masking,
    the official ``Freq_aug``); the draw uses torch's global CPU RNG (or ``generator``, on
    its own device), whatever device the filters are on.

    dtype: the float32 filters are cast to the input dtype at call time, so the
    layer runs in the input's precision and under ``torch.autocast`` it follows
    the autocast dtype (conv1d is an autocast lower-precision op).
    """

    band_pass: torch.Tensor

    def __init__(
        self,
        out_channels: int,
        kernel_size: int,
        sample_rate: int = 16000,
        in_channels: int = 1,
        nfft: int = 512,
    ) -> None:
        super().__init__()
        if in_channels != 1:
            raise ValueError("SincConv only supports one input channel")
        if kernel_size % 2 == 0:
            kernel_size += 1
        self.out_channels = int(out_channels)
        self.kernel_size = int(kernel_size)
        self.sample_rate = int(sample_rate)
        edges = mel_band_edges(self.out_channels, self.sample_rate, nfft)
        filters = sinc_band_pass_filters(edges, self.kernel_size, self.sample_rate)
        self.edges_hz = edges  # float64 numpy, informative
        self.register_buffer("band_pass", torch.from_numpy(filters).float(), persistent=False)

    def _masked_filters(self, generator: Optional[torch.Generator]) -> torch.Tensor:
        # the two draws become Python ints: take them on the generator's device (the global CPU RNG
        # without one), never on the default device, so the mask is the same wherever the model runs
        rng_device = generator.device if generator is not None else torch.device("cpu")
        width = int(torch.randint(0, 20, (), generator=generator, device=rng_device))
        width = min(width, self.out_channels)
        start = int(torch.randint(0, self.out_channels - width + 1, (), generator=generator, device=rng_device))
        keep = torch.ones(self.out_channels, 1, device=self.band_pass.device, dtype=self.band_pass.dtype)
        keep[start : start + width] = 0
        return self.band_pass * keep

    def forward(self, x: torch.Tensor, mask: bool = False, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        filters = self._masked_filters(generator) if mask else self.band_pass
        filters = filters.to(dtype=x.dtype).unsqueeze(1)  # (C, 1, K)
        return F.conv1d(x, filters)

    def extra_repr(self) -> str:
        return f"out_channels={self.out_channels}, kernel_size={self.kernel_size}, sample_rate={self.sample_rate}"
