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
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch.nn as nn

from dpda.audio.crop import AASIST_NUM_SAMPLES

#: sample rate (Hz) every built-in model expects unless its config says otherwise
DEFAULT_SAMPLE_RATE = 16000

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it and the input it expects by default.

    ``builder``: ``"module:function"`` under :mod:`dpda.models` (imported on
    first use, so listing models loads none of them) or a callable
    ``fn(**config) -> nn.Module``. ``sample_rate`` (Hz) and ``crop_samples``
    (samples per input window) are the defaults a model card falls back to;
    ``rate_option`` is the key path of the config option that changes the
    rate the model expects (its front-end's filters), if it has one.
    """

    name: str
    builder: Union[str, Builder]
    sample_rate: int = DEFAULT_SAMPLE_RATE
    crop_samples: int = AASIST_NUM_SAMPLES
    rate_option: Optional[Tuple[str, ...]] = ("sample_rate",)

    @property
    def module(self) -> Optional[str]:
        return self.builder.split(":", 1)[0] if isinstance(self.builder, str) else None

    def build(self, **config: Any) -> nn.Module:
        fn = self.builder
        if isinstance(fn, str):
            module, function = fn.split(":", 1)
            fn = getattr(importlib.import_module(f"dpda.models.{module}"), function)
        return fn(**config)


#: the one registry: model name -> spec
MODELS: Dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("aasist", "aasist:build_aasist"),
    ModelSpec("aasist-l", "aasist:build_aasist_l"),
    ModelSpec("rawnet2", "rawnet2:build_rawnet2"),
    ModelSpec("lcnn", "lcnn:build_lcnn", rate_option=("lfcc", "sample_rate")),
    ModelSpec("xlsr_aasist", "ssl:build_xlsr_aasist", rate_option=None),
    ModelSpec("xlsr_conformer_tcm", "ssl:build_xlsr_conformer_tcm", rate_option=None),
    ModelSpec("xlsr_mamba", "ssl:build_xlsr_mamba", rate_option=None),
)}

#: model name -> module under dpda.models that defines it (a view of :data:`MODELS`)
MODEL_MODULES: Dict[str, str] = {name: spec.module for name, spec in MODELS.items() if spec.module}


def register_model(name: str, builder: Optional[Builder] = None, *, sample_rate: int = DEFAULT_SAMPLE_RATE,
                   crop_samples: int = AASIST_NUM_SAMPLES) -> Any:
    """Add a model to :data:`MODELS` (for models outside dpda); a decorator when ``builder`` is left out."""

    def add(fn: Builder) -> Builder:
        MODELS[name] = ModelSpec(name, fn, sample_rate, crop_samples)
        return fn

    return add if builder is None else add(builder)


def model_names() -> List[str]:
    """Names accepted by :func:`build_model`."""
    return list(MODELS)


def model_spec(name: str) -> Optional[ModelSpec]:
    """The registry entry of a model name (None for an unknown name)."""
    return MODELS.get(name)


def model_sample_rate(name: str, config: Optional[Dict[str, Any]] = None) -> int:
    """The rate (Hz) model ``name`` built with ``config`` expects: its rate option when set, else the default."""
    spec = MODELS.get(name)
    if spec is None:
        return DEFAULT_SAMPLE_RATE
    if spec.rate_option is None:  # XLS-R front-ends: 16 kHz, fixed by the pretrained weights
        return spec.sample_rate
    value: Any = config or {}
    for key in spec.rate_option:
        value = value.get(key) if isinstance(value, dict) else None
    return int(value or spec.sample_rate)


def build_model(name: str, **config) -> nn.Module:
    """Build a registered model; ``config`` overrides its default (full-size) configuration."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    return MODELS[name].build(**config)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameter elements."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["DEFAULT_SAMPLE_RATE", "MODELS", "MODEL_MODULES", "ModelSpec", "build_model", "count_parameters",
           "model_names", "model_sample_rate", "model_spec", "register_model"]
