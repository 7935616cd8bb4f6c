"""In-the-Wild (``release_in_the_wild/meta.csv``).

A comma-separated file with the header ``file,speaker,label``::

    file,speaker,label
    0.wav,Alec Guinness,spoof
    1.wav,Alec Guinness,bona-fide
    2.wav,"Biden, Joe",spoof

Speaker names hold spaces and may hold commas inside quotes (the file is read
with the :mod:`csv` module). Header names are matched case-insensitively;
extra columns are ignored.

Labels: ``bona-fide`` (also ``bonafide``) and ``spoof``, in any case.
``utt_id`` is the file name without its extension (``0``); the audio path is
``ROOT/FILE`` with ``ROOT`` defaulting to the CSV's directory (where the
released archive keeps the ``.wav`` files).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from dpda.data.generic import csv_rows, label_any_case, parse_rows
from dpda.data.manifest import (
    BONAFIDE,
    SPOOF,
    LineError,
    Utterance,
    check_id,
    read_text_lines,
)
from dpda.errors import Problem

ACCEPTED_LABELS = {"bona-fide": BONAFIDE, "bonafide": BONAFIDE, "spoof": SPOOF}
HEADER = ("file", "speaker", "label")


def parse(protocol: Path, root: Optional[Path]) -> Tuple[List[Utterance], List[Problem]]:
    """Parse the In-the-Wild ``meta.csv``."""
    protocol = Path(protocol)
    lines = read_text_lines(protocol)
    base = Path(root) if root is not None else protocol.parent
    utts: List[Utterance] = []
    problems: List[Problem] = []
    rows = csv_rows(lines)
    try:
        header_no, header, error = next(rows)
    except StopIteration:
        return utts, problems
    if header is None:
        return utts, [Problem(protocol, header_no, f"header: {error}")]
    names = [h.lower() for h in header]
    missing = [c for c in HEADER if c not in names]
    if missing:
        return utts, [Problem(
            protocol, header_no,
            f"header {','.join(header)!r} lacks column(s) {', '.join(repr(c) for c in missing)}; "
            f"expected the header {','.join(HEADER)!r}",
        )]
    i_file, i_speaker, i_label = (names.index(c) for c in HEADER)
    width = len(names)

    def one(row: List[str], no: int) -> Utterance:
        if len(row) != width:
            raise LineError(
                f"expected {width} columns ({','.join(header)}), got {len(row)}"
                " (quote speaker names that contain commas)"
            )
        name = row[i_file]
        if not name:
            raise LineError("empty 'file'; expected an audio file name such as '0.wav'")
        label = label_any_case(row[i_label], ACCEPTED_LABELS)
        stem = name.rsplit("/", 1)[-1]
        utt_id = check_id(stem.rsplit(".", 1)[0] if "." in stem else stem)
        return Utterance(
            utt_id=utt_id,
            path=base / name,
            label=label,
            speaker=row[i_speaker] or None,
            line=no,
        )

    return parse_rows(protocol, rows, one, utts, problems)
