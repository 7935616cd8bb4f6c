"""The metrics report of ``dpda evaluate``: pooled, per attack and per condition."""

from __future__ import annotations

import math
import re
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from dpda.data.manifest import BONAFIDE, Manifest
from dpda.errors import PathLike, ProtocolError
from dpda.evaluation.scores import JoinedScores, join_scores, read_scores
from dpda.metrics import (
    AsvOperatingPoint,
    act_dcf,
    cllr,
    det_curve,
    eer_from_det,
    min_dcf,
    min_tdcf_2021,
    min_tdcf_legacy,
)

#: Condition fields broken down by default, per format (only those present are used).
DEFAULT_BREAKDOWN = {
    "asvspoof2019": ("environment",),
    "asvspoof2021": ("codec", "transmission", "vocoder", "source"),
    "asvspoof5": ("codec",),
}


#: Standard errors above 50 % that an EER must exceed before the scores are called inverted.
INVERTED_EER_SIGMAS = 3.0


def inverted_eer_limit(n_bonafide: int, n_spoof: int) -> float:
    """EER (a fraction) above which scores look inverted rather than uninformative.

    Scores that carry no information give an EER near 50 %, scattered by the
    finite trial count. The EER averages a miss rate over ``n_bonafide`` trials
    and a false-alarm rate over ``n_spoof`` trials, so at chance (p = 0.5) its
    binomial standard error is ``sqrt(p (1 - p) / 4 * (1/n_bonafide + 1/n_spoof))``.
    The limit is 50 % plus :data:`INVERTED_EER_SIGMAS` (3) of those: 65 % for
    50 + 50 trials, 56.4 % for 300 + 250, 53.4 % for 1000 + 1000, 50.9 % for
    In-the-Wild's 19963 + 11816. (In simulations of random scores at these trial
    counts, 0.3 % of the EERs or fewer exceeded it.)
    """
    if n_bonafide <= 0 or n_spoof <= 0:
        raise ValueError("need at least one bona fide and one spoof trial")
    se = math.sqrt(0.25 / 4 * (1.0 / n_bonafide + 1.0 / n_spoof))
    return 0.5 + INVERTED_EER_SIGMAS * se


def _group_metrics(bona: np.ndarray, spoof: np.ndarray, asv: Optional[AsvOperatingPoint]) -> Dict[str, object]:
    out: Dict[str, object] = {"n_bonafide": int(bona.size), "n_spoof": int(spoof.size)}
    if bona.size == 0 or spoof.size == 0:
        out.update(eer=None, threshold=None)
        return out
    eer, thr, _ = eer_from_det(det_curve(bona, spoof))
    out.update(eer=100.0 * eer, threshold=thr)
    if asv is not None:
        out["min_tdcf"] = min_tdcf_2021(bona, spoof, asv).min_tdcf
    return out


def _sort_key(value: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", value)]


def evaluate_scores(
    joined: JoinedScores,
    *,
    fmt: str,
    asv: Optional[AsvOperatingPoint] = None,
    breakdown: Optional[Sequence[str]] = None,
) -> Dict[str, object]:
    """Metrics report: pooled, per attack and per condition.

    EERs are in percent in the report. Per attack: all bona fide trials
    against the spoofs of that attack. Per condition value: when bona fide
    trials carry the field (e.g. codec), bona fide and spoof trials of that
    value; when only spoofs carry it (e.g. DF vocoder type), all bona fide
    trials against the spoofs of that value.
    """
    key = joined.key
    bona, spoof = joined.split()
    if bona.size == 0 or spoof.size == 0:
        raise ProtocolError.at(key.source, None, f"need both bona fide and spoof trials to evaluate (got {bona.size} bona fide, {spoof.size} spoof)")
    det = det_curve(bona, spoof)
    eer, thr, _ = eer_from_det(det)
    report: Dict[str, object] = {"eer": 100.0 * eer, "threshold": thr, "n_bonafide": int(bona.size), "n_spoof": int(spoof.size)}
    if asv is not None:
        report["min_tdcf"] = min_tdcf_2021(bona, spoof, asv).min_tdcf
        report["min_tdcf_legacy"] = min_tdcf_legacy(bona, spoof, asv).min_tdcf
        report["asv"] = asv.as_dict()
    if fmt == "asvspoof5":
        report["min_dcf"] = min_dcf(bona, spoof).dcf
        report["act_dcf"] = act_dcf(bona, spoof).dcf
        report["cllr"] = cllr(bona, spoof)
    warnings = []
    limit = inverted_eer_limit(bona.size, spoof.size)
    if eer > limit:
        warnings.append(
            f"EER is {100 * eer:.2f}%, above chance (50%) by more than {INVERTED_EER_SIGMAS:g} standard errors "
            f"for {bona.size} bona fide and {spoof.size} spoof trials (limit {100 * limit:.2f}%): "
            "the scores look inverted; dpda expects higher scores for bona fide"
        )
    report["warnings"] = warnings

    labels = np.array([u.label for u in key.utterances], dtype=object)
    is_bona = labels == BONAFIDE
    attacks = np.array([u.attack for u in key.utterances], dtype=object)
    per_attack: Dict[str, object] = {}
    for attack in sorted({a for a in attacks[~is_bona] if a is not None}, key=_sort_key):
        per_attack[attack] = _group_metrics(bona, joined.scores[(attacks == attack) & ~is_bona], asv)
    report["per_attack"] = per_attack

    fields = DEFAULT_BREAKDOWN.get(fmt, ()) if breakdown is None else breakdown
    present = key.condition_names
    per_condition: Dict[str, object] = {}
    for field in fields:
        if field not in present:
            if breakdown is not None:
                raise ProtocolError.at(key.source, None, f"no condition field {field!r}; fields present: {', '.join(present) or 'none'}")
            continue
        values = np.array([u.conditions.get(field) for u in key.utterances], dtype=object)
        bona_has_field = any(v is not None for v in values[is_bona])
        groups: Dict[str, object] = {}
        for value in sorted({v for v in values if v is not None}, key=_sort_key):
            sel = values == value
            if bona_has_field:
                groups[value] = _group_metrics(joined.scores[sel & is_bona], joined.scores[sel & ~is_bona], asv)
            else:
                groups[value] = _group_metrics(bona, joined.scores[sel & ~is_bona], asv)
        per_condition[field] = groups
    report["per_condition"] = per_condition
    return report


def evaluate_score_file(
    key: Manifest,
    scores_path: PathLike,
    *,
    fmt: str,
    universe: Optional[Manifest] = None,
    breakdown: Optional[Sequence[str]] = None,
) -> Tuple[Dict[str, object], JoinedScores]:
    """Read a score file back, join it with the trials of ``key`` and evaluate: ``(report, joined)``.

    The steps of ``dpda score --evaluate``, the demo and the minibench:
    :func:`read_scores`, :func:`join_scores` (``universe``: see there) and
    :func:`evaluate_scores` (``fmt``, ``breakdown``: see there).
    """
    joined = join_scores(key, read_scores(scores_path), universe=universe, scores_path=scores_path)
    return evaluate_scores(joined, fmt=fmt, breakdown=breakdown), joined


__all__ = ["DEFAULT_BREAKDOWN", "INVERTED_EER_SIGMAS", "evaluate_score_file", "evaluate_scores", "inverted_eer_limit"]
