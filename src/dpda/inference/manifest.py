"""``dpda score``: every utterance of a protocol into a score file, resumably, bad files listed apart."""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, TextIO, Tuple, Union

import numpy as np
import torch

from dpda.errors import PathLike
from dpda.inference.dataset import AudioWindowsDataset, _identity, check_audio_present
from dpda.inference.errors import ScoringError
from dpda.inference.partial import ERRORS_SUFFIX, PARTIAL_SUFFIX, SCORE_FORMAT, finalise, read_partial, write_header
from dpda.inference.scorer import Scorer
from dpda.progress import Progress
from dpda.workers import WorkerInit, default_workers


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
                write_header(part_f, setup)
            if todo:
                dataset = AudioWindowsDataset(todo, scorer.sample_rate, scorer.spec)
                loader_kw: Dict[str, Any] = {}
                if num_workers > 0:
                    loader_kw.update(prefetch_factor=4, persistent_workers=False)
                loader = torch.utils.data.DataLoader(
                    dataset, batch_size=None, shuffle=False, num_workers=num_workers,
                    collate_fn=_identity, worker_init_fn=WorkerInit(), **loader_kw,
                )

                def record_error(utt_id: str, message: str) -> None:
                    nonlocal n_errors, err_f
                    if err_f is None:
                        errors_file.parent.mkdir(parents=True, exist_ok=True)
                        err_f = open(errors_file, "w", encoding="utf-8")
                    err_f.write(f"{utt_id}\t{' '.join(message.split())}\n")
                    err_f.flush()
                    n_errors += 1
                    bar.update(1, errors=1)

                def good_items() -> Iterator[Tuple[str, np.ndarray]]:
                    for utt_id, windows, message in loader:
                        if message is None:
                            yield utt_id, windows
                        else:
                            record_error(utt_id, message)

                for utt_id, score in scorer.score_windows(good_items()):
                    if not math.isfinite(score):
                        record_error(utt_id, f"model produced a non-finite score ({score})")
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

    n_scored = finalise(partial, out, ids, index)
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


def score_and_evaluate(
    manifest: Any,
    model_path_or_scorer: Union[PathLike, Scorer],
    out_path: PathLike,
    *,
    fmt: str,
    breakdown: Optional[Sequence[str]] = None,
    **score_options: Any,
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Score a labelled manifest into ``out_path`` and evaluate the scores: ``(summary, report)``.

    :func:`score_manifest` (``score_options`` are its keyword arguments), then
    :func:`dpda.evaluation.evaluate_score_file` on what it wrote (``fmt``,
    ``breakdown``). Raises :class:`ScoringError` when some files could not be
    scored (the score file would miss trials).
    """
    from dpda.evaluation import evaluate_score_file

    summary = score_manifest(manifest, model_path_or_scorer, out_path, **score_options)
    if summary["n_errors"]:
        raise ScoringError(f"{summary['n_errors']} file(s) could not be scored (see {summary['errors_path']}); "
                           "not evaluating an incomplete score file")
    report, _ = evaluate_score_file(manifest, out_path, fmt=fmt, breakdown=breakdown)
    return summary, report


__all__ = ["score_and_evaluate", "score_manifest"]
