"""Scoring utterances with a trained countermeasure: ``dpda score`` and ``dpda detect``.

Score convention
    Every dpda model maps ``(B, T)`` float32 waveforms at its sample rate
    (16 kHz) to logits ``(B, 2)`` with class 1 = bona fide. The score of an
    input window is ``logits[:, 1]`` (higher = more bona fide), which is what
    the official AASIST scoring writes; the EER threshold and the calibration
    stored in a checkpoint refer to this score.

Input windows (``mode``)
    ``"fixed"``: the first ``crop_samples`` samples, a shorter utterance
    repeat-padded (tiled) to that length (:func:`dpda.audio.pad_or_crop`):
    what AASIST and the DPDA paper do, and the default of ``dpda score`` so
    that results are comparable with published numbers.
    ``"full"``: :func:`dpda.audio.sliding_windows` of ``crop_samples`` with
    hop ``hop`` (default ``crop_samples``, no overlap, plus one window aligned
    to the end) covering the whole utterance; the utterance score is the
    MEAN of ``logit[:, 1]`` over its windows. The default of ``dpda detect``,
    which takes files of any length.

Batching
    Windows of consecutive utterances are packed into batches of
    ``batch_size`` windows (an utterance's windows may straddle two batches),
    so memory is O(batch_size + one utterance) and the composition of the
    batches depends only on the order of the utterances.

:func:`score_manifest` writes ``UTT_ID SCORE`` lines, resumably; see its
docstring. :func:`detect_files` and :func:`decision_threshold` (in
:mod:`dpda.detection`, importable from here too) score loose files and turn
scores into decisions and probabilities.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Set,
    TextIO,
    Tuple,
    Union,
)

import numpy as np
import torch
import torch.nn as nn

from dpda.audio import load_audio, pad_or_crop, sliding_windows
from dpda.devices import DeviceError, place_rank
from dpda.errors import AudioError, DpdaError, PathLike
from dpda.progress import Progress
from dpda.workers import WorkerInit, default_workers

MODES = ("fixed", "full")

#: score format in score files: 9 significant digits round-trip a float32 exactly
SCORE_FORMAT = "{:.9g}"

PARTIAL_SUFFIX = ".partial"
ERRORS_SUFFIX = ".errors"
_HEADER_PREFIX = "# dpda score partial:"


class ScoringError(DpdaError, RuntimeError):
    """Scoring cannot start or continue (bad options, foreign partial file, ...)."""


class MissingAudioError(ScoringError):
    """The first audio files of a protocol are all missing: the audio root is most likely wrong.

    ``missing``: the paths checked (None for an utterance without one).
    """

    def __init__(self, message: str, missing: Sequence[Optional[str]]) -> None:
        super().__init__(message)
        self.missing = list(missing)


#: utterances at the start of a protocol checked before scoring starts (see :func:`check_audio_present`)
PREFLIGHT_FILES = 20


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """The device to score on: ``"auto"`` (or None) is CUDA when available, else the CPU.

    Raises :class:`ScoringError` for a name torch does not know, for CUDA on a
    machine without a visible GPU and for ``cuda:N`` beyond the visible GPUs
    (instead of "invalid device ordinal" from deep inside CUDA). The rules are
    :func:`dpda.devices.place_rank`'s for one process.
    """
    try:
        return place_rank("auto" if device is None else str(device)).device
    except DeviceError as e:
        raise ScoringError(f"--device: {e}") from None


@dataclass(frozen=True)
class WindowSpec:
    """How a waveform becomes model inputs: picklable, so DataLoader workers can do it."""

    crop_samples: int
    mode: str = "fixed"
    hop: Optional[int] = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if int(self.crop_samples) <= 0:
            raise ValueError(f"crop_samples must be positive, got {self.crop_samples}")
        if self.hop is not None and int(self.hop) <= 0:
            raise ValueError(f"hop must be a positive number of samples, got {self.hop}")

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        """``(T,)`` float32 samples -> ``(num_windows, crop_samples)`` float32 windows."""
        x = np.asarray(waveform, dtype=np.float32)
        if self.mode == "fixed":
            return pad_or_crop(x, int(self.crop_samples), mode="repeat")[None, :]
        return sliding_windows(x, int(self.crop_samples), None if self.hop is None else int(self.hop))


class _Pending:
    __slots__ = ("key", "windows", "next_row", "total")

    def __init__(self, key: Any, windows: np.ndarray) -> None:
        self.key = key
        self.windows = windows
        self.next_row = 0
        self.total = 0.0


class Scorer:
    """Batched scoring of waveforms with a countermeasure model.

    Args:
        model: maps ``(B, T)`` float32 to logits ``(B, 2)`` (or a tuple whose
            first element is the logits); class 1 = bona fide.
        sample_rate: rate in Hz the model expects (audio is resampled to it).
        crop_samples: window length in samples (the training crop).
        mode: ``"fixed"`` (first window, repeat-padded) or ``"full"`` (mean of
            ``logit[:, 1]`` over sliding windows); see the module docstring.
        hop: hop between sliding windows in samples (``"full"`` mode only;
            default ``crop_samples``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        batch_size: windows per forward pass.
        amp: autocast the forward pass (float16 on CUDA, bfloat16 on CPU);
            scores are returned as float32/float64 all the same.
    """

    def __init__(
        self,
        model: nn.Module,
        sample_rate: int = 16000,
        crop_samples: int = 64600,
        mode: str = "fixed",
        hop: Optional[int] = None,
        device: Union[str, torch.device, None] = "cpu",
        batch_size: int = 32,
        amp: bool = False,
    ) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.spec = WindowSpec(int(crop_samples), mode, None if hop is None else int(hop))
        self.sample_rate = int(sample_rate)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.amp = bool(amp)
        self.info: Dict[str, Any] = {}
        self.forward_windows = 0  # windows run through the model (for tests and statistics)

    @property
    def mode(self) -> str:
        return self.spec.mode

    @property
    def crop_samples(self) -> int:
        return self.spec.crop_samples

    @property
    def hop(self) -> Optional[int]:
        return self.spec.hop

    @classmethod
    def from_checkpoint(
        cls,
        path: PathLike,
        *,
        mode: str = "fixed",
        hop: Optional[int] = None,
        device: Union[str, torch.device, None] = "cpu",
        batch_size: int = 32,
        amp: bool = False,
    ) -> "Scorer":
        """A scorer for a checkpoint file or run directory; its metadata is in ``.info``."""
        from dpda.train.checkpoint import load_model

        model, info = load_model(path, device="cpu")
        scorer = cls(
            model,
            sample_rate=int(info.get("sample_rate") or 16000),
            crop_samples=int(info.get("crop_samples") or 64600),
            mode=mode,
            hop=hop,
            device=device,
            batch_size=batch_size,
            amp=amp,
        )
        scorer.info = info
        return scorer

    def describe(self) -> str:
        """One line identifying the scoring setup (written in partial files, checked on resume)."""
        model = self.info.get("path") or type(self.model).__name__
        if self.info.get("path"):
            model = os.path.abspath(model)
        return f"model={model} mode={self.mode} crop={self.crop_samples} hop={self.hop} sr={self.sample_rate} amp={self.amp}"

    def windows(self, waveform: np.ndarray) -> np.ndarray:
        """``(num_windows, crop_samples)`` inputs of a waveform at ``sample_rate``."""
        return self.spec(waveform)

    # -- forward passes -------------------------------------------------------------------------

    def _autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @torch.no_grad()
    def forward(self, batch: np.ndarray) -> np.ndarray:
        """``logit[:, 1]`` of a ``(B, crop_samples)`` batch, as float64."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, non_blocking=True)
        with self._autocast():
            out = self.model(x)
        logits = out[0] if isinstance(out, (tuple, list)) else out
        if logits.ndim != 2 or logits.shape[0] != x.shape[0] or logits.shape[1] < 2:
            raise ScoringError(f"model returned shape {tuple(logits.shape)}; expected logits (B, 2)")
        self.forward_windows += int(x.shape[0])
        return logits[:, 1].float().cpu().numpy().astype(np.float64)

    def _run_batch(self, pending: Deque[_Pending], n: int, on_batch: Optional[Callable[[int], None]] = None) -> None:
        rows: List[np.ndarray] = []
        owners: List[Tuple[_Pending, int]] = []
        need = n
        for item in pending:
            if need == 0:
                break
            left = item.windows.shape[0] - item.next_row
            if left <= 0:
                continue
            take = min(left, need)
            rows.append(item.windows[item.next_row : item.next_row + take])
            owners.append((item, take))
            item.next_row += take
            need -= take
        scores = self.forward(np.concatenate(rows, axis=0) if len(rows) > 1 else rows[0])
        pos = 0
        for item, take in owners:
            item.total += float(np.sum(scores[pos : pos + take]))
            pos += take
        if on_batch is not None:
            on_batch(n)

    @staticmethod
    def _pop_done(pending: Deque[_Pending]) -> Iterator[Tuple[Any, float]]:
        while pending and pending[0].next_row >= pending[0].windows.shape[0]:
            item = pending.popleft()
            yield item.key, item.total / item.windows.shape[0]

    def score_windows(
        self, items: Iterable[Tuple[Any, np.ndarray]], on_batch: Optional[Callable[[int], None]] = None
    ) -> Iterator[Tuple[Any, float]]:
        """Score ``(key, windows)`` pairs (windows from :meth:`windows`); yield ``(key, score)`` in order.

        Windows of consecutive items share batches of ``batch_size`` windows;
        an item is yielded as soon as all its windows are scored.
        ``on_batch(n)`` is called after each forward pass of ``n`` windows
        (progress displays).
        """
        pending: Deque[_Pending] = deque()
        unscored = 0
        for key, windows in items:
            windows = np.asarray(windows, dtype=np.float32)
            if windows.ndim != 2 or windows.shape[0] == 0 or windows.shape[1] != self.crop_samples:
                raise ValueError(f"{key}: expected windows of shape (n, {self.crop_samples}), got {windows.shape}")
            pending.append(_Pending(key, windows))
            unscored += windows.shape[0]
            while unscored >= self.batch_size:
                self._run_batch(pending, self.batch_size, on_batch)
                unscored -= self.batch_size
                yield from self._pop_done(pending)
        while unscored > 0:
            n = min(self.batch_size, unscored)
            self._run_batch(pending, n, on_batch)
            unscored -= n
            yield from self._pop_done(pending)

    def score_waveforms(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """Scores (float64) of waveforms already at ``sample_rate``."""
        out = [s for _, s in self.score_windows((i, self.windows(w)) for i, w in enumerate(waveforms))]
        return np.asarray(out, dtype=np.float64)

    def score_file(self, path: PathLike) -> float:
        """Score of one audio file (any format libsndfile reads, resampled); raises AudioError."""
        return float(self.score_waveforms([load_audio(path, self.sample_rate)])[0])


# -- audio loading in DataLoader workers ---------------------------------------------------------


class AudioWindowsDataset(torch.utils.data.Dataset):
    """``(utt_id, windows, None)`` per utterance, or ``(utt_id, None, error message)``.

    Loading, resampling and windowing happen in the DataLoader workers; a file
    that cannot be used never raises, so one bad file cannot stop a run.
    """

    def __init__(self, items: Sequence[Tuple[str, Optional[str]]], sample_rate: int, spec: WindowSpec) -> None:
        self.items = items
        self.sample_rate = int(sample_rate)
        self.spec = spec

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Tuple[str, Optional[np.ndarray], Optional[str]]:
        utt_id, path = self.items[index]
        if path is None:
            return utt_id, None, "the protocol gives no audio path for this utterance"
        try:
            return utt_id, self.spec(load_audio(path, self.sample_rate)), None
        except AudioError as e:
            return utt_id, None, str(e)
        except Exception as e:  # anything else about one file must not stop the run either
            return utt_id, None, f"{path}: {type(e).__name__}: {e}"


def _identity(x: Any) -> Any:
    return x


def check_audio_present(items: Sequence[Tuple[str, Optional[str]]], n: int = PREFLIGHT_FILES) -> None:
    """Raise :class:`MissingAudioError` when the audio of the first ``n`` utterances is all missing.

    ``items``: ``(utt_id, path)`` in protocol order. Such a protocol is almost
    surely read with the wrong audio root: rather than trying every file and
    writing an error per utterance, stop before any work. A few missing files
    among present ones are not this function's business (they become
    per-file errors).
    """
    first = list(items[: max(1, int(n))])
    if not first or any(path is not None and os.path.exists(path) for _, path in first):
        return
    paths = [path for _, path in first]
    named = [p for p in paths if p is not None]
    folders = sorted({os.path.dirname(p) or "." for p in named})
    what = f"the {len(first)}" if len(first) == len(items) else f"the first {len(first)}"
    lines = [f"none of {what} audio files of the protocol exists, e.g.:"]
    lines += [f"  {p}" for p in named[:3]] or ["  (the protocol gives no audio paths)"]
    if folders:
        others = f" and {len(folders) - 1} other folder(s)" if len(folders) > 1 else ""
        lines.append(f"looked in {folders[0]}{others}")
    lines.append("is the audio root right? (nothing was scored)")
    raise MissingAudioError("\n".join(lines), paths)


# -- resumable score files -----------------------------------------------------------------------


def read_partial(partial: Path, known: Dict[str, int], setup: Optional[str] = None) -> Set[str]:
    """Ids already scored in a partial score file; repairs its tail in place.

    A last line without a newline (the write was interrupted) is cut off, so
    that utterance is scored again. A header naming a different scoring setup,
    a malformed complete line, an id outside the manifest or an id scored
    twice raise :class:`ScoringError` (delete the partial file to start over).
    """
    done: Set[str] = set()
    if not partial.exists():
        return done
    hint = f"; delete {partial} to score from scratch"
    complete_bytes = 0
    cut_short = False
    with open(partial, "rb") as f:  # streamed: memory stays O(1) besides the id set
        for no, raw_bytes in enumerate(f, start=1):
            if not raw_bytes.endswith(b"\n"):
                cut_short = True  # the last write was interrupted: drop it, that utterance is rescored
                break
            complete_bytes += len(raw_bytes)
            raw = raw_bytes.decode("utf-8", errors="replace").rstrip("\r\n")
            line = raw.strip()
            if not line:
                continue
            if line.startswith("#"):
                if line.startswith(_HEADER_PREFIX) and setup is not None:
                    previous = line[len(_HEADER_PREFIX) :].strip()
                    if previous != setup:
                        raise ScoringError(
                            f"{partial} was written by a different scoring setup ({previous}), "
                            f"not this one ({setup}); re-run with the same model and options to resume" + hint
                        )
                continue
            fields = line.split()
            try:
                value = float(fields[1]) if len(fields) == 2 else float("nan")
            except ValueError:
                value = float("nan")
            if not math.isfinite(value):
                raise ScoringError(f"{partial}:{no}: expected 'UTT_ID SCORE', got {raw!r}" + hint)
            if fields[0] not in known:
                raise ScoringError(f"{partial}:{no}: utterance {fields[0]} is not in the protocol being scored" + hint)
            if fields[0] in done:
                raise ScoringError(f"{partial}:{no}: utterance {fields[0]} is scored twice" + hint)
            done.add(fields[0])
    if cut_short:
        with open(partial, "r+b") as f:
            f.truncate(complete_bytes)
            f.flush()
            os.fsync(f.fileno())
    return done


def _finalise(partial: Path, out: Path, ids: Sequence[str], index: Dict[str, int]) -> int:
    """Write the partial file's scores to ``out`` atomically, in manifest order; return the count."""
    from dpda.fileio import atomic_path

    scores = np.zeros(len(ids), dtype=np.float64)
    have = np.zeros(len(ids), dtype=bool)
    with open(partial, "r", encoding="utf-8") as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            utt, value = line.split()
            i = index[utt]
            scores[i] = float(value)
            have[i] = True
    with atomic_path(out) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for i in np.flatnonzero(have):
                f.write(f"{ids[i]} {SCORE_FORMAT.format(scores[i])}\n")
            f.flush()
            os.fsync(f.fileno())
    return int(have.sum())


def score_manifest(
    manifest: Any,
    model_path_or_scorer: Union[PathLike, Scorer],
    out_path: PathLike,
    *,
    num_workers: Optional[int] = None,
    batch_size: int = 32,
    mode: str = "fixed",
    hop: Optional[int] = None,
    device: Union[str, torch.device, None] = "auto",
    amp: bool = False,
    errors_path: Optional[PathLike] = None,
    progress: bool = True,
) -> Dict[str, Any]:
    """Score every utterance of a manifest into ``out_path`` (``UTT_ID SCORE`` lines).

    Audio is read, resampled and windowed by a :class:`torch.utils.data.DataLoader`
    with ``num_workers`` worker processes (0: in this process; default
    :func:`dpda.workers.default_workers`, the usable CPUs up to 4); the workers
    die with this process, even after a ``kill -9`` (:class:`dpda.workers.WorkerInit`).
    Windows are scored in batches of ``batch_size`` (``mode``, ``hop``,
    ``device``, ``amp``: see :class:`Scorer`; they are ignored when a Scorer
    is given).

    Before anything is loaded or written, :func:`check_audio_present` refuses
    a protocol whose first :data:`PREFLIGHT_FILES` audio files are all missing
    (:class:`MissingAudioError`: the audio root is wrong).

    Resumable: lines are appended to ``out_path + ".partial"`` and flushed
    after each batch. Running again with the partial file present skips the
    utterances it already scores (a last line cut short by the interruption
    is dropped and that utterance rescored; a partial file written with a
    different model or options is refused). At the end the scores are written
    to ``out_path`` atomically, in manifest order.

    Unusable audio (:class:`dpda.errors.AudioError`: missing, empty, corrupt,
    non-finite samples; or a non-finite model score) does not stop the run:
    ``UTT_ID<TAB>message`` is written to ``errors_path`` (default
    ``out_path + ".errors"``) and the id is left out of ``out_path``. The
    partial file is then kept, so running again retries only those files.
    Memory is O(batch) apart from the set of ids.

    Returns a summary dict: ``out``, ``n_total``, ``n_scored`` (lines in
    ``out``), ``n_new``, ``n_resumed``, ``n_errors``, ``errors_path`` (None
    when there were no errors), ``complete``, ``seconds``, ``setup``.
    """
    out = Path(out_path)
    partial = Path(str(out) + PARTIAL_SUFFIX)
    errors_file = Path(errors_path) if errors_path is not None else Path(str(out) + ERRORS_SUFFIX)
    check_audio_present([(u.utt_id, None if u.path is None else str(u.path)) for u in manifest])
    num_workers = default_workers() if num_workers is None else int(num_workers)
    if isinstance(model_path_or_scorer, Scorer):
        scorer = model_path_or_scorer
    else:
        scorer = Scorer.from_checkpoint(
            model_path_or_scorer, mode=mode, hop=hop, device=device, batch_size=batch_size, amp=amp
        )
    ids = [u.utt_id for u in manifest]
    index = {u: i for i, u in enumerate(ids)}
    if len(index) != len(ids):
        raise ScoringError("the manifest has repeated utterance ids")
    setup = scorer.describe()
    start = time.monotonic()

    out.parent.mkdir(parents=True, exist_ok=True)
    done = read_partial(partial, index, setup)
    n_resumed = len(done)
    todo = [(u.utt_id, None if u.path is None else str(u.path)) for u in manifest if u.utt_id not in done]
    del done
    with contextlib.suppress(FileNotFoundError):
        errors_file.unlink()  # errors of an earlier run are retried below

    n_new = 0
    n_errors = 0
    bar = Progress(len(todo), enabled=progress)
    err_f: Optional[TextIO] = None
    try:
        with open(partial, "a", encoding="utf-8") as part_f:
            if part_f.tell() == 0:
                part_f.write(f"{_HEADER_PREFIX} {setup}\n")
                part_f.flush()
            if todo:
                dataset = AudioWindowsDataset(todo, scorer.sample_rate, scorer.spec)
                loader_kw: Dict[str, Any] = {}
                if num_workers > 0:
                    loader_kw.update(prefetch_factor=4, persistent_workers=False)
                loader = torch.utils.data.DataLoader(
                    dataset, batch_size=None, shuffle=False, num_workers=num_workers,
                    collate_fn=_identity, worker_init_fn=WorkerInit(), **loader_kw,
                )

                def good_items() -> Iterator[Tuple[str, np.ndarray]]:
                    nonlocal n_errors, err_f
                    for utt_id, windows, message in loader:
                        if message is None:
                            yield utt_id, windows
                            continue
                        if err_f is None:
                            errors_file.parent.mkdir(parents=True, exist_ok=True)
                            err_f = open(errors_file, "w", encoding="utf-8")
                        err_f.write(f"{utt_id}\t{' '.join(message.split())}\n")
                        err_f.flush()
                        n_errors += 1
                        bar.update(1, errors=1)

                for utt_id, score in scorer.score_windows(good_items()):
                    if not math.isfinite(score):
                        if err_f is None:
                            errors_file.parent.mkdir(parents=True, exist_ok=True)
                            err_f = open(errors_file, "w", encoding="utf-8")
                        err_f.write(f"{utt_id}\tmodel produced a non-finite score ({score})\n")
                        err_f.flush()
                        n_errors += 1
                        bar.update(1, errors=1)
                        continue
                    # Buffered: whole lines reach the file on each flush, and when the file is
                    # closed on an exception (Ctrl-C) -- a kill can only cut the last line short.
                    part_f.write(f"{utt_id} {SCORE_FORMAT.format(score)}\n")
                    n_new += 1
                    bar.update(1)
                    if n_new % scorer.batch_size == 0:
                        part_f.flush()
                part_f.flush()
            os.fsync(part_f.fileno())
    finally:
        bar.close()
        if err_f is not None:
            err_f.close()

    n_scored = _finalise(partial, out, ids, index)
    complete = n_scored == len(ids)
    if complete:
        partial.unlink()
    return {
        "out": str(out),
        "n_total": len(ids),
        "n_scored": n_scored,
        "n_new": n_new,
        "n_resumed": n_resumed,
        "n_errors": n_errors,
        "errors_path": str(errors_file) if n_errors else None,
        "partial_path": None if complete else str(partial),
        "complete": complete,
        "seconds": time.monotonic() - start,
        "setup": setup,
    }


# -- detect: loose files (dpda.detection) --------------------------------------------------------

_DETECTION_NAMES = ("detect_files", "decision_threshold")


def __getattr__(name: str) -> Any:
    """``detect_files`` and ``decision_threshold`` live in :mod:`dpda.detection` (imported on use)."""
    if name in _DETECTION_NAMES:
        from dpda import detection

        return getattr(detection, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MODES", "Scorer", "WindowSpec", "ScoringError", "MissingAudioError", "AudioWindowsDataset", "Progress",
    "PREFLIGHT_FILES", "check_audio_present", "score_manifest", "read_partial", "detect_files",
    "decision_threshold", "resolve_device",
]
