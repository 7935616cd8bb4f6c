"""Score files: reading them and joining them with corpus keys.

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
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from dpda.data.manifest import BONAFIDE, SPOOF, Manifest, Utterance, read_text_lines
from dpda.errors import PathLike, Problem, ProtocolError


def _listing(ids: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


def read_scores(path: PathLike, score_column: int = 2) -> "OrderedDict[str, float]":
    """Read a score file into ``{utt_id: score}`` (file order).

    Args:
        path: text file, whitespace-separated columns.
        score_column: 1-based column of the score (the id is always column 1).

    Raises:
        ProtocolError: listing every malformed line, non-numeric or non-finite
            score (NaN, ``inf``, ``-inf``), and repeated id (with the line of
            its first occurrence).
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
        if not math.isfinite(value):
            what = "NaN" if math.isnan(value) else ("+inf" if value > 0 else "-inf")
            written = "" if raw_score.lower() in ("nan", "inf", "-inf") else f" (written {raw_score!r})"
            problems.append(Problem(path, no, f"score of {utt} is {what}{written}; scores must be finite numbers"))
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
class IdForm:
    """How a score file writes the id of a trial.

    ``components == 0`` is the key's utterance id. Otherwise the id is the last
    ``components`` components of the trial's audio path joined by ``/``
    (``1``: the file name, ``27913.wav``; ``2``: ``flac/LA_E_123.flac``),
    with its file extension when ``extension`` is true.
    """

    components: int = 0
    extension: bool = True

    @property
    def name(self) -> str:
        """Short name, as in ``dpda evaluate --json``: ``utt_id``, ``file_name``,
        ``file_name_no_ext``, ``path_2``, ``path_2_no_ext``, ..."""
        if self.components == 0:
            return "utt_id"
        base = "file_name" if self.components == 1 else f"path_{self.components}"
        return base if self.extension else base + "_no_ext"

    def describe(self) -> str:
        if self.components == 0:
            return "the key's utterance ids"
        if self.components == 1:
            what = "audio file names"
        else:
            what = f"the last {self.components} components of the audio paths"
        return what + (" with extension" if self.extension else " without extension")

    def alias(self, utt: Utterance) -> Optional[str]:
        """The id of ``utt`` in this form (``None`` when its path is too short or missing)."""
        if self.components == 0:
            return utt.utt_id
        return None if utt.path is None else self._of_path(_posix(utt.path))

    def _of_path(self, text: str) -> Optional[str]:
        tail = text.rsplit("/", self.components)[-self.components:]
        if len(tail) < self.components or "" in tail:
            return None
        if not self.extension:
            tail[-1] = _without_extension(tail[-1])
        return "/".join(tail)


UTT_ID = IdForm()


def _posix(path: PathLike) -> str:
    text = os.fspath(path)
    return text if os.sep == "/" else text.replace(os.sep, "/")


def _without_extension(name: str) -> str:
    """``name`` without its last suffix, as :func:`os.path.splitext` (``a.b.wav`` -> ``a.b``, ``.x`` kept)."""
    dot = name.rfind(".")
    return name[:dot] if dot > 0 and name[:dot].strip(".") else name


def _candidate_forms(ids: Iterable[str]) -> List[IdForm]:
    """The path forms that ids shaped like these could be written in (file name, ``a/b.wav``, ...)."""
    depths = sorted({u.count("/") + 1 for u in ids})
    return [IdForm(k, ext) for k in depths for ext in (True, False)]


@dataclass
class _AliasTable:
    """The trials of a key by their id in one :class:`IdForm`.

    ``ids`` maps an alias to its trial's utterance id; ``shared`` lists the
    aliases that name more than one trial (ambiguous: absent from ``ids``).
    """

    ids: Dict[str, str]
    shared: Dict[str, List[str]]

    @classmethod
    def build(cls, form: IdForm, trials: Manifest, paths: Sequence[Optional[str]]) -> "_AliasTable":
        """``paths`` are the trials' audio paths in POSIX form (``None`` where unknown)."""
        if form.components == 1:  # file names: the common case, done without a call per trial
            names = [None if t is None else t.rpartition("/")[2] or None for t in paths]
            if not form.extension:
                names = [None if n is None else _without_extension(n) for n in names]
        else:
            names = [None if t is None else form._of_path(t) for t in paths]
        ids: Dict[str, str] = {}
        shared: Dict[str, List[str]] = {}
        for u, alias in zip(trials.utterances, names):
            if alias is None:
                continue
            if alias in ids:
                shared[alias] = [ids.pop(alias), u.utt_id]
            elif alias in shared:
                shared[alias].append(u.utt_id)
            else:
                ids[alias] = u.utt_id
        return cls(ids, shared)


@dataclass(frozen=True)
class JoinedScores:
    """Scores aligned with the utterances of a key; ``n_ignored`` scored trials were filtered out.

    ``id_form`` is the form the score file wrote its ids in (``utt_id`` when they
    are the key's utterance ids); ``id_note`` says so in words when it is another
    form (``None`` otherwise).
    """

    key: Manifest
    scores: np.ndarray
    n_ignored: int
    id_form: str = "utt_id"
    id_note: Optional[str] = None

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

    Score ids are the key's utterance ids, or all of them are written in one
    other :class:`IdForm` (the audio file name with or without extension, or
    the last components of the audio path): the form that matches the most
    scored ids is used, provided it names every trial of ``universe``
    differently. Ids written in another form than that one, trials that would
    get two scores, unknown ids and trials without a score are errors that
    name the ids.
    """
    if not key.labelled:
        unlabelled = [u.utt_id for u in key if u.label is None]
        raise ProtocolError.at(
            key.source, None,
            f"{len(unlabelled)} trial(s) have no bonafide/spoof label (e.g. {_listing(unlabelled, 3)}): "
            "a key with labels is needed to evaluate",
        )
    universe = universe if universe is not None else key
    known = universe.by_id()
    wanted = key.by_id()
    foreign = [u for u in scores if u not in known]
    if not foreign:  # every id is an utterance id: the common case, kept fast for 600k-trial keys
        missing = [u for u in wanted if u not in scores]
        if missing:
            raise ProtocolError(
                [Problem(scores_path, None, f"{len(missing)} trial(s) of the key have no score: {_listing(missing)}")],
                "scores and key do not match (refusing to evaluate a different trial list)",
            )
        aligned = np.array([scores[u.utt_id] for u in key.utterances], dtype=np.float64)
        return JoinedScores(key, aligned, sum(1 for u in scores if u not in wanted))

    # Try the path forms that the foreign ids' shapes allow; keep the one matching the most ids.
    tables: Dict[IdForm, _AliasTable] = {}
    form, best = UTT_ID, len(scores) - len(foreign)
    paths = [None if u.path is None else _posix(u.path) for u in universe.utterances]
    for candidate in _candidate_forms(foreign):
        table = tables[candidate] = _AliasTable.build(candidate, universe, paths)
        matched = sum(1 for u in scores if u in table.ids or u in table.shared)
        if matched > best:
            form, best = candidate, matched
    if form != UTT_ID:
        shared = list(tables[form].shared.items())
        if shared:
            listed = "; ".join(f"{a} ({', '.join(ids)})" for a, ids in shared[:10])
            more = f"; ... ({len(shared) - 10} more)" if len(shared) > 10 else ""
            raise ProtocolError.at(
                scores_path, None,
                f"score ids are written as {form.describe()}, but that form is ambiguous in the key "
                f"{key.source}: {len(shared)} id(s) name more than one trial: {listed}{more}; "
                "write the key's utterance ids instead",
            )

    def resolve(score_id: str, in_form: IdForm) -> Optional[str]:
        if in_form == UTT_ID:
            return score_id if score_id in known else None
        return tables[in_form].ids.get(score_id)

    others = [f for f in (UTT_ID, *tables) if f != form]
    scored: Dict[str, str] = {}  # utt_id -> its score id (in the chosen form)
    other_forms: List[Tuple[str, str, IdForm]] = []  # (score id, utt_id, the form it is written in)
    extra: List[str] = []
    for score_id in scores:
        utt = resolve(score_id, form)
        if utt is not None:
            scored[utt] = score_id
            continue
        for other in others:
            utt = resolve(score_id, other)
            if utt is not None:
                other_forms.append((score_id, utt, other))
                break
        else:
            extra.append(score_id)
    problems = []
    if extra:
        problems.append(Problem(scores_path, None, f"{len(extra)} scored id(s) are not in the key {key.source}: {_listing(extra)}"))
    twice = [(s, u, f) for s, u, f in other_forms if u in scored]
    mixed = [(s, u, f) for s, u, f in other_forms if u not in scored]
    if twice:
        listed = [f"{u} (as {scored[u]} and {s})" for s, u, _ in twice]
        problems.append(Problem(
            scores_path, None,
            f"{len(twice)} trial(s) would get two scores, the file writes their ids in two forms: {_listing(listed)}",
        ))
    if mixed:
        listed = [f"{s} ({f.describe()})" for s, _, f in mixed]
        problems.append(Problem(
            scores_path, None,
            f"{len(mixed)} scored id(s) are written in another form than the other ids "
            f"({form.describe()}); a score file must write every id in one form: {_listing(listed)}",
        ))
    elsewhere = {u for _, u, _ in other_forms}
    missing = [u for u in wanted if u not in scored and u not in elsewhere]
    if missing:
        shown = [form.alias(wanted[u]) or u for u in missing]
        problems.append(Problem(
            scores_path, None, f"{len(missing)} trial(s) of the key have no score: {_listing(shown)}",
        ))
    if problems:
        raise ProtocolError(problems, "scores and key do not match (refusing to evaluate a different trial list)")
    aligned = np.array([scores[scored[u.utt_id]] for u in key.utterances], dtype=np.float64)
    n_ignored = sum(1 for u in scored if u not in wanted)
    note = None
    if form != UTT_ID:
        first = key.utterances[0]
        note = (
            f"score ids matched the key as {form.describe()} "
            f"({scored[first.utt_id]} = trial {first.utt_id} of {key.source})"
        )
    return JoinedScores(key, aligned, n_ignored, form.name, note)


__all__ = ["IdForm", "JoinedScores", "UTT_ID", "join_scores", "read_scores"]
