"""Score files joined with corpus keys, and the metrics report of ``dpda evaluate``.

Score files hold one trial per line, ``UTT_ID SCORE`` (higher = more bona
fide); further columns are ignored, and ``score_column`` selects another
column for files such as AASIST's ``UTT_ID SOURCE KEY SCORE``. Blank lines
and lines starting with ``#`` are skipped.

Joining is strict: a scored id that the key does not know, an id scored twice,
or a key trial without a score is an error, never a silently smaller trial
list. Trials that the key has but a filter (``--subset eval``) excluded are
ignored, so a full ASVspoof 2021 submission can be scored on one phase.

Score files written by other tools often name a trial by its audio file
(``27913.wav`` where the In-the-Wild key's id is ``27913``) or by its path
(``flac/LA_E_123.flac``). Besides the key's utterance id, a trial is accepted
under one of these id forms (:class:`IdForm`): the last ``k`` components of
its audio path, with or without the file extension. The whole score file must
use one form, and the form must name every trial of the key differently;
otherwise the join is an error that names the offending ids.

Modules: :mod:`~dpda.evaluation.scores` (reading and joining score files),
:mod:`~dpda.evaluation.asv` (ASV scores for the t-DCF),
:mod:`~dpda.evaluation.report` (the metrics report); every name is
importable from ``dpda.evaluation``.
"""

from __future__ import annotations

from dpda.evaluation.asv import ASV_KEYS, AsvScores, read_asv_scores
from dpda.evaluation.report import (
    DEFAULT_BREAKDOWN,
    INVERTED_EER_SIGMAS,
    evaluate_score_file,
    evaluate_scores,
    inverted_eer_limit,
)
from dpda.evaluation.scores import UTT_ID, IdForm, JoinedScores, join_scores, read_scores

__all__ = [
    "ASV_KEYS", "AsvScores", "DEFAULT_BREAKDOWN", "INVERTED_EER_SIGMAS", "IdForm", "JoinedScores", "UTT_ID",
    "evaluate_score_file", "evaluate_scores", "inverted_eer_limit", "join_scores", "read_asv_scores", "read_scores",
]
