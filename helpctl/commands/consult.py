"""`helpctl consult CASE --developer USER --question TEXT`: ask a developer on GitLab."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from helpctl.context import App


def register(app: typer.Typer) -> None:
    app.command("consult")(consult_command)


def consult_command(
    context: typer.Context,
    case_id: Annotated[str, typer.Argument(metavar="CASE", help="Case id, or a unique prefix of one.")],
    developer: Annotated[str, typer.Option("--developer", "-d", help="GitLab username of the developer to ask.")],
    question: Annotated[str, typer.Option("--question", "-q", help="The question ('-' reads stdin); it is redacted before posting.")],
    cross_profile: Annotated[bool, typer.Option("--cross-profile", help="Run on a case opened under another profile.")] = False,
) -> None:
    """Ask a developer about a case: a note on its issue, or a confidential consultation issue."""
    from helpctl.consult import consult

    application: App = context.obj
    if question == "-":
        question = sys.stdin.read()

    case = application.store.load(case_id)
    application.check_case_profile(case, cross_profile)
    application.announce_profile()
    result = consult(application.store, case.id, developer, question, application.profile, application.actor)

    output = application.output
    if output.json_mode:
        output.json(result.to_dict())
        return
    where = "opened confidential consultation issue" if result.issue_created else "commented on issue"
    output.success(f"asked @{result.developer}: {where} #{result.iid} for case {result.case_id}")
    if result.url:
        output.line(result.url)
    if result.redactions:
        counts = ", ".join(f"{count} {kind}" for kind, count in result.redactions.items())
        output.info(f"redacted from the question: {counts}")
    for warning in result.warnings:
        output.warn(warning)
    output.info(f"the answer comes back into the case with 'helpctl sync {result.case_id}'")
