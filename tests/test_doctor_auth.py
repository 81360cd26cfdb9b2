"""`doctor` and `auth` against the stand-ins: readiness checks and token storage."""

from __future__ import annotations

import io
import json
import os
import stat
import sys

import keyring
import keyring.backend
import pytest

from helpctl import credentials
from helpctl.cli import main
from helpctl.sandbox import Sandbox


class MemoryKeyring(keyring.backend.KeyringBackend):
    """An in-memory backend, so tests never touch the machine's keyring."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.values.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.values[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.values.pop((service, username), None)


@pytest.fixture()
def sandbox(monkeypatch):
    with Sandbox(services=["platform", "gitlab", "mandrill"]) as running:
        for name, value in running.environment().items():
            monkeypatch.setenv(name, value)
        yield running


@pytest.fixture()
def memory_keyring():
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def login(token: str, *extra: str) -> int:
    saved = sys.stdin
    sys.stdin = io.StringIO(token + "\n")
    try:
        return main(["auth", "login", "platform", "--with-token", *extra])
    finally:
        sys.stdin = saved


def test_doctor_ready_on_sandbox(capsys, sandbox):
    assert main(["--json", "doctor"]) == 0
    checks = json.loads(capsys.readouterr().out)
    by_name = {(check["service"], check["name"]): check for check in checks}

    assert by_name[("platform", "reachable and authenticated")]["ok"]
    assert by_name[("gitlab", "labels")]["ok"]
    assert by_name[("mandrill", "reachable and authenticated")]["ok"]
    assert by_name[("logs", "credentials")]["detail"].startswith("the sandbox's fixed keys")


def test_doctor_names_the_fix(capsys, sandbox, monkeypatch, isolated_environment):
    profiles = isolated_environment / "config" / "profiles"
    profiles.mkdir(parents=True)
    (profiles / "broken.yaml").write_text("extends: sandbox\nlabels:\n  bug: [type::bug, missing-label]\nrouting:\n  bug_triager: ''\n")
    monkeypatch.setenv("HELPCTL_PROFILE", "broken")

    assert main(["doctor"]) == 1
    captured = capsys.readouterr()
    assert "missing-label" in captured.out
    assert "routing.bug_triager not set" in captured.out
    assert "2 of" in captured.err


def test_doctor_service_down(capsys, sandbox, monkeypatch):
    monkeypatch.setenv("HELPCTL_MANDRILL_URL", "http://127.0.0.1:9/api/1.0")
    assert main(["--json", "doctor"]) == 1
    checks = json.loads(capsys.readouterr().out)
    failed = [check for check in checks if not check["ok"]]
    assert [check["service"] for check in failed] == ["mandrill"]
    assert "127.0.0.1:9" in failed[0]["detail"]


def test_login_checks_then_stores_in_keyring(capsys, sandbox, memory_keyring):
    assert login("sandbox-platform-token") == 0
    assert memory_keyring.values[("helpctl", "sandbox:platform")] == "sandbox-platform-token"

    main(["--json", "auth", "status"])
    status = json.loads(capsys.readouterr().out)
    sources = {row["service"]: row["source"] for row in status["services"]}
    assert sources["platform"] == "keyring"


def test_login_rejects_bad_token(capsys, sandbox, memory_keyring):
    assert login("not-a-valid-token-123") == 4
    assert "rejected the token" in capsys.readouterr().err
    assert memory_keyring.values == {}


def test_login_without_keyring_names_alternatives(capsys, sandbox, monkeypatch):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    keyring.set_keyring(keyring.backends.fail.Keyring())
    try:
        assert login("sandbox-platform-token") == 1
    finally:
        keyring.core._keyring_backend = None
    err = capsys.readouterr().err
    assert "no OS keyring backend" in err
    assert "HELPCTL_PLATFORM_TOKEN" in err
    assert "--store file" in err
    assert "sandbox-platform-token" not in err


def test_login_to_opt_in_file(capsys, sandbox):
    assert login("sandbox-platform-token", "--store", "file") == 0
    path = credentials.secrets_file("sandbox", "platform")

    assert path.read_text() == "sandbox-platform-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert main(["auth", "logout", "platform"]) == 0
    assert not path.exists()


def test_environment_token_wins(monkeypatch, memory_keyring):
    memory_keyring.values[("helpctl", "sandbox:platform")] = "from-keyring-value"
    monkeypatch.setenv("HELPCTL_PLATFORM_TOKEN", "from-environment-value")

    found = credentials.find("sandbox", "platform", "sandbox-platform-token")
    assert found.value == "from-environment-value"
    assert found.source == "environment (HELPCTL_PLATFORM_TOKEN)"


def test_mask_hides_registered_secrets():
    credentials.register_secret("glpat-abcdefghijklmnop")
    assert credentials.mask("token glpat-abcdefghijklmnop failed") == "token *** failed"
    assert credentials.mask("Authorization: Bearer abcdefghijklmnopqrstuvwxyz") == "Authorization: Bearer ***"
