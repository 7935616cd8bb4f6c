"""ASV scores for the tandem detection cost function (t-DCF) of ``dpda evaluate --asv-scores``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np

from dpda.data.manifest import read_text_lines
from dpda.errors import PathLike, Problem, ProtocolError
from dpda.metrics import AsvOperatingPoint, asv_operating_point

ASV_KEYS = {"target": "target", "nontarget": "nontarget", "non-target": "nontarget", "spoof": "spoof"}


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
            value = float(fields[-1])
        except (ValueError, IndexError):
            problems.append(Problem(path, no, f"expected a number as the last column, got {fields[-1] if fields else ''!r}"))
            continue
        if not math.isfinite(value):
            problems.append(Problem(path, no, f"ASV score {fields[-1]!r} is not a finite number"))
            continue
        groups[kind].append(value)
    if problems:
        raise ProtocolError(problems, f"{path}: {len(problems)} problem(s) in ASV score file")
    empty = [k for k, v in groups.items() if not v]
    if empty:
        raise ProtocolError.at(path, None, f"no ASV scores of type {', '.join(empty)}" + (f" in subset {subset!r}" if subset else ""))
    return AsvScores(*(np.array(groups[k], dtype=np.float64) for k in ("target", "nontarget", "spoof")))


__all__ = ["ASV_KEYS", "AsvScores", "read_asv_scores"]
