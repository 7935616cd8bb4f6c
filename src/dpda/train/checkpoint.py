"""Checkpoints of training runs: the model file format and the model card, as training uses them.

The format (atomic writes, safe loading, what a run writes) lives in
:mod:`dpda.inference.modelfile` and the model card (what a model file says
about its model, and :func:`load_model`) in :mod:`dpda.inference.card`:
training depends on inference's model card, never the reverse. This module
keeps every name importable from ``dpda.train.checkpoint``.
"""

from __future__ import annotations

from dpda.inference.card import INIT_ONLY_OPTIONS, ModelCard, load_model, model_payload
from dpda.inference.modelfile import (
    CHECKPOINT_FORMAT,
    RUN_MODEL_FILE,
    CheckpointError,
    load_checkpoint,
    resolve_model_path,
    save_checkpoint,
)

#: the payload that :func:`load_model` understands (:func:`dpda.inference.card.model_payload`)
inference_payload = model_payload

__all__ = [
    "CHECKPOINT_FORMAT", "INIT_ONLY_OPTIONS", "RUN_MODEL_FILE", "CheckpointError", "ModelCard", "inference_payload",
    "load_checkpoint", "load_model", "resolve_model_path", "save_checkpoint",
]
