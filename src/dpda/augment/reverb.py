"""Reverberation by convolution with room impulse responses (RIRs).

:class:`Reverberate` picks an RIR uniformly at random and convolves:

1. the RIR (first channel of a multi-channel file, resampled to ``sr``) is
   normalised to unit energy (``sum(h**2) == 1``);
2. ``y = x * h`` by FFT convolution (:func:`scipy.signal.fftconvolve`, float64);
3. the output is aligned on the direct path: with ``d = argmax |h|`` (in
   samples), ``y[d : d + len(x)]`` is kept, so the result is not delayed
   relative to the input and has the input's length (the tail beyond the
   end of ``x`` is cropped);
4. the level is kept: ``y`` is scaled to the RMS of ``x``; if then
   ``max|y| > 1`` it is divided by its peak (one gain, no clipping).

RIR sources: a folder (recursive ``*.wav`` / ``*.flac``), a list file, or an
explicit list of files. List files may be Kaldi / RIRS_NOISES style
(``--rir-id 00001 --room-id 001 RIRS_NOISES/simulated_rirs/smallroom/Room001/Room001-00001.wav``:
the last token is the path) or one path per line (``#`` comments and blank
lines ignored). Relative paths are resolved against ``root`` (default: the
list file's folder) and, when not found there, against its parent folders,
so a RIRS_NOISES list works whether ``root`` is the folder containing
``RIRS_NOISES`` or ``RIRS_NOISES`` itself. Every listed file must exist
(checked at construction). Loaded RIRs are kept in an LRU cache.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.signal import fftconvolve

from dpda.audio.io import load_audio
from dpda.augment.base import Augmentation, Trace, as_signal, check_rng, check_sr, mean_power, peak_limit
from dpda.augment.noise import NOISE_EXTENSIONS
from dpda.errors import AudioError, PathLike, Problem, ProtocolError
from dpda.fileio import scan_audio


def read_rir_list(list_file: PathLike, root: Optional[PathLike] = None) -> List[str]:
    """Parse a RIR list file (Kaldi ``--rir-id ... PATH`` lines or one path per line); return existing paths.

    Raises:
        ProtocolError: the list is missing or empty, or names files that do
            not exist (every such line is reported with its number).
    """
    lf = Path(list_file)
    if not lf.is_file():
        raise ProtocolError.at(lf, None, "RIR list file not found")
    bases: List[Path] = []
    first = Path(root) if root is not None else lf.parent
    bases.append(first)
    bases.extend(first.resolve().parents)
    paths: List[str] = []
    problems: List[Problem] = []
    good_base: Optional[Path] = None
    with open(lf, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            token = line.split()[-1] if line.startswith("-") else line
            p = Path(os.path.expanduser(token))
            if p.is_absolute():
                found = p if p.is_file() else None
            else:
                found = None
                order = ([good_base] if good_base is not None else []) + bases
                for b in order:
                    if (b / p).is_file():
                        found, good_base = b / p, b
                        break
            if found is None:
                problems.append(Problem(lf, lineno, f"RIR file not found: {token} (relative to {first})"))
            else:
                paths.append(str(found))
    if problems:
        raise ProtocolError(problems, summary=f"{lf}: {len(problems)} listed RIR file(s) not found")
    if not paths:
        raise ProtocolError.at(lf, None, "RIR list names no files")
    return paths


class Reverberate(Augmentation):
    """Convolve with a random RIR, aligned on the direct path, at the input's RMS level.

    Args:
        root: folder scanned recursively for WAV/FLAC RIRs; with
            ``list_file``, the folder relative list paths are resolved against.
        list_file: RIR list (Kaldi ``rir_list`` or one path per line); if
            relative and not found as given, looked up under ``root``.
        files: an explicit list of RIR files (instead of root / list_file).
        max_seconds: keep at most this many seconds of each RIR after its
            direct path (None: whole RIR).
        sr: sample rate (Hz) of the signals; RIRs are resampled to it.
        cache_size: number of loaded RIRs kept in memory.
    """

    def __init__(
        self,
        root: Optional[PathLike] = None,
        *,
        list_file: Optional[PathLike] = None,
        files: Optional[Sequence[PathLike]] = None,
        max_seconds: Optional[float] = None,
        sr: int = 16000,
        cache_size: int = 256,
    ) -> None:
        self.sr = check_sr(sr)
        if max_seconds is not None and (isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) or max_seconds <= 0):
            raise ValueError(f"max_seconds must be a positive number of seconds or None, got {max_seconds!r}")
        self.max_seconds = None if max_seconds is None else float(max_seconds)
        self.cache_size = int(cache_size)
        if files is not None:
            if root is not None or list_file is not None:
                raise ValueError("give files, or root and/or list, not both")
            if isinstance(files, (str, os.PathLike)) or not isinstance(files, (list, tuple)):
                raise ValueError(f"files must be a list of RIR paths, got {files!r}")
            self.files = [os.fspath(p) for p in files]
            if not self.files:
                raise ValueError("files is empty")
            for p in self.files:
                if not os.path.isfile(p):
                    raise AudioError(p, "RIR file not found")
        elif list_file is not None:
            lf = Path(os.fspath(list_file))
            if not lf.is_absolute() and not lf.is_file() and root is not None:
                for b in [Path(root), *Path(root).resolve().parents]:
                    if (b / lf).is_file():
                        lf = b / lf
                        break
            self.files = read_rir_list(lf, root)
        elif root is not None:
            if not Path(root).is_dir():
                raise AudioError(root, "RIR folder not found; expected a folder of RIR .wav/.flac files (searched recursively)")
            self.files = scan_audio(root, NOISE_EXTENSIONS, joined=True)
            if not self.files:
                raise AudioError(root, "no audio files found; expected a folder of RIR .wav/.flac files (searched recursively)")
        else:
            raise ValueError("give root (a folder of RIRs), list (a RIR list file) or files")
        self._cache: "OrderedDict[str, Tuple[np.ndarray, int]]" = OrderedDict()

    def load_rir(self, path: str) -> Tuple[np.ndarray, int]:
        """Unit-energy RIR (float64) at ``sr`` and the index of its direct path (peak of ``|h|``)."""
        hit = self._cache.get(path)
        if hit is not None:
            self._cache.move_to_end(path)
            return hit
        h = load_audio(path, target_sr=self.sr, mono=False)[0].astype(np.float64)
        d = int(np.argmax(np.abs(h)))
        if self.max_seconds is not None:
            h = h[: d + max(1, int(round(self.max_seconds * self.sr)))]
        energy = float(np.sum(h * h))
        if not energy > 0:
            raise AudioError(path, "RIR is silent (all zeros)")
        h = h / np.sqrt(energy)
        self._cache[path] = (h, d)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return h, d

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Trace]:
        check_rng(rng)
        x = as_signal(x)
        path = self.files[int(rng.integers(len(self.files)))]
        info: Dict[str, Any] = {"step": "reverb", "rir": path}
        if x.size == 0:
            return x.copy(), [info]
        h, d = self.load_rir(path)
        info["direct_path"] = d
        y = fftconvolve(x.astype(np.float64), h)[d : d + x.size]
        px, py = mean_power(x), mean_power(y)
        if py > 0:
            y = y * np.sqrt(px / py)
        return peak_limit(y).astype(np.float32), [info]

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()  # do not ship loaded RIRs to DataLoader workers
        return state

    def __repr__(self) -> str:
        return f"Reverberate({len(self.files)} RIRs, sr={self.sr})"


__all__ = ["Reverberate", "read_rir_list"]
