"""Scoring utterances with a trained countermeasure: ``dpda score`` and ``dpda detect``.

The package depends on :mod:`dpda.models`, never on :mod:`dpda.train`:

==================  ===========================================================================
``windows``         :class:`WindowSpec` (waveform -> input windows) and the batching loop
                    :func:`~dpda.inference.windows.score_windows`; NumPy only, no torch
``scorer``          :class:`Scorer`: a torch model on a device, :func:`resolve_device`
``dataset``         :class:`AudioWindowsDataset` (DataLoader workers), :func:`check_audio_present`
``partial``         the resumable ``.partial`` score-file format
``manifest``        :func:`score_manifest` (``dpda score``), :func:`score_and_evaluate`
``detect``          :func:`detect_files`, :func:`decision_threshold` (``dpda detect``)
``errors``          :class:`ScoringError`, :class:`MissingAudioError`
``card``            :class:`ModelCard` (what a model file says about its model), :func:`load_model`
``modelfile``       the model file on disk: atomic save, safe load, :func:`resolve_model_path`
==================  ===========================================================================

Every name below is importable from ``dpda.inference`` itself; each submodule
is imported on first use, so ``dpda.inference.windows`` loads without torch.
See :mod:`dpda.inference.windows` for the input windows (``fixed`` / ``full``)
and :mod:`dpda.inference.scorer` for the score convention (``logit[:, 1]``).
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, List

#: public name -> submodule of dpda.inference that defines it
_HOMES: Dict[str, str] = {
    "MODES": "windows", "WindowSpec": "windows",
    "Scorer": "scorer", "resolve_device": "scorer",
    "ScoringError": "errors", "MissingAudioError": "errors",
    "AudioWindowsDataset": "dataset", "PREFLIGHT_FILES": "dataset", "check_audio_present": "dataset",
    "SCORE_FORMAT": "partial", "PARTIAL_SUFFIX": "partial", "ERRORS_SUFFIX": "partial", "read_partial": "partial",
    "score_manifest": "manifest", "score_and_evaluate": "manifest",
    "detect_files": "detect", "decision_threshold": "detect",
    "ModelCard": "card", "load_model": "card", "load_model_card": "card", "read_card": "card",
    "CheckpointError": "modelfile", "resolve_model_path": "modelfile",
}
_SHARED: Dict[str, str] = {"Progress": "dpda.progress"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        module = importlib.import_module(f"{__name__}.{_HOMES[name]}")
    elif name in _SHARED:
        module = importlib.import_module(_SHARED[name])
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_HOMES) | set(_SHARED))


__all__ = [
    "MODES", "Scorer", "WindowSpec", "ScoringError", "MissingAudioError", "AudioWindowsDataset", "Progress",
    "PREFLIGHT_FILES", "check_audio_present", "score_manifest", "score_and_evaluate", "read_partial", "detect_files",
    "decision_threshold", "resolve_device", "ModelCard", "load_model", "load_model_card", "read_card",
    "CheckpointError", "resolve_model_path",
]
