"""``dpda detect``'s rules: kept importable here; they live in :mod:`dpda.inference.detect`."""

from dpda.inference.detect import SILENCE_PEAK, audio_warnings, decision_threshold, detect_files

__all__ = ["SILENCE_PEAK", "audio_warnings", "decision_threshold", "detect_files"]
