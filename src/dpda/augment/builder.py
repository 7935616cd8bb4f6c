"""Building augmentation chains from configuration (YAML or the equivalent dict / list).

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

Leaf augmentations live in :mod:`~dpda.augment.noise` (``AddNoise``),
:mod:`~dpda.augment.reverb` (``Reverberate``), :mod:`~dpda.augment.codec`
(``Codec``) and :mod:`~dpda.augment.filters` (``BandLimit``).

Leaf steps are looked up in a registry (:data:`LEAF_STEPS`, filled with
:func:`register_step`): each names the options it accepts and a function that
builds the step from them. Adding a leaf is one registration, not another
branch here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

from dpda.augment.base import Augmentation, ChainConfigError, check_probability, check_sr
from dpda.augment.combinators import Identity, RandomChoice, RawBoostStep, Series, maybe
from dpda.errors import DpdaError, PathLike


@dataclass(frozen=True)
class Context:
    """Where a step is built: its key path (for errors), the sample rate (Hz) and the folder of relative paths."""

    where: str
    sr: int
    base_dir: Optional[Path]

    def path(self, value: Any, key: str) -> str:
        return _resolve_path(value, f"{self.where}.{key}", self.base_dir)

    def files(self, value: Any, key: str) -> Any:
        return _resolve_files(value, f"{self.where}.{key}", self.base_dir)


#: builds a leaf step from its options (``p`` already taken out) in a context
LeafBuilder = Callable[[Dict[str, Any], Context], Callable]


@dataclass(frozen=True)
class LeafStep:
    """A leaf step of the configuration: the options it accepts (``p`` among them) and its builder.

    ``more_options``: a function giving further accepted option names, read
    only when the step is built (RawBoost's parameter names), described in
    errors as ``more_label``.
    """

    options: Tuple[str, ...]
    build: LeafBuilder
    more_options: Optional[Callable[[], Tuple[str, ...]]] = None
    more_label: str = ""


#: the registry: leaf step name -> :class:`LeafStep`, in the order error messages list them
LEAF_STEPS: Dict[str, LeafStep] = {}
COMPOSITE_OPTIONS: Dict[str, Tuple[str, ...]] = {"series": ("p",), "choice": ("weights", "p")}


def register_step(name: str, options: Sequence[str], *, more_options: Optional[Callable[[], Tuple[str, ...]]] = None,
                  more_label: str = "") -> Callable[[LeafBuilder], LeafBuilder]:
    """Decorator: register ``fn(options, context) -> step`` as the leaf step ``name`` of chain configurations."""

    def add(fn: LeafBuilder) -> LeafBuilder:
        LEAF_STEPS[name] = LeafStep(tuple(options), fn, more_options, more_label)
        return fn

    return add


def step_names() -> Tuple[str, ...]:
    """Every step key a configuration may use: composites first, then the registered leaves."""
    return tuple(COMPOSITE_OPTIONS) + tuple(LEAF_STEPS)


# ---------------------------------------------------------------------------
# The built-in leaf steps (each module is imported when its step is built)


def _rawboost_fields() -> Tuple[str, ...]:
    from dataclasses import fields

    from dpda.augment.rawboost.params import RawBoostParams

    return tuple(f.name for f in fields(RawBoostParams))


@register_step("identity", ("p",))
def _identity(opts: Dict[str, Any], ctx: Context) -> Callable:
    return Identity()


@register_step("rawboost", ("algo", "params", "p"), more_options=_rawboost_fields, more_label="a RawBoost parameter")
def _rawboost(opts: Dict[str, Any], ctx: Context) -> Callable:
    if "algo" not in opts:
        raise ValueError("missing option 'algo' (0..8)")
    fields = _rawboost_fields()
    params = dict(opts.pop("params", None) or {})
    params.update({k: opts.pop(k) for k in list(opts) if k in fields})
    return RawBoostStep(opts.pop("algo"), params, sr=ctx.sr)


@register_step("noise", ("root", "categories", "files", "snr", "babble_speakers", "p"))
def _noise(opts: Dict[str, Any], ctx: Context) -> Callable:
    from dpda.augment.noise import AddNoise

    root = opts.pop("root", None)
    files = opts.pop("files", None)
    if root is not None:
        root = ctx.path(root, "root")
    if files is not None:
        files = ctx.files(files, "files")
    return AddNoise(root, files=files, sr=ctx.sr, **opts)


@register_step("reverb", ("root", "list", "files", "max_seconds", "p"))
def _reverb(opts: Dict[str, Any], ctx: Context) -> Callable:
    from dpda.augment.reverb import Reverberate

    root = opts.pop("root", None)
    lst = opts.pop("list", None)
    files = opts.pop("files", None)
    if root is not None:
        root = ctx.path(root, "root")
    if lst is not None:
        if not isinstance(lst, (str, os.PathLike)):
            raise ChainConfigError(f"{ctx.where}.list: expected a path, got {lst!r}")
        lst = os.path.expanduser(os.fspath(lst))
        if ctx.base_dir is not None and root is None and not os.path.isabs(lst):
            lst = str(ctx.base_dir / lst)
    if files is not None:
        files = ctx.files(files, "files")
    return Reverberate(root, list_file=lst, files=files, sr=ctx.sr, **opts)


@register_step("codec", ("name", "bitrate", "quality", "p"))
def _codec(opts: Dict[str, Any], ctx: Context) -> Callable:
    from dpda.augment.codec import CODECS, Codec

    if "name" not in opts:
        raise ValueError(f"missing option 'name' (one of {', '.join(CODECS)})")
    return Codec(opts.pop("name"), sr=ctx.sr, **opts)


@register_step("bandlimit", ("low", "high", "order", "p"))
def _bandlimit(opts: Dict[str, Any], ctx: Context) -> Callable:
    from dpda.augment.filters import BandLimit

    return BandLimit(sr=ctx.sr, **opts)


#: leaf step name -> options it accepts (``p`` included), of the built-in steps; RawBoost also accepts its parameters
LEAF_OPTIONS: Dict[str, Tuple[str, ...]] = {name: step.options for name, step in LEAF_STEPS.items()}
STEP_NAMES: Tuple[str, ...] = step_names()


# ---------------------------------------------------------------------------
# Configuration -> chain


def _resolve_path(value: Any, where: str, base_dir: Optional[Path]) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ChainConfigError(f"{where}: expected a path, got {value!r}")
    p = Path(os.path.expanduser(os.fspath(value)))
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return str(p)


def _build_leaf(name: str, opts: Mapping[str, Any], where: str, sr: int, base_dir: Optional[Path]) -> Callable:
    step_type = LEAF_STEPS[name]
    opts = dict(opts)
    more = step_type.more_options() if step_type.more_options is not None else ()
    unknown = [k for k in opts if k not in step_type.options and k not in more]
    if unknown:
        expected = ", ".join(step_type.options) + (f" or {step_type.more_label} ({', '.join(more)})" if more else "")
        raise ChainConfigError(f"{where}: unknown option {str(unknown[0])!r}; expected one of {expected}")
    p = opts.pop("p", None)
    try:
        if p is not None:
            p = check_probability(p)
        step = step_type.build(opts, Context(where, sr, base_dir))
    except ChainConfigError:
        raise
    except (ValueError, TypeError, DpdaError) as e:
        raise ChainConfigError(f"{where}: {e}") from e
    return maybe(step, p)


def _resolve_files(files: Any, where: str, base_dir: Optional[Path]) -> Any:
    if isinstance(files, Mapping):
        return {str(k): _resolve_files(v, f"{where}.{k}", base_dir) for k, v in files.items()}
    if isinstance(files, (str, os.PathLike)) or not isinstance(files, (list, tuple)):
        raise ChainConfigError(f"{where}: expected a list of paths, got {files!r}")
    return [_resolve_path(f, f"{where}[{i}]", base_dir) for i, f in enumerate(files)]


def _build(node: Any, where: str, sr: int, base_dir: Optional[Path]) -> Callable:
    if isinstance(node, str):
        if node in LEAF_STEPS:
            return _build_leaf(node, {}, f"{where}.{node}", sr, base_dir)
        raise ChainConfigError(f"{where}: unknown step {node!r}; expected one of {', '.join(step_names())}")
    if isinstance(node, (list, tuple)):
        return Series([_build(s, f"{where}[{i}]", sr, base_dir) for i, s in enumerate(node)])
    if not isinstance(node, Mapping):
        raise ChainConfigError(
            f"{where}: expected a step (a mapping such as {{noise: {{...}}}}) or a list of steps, got {node!r}"
        )
    names = step_names()
    kinds = [k for k in node if k in names]
    if len(kinds) != 1:
        if not kinds:
            keys = ", ".join(repr(str(k)) for k in node) or "nothing"
            raise ChainConfigError(f"{where}: unknown step {keys}; expected one of {', '.join(step_names())}")
        raise ChainConfigError(f"{where}: one step per item, got {', '.join(kinds)} (use series: [...] to combine)")
    kind = kinds[0]
    here = f"{where}.{kind}"
    value = node[kind]
    extra = {k: v for k, v in node.items() if k != kind}
    if kind in LEAF_STEPS:
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
    sr = check_sr(sr)
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


__all__ = ["COMPOSITE_OPTIONS", "LEAF_OPTIONS", "LEAF_STEPS", "STEP_NAMES", "Context", "LeafStep", "build_chain",
           "load_chain", "register_step", "step_names"]
