"""Typed YAML configuration with command-line overrides.

A configuration is a tree of dataclasses. :func:`from_dict` builds it from
plain data (YAML), checking every key and type and naming the key path in
errors (``train.optimizer.lr: expected a number, got 'fast'``);
:func:`apply_overrides` applies ``key.path=value`` strings (values parsed as
YAML: ``train.epochs=3``, ``model.config={gat_dims: [16, 16]}``);
:func:`to_dict` gives back plain data, which a run directory stores as its
resolved ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union

import yaml

from dpda.errors import DpdaError, PathLike

T = TypeVar("T")


class ConfigError(DpdaError, ValueError):
    """A configuration key is unknown, missing or of the wrong type."""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + (" or null" if len(args) < len(typing.get_args(tp)) else "")
    if origin in (list, List, Sequence):
        return "a list"
    if origin in (dict, Dict, Mapping):
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        non_null = [a for a in args if a is not type(None)]
        if len(non_null) == 1:  # Optional[X]: X's own error is the helpful one
            return _convert(value, non_null[0], path)
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return from_dict(tp, value, path)
    if origin in (list, List, Sequence) or tp in (list, List):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Dict, Mapping) or tp in (dict, Dict):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        args = typing.get_args(tp)
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, vt, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-6 as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    return value


def from_dict(cls: Type[T], data: Mapping[str, Any], path: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, validating keys and types recursively."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    where = f"{path}." if path else ""
    if unknown:
        raise ConfigError(
            f"{where}{unknown[0]}: unknown key; expected one of: {', '.join(fields)}"
        )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], f"{where}{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            raise ConfigError(f"{where}{name}: required key is missing")
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Plain data (dicts, lists, scalars) of a config dataclass tree."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def apply_overrides(data: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to plain config data, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.epochs=3")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"override {item!r}: empty key")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({e})") from None
        _set_path(data, parts, value, f"override {item!r}")
    return data


def load_yaml(path: PathLike) -> Dict[str, Any]:
    """Read a YAML mapping, with errors that name the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level")
    return data


def _set_path(data: Dict[str, Any], parts: Sequence[str], value: Any, where: str) -> None:
    """Set ``data[p0][p1]...`` to ``value``, creating missing (or null) mappings on the way."""
    node = data
    for i, p in enumerate(parts[:-1]):
        if node.get(p) is None:
            node[p] = {}
        if not isinstance(node[p], dict):
            raise ConfigError(f"{where}: {'.'.join(parts[: i + 1])} is not a mapping")
        node = node[p]
    node[parts[-1]] = value


def set_value(data: Dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in plain config data to ``value`` as it is (no YAML parsing), creating mappings on the way."""
    _set_path(data, key.split("."), value, key)


def load_config(cls: Type[T], path: Optional[PathLike] = None, overrides: Sequence[str] = (),
                values: Optional[Mapping[str, Any]] = None) -> T:
    """Config of type ``cls`` from an optional YAML file, then ``values`` (``{"a.b": value}``, set as they
    are: e.g. a path from a command-line option), then ``key=value`` overrides (parsed as YAML)."""
    data = load_yaml(path) if path is not None else {}
    for key, value in (values or {}).items():
        set_value(data, key, value)
    apply_overrides(data, overrides)
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path is not None else str(e)) from None


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


# -- reference documentation generated from the schema -----------------------------------------


def _short_type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_short_type(a) for a in args) + (" or null" if len(args) < len(typing.get_args(tp)) else "")
    if origin in (list, List, Sequence) or tp in (list, List):
        return "list"
    if origin in (dict, Dict, Mapping) or tp in (dict, Dict) or dataclasses.is_dataclass(tp):
        return "mapping"
    return {int: "int", float: "float", str: "str", bool: "bool"}.get(tp, "any")


def _show_default(f: "dataclasses.Field[Any]") -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:
        return "required"
    return yaml.safe_dump(to_dict(value), default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def _optional_dataclass(tp: Any) -> Optional[type]:
    """The dataclass of ``Optional[SomeDataclass]`` (None for any other type)."""
    if typing.get_origin(tp) is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and dataclasses.is_dataclass(args[0]):
            return args[0]
    return None


def schema_keys(cls: type, prefix: str = "") -> List[Tuple[str, type, "dataclasses.Field[Any]", Any]]:
    """``(key path, owning dataclass, field, type)`` of every key of a config schema, in declaration order.

    A field holding a config section (a dataclass) is not a key itself, only
    its fields are; an optional section (``Optional[Section]``) is a key
    (it may be left out) followed by its fields.
    """
    hints = typing.get_type_hints(cls)
    rows: List[Tuple[str, type, "dataclasses.Field[Any]", Any]] = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += schema_keys(tp, f"{key}.")
            continue
        rows.append((key, cls, f, tp))
        section = _optional_dataclass(tp)
        if section is not None:
            rows += schema_keys(section, f"{key}.")
    return rows


def reference_table(cls: type, docs: Mapping[str, Tuple[str, str]], choices: Mapping[str, Sequence[str]] = {}) -> str:
    """A Markdown table of every key of schema ``cls``: key, type, default, unit, meaning.

    ``docs`` maps ``"Class.field"`` (a field of a dataclass of the schema; a
    section used twice, such as a split, is described once) to ``(unit,
    meaning)``; ``choices`` maps key paths to their allowed values. Types and
    defaults come from the dataclasses themselves. Raises :class:`KeyError`
    naming the keys without a description, and the descriptions of no key.
    """
    rows = schema_keys(cls)
    needed = {f"{owner.__name__}.{f.name}" for _, owner, f, _ in rows}
    missing = sorted(needed - set(docs))
    stale = sorted(set(docs) - needed)
    if missing or stale:
        raise KeyError(f"config keys without a description: {missing}; descriptions of no key: {stale}")
    lines = ["| key | type | default | unit | meaning |", "|---|---|---|---|---|"]
    for key, owner, f, tp in rows:
        unit, meaning = docs[f"{owner.__name__}.{f.name}"]
        if key in choices:
            meaning = f"one of {', '.join(f'`{c}`' for c in choices[key])}; " + meaning
        default = _show_default(f)
        default = default if default == "required" else f"`{default}`"
        lines.append(f"| `{key}` | {_short_type(tp)} | {default} | {unit or '-'} | {meaning.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def replace_generated(text: str, name: str, content: str) -> str:
    """``text`` with the part between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` lines replaced."""
    begin, end = f"<!-- BEGIN {name} (generated; do not edit by hand) -->\n", f"<!-- END {name} -->\n"
    if begin not in text or end not in text:
        raise ValueError(f"no generated section {name!r} (expected the lines {begin.strip()!r} and {end.strip()!r})")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return head + begin + content + end + tail
