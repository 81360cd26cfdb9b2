"""Build typed settings (dataclasses) from parsed YAML, naming file and line on every error.

Supported field types: str, int, float, bool, Any, Literal[...], list[T], dict[str, T],
T | None and nested dataclasses. Unknown keys are errors with a "did you mean" hint, since a
misspelt key that is silently ignored is how issues end up in the wrong project.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, get_args, get_origin

from helpctl.config.yamlfile import KeyPath, LocatedData
from helpctl.errors import ConfigError

_HINTS_CACHE: dict[type, dict[str, Any]] = {}


def build(cls: type, source: LocatedData, data: Any = None, key_path: KeyPath = ()) -> Any:
    """Validate `data` (default: the whole file) into an instance of the dataclass `cls`."""
    value = source.data if data is None and not key_path else data
    return _build_value(cls, value, source, key_path)


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS_CACHE:
        _HINTS_CACHE[cls] = typing.get_type_hints(cls)
    return _HINTS_CACHE[cls]


def _dotted(key_path: KeyPath) -> str:
    text = ""
    for part in key_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def _fail(source: LocatedData, key_path: KeyPath, problem: str, hint: str | None = None) -> ConfigError:
    return ConfigError(f"{source.where(key_path)}: {_dotted(key_path)}: {problem}", hint=hint)


def _build_dataclass(cls: type, value: Any, source: LocatedData, key_path: KeyPath) -> Any:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _fail(source, key_path, f"expected a mapping, got {_type_name(value)}")

    hints = _hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    yaml_names = {name.replace("_", "-"): name for name in fields}
    arguments: dict[str, Any] = {}

    for key, item in value.items():
        name = key if key in fields else yaml_names.get(key)
        if name is None:
            suggestion = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"did you mean '{suggestion[0]}'?" if suggestion else f"known keys: {', '.join(sorted(fields))}"
            raise _fail(source, key_path + (key,), "unknown key", hint=hint)
        arguments[name] = _build_value(hints[name], item, source, key_path + (key,))

    for name, field in fields.items():
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        if required and name not in arguments:
            raise _fail(source, key_path + (name,), "missing required key", hint=f"add '{name}:' to this section")

    instance = cls(**arguments)
    validate = getattr(instance, "validate", None)
    if validate is not None:
        problem = validate()
        if problem:
            raise _fail(source, key_path, problem)
    return instance


def _build_value(annotation: Any, value: Any, source: LocatedData, key_path: KeyPath) -> Any:
    origin = get_origin(annotation)

    if annotation is Any:
        return value

    if dataclasses.is_dataclass(annotation):
        return _build_dataclass(annotation, value, source, key_path)

    if origin in (typing.Union, types.UnionType):
        options = [option for option in get_args(annotation) if option is not type(None)]
        if value is None:
            return None
        return _build_value(options[0], value, source, key_path)

    if origin is Literal:
        allowed = get_args(annotation)
        if value not in allowed:
            raise _fail(source, key_path, f"invalid value {value!r}", hint=f"use one of: {', '.join(map(str, allowed))}")
        return value

    if origin is list:
        (item_type,) = get_args(annotation)
        if not isinstance(value, list):
            raise _fail(source, key_path, f"expected a list, got {_type_name(value)}")
        return [_build_value(item_type, item, source, key_path + (index,)) for index, item in enumerate(value)]

    if origin is dict:
        _, item_type = get_args(annotation)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _fail(source, key_path, f"expected a mapping, got {_type_name(value)}")
        return {str(key): _build_value(item_type, item, source, key_path + (key,)) for key, item in value.items()}

    return _build_scalar(annotation, value, source, key_path)


def _build_scalar(annotation: Any, value: Any, source: LocatedData, key_path: KeyPath) -> Any:
    if annotation is bool:
        if not isinstance(value, bool):
            raise _fail(source, key_path, f"expected true or false, got {value!r}")
        return value

    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(source, key_path, f"expected a whole number, got {value!r}")
        return value

    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(source, key_path, f"expected a number, got {value!r}")
        return float(value)

    if annotation is str:
        if isinstance(value, (dict, list)) or value is None:
            raise _fail(source, key_path, f"expected text, got {_type_name(value)}")
        return str(value)

    raise TypeError(f"unsupported settings type {annotation!r}")


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
