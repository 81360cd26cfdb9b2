"""`helpctl case related|link|unlink|merge`: duplicates, links between cases and issues, merging."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from helpctl.context import App
from helpctl.errors import UsageError

if TYPE_CHECKING:
    from helpctl.related import LinkResult

CaseId = Annotated[str, typer.Argument(metavar="CASE", help="Case id, or a unique prefix of one.")]


def register_case(case_app: typer.Typer) -> None:
    case_app.command("related")(related_command)
    case_app.command("link")(link_command)
    case_app.command("unlink")(unlink_command)
    case_app.command("merge")(merge_command)


def related_command(
    context: typer.Context,
    case_id: CaseId,
    no_issues: Annotated[bool, typer.Option("--no-issues", help="Compare with other cases only, not with GitLab issues.")] = False,
) -> None:
    """Show the open cases and open GitLab issues that look like the same problem."""
    from helpctl.related import search_related

    application: App = context.obj
    case = application.store.load(case_id)
    if not no_issues:
        application.announce_profile()
    report = search_related(application.store, case, application.profile, include_issues=not no_issues)

    output = application.output
    if output.json_mode:
        output.json(report.to_dict())
        return
    for problem in report.problems:
        output.warn(problem)
    if not report.related:
        output.info(f"nothing related to case {case.id} was found")
        return

    rows = [(item.reference, item.kind, f"{item.score:.2f}", "yes" if item.linked else "", item.title, item.reason) for item in report.related]
    output.table(["match", "kind", "score", "linked", "title", "reasons"], rows, title=f"Related to {case.id}")
    for item in report.related:
        if not item.linked:
            option = f"--case {item.case_id}" if item.kind == "case" else f"--issue {item.iid}"
            output.info(f"to link: helpctl case link {case.id} {option}")


def link_command(
    context: typer.Context,
    case_id: CaseId,
    issue: Annotated[Optional[int], typer.Option("--issue", min=1, help="IID of a GitLab issue in the profile's project.")] = None,
    other: Annotated[Optional[str], typer.Option("--case", help="Another case that reports the same problem.")] = None,
) -> None:
    """Link a case to another case or to a GitLab issue; another client's case is announced on the issue."""
    from helpctl.related import link_cases, link_issue

    application: App = context.obj
    if (issue is None) == (other is None):
        raise UsageError("give exactly one of --issue IID and --case OTHER", hint="see 'helpctl case link --help'")

    store, profile = application.store, application.profile
    application.announce_profile()
    if issue is not None:
        result = link_issue(store, case_id, issue, profile, application.actor)
    else:
        result = link_cases(store, case_id, other or "", profile, application.actor)
    _show_link(application, result)


def _show_link(application: App, result: LinkResult) -> None:
    output = application.output
    if output.json_mode:
        output.json(result.to_dict())
        return

    target = f"case {result.other_case}" if result.other_case else f"issue #{result.iid}"
    if result.already_linked:
        output.info(f"case {result.case_id} is already linked to {target}")
    else:
        output.success(f"linked case {result.case_id} to {target}")
    if result.note_id is not None:
        output.info(f"commented on issue #{result.iid}: another client reports the same")
    if result.follows_issue:
        output.info(f"'helpctl sync' now follows issue #{result.iid} for this case")
    for warning in result.warnings:
        output.warn(warning)
    output.line(f"affected: {len(result.affected)} people across cases {', '.join(result.cases)}")
    if result.incident_command:
        output.line("Two or more users are affected: consider raising the bug to an incident with")
        output.line(f"  {result.incident_command}")


def unlink_command(
    context: typer.Context,
    case_id: CaseId,
    issue: Annotated[Optional[int], typer.Option("--issue", min=1, help="Remove the link to this issue.")] = None,
    other: Annotated[Optional[str], typer.Option("--case", help="Remove the link to this case (from both cases).")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove every link without asking (when no option names one).")] = False,
) -> None:
    """Remove a link made with 'case link'; without --issue or --case, every link of the case."""
    from helpctl.related import unlink

    application: App = context.obj
    if issue is not None and other is not None:
        raise UsageError("give at most one of --issue IID and --case OTHER")
    if issue is None and other is None:
        application.confirm(f"Remove every link of case {case_id}?", yes)

    case_id = application.store.resolve(case_id)
    removed = unlink(application.store, case_id, application.actor, other_id=other, iid=issue)
    output = application.output
    if output.json_mode:
        output.json({"case": case_id, "removed": removed})
        return
    for link in removed:
        target = f"case {link['case']}" if link.get("type") == "case" else f"issue #{link.get('iid')}"
        output.success(f"removed the link to {target}")


def merge_command(
    context: typer.Context,
    case_id: CaseId,
    other: Annotated[str, typer.Argument(metavar="OTHER", help="The case to merge into CASE; it is closed.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Merge without asking for confirmation.")] = False,
) -> None:
    """Move the messages, attachments, notes, findings and timeline of OTHER into CASE, and close OTHER."""
    from helpctl.related import merge_cases

    application: App = context.obj
    application.confirm(f"Merge case {other} into case {case_id} and close {other}?", yes)
    result = merge_cases(application.store, case_id, other, application.actor)

    output = application.output
    if output.json_mode:
        output.json(result.to_dict())
        return
    output.success(
        f"merged case {result.other_case} into {result.case_id}: {result.messages} messages, {result.attachments} attachments, "
        f"{result.notes} notes, {result.findings} findings, {result.events} timeline events, {result.files} files"
    )
    output.info(f"case {result.other_case} is closed with a pointer to {result.case_id}")
