"""Tests for dpda.audio.io: decoding, down-mixing, resampling, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from dpda.audio import AudioInfo, audio_info, load_audio, load_audio_with_rate
from dpda.errors import AudioError, DpdaError


def _sine(freq: float, sr: int, seconds: float = 0.5, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1.0 / sr)[np.argmax(spec)])


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# --- round trips ---------------------------------------------------------------


@pytest.mark.parametrize("fmt, subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("WAV", "FLOAT")])
def test_round_trip_lossless(tmp_path, fmt, subtype):
    x = _sine(440, 16000)
    p = tmp_path / f"a.{fmt.lower()}"
    sf.write(p, x, 16000, format=fmt, subtype=subtype)
    y = load_audio(p)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-4)


def _can_write(fmt: str, subtype: str) -> bool:
    return fmt in sf.available_formats() and subtype in sf.available_subtypes(fmt)


@pytest.mark.parametrize(
    "fmt, subtype, ext",
    [
        pytest.param(
            "MP3", "MPEG_LAYER_III", "mp3",
            marks=pytest.mark.skipif(
                not _can_write("MP3", "MPEG_LAYER_III"),
                reason="this libsndfile build cannot write MP3",
            ),
        ),
        pytest.param(
            "OGG", "VORBIS", "ogg",
            marks=pytest.mark.skipif(
                not _can_write("OGG", "VORBIS"),
                reason="this libsndfile build cannot write OGG/Vorbis",
            ),
        ),
    ],
)
def test_lossy_formats_load(tmp_path, fmt, subtype, ext):
    x = _sine(440, 16000, seconds=1.0)
    p = tmp_path / f"a.{ext}"
    sf.write(p, x, 16000, format=fmt, subtype=subtype)
    y = load_audio(p)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - len(x)) <= 0.05 * len(x)
    assert np.all(np.abs(y) <= 1.0)
    assert abs(_peak_hz(y, 16000) - 440) < 5


def test_native_rate_and_info(tmp_path):
    p = tmp_path / "a.wav"
    sf.write(p, np.zeros((800, 2), np.float32), 8000)
    y, sr = load_audio_with_rate(p, target_sr=None)
    assert sr == 8000 and y.shape == (800,)
    info = audio_info(p)
    assert isinstance(info, AudioInfo)
    assert tuple(info) == (8000, 800, 2)


# --- channels ------------------------------------------------------------------


def test_stereo_downmix_is_channel_mean(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.9, 0.9, size=(1000, 2)).astype(np.float32)
    p = tmp_path / "st.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    y = load_audio(p)
    assert y.shape == (1000,) and y.dtype == np.float32
    np.testing.assert_allclose(y, x.mean(axis=1), atol=1e-6)


def test_mono_false_returns_channels_first(tmp_path):
    x = np.stack([_sine(440, 16000), _sine(880, 16000)], axis=1)
    p = tmp_path / "st.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    y = load_audio(p, mono=False)
    assert y.shape == (2, len(x)) and y.dtype == np.float32
    np.testing.assert_allclose(y, x.T, atol=1e-6)
    # mono file with mono=False keeps a channel axis
    sf.write(p, x[:, 0], 16000, subtype="FLOAT")
    assert load_audio(p, mono=False).shape == (1, len(x))


def test_mono_false_with_resampling(tmp_path):
    x = np.stack([_sine(440, 44100), _sine(880, 44100)], axis=1)
    p = tmp_path / "st.wav"
    sf.write(p, x, 44100)
    y = load_audio(p, mono=False)
    assert y.shape == (2, round(len(x) * 16000 / 44100))


# --- resampling ----------------------------------------------------------------


@pytest.mark.parametrize("sr", [44100, 8000, 22050])
def test_resample_length_and_frequency(tmp_path, sr):
    x = _sine(440, sr, seconds=1.0)
    p = tmp_path / "r.wav"
    sf.write(p, x, sr, subtype="FLOAT")
    y, out_sr = load_audio_with_rate(p, 16000)
    assert out_sr == 16000 and y.dtype == np.float32
    assert len(y) == round(len(x) * 16000 / sr)
    assert abs(_peak_hz(y, 16000) - 440) < 2
    assert abs(_rms(y) - _rms(x)) < 0.02


def test_downsampling_suppresses_content_above_nyquist(tmp_path):
    # A 12 kHz tone cannot be represented at 16 kHz (Nyquist 8 kHz); a naive
    # resampler would alias it to 4 kHz.
    x = _sine(12000, 44100, seconds=1.0)
    p = tmp_path / "hi.wav"
    sf.write(p, x, 44100, subtype="FLOAT")
    y = load_audio(p, 16000)
    assert _rms(y) < 1e-2 * _rms(x)


def test_float_values_above_one_are_not_clipped(tmp_path):
    x = np.array([0.0, 1.5, -2.0, 0.25] * 10, np.float32)
    p = tmp_path / "loud.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(p), x)


def test_invalid_arguments(tmp_path):
    p = tmp_path / "a.wav"
    sf.write(p, _sine(440, 16000), 16000)
    with pytest.raises(ValueError, match="target_sr"):
        load_audio(p, 0)
    with pytest.raises(ValueError, match="max_channels"):
        load_audio(p, max_channels=0)


# --- bad files -----------------------------------------------------------------


def _raises(path, *fragments, **kwargs):
    with pytest.raises(AudioError) as ei:
        load_audio(path, **kwargs)
    msg = str(ei.value)
    assert str(path) in msg
    for fragment in fragments:
        assert fragment in msg, msg
    assert isinstance(ei.value, DpdaError) and isinstance(ei.value, ValueError)
    return msg


def test_missing_file(tmp_path):
    _raises(tmp_path / "nope.wav", "not found")
    with pytest.raises(AudioError, match="not found"):
        audio_info(tmp_path / "nope.wav")


def test_directory(tmp_path):
    d = tmp_path / "dir.wav"
    d.mkdir()
    _raises(d, "is a directory")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    _raises(p, "empty (0 bytes)")


def test_garbage_bytes(tmp_path):
    p = tmp_path / "garbage.wav"
    p.write_bytes(b"this is not audio at all " * 20)
    _raises(p, "cannot decode", "format not recognised or file corrupt")
    with pytest.raises(AudioError, match="cannot decode"):
        audio_info(p)


def test_zero_frames(tmp_path):
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros((0, 1), np.float32), 16000)
    _raises(p, "0 frames")


def test_nan_samples(tmp_path):
    x = _sine(440, 16000)
    x[[3, 10, 20]] = np.nan
    p = tmp_path / "nan.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    _raises(p, "3 NaN")


def test_inf_samples(tmp_path):
    x = _sine(440, 16000)
    x[5] = np.inf
    x[6] = -np.inf
    p = tmp_path / "inf.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    msg = _raises(p, "2 inf")
    assert "NaN" not in msg


def test_too_many_channels(tmp_path):
    p = tmp_path / "six.wav"
    sf.write(p, np.zeros((100, 6), np.float32), 16000)
    _raises(p, "has 6 channels, expected at most 2", max_channels=2)
    assert load_audio(p, max_channels=6).shape == (100,)


def test_too_short_to_resample(tmp_path):
    p = tmp_path / "one.wav"
    sf.write(p, np.array([0.1], np.float32), 48000)
    _raises(p, "too short to resample")


def _truncated_wav(tmp_path, keep_bytes: int = 2000):
    """A 16-bit WAV whose header says 125000 samples (7.8 s at 16 kHz), cut to ``keep_bytes`` bytes."""
    full = tmp_path / "full.wav"
    sf.write(full, _sine(440, 16000, seconds=125000 / 16000), 16000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:keep_bytes])
    return cut


def test_truncated_wav_is_an_error_not_a_short_file(tmp_path):
    cut = _truncated_wav(tmp_path)
    # libsndfile alone takes the cut file for a complete one of (2000 - 44) / 2 = 978 samples
    assert sf.info(str(cut)).frames == 978
    _raises(cut, "truncated", "header says 125000 samples", "file holds 978")
    _raises(cut, "truncated", target_sr=None)


def test_wav_with_trailing_chunks_or_odd_sizes_is_not_truncated(tmp_path):
    x = _sine(440, 16000, seconds=0.1)
    p = tmp_path / "tail.wav"
    sf.write(p, x, 16000, subtype="PCM_16")
    p.write_bytes(p.read_bytes() + b"LIST\x04\x00\x00\x00abcd")  # a chunk after the data
    np.testing.assert_allclose(load_audio(p), x, atol=1e-4)
    st = tmp_path / "st24.wav"
    sf.write(st, np.stack([x, x], axis=1), 16000, subtype="PCM_24")
    assert load_audio(st).shape == x.shape
