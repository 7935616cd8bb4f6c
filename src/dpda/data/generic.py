"""Any corpus: a CSV list of audio files, or a folder of audio.

(a) ``PROTOCOL`` is a CSV file whose header names a ``path`` column and
optionally ``label``, ``speaker``, ``attack`` and ``utt_id`` (header names are
matched case-insensitively; every other column becomes a condition field)::

    path,label,speaker,attack,language
    clips/a.wav,bonafide,spk1,,en
    clips/b.flac,spoof,spk1,tts-3,en

A file whose header has tabs and no commas is read as tab-separated.

* Labels (case-insensitive): ``bonafide``, ``bona-fide``, ``bona_fide``,
  ``genuine``, ``real`` -> bona fide; ``spoof``, ``fake``, ``deepfake`` ->
  spoof. With a ``label`` column every row needs a valid label; without one
  every utterance is unlabelled (``label=None``).
* ``utt_id`` is the ``utt_id`` column when there is one, else the ``path``
  value as written (``clips/a.wav``). Ids must not contain whitespace (score
  files are ``UTT_ID SCORE`` lines): add a ``utt_id`` column when paths do.
* Relative paths are resolved against ``ROOT`` if given, else against the
  CSV's directory; absolute paths are kept.
* Empty cells and ``-`` mean 'not given' for speaker, attack and conditions.

(b) ``PROTOCOL`` is a directory: every audio file below it (``.wav``,
``.flac``, ``.mp3``, ``.ogg``, searched recursively, names starting with ``.``
skipped) becomes an unlabelled utterance whose id is its path relative to the
directory in POSIX form (``sub/x.wav``), in sorted order. ``ROOT`` is not used
(if given it must be that same directory).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from dpda.data.manifest import (
    BONAFIDE,
    SPOOF,
    LineError,
    Utterance,
    check_id,
    expect_label,
    read_text_lines,
)
from dpda.errors import Problem, ProtocolError
from dpda.fileio import scan_audio

ACCEPTED_LABELS = {
    "bonafide": BONAFIDE, "bona-fide": BONAFIDE, "bona_fide": BONAFIDE,
    "genuine": BONAFIDE, "real": BONAFIDE,
    "spoof": SPOOF, "fake": SPOOF, "deepfake": SPOOF,
}
KNOWN_COLUMNS = ("path", "label", "speaker", "attack", "utt_id")


def check_same_dir(protocol: Path, root: Optional[Path], fmt: str) -> None:
    """Folder layouts have no separate audio root: ``root`` must be absent or the folder."""
    if root is not None and Path(root).resolve() != Path(protocol).resolve():
        raise ProtocolError.at(
            root, None,
            f"the {fmt} folder layout takes no separate audio root; got root {str(root)!r} "
            f"but protocol folder {str(protocol)!r} (leave the root out)",
        )


def parse_rows(protocol: Path, rows, one, utts: List[Utterance], problems: List[Problem]) -> Tuple[List[Utterance], List[Problem]]:
    """Apply ``one(row, line_no)`` to the rows of :func:`csv_rows`, collecting bad rows as problems."""
    for no, row, error in rows:
        if row is None:
            problems.append(Problem(protocol, no, error))
            continue
        try:
            utts.append(one(row, no))
        except LineError as e:
            problems.append(Problem(protocol, no, str(e)))
    return utts, problems


def csv_rows(lines: Sequence[str], delimiter: str = ",") -> Iterator[Tuple[int, Optional[List[str]], str]]:
    """``(line, cells, error)`` for each non-blank CSV row.

    ``line`` is the 1-based line where the row starts; ``cells`` are stripped.
    An unreadable row gives ``cells=None`` and the reason in ``error``.
    """
    reader = csv.reader(iter(lines), delimiter=delimiter)
    last = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            start, last = last + 1, reader.line_num
            yield start, None, f"unreadable CSV row: {e}"
            continue
        start, last = last + 1, reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        yield start, [c.strip() for c in row], ""


def label_any_case(value: str, accepted: Dict[str, str]) -> str:
    """:func:`expect_label` ignoring case; the error quotes the value as written."""
    try:
        return expect_label(value.lower(), accepted)
    except LineError:
        raise LineError(
            f"unknown label {value!r}; expected one of: " + ", ".join(repr(k) for k in accepted)
            + " (any case)"
        ) from None


def _optional(value: str) -> Optional[str]:
    return None if value in ("", "-") else value


def _parse_folder(directory: Path, root: Optional[Path]) -> Tuple[List[Utterance], List[Problem]]:
    check_same_dir(directory, root, "generic")
    utts: List[Utterance] = []
    problems: List[Problem] = []
    for rel in scan_audio(directory):
        try:
            utts.append(Utterance(check_id(rel), directory / rel, None))
        except LineError as e:
            problems.append(Problem(directory / rel, None, str(e)))
    return utts, problems


def parse(protocol: Path, root: Optional[Path]) -> Tuple[List[Utterance], List[Problem]]:
    """Parse a generic CSV list, or list the audio files of a folder."""
    protocol = Path(protocol)
    if protocol.is_dir():
        return _parse_folder(protocol, root)
    lines = read_text_lines(protocol)
    base = Path(root) if root is not None else protocol.parent
    utts: List[Utterance] = []
    problems: List[Problem] = []
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return utts, problems
    delimiter = "\t" if ("\t" in lines[first] and "," not in lines[first]) else ","
    rows = csv_rows(lines, delimiter)
    header_no, header, error = next(rows)
    if header is None:
        return utts, [Problem(protocol, header_no, f"header: {error}")]
    names = [h.lower() for h in header]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if "path" not in names or repeated or "" in names:
        if "path" not in names:
            msg = (f"header {','.join(header)!r} has no 'path' column; expected a header with "
                   f"'path' and optionally {', '.join(repr(c) for c in KNOWN_COLUMNS[1:])}")
        elif repeated:
            msg = f"header repeats column(s) {', '.join(repr(n) for n in repeated)}; column names must be unique"
        else:
            msg = "header has an empty column name; every column needs a name"
        return utts, [Problem(protocol, header_no, msg)]
    index: Dict[str, int] = {n: i for i, n in enumerate(names)}
    extra = [(i, header[i]) for i, n in enumerate(names) if n not in KNOWN_COLUMNS]
    accepted = ", ".join(repr(k) for k in ACCEPTED_LABELS)

    def one(row: List[str], no: int) -> Utterance:
        if len(row) != len(names):
            raise LineError(f"expected {len(names)} columns ({','.join(header)}), got {len(row)}")
        path_value = row[index["path"]]
        if not path_value:
            raise LineError("empty 'path'; expected the path of an audio file")
        label = None
        if "label" in index:
            raw = row[index["label"]]
            if not raw:
                raise LineError(f"empty label; every row needs one of: {accepted}")
            label = label_any_case(raw, ACCEPTED_LABELS)
        if "utt_id" in index:
            utt_id = check_id(row[index["utt_id"]], "utt_id")
        else:
            try:
                utt_id = check_id(path_value, "utterance id (the 'path' value)")
            except LineError as e:
                raise LineError(f"{e}; add a 'utt_id' column") from None
        path = Path(path_value)
        if not path.is_absolute():
            path = base / path
        conditions = {}
        for i, name in extra:
            value = _optional(row[i])
            if value is not None:
                conditions[name] = value
        return Utterance(
            utt_id=utt_id,
            path=path,
            label=label,
            speaker=_optional(row[index["speaker"]]) if "speaker" in index else None,
            attack=_optional(row[index["attack"]]) if "attack" in index else None,
            conditions=conditions,
            line=no,
        )

    return parse_rows(protocol, rows, one, utts, problems)
