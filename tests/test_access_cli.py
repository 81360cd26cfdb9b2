"""`helpctl access ...` in-process against the platform stand-in: output, exit codes, the whole cycle."""

from __future__ import annotations

import csv
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_access_helpers import people_in_groups

from helpctl.access.plan import PlanFile
from helpctl.audit import AuditLog
from helpctl.cases.store import CaseStore
from helpctl.cli import main
from helpctl.sandbox import Sandbox

DATA = Path(__file__).parent / "data" / "csv"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with Sandbox(services=["platform"], platform={"bigcorp": True}) as running:
        for name, value in running.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("HELPCTL_ACCESS_SETTLE_DELAY", "0")
        yield running


@pytest.fixture
def service(sandbox: Sandbox) -> Any:
    return sandbox.service("platform")


def run(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    code = main(list(arguments))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, Any]:
    code, out, err = run(capsys, "--json", *arguments)
    assert out, err
    return code, json.loads(out)


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Email", "Group"])
        writer.writerows(rows)
    return path


# ----- show -----


def test_show_group_json(capsys: pytest.CaptureFixture[str], sandbox: Sandbox) -> None:
    code, data = run_json(capsys, "access", "show", "--group", "kiwiapp")
    members = {row["email"]: row for row in data["members"]}

    assert code == 0
    assert members["ana.gomez@kiwicorp.co"]["role_name"] == "Group Manager"
    assert members["ana.gomez@kiwicorp.co"]["role_enum"] == "USER_MANAGER"
    assert members["carlos.ruiz@kiwicorp.co"]["invitation_state"] == "PENDING"
    assert 8.9 < members["carlos.ruiz@kiwicorp.co"]["pending_days"] < 9.1
    assert members["nico.paez@kiwicorp.co"]["last_login"] == "-"


def test_show_organization_text(capsys: pytest.CaptureFixture[str], sandbox: Sandbox) -> None:
    code, out, _ = run(capsys, "access", "show", "--org", "kiwicorp", "--email", "Ana.Gomez@kiwicorp.co")

    assert code == 0
    assert "Organization Manager (USER_MANAGER)" in out
    assert "kiwiapp, kiwipay" in out


def test_show_non_member_fails(capsys: pytest.CaptureFixture[str], sandbox: Sandbox) -> None:
    code, _, err = run(capsys, "access", "show", "--group", "kiwiapp", "--email", "pedro.rios@kiwicorp.co")

    assert code == 1
    assert "pedro.rios@kiwicorp.co is not a member of group kiwiapp" in err


def test_show_needs_one_target(capsys: pytest.CaptureFixture[str], sandbox: Sandbox) -> None:
    code, _, err = run(capsys, "access", "show")

    assert code == 2
    assert "give either --group or --org" in err


# ----- single changes -----


def test_unapproved_change_exit_5(capsys: pytest.CaptureFixture[str], service: Any) -> None:
    code, out, err = run(capsys, "access", "grant", "--group", "bigcorp001", "--email", "New.Dev@BigCorp.example", "--role", "User")

    assert code == 5
    assert "the change needs an approval, so nothing was changed" in err
    plans = list((Path(os.environ["HELPCTL_HOME"]) / "data" / "access").glob("plan-*.json"))
    assert len(plans) == 1
    assert stat.S_IMODE(os.stat(plans[0]).st_mode) == 0o600
    assert "invites new.dev@bigcorp.example to group bigcorp001 as User" in out
    assert service.access.records() == []


def test_approved_single_revoke(capsys: pytest.CaptureFixture[str], service: Any) -> None:
    code, out, err = run(
        capsys, "access", "revoke", "--group", "kiwipay", "--email", "luisa.fernandez@kiwicorp.co",
        "--approved-by", "Ana Gómez", "--ref", "Ticket 12: Luisa left the payments team", "--requester", "ana.gomez@kiwicorp.co",
    )

    assert code == 0, err
    assert "1 applied" in out
    assert "requester: ana.gomez@kiwicorp.co manages every group and organization of the plan (verified)" in out
    assert "luisa.fernandez@kiwicorp.co" not in service.story.groups["kiwipay"].members
    case = CaseStore().load(CaseStore().ids()[0])
    assert case.kind == "access-request"
    assert [event.event for event in case.timeline] == ["opened", "access-approved", "access-applied"]
    actions = [entry["action"] for entry in AuditLog().entries()]
    assert actions == ["access.approve", "access.revoke"]


def test_dangerous_needs_yes(capsys: pytest.CaptureFixture[str], service: Any) -> None:
    arguments = ("access", "revoke", "--group", "kiwipay", "--email", "pedro.rios@kiwicorp.co", "--approved-by", "Ana Gómez", "--ref", "ticket 5")

    code, _, err = run(capsys, *arguments)

    assert code == 2
    assert "confirmation needed" in err
    assert service.access.records() == []


def test_approved_by_needs_ref(capsys: pytest.CaptureFixture[str], sandbox: Sandbox) -> None:
    code, _, err = run(capsys, "access", "revoke", "--group", "kiwipay", "--email", "pedro.rios@kiwicorp.co", "--approved-by", "Ana")

    assert code == 2
    assert "--approved-by needs --ref" in err


def test_operator_cannot_approve(capsys: pytest.CaptureFixture[str], service: Any) -> None:
    code, _, err = run(
        capsys, "access", "revoke", "--group", "kiwipay", "--email", "sofia.lopez@kiwicorp.co",
        "--approved-by", "Sandra Soporte", "--ref", "ticket 6", "--yes",
    )

    assert code == 5
    assert "an approver must differ from the person who applies the plan" in err
    assert service.access.records() == []


def test_role_by_display_name(capsys: pytest.CaptureFixture[str], service: Any) -> None:
    (email, group), = people_in_groups(service, 1)

    code, out, err = run(
        capsys, "access", "set-role", "--group", group, "--email", email, "--role", "vulnerability manager",
        "--approved-by", "Ana Gómez", "--ref", "ticket 7",
    )

    assert code == 0, err
    assert service.story.groups[group].members[email].role == "vulnerability_manager"


def test_refused_change_exit_3(capsys: pytest.CaptureFixture[str], service: Any) -> None:
    code, out, err = run(
        capsys, "access", "grant", "--group", "kiwiapp", "--email", "new.dev@kiwicorp.co", "--role", "User",
        "--approved-by", "Ana Gómez", "--ref", "ticket 8",
    )

    assert code == 3
    assert "Invalid role or not enough permissions to grant role: user" in out
    assert "is not complete" in err


def test_already_true_nothing_to_do(capsys: pytest.CaptureFixture[str], service: Any) -> None:
    code, out, err = run(capsys, "access", "revoke", "--group", "kiwiapp", "--email", "pedro.rios@kiwicorp.co")

    assert code == 0
    assert "pedro.rios@kiwicorp.co is not a member of group kiwiapp" in out
    assert "nothing to do" in err


def test_dry_run_writes_nothing(capsys: pytest.CaptureFixture[str], service: Any) -> None:
    code, data = run_json(capsys, "access", "revoke", "--group", "kiwipay", "--email", "pedro.rios@kiwicorp.co", "--dry-run")

    assert code == 0
    assert data["plan"] is None
    assert data["operations"][0]["flags"] == ["leaves_organization", "leaves_platform"]
    assert not (Path(os.environ["HELPCTL_HOME"]) / "data" / "access").exists()


# ----- bulk plans -----


def test_bad_csv_lists_every_row(capsys: pytest.CaptureFixture[str], service: Any) -> None:
    code, _, err = run(capsys, "access", "plan", "--csv", str(DATA / "bad-rows.csv"), "--action", "set-role")
    lines = [line for line in err.splitlines() if line.startswith("warning: line")]

    assert code == 2
    assert [line.split(":")[1].strip() for line in lines] == ["line 3", "line 4", "line 5", "line 6", "line 7", "line 8", "line 9"]
    assert "role 'Admn' does not exist at group level" in lines[1]
    assert "group 'nosuchgroup' not found" in lines[6]
    assert "7 problems found, so nothing was planned" in err
    assert not (Path(os.environ["HELPCTL_HOME"]) / "data" / "access").exists()


def test_bad_csv_json_problems(capsys: pytest.CaptureFixture[str], service: Any) -> None:
    code, data = run_json(capsys, "access", "plan", "--csv", str(DATA / "missing-email.csv"), "--action", "revoke")

    assert code == 2
    assert data["problems"] == [{"line": 1, "message": "no email column (columns found: group); name one column 'email'"}]


def test_dirty_csv_planned(capsys: pytest.CaptureFixture[str], service: Any, tmp_path: Path) -> None:
    plan_path = tmp_path / "dirty.json"

    code, out, err = run(capsys, "access", "plan", "--csv", str(DATA / "dirty-rows.csv"), "--action", "revoke", "--group", "kiwiapp", "-o", str(plan_path))

    assert code == 0, err
    header = PlanFile(plan_path).header
    assert header["summary"]["operations"] == 3
    assert header["source"]["blank_rows"] == 3
    assert header["notes"] == ["3 blank row(s) skipped", "line 3 repeats line 2; kept once", "line 9 repeats line 6; kept once"]


def test_bulk_cycle_with_undo(capsys: pytest.CaptureFixture[str], service: Any, tmp_path: Path) -> None:
    pairs = people_in_groups(service, 30)
    source = write_csv(tmp_path / "leavers.csv", pairs)
    plan_path = tmp_path / "leavers.json"

    code, planned = run_json(capsys, "access", "plan", "--csv", str(source), "--action", "revoke", "--org", "bigcorp", "-o", str(plan_path))
    assert code == 0
    assert planned["header"]["policy"]["second_approver_reasons"] == ["it holds 30 operations, more than 25 (access.second_approver_above)"]

    code, out, _ = run(capsys, "access", "plan", "show", str(plan_path))
    assert code == 0
    assert "Plan " in out
    assert "30 operation(s)" in out

    code, _, err = run(capsys, "access", "approve", str(plan_path), "--by", "Ana Gómez", "--ref", "HR list 2025-03")
    assert code == 5
    assert "requires a second approver" in err
    code, _, err = run(capsys, "access", "approve", str(plan_path), "--by", "Ana Gómez", "--second-approver", "Jorge Mesa", "--ref", "HR list 2025-03")
    assert code == 0, err

    code, report = run_json(capsys, "access", "apply", str(plan_path), "--yes")
    assert code == 0
    assert report["applied"] == 30
    assert report["complete"] is True
    assert all(email not in service.story.groups[group].members for email, group in pairs)

    code, undo = run_json(capsys, "access", "undo", str(plan_path))
    assert code == 0
    assert undo["header"]["kind"] == "undo"
    assert undo["header"]["summary"]["operations"] == 30
    undo_path = Path(undo["plan"])
    code, _, err = run(capsys, "access", "approve", str(undo_path), "--by", "Ana Gómez", "--second-approver", "Jorge Mesa", "--ref", planned["header"]["id"])
    assert code == 0, err
    code, report = run_json(capsys, "access", "apply", str(undo_path), "--yes")
    assert code == 0
    assert all(service.story.groups[group].members[email].invitation_state == "PENDING" for email, group in pairs)


def test_plan_show_detects_edit(capsys: pytest.CaptureFixture[str], service: Any, tmp_path: Path) -> None:
    plan_path = tmp_path / "edited.json"
    run(capsys, "access", "revoke", "--group", "kiwipay", "--email", "pedro.rios@kiwicorp.co", "-o", str(plan_path))
    plan_path.write_text(plan_path.read_text().replace("pedro.rios", "sofia.lopez"))

    code, data = run_json(capsys, "access", "plan", "show", str(plan_path))
    _, _, err = run(capsys, "access", "plan", "show", str(plan_path))

    assert code == 0
    assert data["content_matches_hash"] is False
    assert "it was edited, and apply will refuse it" in err


def test_request_email_failed_dkim(capsys: pytest.CaptureFixture[str], service: Any, tmp_path: Path) -> None:
    message = tmp_path / "request.eml"
    message.write_bytes(
        b"Authentication-Results: mx.fluidattacks.com; dkim=fail header.d=kiwicorp.co; spf=pass\r\n"
        b"From: Ana Gomez <ana.gomez@kiwicorp.co>\r\nTo: help@fluidattacks.com\r\n"
        b"Subject: Remove Pedro from kiwipay\r\nMessage-ID: <r1@kiwicorp.co>\r\n\r\nPlease remove pedro.rios@kiwicorp.co.\r\n"
    )
    plan_path = tmp_path / "mail.json"

    code, out, _ = run(capsys, "access", "revoke", "--group", "kiwipay", "--email", "sofia.lopez@kiwicorp.co", "--request-email", str(message), "-o", str(plan_path))
    assert code == 5
    assert "warning: the request e-mail failed authentication (dkim=fail)" in out

    code, _, err = run(capsys, "access", "approve", str(plan_path), "--by", "Jorge Mesa", "--ref", "mail from Ana")
    assert code == 5
    assert "the request is flagged" in err
    code, _, err = run(capsys, "access", "approve", str(plan_path), "--by", "Jorge Mesa", "--ref", "mail from Ana", "--override", "Ana confirmed by phone")
    assert code == 0, err
    assert "approved over a flag" in err
