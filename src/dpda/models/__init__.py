"""Countermeasure models and their registry.

Every model maps a raw waveform batch ``(B, T)`` (float32, 16 kHz) to logits
``(B, 2)``; class index 1 is bona fide (the field's convention), so the
detection score is ``logits[:, 1]`` (higher = more bona fide).
``model(x, return_embedding=True)`` returns ``(logits, embedding)``.

Build models by name with :func:`build_model`; ``dpda models list`` prints
the registered names with the parameter counts of their full-size configs.
"""

from __future__ import annotations

import importlib
from typing import Callable, Dict, List

import torch.nn as nn

#: model name -> module under dpda.models that registers it
MODEL_MODULES: Dict[str, str] = {
    "aasist": "aasist",
    "aasist-l": "aasist",
    "rawnet2": "rawnet2",
    "lcnn": "lcnn",
    "xlsr_aasist": "ssl",
    "xlsr_conformer_tcm": "ssl",
    "xlsr_mamba": "ssl",
}

_BUILDERS: Dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a builder ``fn(**config) -> nn.Module`` under ``name``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _BUILDERS[name] = fn
        return fn

    return wrap


def model_names() -> List[str]:
    """Names accepted by :func:`build_model`."""
    return list(MODEL_MODULES)


def build_model(name: str, **config) -> nn.Module:
    """Build a registered model; ``config`` overrides its default (full-size) configuration."""
    if name not in MODEL_MODULES:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODEL_MODULES)}")
    if name not in _BUILDERS:
        importlib.import_module(f"dpda.models.{MODEL_MODULES[name]}")
    return _BUILDERS[name](**config)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameter elements."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["build_model", "register_model", "model_names", "count_parameters", "MODEL_MODULES"]
