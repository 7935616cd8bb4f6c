"""The errors of scoring."""

from __future__ import annotations

from typing import Optional, Sequence

from dpda.errors import DpdaError


class ScoringError(DpdaError, RuntimeError):
    """Scoring cannot start or continue (bad options, foreign partial file, ...)."""


class MissingAudioError(ScoringError):
    """The first audio files of a protocol are all missing: the audio root is most likely wrong.

    ``missing``: the paths checked (None for an utterance without one).
    """

    def __init__(self, message: str, missing: Sequence[Optional[str]]) -> None:
        super().__init__(message)
        self.missing = list(missing)


__all__ = ["ScoringError", "MissingAudioError"]
