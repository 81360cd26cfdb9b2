"""`helpctl demo`: the whole flow on the embedded sandbox, from a client's e-mail to an issue."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from typing import Annotated

import typer

from helpctl.context import App
from helpctl.errors import UsageError

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"


@dataclasses.dataclass(frozen=True)
class Scenario:
    email: str
    # The sandbox's story happens relative to the moment it starts; the demo dates the
    # e-mail this long before it so that the evidence lines up with the report.
    reported_before: dt.timedelta
    description: str


SCENARIOS = {
    "bug": Scenario("kiwicorp-vulnerabilities.eml", dt.timedelta(hours=2), "the vulnerabilities list disagrees with the dashboard"),
    "incident": Scenario("kiwicorp-findings-incident.eml", dt.timedelta(hours=26), "the findings page fails for a whole team"),
    "feature": Scenario("kiwicorp-members-export.eml", dt.timedelta(hours=2), "a request to export the member list"),
    "answered": Scenario("kiwicorp-carlos-access.eml", dt.timedelta(hours=2), "an invited user who never got in"),
}
DEMO_EMAIL = DEMO_DIR / SCENARIOS["bug"].email
DEMO_TIMEOUT = 60.0


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    context: typer.Context,
    scenario: Annotated[str, typer.Option("--scenario", help=f"Seeded case to walk through: {', '.join(SCENARIOS)}.")] = "bug",
) -> None:
    """Run case new → triage → classify → file against the sandbox on 127.0.0.1."""
    from helpctl.sandbox import Sandbox

    application: App = context.obj
    if scenario not in SCENARIOS:
        raise UsageError(f"--scenario: unknown scenario {scenario!r}", hint=f"use one of: {', '.join(SCENARIOS)}")
    if application.profile_option not in (None, "sandbox"):
        application.output.warn(f"the demo always runs on the sandbox profile, not {application.profile_option!r}")
    application.profile_option = "sandbox"

    with Sandbox() as sandbox, _environment(sandbox.environment()), _without_tokens():
        application.announce_profile()
        run_demo(application, SCENARIOS[scenario])


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


@contextlib.contextmanager
def _without_tokens() -> Iterator[None]:
    """Hide HELPCTL_*_TOKEN variables: a real token must never be sent to the sandbox."""
    from helpctl import credentials

    saved = {}
    for service in credentials.SERVICES:
        name = credentials.environment_variable(service)
        if name in os.environ:
            saved[name] = os.environ.pop(name)
    try:
        yield
    finally:
        os.environ.update(saved)


def demo_message(scenario: Scenario, now: dt.datetime) -> bytes:
    """Return the scenario's e-mail with a fresh Message-ID, dated to line up with the sandbox's story."""
    import email
    import email.policy
    import email.utils

    message = email.message_from_bytes((DEMO_DIR / scenario.email).read_bytes(), policy=email.policy.default)
    message.replace_header("Date", email.utils.format_datetime(now - scenario.reported_before))
    message.replace_header("Message-ID", f"<demo-{uuid.uuid4().hex[:16]}@kiwicorp.co>")
    return message.as_bytes()


def run_demo(application: App, scenario: Scenario) -> None:
    from helpctl import intake, services, triage
    from helpctl.classification import classify_case
    from helpctl.commands.case_view import render_case
    from helpctl.commands.file import show_outcome
    from helpctl.filing_case import file_case
    from helpctl.probing import record_findings

    output, store, profile = application.output, application.store, application.profile
    steps = _Steps(output)

    steps.start(f"Open a case from the client's e-mail: {scenario.description}", f"helpctl case new --from-email {scenario.email}")
    raw = demo_message(scenario, dt.datetime.now(dt.timezone.utc))
    message = intake.parse_message(raw)
    case = intake.open_or_thread(store, message, raw, profile=profile.name, actor=application.actor).case
    output.info(f"  case {case.id} from {case.requester.display()}: {case.subject}")

    steps.start("Gather evidence from every source at once", f"helpctl triage {case.id}")
    progress = lambda name, state, detail: state == "done" and output.info(f"  {name}: {detail}")
    runs = triage.run_probes(case, profile, store, list(triage.PROBES), timeout=DEMO_TIMEOUT, progress=progress)
    for name, run in runs.items():
        record_findings(store, case.id, name, run.findings, application.actor)

    steps.start("Classify the case", f"helpctl classify {case.id}")
    result = classify_case(store, case.id, profile, application.actor)
    output.info(f"  label: {result['label']}")
    for rule in result["rules"]:
        output.info(f"    {rule['label']:<9} {rule['name']}: {rule['description']}")

    if result["label"] == "answered":
        _close_answered(application, case.id)
    else:
        steps.start("File the issue", f"helpctl file {case.id}")
        gitlab = services.gitlab_client(profile, profile.gitlab.fixed_token)
        outcome = file_case(store, case.id, profile, application.actor, client=gitlab)
        show_outcome(application, outcome)
        _follow_up(application, steps, case.id, outcome["iid"], gitlab)

    output.line()
    render_case(output, store.load(case.id), store.folder(case.id))
    output.info(f"case folder: {store.folder(case.id)}")


def _follow_up(application: App, steps: _Steps, case_id: str, iid: int, gitlab) -> None:
    """Tell the requester, let the assignee close the issue, and let sync tell them again."""
    from helpctl import notify, services, sync

    output, store, profile = application.output, application.store, application.profile
    mandrill = services.mandrill_client(profile, profile.mandrill.fixed_token)

    steps.start("Tell the requester the issue was filed", f"helpctl notify {case_id} filed")
    draft = notify.draft(store.load(case_id), "filed", profile)
    sent = notify.send(store, case_id, draft, profile, application.actor, client=mandrill)
    output.info(f"  {draft.language}: \"{draft.subject}\" to {draft.to}: {', '.join(item.status for item in sent.statuses)}")

    steps.start("The assignee fixes the bug and closes the issue (in the sandbox)", f"issue #{iid} closed on GitLab")
    gitlab.set_issue_state(iid, "close")

    steps.start("Follow the issue and send the requester the owed update", "helpctl sync --notify --yes")
    report = sync.sync_cases(store, [case_id], profile, application.actor, client=gitlab)
    for item in report.synced:
        output.info(f"  {item.case_id}: {', '.join(event.get('event', '?') for event in item.events) or 'no change'}")
    sync.send_updates(store, report, profile, application.actor, client=mandrill)
    for owed in report.owed:
        language = getattr(owed.draft, "language", "?")
        status = "sent" if owed.sent is not None and owed.sent.ok else f"not sent ({owed.problem or owed.send_error})"
        output.info(f"  {owed.template} ({language}) to the requester: {status}")
        if owed.draft is not None:
            output.info("  " + "\n  ".join(owed.draft.text.splitlines()[:6]))

    steps.start("Close the case", f"helpctl case close {case_id} --resolution 'fixed in issue #{iid}'")
    with store.edit(case_id) as case:
        previous = case.status
        case.status = "closed"
        case.resolution = f"fixed in issue #{iid}"
        case.record(application.actor, "closed", resolution=case.resolution, previous_status=previous)


def _close_answered(application: App, case_id: str) -> None:
    """Close a case answered by its evidence: it needs no issue."""
    resolution = "answered by the evidence: see the findings behind the classification"
    application.output.info(f"\n   no issue needed; $ helpctl case close {case_id} --resolution '...'")
    with application.store.edit(case_id) as case:
        case.status = "closed"
        case.resolution = resolution
        case.record(application.actor, "closed", resolution=resolution, previous_status="open")


class _Steps:
    def __init__(self, output) -> None:
        self.output = output
        self.number = 0

    def start(self, title: str, command: str) -> None:
        self.number += 1
        self.output.info(f"\n{self.number}. {title}\n   $ {command}")
