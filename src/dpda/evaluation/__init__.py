"""Score files joined with corpus keys, and the metrics report of ``dpda evaluate``.

Modules: :mod:`~dpda.evaluation.scores` (reading score files and joining them
strictly with a key, under one of several id forms: see there),
:mod:`~dpda.evaluation.asv` (ASV scores for the t-DCF),
:mod:`~dpda.evaluation.report` (the metrics report, pooled, per attack and per
condition); every name is importable from ``dpda.evaluation``. Apart:
:mod:`~dpda.evaluation.paired` (paired multi-seed comparisons of EERs with
hierarchical bootstrap intervals; import it as ``dpda.evaluation.paired``),
:mod:`~dpda.evaluation.power` (the seed-level t interval and how many seeds or
test trials a difference needs) and :mod:`~dpda.evaluation.multiplicity` (the
seed-level t test's p and Holm's adjustment for a table of such comparisons).
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
