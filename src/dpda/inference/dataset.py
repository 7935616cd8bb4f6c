"""Audio of a protocol, read, resampled and windowed in DataLoader workers; the wrong-root check."""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Tuple

import numpy as np
import torch

from dpda.audio import load_audio
from dpda.errors import AudioError
from dpda.inference.errors import MissingAudioError
from dpda.inference.windows import WindowSpec

#: utterances at the start of a protocol checked before scoring starts (see :func:`check_audio_present`)
PREFLIGHT_FILES = 20


class AudioWindowsDataset(torch.utils.data.Dataset):
    """``(utt_id, windows, None)`` per utterance, or ``(utt_id, None, error message)``.

    Loading, resampling and windowing happen in the DataLoader workers; a file
    that cannot be used never raises, so one bad file cannot stop a run.
    """

    def __init__(self, items: Sequence[Tuple[str, Optional[str]]], sample_rate: int, spec: WindowSpec) -> None:
        self.items = items
        self.sample_rate = int(sample_rate)
        self.spec = spec

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Tuple[str, Optional[np.ndarray], Optional[str]]:
        utt_id, path = self.items[index]
        if path is None:
            return utt_id, None, "the protocol gives no audio path for this utterance"
        try:
            return utt_id, self.spec(load_audio(path, self.sample_rate)), None
        except AudioError as e:
            return utt_id, None, str(e)
        except Exception as e:  # anything else about one file must not stop the run either
            return utt_id, None, f"{path}: {type(e).__name__}: {e}"


def _identity(x: Any) -> Any:
    return x


def check_audio_present(items: Sequence[Tuple[str, Optional[str]]], n: int = PREFLIGHT_FILES) -> None:
    """Raise :class:`MissingAudioError` when the audio of the first ``n`` utterances is all missing.

    ``items``: ``(utt_id, path)`` in protocol order. Such a protocol is almost
    surely read with the wrong audio root: rather than trying every file and
    writing an error per utterance, stop before any work. A few missing files
    among present ones are not this function's business (they become
    per-file errors).
    """
    first = list(items[: max(1, int(n))])
    if not first or any(path is not None and os.path.exists(path) for _, path in first):
        return
    paths = [path for _, path in first]
    named = [p for p in paths if p is not None]
    folders = sorted({os.path.dirname(p) or "." for p in named})
    what = f"the {len(first)}" if len(first) == len(items) else f"the first {len(first)}"
    lines = [f"none of {what} audio files of the protocol exists, e.g.:"]
    lines += [f"  {p}" for p in named[:3]] or ["  (the protocol gives no audio paths)"]
    if folders:
        others = f" and {len(folders) - 1} other folder(s)" if len(folders) > 1 else ""
        lines.append(f"looked in {folders[0]}{others}")
    lines.append("is the audio root right? (nothing was scored)")
    raise MissingAudioError("\n".join(lines), paths)


__all__ = ["PREFLIGHT_FILES", "AudioWindowsDataset", "check_audio_present"]
