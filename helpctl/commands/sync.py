"""`helpctl sync [CASE...]`: follow filed issues and list the requesters owed an update."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from helpctl.context import App
from helpctl.errors import PartialResult

if TYPE_CHECKING:
    from helpctl.sync import OwedUpdate, SyncReport


def register(app: typer.Typer) -> None:
    app.command("sync")(sync_command)


def sync_command(
    context: typer.Context,
    cases: Annotated[
        Optional[list[str]],
        typer.Argument(metavar="[CASE]...", help="Cases to sync (default: every case that is not closed and follows an issue)."),
    ] = None,
    notify: Annotated[bool, typer.Option("--notify", help="Send the drafted updates to the requesters after confirmation.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Send without asking for confirmation (with --notify).")] = False,
) -> None:
    """Record what changed on the cases' GitLab issues, and draft the updates requesters are owed."""
    from helpctl.sync import SyncReport, followed_cases, send_updates, sync_cases

    application: App = context.obj
    store, profile = application.store, application.profile
    case_ids = followed_cases(store, cases or [], profile_name=profile.name)
    if not case_ids:
        _show_nothing(application)
        return

    application.announce_profile()
    report = sync_cases(store, case_ids, profile, application.actor)
    output = application.output
    if not output.json_mode:
        _show_report(application, report)

    # Drafts that the redaction check blocked stay listed with their problems and are not sent.
    ready = [owed for owed in report.owed if owed.draft is not None and not owed.draft.problems]
    if notify and ready:
        names = ", ".join(owed.case_id for owed in ready)
        application.confirm(f"Send {len(ready)} update(s) to the requesters of {names}?", yes)
        send_updates(store, SyncReport(owed=ready), profile, application.actor)
        if not output.json_mode:
            _show_sent(application, ready)

    if output.json_mode:
        output.json(report.to_dict())
    _finish(application, report)


def _show_sent(application: App, ready: list[OwedUpdate]) -> None:
    for owed in ready:
        if owed.send_error is not None:
            application.output.warn(f"{owed.case_id}: not sent: {owed.send_error.message}")
        else:
            application.output.success(f"sent the {owed.template} message for case {owed.case_id} to {owed.draft.to}")


def _show_nothing(application: App) -> None:
    output = application.output
    if output.json_mode:
        output.json({"synced": [], "owed": [], "failed": []})
        return
    output.info("no case follows a GitLab issue: file one with 'helpctl file CASE' or link one with 'helpctl case link'")


def _show_report(application: App, report: SyncReport) -> None:
    output = application.output
    rows = []
    for item in report.synced:
        issues = ", ".join(f"#{iid}" for iid in item.issues)
        if item.error is not None:
            rows.append((item.case_id, issues, "failed", item.error.message))
        else:
            changes = ", ".join(event["event"] for event in item.events) or "no change"
            rows.append((item.case_id, issues, "synced", changes))
    output.table(["case", "issues", "result", "changes"], rows, title="Sync")

    for item in report.synced:
        for event in item.events:
            if event.get("excerpt"):
                output.line(f"  {item.case_id} #{event['iid']} {event['event']} by @{event.get('author')}: {event['excerpt']}")

    if not report.owed:
        output.info("no requester is owed an update")
    for owed in report.owed:
        _show_owed(application, owed)


def _show_owed(application: App, owed: OwedUpdate) -> None:
    output = application.output
    output.line("")
    output.line(f"{owed.case_id} is owed an update ({owed.template}): {'; '.join(owed.reasons)}")
    if owed.draft is None:
        output.warn(f"{owed.case_id}: no draft: {owed.problem}")
        return
    for line in owed.draft.render().splitlines():
        output.line(f"    {line}")
    for problem in owed.draft.problems:
        output.warn(f"{owed.case_id}: the draft cannot be sent: {problem}")


def _finish(application: App, report: SyncReport) -> None:
    """Exit 3 when some cases could not be synced or some updates not sent; raise the error when all failed."""
    failed = report.failed
    unsent = report.send_failures
    if failed and len(failed) == len(report.synced) and not unsent:
        if application.output.json_mode:
            raise typer.Exit(int(failed[0].error.exit_code))
        raise failed[0].error
    if not failed and not unsent:
        return

    parts = []
    if failed:
        parts.append(f"{len(failed)} of {len(report.synced)} cases could not be synced ({', '.join(item.case_id for item in failed)})")
    if unsent:
        parts.append(f"{len(unsent)} update(s) were not sent ({', '.join(item.case_id for item in unsent)})")
    error = PartialResult("; ".join(parts), hint="fix the causes shown above and run 'helpctl sync' again; synced changes are not recorded twice")
    if application.output.json_mode:
        raise typer.Exit(int(error.exit_code))
    raise error
