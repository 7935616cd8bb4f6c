"""Fake-or-Real (FoR) folder layout.

There is no protocol file: ``PROTOCOL`` is one split folder of one FoR
version, e.g. ``for-norm/testing``, ``for-2sec/training``,
``for-rerec/validation`` or ``for-original/training``, holding a ``real/`` and a
``fake/`` folder of audio::

    for-norm/testing/
        fake/file123.wav_16k.wav_norm.wav_mono.wav_silence.wav
        real/file1.wav_16k.wav_norm.wav_mono.wav_silence.wav

Every audio file (``.wav``, ``.mp3``, ``.flac``, ``.ogg``; searched
recursively, names starting with ``.`` skipped) under ``real/`` is bona fide,
under ``fake/`` spoof. ``utt_id`` is the path relative to the split folder in
POSIX form (``fake/file123.wav_...wav``), because the same file name can occur
in both classes. Utterances are in sorted order and have ``line=None``.
``ROOT`` is not used (if given it must be the split folder itself).

Passing a version folder (one holding ``training/``, ``validation/``,
``testing/``) is an error that names the split folders to choose from.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from dpda.data.generic import check_same_dir
from dpda.data.manifest import BONAFIDE, SPOOF, LineError, Utterance, check_id
from dpda.errors import Problem, ProtocolError
from dpda.fileio import AUDIO_EXTENSIONS, scan_audio

CLASSES = (("fake", SPOOF), ("real", BONAFIDE))
SPLITS = ("training", "validation", "testing")


def parse(protocol: Path, root: Optional[Path]) -> Tuple[List[Utterance], List[Problem]]:
    """List the ``real/`` and ``fake/`` audio of a FoR split folder."""
    protocol = Path(protocol)
    if not protocol.exists():
        raise ProtocolError.at(protocol, None, "folder not found; expected a FoR split folder such as for-norm/testing")
    if not protocol.is_dir():
        raise ProtocolError.at(
            protocol, None,
            "is a file; the 'for' format takes a split folder holding real/ and fake/ (e.g. for-norm/testing)",
        )
    check_same_dir(protocol, root, "for")
    subdirs = sorted(p.name for p in protocol.iterdir() if p.is_dir())
    splits = [s for s in SPLITS if s in subdirs]
    if splits:
        raise ProtocolError.at(
            protocol, None,
            "is a FoR version folder (it holds " + ", ".join(f"{s}/" for s in splits)
            + "); pass one split folder, e.g. " + ", ".join(str(protocol / s) for s in splits),
        )
    missing = [name for name, _ in CLASSES if name not in subdirs]
    if missing:
        found = ", ".join(f"{s}/" for s in subdirs[:10]) + (" ..." if len(subdirs) > 10 else "")
        raise ProtocolError.at(
            protocol, None,
            f"no {' or '.join(m + '/' for m in missing)} folder; expected a FoR split folder holding "
            f"real/ and fake/ (found {found or 'no folders'})",
        )
    utts: List[Utterance] = []
    problems: List[Problem] = []
    for name, label in CLASSES:
        rels = scan_audio(protocol / name)
        if not rels:
            problems.append(Problem(
                protocol / name, None,
                f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {name}/; every split needs both classes",
            ))
        for rel in rels:
            utt_id = f"{name}/{rel}"
            try:
                utts.append(Utterance(check_id(utt_id), protocol / name / rel, label))
            except LineError as e:
                problems.append(Problem(protocol / utt_id, None, str(e)))
    return utts, problems
