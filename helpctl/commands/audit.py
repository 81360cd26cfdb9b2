"""`helpctl audit ...`: read and verify the audit log of every change helpctl made."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from helpctl.context import App
from helpctl.errors import HelpctlError

app = typer.Typer(help="Read and verify the audit log.", no_args_is_help=True)


@app.command("verify")
def verify(context: typer.Context) -> None:
    """Check the hash chain and the anchor; name the first bad line."""
    from helpctl.audit import AuditLog

    application: App = context.obj
    log = AuditLog()
    result = log.verify()
    output = application.output
    if output.json_mode:
        output.json(
            {
                "path": str(log.path),
                "entries": result.entries,
                "signed": result.signed,
                "ok": result.ok,
                "problems": [{"line": problem.line, "message": problem.message} for problem in result.problems],
            }
        )
    if not result.ok:
        problem = result.problems[0]
        where = f"{log.path}:{problem.line}" if problem.line else str(log.path)
        raise HelpctlError(f"audit log damaged at {where}: {problem.message}", hint="restore the log from a backup and investigate who changed it")

    if not output.json_mode:
        output.success(f"{result.entries} entries verified in {log.path}")
        if not result.signed:
            output.warn("the anchor is not signed (no keyring or HELPCTL_AUDIT_KEY): a rewrite of both files would go unnoticed")


@app.command("log")
def show_log(
    context: typer.Context,
    since: Annotated[Optional[str], typer.Option("--since", help="Only entries at or after this time (ISO 8601).")] = None,
    email: Annotated[Optional[str], typer.Option("--email", help="Only entries about this e-mail address.")] = None,
    group: Annotated[Optional[str], typer.Option("--group", help="Only entries about this group.")] = None,
    action: Annotated[Optional[str], typer.Option("--action", help="Only this action, such as access.revoke or issue.filed.")] = None,
) -> None:
    """List audit entries, oldest first."""
    from helpctl.audit import AuditLog
    from helpctl.commands.case import parse_time

    application: App = context.obj
    since_at = parse_time(since, "--since") if since else None
    rows = []
    for entry in AuditLog().entries():
        target = entry.get("target") or {}
        if since_at and entry["at"] < since_at:
            continue
        if email and email.lower() not in {str(value).lower() for value in target.values()}:
            continue
        if group and target.get("group") != group.lower():
            continue
        if action and entry.get("action") != action:
            continue
        rows.append(entry)

    output = application.output
    if output.json_mode:
        output.json(rows)
        return
    table = [
        (entry["seq"], entry["at"], entry["operator"], entry["action"], ", ".join(f"{key}={value}" for key, value in (entry.get("target") or {}).items()), entry["outcome"])
        for entry in rows
    ]
    output.table(["seq", "at", "operator", "action", "target", "outcome"], table)
