"""Audio loading and fixed-length cropping.

* :func:`load_audio` / :func:`load_audio_with_rate` read a file into float32
  samples (mono ``(T,)`` or ``(C, T)``), resampled to a target rate in Hz.
* :func:`audio_info` reads a file's header: ``(sample_rate, frames, channels)``.
* :func:`pad_or_crop`, :func:`random_crop` and :func:`sliding_windows` turn a
  1-D signal (numpy array or torch tensor) into fixed-length inputs.
"""

from __future__ import annotations

from dpda.audio.crop import (
    AASIST_NUM_SAMPLES,
    DPDA_NUM_SAMPLES,
    pad_or_crop,
    random_crop,
    sliding_windows,
)
from dpda.audio.io import (
    RESAMPLE_QUALITY,
    AudioInfo,
    audio_info,
    load_audio,
    load_audio_with_rate,
)

__all__ = [
    "AASIST_NUM_SAMPLES",
    "DPDA_NUM_SAMPLES",
    "RESAMPLE_QUALITY",
    "AudioInfo",
    "audio_info",
    "load_audio",
    "load_audio_with_rate",
    "pad_or_crop",
    "random_crop",
    "sliding_windows",
]
