"""`helpctl notify CASE TEMPLATE`: write to the case's requester from a template."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from helpctl.context import App
from helpctl.errors import PreconditionFailed

if TYPE_CHECKING:
    from helpctl.notify import Draft

TEMPLATE_HELP = "received, needs-info, update, filed, access-done, resolved or reopened."


def register(app: typer.Typer) -> None:
    app.command("notify")(notify_command)


def notify_command(
    context: typer.Context,
    case_id: Annotated[str, typer.Argument(metavar="CASE", help="Case id, or a unique prefix of one.")],
    template: Annotated[str, typer.Argument(metavar="TEMPLATE", help=f"Message to send: {TEMPLATE_HELP}")],
    lang: Annotated[Optional[str], typer.Option("--lang", help="Language of the message: en or es (default: the case's).")] = None,
    note: Annotated[Optional[str], typer.Option("--note", help="Text for the requester, placed in the message.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the exact message and the redaction check's result without sending it.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Send without asking for confirmation.")] = False,
    cross_profile: Annotated[bool, typer.Option("--cross-profile", help="Run on a case opened under another profile.")] = False,
) -> None:
    """Send the requester a message in English or Spanish, threaded with their e-mail."""
    from helpctl import notify

    application: App = context.obj
    case = application.store.load(case_id)
    application.check_case_profile(case, cross_profile)
    message = notify.draft(case, template, application.profile, lang=lang, note=note)

    if dry_run:
        show_draft(application, message)
        _stop_if_blocked(message)
        return

    if message.problems:
        show_problems(application, message)
        _stop_if_blocked(message)

    application.announce_profile()
    if not (yes or application.no_input):
        application.output.info(message.render())
    application.confirm(f"Send the {message.template} message to {message.to} for case {message.case_id}?", assume_yes=yes)
    result = notify.send(application.store, case.id, message, application.profile, application.actor)

    if application.output.json_mode:
        application.output.json(result.as_dict())
        return
    ids = ", ".join(result.message_ids)
    application.output.success(f"Sent the {message.template} message ({message.language}) to {message.to} for case {message.case_id} (Mandrill id {ids})")


def show_draft(application: App, message: Draft) -> None:
    """Print the message as it would be sent, then the redaction check's result."""
    output = application.output
    if output.json_mode:
        output.json({"dry_run": True, "sendable": not message.problems, **message.as_dict()})
        return

    output.line(message.render().rstrip("\n"))
    if message.problems:
        show_problems(application, message)
    else:
        output.info("redaction check: passed")
    output.info("dry run: nothing was sent")


def show_problems(application: App, message: Draft) -> None:
    application.output.warn("redaction check: the message is blocked")
    for problem in message.problems:
        application.output.warn(problem)


def _stop_if_blocked(message: Draft) -> None:
    if message.problems:
        raise PreconditionFailed(
            f"the {message.template} message for case {message.case_id} is blocked by the redaction check ({len(message.problems)} problems)",
            hint="reword --note and check the message again with --dry-run",
        )
