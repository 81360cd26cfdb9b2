"""`helpctl probe ...`: gather evidence for a case from one source."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from helpctl.context import App
from helpctl.errors import PartialResult, UsageError

app = typer.Typer(help="Gather evidence for a case from one source.", no_args_is_help=True)

CaseId = Annotated[str, typer.Argument(metavar="CASE", help="Case id, or a unique prefix of one.")]
CrossProfile = Annotated[bool, typer.Option("--cross-profile", help="Run on a case opened under another profile.")]

PLATFORM_CHECKS = ("token", "membership", "user-groups", "group", "vulnerabilities", "events")


@app.command("platform")
def platform(
    context: typer.Context,
    case_id: CaseId,
    checks: Annotated[Optional[list[str]], typer.Argument(help=f"Checks to run (default all): {', '.join(PLATFORM_CHECKS)}.")] = None,
    cross_profile: CrossProfile = False,
) -> None:
    """Probe the platform's GraphQL API: memberships, groups, findings, vulnerabilities, events."""
    from helpctl import services
    from helpctl.probes import platform as platform_probe
    from helpctl.probing import incomplete, record_findings

    application: App = context.obj
    unknown = [check for check in checks or [] if check not in platform_probe.CHECKS]
    if unknown:
        raise UsageError(f"unknown check {unknown[0]!r}", hint=f"use any of: {', '.join(platform_probe.CHECKS)}")

    case = application.store.load(case_id)
    application.check_case_profile(case, cross_profile)
    application.announce_profile()
    client = services.platform_client(application.profile)
    findings = platform_probe.run(case, client, application.store, checks or None)
    _check_actor(application, findings)
    case = record_findings(application.store, case.id, "platform", findings, application.actor)
    show_findings(application, case.id, findings)

    missing = incomplete(findings)
    if missing:
        raise PartialResult(f"{len(missing)} of {len(findings)} checks did not complete", hint="see the outcomes above; rerun the probe later")


def _check_actor(application: App, findings: list) -> None:
    """Warn when the token's owner is not the engineer the profile names as the actor."""
    engineer = application.profile.engineer.email.lower()
    for finding in findings:
        owner = str(finding.signals.get("platform.token_email") or "").lower()
        if owner and engineer and owner != engineer:
            application.output.warn(f"the platform token belongs to {owner}, but the profile names {engineer} as the engineer")


def show_findings(application: App, case_id: str, findings: list) -> None:
    output = application.output
    if output.json_mode:
        output.json({"case": case_id, "findings": [finding.to_dict() for finding in findings]})
        return
    from helpctl.commands.case_view import OUTCOME_MARKS

    rows = [(finding.check, finding.subject, OUTCOME_MARKS[finding.outcome], finding.summary) for finding in findings]
    output.table(["check", "subject", "outcome", "summary"], rows, title=f"Platform findings for {case_id}")
