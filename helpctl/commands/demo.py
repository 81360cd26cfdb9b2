"""`helpctl demo`: the whole flow on the embedded sandbox, from a client's e-mail to an issue."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import typer

from helpctl.context import App

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
DEMO_EMAIL = DEMO_DIR / "kiwicorp-vulnerabilities.eml"
# The sandbox's story happens relative to the moment it starts; the demo dates the e-mail
# this long before it so that the evidence lines up with the report.
REPORTED_BEFORE = dt.timedelta(hours=2)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(context: typer.Context) -> None:
    """Run case new → probe → classify → file against the sandbox on 127.0.0.1."""
    from helpctl.sandbox import Sandbox

    application: App = context.obj
    if application.profile_option not in (None, "sandbox"):
        application.output.warn(f"the demo always runs on the sandbox profile, not {application.profile_option!r}")
    application.profile_option = "sandbox"

    with Sandbox() as sandbox, _environment(sandbox.environment()):
        application.announce_profile()
        run_demo(application, sandbox)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def demo_message(now: dt.datetime) -> bytes:
    """The bundled e-mail with a fresh Message-ID and a Date two hours before `now`."""
    import email
    import email.policy
    import email.utils

    message = email.message_from_bytes(DEMO_EMAIL.read_bytes(), policy=email.policy.default)
    message.replace_header("Date", email.utils.format_datetime(now - REPORTED_BEFORE))
    message.replace_header("Message-ID", f"<demo-{uuid.uuid4().hex[:16]}@kiwicorp.co>")
    return message.as_bytes()


def run_demo(application: App, sandbox) -> None:
    from helpctl import intake, services
    from helpctl.classification import classify_case
    from helpctl.commands.case_view import render_case
    from helpctl.commands.file import show_outcome
    from helpctl.filing_case import file_case
    from helpctl.probes import platform as platform_probe
    from helpctl.probing import record_findings

    output, store, profile = application.output, application.store, application.profile
    steps = _Steps(output)

    steps.start("Open a case from the client's e-mail", f"helpctl case new --from-email {DEMO_EMAIL.name}")
    raw = demo_message(dt.datetime.now(dt.timezone.utc))
    message = intake.parse_message(raw)
    case = intake.open_or_thread(store, message, raw, profile=profile.name, actor=application.actor).case
    output.info(f"  case {case.id} from {case.requester.display()}: {case.subject}")

    steps.start("Probe the platform's GraphQL API", f"helpctl probe platform {case.id}")
    client = services.platform_client(profile, profile.platform.fixed_token)
    findings = platform_probe.run(case, client, store)
    record_findings(store, case.id, "platform", findings, application.actor)
    for finding in findings:
        output.info(f"  [{finding.outcome}] {finding.summary}")

    steps.start("Classify the case", f"helpctl classify {case.id}")
    result = classify_case(store, case.id, profile, application.actor)
    output.info(f"  label: {result['label']}; rules: {', '.join(rule['name'] for rule in result['rules']) or 'none'}")

    steps.start("File the issue", f"helpctl file {case.id}")
    gitlab = services.gitlab_client(profile, profile.gitlab.fixed_token)
    outcome = file_case(store, case.id, profile, application.actor, client=gitlab)
    show_outcome(application, outcome)

    output.line()
    render_case(output, store.load(case.id), store.folder(case.id))
    output.info(f"case folder: {store.folder(case.id)}")


class _Steps:
    def __init__(self, output) -> None:
        self.output = output
        self.number = 0

    def start(self, title: str, command: str) -> None:
        self.number += 1
        self.output.info(f"\n{self.number}. {title}\n   $ {command}")
