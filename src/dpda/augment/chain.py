"""Composable augmentation chains and the augmentation protocol.

Every augmentation is a callable object ``aug(x, rng) -> y``:

* ``x``: 1-D float32 waveform ``(T,)`` at the sample rate (Hz) the
  augmentation was built for (``sr=16000`` by default); amplitudes in the
  usual [-1, 1] full-scale convention.
* ``rng``: a :class:`numpy.random.Generator`; **every** random draw comes from
  it, so the same generator state gives the same output (see
  :mod:`dpda.augment.seeding` for deriving one per utterance / epoch / worker).
* ``y``: float32 array of the same length ``T``.

``aug.apply(x, rng)`` returns ``(y, trace)`` where ``trace`` is a list of
dicts, one per leaf step that actually ran, saying what it drew (noise file
and SNR, RIR, codec bitrate, ...). ``aug(x, rng)`` is ``aug.apply(x, rng)[0]``.

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

Leaf augmentations live in :mod:`~dpda.augment.noise` (``AddNoise``),
:mod:`~dpda.augment.reverb` (``Reverberate``), :mod:`~dpda.augment.codec`
(``Codec``) and :mod:`~dpda.augment.filters` (``BandLimit``).

Configuration (YAML or the equivalent dict / list), read by
:func:`build_chain` / :func:`load_chain`::

    series:
      - rawboost: {algo: 4, p: 0.5}
      - choice:
          - noise: {root: /data/musan, categories: {noise: [0, 15]}}
          - reverb: {root: /data/RIRS_NOISES, list: RIRS_NOISES/real_rirs_isotropic_noises/rir_list}
          - codec: {name: mp3}
        weights: [2, 1, 1]      # optional
        p: 0.8                  # optional
      - bandlimit: {low: 300, high: 3400, p: 0.2}

A step is a mapping with one step key. Leaf steps (``noise``, ``reverb``,
``codec``, ``bandlimit``, ``rawboost``, ``identity``) take a mapping of options
(``p`` among them); composite steps (``series``, ``choice``) take a list of
steps, with ``p`` (and ``weights`` for ``choice``) as sibling keys. A bare
list at the top level is a series; a top-level ``{chain: ...}`` wrapper is
accepted. Errors (:class:`ChainConfigError`) name the key path, e.g.
``chain.series[1].choice[0].noise: unknown option 'rooot'; expected one of
root, categories, files, snr, babble_speakers, p``.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from dpda.errors import DpdaError, PathLike

Trace = List[Dict[str, Any]]
Range = Tuple[float, float]


class ChainConfigError(DpdaError, ValueError):
    """An augmentation chain configuration is invalid; the message names the key path."""


# ---------------------------------------------------------------------------
# Protocol and shared helpers


class Augmentation:
    """Base class: subclasses implement :meth:`apply`; calling returns the signal only."""

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Trace]:
        raise NotImplementedError

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(x, rng)[0]


def as_signal(x: Any, what: str = "x") -> np.ndarray:
    """Check that ``x`` is a finite 1-D signal; return it as float32 (no copy when already float32)."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{what} must be a 1-D waveform (T,), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must hold real numbers, got dtype {a.dtype}")
    a = a.astype(np.float32, copy=False)
    if a.size and not np.all(np.isfinite(a)):
        raise ValueError(f"{what} holds NaN or inf samples")
    return a


def check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (e.g. np.random.default_rng(seed)), got {type(rng).__name__}"
        )
    return rng


def peak_limit(y: np.ndarray) -> np.ndarray:
    """Scale ``y`` down uniformly so that ``max|y| == 1`` if it exceeds 1; otherwise return it unchanged.

    A single gain for the whole utterance: no clipping, so waveform shape
    and SNR are preserved.
    """
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > 1.0:
        y = y / peak
    return y


def mean_power(x: np.ndarray) -> float:
    """Mean square over the whole signal (float64)."""
    return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0


def parse_range(value: Any, what: str, *, lo: Optional[float] = None, hi: Optional[float] = None) -> Range:
    """A number ``v`` -> ``(v, v)``; a pair ``[a, b]`` with ``a <= b`` -> ``(a, b)``; optionally bounded."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{what} must be a number or a [low, high] pair, got {value!r}")
    if isinstance(value, numbers.Real):
        pair = (float(value), float(value))
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in value
    ):
        pair = (float(value[0]), float(value[1]))
    else:
        raise ValueError(f"{what} must be a number or a [low, high] pair, got {value!r}")
    if not all(np.isfinite(pair)):
        raise ValueError(f"{what} must be finite, got {value!r}")
    if pair[0] > pair[1]:
        raise ValueError(f"{what}: low {pair[0]:g} > high {pair[1]:g}")
    if lo is not None and pair[0] < lo:
        raise ValueError(f"{what} must be >= {lo:g}, got {value!r}")
    if hi is not None and pair[1] > hi:
        raise ValueError(f"{what} must be <= {hi:g}, got {value!r}")
    return pair


def draw(rng: np.random.Generator, r: Range) -> float:
    """Uniform draw in ``[r[0], r[1]]``; a degenerate range returns its value without drawing."""
    return r[0] if r[0] == r[1] else float(rng.uniform(r[0], r[1]))


def check_probability(p: Any, what: str = "p") -> float:
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{what} must be a probability in [0, 1], got {p!r}")
    return float(p)


# ---------------------------------------------------------------------------
# Combinators


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


def _maybe_wrap(step: Callable, p: Optional[float]) -> Callable:
    return step if p is None else Maybe(step, p)


class Series(Augmentation):
    """Apply ``steps`` in order; with ``p`` the whole series runs with probability ``p``."""

    def __init__(self, steps: Sequence[Callable], p: Optional[float] = None) -> None:
        self.steps = [_check_step(s, f"steps[{i}]") for i, s in enumerate(steps)]
        self.p = None if p is None else check_probability(p)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, Trace]:
        check_rng(rng)
        y = as_signal(x)
        if self.p is not None and not rng.random() < self.p:
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
        check_rng(rng)
        y = as_signal(x)
        if self.p is not None and not rng.random() < self.p:
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
        self.sr = _check_sr(sr)
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
        check_rng(rng)
        x = as_signal(x)
        if self.p is not None and not rng.random() < self.p:
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


def _check_sr(sr: Any) -> int:
    if isinstance(sr, (bool, np.bool_)) or not isinstance(sr, numbers.Integral) or int(sr) <= 0:
        raise ValueError(f"sr must be a positive integer sample rate in Hz, got {sr!r}")
    return int(sr)


# ---------------------------------------------------------------------------
# Configuration

#: leaf step name -> options it accepts (``p`` included); RawBoost also accepts its parameter names.
LEAF_OPTIONS: Dict[str, Tuple[str, ...]] = {
    "identity": ("p",),
    "rawboost": ("algo", "params", "p"),
    "noise": ("root", "categories", "files", "snr", "babble_speakers", "p"),
    "reverb": ("root", "list", "files", "max_seconds", "p"),
    "codec": ("name", "bitrate", "quality", "p"),
    "bandlimit": ("low", "high", "order", "p"),
}
COMPOSITE_OPTIONS: Dict[str, Tuple[str, ...]] = {"series": ("p",), "choice": ("weights", "p")}
STEP_NAMES: Tuple[str, ...] = tuple(COMPOSITE_OPTIONS) + tuple(LEAF_OPTIONS)


def _resolve_path(value: Any, where: str, base_dir: Optional[Path]) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ChainConfigError(f"{where}: expected a path, got {value!r}")
    p = Path(os.path.expanduser(os.fspath(value)))
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return str(p)


def _build_leaf(name: str, opts: Mapping[str, Any], where: str, sr: int, base_dir: Optional[Path]) -> Callable:
    opts = dict(opts)
    allowed = LEAF_OPTIONS[name]
    rawboost_fields: Tuple[str, ...] = ()
    if name == "rawboost":
        from dataclasses import fields

        from dpda.augment.rawboost.params import RawBoostParams

        rawboost_fields = tuple(f.name for f in fields(RawBoostParams))
    unknown = [k for k in opts if k not in allowed and k not in rawboost_fields]
    if unknown:
        expected = ", ".join(allowed) + (" or a RawBoost parameter (" + ", ".join(rawboost_fields) + ")" if rawboost_fields else "")
        raise ChainConfigError(f"{where}: unknown option {str(unknown[0])!r}; expected one of {expected}")
    p = opts.pop("p", None)
    try:
        if p is not None:
            p = check_probability(p)
        if name == "identity":
            step: Callable = Identity()
        elif name == "rawboost":
            if "algo" not in opts:
                raise ValueError("missing option 'algo' (0..8)")
            params = dict(opts.pop("params", None) or {})
            params.update({k: opts.pop(k) for k in list(opts) if k in rawboost_fields})
            step = RawBoostStep(opts.pop("algo"), params, sr=sr)
        elif name == "noise":
            from dpda.augment.noise import AddNoise

            root = opts.pop("root", None)
            files = opts.pop("files", None)
            if root is not None:
                root = _resolve_path(root, f"{where}.root", base_dir)
            if files is not None:
                files = _resolve_files(files, f"{where}.files", base_dir)
            step = AddNoise(root, files=files, sr=sr, **opts)
        elif name == "reverb":
            from dpda.augment.reverb import Reverberate

            root = opts.pop("root", None)
            lst = opts.pop("list", None)
            files = opts.pop("files", None)
            if root is not None:
                root = _resolve_path(root, f"{where}.root", base_dir)
            if lst is not None:
                if not isinstance(lst, (str, os.PathLike)):
                    raise ChainConfigError(f"{where}.list: expected a path, got {lst!r}")
                lst = os.path.expanduser(os.fspath(lst))
                if base_dir is not None and root is None and not os.path.isabs(lst):
                    lst = str(base_dir / lst)
            if files is not None:
                files = _resolve_files(files, f"{where}.files", base_dir)
            step = Reverberate(root, list_file=lst, files=files, sr=sr, **opts)
        elif name == "codec":
            from dpda.augment.codec import Codec

            if "name" not in opts:
                from dpda.augment.codec import CODECS

                raise ValueError(f"missing option 'name' (one of {', '.join(CODECS)})")
            step = Codec(opts.pop("name"), sr=sr, **opts)
        elif name == "bandlimit":
            from dpda.augment.filters import BandLimit

            step = BandLimit(sr=sr, **opts)
        else:  # pragma: no cover - guarded by LEAF_OPTIONS
            raise AssertionError(name)
    except ChainConfigError:
        raise
    except (ValueError, TypeError, DpdaError) as e:
        raise ChainConfigError(f"{where}: {e}") from e
    return _maybe_wrap(step, p)


def _resolve_files(files: Any, where: str, base_dir: Optional[Path]) -> Any:
    if isinstance(files, Mapping):
        return {str(k): _resolve_files(v, f"{where}.{k}", base_dir) for k, v in files.items()}
    if isinstance(files, (str, os.PathLike)) or not isinstance(files, (list, tuple)):
        raise ChainConfigError(f"{where}: expected a list of paths, got {files!r}")
    return [_resolve_path(f, f"{where}[{i}]", base_dir) for i, f in enumerate(files)]


def _build(node: Any, where: str, sr: int, base_dir: Optional[Path]) -> Callable:
    if isinstance(node, str):
        if node in LEAF_OPTIONS:
            return _build_leaf(node, {}, f"{where}.{node}", sr, base_dir)
        raise ChainConfigError(f"{where}: unknown step {node!r}; expected one of {', '.join(STEP_NAMES)}")
    if isinstance(node, (list, tuple)):
        return Series([_build(s, f"{where}[{i}]", sr, base_dir) for i, s in enumerate(node)])
    if not isinstance(node, Mapping):
        raise ChainConfigError(
            f"{where}: expected a step (a mapping such as {{noise: {{...}}}}) or a list of steps, got {node!r}"
        )
    kinds = [k for k in node if k in STEP_NAMES]
    if len(kinds) != 1:
        if not kinds:
            keys = ", ".join(repr(str(k)) for k in node) or "nothing"
            raise ChainConfigError(f"{where}: unknown step {keys}; expected one of {', '.join(STEP_NAMES)}")
        raise ChainConfigError(f"{where}: one step per item, got {', '.join(kinds)} (use series: [...] to combine)")
    kind = kinds[0]
    here = f"{where}.{kind}"
    value = node[kind]
    extra = {k: v for k, v in node.items() if k != kind}
    if kind in LEAF_OPTIONS:
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ChainConfigError(f"{here}: expected a mapping of options, got {value!r}")
        for k in extra:  # allow `- codec: {name: mp3}\n  p: 0.5` as well as inline p
            if k != "p":
                raise ChainConfigError(f"{where}: unknown key {str(k)!r} beside {kind!r}; expected p")
            if "p" in value:
                raise ChainConfigError(f"{where}: p given twice (inside and beside {kind!r})")
        return _build_leaf(kind, {**value, **extra}, here, sr, base_dir)
    allowed = COMPOSITE_OPTIONS[kind]
    for k in extra:
        if k not in allowed:
            raise ChainConfigError(f"{where}: unknown option {str(k)!r} for {kind}; expected one of {', '.join(allowed)}")
    if not isinstance(value, (list, tuple)) or not value:
        raise ChainConfigError(f"{here}: expected a non-empty list of steps, got {value!r}")
    steps = [_build(s, f"{here}[{i}]", sr, base_dir) for i, s in enumerate(value)]
    try:
        p = None if extra.get("p") is None else check_probability(extra["p"])
        if kind == "series":
            return Series(steps, p=p)
        weights = extra.get("weights")
        if weights is not None and not isinstance(weights, (list, tuple)):
            raise ValueError(f"weights must be a list of numbers, got {weights!r}")
        return RandomChoice(steps, weights=weights, p=p)
    except (ValueError, TypeError) as e:
        raise ChainConfigError(f"{where}: {e}") from e


def build_chain(
    config: Union[Mapping[str, Any], Sequence[Any]],
    *,
    sr: int = 16000,
    base_dir: Optional[PathLike] = None,
    name: str = "chain",
) -> Augmentation:
    """Build an augmentation chain from a YAML-like dict / list (see the module docstring).

    ``sr``: sample rate (Hz) of the signals the chain will receive (noise and
    RIR files are resampled to it). Relative paths (``root``, ``files``) are
    resolved against ``base_dir`` when given (:func:`load_chain` passes the
    config file's folder), else against the working directory. ``name`` is
    the root of the key paths in error messages.

    Raises:
        ChainConfigError: naming the key path of the first problem.
    """
    sr = _check_sr(sr)
    base = Path(base_dir) if base_dir is not None else None
    if isinstance(config, Mapping) and set(config) == {"chain"}:
        config = config["chain"]
    step = _build(config, name, sr, base)
    return step if isinstance(step, Augmentation) else Series([step])


def load_chain(path: PathLike, *, sr: int = 16000) -> Augmentation:
    """Read a chain configuration from a YAML file and build it (relative paths: against the file's folder)."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ChainConfigError(f"{p}: chain configuration file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ChainConfigError(f"{p}: cannot read chain configuration: {e}") from e
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        problem = getattr(e, "problem", None) or str(e)
        raise ChainConfigError(f"{where}: invalid YAML: {problem}") from e
    if config is None:
        raise ChainConfigError(f"{p}: chain configuration is empty")
    try:
        return build_chain(config, sr=sr, base_dir=p.resolve().parent)
    except ChainConfigError as e:
        raise ChainConfigError(f"{p}: {e}") from e
