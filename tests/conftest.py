"""Shared test set-up: every test runs with its own helpctl home and no real credentials."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Variables that could aim a test at a real service or leak a real credential.
_SCRUBBED_PREFIXES = ("HELPCTL_", "AWS_", "PYTHON_KEYRING_BACKEND", "NO_COLOR", "FORCE_COLOR")


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith(_SCRUBBED_PREFIXES):
            monkeypatch.delenv(name, raising=False)

    home = tmp_path / "helpctl-home"
    monkeypatch.setenv("HELPCTL_HOME", str(home))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    yield home


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """CLI runs in the test process configure logging; undo it so tests stay independent."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), logging.getLogger("helpctl").level)
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    logging.getLogger("helpctl").setLevel(saved[2])
