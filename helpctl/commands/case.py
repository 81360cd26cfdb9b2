"""`helpctl case ...`: open, list, show, edit, annotate, close and reopen cases."""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from helpctl.cases.vocabulary import KINDS, LANGUAGES, STATUSES
from helpctl.context import App
from helpctl.errors import PreconditionFailed, UsageError
from helpctl.findings import isoformat

if TYPE_CHECKING:
    from helpctl.cases.model import Case

app = typer.Typer(help="Open, list, show and change cases.", no_args_is_help=True)

DEFAULT_LIST_LIMIT = 50
EMAIL = re.compile(r"^[^@\s,;<>]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
GROUP = re.compile(r"^[a-z0-9]{2,64}$")

CaseId = Annotated[str, typer.Argument(metavar="CASE", help="Case id, or a unique prefix of one.")]


def check_email(value: str, option: str) -> str:
    email = value.strip().lower()
    if not EMAIL.match(email):
        raise UsageError(f"{option}: {value!r} is not an e-mail address", hint="write it as name@example.com")
    return email


def check_group(value: str) -> str:
    name = value.strip().lower()
    if not GROUP.match(name):
        raise UsageError(f"--group: {value!r} is not a group name", hint="group names are lowercase letters and digits")
    return name


def parse_time(value: str, option: str) -> str:
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise UsageError(f"{option}: {value!r} is not a date and time", hint="use ISO 8601, such as 2026-12-03T09:12:00-05:00") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return isoformat(moment)


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


@app.command("new")
def new(
    context: typer.Context,
    requester: Annotated[Optional[str], typer.Option("--requester", "-r", help="Requester's e-mail address.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Requester's name.")] = None,
    subject: Annotated[Optional[str], typer.Option("--subject", "-s", help="One-line summary of the request.")] = None,
    body: Annotated[Optional[str], typer.Option("--body", "-b", help="What the requester wrote.")] = None,
    organization: Annotated[Optional[str], typer.Option("--org", "--organization", help="Organization name.")] = None,
    groups: Annotated[Optional[list[str]], typer.Option("--group", "-g", help="Group concerned (repeatable).")] = None,
    users: Annotated[Optional[list[str]], typer.Option("--user", "-u", help="User concerned, by e-mail (repeatable).")] = None,
    kind: Annotated[str, typer.Option("--kind", help=f"One of: {', '.join(KINDS)}.")] = "question",
    language: Annotated[Optional[str], typer.Option("--lang", help="Requester's language: en or es.")] = None,
    reported: Annotated[Optional[str], typer.Option("--reported", help="When the requester reported it (ISO 8601; default now).")] = None,
    from_email: Annotated[
        Optional[str], typer.Option("--from-email", help="Open from an RFC 5322 e-mail file ('-' reads stdin).")
    ] = None,
) -> None:
    """Open a case from typed fields or from the client's e-mail."""
    application: App = context.obj
    if from_email is not None:
        _new_from_email(application, from_email)
        return

    case = _case_from_options(
        application, requester, name, subject, body, organization, groups or [], users or [], kind, language, reported
    )
    case.record(application.actor, "opened", source="typed")
    application.store.create(case)
    _print_opened(application, case, "opened")
    _mention_related(application, case)


def _case_from_options(
    application: App,
    requester: str | None,
    name: str | None,
    subject: str | None,
    body: str | None,
    organization: str | None,
    groups: list[str],
    users: list[str],
    kind: str,
    language: str | None,
    reported: str | None,
) -> Case:
    from helpctl.cases.model import Case, Person, Subjects
    from helpctl.cases.store import new_case_id

    if not requester:
        raise UsageError("--requester is required (or use --from-email FILE)", hint="helpctl case new -r name@example.com -s '...'")
    if not subject or not subject.strip():
        raise UsageError("--subject is required", hint="give a one-line summary with -s")
    if kind not in KINDS:
        raise UsageError(f"--kind: {kind!r} is not a kind", hint=f"use one of: {', '.join(KINDS)}")
    if language is not None and language not in LANGUAGES:
        raise UsageError(f"--lang: {language!r} is not supported", hint="use en or es")

    profile = application.profile
    return Case(
        id=new_case_id(),
        profile=profile.name,
        subject=subject.strip(),
        requester=Person(email=check_email(requester, "--requester"), name=(name or "").strip()),
        kind=kind,
        body=body or "",
        language=language or profile.language,
        organization=organization.strip().lower() if organization else None,
        subjects=Subjects(
            users=_unique([check_email(user, "--user") for user in users]),
            groups=_unique([check_group(group) for group in groups]),
            organizations=[organization.strip().lower()] if organization else [],
        ),
        reported_at=parse_time(reported, "--reported") if reported else None,
    )


def _new_from_email(application: App, source: str) -> None:
    from helpctl import intake

    raw = _read_email(source)
    message = intake.parse_message(raw)
    result = intake.open_or_thread(
        application.store, message, raw, profile=application.profile.name, actor=application.actor
    )
    _print_opened(application, result.case, result.action)
    if result.action == "opened":
        _mention_related(application, result.case)
    if result.action == "reopened" and result.case.issue:
        from helpctl.reopen import after_intake

        application.announce_profile()
        follow_up = after_intake(application.store, result, application.profile, application.actor)
        if follow_up and follow_up.note_id:
            application.output.info(f"commented on issue #{follow_up.iid} that the requester wrote again")


def _mention_related(application: App, case: Case) -> None:
    """Name open cases of the same organization that look like the same problem.

    No network is used: open issues are compared when the case is filed.
    """
    from helpctl import related

    report = related.search_related(
        application.store, case, application.profile, include_issues=False, same_organization_only=True
    )
    for item in report.related[:3]:
        application.output.info(f"related: case {item.reference} ({'; '.join(item.reasons)}); see 'helpctl case related {case.id}'")


def _read_email(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    path = Path(source).expanduser()
    try:
        return path.read_bytes()
    except FileNotFoundError as error:
        raise UsageError(f"--from-email: {path} not found", hint="give the path of a saved .eml file") from error
    except OSError as error:
        raise UsageError(f"--from-email: cannot read {path}: {error.strerror}") from error


def _print_opened(application: App, case: Case, action: str) -> None:
    output = application.output
    folder = application.store.folder(case.id)
    if output.json_mode:
        output.json({"action": action, "folder": str(folder), "case": case.to_dict()})
        return

    verbs = {
        "opened": "Opened case",
        "threaded": "Added the message to case",
        "reopened": "Reopened case",
        "duplicate": "Already recorded in case",
    }
    output.success(f"{verbs.get(action, action)} {case.id}: {case.subject}")
    output.line(case.id)
    output.info(f"folder: {folder}")


@app.command("list")
def list_cases(
    context: typer.Context,
    status: Annotated[Optional[str], typer.Option("--status", help=f"Only cases in this status ({', '.join(STATUSES)}).")] = None,
    requester: Annotated[Optional[str], typer.Option("--requester", "-r", help="Requester's e-mail contains this.")] = None,
    organization: Annotated[Optional[str], typer.Option("--org", "--organization", help="Organization name.")] = None,
    text: Annotated[Optional[str], typer.Option("--text", "-t", help="Subject, body or subjects contain this.")] = None,
    due: Annotated[bool, typer.Option("--due", help="Only cases whose response clock is due soon.")] = False,
    breached: Annotated[bool, typer.Option("--breached", help="Only cases whose response clock is breached.")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most this many.")] = DEFAULT_LIST_LIMIT,
    show_all: Annotated[bool, typer.Option("--all", "-a", help="Show every matching case.")] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="Re-read case files changed outside helpctl now.")] = False,
) -> None:
    """List cases, newest first (the newest 50 unless --limit or --all)."""
    from helpctl.cases.index import CaseIndex, ListFilter

    application: App = context.obj
    if application.profile_option:
        application.check_profile_exists()
    if status is not None and status not in STATUSES:
        raise UsageError(f"--status: {status!r} is not a status", hint=f"use one of: {', '.join(STATUSES)}")

    shown = None if show_all else limit
    criteria = ListFilter(
        status=status, requester=requester, organization=organization, text=text,
        limit=None if due or breached else shown, refresh=refresh,
    )
    index = CaseIndex(application.cases_root)
    rows = index.list(criteria)
    if due or breached:
        from helpctl.commands.case_sla import due_filter
        from helpctl.findings import utc_now

        rows = due_filter(rows, application.profile, utc_now(), due, breached, store=application.store)[:shown]
    output = application.output
    if output.json_mode:
        output.json(rows)
        return

    table = [
        (row["id"], row["status"] or "damaged", row["label"] or "", row["requester"] or "", row["organization"] or "",
         (row["created_at"] or "")[:10], row["subject"] or row["damaged"] or "")
        for row in rows
    ]
    output.table(["id", "status", "label", "requester", "org", "opened", "subject"], table)
    if shown is not None and len(rows) == shown and not (due or breached):
        total = index.count(criteria)
        if total > shown:
            output.info(f"showing the newest {shown} of {total} cases; use --limit N or --all for more")
    if not rows:
        output.info("no cases match" if any((status, requester, organization, text, due, breached)) else "no cases yet: open one with 'helpctl case new'")


@app.command("show")
def show(context: typer.Context, case_id: CaseId) -> None:
    """Show a case: request, subjects, findings, classification, issue and timeline."""
    application: App = context.obj
    case = application.store.load(case_id)
    output = application.output
    if output.json_mode:
        output.json(case.to_dict())
        return

    from helpctl.commands.case_sla import clock_rows
    from helpctl.commands.case_view import render_case

    render_case(output, case, application.store.folder(case.id), clock_rows(case, application.profile))


@app.command("edit")
def edit(
    context: typer.Context,
    case_id: CaseId,
    requester: Annotated[Optional[str], typer.Option("--requester", "-r", help="New requester e-mail.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Requester's name.")] = None,
    subject: Annotated[Optional[str], typer.Option("--subject", "-s", help="New subject.")] = None,
    organization: Annotated[Optional[str], typer.Option("--org", "--organization", help="Organization name.")] = None,
    add_user: Annotated[Optional[list[str]], typer.Option("--add-user", help="Add a user (repeatable).")] = None,
    remove_user: Annotated[Optional[list[str]], typer.Option("--remove-user", help="Remove a user (repeatable).")] = None,
    add_group: Annotated[Optional[list[str]], typer.Option("--add-group", help="Add a group (repeatable).")] = None,
    remove_group: Annotated[Optional[list[str]], typer.Option("--remove-group", help="Remove a group (repeatable).")] = None,
    language: Annotated[Optional[str], typer.Option("--lang", help="en or es.")] = None,
    kind: Annotated[Optional[str], typer.Option("--kind", help=f"One of: {', '.join(KINDS)}.")] = None,
    reported: Annotated[Optional[str], typer.Option("--reported", help="When the requester reported it (ISO 8601).")] = None,
) -> None:
    """Change a case's requester, subjects, organization, language, kind or reported time."""
    application: App = context.obj
    changes = _edit_changes(requester, name, subject, organization, language, kind)
    if reported is not None:
        changes["reported_at"] = parse_time(reported, "--reported")
    with application.store.edit(case_id) as case:
        for field, value in changes.items():
            _apply_change(case, field, value)
        _edit_lists(case, changes, add_user, remove_user, add_group, remove_group)
        if not changes:
            raise UsageError("nothing to change", hint="give at least one option; see 'helpctl case edit --help'")
        case.record(application.actor, "edited", changes={key: str(value) for key, value in changes.items()})
    _print_case_line(application, case, "Updated case")


def _edit_changes(
    requester: str | None, name: str | None, subject: str | None, organization: str | None, language: str | None, kind: str | None
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if requester is not None:
        changes["requester"] = check_email(requester, "--requester")
    if name is not None:
        changes["name"] = name.strip()
    if subject is not None:
        if not subject.strip():
            raise UsageError("--subject cannot be empty")
        changes["subject"] = subject.strip()
    if organization is not None:
        changes["organization"] = organization.strip().lower() or None
    if language is not None:
        if language not in LANGUAGES:
            raise UsageError(f"--lang: {language!r} is not supported", hint="use en or es")
        changes["language"] = language
    if kind is not None:
        if kind not in KINDS:
            raise UsageError(f"--kind: {kind!r} is not a kind", hint=f"use one of: {', '.join(KINDS)}")
        changes["kind"] = kind
    return changes


def _apply_change(case: Case, field: str, value: Any) -> None:
    if field == "requester":
        case.requester.email = value
    elif field == "name":
        case.requester.name = value
    elif field == "organization":
        case.organization = value
        if value and value not in case.subjects.organizations:
            case.subjects.organizations.append(value)
    else:
        setattr(case, field, value)


def _edit_lists(
    case: Case,
    changes: dict[str, Any],
    add_user: list[str] | None,
    remove_user: list[str] | None,
    add_group: list[str] | None,
    remove_group: list[str] | None,
) -> None:
    for email in [check_email(user, "--add-user") for user in add_user or []]:
        if email not in case.subjects.users:
            case.subjects.users.append(email)
            changes.setdefault("users_added", []).append(email)
    for email in [check_email(user, "--remove-user") for user in remove_user or []]:
        if email in case.subjects.users:
            case.subjects.users.remove(email)
            changes.setdefault("users_removed", []).append(email)
    for group in [check_group(group) for group in add_group or []]:
        if group not in case.subjects.groups:
            case.subjects.groups.append(group)
            changes.setdefault("groups_added", []).append(group)
    for group in [check_group(group) for group in remove_group or []]:
        if group in case.subjects.groups:
            case.subjects.groups.remove(group)
            changes.setdefault("groups_removed", []).append(group)


@app.command("note")
def note(
    context: typer.Context,
    case_id: CaseId,
    text: Annotated[str, typer.Argument(help="The note ('-' reads stdin).")],
) -> None:
    """Add an engineer's note to a case."""
    application: App = context.obj
    if text == "-":
        text = sys.stdin.read()
    if not text.strip():
        raise UsageError("the note is empty", hint="write the note as the second argument")

    with application.store.edit(case_id) as case:
        entry = {"at": isoformat(dt.datetime.now(dt.timezone.utc)), "actor": application.actor, "text": text.strip()}
        case.notes.append(entry)
        case.record(application.actor, "note", text=text.strip()[:200])
    _print_case_line(application, case, "Added a note to case")


@app.command("close")
def close(
    context: typer.Context,
    case_id: CaseId,
    resolution: Annotated[str, typer.Option("--resolution", help="How the case was resolved.")],
) -> None:
    """Close a case with its resolution."""
    application: App = context.obj
    if not resolution.strip():
        raise UsageError("--resolution cannot be empty", hint="say how the case was resolved")

    with application.store.edit(case_id) as case:
        if case.status == "closed":
            raise PreconditionFailed(f"case {case.id} is already closed", hint=f"reopen it with 'helpctl case reopen {case.id} --reason ...'")
        previous = case.status
        case.status = "closed"
        case.resolution = resolution.strip()
        case.record(application.actor, "closed", resolution=case.resolution, previous_status=previous)
    _print_case_line(application, case, "Closed case")


@app.command("reopen")
def reopen(
    context: typer.Context,
    case_id: CaseId,
    reason: Annotated[str, typer.Option("--reason", help="Why the case is reopened.")],
    issue: Annotated[
        str, typer.Option("--issue", help="What to do with a filed issue: comment (default), reopen or none.")
    ] = "comment",
) -> None:
    """Reopen a closed case; its classification and filed issue are kept."""
    from helpctl.reopen import reopen_with_issue

    application: App = context.obj
    if not reason.strip():
        raise UsageError("--reason cannot be empty", hint="say why the case is reopened")
    if issue not in ("comment", "reopen", "none"):
        raise UsageError(f"--issue: {issue!r} is not an action", hint="use comment, reopen or none")

    case = application.store.load(case_id)
    if case.issue and issue != "none":
        application.announce_profile()
    result = reopen_with_issue(application.store, case.id, reason.strip(), application.profile, application.actor, issue_action=issue)
    _print_case_line(application, application.store.load(case.id), "Reopened case")
    if result.issue_reopened:
        application.output.info(f"reopened issue #{result.iid}: {result.url}")
    elif result.note_id:
        application.output.info(f"commented on issue #{result.iid}: {result.url}")


def _print_case_line(application: App, case: Case, verb: str) -> None:
    output = application.output
    if output.json_mode:
        output.json(case.to_dict())
        return
    output.success(f"{verb} {case.id} ({case.status})")


ATTACHABLE_IMAGES = (".png", ".jpg", ".jpeg", ".gif", ".webp")


@app.command("attach")
def attach(
    context: typer.Context,
    case_id: CaseId,
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Screenshots or HAR files from the browser.")],
) -> None:
    """Attach screenshots and browser HAR files; a HAR becomes a finding, with secrets removed."""
    from helpctl.attachments import attach_files

    application: App = context.obj
    for path in files:
        if not path.is_file():
            raise UsageError(f"{path} not found", hint="give the path of a saved screenshot or .har file")
        if path.suffix.lower() not in ATTACHABLE_IMAGES + (".har",):
            raise UsageError(f"{path.name}: only screenshots ({', '.join(ATTACHABLE_IMAGES)}) and .har files can be attached")

    case = application.store.load(case_id)
    components = application.profile.routing.components
    results = attach_files(application.store, case.id, files, application.actor, components)
    output = application.output
    if output.json_mode:
        output.json({"case": case.id, "attached": results})
        return
    for result in results:
        output.success(f"attached {result['file']} as {result['stored']}")
        if result.get("finding"):
            output.line(result["finding"]["summary"])


def _register_other_modules() -> None:
    """Subcommands of `case` that live in their own modules, one per concern."""
    from helpctl.commands import case_links, case_report

    case_report.register_case(app)
    case_links.register_case(app)


_register_other_modules()
