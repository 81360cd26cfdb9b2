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
) -> None:
    """File a GitLab issue for a classified case, routed to the right person."""
    from helpctl.filing_case import file_case

    application: App = context.obj
    case = application.store.load(case_id)
    application.check_case_profile(case, cross_profile)
    application.announce_profile()
    outcome = file_case(application.store, case.id, application.profile, application.actor, dry_run=dry_run, allow_new_labels=allow_new_labels)
    show_outcome(application, outcome)


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
