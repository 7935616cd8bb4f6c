"""``dpda detect``'s decision rules, importable without torch (the ONNX path and ``dpda serve`` use them too).

One threshold on the score ``logit[:, 1]`` decides (:func:`decision_threshold`
says which threshold and where it comes from); P(bona fide) from the model's
calibration is reported beside it (:func:`decide`); :func:`audio_warnings`
flags files whose score may mean little (too short, silent). See
:mod:`dpda.inference.detect` for the full rules.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from dpda.inference.errors import ScoringError

#: peak amplitude below which a file is reported as silent (-80 dBFS)
SILENCE_PEAK = 1e-4


def decision_threshold(info: Dict[str, Any], threshold: Optional[float] = None) -> Tuple[float, str]:
    """The decision threshold on the score and where it comes from.

    In order: ``threshold`` (explicit, ``"--threshold"``); the checkpoint's
    dev-set EER threshold (``"checkpoint (dev EER)"``); with only a
    calibration ``(a, b)``, the score where P(bona fide) = 0.5, ``-b / a``
    (``"calibration (P = 0.5)"``). Without any of these no threshold is
    invented: :class:`ScoringError` asks for ``--threshold``. A non-finite
    threshold (NaN, inf) is refused: every score would get the same decision.
    """
    if threshold is not None:
        if not math.isfinite(float(threshold)):
            raise ScoringError(f"--threshold must be a finite number, got {threshold}")
        return float(threshold), "--threshold"
    if info.get("threshold") is not None:
        if not math.isfinite(float(info["threshold"])):
            raise ScoringError(
                f"{info.get('path', 'the model')} stores a non-finite decision threshold ({info['threshold']}): "
                "pass --threshold T"
            )
        return float(info["threshold"]), "checkpoint (dev EER)"
    cal = info.get("calibration")
    if cal and float(cal.get("a", 0.0)) > 0.0:
        return -float(cal["b"]) / float(cal["a"]), "calibration (P = 0.5)"
    raise ScoringError(
        f"{info.get('path', 'the model')} stores no decision threshold (no dev-set EER threshold and no "
        "calibration): pass --threshold T (a threshold on the score logit[:, 1]; e.g. the EER threshold "
        "that 'dpda score --evaluate' prints for a labelled dev set)"
    )


def audio_warnings(waveform: np.ndarray, sample_rate: int, window: int) -> List[str]:
    """Why the score of a waveform (at the model's rate) may mean little: too short, silent."""
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


__all__ = ["SILENCE_PEAK", "audio_warnings", "decide", "decision_threshold"]
