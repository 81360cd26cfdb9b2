"""Locations of the files helpctl keeps.

`HELPCTL_HOME` moves everything (configuration, cases, caches, logs) under one folder;
without it the platform's usual folders are used (platformdirs). Every folder that may
hold case data or secrets is created private to the user (0700).
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "helpctl"
HOME_ENV = "HELPCTL_HOME"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600

# The profiles shipped with helpctl sit at the top of the source tree.
SHIPPED_PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"


def _home() -> Path | None:
    value = os.environ.get(HOME_ENV, "").strip()
    return Path(value).expanduser() if value else None


def config_dir() -> Path:
    home = _home()
    if home is not None:
        return home / "config"

    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    home = _home()
    if home is not None:
        return home / "data"

    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME))


def cache_dir() -> Path:
    home = _home()
    if home is not None:
        return home / "cache"

    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME))


def log_dir() -> Path:
    home = _home()
    if home is not None:
        return home / "logs"

    import platformdirs

    return Path(platformdirs.user_log_dir(APP_NAME))


def cases_dir() -> Path:
    override = os.environ.get("HELPCTL_CASES_DIR", "").strip()
    if override:
        return Path(override).expanduser()

    return data_dir() / "cases"


def user_profiles_dir() -> Path:
    return config_dir() / "profiles"


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) and make sure the leaf is 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    if (path.stat().st_mode & 0o777) != PRIVATE_DIR_MODE:
        os.chmod(path, PRIVATE_DIR_MODE)
    return path
