"""The first-response report over a handful of generated cases."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import typer

from helpctl import cli
from helpctl.app import build_app
from helpctl.cases.model import Case, Event, Person
from helpctl.cases.store import CaseStore
from helpctl.commands import report as report_command
from helpctl.config.profiles import load_profile
from helpctl.errors import ExitCode, HelpctlError, UsageError
from helpctl.findings import isoformat
from helpctl.reports import cases_since, parse_day, sla_report

OFFICE = dt.timezone(dt.timedelta(hours=-5))
ENGINEER = "support.sandbox@fluidattacks.com"


def local(month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=OFFICE)


def make_case(case_id: str, organization: str | None, reported: dt.datetime, answered: dt.datetime | None = None, closed: dt.datetime | None = None) -> Case:
    timeline = [Event(isoformat(reported), ENGINEER, "opened", {"source": "typed"})]
    if answered:
        timeline.append(Event(isoformat(answered), ENGINEER, "notified", {"template": "received", "ok": True}))
    if closed:
        timeline.append(Event(isoformat(closed), ENGINEER, "closed", {"resolution": "duplicate"}))
    return Case(
        id=case_id,
        profile="sandbox",
        subject=f"Request {case_id}",
        requester=Person("ana.gomez@kiwicorp.co"),
        status="closed" if closed else "open",
        organization=organization,
        created_at=isoformat(reported),
        updated_at=timeline[-1].at,
        reported_at=isoformat(reported),
        timeline=timeline,
    )


def generated_cases() -> list[Case]:
    return [
        # kiwicorp: answered in 2 and 3 office hours, and once late after 24.
        make_case("261207-kiwi0a", "kiwicorp", local(12, 7, 8), answered=local(12, 7, 10)),
        make_case("261204-kiwi0b", "kiwicorp", local(12, 4, 18), answered=local(12, 7, 9)),
        make_case("261130-kiwi0c", "kiwicorp", local(11, 30, 8), answered=local(12, 2, 8)),
        # acme: unanswered past due, unanswered within target, closed without a message.
        make_case("261203-acme0d", "acme", local(12, 3, 7)),
        make_case("261207-acme0e", "acme", local(12, 7, 10)),
        make_case("261207-acme0f", "acme", local(12, 7, 9), closed=local(12, 7, 9, 30)),
        # Before the window.
        make_case("261120-old00g", "kiwicorp", local(11, 20, 9), answered=local(11, 20, 10)),
        # No organization.
        make_case("261207-none0h", None, local(12, 7, 7), answered=local(12, 7, 7, 30)),
    ]


SINCE = local(11, 30, 0)
UNTIL = local(12, 8, 0)
NOW = local(12, 7, 12)


def rows_by_name(report: dict) -> dict:
    return {row["organization"]: row for row in report["organizations"]}


def test_report_per_organization():
    profile = load_profile("sandbox")
    report = sla_report(generated_cases(), profile.sla, SINCE, UNTIL, NOW)
    rows = rows_by_name(report)

    assert sorted(rows) == ["(none)", "acme", "kiwicorp"]
    kiwicorp = rows["kiwicorp"]
    assert kiwicorp["cases"] == 3
    assert kiwicorp["answered"] == 3
    assert kiwicorp["within_target"] == 2
    assert kiwicorp["breached"] == 1
    assert kiwicorp["share_within_target"] == pytest.approx(2 / 3, abs=1e-4)
    assert kiwicorp["median_office_hours"] == 3.0
    assert kiwicorp["median_calendar_hours"] == 48.0

    acme = rows["acme"]
    assert (acme["cases"], acme["answered"], acme["breached"], acme["pending"], acme["no_response"]) == (3, 0, 1, 1, 1)
    assert acme["share_within_target"] == 0.0
    assert acme["median_office_hours"] is None

    assert rows["(none)"]["share_within_target"] == 1.0
    assert rows["(none)"]["median_office_hours"] == 0.5


def test_report_totals():
    profile = load_profile("sandbox")
    total = sla_report(generated_cases(), profile.sla, SINCE, UNTIL, NOW)["total"]
    assert total["cases"] == 7
    assert total["answered"] == 4
    assert total["within_target"] == 3
    assert total["breached"] == 2
    assert total["pending"] == 1
    assert total["no_response"] == 1
    assert total["share_within_target"] == 0.6
    assert total["median_office_hours"] == 2.5
    assert total["median_calendar_hours"] == 25.0


def test_report_window_bounds():
    profile = load_profile("sandbox")
    report = sla_report(generated_cases(), profile.sla, SINCE, local(12, 5, 0), NOW)
    assert report["total"]["cases"] == 3
    assert sorted(rows_by_name(report)) == ["acme", "kiwicorp"]
    assert report["since"] == "2026-11-30T05:00:00Z"
    assert report["target_hours"] == 16


def test_report_empty_window():
    profile = load_profile("sandbox")
    report = sla_report(generated_cases(), profile.sla, local(1, 1, 0), local(1, 2, 0), NOW)
    assert report["organizations"] == []
    assert report["total"]["share_within_target"] is None


def test_cases_since_reads_store():
    store = CaseStore()
    for case in generated_cases():
        store.create(case)
    loaded = cases_since(store, SINCE)
    assert sorted(case.id for case in loaded) == sorted(case.id for case in generated_cases() if case.id != "261120-old00g")


def test_parse_day():
    assert parse_day("2026-12-01", "--since", OFFICE) == local(12, 1, 0)
    assert parse_day("2026-12-01", "--until", OFFICE, end_of_day=True) == local(12, 2, 0)
    assert parse_day("2026-12-01T08:00:00Z", "--since", OFFICE) == dt.datetime(2026, 12, 1, 8, tzinfo=dt.timezone.utc)
    with pytest.raises(UsageError):
        parse_day("last week", "--since", OFFICE)


# ----- the command -----


def run(*arguments: str) -> int:
    app = build_app()
    app.add_typer(report_command.app, name="report")
    command = typer.main.get_command(app)
    try:
        command.main(args=list(arguments), prog_name="helpctl", standalone_mode=False)
    except HelpctlError as error:
        return cli._report(error, "--json" in arguments, False)
    return ExitCode.OK


def answered_store() -> None:
    # Only answered cases: their figures do not depend on the time the test runs.
    store = CaseStore()
    for case in generated_cases():
        if case.id in ("261207-kiwi0a", "261204-kiwi0b", "261130-kiwi0c", "261207-none0h"):
            store.create(case)


def test_cli_report_json(capsys):
    answered_store()
    assert run("report", "sla", "--since", "2026-11-30", "--until", "2026-12-07", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["until"] == "2026-12-08T05:00:00Z"
    assert rows_by_name(report)["kiwicorp"]["within_target"] == 2
    assert report["total"]["cases"] == 4


def test_cli_report_table(capsys):
    answered_store()
    assert run("report", "sla", "--since", "2026-11-30", "--until", "2026-12-07") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ORGANIZATION", "CASES", "ANSWERED"]
    kiwicorp = next(line for line in lines if line.startswith("kiwicorp"))
    assert kiwicorp.split()[1:5] == ["3", "3", "2", "67%"]
    assert any(line.startswith("all") for line in lines)


def test_cli_report_bad_dates(capsys):
    assert run("report", "sla", "--since", "yesterday") == ExitCode.USAGE
    assert "--since" in capsys.readouterr().err
    assert run("report", "sla", "--since", "2026-12-07", "--until", "2026-12-01") == ExitCode.USAGE
