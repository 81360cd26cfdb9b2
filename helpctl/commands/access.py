"""`helpctl access ...`: show members, and grant, change or revoke access through approved plans.

The rules live in `helpctl.access`, while this module reads options, builds the platform
client and prints. Every change, single or bulk, is a plan. With `--approved-by WHO --ref
REQUEST`, `grant`, `set-role` and `revoke` plan, approve and apply one change in one command.
Without them they write the plan and stop with exit code 5, because nothing runs unapproved.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from helpctl.context import App
from helpctl.errors import ExitCode, HelpctlError, PartialResult, UsageError

if TYPE_CHECKING:
    from helpctl.access.apply import ApplyReport, Progress
    from helpctl.access.plan import Draft

app = typer.Typer(help="Show members; grant, change and revoke access through approved plans.", no_args_is_help=True)
plan_app = typer.Typer(help="Plan access changes from a CSV, or show a plan.", invoke_without_command=True)
app.add_typer(plan_app, name="plan")

ACTIONS = ("grant", "set-role", "revoke")
PREVIEW_ROWS = 30


class Interrupted(HelpctlError):
    """Ctrl-C stopped an apply; what was in flight is in the journal, so --resume finishes it."""

    exit_code = ExitCode.INTERRUPTED
    kind = "interrupted"

Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
PlanPath = Annotated[Path, typer.Argument(metavar="PLAN", help="Path of the plan file.")]
Groups = Annotated[Optional[list[str]], typer.Option("--group", "-g", help="Group name (repeatable).")]
Organization = Annotated[Optional[str], typer.Option("--org", help="Organization name or id (ORG#...).")]
Email = Annotated[str, typer.Option("--email", "-e", help="E-mail of the person whose access changes.")]
Role = Annotated[Optional[str], typer.Option("--role", help="Role: a display name (\"Group Manager\") or an enum (USER_MANAGER).")]
Responsibility = Annotated[Optional[str], typer.Option("--responsibility", help="Responsibility in the group, such as Developer.")]
Requester = Annotated[Optional[str], typer.Option("--requester", help="E-mail of the client who asked for the change.")]
RequestEmail = Annotated[Optional[Path], typer.Option("--request-email", help="The client's request as a saved .eml file.")]
Ref = Annotated[Optional[str], typer.Option("--ref", help="Case id of the request behind the change; other text opens an access-request case.")]
ApprovedBy = Annotated[Optional[str], typer.Option("--approved-by", help="Who approved the change (not the operator).")]
SecondApprover = Annotated[Optional[str], typer.Option("--second-approver", help="Second approver, when the policy needs one.")]
Override = Annotated[Optional[str], typer.Option("--override", help="Reason to approve a flagged request anyway.")]
Output = Annotated[Optional[Path], typer.Option("--output", "-o", help="Where to write the plan (default: helpctl's data folder).")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Apply dangerous operations without asking.")]


def _json(application: App, json_output: bool) -> None:
    if json_output:
        application.output.json_mode = True


def _platform(application: App) -> Any:
    from helpctl import services

    application.announce_profile()
    return services.platform_client(application.profile)


def _operator(client: Any) -> Any:
    from helpctl.access.approval import operator_from_me

    return operator_from_me(client.me())


def _check_email(value: str, option: str) -> str:
    from helpctl.access.csvinput import normalise_email

    address = normalise_email(value)
    if address is None:
        raise UsageError(f"{option}: {value!r} is not an e-mail address", hint="write it as name@example.com")
    return address


# ---------------------------------------------------------------------------------------------
# show


@app.command("show")
def show(
    context: typer.Context,
    group: Annotated[Optional[str], typer.Option("--group", "-g", help="Group whose members to show.")] = None,
    organization: Organization = None,
    email: Annotated[Optional[str], typer.Option("--email", "-e", help="Only this person.")] = None,
    json_output: Json = False,
) -> None:
    """Show members: role, responsibility, invitation state, logins and how long invitations are pending."""
    from helpctl.access import roles
    from helpctl.access.state import StateReader
    from helpctl.findings import utc_now

    application: App = context.obj
    _json(application, json_output)
    if bool(group) == bool(organization):
        raise UsageError("give either --group or --org", hint="helpctl access show --group kiwiapp")
    selected = _check_email(email, "--email") if email else None

    with _platform(application) as client:
        reader = StateReader(client)
        level = "group" if group else "organization"
        state = reader.group(group.strip().lower()) if group else reader.organization(organization.strip())
    if state.members is None:
        raise HelpctlError(f"cannot list the members of {level} {state.name}: {state.denied}", hint="a Group Manager role or above can list members")

    now = utc_now()
    rows = []
    for member in sorted(state.members.values(), key=lambda item: item.email):
        if selected and member.email != selected:
            continue
        pending = member.pending_days(now)
        rows.append(
            {
                "email": member.email,
                "role": member.role,
                "role_name": roles.display(member.role, level),
                "role_enum": roles.enum_name(member.role),
                "responsibility": member.responsibility,
                "invitation_state": member.invitation_state,
                "pending_days": round(pending, 1) if pending is not None else None,
                "first_login": member.first_login,
                "last_login": member.last_login,
                "groups": list(member.groups) if member.groups is not None else None,
            }
        )
    if selected and not rows:
        raise HelpctlError(f"{selected} is not a member of {level} {state.name}")
    _print_members(application, level, state.name, rows)


def _print_members(application: App, level: str, name: str, rows: list[dict[str, Any]]) -> None:
    output = application.output
    if output.json_mode:
        output.json({level: name, "members": rows})
        return
    columns = ["email", "role", "responsibility", "invitation", "pending", "first login", "last login"]
    if level == "organization":
        columns[2] = "groups"
    table = []
    for row in rows:
        pending = ""
        if row["pending_days"] is not None:
            pending = f"{row['pending_days']:g} days"
        elif row["invitation_state"] == "PENDING":
            pending = "yes"
        third = row["responsibility"] if level == "group" else ", ".join(row["groups"] or [])
        table.append(
            [row["email"], f"{row['role_name']} ({row['role_enum']})", third, row["invitation_state"], pending, row["first_login"], row["last_login"]]
        )
    output.table(columns, table, title=f"Members of {level} {name}")
    output.info(f"{len(rows)} member(s)")


# ---------------------------------------------------------------------------------------------
# single changes


def _single(
    context: typer.Context,
    action: str,
    *,
    email: str,
    groups: list[str] | None,
    organization: str | None,
    all_groups: bool,
    role: str | None,
    responsibility: str | None,
    resend: bool,
    options: dict[str, Any],
) -> None:
    from helpctl.access.plan import Intent

    application: App = context.obj
    _json(application, options["json_output"])
    if options["approved_by"] and not options["ref"]:
        raise UsageError("--approved-by needs --ref", hint="name the case or request behind the approval")
    address = _check_email(email, "--email")
    names = [name.strip().lower() for name in groups or []]
    if names:
        scope_intents = [
            Intent(action, "group", address, group=name, organization=organization, role=role, responsibility=responsibility, resend=resend)
            for name in names
        ]
    elif all_groups:
        if not organization:
            raise UsageError("--all-groups needs --org", hint="name the organization whose groups to change")
        scope_intents = [Intent(action, "group", address, organization=organization, all_groups=True, role=role, responsibility=responsibility)]
    elif organization:
        scope_intents = [Intent(action, "organization", address, organization=organization, role=role)]
    else:
        raise UsageError("give --group, --org, or --all-groups --org", hint=f"helpctl access {action} --group kiwiapp --email name@example.com")

    label = f"access {action} {address}"
    _plan_and_maybe_apply(application, scope_intents, kind="single", source={"label": label, "command": action}, options=options)


def _common_options(
    requester: str | None,
    request_email: Path | None,
    ref: str | None,
    approved_by: str | None,
    second_approver: str | None,
    override: str | None,
    output: Path | None,
    yes: bool,
    dry_run: bool,
    json_output: bool,
) -> dict[str, Any]:
    return {
        "requester": requester,
        "request_email": request_email,
        "ref": ref,
        "approved_by": approved_by,
        "second_approver": second_approver,
        "override": override,
        "output": output,
        "yes": yes,
        "dry_run": dry_run,
        "json_output": json_output,
    }


DryRun = Annotated[bool, typer.Option("--dry-run", help="Show the plan; write and change nothing.")]


@app.command("grant")
def grant(
    context: typer.Context,
    email: Email,
    role: Role = None,
    groups: Groups = None,
    organization: Organization = None,
    all_groups: Annotated[bool, typer.Option("--all-groups", help="Every group of the organization given with --org.")] = False,
    responsibility: Responsibility = None,
    resend: Annotated[bool, typer.Option("--resend", help="Send a new invitation to someone whose invitation is pending.")] = False,
    requester: Requester = None,
    request_email: RequestEmail = None,
    ref: Ref = None,
    approved_by: ApprovedBy = None,
    second_approver: SecondApprover = None,
    override: Override = None,
    output: Output = None,
    yes: Yes = False,
    dry_run: DryRun = False,
    json_output: Json = False,
) -> None:
    """Invite a person to a group (--group) or an organization (--org) with a role."""
    options = _common_options(requester, request_email, ref, approved_by, second_approver, override, output, yes, dry_run, json_output)
    _single(context, "grant", email=email, groups=groups, organization=organization, all_groups=all_groups, role=role, responsibility=responsibility, resend=resend, options=options)


@app.command("set-role")
def set_role(
    context: typer.Context,
    email: Email,
    role: Role = None,
    groups: Groups = None,
    organization: Organization = None,
    all_groups: Annotated[bool, typer.Option("--all-groups", help="Every group of the person in the organization given with --org.")] = False,
    responsibility: Responsibility = None,
    requester: Requester = None,
    request_email: RequestEmail = None,
    ref: Ref = None,
    approved_by: ApprovedBy = None,
    second_approver: SecondApprover = None,
    override: Override = None,
    output: Output = None,
    yes: Yes = False,
    dry_run: DryRun = False,
    json_output: Json = False,
) -> None:
    """Change a member's role in a group (--group) or an organization (--org)."""
    options = _common_options(requester, request_email, ref, approved_by, second_approver, override, output, yes, dry_run, json_output)
    _single(context, "set-role", email=email, groups=groups, organization=organization, all_groups=all_groups, role=role, responsibility=responsibility, resend=False, options=options)


@app.command("revoke")
def revoke(
    context: typer.Context,
    email: Email,
    groups: Groups = None,
    organization: Organization = None,
    all_groups: Annotated[bool, typer.Option("--all-groups", help="Every group of the person in the organization given with --org.")] = False,
    requester: Requester = None,
    request_email: RequestEmail = None,
    ref: Ref = None,
    approved_by: ApprovedBy = None,
    second_approver: SecondApprover = None,
    override: Override = None,
    output: Output = None,
    yes: Yes = False,
    dry_run: DryRun = False,
    json_output: Json = False,
) -> None:
    """Remove a person from a group (--group), every group (--all-groups --org) or an organization (--org)."""
    options = _common_options(requester, request_email, ref, approved_by, second_approver, override, output, yes, dry_run, json_output)
    _single(context, "revoke", email=email, groups=groups, organization=organization, all_groups=all_groups, role=None, responsibility=None, resend=False, options=options)


def _plan_and_maybe_apply(application: App, intents: list[Any], *, kind: str, source: dict[str, Any], options: dict[str, Any]) -> None:
    from helpctl.access.plan import default_plan_path, write_plan

    with _platform(application) as client:
        try:
            draft, operator = _draft(application, client, intents, kind=kind, source=source, options=options)
        except HelpctlError as error:
            _print_problems(application, error)
            raise
        if options["dry_run"]:
            _print_draft(application, draft, None)
            return
        if not draft.operations:
            _print_draft(application, draft, None)
            application.output.info("nothing to do: every requested change is already in effect")
            return
        path = options["output"] or default_plan_path(draft.header["id"])
        write_plan(path, draft.header, draft.operations, draft.skipped)
        if not options["approved_by"]:
            _print_draft(application, draft, path)
            from helpctl.errors import PreconditionFailed

            raise PreconditionFailed(
                f"the change needs an approval, so nothing was changed; plan written to {path}",
                hint=f"helpctl access approve {path} --by WHO --ref REQUEST, then helpctl access apply {path}; or rerun with --approved-by WHO --ref REQUEST",
            )
        if not application.output.json_mode:
            _print_draft(application, draft, path)
        _approve(application, client, path, operator, options["approved_by"], options["ref"], options["second_approver"], options["override"])
        _apply(application, client, path, operator, resume=False, yes=options["yes"])


def _draft(application: App, client: Any, intents: list[Any], *, kind: str, source: dict[str, Any], options: dict[str, Any], notes: list[str] | None = None) -> tuple[Draft, Any]:
    from helpctl.access.plan import Planner, prepare
    from helpctl.access.roles import RoleCatalog
    from helpctl.access.state import StateReader

    operator = _operator(client)
    request = _request(application, options)
    planner = Planner(StateReader(client), RoleCatalog.from_client(client), operator.email)
    profile = application.profile
    draft = prepare(
        planner,
        intents,
        kind=kind,
        source=source,
        request=request,
        operator=operator.as_dict(),
        profile=profile.name,
        platform_url=profile.platform.url,
        settings=profile.access,
        notes=notes or [],
    )
    return draft, operator


def _request(application: App, options: dict[str, Any]) -> dict[str, Any]:
    """Return the request behind the plan: the reference, the requester and the request e-mail."""
    from helpctl.access.approval import CASE_ID, read_request_email

    request: dict[str, Any] = {"ref": options.get("ref")}
    if options.get("request_email"):
        mail = read_request_email(options["request_email"])
        request["email"] = mail
        request["requester"] = mail["from"]
    if options.get("requester"):
        request["requester"] = _check_email(options["requester"], "--requester")
    ref = (options.get("ref") or "").strip().lower()
    if not request.get("requester") and CASE_ID.match(ref):
        case = application.store.load(ref)
        request["case"] = case.id
        request["requester"] = case.requester.email.lower() or None
    return request


def _print_problems(application: App, error: HelpctlError) -> None:
    problems = getattr(error, "problems", None)
    if not problems or application.output.json_mode:
        return
    for problem in problems:
        application.output.warn(str(problem))


def _print_draft(application: App, draft: Draft, path: Path | None) -> None:
    output = application.output
    if output.json_mode:
        output.json({"plan": str(path) if path else None, "header": draft.header, "operations": draft.operations, "skipped": draft.skipped})
        return
    _print_plan(application, draft.header, draft.operations, draft.skipped, approval=None, limit=PREVIEW_ROWS)
    if path is not None:
        output.info(f"plan written to {path}")


def _print_plan(application: App, header: dict[str, Any], operations: Any, skipped: Any, approval: dict[str, Any] | None, limit: int | None) -> None:
    output = application.output
    summary = header.get("summary", {})
    output.line(f"Plan {header.get('id')} ({header.get('kind')}): {summary.get('operations', 0)} operation(s), "
                f"{summary.get('dangerous', 0)} dangerous, {summary.get('skipped', 0)} skipped")
    request = header.get("request") or {}
    if request.get("requester_check"):
        check = request["requester_check"]
        output.line(f"  requester: {check['summary']} ({'verified' if check.get('verified') else 'NOT verified'})")
    for warning in header.get("warnings", []):
        output.line(f"  warning: {warning}")
    for reason in header.get("policy", {}).get("second_approver_reasons", []):
        output.line(f"  needs a second approver: {reason}")
    for note in header.get("notes", []):
        output.line(f"  note: {note}")

    rows = []
    listed = 0
    for operation in operations:
        if limit is not None and listed >= limit:
            break
        listed += 1
        mark = "!" if operation.get("dangerous") else ""
        rows.append([operation.get("line") or operation["index"] + 1, mark, operation["action"], operation["email"],
                     operation["group"] or operation["organization"], operation.get("role") or "", "; ".join(operation["effects"])])
    if rows:
        output.table(["row", "!", "action", "email", "target", "role", "effects"], rows)
    total = summary.get("operations", 0)
    if limit is not None and total > listed:
        output.info(f"... {total - listed} more operation(s): 'helpctl access plan show PLAN' lists them all")
    skipped_rows = [[item.get("line") or "", item["email"], item["reason"]] for item in list(skipped)[: limit or None]]
    if skipped_rows:
        output.table(["row", "email", "skipped because"], skipped_rows, title="Skipped (already true)")
    if approval:
        second = f" and {approval['second_approver']}" if approval.get("second_approver") else ""
        output.line(f"Approved by {approval['by']}{second} at {approval['at']} for {approval['ref']} (case {approval['case']})")


# ---------------------------------------------------------------------------------------------
# bulk plans


@plan_app.callback()
def plan_command(
    context: typer.Context,
    csv_file: Annotated[Optional[Path], typer.Option("--csv", help="CSV with an email column (and optional group, role, responsibility).")] = None,
    action: Annotated[Optional[str], typer.Option("--action", help="revoke, set-role or grant.")] = None,
    groups: Groups = None,
    all_groups: Annotated[bool, typer.Option("--all-groups", help="Every group of each person in the organization given with --org.")] = False,
    organization: Organization = None,
    role: Role = None,
    responsibility: Responsibility = None,
    requester: Requester = None,
    request_email: RequestEmail = None,
    ref: Ref = None,
    output: Output = None,
    json_output: Json = False,
) -> None:
    """Plan changes for every row of a CSV; 'access plan show PLAN' prints a plan."""
    if context.invoked_subcommand is not None:
        return
    application: App = context.obj
    _json(application, json_output)
    if csv_file is None or action is None:
        raise UsageError("give --csv FILE and --action revoke|set-role|grant", hint="or 'helpctl access plan show PLAN'")
    if action not in ACTIONS:
        raise UsageError(f"--action: {action!r} is not an action", hint=f"use one of: {', '.join(ACTIONS)}")
    if all_groups and not organization:
        raise UsageError("--all-groups needs --org", hint="name the organization whose groups to change")

    from helpctl.access.csvinput import read_csv
    from helpctl.access.plan import InvalidRows, Problem, default_plan_path, write_plan

    report = read_csv(csv_file)
    intents = _csv_intents(report.rows, action, [name.strip().lower() for name in groups or []], all_groups, organization, role, responsibility)
    options = {"requester": requester, "request_email": request_email, "ref": ref}
    notes = _csv_notes(report)
    problems = [Problem(item.line, item.message) for item in report.problems]
    with _platform(application) as client:
        source = {"label": str(csv_file), "file": str(csv_file), "action": action, **report.summary()}
        draft = None
        try:
            draft, _ = _draft(application, client, intents, kind="bulk", source=source, options=options, notes=notes)
        except InvalidRows as error:
            problems += error.problems
    if problems or draft is None:
        # Rows the CSV reader rejected and rows the platform's state rejected, reported together.
        error = InvalidRows(sorted(problems, key=lambda problem: (problem.line or 0, problem.message)), str(csv_file))
        _print_problems(application, error)
        raise error
    path = output or default_plan_path(draft.header["id"])
    write_plan(path, draft.header, draft.operations, draft.skipped)
    _print_draft(application, draft, path)


def _csv_intents(rows: list[Any], action: str, groups: list[str], all_groups: bool, organization: str | None, role: str | None, responsibility: str | None) -> list[Any]:
    from helpctl.access.plan import Intent

    intents = []
    for row in rows:
        common = {"role": row.role or role, "responsibility": row.responsibility or responsibility, "line": row.line}
        if row.group:
            intents.append(Intent(action, "group", row.email, group=row.group, organization=organization, **common))
        elif groups:
            intents += [Intent(action, "group", row.email, group=name, organization=organization, **common) for name in groups]
        elif all_groups:
            intents.append(Intent(action, "group", row.email, organization=organization, all_groups=True, **common))
        elif organization:
            intents.append(Intent(action, "organization", row.email, organization=organization, role=row.role or role, line=row.line))
        else:
            intents.append(Intent(action, "group", row.email, **common))
    return intents


def _csv_notes(report: Any) -> list[str]:
    notes = []
    if report.blank_rows:
        notes.append(f"{report.blank_rows} blank row(s) skipped")
    for line, first in report.duplicates:
        notes.append(f"line {line} repeats line {first}; kept once")
    if report.ignored_columns:
        notes.append(f"columns ignored: {', '.join(report.ignored_columns)}")
    return notes


@plan_app.command("show")
def plan_show(
    context: typer.Context,
    plan_path: PlanPath,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", min=1, help="Show at most this many operations.")] = None,
    json_output: Json = False,
) -> None:
    """Print a plan: operations with their effects and warnings, skipped rows, the approval."""
    from helpctl.access.plan import PlanFile

    application: App = context.obj
    _json(application, json_output)
    plan = PlanFile(plan_path)
    unchanged = plan.computed_hash() == plan.stored_hash
    if application.output.json_mode:
        application.output.json(
            {"plan": str(plan.path), "header": plan.header, "operations": list(plan.operations()), "skipped": list(plan.skipped()),
             "content_hash": plan.stored_hash, "content_matches_hash": unchanged, "approval": plan.approval}
        )
        return
    _print_plan(application, plan.header, plan.operations(), plan.skipped(), plan.approval, limit)
    if not unchanged:
        application.output.warn("the plan's content does not match its content hash: it was edited, and apply will refuse it")
    elif not plan.approval:
        application.output.info(f"not approved yet: helpctl access approve {plan.path} --by WHO --ref REQUEST")


# ---------------------------------------------------------------------------------------------
# approve, apply, undo


@app.command("approve")
def approve(
    context: typer.Context,
    plan_path: PlanPath,
    by: Annotated[str, typer.Option("--by", help="Who approved the plan (not the operator).")],
    ref: Annotated[str, typer.Option("--ref", help="Case id of the request behind the plan; other text opens an access-request case.")],
    second_approver: SecondApprover = None,
    override: Override = None,
    json_output: Json = False,
) -> None:
    """Record an approval in the plan (bound to its content), the case and the audit log."""
    application: App = context.obj
    _json(application, json_output)
    with _platform(application) as client:
        operator = _operator(client)
        approval = _approve(application, client, plan_path, operator, by, ref, second_approver, override)
    if application.output.json_mode:
        application.output.json({"plan": str(plan_path), "approval": approval})


def _approve(application: App, client: Any, path: Path, operator: Any, by: str, ref: str, second: str | None, override: str | None) -> dict[str, Any]:
    from helpctl.access.approval import approve as record_approval
    from helpctl.access.plan import PlanFile
    from helpctl.access.state import StateReader

    plan = PlanFile(path)
    approval = record_approval(
        plan,
        by=by,
        ref=ref,
        operator=operator,
        settings=application.profile.access,
        store=application.store,
        profile=application.profile.name,
        second_approver=second,
        override=override,
        reader=StateReader(client),
    )
    opened = " (opened for this request)" if approval["case_opened"] else ""
    application.output.success(f"plan {plan.id} approved by {approval['by']} for case {approval['case']}{opened}")
    for flag in approval["flags"]:
        application.output.warn(f"approved over a flag: {flag} (override: {approval['override']})")
    return approval


@app.command("apply")
def apply(
    context: typer.Context,
    plan_path: PlanPath,
    resume: Annotated[bool, typer.Option("--resume", help="Finish a plan whose earlier apply stopped; done operations are not repeated.")] = False,
    yes: Yes = False,
    json_output: Json = False,
) -> None:
    """Apply an approved plan: concurrent, adapting to rate limits, journaled, audited."""
    application: App = context.obj
    _json(application, json_output)
    with _platform(application) as client:
        _apply(application, client, plan_path, _operator(client), resume=resume, yes=yes)


def _apply(application: App, client: Any, path: Path, operator: Any, *, resume: bool, yes: bool) -> None:
    from helpctl.access.apply import ApplyRun
    from helpctl.access.state import StateReader
    from helpctl.clients.platform_access import AccessMutations

    renderer = _ProgressRenderer(application)
    run = ApplyRun(
        path,
        mutations=AccessMutations(client),
        reader=StateReader(client),
        operator=operator,
        settings=application.profile.access,
        store=application.store,
        resume=resume,
        confirm=lambda question: application.confirm(question, assume_yes=yes),
        progress=renderer.update,
    )
    try:
        report = run.run()
    except HelpctlError as error:
        _print_problems(application, error)
        raise
    except KeyboardInterrupt as error:
        # Raised here as a HelpctlError so that the exit code is 130 whatever Typer does with Ctrl-C.
        raise Interrupted(
            f"apply of {path} interrupted; the operations in flight finished and are in the journal",
            hint=f"helpctl access apply {path} --resume",
        ) from error
    finally:
        renderer.close()
    _print_report(application, report)


class _ProgressRenderer:
    """A progress bar with rate and ETA on a terminal; plain lines every few seconds otherwise."""

    def __init__(self, application: App) -> None:
        self.application = application
        self.interval = application.profile.access.progress_interval
        self.terminal = sys.stderr.isatty() and not application.output.json_mode and application.output.quiet < 1
        self._bar: Any = None
        self._task: Any = None
        self._last_line = time.monotonic()

    def update(self, progress: Progress) -> None:
        if self.terminal:
            self._draw(progress)
        elif time.monotonic() - self._last_line >= self.interval and progress.done < progress.total:
            self._last_line = time.monotonic()
            eta = f"{progress.eta:.0f} s" if progress.eta is not None else "unknown"
            self.application.output.info(
                f"apply: {progress.done}/{progress.total} done ({progress.failed} failed), {progress.rate:.1f}/s, "
                f"ETA {eta}, {progress.in_flight} in flight (limit {progress.limit}), {progress.rate_limited} rate-limited responses"
            )

    def _draw(self, progress: Progress) -> None:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

            self._bar = Bar(
                TextColumn("apply"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]:.1f}/s"),
                TimeRemainingColumn(), TextColumn("limit {task.fields[limit]}, {task.fields[failed]} failed"),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("apply", total=progress.total, rate=0.0, limit=progress.limit, failed=0)
        self._bar.update(self._task, completed=progress.done, rate=progress.rate, limit=progress.limit, failed=progress.failed)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _print_report(application: App, report: ApplyReport) -> None:
    output = application.output
    if output.json_mode:
        output.json(report.as_dict())
    else:
        output.line(f"Plan {report.plan_id}: {report.applied} applied, {report.already_in_effect} already in effect, "
                    f"{report.failed} failed, {report.unknown} unknown, {report.not_visible} not visible after apply"
                    + (f", {report.done_before} done in earlier runs" if report.done_before else ""))
        seconds = report.seconds
        output.line(f"  mutations took {seconds.get('mutations', 0):.2f} s (checks {seconds.get('checks', 0):.2f} s, "
                    f"verification {seconds.get('verify', 0):.2f} s); {report.rate_limited} rate-limited response(s); "
                    f"concurrency peak {report.concurrency.get('peak')}, final {report.concurrency.get('final')}")
        output.line(f"  results: {report.results_path}")
        if report.failures:
            output.table(["row", "operation", "outcome", "message"], [[item["row"], item["operation"], item["outcome"], item["message"]] for item in report.failures])
    if report.complete:
        return
    reason = report.stopped or ("interrupted" if report.interrupted else None)
    problems = report.failed + report.unknown + report.not_visible + report.unverified
    message = f"plan {report.plan_id} is not complete: {problems} operation(s) need attention, {report.pending} not done"
    if reason:
        message += f" ({reason})"
    raise PartialResult(message, hint=f"see {report.results_path}; 'helpctl access apply {report.plan_path} --resume' finishes what is left")


@app.command("undo")
def undo(
    context: typer.Context,
    plan_path: PlanPath,
    output: Output = None,
    json_output: Json = False,
) -> None:
    """Build the inverse plan of an applied plan; it needs its own approval."""
    from helpctl.access.plan import PlanFile, write_plan
    from helpctl.access.undo import default_undo_path, undo_intents

    application: App = context.obj
    _json(application, json_output)
    plan = PlanFile(plan_path)
    request = undo_intents(plan)
    if not request.intents:
        for note in request.notes:
            application.output.info(note)
        application.output.info(f"nothing to undo for plan {plan.id}")
        return
    source = {"label": f"undo of {plan.id}", "undo_of": plan.id, "plan": str(plan.path)}
    options = {"ref": (plan.approval or {}).get("case")}
    with _platform(application) as client:
        try:
            draft, _ = _draft(application, client, request.intents, kind="undo", source=source, options=options, notes=request.notes)
        except HelpctlError as error:
            _print_problems(application, error)
            raise
    path = output or default_undo_path(plan.path)
    write_plan(path, draft.header, draft.operations, draft.skipped)
    _print_draft(application, draft, path)
    if not application.output.json_mode:
        application.output.info(f"approve it before applying: helpctl access approve {path} --by WHO --ref REQUEST")
