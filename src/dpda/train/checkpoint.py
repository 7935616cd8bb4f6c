"""Checkpoints: atomic writes, safe loading, and models ready for inference.

Every checkpoint is a ``torch.save`` dict of tensors and plain Python values
(no pickled objects), loaded with ``torch.load(weights_only=True)``, so a
checkpoint from an untrusted source cannot execute code. Files are written to
a temporary name, flushed, fsynced and renamed, so an interrupted write never
replaces a good checkpoint; a truncated or corrupt file raises
:class:`CheckpointError` naming the file.

Inference payload (``model.pt`` of a run, and every training checkpoint)::

    format: 1
    model_name: "aasist-l"           # dpda.models registry name
    model_config: {...}              # keyword overrides for build_model
    model_state: state_dict
    sample_rate: 16000               # Hz the model expects
    crop_samples: 64600              # samples per window used in training
    threshold: float | None          # dev-set EER threshold on logit[:, 1] (if validated)
    calibration: {"a": .., "b": ..} | None   # P(bona fide) = sigmoid(a * score + b), fitted on dev
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn

from dpda.errors import DpdaError, PathLike
from dpda.fileio import atomic_path

CHECKPOINT_FORMAT = 1
RUN_MODEL_FILE = "model.pt"
#: model options that only choose initial weights (not stored in checkpoints)
INIT_ONLY_OPTIONS = ("ssl_pretrained", "trust_pickle")


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
    """A checkpoint file, or a run directory's final ``model.pt`` (else its best / last checkpoint)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        for candidate in (path / RUN_MODEL_FILE, path / "checkpoints" / "best.pt", path / "checkpoints" / "last.pt"):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"{path}: run directory has no {RUN_MODEL_FILE} nor checkpoints/best.pt or last.pt")
    raise CheckpointError(f"{path}: no such checkpoint file or run directory")


def load_model(path: PathLike, device: Any = "cpu") -> Tuple[nn.Module, Dict[str, Any]]:
    """Build the model of a checkpoint or run directory, load its weights, put it in eval mode.

    Returns ``(model, info)`` where ``info`` holds the payload's metadata
    (``sample_rate``, ``crop_samples``, ``threshold``, ``calibration``, ...),
    without the state dicts.
    """
    from dpda.models import build_model

    file = resolve_model_path(path)
    payload = load_checkpoint(file, map_location="cpu")
    for key in ("model_name", "model_state"):
        if key not in payload:
            raise CheckpointError(f"{file}: checkpoint has no {key!r}")
    model = build_model(payload["model_name"], **dict(payload.get("model_config") or {}))
    try:
        model.load_state_dict(payload["model_state"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{file}: weights do not fit model {payload['model_name']!r}: {str(e).splitlines()[0]}") from None
    model.to(device).eval()
    info = {k: v for k, v in payload.items() if not k.endswith("_state") and k not in ("optimizer", "scheduler", "engine", "rng")}
    info["path"] = str(file)
    return model, info


def inference_payload(
    model_name: str,
    model_config: Dict[str, Any],
    model: nn.Module,
    sample_rate: int,
    crop_samples: int,
    threshold: Optional[float] = None,
    calibration: Optional[Dict[str, float]] = None,
    **extra: Any,
) -> Dict[str, Any]:
    """The payload that :func:`load_model` understands.

    Options that only say where initial weights come from (``ssl_pretrained``,
    ``trust_pickle``) are dropped from the stored model config: the checkpoint
    holds the weights, so loading it needs neither that file nor pickle.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    config = {k: v for k, v in dict(model_config).items() if k not in INIT_ONLY_OPTIONS}
    return {
        "model_name": model_name,
        "model_config": config,
        "model_state": state,
        "sample_rate": int(sample_rate),
        "crop_samples": int(crop_samples),
        "threshold": threshold,
        "calibration": calibration,
        **extra,
    }
