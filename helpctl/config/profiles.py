"""Find, merge and validate profiles.

A profile is looked up by name first among the user's profiles (`<config>/profiles/`) and
then among the ones shipped with helpctl. `extends: NAME` starts from another profile and
overrides it key by key. Precedence for a setting: command-line option, then environment
variable (`HELPCTL_<SECTION>_<KEY>`, such as `HELPCTL_PLATFORM_URL`), then profile, then the
default in `settings.py`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from helpctl import paths
from helpctl.config.model import build
from helpctl.config.settings import Profile
from helpctl.config.yamlfile import LocatedData, load_yaml
from helpctl.errors import ConfigError

PROFILE_ENV = "HELPCTL_PROFILE"
DEFAULT_PROFILE = "sandbox"
LABEL_CLASSES = ("incident", "bug", "feature", "answered")


def active_profile_name(option: str | None = None) -> str:
    """Resolve the profile name: option, then HELPCTL_PROFILE, then the default."""
    return option or os.environ.get(PROFILE_ENV, "").strip() or DEFAULT_PROFILE


def profile_paths() -> dict[str, Path]:
    """Every available profile by name; a user's profile hides a shipped one of that name."""
    found: dict[str, Path] = {}
    for folder in (paths.SHIPPED_PROFILES_DIR, paths.user_profiles_dir()):
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                found[path.stem] = path
    return found


def load_profile(name: str | None = None) -> Profile:
    name = active_profile_name(name)
    data, source = _merged_data(name, seen=())
    data = _apply_environment(data)
    profile: Profile = build(Profile, source, data)
    profile.name = name
    profile.source = str(source.path)
    profile.labels = normalise_label_map(profile.labels, source)
    _check_rules(profile, source)
    return profile


def _merged_data(name: str, seen: tuple[str, ...]) -> tuple[dict[str, Any], LocatedData]:
    available = profile_paths()
    if name not in available:
        known = ", ".join(sorted(available)) or "none"
        raise ConfigError(
            f"profile {name!r} not found (available: {known})",
            hint=f"create {paths.user_profiles_dir() / (name + '.yaml')} or pick one with --profile",
        )

    if name in seen:
        raise ConfigError(f"profile {name!r} extends itself through {' -> '.join(seen + (name,))}")

    source = load_yaml(available[name])
    if not isinstance(source.data, dict):
        raise ConfigError(f"{source.path}: a profile must be a mapping of sections")

    base_name = source.data.get("extends")
    if not base_name:
        return dict(source.data), source

    try:
        base, _ = _merged_data(str(base_name), seen + (name,))
    except ConfigError as error:
        raise ConfigError(f"{source.where(('extends',))}: extends: {error.message}", hint=error.hint) from error
    return _deep_merge(base, source.data), source


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _apply_environment(data: dict[str, Any]) -> dict[str, Any]:
    """Override scalar settings from HELPCTL_<SECTION>_<KEY> variables."""
    data = dict(data)
    for section_name, section_type in _SECTION_TYPES.items():
        defaults = section_type()
        for sub in dataclasses.fields(section_type):
            variable = f"HELPCTL_{section_name}_{sub.name}".upper()
            raw = os.environ.get(variable)
            default = getattr(defaults, sub.name)
            if raw is None or sub.name == "fixed_token" or dataclasses.is_dataclass(default):
                continue
            section = dict(data.get(section_name) or {})
            section[sub.name] = _parse_environment_value(raw, default)
            data[section_name] = section
    return data


def _parse_environment_value(raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            return raw
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            return raw
    return raw


def _section_types() -> dict[str, type]:
    import typing

    hints = typing.get_type_hints(Profile)
    return {
        name: hint
        for name, hint in hints.items()
        if dataclasses.is_dataclass(hint) and name in ("platform", "gitlab", "engineer", "logs", "mandrill", "bugsnag", "mixpanel", "logrocket", "notify", "access")
    }


_SECTION_TYPES = _section_types()


def normalise_labels(value: Any, where: str) -> list[str]:
    """Turn a YAML list or a comma-separated string into a list of label names.

    GitLab takes labels as one comma-separated string, so a name that contains a comma
    would silently become two labels; such names are rejected.
    """
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list):
        items = []
        for item in value:
            if not isinstance(item, str):
                raise ConfigError(f"{where}: label {item!r} is not text")
            if "," in item:
                raise ConfigError(
                    f"{where}: label {item!r} contains a comma, which GitLab would split into two labels",
                    hint="rename the label without a comma",
                )
            items.append(item)
    else:
        raise ConfigError(f"{where}: labels must be a list or a comma-separated string")
    return [item.strip() for item in items if item.strip()]


def normalise_label_map(labels: dict[str, Any], source: LocatedData) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {label: [] for label in LABEL_CLASSES}
    for key, value in labels.items():
        where = source.where(("labels", key))
        if key not in LABEL_CLASSES:
            raise ConfigError(f"{where}: labels.{key}: unknown class", hint=f"use one of: {', '.join(LABEL_CLASSES)}")
        result[key] = normalise_labels(value, where)
    return result


def _check_rules(profile: Profile, source: LocatedData) -> None:
    from helpctl.classify import compile_condition

    for index, rule in enumerate(profile.classify.rules):
        try:
            compile_condition(rule.when)
        except ValueError as error:
            where = source.where(("classify", "rules", index, "when"))
            raise ConfigError(f"{where}: rule {rule.name!r}: {error}", hint="see docs/rules.md for the rule grammar") from error
