"""The audit log: hash chain, anchor, and detection of every kind of tampering."""

from __future__ import annotations

import json
import os
import stat

import pytest

from helpctl.audit import AuditLog
from helpctl.cli import main


@pytest.fixture()
def log(tmp_path, monkeypatch):
    monkeypatch.setenv("HELPCTL_AUDIT_KEY", "test-anchor-key-0123456789")
    audit = AuditLog(tmp_path / "audit")
    for number in range(5):
        audit.append(
            "access.revoke",
            operator="support.sandbox@fluidattacks.com",
            target={"email": f"user{number}@kiwicorp.co", "group": "kiwiapp"},
            outcome="done",
            approval={"by": "ana.gomez@kiwicorp.co", "ref": "261204-abc123"},
            request_id=f"op-{number}",
        )
    return audit


def lines(audit: AuditLog) -> list[str]:
    return audit.path.read_text().splitlines(keepends=True)


def test_intact_log_verifies(log):
    result = log.verify()
    assert result.ok
    assert result.entries == 5
    assert result.signed


def test_files_are_private(log):
    assert stat.S_IMODE(os.stat(log.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(log.anchor_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(log.folder).st_mode) == 0o700


def test_edited_entry_named(log):
    content = lines(log)
    content[2] = content[2].replace("user2@kiwicorp.co", "someone@kiwicorp.co")
    log.path.write_text("".join(content))

    result = log.verify()
    assert result.problems[0].line == 3
    assert "edited" in result.problems[0].message


def test_deleted_entry_named(log):
    content = lines(log)
    del content[1]
    log.path.write_text("".join(content))

    result = log.verify()
    assert result.problems[0].line == 2
    assert "chain is broken" in result.problems[0].message


def test_inserted_entry_named(log):
    content = lines(log)
    forged = json.loads(content[1])
    content.insert(2, json.dumps(forged) + "\n")
    log.path.write_text("".join(content))

    assert log.verify().problems[0].line == 3


def test_reordered_entries_named(log):
    content = lines(log)
    content[1], content[2] = content[2], content[1]
    log.path.write_text("".join(content))

    assert log.verify().problems[0].line == 2


def test_cut_tail_detected(log):
    log.path.write_text("".join(lines(log)[:3]))

    result = log.verify()
    assert not result.ok
    assert "cut from the end" in result.problems[0].message
    assert result.problems[0].line == 4


def test_rewritten_anchor_detected(log):
    log.path.write_text("".join(lines(log)[:3]))
    anchor = json.loads(log.anchor_path.read_text())
    third = json.loads(lines(log)[2])
    anchor.update(seq=3, hash=third["hash"])
    log.anchor_path.write_text(json.dumps(anchor))

    result = log.verify()
    assert "signature does not match" in result.problems[0].message


def test_appended_outside_helpctl_detected(log):
    content = lines(log)
    log.path.write_text("".join(content) + content[-1])

    assert not log.verify().ok


def test_unsigned_anchor_reported(tmp_path, monkeypatch):
    audit = AuditLog(tmp_path / "unsigned")
    audit.append("issue.filed", operator="x", target={"case": "1"}, outcome="created")

    result = audit.verify()
    assert result.ok
    assert not result.signed


def test_cli_verify_and_log(capsys, monkeypatch, isolated_environment):
    monkeypatch.setenv("HELPCTL_AUDIT_KEY", "cli-key-0123456789")
    audit = AuditLog()
    audit.append("access.revoke", operator="op@x.co", target={"email": "a@kiwicorp.co", "group": "kiwiapp"}, outcome="done")
    audit.append("issue.filed", operator="op@x.co", target={"case": "261204-abc123"}, outcome="created")

    assert main(["audit", "verify"]) == 0
    assert "2 entries verified" in capsys.readouterr().err

    assert main(["--json", "audit", "log", "--group", "kiwiapp"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["action"] for row in rows] == ["access.revoke"]

    audit.path.write_text(audit.path.read_text().replace("a@kiwicorp.co", "b@kiwicorp.co"))
    assert main(["audit", "verify"]) == 1
    assert f"{audit.path}:1" in capsys.readouterr().err
