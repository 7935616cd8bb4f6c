"""ASVspoof 2021 LA and DF evaluation keys (``keys/{LA,DF}/CM/trial_metadata.txt``).

Each line is whitespace-separated; its layout is decided by its column count.

LA keys, 8 columns::

    SPEAKER UTT CODEC TRANSMISSION ATTACK LABEL TRIM SUBSET
    LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval

DF keys, 13 columns::

    SPEAKER UTT CODEC SOURCE ATTACK LABEL TRIM SUBSET VOCODER TASK TEAM GENDER_PAIR LANGUAGE
    LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -
    TEF2 DF_E_2000013 low_m4a vcc2020 Task1-team20 spoof notrim eval neural_vocoder_nonautoregressive Task1 team20 FF E

The last four DF columns describe Voice Conversion Challenge 2020 trials and
are ``-`` for trials sourced from ASVspoof. Bona fide trials have ATTACK ``-``
(and VOCODER ``-``). LABEL must be ``bonafide`` or ``spoof``.

Fields kept in ``Utterance.conditions`` (each left out where written ``-``):
``codec``, ``transmission`` (LA), ``source`` (DF), ``vocoder`` (DF), ``trim``,
``subset`` (``progress``, ``eval`` or ``hidden_track`` in the released keys;
other values are accepted), ``vcc_task``, ``vcc_team``, ``vcc_gender_pair``,
``vcc_language`` (DF). Select the evaluation subset with
``manifest.filter(subset="eval")``.

One-column lines are read as an unlabelled trial list (``label=None``), e.g.
``ASVspoof2021.DF.cm.eval.trl.txt``.

Audio paths, as for ASVspoof 2019: ``ROOT/flac/UTT.flac`` when ``ROOT/flac``
is a directory (the released ``ASVspoof2021_DF_eval`` folders), else
``ROOT/UTT.flac``; ``ROOT`` defaults to the directory of the key file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from dpda.data.asvspoof2019 import ACCEPTED_LABELS, audio_dir, unlabelled
from dpda.data.manifest import (
    LineError,
    Utterance,
    check_field_id,
    expect_label,
    parse_lines,
    read_text_lines,
)
from dpda.errors import Problem

LA_COLUMNS = ("speaker", "utt", "codec", "transmission", "attack", "label", "trim", "subset")
DF_COLUMNS = (
    "speaker", "utt", "codec", "source", "attack", "label", "trim", "subset",
    "vocoder", "vcc_task", "vcc_team", "vcc_gender_pair", "vcc_language",
)
_NOT_CONDITIONS = ("speaker", "utt", "attack", "label")
#: (column index, condition name) of each layout
_LA_CONDITIONS = tuple((i, n) for i, n in enumerate(LA_COLUMNS) if n not in _NOT_CONDITIONS)
_DF_CONDITIONS = tuple((i, n) for i, n in enumerate(DF_COLUMNS) if n not in _NOT_CONDITIONS)
_EXPECTED = (
    "expected 8 columns (LA: SPEAKER UTT CODEC TRANSMISSION ATTACK LABEL TRIM SUBSET), "
    "13 columns (DF: SPEAKER UTT CODEC SOURCE ATTACK LABEL TRIM SUBSET VOCODER "
    "TASK TEAM GENDER_PAIR LANGUAGE) or 1 column (UTT, an unlabelled trial list)"
)


def parse(protocol: Path, root: Optional[Path]) -> Tuple[List[Utterance], List[Problem]]:
    """Parse an ASVspoof 2021 LA or DF key file (or a one-column trial list)."""
    protocol = Path(protocol)
    lines = read_text_lines(protocol)
    directory = audio_dir(protocol, root)

    def one(fields: List[str], no: int) -> Utterance:
        n = len(fields)
        if n == 1:
            return unlabelled(fields[0], directory, no)
        if n == 8:
            kept = _LA_CONDITIONS
        elif n == 13:
            kept = _DF_CONDITIONS
        else:
            raise LineError(f"{_EXPECTED}, got {n}")
        label = expect_label(fields[5], ACCEPTED_LABELS)
        conditions: Dict[str, str] = {name: fields[i] for i, name in kept if fields[i] != "-"}
        utt = check_field_id(fields[1])
        speaker, attack = fields[0], fields[4]
        return Utterance(
            utt_id=utt,
            path=directory / f"{utt}.flac",
            label=label,
            speaker=None if speaker == "-" else speaker,
            attack=None if attack == "-" else attack,
            conditions=conditions,
            line=no,
        )

    return parse_lines(protocol, one, lines=lines)
