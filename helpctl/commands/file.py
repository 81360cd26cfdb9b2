"""`helpctl file CASE`: file the classified case as a labeled, assigned GitLab issue."""

from __future__ import annotations

from typing import Annotated

import typer

from helpctl.context import App


def register(app: typer.Typer) -> None:
    app.command("file")(file_case_command)


def file_case_command(
    context: typer.Context,
    case_id: Annotated[str, typer.Argument(metavar="CASE", help="Case id, or a unique prefix of one.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the exact request; write nothing.")] = False,
    allow_new_labels: Annotated[bool, typer.Option("--allow-new-labels", help="Create labels missing in the project.")] = False,
    cross_profile: Annotated[bool, typer.Option("--cross-profile", help="Run on a case opened under another profile.")] = False,
    new_issue: Annotated[bool, typer.Option("--new-issue", help="File even when the case looks like an already filed problem.")] = False,
) -> None:
    """File a GitLab issue for a classified case, routed to the right person."""
    from helpctl.filing_case import file_case

    application: App = context.obj
    case = application.store.load(case_id)
    application.check_case_profile(case, cross_profile)
    application.announce_profile()
    if not new_issue and not case.issue:
        _offer_links(application, case, dry_run)
    outcome = file_case(application.store, case.id, application.profile, application.actor, dry_run=dry_run, allow_new_labels=allow_new_labels)
    show_outcome(application, outcome)


def _offer_links(application: App, case, dry_run: bool) -> None:
    """Stop before filing a problem that is already filed: linking keeps one issue per problem."""
    from helpctl import related, services
    from helpctl.errors import PreconditionFailed

    client = services.gitlab_client(application.profile)
    matches = [
        item
        for item in related.find_related(application.store, case, application.profile, client)
        if item.kind == "issue" or item.iid is not None or item.status == "filed"
    ]
    if not matches:
        return

    lines = [f"{item.reference} ({item.title[:60]}): {'; '.join(item.reasons)}" for item in matches[:3]]
    best = matches[0]
    link = f"--issue {best.iid}" if best.kind == "issue" or best.case_id is None else f"--case {best.case_id}"
    message = f"case {case.id} looks like a problem already filed: " + " | ".join(lines)
    hint = f"link it with 'helpctl case link {case.id} {link}', or file anyway with --new-issue"
    if dry_run:
        application.output.warn(f"{message} ({hint})")
        return
    raise PreconditionFailed(message, hint=hint)


def show_outcome(application: App, outcome: dict) -> None:
    output = application.output
    if output.json_mode:
        output.json(outcome)
        return

    if outcome["dry_run"]:
        request = outcome["request"]
        output.line(f"POST {request['endpoint']}")
        for name in ("title", "labels", "assignee", "confidential", "issue_type"):
            output.line(f"{name}: {request[name]}")
        output.line(f"routing: {outcome['route_reason']}")
        output.line("description:")
        output.line(request["description"])
        output.info("dry run: nothing was sent")
        return

    verb = "Filed" if outcome["created"] else "Already filed as"
    output.success(f"{verb} issue #{outcome['iid']} for case {outcome['case']}, assigned to {outcome['assignee']} ({outcome['route_reason']})")
    output.line(outcome["url"])
