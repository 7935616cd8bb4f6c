"""ASVspoof 5 protocols (``ASVspoof5.{train,dev,eval}.tsv`` and similar).

Despite the ``.tsv`` name the columns are separated by whitespace. Ten
columns per line::

    SPEAKER_ID FLAC_FILE_NAME SPEAKER_GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP
    T_4850 T_0000000000 F - - - AC3 A05 spoof -
    E_0100 E_0000000001 M C05 3 1234 - bonafide bonafide -

``KEY`` is the label (``bonafide`` or ``spoof``). ``ATTACK_LABEL`` is the
attack id (``A01`` ...); bona fide lines write ``bonafide`` (or ``-``) there,
which gives ``attack=None``. Conditions kept (each left out where written
``-``): ``gender``, ``codec``, ``codec_q``, ``codec_seed``, ``attack_tag``.
``TMP`` is ignored. A first line that spells the column names (starting with
``SPEAKER_ID``) is skipped.

A file of single-column lines is read as an unlabelled list of utterance ids
(``label=None``). One file holds one layout: the first data line decides which.

Audio paths: ``ROOT/FLAC_FILE_NAME.flac``, or ``ROOT/flac/FLAC_FILE_NAME.flac``
when ``ROOT/flac`` is a directory. ``ROOT`` defaults to the directory of the
protocol file; pass the folder that holds the ``.flac`` files of this split
(e.g. ``flac_T`` for the training protocol).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from dpda.data.asvspoof2019 import ACCEPTED_LABELS, audio_dir, file_layout, unlabelled
from dpda.data.manifest import (
    LineError,
    Utterance,
    check_field_id,
    dash_to_none,
    expect_label,
    parse_lines,
    read_text_lines,
)
from dpda.errors import Problem

COLUMNS = (
    "SPEAKER_ID FLAC_FILE_NAME SPEAKER_GENDER CODEC CODEC_Q CODEC_SEED "
    "ATTACK_TAG ATTACK_LABEL KEY TMP"
)
#: (column index, condition name)
_CONDITIONS = ((2, "gender"), (3, "codec"), (4, "codec_q"), (5, "codec_seed"), (6, "attack_tag"))


def parse(protocol: Path, root: Optional[Path]) -> Tuple[List[Utterance], List[Problem]]:
    """Parse an ASVspoof 5 protocol (or a one-column id list)."""
    protocol = Path(protocol)
    lines = read_text_lines(protocol)
    directory = audio_dir(protocol, root)
    header = bool(lines) and lines[0].strip().upper().startswith("SPEAKER_ID")
    layout = file_layout(lines, (10, 1), skip_first=header)

    def one(fields: List[str], no: int) -> Utterance:
        n = len(fields)
        if layout == 1:
            if n != 1:
                raise LineError(f"expected 1 column (FLAC_FILE_NAME) like the rest of this id list, got {n}")
            return unlabelled(fields[0], directory, no)
        if n != 10:
            accepted = f"10 columns ({COLUMNS})"
            if layout is None:
                accepted += " or 1 column (FLAC_FILE_NAME)"
            raise LineError(f"expected {accepted}, got {n}")
        label = expect_label(fields[8], ACCEPTED_LABELS, "label (KEY column)")
        attack = dash_to_none(fields[7])
        if attack == "bonafide":
            attack = None
        conditions: Dict[str, str] = {name: fields[i] for i, name in _CONDITIONS if fields[i] != "-"}
        utt = check_field_id(fields[1])
        return Utterance(
            utt_id=utt,
            path=directory / f"{utt}.flac",
            label=label,
            speaker=dash_to_none(fields[0]),
            attack=attack,
            conditions=conditions,
            line=no,
        )

    return parse_lines(protocol, one, lines=lines, skip_first=header)
