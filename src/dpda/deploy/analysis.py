"""Per-window evidence for one waveform, and ``dpda detect`` without torch.

Times are in seconds from the start of the file; window ``i`` covers
``[start_i, end_i)``, with the starts of :func:`dpda.audio.sliding_windows`
(``0, hop, 2 hop, ...`` plus one window aligned to the end) in ``"full"``
mode and ``[0, window)`` in ``"fixed"`` mode; a file shorter than one window
has one window ``[0, duration)`` (repeat-padded for the model). The file's
score is the MEAN of the windows' ``logit[:, 1]`` (as
:class:`dpda.inference.Scorer`), decided by :mod:`dpda.deploy.rules`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from dpda.audio import load_audio
from dpda.errors import AudioError, PathLike
from dpda.deploy.rules import audio_warnings, decide, decision_threshold

#: points of the waveform envelope sent with a result (min / max per slice)
ENVELOPE_POINTS = 800


def window_starts(num_samples: int, window: int, mode: str = "full", hop: Optional[int] = None) -> List[int]:
    """Start sample of each window that :class:`dpda.inference.WindowSpec` cuts from ``num_samples`` samples."""
    if mode == "fixed" or num_samples <= window:
        return [0]
    hop = int(hop or window)
    last = num_samples - window
    starts = list(range(0, last + 1, hop))
    if starts[-1] != last:
        starts.append(last)
    return starts


def envelope(waveform: np.ndarray, points: int = ENVELOPE_POINTS) -> Dict[str, List[float]]:
    """``{"min": [...], "max": [...]}``: the extremes of ``points`` equal slices of ``(T,)`` samples (for drawing)."""
    n = int(waveform.shape[0])
    points = max(1, min(int(points), n))
    edges = np.linspace(0, n, points + 1).astype(np.int64)
    lo = np.minimum.reduceat(waveform, edges[:-1]) if n else np.zeros(0)
    hi = np.maximum.reduceat(waveform, edges[:-1]) if n else np.zeros(0)
    return {"min": [round(float(v), 4) for v in lo], "max": [round(float(v), 4) for v in hi]}


def file_report(
    waveform: np.ndarray,
    scores: np.ndarray,
    *,
    sample_rate: int,
    window: int,
    mode: str,
    hop: Optional[int],
    threshold: float,
    threshold_source: str,
    calibration: Optional[Dict[str, float]],
    with_envelope: bool = True,
) -> Dict[str, Any]:
    """The result for one file from its ``(T,)`` samples and the ``(n,)`` ``logit[:, 1]`` of its windows.

    Returns ``{"duration_seconds", "samples", "sample_rate", "score",
    "probability", "decision", "probability_disagrees", "threshold",
    "threshold_source", "decision_rule", "calibrated", "mode",
    "window_seconds", "warnings", "windows": [{"start", "end", "score",
    "probability", "decision"}], "envelope"}``; ``score`` is None (and
    ``error`` says why) when the model gave a non-finite score.
    """
    n = int(waveform.shape[0])
    starts = window_starts(n, window, mode, hop)
    if len(starts) != len(scores):
        raise ValueError(f"{len(scores)} window scores for {len(starts)} windows")
    duration = n / sample_rate
    rows = []
    for start, s in zip(starts, scores):
        end = min(start + window, n) / sample_rate
        row = decide(float(s), threshold, calibration) if math.isfinite(float(s)) else {"score": None}
        rows.append({"start": start / sample_rate, "end": end, **{k: row.get(k) for k in ("score", "probability", "decision")}})
    total = float(np.mean(scores))
    report: Dict[str, Any] = {
        "duration_seconds": duration,
        "samples": n,
        "sample_rate": int(sample_rate),
        "threshold": threshold,
        "threshold_source": threshold_source,
        "decision_rule": f"bonafide when score >= {threshold:.6g}, else spoof (threshold: {threshold_source})",
        "calibrated": bool(calibration),
        "mode": mode,
        "window_seconds": window / sample_rate,
    }
    if math.isfinite(total):
        report.update(decide(total, threshold, calibration))
    else:
        report.update(score=None, probability=None, decision=None, probability_disagrees=False,
                      error=f"model produced a non-finite score ({total})")
    report["warnings"] = audio_warnings(waveform, sample_rate, window)
    report["windows"] = rows
    if with_envelope:
        report["envelope"] = envelope(waveform)
    return report


def detect_files_onnx(
    paths: Sequence[PathLike],
    scorer: Any,
    threshold: Optional[float] = None,
    *,
    on_file: Optional[Callable[[str, int], Callable[[int], None]]] = None,
) -> Dict[str, Any]:
    """:func:`dpda.detection.detect_files` for an :class:`~dpda.deploy.onnx_scorer.OnnxScorer`, without torch.

    Same report: ``{"model", "threshold", "threshold_source",
    "decision_rule", "calibrated", "mode", "results"}``, each result
    ``{"file", "score", "probability", "decision", "probability_disagrees",
    "warnings"}`` or ``{"file", "error"}``. ``on_file(name, windows)``, when
    given, returns the per-batch progress callback of that file.
    """
    info = scorer.info
    thr, source = decision_threshold(info, threshold)
    cal = info.get("calibration") or None
    results: List[Dict[str, Any]] = []
    for path in paths:
        name = str(path)
        try:
            waveform = load_audio(path, scorer.sample_rate)
        except AudioError as e:
            results.append({"file": name, "error": e.problem})
            continue
        windows = scorer.windows(waveform)
        on_batch = None if on_file is None else on_file(name, windows.shape[0])
        score = float(np.mean(scorer.window_scores(windows, on_batch)))
        if not math.isfinite(score):
            results.append({"file": name, "error": f"model produced a non-finite score ({score})"})
            continue
        results.append({"file": name, **decide(score, thr, cal),
                        "warnings": audio_warnings(waveform, scorer.sample_rate, scorer.crop_samples)})
    return {
        "model": info.get("path"),
        "threshold": thr,
        "threshold_source": source,
        "decision_rule": f"bonafide when score >= {thr:.6g}, else spoof (threshold: {source})",
        "calibrated": cal is not None,
        "mode": scorer.mode,
        "results": results,
    }


__all__ = ["ENVELOPE_POINTS", "detect_files_onnx", "envelope", "file_report", "window_starts"]
