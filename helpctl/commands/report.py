"""`helpctl report ...`: figures over many cases."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from helpctl.context import App
from helpctl.errors import UsageError

app = typer.Typer(help="Reports over many cases.", no_args_is_help=True)

COLUMNS = ("organization", "cases", "answered", "within target", "share", "breached", "pending", "no response", "median office h", "median calendar h")


@app.command("sla")
def sla_report_command(
    context: typer.Context,
    since: Annotated[str, typer.Option("--since", help="First day (YYYY-MM-DD in the SLA calendar's UTC offset) or an ISO 8601 time.")],
    until: Annotated[Optional[str], typer.Option("--until", help="Last day, included (default: now).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Share of cases answered within the first-response target, medians and breaches, per organization."""
    from helpctl import reports, sla
    from helpctl.findings import utc_now

    application: App = context.obj
    profile = application.profile
    offset = sla.office_calendar(profile.sla.calendar).offset
    now = utc_now()
    start = reports.parse_day(since, "--since", offset)
    end = reports.parse_day(until, "--until", offset, end_of_day=True) if until else now
    if end <= start:
        raise UsageError(f"--until ({until}) is not after --since ({since})", hint="give a later --until or an earlier --since")

    report = reports.sla_report(reports.cases_since(application.store, start), profile.sla, start, end, now)
    if json_output or application.output.json_mode:
        application.output.json(report)
        return
    show_report(application, report)


def show_report(application: App, report: dict) -> None:
    output = application.output
    rows = [_cells(row) for row in report["organizations"]]
    if len(report["organizations"]) != 1:
        rows.append(_cells(report["total"]))
    output.table(list(COLUMNS), rows, title=f"First response within {report['target_hours']:g} office hours")
    output.info(f"cases whose first-response clock started from {report['since']} to {report['until']}")
    if not report["organizations"]:
        output.info("no cases in this window")


def _cells(row: dict) -> list[object]:
    share = row["share_within_target"]
    return [
        row["organization"],
        row["cases"],
        row["answered"],
        row["within_target"],
        "-" if share is None else f"{share:.0%}",
        row["breached"],
        row["pending"],
        row["no_response"],
        _hours(row["median_office_hours"]),
        _hours(row["median_calendar_hours"]),
    ]


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
