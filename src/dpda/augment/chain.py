"""Composable augmentation chains: the names of :mod:`dpda.augment.base`, :mod:`~dpda.augment.combinators`
and :mod:`~dpda.augment.builder` in one place (importable from here as before).

Every augmentation is a callable object ``aug(x, rng) -> y`` (see
:mod:`dpda.augment.base`); :class:`Series`, :class:`RandomChoice`,
:class:`Maybe`, :class:`Identity` and :class:`RawBoostStep` combine them
(:mod:`dpda.augment.combinators`); :func:`build_chain` / :func:`load_chain`
build a chain from YAML (:mod:`dpda.augment.builder`, which documents the
format). The leaves (noise, reverb, codec, bandlimit) import only
:mod:`dpda.augment.base`, so nothing imports in a circle.
"""

from __future__ import annotations

from dpda.augment.base import (
    Augmentation,
    ChainConfigError,
    Range,
    Trace,
    _check_sr,
    as_signal,
    check_probability,
    check_rng,
    check_sr,
    draw,
    mean_power,
    parse_range,
    peak_limit,
)
from dpda.augment.builder import (
    COMPOSITE_OPTIONS,
    LEAF_OPTIONS,
    LEAF_STEPS,
    STEP_NAMES,
    build_chain,
    load_chain,
    register_step,
    step_names,
)
from dpda.augment.combinators import Identity, Maybe, RandomChoice, RawBoostStep, Series

__all__ = [
    "Augmentation", "ChainConfigError", "Range", "Trace", "_check_sr", "as_signal", "check_probability", "check_rng",
    "check_sr", "draw", "mean_power", "parse_range", "peak_limit", "COMPOSITE_OPTIONS", "LEAF_OPTIONS", "LEAF_STEPS",
    "STEP_NAMES", "build_chain", "load_chain", "register_step", "step_names", "Identity", "Maybe", "RandomChoice",
    "RawBoostStep", "Series",
]
