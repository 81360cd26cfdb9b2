"""Strict YAML loading that remembers where every key came from.

PyYAML keeps the last of two duplicate keys without a word and reports tabs with a long
scanner trace. Profiles are edited by hand, so this loader rejects duplicate keys naming
both lines, turns syntax errors into `file:line:column: message`, and returns, beside the
data, the line of every mapping key so that validation errors can point at it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpctl.errors import ConfigError

KeyPath = tuple[str | int, ...]


class LocatedData:
    """Parsed YAML plus the 1-based line of every key path (`("gitlab", "url")` → 12)."""

    def __init__(self, data: Any, lines: dict[KeyPath, int], path: Path) -> None:
        self.data = data
        self.lines = lines
        self.path = path

    def line_of(self, key_path: KeyPath) -> int | None:
        while key_path:
            if key_path in self.lines:
                return self.lines[key_path]
            key_path = key_path[:-1]
        return None

    def where(self, key_path: KeyPath) -> str:
        line = self.line_of(key_path)
        return f"{self.path}:{line}" if line else str(self.path)


def load_yaml(path: Path, text: str | None = None) -> LocatedData:
    """Parse one YAML document with safe constructors only."""
    import yaml

    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"cannot read {path}: {error.strerror}") from error
        except UnicodeDecodeError as error:
            raise ConfigError(f"{path}: not UTF-8 text ({error.reason})") from error

    _reject_tab_indentation(path, text)
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        raise ConfigError(_describe_yaml_error(path, error), hint="fix the YAML syntax at that line") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from error
    finally:
        loader.dispose()

    lines: dict[KeyPath, int] = {}
    if node is None:
        return LocatedData({}, lines, path)

    data = _convert(node, (), lines, path, yaml.constructor.SafeConstructor())
    return LocatedData(data, lines, path)


def _reject_tab_indentation(path: Path, text: str) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip(" ")
        if stripped.startswith("\t"):
            column = len(line) - len(stripped) + 1
            raise ConfigError(
                f"{path}:{number}:{column}: tab characters are not allowed for indentation",
                hint="indent with spaces",
            )


def _describe_yaml_error(path: Path, error: Any) -> str:
    mark = error.problem_mark or error.context_mark
    problem = error.problem or error.context or "invalid YAML"
    if mark is None:
        return f"{path}: {problem}"
    return f"{path}:{mark.line + 1}:{mark.column + 1}: {problem}"


def _convert(node: Any, key_path: KeyPath, lines: dict[KeyPath, int], path: Path, constructor: Any) -> Any:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return _convert_mapping(node, key_path, lines, path, constructor)

    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[key_path + (index,)] = item.start_mark.line + 1
            items.append(_convert(item, key_path + (index,), lines, path, constructor))
        return items

    try:
        return constructor.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as error:
        raise ConfigError(_describe_yaml_error(path, error)) from error


def _convert_mapping(node: Any, key_path: KeyPath, lines: dict[KeyPath, int], path: Path, constructor: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    first_seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if key_node.tag == "tag:yaml.org,2002:merge":
            raise ConfigError(f"{path}:{line}: merge keys ('<<') are not supported in helpctl files")

        key = _convert(key_node, key_path, lines, path, constructor)
        if not isinstance(key, str):
            key = str(key)

        if key in first_seen:
            raise ConfigError(
                f"{path}:{line}: duplicate key {key!r} (first defined on line {first_seen[key]})",
                hint="keep one of the two entries",
            )

        first_seen[key] = line
        lines[key_path + (key,)] = line
        result[key] = _convert(value_node, key_path + (key,), lines, path, constructor)
    return result
