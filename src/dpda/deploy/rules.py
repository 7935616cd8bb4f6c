"""The decision rules of ``dpda detect``, importable without torch: :mod:`dpda.inference.rules`.

Kept under this name for the deployment modules (ONNX scoring, ``dpda
serve``); errors are :class:`dpda.inference.ScoringError` (a
:class:`dpda.errors.DpdaError`).
"""

from dpda.inference.errors import ScoringError as RuleError
from dpda.inference.rules import SILENCE_PEAK, audio_warnings, decide, decision_threshold

__all__ = ["SILENCE_PEAK", "RuleError", "audio_warnings", "decide", "decision_threshold"]
