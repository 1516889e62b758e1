"""Typed config loading: YAML into frozen dataclasses, every error named by its key path.

Sections are plain frozen dataclasses (schema.py); this module turns a YAML mapping into them
by reading their type hints, so a new key is one annotated field with a default and, where the
type alone is not enough, a `check` that turns the raw value into the typed one or raises
ValueError with what was expected. Errors are collected, not raised one by one: the admin fixes
a file in one round trip.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml

from sinkhole.errors import SinkholeError

T = TypeVar("T")


class ConfigError(SinkholeError):
    """The config cannot be used; `errors` lists every problem as 'key.path: message'."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


class _DurationMarker:
    """Marks a float field holding seconds, written in YAML as '2s', '500ms', '1h', '90d'."""


Duration = Annotated[float, _DurationMarker]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> float:
    """'2s' -> 2.0; a bare number means seconds; negative or unitless strings are rejected."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (like 2s, 500ms, 1h, 30d)")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration (like 2s, 500ms, 1h, 30d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def format_duration(seconds: float) -> str:
    """Inverse of parse_duration for printing the effective config."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(round(seconds * 1000))}ms"


def setting(default: Any = dataclasses.MISSING, *, check: Callable[[Any], Any] | None = None,
            secret: bool = False, factory: Callable[[], Any] | None = None,
            required: str = "") -> Any:
    """A config field: default, optional check (raw -> typed or ValueError), secret flag, and
    `required`: when set, the key must be present and this text says what it is for."""
    meta = {"check": check, "secret": secret, "required": required}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def build(cls: type[T], raw: Any, path: str, errors: list[str]) -> T:
    """Build section `cls` from `raw` (a mapping or None), appending problems to `errors`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.append(f"{path or 'config'}: expected a mapping, found {_kind(raw)}")
        return None  # type: ignore[return-value]
    hints = typing.get_type_hints(cls, include_extras=True)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in raw:
        if key not in names:
            errors.append(f"{_join(path, key)}: unknown key (known: {', '.join(sorted(names))})")
    values = {}
    complete = True
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in raw:
            if f.metadata.get("required"):
                errors.append(f"{_join(path, f.name)}: missing ({f.metadata['required']})")
                complete = False
            continue
        key_path = _join(path, f.name)
        before = len(errors)
        value = _convert(hints[f.name], raw[f.name], key_path, errors, f.metadata.get("check"))
        if len(errors) == before:
            values[f.name] = value
    if not complete:
        return None  # type: ignore[return-value]  # errors were recorded; nothing is built
    try:
        return cls(**values)
    except ValueError as err:  # cross-field checks in __post_init__ name their own key
        errors.append(f"{path}.{err}" if path else str(err))
        return None  # type: ignore[return-value]


def _convert(tp: Any, value: Any, path: str, errors: list[str],
             check: Callable[[Any], Any] | None) -> Any:
    if check is not None:
        try:
            return check(value)
        except ValueError as err:
            msg = str(err)
            # list/map checks report "[i]: why" or ".key: why" so the path reads like
            # upstreams[1]: ... or clients.names.10.0.0.1: ...
            errors.append(f"{path}{msg}" if msg[:1] in "[." else f"{path}: {msg}")
            return None
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extra = get_args(tp)
        if _DurationMarker in extra:
            return _checked(parse_duration, value, path, errors)
        return _convert(base, value, path, errors, None)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, path, errors, None)
    if origin in (list, tuple):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, found {_kind(value)}")
            return ()
        item = get_args(tp)[0]
        return tuple(_convert(item, v, f"{path}[{i}]", errors, None) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, found {_kind(value)}")
            return {}
        vt = get_args(tp)[1]
        return {str(k): _convert(vt, v, f"{path}.{k}", errors, None) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path, errors)
    return _scalar(tp, value, path, errors)


def _scalar(tp: Any, value: Any, path: str, errors: list[str]) -> Any:
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp)
    if ok is None:
        raise TypeError(f"unsupported config type {tp!r} at {path}")
    if not ok:
        errors.append(f"{path}: expected {tp.__name__}, found {_kind(value)} {value!r}")
        return None
    return float(value) if tp is float else value


def _checked(fn: Callable[[Any], Any], value: Any, path: str, errors: list[str]) -> Any:
    try:
        return fn(value)
    except ValueError as err:
        errors.append(f"{path}: {err}")
        return None


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "nothing"}.get(
        type(value), type(value).__name__)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file with safe_load; unreadable or invalid YAML is a ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([f"{path}: cannot read config: {err}"]) from err
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError([f"{path}: invalid YAML: {err}"]) from err


def to_plain(obj: Any, redact: bool = True) -> Any:
    """The effective config as plain data for printing; secrets shown as '<redacted>'."""
    if hasattr(obj, "display"):
        return obj.display(redact)
    if dataclasses.is_dataclass(obj):
        hints = typing.get_type_hints(type(obj), include_extras=True)
        out = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if redact and f.metadata.get("secret") and v:
                out[f.name] = redact_secret(v)
            elif isinstance(v, float) and _DurationMarker in get_args(hints[f.name]):
                out[f.name] = format_duration(v)
            else:
                out[f.name] = to_plain(v, redact)
        return out
    if isinstance(obj, list | tuple):
        return [to_plain(v, redact) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v, redact) for k, v in obj.items()}
    return obj


def redact_secret(value: Any) -> str:
    """Show where a secret URL points (scheme and host), never its path or token."""
    from urllib.parse import urlsplit
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        return f"{parts.scheme}://{parts.hostname}/<redacted>"
    return "<redacted>"
