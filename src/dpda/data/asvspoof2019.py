"""ASVspoof 2019 LA and PA countermeasure (CM) protocols.

Layout: five whitespace-separated columns per line::

    SPEAKER  UTT  ENV  ATTACK  LABEL

Logical access (``ASVspoof2019.LA.cm.train.trn.txt`` and the dev/eval files)::

    LA_0079 LA_T_1138215 - - bonafide
    LA_0079 LA_T_1271820 - A01 spoof

Physical access (``ASVspoof2019.PA.cm.*.txt``); ``ENV`` is the acoustic
environment (kept as ``conditions["environment"]``), ``ATTACK`` the replay
attack id::

    PA_0079 PA_T_0000001 aaa - bonafide
    PA_0079 PA_T_0005401 aaa AA spoof

``LABEL`` must be ``bonafide`` or ``spoof``. A field written ``-`` means
'not applicable' (no attack for bona fide trials, no environment in LA).

A file of single-column lines is read as an unlabelled trial list (one
utterance id per line, e.g. ``ASVspoof2021.LA.cm.eval.trl.txt``); its
utterances have ``label=None``. One file holds one layout: the first data line
decides which.

Audio paths: ``ROOT/flac/UTT.flac`` when ``ROOT/flac`` is a directory (the
layout of the released ``ASVspoof2019_LA_train`` folders), else
``ROOT/UTT.flac``. ``ROOT`` defaults to the directory of the protocol file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

from dpda.data.manifest import (
    BONAFIDE,
    SPOOF,
    LineError,
    Utterance,
    check_field_id,
    dash_to_none,
    expect_label,
    parse_lines,
    read_text_lines,
)
from dpda.errors import Problem

#: label spellings of the protocol
ACCEPTED_LABELS = {"bonafide": BONAFIDE, "spoof": SPOOF}

COLUMNS = "SPEAKER UTT ENV ATTACK LABEL"


def audio_dir(protocol: Path, root: Optional[Path]) -> Path:
    """The folder holding ``UTT.flac``: ``ROOT/flac`` if it exists, else ``ROOT``.

    ``ROOT`` defaults to the protocol's directory. Shared by the ASVspoof
    2019, 2021 and 5 parsers.
    """
    base = Path(root) if root is not None else Path(protocol).parent
    flac = base / "flac"
    return flac if flac.is_dir() else base


def file_layout(lines: Iterable[str], accepted: Sequence[int], skip_first: bool = False) -> Optional[int]:
    """Column count of the first data line whose count is one of ``accepted``.

    Blank and ``#`` lines are skipped, as :func:`parse_lines` does. ``None``
    when no line has an accepted count (every line is then reported as bad).
    """
    for no, raw in enumerate(lines, start=1):
        if skip_first and no == 1:
            continue
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        n = len(text.split())
        if n in accepted:
            return n
    return None


def unlabelled(utt_id: str, directory: Path, no: int) -> Utterance:
    """An utterance of a one-column trial list."""
    return Utterance(check_field_id(utt_id), directory / f"{utt_id}.flac", None, line=no)


def parse(protocol: Path, root: Optional[Path]) -> Tuple[List[Utterance], List[Problem]]:
    """Parse an ASVspoof 2019 CM protocol (or a one-column trial list)."""
    protocol = Path(protocol)
    lines = read_text_lines(protocol)
    directory = audio_dir(protocol, root)
    layout = file_layout(lines, (5, 1))

    def one(fields: List[str], no: int) -> Utterance:
        n = len(fields)
        if layout == 1:
            if n != 1:
                raise LineError(
                    f"expected 1 column (UTT) like the rest of this trial list, got {n}"
                )
            return unlabelled(fields[0], directory, no)
        if n != 5:
            hint = ""
            if n == 4 and fields[-1] in ("target", "nontarget", "spoof"):
                hint = " (this looks like an ASV protocol; dpda needs the CM protocol, '*.cm.*.txt')"
            elif n == 1:
                hint = " (a one-column trial list cannot be mixed with a labelled protocol)"
            accepted = "5 columns (" + COLUMNS + ")" if layout == 5 else f"5 columns ({COLUMNS}) or 1 column (UTT)"
            raise LineError(f"expected {accepted}, got {n}{hint}")
        speaker, utt, env, attack, label = fields
        label = expect_label(label, ACCEPTED_LABELS)
        conditions = {} if env == "-" else {"environment": env}
        return Utterance(
            utt_id=check_field_id(utt),
            path=directory / f"{utt}.flac",
            label=label,
            speaker=dash_to_none(speaker),
            attack=dash_to_none(attack),
            conditions=conditions,
            line=no,
        )

    return parse_lines(protocol, one, lines=lines)
