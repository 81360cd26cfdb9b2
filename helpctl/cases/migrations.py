"""Upgrade case records written by older versions of helpctl.

Each entry of MIGRATIONS turns version N into N + 1. A record from a newer helpctl is
refused instead of being rewritten with fields lost.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpctl.cases.model import SCHEMA_VERSION
from helpctl.errors import HelpctlError

MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def migrate(data: dict[str, Any], path: Path) -> dict[str, Any]:
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or version < 1:
        raise HelpctlError(f"{path}: invalid schema_version {version!r}")
    if version > SCHEMA_VERSION:
        raise HelpctlError(
            f"{path}: written by a newer helpctl (case format {version}, this one reads up to {SCHEMA_VERSION})",
            hint="upgrade helpctl",
        )

    while version < SCHEMA_VERSION:
        data = MIGRATIONS[version](data)
        version += 1
        data["schema_version"] = version
    return data
