"""The signal model of the synthetic corpus (:mod:`dpda.data.synthetic`): one utterance at a time.

Nothing it makes is speech (see the warning in :mod:`dpda.data.synthetic`).

:func:`synthesize_utterance` makes one file's samples from ``(seed, split,
index, label, attack, speaker)``; :mod:`dpda.data.synthetic` plans the
splits and writes the corpus. One file of about 480 lines (50 of them this
description): the code follows the description below step by step, source,
vocal tract, attacks, room and channel, and reads best in that order.

"Bona fide" signals (a source-filter model)
-------------------------------------------
* Each speaker has its own mean f0 (95-140 Hz or 165-250 Hz), formant scaling,
  jitter (0.4-2 %), shimmer, breathiness, glottal tilt and speaking rate.
* Syllable-like units: an optional unvoiced onset (band-pass noise, like a
  fricative) and then a voiced nucleus. Each nucleus has a vowel target from a
  formant table, and each syllable gets a raised-cosine amplitude envelope and
  a random gain. There are pauses, and silence at the start and end.
* Excitation: a glottal pulse train. The f0 contour has declination, slow
  intonation and per-syllable accents. Each period gets jitter and each pulse
  gets shimmer. Pulses are placed at fractional sample positions and shaped by
  a glottal low-pass filter and lip radiation. Pitch-synchronous aspiration
  noise is mixed in.
* Vocal tract: a cascade of 4-5 second-order resonators (F1..F5). Their
  frequencies and bandwidths follow smoothed, wiggly vowel trajectories, and
  the coefficients change every 8 ms.
* Then a short synthetic room response, with a random wet level, is applied
  to 70 % of the files. Mild background noise is added (30-50 dB SNR).

"Spoof" signals (four attack systems)
-------------------------------------
Each attack has a strength drawn at random per file, so that every cue shows up
to a different degree.

* ``V1`` -- a parametric vocoder with over-smoothing. The excitation is buzzy
  and (nearly) strictly periodic: jitter, shimmer, micro-prosody and aspiration
  are scaled down by the strength (0.6-1), and the glottal tilt is flatter. The
  spectral envelope is over-smoothed: the formant bandwidths are up to 3.5
  times wider, and the formant trajectories are smoothed and pulled towards
  their mean.
* ``V2`` -- Griffin-Lim phase reconstruction from the STFT magnitude of a bona
  fide-like signal (512-point frames, hop 128). It starts from the true phase
  plus Gaussian phase noise (1.5-3 rad standard deviation) and runs 1-4
  iterations.
* ``V3`` -- band-limited resynthesis. Above a random cut-off (2.5-4 kHz), the
  STFT is replaced by noise shaped by a smoothed envelope of the original. The
  harmonics are lost, as when a mel vocoder fills the top bands with noise.
* ``V4`` -- frame-wise quantisation. The STFT log-magnitudes (256-point
  frames) are rounded to steps of 3-6 dB. The signal is then cut into 10-20 ms
  frames, and each frame is read from a position shifted by up to 0.3-1.5 ms.
  Each frame gain is rounded to steps of 2-5 dB. The hard cuts between frames
  leave overlap-add discontinuities.

Both classes then go through the same room and background-noise stage. Their
loudness is normalised to a random RMS between -32 and -18 dBFS, and every file
is exactly ``seconds`` long. Neither level nor duration tells the classes apart.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from scipy import signal

__all__ = ["ATTACKS", "CORPUS_VERSION", "SPEAKERS", "SPLITS", "synthesize_utterance"]

#: bump when the generated audio changes, so that old corpora are not reused
CORPUS_VERSION = 1

#: split names, in generation order
SPLITS = ("train", "dev", "test", "test_shifted")

#: speakers of each split (``test_shifted`` uses the ``test`` speakers)
SPEAKERS: Dict[str, Tuple[str, ...]] = {
    "train": tuple(f"S{i:02d}" for i in range(1, 9)),
    "dev": tuple(f"S{i:02d}" for i in range(9, 12)),
    "test": tuple(f"S{i:02d}" for i in range(12, 16)),
}
SPEAKERS["test_shifted"] = SPEAKERS["test"]

#: attack id -> one-line description
ATTACKS: Dict[str, str] = {
    "V1": "over-smoothed spectral envelope + buzzy, strictly periodic excitation",
    "V2": "Griffin-Lim phase reconstruction from the STFT magnitude",
    "V3": "band-limited resynthesis, shaped noise above a 2.5-4 kHz cut-off",
    "V4": "STFT log-magnitude and frame-gain quantisation, jittered frames (overlap-add discontinuities)",
}

#: seed-sequence spawn-key codes (content of test_shifted file i == content of test file i)
_CONTENT_CODE = {"train": 0, "dev": 1, "test": 2, "test_shifted": 2}
_CHANNEL_CODE = 3
_SPEAKER_CODE = 1000
_PLAN_CODE = 2000

# Vowel formant targets F1..F3 (Hz) for an adult male voice (Peterson & Barney style).
_VOWELS = np.array(
    [
        [730, 1090, 2440],  # a
        [270, 2290, 3010],  # i
        [300, 870, 2240],  # u
        [530, 1840, 2480],  # e
        [570, 840, 2410],  # o
        [660, 1720, 2410],  # ae
        [490, 1350, 1690],  # er
        [440, 1020, 2240],  # schwa-ish
    ],
    dtype=np.float64,
)
_BANDWIDTHS = np.array([80.0, 100.0, 150.0, 250.0, 350.0])


# --------------------------------------------------------------------------- helpers


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(key)))


def _moving_average(x: np.ndarray, n: int, axis: int = 0) -> np.ndarray:
    """Centred moving average of ``n`` points along ``axis`` (edges replicated)."""
    n = max(int(n), 1)
    if n == 1:
        return x
    pad = [(0, 0)] * x.ndim
    pad[axis] = (n // 2, n - 1 - n // 2)
    xp = np.pad(x, pad, mode="edge")
    c = np.cumsum(xp, axis=axis)
    zero_shape = list(c.shape)
    zero_shape[axis] = 1
    c = np.concatenate([np.zeros(zero_shape), c], axis=axis)
    hi = np.take(c, np.arange(n, c.shape[axis]), axis=axis)
    lo = np.take(c, np.arange(0, c.shape[axis] - n), axis=axis)
    return (hi - lo) / n


def _coloured_noise(rng: np.random.Generator, n: int, colour: str) -> np.ndarray:
    """Unit-RMS noise with a 1/f^alpha power spectrum (white 0, pink 1, brown 2)."""
    alpha = {"white": 0.0, "pink": 1.0, "brown": 2.0}[colour]
    w = rng.standard_normal(n)
    if alpha == 0.0:
        return w / (np.sqrt(np.mean(w**2)) + 1e-12)
    spec = np.fft.rfft(w)
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    spec *= f ** (-alpha / 2.0)
    spec[0] = 0.0
    y = np.fft.irfft(spec, n)
    return y / (np.sqrt(np.mean(y**2)) + 1e-12)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)) + 1e-12)


def _add_noise(rng: np.random.Generator, x: np.ndarray, snr_db: float, colour: str) -> np.ndarray:
    return x + _coloured_noise(rng, x.size, colour) * _rms(x) * 10 ** (-snr_db / 20.0)


def _stft(x: np.ndarray, sr: int, n_fft: int, hop: int) -> np.ndarray:
    return signal.stft(x, fs=sr, nperseg=n_fft, noverlap=n_fft - hop)[2]


def _istft(z: np.ndarray, sr: int, n_fft: int, hop: int, length: int) -> np.ndarray:
    y = signal.istft(z, fs=sr, nperseg=n_fft, noverlap=n_fft - hop)[1]
    if y.size >= length:
        return y[:length]
    return np.pad(y, (0, length - y.size))


# --------------------------------------------------------------------------- speakers and content


def _speaker_params(seed: int, speaker: str) -> Dict[str, float]:
    """Voice parameters of one speaker, from its own seed."""
    rng = _rng(seed, _SPEAKER_CODE, int(speaker[1:]))
    low = rng.random() < 0.5
    return {
        "f0": rng.uniform(95, 140) if low else rng.uniform(165, 250),
        "formant_scale": rng.uniform(0.9, 1.04) if low else rng.uniform(1.05, 1.2),
        "jitter": rng.uniform(0.004, 0.02),
        "shimmer": rng.uniform(0.04, 0.14),
        "breathiness": rng.uniform(0.03, 0.15),
        "tilt": rng.uniform(0.93, 0.985),
        "rate": rng.uniform(0.85, 1.2),
        "intonation": rng.uniform(0.05, 0.15),
    }


def _content_plan(rng: np.random.Generator, spk: Dict[str, float], n: int, sr: int, hop: int) -> Dict[str, Any]:
    """Frame-rate control tracks of one utterance (everything but the rendering)."""
    seconds = n / sr
    n_frames = n // hop + 2
    ft = np.arange(n_frames) * hop / sr  # frame times (s)
    voiced = np.zeros(n_frames)
    env = np.zeros(n_frames)
    accent = np.zeros(n_frames)
    fric_segments: List[Tuple[int, int, float, float]] = []  # (start, end sample, centre Hz, level)
    targets: List[Tuple[float, np.ndarray]] = []

    t = rng.uniform(0.03, 0.2)
    end = seconds - rng.uniform(0.03, 0.2)
    while t < end - 0.08:
        if rng.random() < 0.55:
            u = rng.uniform(0.04, 0.11) / spk["rate"]
            centre = rng.uniform(2200, 6500) * min(1.0, sr / 16000)
            fric_segments.append((int(t * sr), int(min(t + u, end) * sr), centre, rng.uniform(0.08, 0.35)))
            t += 0.8 * u
        v = rng.uniform(0.08, 0.26) / spk["rate"]
        t1 = min(t + v, end)
        gain = 10 ** (rng.uniform(-5, 3) / 20)
        sel = (ft >= t) & (ft < t1)
        phase = (ft[sel] - t) / max(t1 - t, 1e-3)
        shape = np.sin(np.pi * phase) ** rng.uniform(0.3, 0.8)
        env[sel] = np.maximum(env[sel], gain * shape)
        voiced[sel] = 1.0
        accent[sel] = rng.normal(0.0, 0.05) * np.sin(np.pi * phase)
        vowel = _VOWELS[rng.integers(len(_VOWELS))] * spk["formant_scale"] * rng.uniform(0.93, 1.07, 3)
        targets.append(((t + t1) / 2, vowel))
        # a consonant-like locus at the onset: lower F1, F2 pulled towards 1.5 kHz
        targets.append((t, vowel * np.array([0.6, 1.0, 1.0]) + np.array([0.0, 0.3 * (1500 - vowel[1]), 0.0])))
        t = t1
        t += rng.uniform(0.08, 0.25) if rng.random() < 0.15 else rng.uniform(0.0, 0.04)
    if not targets:  # very short files: one vowel
        vowel = _VOWELS[rng.integers(len(_VOWELS))] * spk["formant_scale"]
        targets.append((seconds / 2, vowel))
        mid = (ft > 0.2 * seconds) & (ft < 0.8 * seconds)
        voiced[mid] = 1.0
        env[mid] = 1.0

    targets.sort(key=lambda p: p[0])
    times = np.array([p[0] for p in targets])
    vals = np.stack([p[1] for p in targets])
    formants3 = np.stack([np.interp(ft, times, vals[:, k]) for k in range(3)], axis=1)
    f4 = np.full(n_frames, rng.uniform(3300, 3800) * spk["formant_scale"])
    f5 = np.full(n_frames, rng.uniform(4300, 4900) * spk["formant_scale"])
    formants = np.concatenate([formants3, f4[:, None], f5[:, None]], axis=1)
    # slow random wiggle (a few %), independent per formant
    wiggle = _moving_average(rng.standard_normal((n_frames, 5)), 12) * 0.06
    formants = formants * np.exp(wiggle)
    bandwidths = _BANDWIDTHS * np.exp(_moving_average(rng.standard_normal((n_frames, 5)), 8) * 0.3)

    # f0: declination + slow intonation + accents, in log domain
    t_norm = ft / max(seconds, 1e-3)
    log_f0 = (
        np.log(spk["f0"])
        + rng.uniform(0.0, 0.15) * (0.5 - t_norm)
        + spk["intonation"] * np.sin(2 * np.pi * rng.uniform(0.3, 1.2) * ft + rng.uniform(0, 2 * np.pi))
        + _moving_average(accent, 5)
    )
    micro = _moving_average(rng.standard_normal(n_frames), 3) * 0.012  # micro-prosody
    return {
        "voiced": _moving_average(voiced, 3),
        "env": _moving_average(env, 2),
        "formants": formants,
        "bandwidths": bandwidths,
        "log_f0": log_f0,
        "micro": micro,
        "fric": fric_segments,
    }


# --------------------------------------------------------------------------- rendering


def _render(
    rng: np.random.Generator,
    plan: Dict[str, Any],
    spk: Dict[str, float],
    n: int,
    sr: int,
    hop: int,
    *,
    periodic: float = 0.0,
    smooth: float = 0.0,
) -> np.ndarray:
    """Source-filter rendering of a plan. ``periodic``/``smooth`` in [0, 1] give the V1 artefacts."""
    n_frames = plan["log_f0"].size
    fpos = np.arange(n_frames) * hop
    idx = np.arange(n)
    log_f0 = plan["log_f0"] + (1.0 - periodic) * plan["micro"]
    f0 = np.exp(np.interp(idx, fpos, log_f0))
    voiced_s = np.interp(idx, fpos, plan["voiced"])
    env_s = np.interp(idx, fpos, plan["env"])

    # glottal pulse positions: period by period, with jitter
    jitter = spk["jitter"] * (1.0 - periodic)
    shimmer = spk["shimmer"] * (1.0 - periodic)
    max_pulses = int(n / sr * 600) + 8
    z = rng.standard_normal(max_pulses)
    zs = rng.standard_normal(max_pulses)
    pos = []
    t = rng.uniform(0, sr / f0[0])
    k = 0
    while t < n - 1 and k < max_pulses:
        pos.append(t)
        t += sr / f0[int(t)] * (1.0 + jitter * z[k])
        k += 1
    pos_a = np.array(pos)
    i0 = np.floor(pos_a).astype(np.int64)
    frac = pos_a - i0
    amp = voiced_s[i0] * env_s[i0] * (1.0 + shimmer * zs[: pos_a.size])
    pulses = np.zeros(n + 1)
    np.add.at(pulses, i0, amp * (1.0 - frac))
    np.add.at(pulses, i0 + 1, amp * frac)
    pulses = pulses[:n]
    a = spk["tilt"] - 0.08 * periodic
    source = signal.lfilter([1.0, -1.0], [1.0, -2 * a, a * a], pulses)
    source /= _rms(source[voiced_s > 0.5]) if np.any(voiced_s > 0.5) else _rms(source)

    # pitch-synchronous aspiration noise
    phase = np.cumsum(f0) / sr
    breath = spk["breathiness"] * (1.0 - 0.8 * periodic)
    asp = rng.standard_normal(n) * breath * voiced_s * env_s * (0.6 + 0.4 * np.cos(2 * np.pi * phase))
    excitation = source + asp

    # time-varying formant cascade, coefficients per block of `hop` samples
    nyq = sr / 2.0
    formants = plan["formants"]
    bandwidths = plan["bandwidths"] * (1.0 + 2.5 * smooth)
    if smooth > 0:
        # over-smoothing: slower trajectories with less variance around their mean
        formants = _moving_average(formants, 1 + int(round(10 * smooth)))
        mean = formants.mean(axis=0, keepdims=True)
        formants = mean + (1.0 - 0.6 * smooth) * (formants - mean)
    keep = np.all(formants < 0.9 * nyq, axis=0)
    formants, bandwidths = formants[:, keep], bandwidths[:, keep]
    r = np.exp(-np.pi * bandwidths / sr)
    c = 2 * r * np.cos(2 * np.pi * formants / sr)
    sos = np.zeros(formants.shape + (6,))
    sos[..., 0] = 1.0 - c + r * r  # unit gain at DC
    sos[..., 3] = 1.0
    sos[..., 4] = -c
    sos[..., 5] = r * r
    zi = np.zeros((formants.shape[1], 2))
    out = np.empty(n)
    for b in range(0, n, hop):
        out[b : b + hop], zi = signal.sosfilt(sos[b // hop], excitation[b : b + hop], zi=zi)
    voiced_part = out / (_rms(out[voiced_s > 0.5]) if np.any(voiced_s > 0.5) else _rms(out))

    # fricatives: band-pass noise bursts
    fric = np.zeros(n)
    for start, stop, centre, level in plan["fric"]:
        m = stop - start
        if m < 16:
            continue
        centre = min(centre, 0.85 * nyq)
        b, a2 = signal.iirpeak(centre, Q=rng.uniform(1.0, 3.0), fs=sr)
        burst = signal.lfilter(b, a2, rng.standard_normal(m))
        ramp = np.sin(np.pi * np.arange(m) / m) ** 0.7
        fric[start:stop] += level * burst / _rms(burst) * ramp
    return voiced_part + fric


def _griffin_lim(rng: np.random.Generator, x: np.ndarray, sr: int) -> np.ndarray:
    n_fft, hop = 512, 128
    spec = _stft(x, sr, n_fft, hop)
    mag = np.abs(spec)
    phase = np.angle(spec) + rng.uniform(1.5, 3.0) * rng.standard_normal(spec.shape)
    for _ in range(int(rng.integers(1, 5))):
        y = _istft(mag * np.exp(1j * phase), sr, n_fft, hop, x.size)
        phase = np.angle(_stft(y, sr, n_fft, hop))
    return _istft(mag * np.exp(1j * phase), sr, n_fft, hop, x.size)


def _band_noise(rng: np.random.Generator, x: np.ndarray, sr: int) -> np.ndarray:
    n_fft, hop = 512, 128
    spec = _stft(x, sr, n_fft, hop)
    freqs = np.arange(spec.shape[0]) * sr / n_fft
    cutoff = min(rng.uniform(2500, 4000), 0.8 * sr / 2)
    envelope = np.sqrt(_moving_average(_moving_average(np.abs(spec) ** 2, 17, axis=0), 3, axis=1))
    noise = (rng.standard_normal(spec.shape) + 1j * rng.standard_normal(spec.shape)) / np.sqrt(2)
    w = np.clip((freqs - cutoff) / 250.0 + 0.5, 0.0, 1.0)[:, None]  # 250 Hz cross-fade
    return _istft((1 - w) * spec + w * envelope * noise, sr, n_fft, hop, x.size)


def _quantise_frames(rng: np.random.Generator, x: np.ndarray, sr: int) -> np.ndarray:
    n_fft, hop = 256, 128
    spec = _stft(x, sr, n_fft, hop)
    mag = np.abs(spec) + 1e-9
    q = rng.uniform(3.0, 6.0)
    mag_q = 10 ** (np.round(20 * np.log10(mag) / q) * q / 20)
    y = _istft(mag_q * np.exp(1j * np.angle(spec)), sr, n_fft, hop, x.size)
    # frame-gain quantisation with hard switches between frames
    frame = int(sr * rng.uniform(0.010, 0.020))
    nfr = -(-y.size // frame)
    # each frame is read from a slightly shifted position (hard cuts: overlap-add discontinuities)
    max_shift = max(1, int(sr * rng.uniform(0.0003, 0.0015)))
    shifts = rng.integers(-max_shift, max_shift + 1, nfr)
    src = np.arange(nfr)[:, None] * frame + np.arange(frame)[None, :] + shifts[:, None]
    padded = np.pad(y, (0, nfr * frame - y.size))[np.clip(src, 0, y.size - 1)]
    g = np.sqrt(np.mean(padded**2, axis=1)) + 1e-6
    qg = rng.uniform(2.0, 5.0)
    gq = 10 ** (np.round(20 * np.log10(g) / qg) * qg / 20)
    return (padded * (gq / g)[:, None]).reshape(-1)[: y.size]


def _room_and_noise(rng: np.random.Generator, x: np.ndarray, sr: int) -> np.ndarray:
    if rng.random() < 0.7:
        rt60 = rng.uniform(0.1, 0.35)
        m = int(rt60 * sr)
        tail = rng.standard_normal(m) * np.exp(-6.9 * np.arange(m) / m)
        tail = signal.lfilter([1.0], [1.0, -rng.uniform(0.2, 0.7)], tail)  # duller tail
        wet = _convolve(x, tail)
        x = x + wet / _rms(wet) * _rms(x) * 10 ** (rng.uniform(-22, -8) / 20)
    return _add_noise(rng, x, rng.uniform(30, 50), str(rng.choice(["white", "pink", "brown"])))


def _convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Causal convolution of ``x`` with ``h``, truncated to ``len(x)``."""
    return signal.fftconvolve(x, h)[: x.size]


def _channel(rng: np.random.Generator, x: np.ndarray, sr: int) -> Tuple[np.ndarray, str]:
    """Telephone-like channel: band-pass, coloured noise, low-resolution quantisation."""
    lo = rng.uniform(200, 400)
    hi = min(rng.uniform(3000, 3600), 0.9 * sr / 2)
    sos = signal.butter(4, [lo, hi], btype="bandpass", fs=sr, output="sos")
    y = signal.sosfilt(sos, x)
    colour = str(rng.choice(["white", "pink", "brown"]))
    snr = int(rng.choice([10, 15, 20]))
    y = _add_noise(rng, y, snr, colour)
    quant = str(rng.choice(["mulaw", "pcm7"]))
    scale = rng.uniform(0.3, 0.95) / (np.max(np.abs(y)) + 1e-9)
    y = np.clip(y * scale, -1.0, 1.0)
    if quant == "mulaw":
        mu = 255.0
        e = np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu)
        e = np.round((e + 1) / 2 * mu) / mu * 2 - 1
        y = np.sign(e) * np.expm1(np.abs(e) * np.log1p(mu)) / mu
    else:
        y = np.round(y * 63.0) / 63.0
    return y / scale, f"tel-{quant}-{colour}{snr}"


def synthesize_utterance(
    seed: int,
    split: str,
    index: int,
    label: str,
    attack: Optional[str],
    speaker: str,
    *,
    seconds: float = 2.0,
    sample_rate: int = 16000,
) -> Tuple[np.ndarray, Optional[str]]:
    """One file of the corpus: ``(float32 waveform in [-1, 1], condition or None)``.

    The content comes from ``SeedSequence(seed, spawn_key=(split code, index))``.
    ``test_shifted`` shares the content codes of ``test`` and adds the channel
    (returning its condition string).
    """
    sr = int(sample_rate)
    n = int(round(seconds * sr))
    hop = max(int(round(0.008 * sr)), 16)
    rng = _rng(seed, _CONTENT_CODE[split], index)
    spk = _speaker_params(seed, speaker)
    plan = _content_plan(rng, spk, n, sr, hop)
    if label == "bonafide":
        x = _render(rng, plan, spk, n, sr, hop)
    elif attack == "V1":
        s = rng.uniform(0.6, 1.0)
        x = _render(rng, plan, spk, n, sr, hop, periodic=s, smooth=rng.uniform(0.4, 1.0))
    else:
        x = _render(rng, plan, spk, n, sr, hop)
        if attack == "V2":
            x = _griffin_lim(rng, x, sr)
        elif attack == "V3":
            x = _band_noise(rng, x, sr)
        elif attack == "V4":
            x = _quantise_frames(rng, x, sr)
        else:
            raise ValueError(f"unknown attack {attack!r}; expected one of {', '.join(ATTACKS)}")
    x = _room_and_noise(rng, x, sr)
    x = x - np.mean(x)
    condition = None
    if split == "test_shifted":
        x, condition = _channel(_rng(seed, _CHANNEL_CODE, index), x, sr)
    x = x / _rms(x) * 10 ** (rng.uniform(-32, -18) / 20)
    peak = np.max(np.abs(x))
    if peak > 0.98:
        x *= 0.98 / peak
    return x.astype(np.float32), condition


# --------------------------------------------------------------------------- corpus
