"""Typed, frozen dataclass configs loaded strictly from TOML, with ``section.key=value`` overrides.

Every config in the package is a frozen dataclass. :func:`from_dict` builds one from a plain
mapping (e.g. parsed TOML): unknown keys are errors that list the valid ones, and values are
converted to the field's declared type (``int``, ``float``, ``bool``, ``str``, ``Path``,
``tuple[...]``, ``Literal[...]``, optional fields and nested dataclasses). :func:`to_dict` is the
inverse, producing TOML/JSON-serialisable data.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from clipdenoise.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def from_dict(cls: type[T], data: Mapping[str, Any], *, where: str = "") -> T:
    """Build the dataclass ``cls`` from ``data``, strictly.

    Raises:
        ConfigError: on an unknown key (the message lists the valid keys) or a value that does
            not convert to the field's type.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a table of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"valid keys are: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(value, hints[name], f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where or cls.__name__}: {error}") from error


def non_finite_fields(config: Any, prefix: str = "") -> list[str]:
    """Dotted names of the float fields (and float items of tuples) of a dataclass config,
    nested sections included, that hold NaN or an infinity."""
    found = []
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        name = f"{prefix}{item.name}"
        if dataclasses.is_dataclass(value):
            found += non_finite_fields(value, f"{name}.")
        else:
            values = value if isinstance(value, tuple | list) else (value,)
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                found.append(name)
    return found


def to_dict(config: Any) -> dict[str, Any]:
    """Serialise a (nested) config dataclass to plain JSON-compatible data (``None`` kept)."""
    return {field.name: _plain(getattr(config, field.name)) for field in dataclasses.fields(config)}


def _toml_data(config: Any) -> dict[str, Any]:
    """Like :func:`to_dict` for TOML, which has no null: a ``None`` value is written as the
    field's ``metadata["toml_none"]`` spelling when it has one (e.g. ``"random"``), else left out
    (so the field's default, which must then be ``None``, applies on reading)."""
    result: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is None:
            if "toml_none" in field.metadata:
                result[field.name] = field.metadata["toml_none"]
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            result[field.name] = _toml_data(value)
        else:
            result[field.name] = _plain(value)
    return result


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def load_toml(cls: type[T], path: str | Path) -> T:
    """Load a config of type ``cls`` from a TOML file, strictly."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: config file not found") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from error
    return from_dict(cls, data, where=str(path))


def apply_overrides(config: T, overrides: Sequence[str]) -> T:
    """Return ``config`` with ``section.key=value`` overrides applied (values typed by field).

    Raises:
        ConfigError: for a malformed override, an unknown key or an unconvertible value.
    """
    data = to_dict(config)
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {override!r} is not of the form section.key=value")
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {override!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = _parse_override_value(raw.strip())
    return from_dict(type(config), data)


def dumps_json(config: Any) -> str:
    """The config as pretty JSON (used inside checkpoints and run folders)."""
    return json.dumps(to_dict(config), indent=2, sort_keys=True)


def dumps_toml(config: Any) -> str:
    """The config as TOML text that :func:`load_toml` reads back to an equal config."""
    data = _toml_data(config)
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    lines = [f"{k} = {_toml_value(v)}" for k, v in scalars.items()]
    lines += _toml_tables(tables, prefix="")
    return "\n".join(lines).strip() + "\n"


def _toml_tables(tables: dict[str, Any], prefix: str) -> list[str]:
    lines: list[str] = []
    for name, table in tables.items():
        full = f"{prefix}{name}"
        lines.append(f"\n[{full}]")
        nested = {}
        for key, value in table.items():
            if isinstance(value, dict):
                nested[key] = value
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        lines += _toml_tables(nested, prefix=f"{full}.")
    return lines


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} as TOML")


def _parse_override_value(raw: str) -> Any:
    """Parse an override value: TOML syntax when it parses (numbers, bools, lists), else a string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            items = [_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_type = args[0] if args else Any
            items = [_convert(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        if dataclasses.is_dataclass(value):
            return value
        return from_dict(hint, value, where=where)
    return _convert_scalar(value, hint, where)


def _convert_scalar(value: Any, hint: Any, where: str) -> Any:
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError as error:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from error
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from error
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    return value
