"""``dpda augment``: apply an augmentation chain (or RawBoost) to one audio file."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List

import numpy as np

from dpda.errors import DpdaError

DESCRIPTION = """\
Augment one audio file, to listen to / look at what a training chain does.

IN is read (any format libsndfile reads), down-mixed to mono and resampled to
--sr Hz; the chain is applied with a NumPy Generator seeded by --seed; the
result is written to OUT (format from the extension: .wav and .flac as 16-bit
PCM, .ogg Vorbis, .mp3), after peak-normalising it if it would clip. The
steps that ran (noise file and SNR, RIR, codec bitrate, ...) are printed.

--chain takes a YAML file describing the chain, e.g.

  series:
    - rawboost: {algo: 4, p: 0.5}
    - choice:
        - noise: {root: /data/musan, categories: {noise: [0, 15]}}
        - reverb: {root: /data/RIRS_NOISES, list: RIRS_NOISES/real_rirs_isotropic_noises/rir_list}
        - codec: {name: mp3, bitrate: [16, 64]}
      p: 0.8
    - bandlimit: {low: 300, high: 3400, p: 0.2}

Steps: noise (MUSAN: root, categories {noise,music,speech: [low, high] dB},
files, snr, babble_speakers), reverb (root, list, files, max_seconds), codec
(name: mp3|opus|vorbis|gsm|mulaw|alaw|aac|m4a, bitrate kbps, quality),
bandlimit (low, high Hz, order), rawboost (algo 0..8, params), identity;
combined with series: [...] and choice: [...] (with weights). Any step takes p,
the probability it is applied. Relative paths are relative to the YAML file.
--rawboost ALGO is a shortcut for a chain with the single RawBoost step."""

EPILOG = """\
examples:
  dpda augment clean.flac aug.wav --rawboost 4 --seed 1 --spectrogram aug.png
  dpda augment clean.flac aug.wav --chain configs/augment.yaml --seed 7
"""

#: extension -> (soundfile format, subtype)
OUTPUT_FORMATS: Dict[str, Any] = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}


def register(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser(
        "augment",
        help="apply an augmentation chain or RawBoost to one audio file",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="IN", help="input audio file")
    p.add_argument("output", metavar="OUT", help="output audio file (" + ", ".join(OUTPUT_FORMATS) + ")")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--chain", metavar="CONFIG.yaml", help="YAML file describing the augmentation chain")
    how.add_argument("--rawboost", type=int, metavar="ALGO", help="apply RawBoost algorithm ALGO (0..8; 4 = LnL -> ISD -> SSI)")
    p.add_argument("--seed", type=int, metavar="S", help="random seed (default: a fresh one, printed so the run can be repeated)")
    p.add_argument("--sr", type=int, default=16000, metavar="HZ", help="sample rate to process (and write) at, in Hz (default 16000)")
    p.add_argument("--spectrogram", metavar="PNG", help="also write original vs augmented spectrograms (same colour scale) to this image")
    p.set_defaults(func=run)


def _output_format(path: str) -> Any:
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise DpdaError(f"{path}: unsupported output extension {ext or '(none)'!r}; use one of {', '.join(OUTPUT_FORMATS)}")
    return OUTPUT_FORMATS[ext]


def _describe(trace: List[Dict[str, Any]]) -> List[str]:
    lines = []
    for t in trace:
        step = t.get("step", "?")
        parts = []
        for k, v in t.items():
            if k == "step":
                continue
            if k == "sources":
                v = ", ".join(os.path.basename(s["file"]) for s in v)
            elif isinstance(v, float):
                v = f"{v:.2f}"
            elif isinstance(v, str) and os.sep in v:
                v = os.path.basename(v)
            parts.append(f"{k}={v}")
        lines.append(f"  {step}: " + " ".join(parts))
    return lines


def write_spectrograms(x: np.ndarray, y: np.ndarray, sr: int, path: str, *, title: str = "") -> None:
    """PNG (or any matplotlib format, from the extension) with the spectrograms of ``x`` and ``y`` (dB, shared scale)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from scipy.signal import spectrogram

    from dpda.fileio import atomic_path

    nper = max(16, int(round(0.032 * sr)))  # 32 ms windows, 8 ms hop
    hop = max(1, int(round(0.008 * sr)))

    def spec(s: np.ndarray) -> Any:
        s = s.astype(np.float64)
        if s.size < nper:
            s = np.pad(s, (0, nper - s.size))
        f, t, S = spectrogram(s, fs=sr, window="hann", nperseg=nper, noverlap=nper - hop, mode="psd")
        return f, t, 10.0 * np.log10(S + 1e-12)

    fx, tx, sx = spec(x)
    fy, ty, sy = spec(y)
    vmax = float(max(sx.max(), sy.max()))
    vmin = vmax - 90.0
    fig = Figure(figsize=(9, 6.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 1, sharex=True, sharey=True)
    mesh = None
    for ax, (f, t, s), name in zip(axes, ((fx, tx, sx), (fy, ty, sy)), ("original", "augmented")):
        mesh = ax.pcolormesh(t, f / 1000.0, s, shading="auto", cmap="magma", vmin=vmin, vmax=vmax)
        ax.set_title(name)
        ax.set_ylabel("frequency (kHz)")
    axes[-1].set_xlabel("time (s)")
    fig.colorbar(mesh, ax=list(axes), label="power (dB)")
    if title:
        fig.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
        fig.savefig(tmp, format=fmt, dpi=110)


def run(args: argparse.Namespace) -> int:
    import soundfile as sf

    from dpda.audio import load_audio
    from dpda.augment.chain import RawBoostStep, Series, load_chain
    from dpda.fileio import atomic_path

    if args.sr <= 0:
        raise DpdaError(f"--sr must be a positive sample rate in Hz, got {args.sr}")
    fmt, subtype = _output_format(args.output)
    if args.spectrogram:
        ext = os.path.splitext(args.spectrogram)[1].lower()
        if ext not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
            raise DpdaError(f"{args.spectrogram}: --spectrogram expects a .png (or .pdf/.svg/.jpg) file name")

    if args.chain:
        chain = load_chain(args.chain, sr=args.sr)
        label = f"chain {os.path.basename(args.chain)}"
    else:
        try:
            chain = Series([RawBoostStep(args.rawboost, sr=args.sr)])
        except ValueError as e:
            raise DpdaError(f"--rawboost: {e}") from e
        label = f"RawBoost algo {args.rawboost}"

    x = load_audio(args.input, target_sr=args.sr)
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().generate_state(1, np.uint32)[0])
    if seed < 0:
        raise DpdaError(f"--seed must be >= 0, got {seed}")
    rng = np.random.default_rng(seed)
    try:
        y, trace = chain.apply(x, rng)
    except ValueError as e:
        raise DpdaError(f"augmentation failed: {e}") from e

    peak = float(np.max(np.abs(y))) if y.size else 0.0
    note = ""
    if peak > 1.0:
        y = y / peak
        note = f" (peak {peak:.2f} normalised to 1)"
    with atomic_path(args.output) as tmp:
        sf.write(str(tmp), y, args.sr, format=fmt, subtype=subtype)
    if args.spectrogram:
        write_spectrograms(x, y, args.sr, args.spectrogram, title=f"{os.path.basename(args.input)}: {label}, seed {seed}")

    print(f"wrote {args.output}: {y.size} samples at {args.sr} Hz, {label}, seed {seed}{note}")
    for line in _describe(trace) or ["  (no step applied)"]:
        print(line)
    if args.spectrogram:
        print(f"wrote {args.spectrogram}")
    sys.stdout.flush()
    return 0
