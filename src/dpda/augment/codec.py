"""Channel simulation by real lossy encoding and decoding (in memory).

:class:`Codec` ``(name, bitrate=..., quality=..., sr=16000)`` encodes the
signal, decodes it again and returns the decoded signal at the input rate and
length. Codecs and their settings:

========  ===================================  ========================  ===================
name      how                                  codec sample rate         setting (default)
========  ===================================  ========================  ===================
mp3       libsndfile (LAME / mpg123), CBR      ``sr`` if MP3 allows it   ``bitrate`` kbps
                                               (8k-48k), else 16 kHz     (16-64, drawn;
                                                                         32-64 at >= 32 kHz)
opus      libsndfile, Ogg Opus (VBR)           ``sr`` if 8/12/16/24/48k  ``bitrate`` kbps
                                               else 48 kHz               (8-32, drawn)
vorbis    libsndfile, Ogg Vorbis (VBR)         ``sr``                    ``quality`` 0..1
                                                                         (0-0.5, drawn)
gsm       libsndfile, WAV GSM 6.10 (13 kbps)   8 kHz                     --
mulaw     libsndfile, WAV G.711 mu-law         8 kHz                     --
alaw      libsndfile, WAV G.711 A-law          8 kHz                     --
aac, m4a  PyAV if installed, else ffmpeg CLI   ``sr``                    ``bitrate`` kbps
          (ADTS AAC-LC; m4a = same codec)                                (16-64, drawn)
========  ===================================  ========================  ===================

``bitrate`` / ``quality`` may be a number or a ``[low, high]`` range, drawn
uniformly per call (bitrates rounded to whole kbps). Bitrate control goes
through soundfile's ``compression_level`` (soundfile >= 0.12.1 with
libsndfile >= 1.1): for MP3, libsndfile maps it linearly onto the LAME
bitrate range of the MPEG version (MPEG-1 at >= 32 kHz: 32-320 kbps, MPEG-2
at 16-24 kHz: 8-160 kbps, MPEG-2.5 below: 8-64 kbps; LAME snaps to the
nearest legal bitrate, e.g. 16, 24, 32, 40, 48, 56, 64 kbps at 16 kHz), in
constant-bitrate mode. For Opus it maps onto 6-256 kbps per channel
(``(1 - level) * 250 + 6``). For Vorbis ``quality = 1 - compression_level``.
GSM 6.10 and G.711 have fixed bitrates (13 and 64 kbps).

Resampling to and from the codec rate uses soxr (quality ``VHQ``), which
band-limits: the 8 kHz codecs remove everything above 4 kHz.

Input samples are clipped to [-1, 1] before encoding (as a real channel
would). Alignment: libsndfile already removes the codec delay for Opus
(pre-skip), Vorbis and for MP3 files carrying a LAME info frame. Low-bitrate
MP3 frames are too small for that frame (e.g. <= 32 kbps at 16 kHz); the
decoder then returns more samples than were encoded, delayed by
``MP3_PRIMING_SAMPLES`` = 1105 (LAME's 576 + mpg123's 529), which are
dropped. As a safety net, and for AAC (ADTS carries no priming information;
~1024 samples of encoder delay), the decoded signal is then cross-correlated
with the input over lags up to ``max_delay_s`` seconds and shifted by the
best lag when that lag's correlation exceeds the lag-0 correlation by more
than 10 % (so periodic signals are not shifted by a period). The result is
finally cropped or zero-padded to the input length.

AAC needs PyAV (``pip install av``) or an ``ffmpeg`` executable on ``PATH``;
without either, constructing ``Codec('aac')`` raises :class:`CodecError`.
"""

from __future__ import annotations

import importlib.util
import io
import numbers
import shutil
import subprocess
from typing import Any, Dict, Optional, Tuple

import numpy as np
import soundfile as sf
import soxr

from dpda.audio.io import RESAMPLE_QUALITY
from dpda.augment.base import Augmentation, Range, Trace, as_signal, check_rng, check_sr, draw, parse_range
from dpda.errors import DpdaError

#: Codec names accepted by :class:`Codec`.
CODECS: Tuple[str, ...] = ("mp3", "opus", "vorbis", "gsm", "mulaw", "alaw", "aac", "m4a")
#: Default bitrate ranges (kbps) / Vorbis quality range.
DEFAULT_BITRATE_KBPS: Dict[str, Range] = {"mp3": (16.0, 64.0), "opus": (8.0, 32.0), "aac": (16.0, 64.0), "m4a": (16.0, 64.0)}
DEFAULT_VORBIS_QUALITY: Range = (0.0, 0.5)

#: LAME encoder delay (576) + mpg123 decoder delay (529), in samples at the codec rate.
MP3_PRIMING_SAMPLES = 1105
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_FIXED_BITRATE = {"gsm": "13 kbps", "mulaw": "64 kbps", "alaw": "64 kbps"}
#: soundfile (format, subtype) per libsndfile codec.
_SF_FORMAT = {
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "opus": ("OGG", "OPUS"),
    "vorbis": ("OGG", "VORBIS"),
    "gsm": ("WAV", "GSM610"),
    "mulaw": ("WAV", "ULAW"),
    "alaw": ("WAV", "ALAW"),
}


_SF_ERRORS: Tuple[type, ...] = tuple(e for e in (getattr(sf, "SoundFileError", None), RuntimeError) if e is not None)


class CodecError(DpdaError, RuntimeError):
    """A codec is unavailable or failed to encode / decode."""


def _mp3_bitrate_range(rate: int) -> Tuple[float, float]:
    if rate >= 32000:
        return 32.0, 320.0
    if rate >= 16000:
        return 8.0, 160.0
    return 8.0, 64.0


def mp3_compression_level(kbps: float, rate: int) -> float:
    """soundfile ``compression_level`` giving a CBR MP3 of ``kbps`` at ``rate`` Hz (libsndfile's linear map)."""
    lo, hi = _mp3_bitrate_range(rate)
    # libsndfile computes int(hi - level * (hi - lo)); aim half a kbps above to survive the truncation
    return float(np.clip((hi - (kbps + 0.5)) / (hi - lo), 0.0, 1.0))


def opus_compression_level(kbps: float) -> float:
    """soundfile ``compression_level`` giving an Opus target of ``kbps`` (mono; libsndfile: 6 + 250 * (1 - level))."""
    return float(np.clip(1.0 - (kbps * 1000.0 + 0.5 - 6000.0) / 250000.0, 0.0, 1.0))


def _pyav_available() -> bool:
    return importlib.util.find_spec("av") is not None


def _ffmpeg_path() -> Optional[str]:
    return shutil.which("ffmpeg")


def aac_backend() -> str:
    """``'pyav'`` or ``'ffmpeg'``; raises :class:`CodecError` when neither is available."""
    if _pyav_available():
        return "pyav"
    if _ffmpeg_path():
        return "ffmpeg"
    raise CodecError("codec 'aac' needs PyAV (pip install av) or ffmpeg on PATH; neither was found")


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out or x.size == 0:
        return x.astype(np.float32, copy=False)
    return np.asarray(soxr.resample(x.astype(np.float32, copy=False), sr_in, sr_out, quality=RESAMPLE_QUALITY), dtype=np.float32)


def _sf_roundtrip(x: np.ndarray, rate: int, fmt: str, subtype: str, **kw: Any) -> np.ndarray:
    buf = io.BytesIO()
    try:
        sf.write(buf, x, rate, format=fmt, subtype=subtype, **kw)
        buf.seek(0)
        y, _ = sf.read(buf, dtype="float32", always_2d=True)
    except _SF_ERRORS as e:
        raise CodecError(f"{fmt}/{subtype} round trip at {rate} Hz failed: {e}") from e
    return y[:, 0]


def _aac_pyav(x: np.ndarray, rate: int, kbps: int) -> Tuple[np.ndarray, int]:  # pragma: no cover - needs PyAV
    import av

    pcm = (np.clip(x, -1.0, 1.0) * 32767.0).round().astype(np.int16)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="adts") as out:
        stream = out.add_stream("aac", rate=rate)
        cc = stream.codec_context
        cc.bit_rate = kbps * 1000
        try:
            cc.layout = "mono"
        except (AttributeError, TypeError, ValueError):
            pass
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buf.seek(0)
    chunks = []
    out_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    with av.open(buf, mode="r", format="adts") as inp:
        for frame in inp.decode(audio=0):
            for f in resampler.resample(frame) or []:
                chunks.append(f.to_ndarray().reshape(-1))
    for f in resampler.resample(None) or []:
        chunks.append(f.to_ndarray().reshape(-1))
    y = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return y, out_rate


def _aac_ffmpeg(x: np.ndarray, rate: int, kbps: int) -> Tuple[np.ndarray, int]:
    exe = _ffmpeg_path()
    if not exe:
        raise CodecError("codec 'aac' needs PyAV (pip install av) or ffmpeg on PATH; neither was found")
    base = [exe, "-hide_banner", "-loglevel", "error", "-nostdin"]
    raw = np.clip(x, -1.0, 1.0).astype("<f4").tobytes()
    enc = base + ["-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0", "-c:a", "aac", "-b:a", f"{kbps}k", "-f", "adts", "pipe:1"]
    dec = base + ["-f", "aac", "-i", "pipe:0", "-f", "f32le", "-ac", "1", "-ar", str(rate), "pipe:1"]
    try:
        coded = subprocess.run(enc, input=raw, capture_output=True, check=True).stdout
        pcm = subprocess.run(dec, input=coded, capture_output=True, check=True).stdout
    except subprocess.CalledProcessError as e:
        msg = e.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CodecError(f"ffmpeg AAC round trip failed: {msg[-1] if msg else e}") from e
    return np.frombuffer(pcm, dtype="<f4").astype(np.float32), rate


def align_to(y: np.ndarray, x: np.ndarray, max_lag: int, *, margin: float = 1.1) -> Tuple[np.ndarray, int]:
    """Shift ``y`` to best match ``x`` (lag searched in ``[-max_lag, max_lag]``), crop / zero-pad to ``len(x)``.

    Returns ``(aligned, lag)`` with ``y[n + lag] ~ x[n]``. The lag is kept at 0
    unless the best lag's correlation exceeds lag 0's by the factor ``margin``.
    """
    n = x.size
    lag = 0
    if max_lag > 0 and n > 0 and y.size > 0:
        size = 1 << int(np.ceil(np.log2(n + y.size)))
        c = np.fft.irfft(np.fft.rfft(y.astype(np.float64), size) * np.conj(np.fft.rfft(x.astype(np.float64), size)), size)
        lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
        vals = c[lags % size]
        best = int(lags[int(np.argmax(vals))])
        c0 = float(c[0])
        if best != 0 and float(c[best % size]) > margin * max(c0, 0.0):
            lag = best
    out = np.zeros(n, dtype=np.float32)
    if lag >= 0:
        seg = y[lag : lag + n]
        out[: seg.size] = seg
    else:
        seg = y[: n + lag]
        out[-lag : -lag + seg.size] = seg
    return out, lag


class Codec(Augmentation):
    """Encode and decode with a lossy codec; same length and rate as the input.

    Args:
        name: one of mp3, opus, vorbis, gsm, mulaw, alaw, aac, m4a.
        bitrate: kbps, number or ``[low, high]`` (mp3, opus, aac/m4a).
        quality: Vorbis quality in [0, 1], number or ``[low, high]``.
        sr: sample rate (Hz) of the signals.
        align: compensate residual codec delay by cross-correlation.
        max_delay_s: largest delay (seconds) searched when aligning.

    Raises:
        ValueError: unknown codec or option not applicable to it.
        CodecError: ``aac``/``m4a`` without PyAV or ffmpeg.
    """

    def __init__(
        self,
        name: str,
        *,
        bitrate: Any = None,
        quality: Any = None,
        sr: int = 16000,
        align: bool = True,
        max_delay_s: float = 0.2,
    ) -> None:
        self.sr = check_sr(sr)
        key = str(name).lower()
        if key not in CODECS:
            raise ValueError(f"unknown codec {name!r}; expected one of {', '.join(CODECS)}")
        self.name = key
        self.align = bool(align)
        if isinstance(max_delay_s, bool) or not isinstance(max_delay_s, numbers.Real) or max_delay_s < 0:
            raise ValueError(f"max_delay_s must be a number of seconds >= 0, got {max_delay_s!r}")
        self.max_delay_s = float(max_delay_s)
        self.bitrate: Optional[Range] = None
        self.quality: Optional[Range] = None
        self.backend = "soundfile"

        if key in _FIXED_BITRATE:
            self.rate = 8000
            if bitrate is not None:
                raise ValueError(f"codec {key!r} has a fixed bitrate ({_FIXED_BITRATE[key]}); 'bitrate' does not apply")
        elif key == "mp3":
            self.rate = self.sr if self.sr in _MP3_RATES else 16000
            lo, hi = _mp3_bitrate_range(self.rate)
            if bitrate is None:  # default range, raised to the MPEG-1 minimum (32 kbps) at >= 32 kHz
                d = DEFAULT_BITRATE_KBPS[key]
                self.bitrate = (max(d[0], lo), max(d[1], lo))
            else:
                self.bitrate = parse_range(bitrate, "bitrate (kbps)", lo=lo, hi=hi)
        elif key == "opus":
            self.rate = self.sr if self.sr in _OPUS_RATES else 48000
            self.bitrate = DEFAULT_BITRATE_KBPS[key] if bitrate is None else parse_range(bitrate, "bitrate (kbps)", lo=6, hi=256)
        elif key == "vorbis":
            self.rate = self.sr
            if bitrate is not None:
                raise ValueError("codec 'vorbis' is set by quality (0..1), not bitrate")
        else:  # aac, m4a
            self.rate = self.sr
            self.bitrate = DEFAULT_BITRATE_KBPS[key] if bitrate is None else parse_range(bitrate, "bitrate (kbps)", lo=8, hi=320)
            self.backend = aac_backend()
        if quality is not None and key != "vorbis":
            raise ValueError(f"'quality' applies to vorbis only; codec {key!r} does not take it")
        if key == "vorbis":
            self.quality = DEFAULT_VORBIS_QUALITY if quality is None else parse_range(quality, "quality", lo=0.0, hi=1.0)

    def _roundtrip(self, x: np.ndarray, rng: np.random.Generator, info: Dict[str, Any]) -> Tuple[np.ndarray, int]:
        key = self.name
        if key in ("aac", "m4a"):
            kbps = int(round(draw(rng, self.bitrate)))  # type: ignore[arg-type]
            info["bitrate_kbps"] = kbps
            fn = _aac_pyav if self.backend == "pyav" else _aac_ffmpeg
            try:
                return fn(x, self.rate, kbps)
            except CodecError:
                raise
            except Exception as e:  # pragma: no cover - backend specific
                raise CodecError(f"AAC round trip with {self.backend} failed: {e}") from e
        fmt, subtype = _SF_FORMAT[key]
        kw: Dict[str, Any] = {}
        if key == "mp3":
            kbps = int(round(draw(rng, self.bitrate)))  # type: ignore[arg-type]
            info["bitrate_kbps"] = kbps
            kw = {"compression_level": mp3_compression_level(kbps, self.rate), "bitrate_mode": "CONSTANT"}
        elif key == "opus":
            kbps = int(round(draw(rng, self.bitrate)))  # type: ignore[arg-type]
            info["bitrate_kbps"] = kbps
            kw = {"compression_level": opus_compression_level(kbps)}
        elif key == "vorbis":
            q = draw(rng, self.quality)  # type: ignore[arg-type]
            info["quality"] = q
            kw = {"compression_level": float(np.clip(1.0 - q, 0.0, 1.0))}
        y = _sf_roundtrip(x, self.rate, fmt, subtype, **kw)
        if key == "mp3" and y.size > x.size:
            # no LAME info frame (it does not fit in low-bitrate frames): the decoder
            # keeps the encoder + decoder delay, which we remove (known priming)
            info["priming"] = MP3_PRIMING_SAMPLES
            y = y[MP3_PRIMING_SAMPLES:]
        return y, self.rate

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Trace]:
        check_rng(rng)
        x = as_signal(x)
        info: Dict[str, Any] = {"step": "codec", "codec": self.name, "rate": self.rate}
        if x.size == 0:
            return x.copy(), [info]
        xc = _resample(np.clip(x, -1.0, 1.0), self.sr, self.rate)
        y, rate = self._roundtrip(xc, rng, info)
        y = _resample(y, rate, self.sr)
        max_lag = int(round(self.max_delay_s * self.sr)) if self.align else 0
        out, lag = align_to(y, x, max_lag)
        info["lag"] = lag
        return out, [info]

    def __repr__(self) -> str:
        extra = ""
        if self.bitrate is not None:
            extra = f", bitrate={self.bitrate[0]:g}-{self.bitrate[1]:g} kbps"
        if self.quality is not None:
            extra = f", quality={self.quality[0]:g}-{self.quality[1]:g}"
        return f"Codec({self.name!r}{extra}, rate={self.rate}, sr={self.sr})"


__all__ = ["CODECS", "Codec", "CodecError", "aac_backend", "align_to"]
