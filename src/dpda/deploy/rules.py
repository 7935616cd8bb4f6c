"""The decision rules of ``dpda detect``, importable without torch.

:func:`decision_threshold` and :func:`audio_warnings` are
:mod:`dpda.detection`'s rules (see its module docstring: one threshold on the
score ``logit[:, 1]`` decides, P(bona fide) is reported beside it; warnings
"too short" and "silent"). :mod:`dpda.detection` imports torch, which an ONNX
deployment does not have, so:

* when torch is already loaded (a PyTorch checkpoint is being served), these
  functions CALL :mod:`dpda.detection`'s;
* otherwise they run the torch-free copies below, which
  ``tests/deploy/test_rules.py`` holds to the same results and messages as
  :mod:`dpda.detection` for every branch.

Errors are :class:`dpda.errors.DpdaError` (``ScoringError`` from
:mod:`dpda.detection`, :class:`RuleError` from the copies): catch ``DpdaError``.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from dpda.errors import DpdaError

#: peak amplitude below which a file is reported as silent (-80 dBFS); = dpda.detection.SILENCE_PEAK
SILENCE_PEAK = 1e-4


class RuleError(DpdaError, ValueError):
    """No usable decision threshold (torch-free twin of ``dpda.inference.ScoringError`` here)."""


def _detection():
    """:mod:`dpda.detection` when torch is already imported (then importing it costs nothing new), else None."""
    if "torch" not in sys.modules:
        return None
    from dpda import detection

    return detection


def decision_threshold(info: Dict[str, Any], threshold: Optional[float] = None) -> Tuple[float, str]:
    """``(threshold, source)``: ``threshold`` if given, else the model's dev EER threshold, else P = 0.5."""
    detection = _detection()
    if detection is not None:
        return detection.decision_threshold(info, threshold)
    return _decision_threshold(info, threshold)


def audio_warnings(waveform: np.ndarray, sample_rate: int, window: int) -> List[str]:
    """Why the score of ``(T,)`` samples at ``sample_rate`` Hz may mean little (too short, silent)."""
    detection = _detection()
    if detection is not None:
        return detection.audio_warnings(waveform, sample_rate, window)
    return _audio_warnings(waveform, sample_rate, window)


def _decision_threshold(info: Dict[str, Any], threshold: Optional[float] = None) -> Tuple[float, str]:
    if threshold is not None:
        if not math.isfinite(float(threshold)):
            raise RuleError(f"--threshold must be a finite number, got {threshold}")
        return float(threshold), "--threshold"
    if info.get("threshold") is not None:
        if not math.isfinite(float(info["threshold"])):
            raise RuleError(
                f"{info.get('path', 'the model')} stores a non-finite decision threshold ({info['threshold']}): "
                "pass --threshold T"
            )
        return float(info["threshold"]), "checkpoint (dev EER)"
    cal = info.get("calibration")
    if cal and float(cal.get("a", 0.0)) > 0.0:
        return -float(cal["b"]) / float(cal["a"]), "calibration (P = 0.5)"
    raise RuleError(
        f"{info.get('path', 'the model')} stores no decision threshold (no dev-set EER threshold and no "
        "calibration): pass --threshold T (a threshold on the score logit[:, 1]; e.g. the EER threshold "
        "that 'dpda score --evaluate' prints for a labelled dev set)"
    )


def _audio_warnings(waveform: np.ndarray, sample_rate: int, window: int) -> List[str]:
    found: List[str] = []
    n = int(waveform.shape[-1])
    if n < int(window):
        found.append(
            f"too short for the model's window: {n / sample_rate:.3f} s < {window / sample_rate:.3f} s "
            f"({n} < {window} samples); it was repeat-padded to the window, the score is less reliable"
        )
    peak = float(np.max(np.abs(waveform))) if n else 0.0
    if peak == 0.0:
        found.append("silent: every sample is 0 (digital silence); the score says nothing about speech")
    elif peak < SILENCE_PEAK:
        found.append(
            f"silent: peak amplitude {peak:.1e} is below {SILENCE_PEAK:g} (-80 dBFS); "
            "the score says nothing about speech"
        )
    return found


def decide(score: float, threshold: float, calibration: Optional[Dict[str, float]]) -> Dict[str, Any]:
    """``{"score", "probability", "decision", "probability_disagrees"}`` of one score, as ``dpda detect`` reports it.

    ``probability`` is ``sigmoid(a * score + b)`` with the model's
    calibration, None without one; the decision is ``score >= threshold``.
    """
    from dpda.metrics.calibration import calibrated_probability

    prob = None if not calibration else float(calibrated_probability(score, calibration["a"], calibration["b"]))
    decision = "bonafide" if score >= threshold else "spoof"
    return {
        "score": float(score),
        "probability": prob,
        "decision": decision,
        "probability_disagrees": prob is not None and (prob >= 0.5) != (decision == "bonafide"),
    }


__all__ = ["SILENCE_PEAK", "RuleError", "audio_warnings", "decide", "decision_threshold"]
