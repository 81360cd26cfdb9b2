"""`helpctl probe ...`: gather evidence for a case from one source."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from helpctl.context import App
from helpctl.errors import UsageError

app = typer.Typer(help="Gather evidence for a case from one source.", no_args_is_help=True)

CaseId = Annotated[str, typer.Argument(metavar="CASE", help="Case id, or a unique prefix of one.")]
CrossProfile = Annotated[bool, typer.Option("--cross-profile", help="Run on a case opened under another profile.")]

PLATFORM_CHECKS = ("token", "membership", "user-groups", "group", "vulnerabilities", "events")


@app.command("platform")
def platform(
    context: typer.Context,
    case_id: CaseId,
    checks: Annotated[Optional[list[str]], typer.Argument(help=f"Checks to run (default all): {', '.join(PLATFORM_CHECKS)}.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds the probe may take.")] = 120.0,
    cross_profile: CrossProfile = False,
) -> None:
    """Probe the platform's GraphQL API: memberships, groups, findings, vulnerabilities, events."""
    unknown = [check for check in checks or [] if check not in PLATFORM_CHECKS]
    if unknown:
        raise UsageError(f"unknown check {unknown[0]!r}", hint=f"use any of: {', '.join(PLATFORM_CHECKS)}")
    _probe_one(context, "platform", case_id, cross_profile, timeout, {"checks": checks or None})


def _probe_one(context: typer.Context, name: str, case_id: str, cross_profile: bool, timeout: float, options: dict) -> None:
    from helpctl.commands.triage import finish, run_with_progress

    application: App = context.obj
    case = application.store.load(case_id)
    application.check_case_profile(case, cross_profile)
    application.announce_profile()
    runs = run_with_progress(application, case, [name], timeout, options)
    finish(application, case.id, runs)


Timeout = Annotated[float, typer.Option("--timeout", min=1, help="Seconds the probe may take.")]


@app.command("logs")
def logs(
    context: typer.Context,
    case_id: CaseId,
    queries: Annotated[Optional[list[str]], typer.Option("--named", help="Named query from the profile (repeatable; default all).")] = None,
    query: Annotated[Optional[str], typer.Option("--query", help="An ad-hoc Logs Insights query instead of the named ones.")] = None,
    log_groups: Annotated[Optional[list[str]], typer.Option("--log-group", help="Log group (repeatable; default: the profile's).")] = None,
    since: Annotated[Optional[str], typer.Option("--since", help="Start of the window (ISO 8601; default: report time minus the margin).")] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="End of the window (ISO 8601).")] = None,
    timeout: Timeout = 600.0,
    cross_profile: CrossProfile = False,
) -> None:
    """Query CloudWatch Logs Insights around the reported time."""
    from helpctl.commands.case import parse_time

    options = {
        "query_names": queries or None,
        "query_text": query,
        "log_groups": log_groups or None,
        "since": parse_time(since, "--since") if since else None,
        "until": parse_time(until, "--until") if until else None,
    }
    _probe_one(context, "logs", case_id, cross_profile, timeout, options)


@app.command("mail")
def mail(context: typer.Context, case_id: CaseId, timeout: Timeout = 120.0, cross_profile: CrossProfile = False) -> None:
    """Check Mandrill: was the mail to the requester and users delivered, bounced or rejected?"""
    _probe_one(context, "mail", case_id, cross_profile, timeout, {})


@app.command("errors")
def errors(context: typer.Context, case_id: CaseId, timeout: Timeout = 120.0, cross_profile: CrossProfile = False) -> None:
    """Read BugSnag's errors and events for the requester and users around the report."""
    _probe_one(context, "errors", case_id, cross_profile, timeout, {})


@app.command("usage")
def usage(
    context: typer.Context,
    case_id: CaseId,
    feature: Annotated[Optional[str], typer.Option("--feature", help="Feature the case is about (a key of mixpanel.feature_events).")] = None,
    timeout: Timeout = 120.0,
    cross_profile: CrossProfile = False,
) -> None:
    """Read Mixpanel: what the users did around the report, and whether they used the feature."""
    _probe_one(context, "usage", case_id, cross_profile, timeout, {"feature": feature})


@app.command("sessions")
def sessions(
    context: typer.Context,
    case_id: CaseId,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for LogRocket's highlights instead of collecting them later.")] = False,
    timeout: Timeout = 600.0,
    cross_profile: CrossProfile = False,
) -> None:
    """Ask LogRocket for the users' recent sessions, or store a link to open them by hand."""
    _probe_one(context, "sessions", case_id, cross_profile, timeout, {"wait": wait})
