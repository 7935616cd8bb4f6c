"""Score files joined with corpus keys, and the metrics report of ``dpda evaluate``.

Score files hold one trial per line, ``UTT_ID SCORE`` (higher = more bona
fide); further columns are ignored, and ``score_column`` selects another
column for files such as AASIST's ``UTT_ID SOURCE KEY SCORE``. Blank lines
and lines starting with ``#`` are skipped.

Joining is strict: a scored id that the key does not know, an id scored twice,
or a key trial without a score is an error, never a silently smaller trial
list. Trials that the key has but a filter (``--subset eval``) excluded are
ignored, so a full ASVspoof 2021 submission can be scored on one phase.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from dpda.data.manifest import BONAFIDE, SPOOF, Manifest, read_text_lines
from dpda.errors import PathLike, Problem, ProtocolError
from dpda.metrics import (
    AsvOperatingPoint,
    act_dcf,
    asv_operating_point,
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

ASV_KEYS = {"target": "target", "nontarget": "nontarget", "non-target": "nontarget", "spoof": "spoof"}


def _listing(ids: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


def read_scores(path: PathLike, score_column: int = 2) -> "OrderedDict[str, float]":
    """Read a score file into ``{utt_id: score}`` (file order).

    Args:
        path: text file, whitespace-separated columns.
        score_column: 1-based column of the score (the id is always column 1).

    Raises:
        ProtocolError: listing every malformed line, non-numeric or NaN score,
            and repeated id (with the line of its first occurrence).
    """
    if score_column < 2:
        raise ValueError("score_column must be >= 2 (column 1 is the utterance id)")
    path = Path(path)
    scores: "OrderedDict[str, float]" = OrderedDict()
    first_line: Dict[str, int] = {}
    problems: List[Problem] = []
    for no, raw in enumerate(read_text_lines(path), start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.split()
        if len(fields) < score_column:
            problems.append(Problem(path, no, f"expected at least {score_column} columns (UTT_ID ... SCORE in column {score_column}), got {len(fields)}"))
            continue
        utt, raw_score = fields[0], fields[score_column - 1]
        try:
            value = float(raw_score)
        except ValueError:
            hint = " (remove the header line)" if no == 1 else ""
            problems.append(Problem(path, no, f"expected a number in column {score_column}, got {raw_score!r}{hint}"))
            continue
        if np.isnan(value):
            problems.append(Problem(path, no, f"score of {utt} is NaN"))
            continue
        if utt in first_line:
            problems.append(Problem(path, no, f"utterance {utt} is scored twice (first on line {first_line[utt]})"))
            continue
        first_line[utt] = no
        scores[utt] = value
    if problems:
        raise ProtocolError(problems, f"{path}: {len(problems)} problem(s) in score file")
    if not scores:
        raise ProtocolError.at(path, None, "no scores found (expected lines 'UTT_ID SCORE')")
    return scores


@dataclass(frozen=True)
class JoinedScores:
    """Scores aligned with the utterances of a key; ``n_ignored`` scored trials were filtered out."""

    key: Manifest
    scores: np.ndarray
    n_ignored: int

    def split(self, mask: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """(bona fide scores, spoof scores), optionally of a subset of trials."""
        labels = np.array([u.label for u in self.key.utterances], dtype=object)
        keep = np.ones(len(labels), bool) if mask is None else mask
        return self.scores[keep & (labels == BONAFIDE)], self.scores[keep & (labels == SPOOF)]


def join_scores(
    key: Manifest,
    scores: Mapping[str, float],
    *,
    universe: Optional[Manifest] = None,
    scores_path: PathLike = "scores",
) -> JoinedScores:
    """Align scores with the trials of ``key``.

    ``universe`` is the unfiltered key: scored ids that it holds but ``key``
    does not are ignored (counted); ids unknown to it are an error.
    """
    if not key.labelled:
        unlabelled = [u.utt_id for u in key if u.label is None]
        raise ProtocolError.at(
            key.source, None,
            f"{len(unlabelled)} trial(s) have no bonafide/spoof label (e.g. {_listing(unlabelled, 3)}): "
            "a key with labels is needed to evaluate",
        )
    wanted = key.by_id()
    known = universe.by_id() if universe is not None else wanted
    extra = [u for u in scores if u not in known]
    missing = [u for u in wanted if u not in scores]
    problems = []
    if extra:
        problems.append(Problem(scores_path, None, f"{len(extra)} scored id(s) are not in the key {key.source}: {_listing(extra)}"))
    if missing:
        problems.append(Problem(scores_path, None, f"{len(missing)} trial(s) of the key have no score: {_listing(missing)}"))
    if problems:
        raise ProtocolError(problems, "scores and key do not match (refusing to evaluate a different trial list)")
    aligned = np.array([scores[u.utt_id] for u in key.utterances], dtype=np.float64)
    n_ignored = sum(1 for u in scores if u not in wanted)
    return JoinedScores(key, aligned, n_ignored)


@dataclass(frozen=True)
class AsvScores:
    """ASV scores by trial type."""

    target: np.ndarray
    nontarget: np.ndarray
    spoof: np.ndarray

    def operating_point(self) -> AsvOperatingPoint:
        return asv_operating_point(self.target, self.nontarget, self.spoof)


def read_asv_scores(path: PathLike, key_path: Optional[PathLike] = None, subset: Optional[str] = None) -> AsvScores:
    """Read ASV scores for the t-DCF.

    Two layouts:

    * one file whose lines hold a trial type (``target``, ``nontarget`` or
      ``spoof``) and end with the score, as ASVspoof 2019's
      ``ASVspoof2019.LA.asv.eval.gi.trl.scores.txt`` (``SOURCE KEY SCORE``);
    * ``key_path`` given (ASVspoof 2021 ``keys/*/ASV/trial_metadata.txt`` with
      the organisers' ``score.txt``): the score file's lines are aligned with
      the key's; the key's column 6 is the trial type and column 8 the subset,
      which ``subset`` selects.
    """
    path = Path(path)
    lines = [(no, l.split()) for no, l in enumerate(read_text_lines(path), start=1) if l.strip()]
    problems: List[Problem] = []
    groups: Dict[str, List[float]] = {"target": [], "nontarget": [], "spoof": []}
    if key_path is not None:
        key_path = Path(key_path)
        key_lines = [(no, l.split()) for no, l in enumerate(read_text_lines(key_path), start=1) if l.strip()]
        if len(key_lines) != len(lines):
            raise ProtocolError.at(path, None, f"has {len(lines)} lines but the ASV key {key_path} has {len(key_lines)}; they must be aligned")
        pairs: Iterable = zip(key_lines, lines)
    else:
        pairs = ((None, line) for line in lines)
    for key_line, (no, fields) in pairs:
        if key_line is not None:
            kno, kfields = key_line
            if len(kfields) < 6:
                problems.append(Problem(key_path, kno, f"expected at least 6 columns (trial type in column 6), got {len(kfields)}"))
                continue
            if subset is not None and (len(kfields) < 8 or kfields[7] != subset):
                continue
            kind = ASV_KEYS.get(kfields[5])
            if kind is None:
                problems.append(Problem(key_path, kno, f"unknown ASV trial type {kfields[5]!r} in column 6; expected target, nontarget or spoof"))
                continue
        else:
            kinds = [ASV_KEYS[f] for f in fields[:-1] if f in ASV_KEYS]
            if len(kinds) != 1:
                problems.append(Problem(path, no, "expected exactly one trial type (target, nontarget or spoof) followed by the score as last column"))
                continue
            kind = kinds[0]
        try:
            groups[kind].append(float(fields[-1]))
        except (ValueError, IndexError):
            problems.append(Problem(path, no, f"expected a number as the last column, got {fields[-1] if fields else ''!r}"))
    if problems:
        raise ProtocolError(problems, f"{path}: {len(problems)} problem(s) in ASV score file")
    empty = [k for k, v in groups.items() if not v]
    if empty:
        raise ProtocolError.at(path, None, f"no ASV scores of type {', '.join(empty)}" + (f" in subset {subset!r}" if subset else ""))
    return AsvScores(*(np.array(groups[k], dtype=np.float64) for k in ("target", "nontarget", "spoof")))


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
    if eer > 0.5:
        warnings.append(
            f"EER is {100 * eer:.2f}% (> 50%): the scores look inverted; dpda expects higher scores for bona fide"
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
