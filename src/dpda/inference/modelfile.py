"""dpda model files on disk: atomic writes, safe loading, finding a run's model.

Every dpda file (a run's ``model.pt``, a training checkpoint, an imported
model) is a ``torch.save`` dict of tensors and plain Python values (no
pickled objects), loaded with ``torch.load(weights_only=True)``, so a file
from an untrusted source cannot execute code. Files are written to a
temporary name, flushed, fsynced and renamed, so an interrupted write never
replaces a good file; a truncated or corrupt file raises
:class:`CheckpointError` naming the file.

What a training run writes (see :mod:`dpda.train.trainer` and :mod:`dpda.train.checkpointer`)::

    RUN_DIR/model.pt                  the final model (its model card + weights)
    RUN_DIR/checkpoints/last.pt       full state after the last completed checkpoint
    RUN_DIR/checkpoints/last.prev.pt  the one before
    RUN_DIR/checkpoints/epoch_NNN.pt  weights of the top-k epochs
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Dict

import torch

from dpda.errors import DpdaError, PathLike
from dpda.fileio import atomic_path

CHECKPOINT_FORMAT = 1
RUN_MODEL_FILE = "model.pt"
#: a run directory's checkpoints a model is taken from when it has no model.pt yet (the run was
#: stopped), in order: what dpda.train.trainer writes (last.prev.pt is last.pt's predecessor)
RUN_CHECKPOINTS = ("checkpoints/last.pt", "checkpoints/last.prev.pt")


class CheckpointError(DpdaError, RuntimeError):
    """A checkpoint is missing, truncated, corrupt or not a dpda checkpoint."""


def save_checkpoint(path: PathLike, payload: Dict[str, Any]) -> None:
    """Write ``payload`` atomically (temporary file, fsync, rename)."""
    payload = {"format": CHECKPOINT_FORMAT, **payload}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())


def load_checkpoint(path: PathLike, map_location: Any = "cpu", mmap: bool = False) -> Dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``); clear errors for bad files.

    ``mmap``: map the tensors' storage from the file instead of reading it (cheap when only
    the metadata, or a copy into an existing model, is needed).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint is empty (0 bytes): the write was interrupted")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: checkpoint is truncated or corrupt ({str(e).splitlines()[0]})") from None
    except Exception as e:  # pickle.UnpicklingError from weights_only and similar
        raise CheckpointError(
            f"{path}: not a dpda checkpoint or contains objects that cannot be loaded safely "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a dpda checkpoint (format {payload.get('format') if isinstance(payload, dict) else type(payload).__name__})")
    return payload


def resolve_model_path(path: PathLike) -> Path:
    """A model file, or a run directory's final ``model.pt`` (else its latest checkpoint, :data:`RUN_CHECKPOINTS`)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        for candidate in (RUN_MODEL_FILE,) + RUN_CHECKPOINTS:
            if (path / candidate).is_file():
                return path / candidate
        raise CheckpointError(f"{path}: run directory has no {RUN_MODEL_FILE} nor {' or '.join(RUN_CHECKPOINTS)}")
    raise CheckpointError(f"{path}: no such checkpoint file or run directory")


__all__ = ["CHECKPOINT_FORMAT", "RUN_MODEL_FILE", "RUN_CHECKPOINTS", "CheckpointError", "save_checkpoint", "load_checkpoint", "resolve_model_path"]
