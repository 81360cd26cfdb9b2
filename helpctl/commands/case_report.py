"""`helpctl case timeline` and `helpctl case export`: a case's chronology and shareable reports.

`register_case(case_app)` adds both subcommands to the `case` group.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from helpctl.context import App
from helpctl.errors import UsageError

if TYPE_CHECKING:
    from helpctl.charts import Histogram
    from helpctl.output import Output
    from helpctl.timeline import Timeline

CaseId = Annotated[str, typer.Argument(metavar="CASE", help="Case id, or a unique prefix of one.")]


def register_case(case_app: typer.Typer) -> None:
    case_app.command("timeline")(timeline_command)
    case_app.command("export")(export_command)


def timeline_command(
    context: typer.Context,
    case_id: CaseId,
    sources: Annotated[
        Optional[list[str]], typer.Option("--source", "-s", help="Only items of this source: case, platform, mail, errors, usage, sessions, logs, browser (repeatable).")
    ] = None,
    since: Annotated[Optional[str], typer.Option("--since", help="Only items at or after this time (ISO 8601; UTC when no offset).")] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="Only items at or before this time (ISO 8601; UTC when no offset).")] = None,
    kind: Annotated[Optional[str], typer.Option("--kind", help="Only case events (case) or evidence rows (evidence).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", help="Show only the newest N items.")] = None,
    chart: Annotated[bool, typer.Option("--chart/--no-chart", help="Chart errors against usage around the reported moment.")] = True,
) -> None:
    """Show the case's events and its evidence rows in time order, newest last."""
    from helpctl import timeline

    application: App = context.obj
    case = application.store.load(case_id)
    criteria = timeline.TimelineFilter(
        sources=timeline.check_sources(case, sources) if sources else None,
        since=timeline.parse_option_time(since, "--since") if since else None,
        until=timeline.parse_option_time(until, "--until") if until else None,
        kind=kind,
        limit=limit,
    )
    result = timeline.build(case, application.store.folder(case.id), criteria)
    histogram = result.chart_counts.histogram() if chart else None

    output = application.output
    if output.json_mode:
        output.json({**result.to_dict(), "chart": histogram.to_dict() if histogram else None})
        return

    _print_items(output, result)
    _print_skipped(output, result)
    if chart:
        _print_chart(output, histogram)


def _print_items(output: Output, result: Timeline) -> None:
    rows = []
    for item in result.items:
        label = f"{item.label} [{item.actor}]" if item.actor else item.label
        rows.append((item.at.strftime("%Y-%m-%d %H:%M:%SZ"), item.source, item.event, label))
    if not rows:
        output.info("no timeline items match")
        return
    output.table(["at", "source", "event", "detail"], rows)
    if result.matched > len(rows):
        output.info(f"showing the newest {len(rows)} of {result.matched} items")


def _print_skipped(output: Output, result: Timeline) -> None:
    if result.untimed:
        output.info(f"skipped {sum(result.untimed.values())} rows without a time ({_by_source(result.untimed)})")
    if result.unreadable:
        output.warn(f"skipped {sum(result.unreadable.values())} unreadable evidence rows ({_by_source(result.unreadable)})")
    if result.missing:
        output.warn(f"evidence files not found in the case folder: {', '.join(result.missing)}")


def _by_source(counts: dict[str, int]) -> str:
    return ", ".join(f"{source} {count}" for source, count in sorted(counts.items()))


def _print_chart(output: Output, histogram: Histogram | None) -> None:
    from helpctl.charts import render_rich, render_text

    if histogram is None:
        output.info("no errors or usage events near the reported moment to chart")
        return

    output.line()
    if output.is_terminal:
        from rich.console import Console

        Console(highlight=False).print(render_rich(histogram), end="")
        return
    for line in render_text(histogram):
        output.line(line)


def export_command(
    context: typer.Context,
    case_id: CaseId,
    report_format: Annotated[str, typer.Option("--format", "-f", help="Report format: md, html or json.")],
    output_path: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the report to this file (mode 0600) instead of stdout.")] = None,
    internal: Annotated[bool, typer.Option("--internal", help="Keep personal data and secrets: for the support team only.")] = False,
) -> None:
    """Write a self-contained report of the case, redacted unless --internal."""
    from helpctl import export

    application: App = context.obj
    output = application.output
    if report_format not in export.FORMATS:
        raise UsageError(f"--format: {report_format!r} is not a report format", hint=f"use one of: {', '.join(export.FORMATS)}")
    if output.json_mode and output_path is None and report_format != "json":
        raise UsageError("--json describes a report written with -o FILE", hint="add -o FILE, or use --format json to print the report as JSON")

    case = application.store.load(case_id)
    report = export.build_report(case, application.store.folder(case.id), internal=internal)
    text = export.render(report, report_format)
    if output_path is None:
        # The audit entry goes first, so an unredacted report is never printed unrecorded.
        if internal:
            _audit_internal_export(application, case.id, report_format, None)
        sys.stdout.write(text)
        return

    size = export.write_report(output_path, text)
    if internal:
        _audit_internal_export(application, case.id, report_format, output_path)
    result: dict[str, Any] = {
        "case": case.id,
        "format": report_format,
        "file": str(output_path),
        "bytes": size,
        "internal": internal,
        "redactions": report["report"].get("redactions", {}),
    }
    if output.json_mode:
        output.json(result)
        return
    state = "internal (not redacted)" if internal else "redacted"
    output.success(f"wrote the {state} {report_format} report of case {case.id} to {output_path} ({size} bytes)")


def _audit_internal_export(application: App, case_id: str, report_format: str, path: Path | None) -> None:
    """Record an unredacted report in the audit log and warn about it."""
    from helpctl.audit import AuditLog

    application.output.warn("the report is not redacted: it contains personal data and may contain secrets")
    AuditLog().append(
        "case.exported",
        operator=application.actor,
        target={"case": case_id},
        outcome="written" if path is not None else "printed",
        detail={"format": report_format, "internal": True, "file": str(path) if path else None},
    )
