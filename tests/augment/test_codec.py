"""Codec round trips (libsndfile in memory), alignment and the AAC availability error."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate

import dpda.augment.codec as codec_mod
from dpda.augment.codec import CODECS, MP3_PRIMING_SAMPLES, Codec, CodecError, align_to

SR = 16000


def speech_like(seconds: float = 1.0, sr: int = SR, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 25)) * (0.3 + np.sin(2 * np.pi * 3 * t) ** 2)
    x = x + 0.02 * np.random.default_rng(0).standard_normal(t.size) * np.abs(x).max()
    return (level * x / np.abs(x).max()).astype(np.float32)


def lag_of(y: np.ndarray, x: np.ndarray) -> int:
    c = correlate(y.astype(np.float64), x.astype(np.float64), mode="full", method="fft")
    return int(np.argmax(c)) - (x.size - 1)


@pytest.mark.parametrize(
    "name,kw",
    [
        ("mp3", {"bitrate": 16}),  # no LAME info frame: known priming removed
        ("mp3", {"bitrate": 64}),
        ("opus", {"bitrate": 12}),
        ("vorbis", {"quality": 0.2}),
        ("gsm", {}),
        ("mulaw", {}),
        ("alaw", {}),
    ],
)
def test_codec_changes_signal_keeps_length_and_alignment(name: str, kw: dict) -> None:
    x = speech_like(1.0)
    y, (info,) = Codec(name, **kw).apply(x, np.random.default_rng(0))
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - x)) > 1e-3  # really coded
    assert np.corrcoef(x, y)[0, 1] > 0.8
    assert abs(lag_of(y[2000:-2000], x[2000:-2000])) <= 1
    if name == "mp3" and kw["bitrate"] == 16:
        assert info["priming"] == MP3_PRIMING_SAMPLES


def test_codecs_at_other_rates_and_short_input() -> None:
    for sr in (8000, 22050, 44100):
        x = speech_like(0.5, sr=sr)
        for name in ("mp3", "opus", "gsm"):
            y = Codec(name, sr=sr)(x, np.random.default_rng(1))
            assert y.shape == x.shape and np.corrcoef(x, y)[0, 1] > 0.8, (name, sr)
    tiny = speech_like(0.01)
    for name in ("mp3", "opus", "vorbis", "gsm", "mulaw", "alaw"):
        assert Codec(name)(tiny, np.random.default_rng(0)).shape == tiny.shape


@pytest.mark.parametrize("name", ["mulaw", "alaw"])
def test_g711_round_trip_error_is_small(name: str) -> None:
    x = speech_like(1.0, sr=8000, level=0.5)
    y = Codec(name, sr=8000)(x, np.random.default_rng(0))
    err = y.astype(np.float64) - x
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(err**2))
    assert snr > 30.0  # G.711: ~38 dB for speech-level signals
    assert np.max(np.abs(err)) < 0.02


def test_gsm_band_limits_to_4khz() -> None:
    x = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    y = Codec("gsm")(x, np.random.default_rng(0))
    spec = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(y.size, 1 / SR)
    assert spec[f > 4100].sum() < 1e-4 * spec[f < 3500].sum()
    xs = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    assert xs[f > 4100].sum() > 0.3 * xs.sum()  # the input had plenty there


def test_bitrate_is_drawn_from_range_and_reproducible() -> None:
    c = Codec("mp3", bitrate=[24, 64])
    x = speech_like(0.3)
    rates = {c.apply(x, np.random.default_rng(s))[1][0]["bitrate_kbps"] for s in range(12)}
    assert len(rates) > 3 and all(24 <= r <= 64 for r in rates)
    a = Codec("opus")(x, np.random.default_rng(7))
    b = Codec("opus")(x, np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_option_errors() -> None:
    with pytest.raises(ValueError, match="unknown codec 'flac'"):
        Codec("flac")
    with pytest.raises(ValueError, match="fixed bitrate"):
        Codec("gsm", bitrate=16)
    with pytest.raises(ValueError, match="<= 160"):
        Codec("mp3", bitrate=320)  # MPEG-2 at 16 kHz
    with pytest.raises(ValueError, match="vorbis only"):
        Codec("mp3", quality=0.5)
    assert set(CODECS) >= {"mp3", "opus", "vorbis", "gsm", "mulaw", "alaw", "aac", "m4a"}


def test_aac_without_pyav_or_ffmpeg_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec_mod, "_pyav_available", lambda: False)
    monkeypatch.setattr(codec_mod, "_ffmpeg_path", lambda: None)
    for name in ("aac", "m4a"):
        with pytest.raises(CodecError) as e:
            Codec(name)
        assert str(e.value) == "codec 'aac' needs PyAV (pip install av) or ffmpeg on PATH; neither was found"
    monkeypatch.setattr(codec_mod, "_ffmpeg_path", lambda: "/usr/bin/ffmpeg")
    assert codec_mod.aac_backend() == "ffmpeg"
    monkeypatch.setattr(codec_mod, "_pyav_available", lambda: True)
    assert codec_mod.aac_backend() == "pyav"


def test_align_to_recovers_delay_but_not_periods() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4000).astype(np.float32)
    delayed = np.concatenate([np.zeros(1024, np.float32), x, np.zeros(100, np.float32)])
    out, lag = align_to(delayed, x, 2000)
    assert lag == 1024 and np.allclose(out, x)
    early = x[300:]
    out, lag = align_to(early, x, 2000)
    assert lag == -300 and np.allclose(out[300:], x[300:]) and np.all(out[:300] == 0)
    tone = np.sin(2 * np.pi * 440 * np.arange(4000) / SR).astype(np.float32)
    assert align_to(tone, tone, 2000)[1] == 0
