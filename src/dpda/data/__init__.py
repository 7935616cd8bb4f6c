"""Corpus protocols parsed into typed manifests, one module per corpus.

Format names (used everywhere, CLI included):

=================  ===========================================================
``asvspoof2019``   ASVspoof 2019 LA and PA CM protocols (``dpda.data.asvspoof2019``)
``asvspoof2021``   ASVspoof 2021 LA / DF keys (``trial_metadata.txt``) (``dpda.data.asvspoof2021``)
``itw``            In-the-Wild ``meta.csv`` (``dpda.data.itw``)
``for``            Fake-or-Real folder layout ``real/`` ``fake/`` (``dpda.data.fakeorreal``)
``asvspoof5``      ASVspoof 5 protocol TSV (``dpda.data.asvspoof5``)
``generic``        CSV ``path,label[,speaker,attack]`` or a folder of audio (``dpda.data.generic``)
=================  ===========================================================
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import List, Optional, Tuple

from dpda.data.manifest import (
    BONAFIDE,
    LABEL_TO_INDEX,
    LABELS,
    SPOOF,
    Manifest,
    Utterance,
    duplicate_problems,
)
from dpda.errors import PathLike, Problem, ProtocolError

#: format name -> module under ``dpda.data`` that parses it
FORMAT_MODULES = {
    "asvspoof2019": "asvspoof2019",
    "asvspoof2021": "asvspoof2021",
    "itw": "itw",
    "for": "fakeorreal",
    "asvspoof5": "asvspoof5",
    "generic": "generic",
}
FORMATS = tuple(FORMAT_MODULES)


def _module(fmt: str):
    if fmt not in FORMAT_MODULES:
        raise ValueError(f"unknown corpus format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    return importlib.import_module(f"dpda.data.{FORMAT_MODULES[fmt]}")


def parse_manifest(
    fmt: str, protocol: PathLike, root: Optional[PathLike] = None
) -> Tuple[Manifest, List[Problem]]:
    """Parse a protocol leniently: the manifest of every good line, and every problem.

    Duplicate utterance ids are reported as problems; only the first occurrence
    is kept. Used by ``dpda data check`` to report all problems at once.
    """
    mod = _module(fmt)
    protocol = Path(protocol)
    utts, problems = mod.parse(protocol, None if root is None else Path(root))
    dups = duplicate_problems(protocol, utts)
    if dups:
        seen = set()
        unique = []
        for u in utts:
            if u.utt_id not in seen:
                seen.add(u.utt_id)
                unique.append(u)
        utts = unique
    problems = sorted(problems + dups, key=lambda p: (p.line is None, p.line or 0))
    return Manifest(fmt, str(protocol), tuple(utts)), problems


def load_manifest(fmt: str, protocol: PathLike, root: Optional[PathLike] = None) -> Manifest:
    """Parse a protocol strictly: raise :class:`ProtocolError` listing every bad line.

    ``root`` is the audio directory (see each corpus module for the layout it
    expects); without it, paths are resolved next to the protocol file.
    """
    manifest, problems = parse_manifest(fmt, protocol, root)
    if problems:
        raise ProtocolError(problems, f"{protocol}: {len(problems)} problem(s) in {fmt} protocol")
    if len(manifest) == 0:
        raise ProtocolError.at(protocol, None, f"no utterances found (expected a {fmt} protocol)")
    return manifest


__all__ = [
    "BONAFIDE", "SPOOF", "LABELS", "LABEL_TO_INDEX", "FORMATS",
    "Manifest", "Utterance", "load_manifest", "parse_manifest",
]
