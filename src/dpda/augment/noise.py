"""Additive noise from a MUSAN-style corpus (or any list of noise files).

:class:`AddNoise` mixes a random segment of a random noise file into the
signal at a random signal-to-noise ratio:

* MUSAN layout (``musan/noise/**.wav``, ``musan/music/**.wav``,
  ``musan/speech/**.wav``; WAV or FLAC, any sample rate, resampled to ``sr``).
  ``root`` may be the ``musan`` folder itself or its parent.
* Default SNR ranges (dB), as in the usual speaker/anti-spoofing MUSAN
  recipes (Kaldi ``aug_data_dir.py``, voxceleb_trainer): ``noise`` 0-15,
  ``music`` 5-15, ``speech`` 13-20. ``speech`` is *babble*: 3-7 different
  speech segments summed (each scaled to equal power first), and the sum is
  mixed at one drawn SNR (so the SNR of the babble as a whole is the drawn
  one; Kaldi draws one SNR per babble speaker instead).
* Each call: pick a category uniformly, a file uniformly within it, a random
  segment of ``len(x)`` samples (a file shorter than that is looped from a
  random offset), an SNR uniformly in the category's range.

Mixing is power based over the whole utterance:
``y = x + g * n`` with ``g = sqrt(P_x / (P_n * 10**(snr/10)))`` where ``P``
is the mean square. If ``max|y| > 1`` the mixture is divided by its peak (one
gain for the whole utterance, no clipping; the SNR is unchanged). A silent
input or silent noise segment leaves ``x`` unchanged (the SNR is undefined).

The file list is scanned once, at construction; file headers are read on
first use and cached; audio is read segment by segment (never whole files
when the rate matches).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf
import soxr

from dpda.audio.io import RESAMPLE_QUALITY
from dpda.augment.base import (
    Augmentation,
    Range,
    Trace,
    as_signal,
    check_rng,
    check_sr,
    draw,
    mean_power,
    parse_range,
    peak_limit,
)
from dpda.errors import AudioError, PathLike
from dpda.fileio import scan_audio

#: MUSAN categories, in order.
MUSAN_CATEGORIES: Tuple[str, ...] = ("noise", "music", "speech")
#: Default SNR range (dB) per category; ``files`` is an explicit file list.
DEFAULT_SNR_DB: Dict[str, Range] = {"noise": (0.0, 15.0), "music": (5.0, 15.0), "speech": (13.0, 20.0), "files": (0.0, 15.0)}
#: Number of speakers summed for babble (``speech`` category), inclusive range.
DEFAULT_BABBLE_SPEAKERS: Tuple[int, int] = (3, 7)
#: Categories mixed as babble.
BABBLE_CATEGORIES: Tuple[str, ...] = ("speech", "babble")
#: File extensions scanned in noise and RIR folders (case-insensitive).
NOISE_EXTENSIONS: Tuple[str, ...] = (".wav", ".flac")

_EXPECTED_LAYOUT = "expected MUSAN layout ROOT/{noise,music,speech}/**/*.wav (or .flac), ROOT being the 'musan' folder or its parent"

try:  # errors soundfile raises for unreadable files
    _SF_ERRORS: Tuple[type, ...] = (sf.LibsndfileError, RuntimeError)  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover - old soundfile
    _SF_ERRORS = (RuntimeError,)


def _musan_root(root: Path) -> Path:
    if not root.is_dir():
        raise AudioError(root, f"noise folder not found; {_EXPECTED_LAYOUT}")
    if not any((root / c).is_dir() for c in MUSAN_CATEGORIES) and (root / "musan").is_dir():
        return root / "musan"
    return root


class _Reader:
    """Random segments of noise files at a fixed rate, with cached headers."""

    def __init__(self, sr: int) -> None:
        self.sr = sr
        self._info: Dict[str, Tuple[int, int]] = {}

    def info(self, path: str) -> Tuple[int, int]:
        if path not in self._info:
            try:
                i = sf.info(path)
            except _SF_ERRORS as e:
                raise AudioError(path, f"cannot read noise file: {e}") from e
            if i.frames <= 0:
                raise AudioError(path, "noise file contains no audio (0 frames)")
            self._info[path] = (int(i.samplerate), int(i.frames))
        return self._info[path]

    def _read(self, path: str, start: int, frames: int) -> np.ndarray:
        try:
            with sf.SoundFile(path) as f:
                if start:
                    f.seek(start)
                data = f.read(frames, dtype="float32", always_2d=True)
        except _SF_ERRORS as e:
            raise AudioError(path, f"cannot read noise file: {e}") from e
        data = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        if data.size and not np.all(np.isfinite(data)):
            raise AudioError(path, "noise file holds NaN or inf samples")
        return data.astype(np.float32, copy=False)

    def segment(self, path: str, n: int, rng: np.random.Generator) -> Tuple[np.ndarray, int]:
        """``n`` samples at ``self.sr`` from a random offset (in samples at the file's rate); loops short files."""
        file_sr, frames = self.info(path)
        need = n if file_sr == self.sr else int(math.ceil(n * file_sr / self.sr)) + 16
        if frames >= need:
            start = int(rng.integers(0, frames - need + 1))
            data = self._read(path, start, need)
            if file_sr != self.sr:
                data = soxr.resample(data, file_sr, self.sr, quality=RESAMPLE_QUALITY)
        else:
            start = int(rng.integers(0, frames))
            data = self._read(path, 0, frames)
            if file_sr != self.sr:
                data = soxr.resample(data, file_sr, self.sr, quality=RESAMPLE_QUALITY)
                start = int(start * self.sr / file_sr)
            if data.size == 0:
                raise AudioError(path, f"noise file too short to resample to {self.sr} Hz")
            data = np.roll(data, -(start % data.size))
        if data.size < n:
            data = np.resize(data, n)  # loop
        return np.asarray(data[:n], dtype=np.float32), start


FilesArg = Union[Sequence[PathLike], Mapping[str, Sequence[PathLike]]]


class AddNoise(Augmentation):
    """Mix in a random noise segment at a random SNR (dB).

    Args:
        root: MUSAN folder (or its parent). With ``categories=None`` every
            category that has audio is used.
        categories: which categories to use and their SNR ranges, e.g.
            ``{"noise": [0, 15], "music": None}`` (None = default range), or
            a list of names (default ranges). Names: noise, music, speech
            (alias babble).
        files: instead of ``root``: a list of noise files (one category
            named ``files``, default SNR 0-15 dB), or a mapping category ->
            files (a category named speech/babble is mixed as babble).
        snr: SNR (dB) or ``[low, high]`` range used for *all* categories,
            overriding the per-category ranges.
        babble_speakers: ``[low, high]`` number of speech segments summed for
            babble (default 3-7).
        sr: sample rate (Hz) of the signals; noise files are resampled to it.

    Raises:
        AudioError: a folder has no audio (the message names it and the
            expected layout), or a listed file is missing.
        ValueError: bad option values.
    """

    def __init__(
        self,
        root: Optional[PathLike] = None,
        *,
        categories: Union[None, Sequence[str], Mapping[str, Any]] = None,
        files: Optional[FilesArg] = None,
        snr: Any = None,
        babble_speakers: Any = DEFAULT_BABBLE_SPEAKERS,
        sr: int = 16000,
    ) -> None:
        self.sr = check_sr(sr)
        if (root is None) == (files is None):
            raise ValueError("give either root (a MUSAN-style folder) or files (noise files), not both and not neither")
        override = None if snr is None else parse_range(snr, "snr")
        bs = parse_range(babble_speakers, "babble_speakers", lo=1)
        if bs[0] != int(bs[0]) or bs[1] != int(bs[1]):
            raise ValueError(f"babble_speakers must be whole numbers, got {babble_speakers!r}")
        self.babble_speakers = (int(bs[0]), int(bs[1]))
        self.root = None if root is None else str(root)
        self.files: Dict[str, List[str]] = {}
        self.snr: Dict[str, Range] = {}

        if root is not None:
            self._from_root(Path(root), categories)
        else:
            if categories is not None:
                raise ValueError("categories applies to root; with files give a mapping category -> files")
            self._from_files(files)  # type: ignore[arg-type]
        if override is not None:
            self.snr = {c: override for c in self.snr}
        self.categories: Tuple[str, ...] = tuple(self.files)
        self._reader = _Reader(self.sr)

    # -- construction helpers
    def _from_root(self, root: Path, categories: Any) -> None:
        base = _musan_root(root)
        if categories is None:
            wanted: Dict[str, Any] = {c: None for c in MUSAN_CATEGORIES}
            required = False
        elif isinstance(categories, Mapping):
            wanted, required = dict(categories), True
        elif isinstance(categories, (list, tuple)):
            wanted, required = {c: None for c in categories}, True
        else:
            raise ValueError(f"categories must be a mapping name -> [low, high] SNR dB or a list of names, got {categories!r}")
        for name, rng_value in wanted.items():
            cat = "speech" if name == "babble" else name
            if cat not in MUSAN_CATEGORIES:
                raise ValueError(f"unknown noise category {name!r}; expected one of {', '.join(MUSAN_CATEGORIES)} (or babble)")
            folder = base / cat
            found = scan_audio(folder, NOISE_EXTENSIONS, joined=True) if folder.is_dir() else []
            if not found:
                if required:
                    raise AudioError(folder, f"no audio files for noise category {name!r}; {_EXPECTED_LAYOUT}")
                continue
            self.files[cat] = found
            self.snr[cat] = DEFAULT_SNR_DB[cat] if rng_value is None else parse_range(rng_value, f"categories.{name}")
        if not self.files:
            raise AudioError(root, f"no audio files found; {_EXPECTED_LAYOUT}")

    def _from_files(self, files: FilesArg) -> None:
        groups: Mapping[str, Sequence[PathLike]]
        if isinstance(files, Mapping):
            groups = files
        elif isinstance(files, (str, os.PathLike)):
            raise ValueError("files must be a list of paths (or a mapping category -> list), not a single path")
        else:
            groups = {"files": files}
        for cat, lst in groups.items():
            cat = str(cat)
            if isinstance(lst, (str, os.PathLike)) or not isinstance(lst, (list, tuple)):
                raise ValueError(f"files[{cat!r}] must be a list of paths, got {lst!r}")
            paths = [os.fspath(p) for p in lst]
            if not paths:
                raise ValueError(f"files[{cat!r}] is empty")
            for p in paths:
                if not os.path.isfile(p):
                    raise AudioError(p, "noise file not found")
            key = "speech" if cat == "babble" else cat
            self.files[key] = paths
            self.snr[key] = DEFAULT_SNR_DB.get(key, DEFAULT_SNR_DB["files"])

    # -- application
    def _noise(self, category: str, n: int, rng: np.random.Generator) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
        pool = self.files[category]
        if category not in BABBLE_CATEGORIES:
            path = pool[int(rng.integers(len(pool)))]
            seg, start = self._reader.segment(path, n, rng)
            return seg, [{"file": path, "offset": start}]
        lo, hi = self.babble_speakers
        k = int(rng.integers(lo, hi + 1))
        idx = rng.choice(len(pool), size=k, replace=len(pool) < k)
        total = np.zeros(n, dtype=np.float64)
        used = []
        for i in idx:
            seg, start = self._reader.segment(pool[int(i)], n, rng)
            pw = mean_power(seg)
            if pw > 0:
                total += seg / math.sqrt(pw)
            used.append({"file": pool[int(i)], "offset": start})
        return total.astype(np.float32), used

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Trace]:
        check_rng(rng)
        x = as_signal(x)
        category = self.categories[int(rng.integers(len(self.categories)))]
        snr_db = draw(rng, self.snr[category])
        info: Dict[str, Any] = {"step": "noise", "category": category, "snr_db": snr_db}
        if x.size == 0:
            return x.copy(), [info]
        n, sources = self._noise(category, x.size, rng)
        info["sources"] = sources
        px, pn = mean_power(x), mean_power(n)
        if px == 0.0 or pn == 0.0:
            info["skipped"] = "silent input" if px == 0.0 else "silent noise segment"
            return x.copy(), [info]
        gain = math.sqrt(px / (pn * 10.0 ** (snr_db / 10.0)))
        y = x.astype(np.float64) + gain * n.astype(np.float64)
        return peak_limit(y).astype(np.float32), [info]

    def __repr__(self) -> str:
        cats = ", ".join(f"{c}: {len(self.files[c])} files @ {self.snr[c][0]:g}-{self.snr[c][1]:g} dB" for c in self.categories)
        where = f"root={self.root!r}" if self.root else "files"
        return f"AddNoise({where}, {{{cats}}}, sr={self.sr})"
