"""``dpda detect``: score loose audio files, flag unusual ones, decide bona fide / spoof.

Decision rule (one rule decides)
    ``"bonafide"`` when ``score >= threshold``, else ``"spoof"``, on the score
    ``logit[:, 1]``. The threshold is ``--threshold`` when given, else the
    checkpoint's dev-set EER threshold, else the score where the calibrated
    P(bona fide) is 0.5 (:func:`decision_threshold`). The report states the
    rule (``decision_rule``).

    P(bona fide) = ``sigmoid(a * score + b)`` (the checkpoint's calibration) is
    reported beside the decision and does not decide. The dev EER threshold
    (equal miss and false-alarm rates) and the point where P = 0.5 (equal
    priors and costs) are different operating points, so the two can fall on
    different sides for a score between them: such a result has
    ``probability_disagrees = True`` (P < 0.5 with "bonafide", or P >= 0.5
    with "spoof"), and ``dpda detect`` marks its row with ``*``.

Warnings (the file is still scored; ``warnings`` lists them per result)
    too short: fewer samples at the model's rate than one input window
    (the checkpoint's ``crop_samples``); the file is repeat-padded to the
    window, which the model never saw at training time.
    silent: peak ``|sample|`` below :data:`SILENCE_PEAK` = 1e-4 (-80 dBFS,
    about 3 steps of 16-bit PCM); all-zero files (digital silence) included.
    There is no speech to judge; the score is meaningless.

A file that cannot be used (missing, corrupt, truncated: see
:func:`dpda.audio.load_audio`) gets an ``error`` instead and the others are
still scored.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from dpda.audio import load_audio
from dpda.errors import AudioError, PathLike
from dpda.inference.rules import SILENCE_PEAK, audio_warnings, decide, decision_threshold
from dpda.inference.scorer import Scorer
from dpda.progress import Progress

def _score_one(scorer: Scorer, name: str, waveform: np.ndarray, progress: bool, label: str) -> float:
    windows = scorer.windows(waveform)
    # only files that take several forward passes (long ones) get a progress line
    bar = Progress(windows.shape[0], enabled=progress and windows.shape[0] > scorer.batch_size,
                   label=f"{label}: scored", items="windows", unit="windows")
    try:
        ((_, score),) = list(scorer.score_windows([(name, windows)], on_batch=bar.update))
    finally:
        bar.close()
    return float(score)


def detect_files(
    paths: Sequence[PathLike],
    model_path: Union[PathLike, Scorer],
    threshold: Optional[float] = None,
    *,
    mode: str = "full",
    hop: Optional[int] = None,
    device: Union[str, torch.device, None] = "auto",
    batch_size: int = 16,
    amp: bool = False,
    progress: bool = False,
) -> Dict[str, Any]:
    """Score loose audio files and decide bona fide / spoof (see the module docstring).

    Each file is read at any sample rate and length (resampled to the model's
    rate) and scored over full-utterance sliding windows by default
    (``mode="full"``). ``probability`` is P(bona fide) from the checkpoint's
    calibration, or None when it has none (a raw logit is not a
    probability). ``progress``: show a progress line of the windows scored on
    stderr, when it is a terminal, for files that take several batches.

    Returns ``{"model", "threshold", "threshold_source", "decision_rule",
    "calibrated", "mode", "results"}`` where each result is ``{"file",
    "score", "probability", "decision", "probability_disagrees",
    "warnings"}`` or ``{"file", "error"}`` for a file that could not be used
    (the others are still scored). ``probability_disagrees`` is False when
    there is no calibration.
    """
    if isinstance(model_path, Scorer):
        scorer = model_path
    else:
        scorer = Scorer.from_checkpoint(model_path, mode=mode, hop=hop, device=device, batch_size=batch_size, amp=amp)
    info = scorer.info
    thr, source = decision_threshold(info, threshold)
    cal = info.get("calibration") or None
    results: List[Dict[str, Any]] = []
    for i, path in enumerate(paths):
        name = str(path)
        try:
            waveform = load_audio(path, scorer.sample_rate)
        except AudioError as e:
            results.append({"file": name, "error": e.problem})
            continue
        label = name if len(paths) == 1 else f"[{i + 1}/{len(paths)}] {name}"
        score = _score_one(scorer, name, waveform, progress, label)
        if not math.isfinite(score):
            results.append({"file": name, "error": f"model produced a non-finite score ({score})"})
            continue
        results.append({
            "file": name,
            **decide(score, thr, cal),
            "warnings": audio_warnings(waveform, scorer.sample_rate, scorer.crop_samples),
        })
    return {
        "model": info.get("path", type(scorer.model).__name__),
        "threshold": thr,
        "threshold_source": source,
        "decision_rule": f"bonafide when score >= {thr:.6g}, else spoof (threshold: {source})",
        "calibrated": cal is not None,
        "mode": scorer.mode,
        "results": results,
    }


__all__ = ["SILENCE_PEAK", "audio_warnings", "decision_threshold", "detect_files"]
