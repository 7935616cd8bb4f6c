"""Combinators: augmentations made of other augmentations, and RawBoost as a chain step.

Combinators:

* :class:`Series` ``([a, b, c])`` applies the steps in order;
* :class:`RandomChoice` ``([a, b], weights=None)`` applies one step, drawn
  with the given weights (uniform by default);
* :class:`Maybe` ``(step, p)`` applies ``step`` with probability ``p`` (one
  ``rng.random()`` draw per call); ``Series``, ``RandomChoice`` and
  :func:`build_chain` wrap steps in it when ``p`` is given;
* :class:`Identity` returns the input;
* :class:`RawBoostStep` ``(algo, params)`` runs the exact NumPy RawBoost
  (:func:`dpda.augment.rawboost.reference.rawboost`) with a
  ``np.random.RandomState`` seeded from ``rng.integers(2**32)``.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from dpda.augment.base import Augmentation, Trace, as_signal, check_probability, check_rng, check_sr
from dpda.errors import DpdaError


class Identity(Augmentation):
    """Returns the input (as float32)."""

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Trace]:
        return as_signal(x), []

    def __repr__(self) -> str:
        return "Identity()"


class Maybe(Augmentation):
    """Apply ``step`` with probability ``p`` (one ``rng.random()`` draw per call, also for p = 0 or 1)."""

    def __init__(self, step: Callable, p: float) -> None:
        self.step = _check_step(step, "step")
        self.p = check_probability(p)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Trace]:
        check_rng(rng)
        if rng.random() < self.p:
            return _apply_step(self.step, x, rng)
        return as_signal(x), []

    def __repr__(self) -> str:
        return f"Maybe({self.step!r}, p={self.p:g})"


def _check_step(step: Any, what: str) -> Callable:
    if not callable(step):
        raise TypeError(f"{what} must be an augmentation (callable x, rng -> y), got {type(step).__name__}")
    return step


def _apply_step(step: Callable, x: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Trace]:
    """Run one step; plain callables (not Augmentation) are accepted and checked for length."""
    if isinstance(step, Augmentation):
        y, trace = step.apply(x, rng)
    else:
        y, trace = step(x, rng), [{"step": getattr(step, "__name__", type(step).__name__)}]
    y = np.asarray(y)
    if y.dtype != np.float32 or y.ndim != 1:
        y = as_signal(y, f"output of {step!r}")
    if y.shape[0] != np.shape(x)[0]:
        raise ValueError(f"{step!r} changed the signal length from {np.shape(x)[0]} to {y.shape[0]}")
    return y, trace


def _gate(x: np.ndarray, rng: np.random.Generator, p: Optional[float]) -> Tuple[np.ndarray, bool]:
    """Check the generator and the signal; with a probability ``p``, draw whether the step runs (one draw)."""
    check_rng(rng)
    y = as_signal(x)
    return y, p is None or rng.random() < p


def maybe(step: Callable, p: Optional[float]) -> Callable:
    """``step`` itself, or wrapped in :class:`Maybe` when a probability ``p`` is given."""
    return step if p is None else Maybe(step, p)


class Series(Augmentation):
    """Apply ``steps`` in order; with ``p`` the whole series runs with probability ``p``."""

    def __init__(self, steps: Sequence[Callable], p: Optional[float] = None) -> None:
        self.steps = [_check_step(s, f"steps[{i}]") for i, s in enumerate(steps)]
        self.p = None if p is None else check_probability(p)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Trace]:
        y, run = _gate(x, rng, self.p)
        if not run:
            return y, []
        trace: Trace = []
        for step in self.steps:
            y, t = _apply_step(step, y, rng)
            trace.extend(t)
        return y, trace

    def __repr__(self) -> str:
        inner = ", ".join(repr(s) for s in self.steps)
        return f"Series([{inner}]" + ("" if self.p is None else f", p={self.p:g}") + ")"


class RandomChoice(Augmentation):
    """Apply one of ``steps``, drawn with probabilities proportional to ``weights`` (uniform by default).

    One ``rng.choice`` draw per call (after the ``p`` draw when ``p`` is given).
    """

    def __init__(
        self, steps: Sequence[Callable], weights: Optional[Sequence[float]] = None, p: Optional[float] = None
    ) -> None:
        self.steps = [_check_step(s, f"steps[{i}]") for i, s in enumerate(steps)]
        if not self.steps:
            raise ValueError("RandomChoice needs at least one step")
        if weights is None:
            w = np.full(len(self.steps), 1.0 / len(self.steps))
        else:
            if len(weights) != len(self.steps):
                raise ValueError(f"weights has {len(weights)} entries for {len(self.steps)} steps")
            if any(isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) for v in weights):
                raise ValueError(f"weights must be numbers, got {list(weights)!r}")
            w = np.asarray(weights, dtype=np.float64)
            if np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
                raise ValueError(f"weights must be finite, >= 0 and not all 0, got {list(weights)!r}")
            w = w / w.sum()
        self.weights = w
        self.p = None if p is None else check_probability(p)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Trace]:
        y, run = _gate(x, rng, self.p)
        if not run:
            return y, []
        k = int(rng.choice(len(self.steps), p=self.weights))
        return _apply_step(self.steps[k], y, rng)

    def __repr__(self) -> str:
        inner = ", ".join(repr(s) for s in self.steps)
        w = ", ".join(f"{v:.3g}" for v in self.weights)
        return f"RandomChoice([{inner}], weights=[{w}]" + ("" if self.p is None else f", p={self.p:g}") + ")"


class RawBoostStep(Augmentation):
    """RawBoost (Tak et al., 2022) as a chain step, on the exact NumPy path.

    Each call draws ``seed = rng.integers(2**32)`` from the chain's Generator
    and runs :func:`dpda.augment.rawboost.reference.rawboost` with
    ``np.random.RandomState(seed)``, so the result is reproducible from the
    chain's generator. ``params``: a :class:`~dpda.augment.rawboost.params.RawBoostParams`,
    a mapping of parameter overrides, or None (the original defaults).
    ``sr`` in Hz. The RawBoost implementation is imported on first use.
    """

    def __init__(self, algo: int = 4, params: Any = None, *, sr: int = 16000, p: Optional[float] = None) -> None:
        from dpda.augment.rawboost.params import ALGORITHMS, RawBoostParams, from_mapping

        if isinstance(algo, (bool, np.bool_)) or not isinstance(algo, numbers.Integral) or int(algo) not in ALGORITHMS:
            choices = ", ".join(f"{k}={v}" for k, v in ALGORITHMS.items())
            raise ValueError(f"RawBoost algo must be an int in 0..8 ({choices}), got {algo!r}")
        self.algo = int(algo)
        if params is None:
            params = RawBoostParams()
        elif isinstance(params, Mapping):
            params = from_mapping(params)
        elif not isinstance(params, RawBoostParams):
            raise TypeError(f"params must be RawBoostParams, a mapping or None, got {type(params).__name__}")
        self.params = params
        self.sr = check_sr(sr)
        self.p = None if p is None else check_probability(p)
        self._fn: Optional[Callable] = None

    @staticmethod
    def _import(module: str, name: str) -> Callable:
        import importlib

        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise DpdaError(f"RawBoost implementation {module}.{name} is not available: {e}") from e

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Trace]:
        x, run = _gate(x, rng, self.p)
        if not run:
            return x, []
        if self._fn is None:
            self._fn = self._import("dpda.augment.rawboost.reference", "rawboost")
        seed = int(rng.integers(2**32))
        y = self._fn(x, self.sr, self.algo, np.random.RandomState(seed), params=self.params)
        y = np.asarray(y, dtype=np.float32)
        return y, [{"step": "rawboost", "algo": self.algo, "seed": seed}]

    def apply_batch(self, x: Any, generator: Any = None) -> Any:
        """Batched torch path: ``x`` a ``(B, T)`` tensor, ``generator`` a ``torch.Generator`` (or None).

        Calls :func:`dpda.augment.rawboost.batched.rawboost_batched`; statistically
        equivalent to, but not sample-identical with, the NumPy path. ``p`` is not applied here.
        """
        fn = self._import("dpda.augment.rawboost.batched", "rawboost_batched")
        return fn(x, self.algo, generator, self.params, self.sr)

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_fn"] = None  # re-imported in the worker process
        return state

    def __repr__(self) -> str:
        return f"RawBoostStep(algo={self.algo}, sr={self.sr}" + ("" if self.p is None else f", p={self.p:g}") + ")"


__all__ = ["Identity", "Maybe", "RandomChoice", "RawBoostStep", "Series", "maybe"]
