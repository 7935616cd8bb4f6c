"""Reading audio files into float32 arrays.

Decoding goes through :mod:`soundfile` (libsndfile), which reads WAV, FLAC,
MP3 and OGG/Vorbis among others. Resampling uses :mod:`soxr` at quality
``"VHQ"`` (very high quality, band-limited: content above the new Nyquist
frequency is removed rather than aliased).

Every problem with a file is reported as :class:`dpda.errors.AudioError`,
whose message is ``"<path>: <problem>"``.

Truncated WAV files: libsndfile sizes a WAV by the bytes actually present, so
a file cut short (an interrupted copy or download) reads as a complete, short
file. :func:`load_audio` compares the length the header's ``data`` chunk
declares with what could be read and reports ``"truncated: header says N
samples, file holds M"``. For other formats a read that returns fewer frames
than libsndfile reports from the header is reported the same way (MP3, whose
length is an estimate, excepted); a cut FLAC usually fails to decode instead.

Units: sample rates are in Hz; lengths are in samples (frames). A mono
signal has shape ``(T,)``; a multi-channel one has shape ``(C, T)``.
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple, Optional, Tuple

import numpy as np
import soundfile as sf
import soxr

from dpda.errors import AudioError, PathLike

#: soxr quality preset used for resampling ("VHQ": very high quality).
RESAMPLE_QUALITY = "VHQ"

# Errors that soundfile raises when libsndfile cannot open or decode a file.
# ``LibsndfileError`` and ``SoundFileError`` derive from RuntimeError in
# current releases; RuntimeError also covers older ones.
_DECODE_ERRORS: Tuple[type, ...] = tuple(
    e
    for e in (
        getattr(sf, "LibsndfileError", None),
        getattr(sf, "SoundFileError", None),
        RuntimeError,
    )
    if e is not None
)


class AudioInfo(NamedTuple):
    """Header facts about an audio file."""

    sample_rate: int
    """Native sample rate in Hz."""
    frames: int
    """Length in samples per channel."""
    channels: int
    """Number of channels."""


def _check_path(path: PathLike) -> str:
    """Raise AudioError unless *path* is an existing, non-empty regular file."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise AudioError(p, "file not found")
    if os.path.isdir(p):
        raise AudioError(p, "is a directory, not an audio file")
    if not os.path.isfile(p):
        raise AudioError(p, "is not a regular file")
    if os.path.getsize(p) == 0:
        raise AudioError(p, "file is empty (0 bytes)")
    if not os.access(p, os.R_OK):
        raise AudioError(p, "permission denied: file is not readable")
    return p


def _decode_failure(path: str, exc: BaseException) -> AudioError:
    return AudioError(
        path, f"cannot decode audio (format not recognised or file corrupt): {exc}"
    )


def wav_header_frames(path: PathLike) -> Optional[int]:
    """Frames the ``data`` chunk of a RIFF/RIFX WAVE header declares, or None.

    None when the file is no RIFF/RIFX WAVE file (RF64, W64, FLAC, ...), when
    the header leaves the length open (a data size of 0 or 0xFFFFFFFF, as
    streaming writers do) or cannot be walked. Frames are per channel:
    ``data size // block align``.
    """
    try:
        with open(os.fspath(path), "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
                return None
            order = "<" if head[:4] == b"RIFF" else ">"
            block_align = 0
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid = chunk[:4]
                (size,) = struct.unpack(order + "I", chunk[4:])
                if cid == b"fmt ":
                    body = f.read(min(size, 16))
                    if len(body) < 14:
                        return None
                    (block_align,) = struct.unpack(order + "H", body[12:14])
                    f.seek(size - len(body) + (size & 1), os.SEEK_CUR)
                elif cid == b"data":
                    if block_align <= 0 or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                else:
                    f.seek(size + (size & 1), os.SEEK_CUR)
    except (OSError, struct.error):
        return None


def _declared_frames(path: str, f: "sf.SoundFile") -> Optional[int]:
    """Frames the header of an open file declares, where that is a promise (not MP3's estimate)."""
    if str(f.format).upper() in ("WAV", "WAVEX"):
        return wav_header_frames(path)
    if str(f.format).upper() in ("MPEG", "MP3") or "MPEG" in str(f.subtype).upper():
        return None
    return int(f.frames) if int(f.frames) > 0 else None


def audio_info(path: PathLike) -> AudioInfo:
    """Return ``(sample_rate, frames, channels)`` of an audio file from its header.

    ``sample_rate`` is in Hz, ``frames`` in samples per channel. For
    compressed formats (MP3) the frame count is libsndfile's estimate.

    Raises:
        AudioError: the file is missing, a directory, empty or not decodable.
    """
    p = _check_path(path)
    try:
        info = sf.info(p)
    except _DECODE_ERRORS as exc:
        raise _decode_failure(p, exc) from exc
    return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels))


def _check_rate(target_sr: Optional[int]) -> None:
    if target_sr is None:
        return
    if isinstance(target_sr, bool) or not isinstance(target_sr, (int, np.integer)):
        raise ValueError(f"target_sr must be a positive integer (Hz) or None, got {target_sr!r}")
    if target_sr <= 0:
        raise ValueError(f"target_sr must be a positive integer (Hz) or None, got {target_sr}")


def load_audio_with_rate(
    path: PathLike,
    target_sr: Optional[int] = 16000,
    *,
    mono: bool = True,
    max_channels: Optional[int] = None,
) -> Tuple[np.ndarray, int]:
    """Load an audio file; return ``(samples, sample_rate)``.

    Same as :func:`load_audio` but also returns the sample rate (Hz) of the
    returned samples: ``target_sr``, or the file's native rate when
    ``target_sr`` is None.
    """
    _check_rate(target_sr)
    if max_channels is not None and max_channels < 1:
        raise ValueError(f"max_channels must be >= 1 or None, got {max_channels}")
    p = _check_path(path)

    try:
        with sf.SoundFile(p) as f:
            sr = int(f.samplerate)
            channels = int(f.channels)
            if max_channels is not None and channels > max_channels:
                raise AudioError(
                    p, f"has {channels} channels, expected at most {max_channels}"
                )
            declared = _declared_frames(p, f)
            data = f.read(dtype="float32", always_2d=True)  # (T, C)
    except _DECODE_ERRORS as exc:
        raise _decode_failure(p, exc) from exc

    if declared is not None and data.shape[0] < declared:
        raise AudioError(
            p,
            f"truncated: header says {declared} samples, file holds {data.shape[0]} "
            f"({declared / sr:.3f} s declared, {data.shape[0] / sr:.3f} s present at {sr} Hz)",
        )
    if data.shape[0] == 0:
        raise AudioError(p, "contains no audio (0 frames)")

    n_nan = int(np.count_nonzero(np.isnan(data)))
    n_inf = int(np.count_nonzero(np.isinf(data)))
    if n_nan or n_inf:
        parts = []
        if n_nan:
            parts.append(f"{n_nan} NaN")
        if n_inf:
            parts.append(f"{n_inf} inf")
        raise AudioError(
            p, f"contains non-finite samples: {' and '.join(parts)} value(s) out of {data.size}"
        )

    if mono and data.shape[1] > 1:
        data = data.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)

    out_sr = sr
    if target_sr is not None and int(target_sr) != sr:
        out_sr = int(target_sr)
        frames_in = data.shape[0]
        data = soxr.resample(data, sr, out_sr, quality=RESAMPLE_QUALITY)
        if data.shape[0] == 0:
            raise AudioError(
                p,
                f"too short to resample: {frames_in} frame(s) at {sr} Hz "
                f"give no samples at {out_sr} Hz",
            )

    data = np.asarray(data, dtype=np.float32)
    if mono:
        return np.ascontiguousarray(data[:, 0]), out_sr
    return np.ascontiguousarray(data.T), out_sr


def load_audio(
    path: PathLike,
    target_sr: Optional[int] = 16000,
    *,
    mono: bool = True,
    max_channels: Optional[int] = None,
) -> np.ndarray:
    """Load an audio file as float32 samples at ``target_sr`` Hz.

    Args:
        path: a WAV, FLAC, MP3, OGG (or any other libsndfile-readable) file.
        target_sr: sample rate of the result in Hz. When the file's rate
            differs it is resampled with soxr at quality ``"VHQ"``
            (band-limited). ``None`` keeps the file's native rate.
        mono: if True (default), down-mix by averaging the channels and
            return shape ``(T,)``; if False return shape ``(C, T)``.
        max_channels: if given, a file with more channels than this is
            rejected (checked before down-mixing).

    Returns:
        float32 array of shape ``(T,)`` (``mono=True``) or ``(C, T)``, with
        ``T`` in samples at the output rate. Integer PCM files decode to
        [-1, 1). Nothing is clipped: a float file holding values with
        ``|x| > 1`` is returned as it is, and band-limited resampling of a
        signal near full scale may overshoot 1 slightly.

    Raises:
        AudioError: the file is missing, a directory, empty (0 bytes), not
            decodable, truncated (fewer samples than its header declares),
            holds 0 frames, holds NaN or inf samples, or has more
            than ``max_channels`` channels.
        ValueError: ``target_sr`` or ``max_channels`` is invalid.
    """
    data, _ = load_audio_with_rate(
        path, target_sr, mono=mono, max_channels=max_channels
    )
    return data
