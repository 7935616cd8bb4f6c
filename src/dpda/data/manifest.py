"""The typed manifest every corpus parser produces.

A :class:`Manifest` is an ordered, immutable list of :class:`Utterance` records
with unique utterance ids. Corpus modules (``asvspoof2019``, ``asvspoof2021``,
``itw``, ``fakeorreal``, ``asvspoof5``, ``generic``) turn their protocol files
into one; :func:`dpda.data.load_manifest` picks the module by format name.
"""

from __future__ import annotations

import gc
import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

from dpda.errors import PathLike, Problem, ProtocolError

BONAFIDE = "bonafide"
SPOOF = "spoof"
LABELS = (BONAFIDE, SPOOF)

#: Integer class index of each label; the field's convention is 1 = bona fide.
LABEL_TO_INDEX = {SPOOF: 0, BONAFIDE: 1}


@dataclass(frozen=True)
class Utterance:
    """One trial of a corpus.

    ``label`` is ``"bonafide"``, ``"spoof"`` or ``None`` (unlabelled audio).
    ``attack`` is the spoofing system id (``None`` for bona fide or unknown).
    ``conditions`` holds corpus-specific condition fields, e.g. ``codec``,
    ``transmission``, ``vocoder``, ``subset``, ``environment``; a field whose
    value is ``-`` in the protocol is left out.
    ``line`` is the 1-based line in the protocol file (``None`` for folder
    layouts).
    """

    utt_id: str
    path: Optional[Path]
    label: Optional[str]
    speaker: Optional[str] = None
    attack: Optional[str] = None
    conditions: Mapping[str, str] = field(default_factory=dict, hash=False)
    line: Optional[int] = None

    @property
    def target(self) -> int:
        """Class index: 1 for bona fide, 0 for spoof (raises for unlabelled)."""
        if self.label is None:
            raise ValueError(f"utterance {self.utt_id} has no label")
        return LABEL_TO_INDEX[self.label]

    def get(self, name: str) -> Optional[str]:
        """Value of a field by name: ``label``, ``speaker``, ``attack`` or a condition."""
        if name in ("label", "speaker", "attack", "utt_id"):
            return getattr(self, name)
        return self.conditions.get(name)


@dataclass(frozen=True)
class Manifest:
    """Ordered utterances of one protocol file, with unique ids."""

    format: str
    source: str
    utterances: Tuple[Utterance, ...]

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def __getitem__(self, index: int) -> Utterance:
        return self.utterances[index]

    @property
    def ids(self) -> List[str]:
        return [u.utt_id for u in self.utterances]

    def by_id(self) -> Dict[str, Utterance]:
        return {u.utt_id: u for u in self.utterances}

    @property
    def labelled(self) -> bool:
        """True when every utterance has a label."""
        return all(u.label is not None for u in self.utterances)

    @property
    def condition_names(self) -> List[str]:
        """Condition fields present in at least one utterance, in first-seen order."""
        seen: Dict[str, None] = {}
        for u in self.utterances:
            for k in u.conditions:
                seen.setdefault(k, None)
        return list(seen)

    def filter(self, **where: str) -> "Manifest":
        """Utterances whose fields equal the given values (``subset="eval"``).

        Raises :class:`ProtocolError` when a value never occurs in the field,
        naming the values that do occur, so a typo cannot silently select nothing.
        """
        kept: Sequence[Utterance] = self.utterances
        for name, value in where.items():
            present = Counter(u.get(name) for u in self.utterances)
            if value not in present:
                known = sorted(str(v) for v in present if v is not None)
                raise ProtocolError.at(
                    self.source, None,
                    f"no utterance has {name}={value!r}; values present: "
                    + (", ".join(known) if known else f"none (the file has no {name!r} field)"),
                )
            kept = [u for u in kept if u.get(name) == value]
        return Manifest(self.format, self.source, tuple(kept))

    def counts(self, name: str = "label") -> Dict[str, int]:
        """Number of utterances per value of a field (``None`` shown as ``"-"``)."""
        c = Counter(u.get(name) or "-" for u in self.utterances)
        return dict(sorted(c.items()))


LineParser = Callable[[List[str], int], Utterance]


class LineError(ValueError):
    """Raised by a line parser; the driver adds the file and line number."""


def parse_lines(
    path: PathLike,
    parse_fields: LineParser,
    *,
    lines: Optional[Iterable[str]] = None,
    skip_first: bool = False,
) -> Tuple[List[Utterance], List[Problem]]:
    """Run ``parse_fields(fields, line_no)`` over the whitespace-split lines of a file.

    Blank lines and lines starting with ``#`` are skipped. Problems raised as
    :class:`LineError` are collected (not raised) with their line number, so a
    caller can report every bad line at once.
    """
    path = Path(path)
    problems: List[Problem] = []
    utts: List[Utterance] = []
    if lines is None:
        lines = read_text_lines(path)
    with bulk_objects():
        for no, raw in enumerate(lines, start=1):
            if skip_first and no == 1:
                continue
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            try:
                utts.append(parse_fields(text.split(), no))
            except LineError as e:
                problems.append(Problem(path, no, str(e)))
    return utts, problems


def read_text_lines(path: PathLike) -> List[str]:
    """Lines of a UTF-8 text file, with errors that name the file."""
    path = Path(path)
    if not path.exists():
        raise ProtocolError.at(path, None, "file not found")
    if path.is_dir():
        raise ProtocolError.at(path, None, "is a directory, expected a text file")
    try:
        with open(path, "r", encoding="utf-8-sig") as f:
            return f.read().splitlines()
    except UnicodeDecodeError as e:
        raise ProtocolError.at(path, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None


def duplicate_problems(path: PathLike, utts: Sequence[Utterance]) -> List[Problem]:
    """One problem per repeated utterance id, naming the line of its first use."""
    first: Dict[str, Optional[int]] = {}
    problems = []
    for u in utts:
        if u.utt_id in first:
            where = f"line {first[u.utt_id]}" if first[u.utt_id] is not None else "an earlier entry"
            problems.append(Problem(path, u.line, f"duplicate utterance id {u.utt_id!r} (first on {where})"))
        else:
            first[u.utt_id] = u.line
    return problems


def expect_label(value: str, accepted: Mapping[str, str], field_name: str = "label") -> str:
    """Map a protocol's label spelling to ``bonafide``/``spoof`` or raise LineError."""
    try:
        return accepted[value]
    except KeyError:
        raise LineError(
            f"unknown {field_name} {value!r}; expected one of: " + ", ".join(repr(k) for k in accepted)
        ) from None


def dash_to_none(value: str) -> Optional[str]:
    """Protocol files write ``-`` for 'not applicable'."""
    return None if value == "-" else value


_WHITESPACE = re.compile(r"\s")


def check_id(utt_id: str, what: str = "utterance id") -> str:
    """Reject ids that cannot be written in a ``UTT_ID SCORE`` score file."""
    if not utt_id or utt_id == "-":
        raise LineError(f"empty {what}; expected an utterance id")
    if _WHITESPACE.search(utt_id):
        raise LineError(f"{what} {utt_id!r} contains whitespace; score files need ids without spaces")
    return utt_id


def check_field_id(utt_id: str) -> str:
    """:func:`check_id` for a whitespace-split field (which holds no whitespace)."""
    if utt_id == "-":
        raise LineError("empty utterance id ('-'); expected an utterance id")
    return utt_id


@contextmanager
def bulk_objects() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small objects.

    Parsing a 600k-line key creates millions of objects and no reference
    cycles; generational collections would otherwise double the parse time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
