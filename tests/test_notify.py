"""Notifications: rendering, the redaction check, and sending through the Mandrill stand-in.

Sends go over a real socket on 127.0.0.1 with helpctl's httpx client; the stand-in's
request log shows the exact `messages/send` body.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
import typer

from helpctl import cli, notify
from helpctl.app import build_app
from helpctl.audit import AuditLog
from helpctl.cases.model import Case, Person
from helpctl.cases.store import CaseStore
from helpctl.clients.mandrill import MandrillClient
from helpctl.commands import notify as notify_command
from helpctl.config.profiles import load_profile
from helpctl.errors import ConfigError, ExitCode, HelpctlError, PreconditionFailed, ServiceError, UsageError
from helpctl.findings import Finding
from helpctl.intake import open_or_thread, parse_message
from helpctl.sandbox import Sandbox
from helpctl.sandbox.server import HTML_502, ScriptedResponse
from helpctl.sla import FIRST_RESPONSE, NEXT_UPDATE, clocks

ENGINEER = "support.sandbox@fluidattacks.com"
ANA = "ana.gomez@kiwicorp.co"
CARLOS = "carlos.ruiz@kiwicorp.co"
DEMO_ID = "<CAKw7f3a9c21.20261203091200.ana@mail.kiwicorp.co>"
REPLY_ID = "<CAKw7f3a9c21.20261204090000.ana@mail.kiwicorp.co>"
ISSUE_URL = "http://127.0.0.1:8702/fluidattacks/universe/-/issues/41"
# Friday 2026-12-04 10:00 at UTC-5: the next update is due on Monday at 14:00.
NOW = dt.datetime(2026, 12, 4, 15, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def mandrill(monkeypatch) -> Iterator:
    with Sandbox(services=["mandrill"]) as sandbox:
        for name, value in sandbox.environment().items():
            monkeypatch.setenv(name, value)
        yield sandbox.service("mandrill")


@pytest.fixture
def profile():
    return load_profile("sandbox")


@pytest.fixture
def store() -> CaseStore:
    return CaseStore()


def typed_case(store: CaseStore, requester: str = ANA, language: str = "en", **fields) -> Case:
    case = Case(
        id=fields.pop("case_id", "261204-kiwi01"),
        profile="sandbox",
        subject=fields.pop("subject", "Vulnerabilities tab is empty"),
        requester=Person(requester, fields.pop("name", "Ana Gómez")),
        language=language,
        organization="kiwicorp",
        **fields,
    )
    case.record(ENGINEER, "opened", source="typed")
    return store.create(case)


def demo_case(store: CaseStore) -> Case:
    raw = importlib.resources.files("helpctl.demo").joinpath("kiwicorp-vulnerabilities.eml").read_bytes()
    return open_or_thread(store, parse_message(raw), raw, profile="sandbox", actor=ENGINEER).case


def email_bytes(message_id: str, in_reply_to: str, references: list[str], body: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Ana Gómez <ana.gomez@kiwicorp.co>"
    message["To"] = "Fluid Attacks Help <help@fluidattacks.com>"
    message["Subject"] = "Re: Vulnerabilidades no aparecen"
    message["Date"] = "Fri, 4 Dec 2026 09:00:00 -0500"
    message["Message-ID"] = message_id
    message["In-Reply-To"] = in_reply_to
    message["References"] = " ".join(references)
    message.set_content(body)
    return bytes(message)


def add_reply(store: CaseStore, raw: bytes):
    return open_or_thread(store, parse_message(raw), raw, profile="sandbox", actor=ENGINEER)


def sent_bodies(service) -> list[dict]:
    return [json.loads(item.body) for item in service.requests_to("/messages/send.json", "POST")]


def run(*arguments: str) -> int:
    """Run helpctl with the notify command registered, through the CLI's error reporting."""
    app = build_app()
    notify_command.register(app)
    command = typer.main.get_command(app)
    try:
        command.main(args=list(arguments), prog_name="helpctl", standalone_mode=False)
    except HelpctlError as error:
        return cli._report(error, "--json" in arguments, False)
    return ExitCode.OK


def quiet_client(profile) -> MandrillClient:
    """A Mandrill client whose retry pauses do not wait."""
    return MandrillClient(profile.mandrill, "sandbox-mandrill-key", sleep=lambda seconds: None)


# ----- rendering -----


def test_english_rendering(store, profile):
    case = typed_case(store)
    message = notify.draft(case, "received", profile, now=NOW)

    assert message.language == "en"
    assert message.subject == "Re: Vulnerabilities tab is empty [case 261204-kiwi01]"
    assert message.text.startswith("Hello Ana Gómez,\n")
    assert "opened case 261204-kiwi01" in message.text
    assert "by Monday 7 December 2026, 14:00 (UTC-05:00) at the latest" in message.text
    assert message.text.endswith("Best regards,\nFluid Attacks Help\n")
    assert "\n\n\n" not in message.text
    assert message.from_email == "help@fluidattacks.com"
    assert message.to == ANA
    assert message.problems == []


def test_spanish_rendering(store, profile):
    case = typed_case(store, language="es")
    message = notify.draft(case, "received", profile, now=NOW)

    assert message.language == "es"
    assert message.subject == "Re: Vulnerabilities tab is empty [caso 261204-kiwi01]"
    assert message.text.startswith("Hola, Ana Gómez:\n")
    assert "abrimos el caso 261204-kiwi01" in message.text
    assert "a más tardar el lunes 7 de diciembre de 2026, 14:00 (UTC-05:00)" in message.text
    assert "Saludos cordiales," in message.text


def test_every_template_renders_clean(store, profile):
    case = typed_case(store, issue={"url": ISSUE_URL, "iid": 41})
    for template in notify.TEMPLATES:
        for language in notify.LANGUAGES:
            message = notify.draft(case, template, profile, lang=language, note="We reviewed the group settings.", now=NOW)
            assert message.problems == [], (template, language)
            assert "261204-kiwi01" in message.subject
            assert "261204-kiwi01" in message.text
            assert "$" not in message.text


def test_language_choice(store, profile, isolated_environment):
    case = typed_case(store, language="es")
    assert notify.draft(case, "received", profile, lang="en", now=NOW).language == "en"

    case.language = ""
    assert notify.draft(case, "received", profile, now=NOW).language == "en"

    folder = isolated_environment / "config" / "profiles"
    folder.mkdir(parents=True)
    (folder / "spanish.yaml").write_text("extends: sandbox\nlanguage: es\n")
    assert notify.draft(case, "received", load_profile("spanish"), now=NOW).language == "es"

    with pytest.raises(UsageError):
        notify.draft(case, "received", profile, lang="fr", now=NOW)


def test_issue_link_only_when_filed(store, profile):
    case = typed_case(store)
    without = notify.draft(case, "update", profile, note="We are still checking.", now=NOW)
    assert "Issue:" not in without.text
    assert "http" not in without.text

    with pytest.raises(PreconditionFailed):
        notify.draft(case, "filed", profile, now=NOW)

    case.issue = {"url": ISSUE_URL, "iid": 41}
    filed = notify.draft(case, "filed", profile, now=NOW)
    assert f"Its reference is {ISSUE_URL}" in filed.text
    assert filed.issue_url == ISSUE_URL
    update = notify.draft(case, "update", profile, note="We are still checking.", now=NOW)
    assert f"Issue: {ISSUE_URL}" in update.text


def test_template_and_note_checks(store, profile):
    case = typed_case(store)
    with pytest.raises(UsageError):
        notify.draft(case, "goodbye", profile, now=NOW)
    with pytest.raises(UsageError):
        notify.draft(case, "needs-info", profile, now=NOW)
    with pytest.raises(UsageError):
        notify.draft(case, "update", profile, note="   ", now=NOW)

    case.requester.email = ""
    with pytest.raises(PreconditionFailed):
        notify.draft(case, "received", profile, now=NOW)


def test_profile_templates_override(store, profile, tmp_path):
    folder = tmp_path / "templates"
    (folder / "en").mkdir(parents=True)
    (folder / "en" / "received.txt").write_text("Subject: Got it ($case_id)\n\nHi $requester_name, we have $$case $case_id.\n$note\n")
    profile.notify.templates_dir = str(folder)
    case = typed_case(store)

    message = notify.draft(case, "received", profile, now=NOW)
    assert message.subject == "Got it (261204-kiwi01)"
    assert message.text == "Hi Ana Gómez, we have $case 261204-kiwi01.\n"
    assert message.template_source == str(folder / "en" / "received.txt")

    spanish = notify.draft(case, "received", profile, lang="es", now=NOW)
    assert spanish.template_source.endswith("templates/es/received.txt")
    assert spanish.text.startswith("Hola, Ana Gómez:")


def test_broken_override_templates(store, profile, tmp_path):
    folder = tmp_path / "templates"
    (folder / "en").mkdir(parents=True)
    profile.notify.templates_dir = str(folder)
    case = typed_case(store)

    (folder / "en" / "received.txt").write_text("Subject: x\n\nHello $nobody\n")
    with pytest.raises(ConfigError, match=r"unknown placeholder \$nobody"):
        notify.draft(case, "received", profile, now=NOW)

    (folder / "en" / "received.txt").write_text("Hello $requester_name\n")
    with pytest.raises(ConfigError, match="Subject"):
        notify.draft(case, "received", profile, now=NOW)

    (folder / "en" / "update.txt").write_text("Subject: x\n\nSee $issue_url\n$note\n")
    with pytest.raises(PreconditionFailed):
        notify.draft(case, "update", profile, note="hello", now=NOW)

    profile.notify.templates_dir = str(tmp_path / "missing")
    with pytest.raises(ConfigError):
        notify.draft(case, "received", profile, now=NOW)


def test_subject_stays_one_line(store, profile):
    case = typed_case(store, subject="Line one\r\nBcc: someone")
    message = notify.draft(case, "received", profile, now=NOW)
    assert "\n" not in message.subject
    assert message.render().count("\nBcc:") == 0


# ----- the redaction check -----


def problems_for(store, profile, note: str, **fields) -> list[str]:
    case = typed_case(store, **fields)
    return notify.draft(case, "update", profile, note=note, now=NOW).problems


def test_check_blocks_other_email(store, profile):
    problems = problems_for(store, profile, f"We invited {CARLOS} again.")
    assert problems == ["the message contains 1 e-mail address other than the requester's and the sender's (personal data)"]


def test_check_allows_requester_and_sender(store, profile):
    assert problems_for(store, profile, f"We checked {ANA.upper()}; write to help@fluidattacks.com anytime.") == []


def test_check_blocks_phone(store, profile):
    assert problems_for(store, profile, "Call Carlos at +57 300 555 1234.") == ["the message contains 1 phone number (personal data)"]


def test_check_blocks_secrets(store, profile):
    notes = {
        "token": "Use token=sandbox-platform-token-123 to retry.",
        "jwt": "Your session eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbmEifQ.c2lnbmF0dXJlc2ln failed.",
        "password": "The password: hunter2 works.",
        "authorization": "Send Authorization: Bearer abcdefghijklmnop with it.",
    }
    for kind, note in notes.items():
        problems = problems_for(store, profile, note, case_id=f"261204-{kind[:6]:0<6}")
        assert f"the message contains a secret ({kind})" in problems, (kind, problems)
        assert not any("hunter2" in problem or "abcdefghijklmnop" in problem for problem in problems)


def test_check_blocks_finding_summary(store, profile):
    finding = Finding(
        source="platform",
        check="vulnerabilities",
        subject="kiwiapp",
        outcome="ok",
        summary="kiwiapp reports 7 open vulnerabilities but the list returns only 4",
        request={"query": "query GroupVulnerabilities($groupName: String!) { group(groupName: $groupName) { openVulnerabilities } }"},
        signals={"platform.open_vulnerabilities_mismatch": 3},
    )
    fields = {"findings": [finding.to_dict()]}
    copied = problems_for(store, profile, "In short, kiwiapp reports 7 open vulnerabilities but the list returns only 4.", case_id="261204-summ01", **fields)
    assert copied == ["the note repeats the summary of finding platform.vulnerabilities:kiwiapp (internal evidence)"]

    signal = problems_for(store, profile, "platform.open_vulnerabilities_mismatch is 3", case_id="261204-sign01", **fields)
    assert "the note names the signal platform.open_vulnerabilities_mismatch (internal evidence)" in signal

    reworded = problems_for(store, profile, "We found that the list shows fewer vulnerabilities than the counter.", case_id="261204-rewo01", **fields)
    assert reworded == []


def test_check_blocks_queries_logs_rows(store, profile):
    notes = {
        "query text": "We ran query { me { userEmail } } against the API.",
        "a log line": "2026-12-04T10:00:01Z ERROR resolver failed for kiwiapp",
        "a raw data row": '{"group": "kiwiapp", "state": "VULNERABLE", "id": 12}',
    }
    for index, (kind, note) in enumerate(notes.items()):
        problems = problems_for(store, profile, note, case_id=f"261204-row00{index}")
        assert any(kind in problem and "internal evidence" in problem for problem in problems), (kind, problems)

    insights = problems_for(store, profile, "fields @timestamp, @message | filter group = 'kiwiapp'", case_id="261204-insig1")
    assert "the note contains query text (internal evidence)" in insights


def test_check_allows_requester_subject(store, profile):
    # The requester wrote this phone number in the subject, which the message repeats.
    case = typed_case(store, subject="Call me at +57 300 555 1234")
    assert notify.draft(case, "received", profile, now=NOW).problems == []


# ----- sending through the stand-in -----


def test_send_threads_with_requester(mandrill, store, profile):
    case = demo_case(store)
    add_reply(store, email_bytes(REPLY_ID, DEMO_ID, [DEMO_ID], "Adjunto otra captura."))
    case = store.load(case.id)
    assert case.language == "es"

    message = notify.draft(case, "received", profile, now=NOW)
    result = notify.send(store, case.id, message, profile, ENGINEER)

    body = sent_bodies(mandrill)[0]["message"]
    assert body["headers"]["In-Reply-To"] == REPLY_ID
    assert body["headers"]["References"] == f"{DEMO_ID} {REPLY_ID}"
    assert body["from_email"] == "help@fluidattacks.com"
    assert body["to"] == [{"email": ANA, "name": "Ana Gómez", "type": "to"}]
    assert body["text"] == message.text
    assert body["track_clicks"] is False
    assert body["metadata"] == {"case_id": case.id, "template": "received"}

    recorded = mandrill.messages[-1]
    assert recorded["email"] == ANA
    assert recorded["subject"] == message.subject
    assert recorded["state"] == "sent"
    assert result.ok
    assert result.message_ids == [recorded["_id"]]


def test_reply_to_sent_message_threads(mandrill, store, profile):
    case = demo_case(store)
    message = notify.draft(case, "received", profile, now=NOW)
    notify.send(store, case.id, message, profile, ENGINEER)

    # The requester's client replies to our message, whose own Message-ID Mandrill chose.
    ours = "<mandrill.0001@mandrillapp.example>"
    reply = add_reply(store, email_bytes("<answer@mail.kiwicorp.co>", ours, message.references + [ours], "Gracias."))
    assert reply.action == "threaded"
    assert reply.case.id == case.id


def test_send_records_case_and_audit(mandrill, store, profile):
    case = typed_case(store)
    message = notify.draft(case, "received", profile, now=NOW)
    result = notify.send(store, case.id, message, profile, ENGINEER)

    case = store.load(case.id)
    event = case.timeline[-1]
    assert event.event == "notified"
    assert event.detail["template"] == "received"
    assert event.detail["language"] == "en"
    assert event.detail["recipients"] == [ANA]
    assert event.detail["statuses"] == [{"email": ANA, "status": "sent", "reject_reason": None, "message_id": result.message_ids[0]}]
    assert event.detail["message_id"] == result.message_ids[0]
    assert event.detail["ok"] is True
    assert notify.last_notification(case) == event
    assert (store.folder(case.id) / result.file).read_text() == message.render()

    entries = [entry for entry in AuditLog().entries() if entry["action"] == "mail.sent"]
    assert len(entries) == 1
    assert entries[0]["target"] == {"case": case.id, "email": ANA}
    assert entries[0]["outcome"] == "sent"
    assert entries[0]["detail"]["message_ids"] == result.message_ids
    assert entries[0]["operator"] == ENGINEER

    first = clocks(case, profile.sla, dt.datetime.now(dt.timezone.utc))[0]
    assert first.name == FIRST_RESPONSE
    assert first.met_at is not None


def test_rejected_recipient_fails(mandrill, store, profile):
    case = typed_case(store, requester=CARLOS, name="Carlos Ruiz")
    message = notify.draft(case, "received", profile, now=NOW)

    with pytest.raises(HelpctlError) as raised:
        notify.send(store, case.id, message, profile, ENGINEER)
    assert raised.value.exit_code == ExitCode.FAILURE
    assert "rejected (hard-bounce)" in raised.value.message

    case = store.load(case.id)
    event = case.timeline[-1]
    assert event.event == "notified"
    assert event.detail["ok"] is False
    assert event.detail["statuses"][0]["status"] == "rejected"
    assert event.detail["statuses"][0]["reject_reason"] == "hard-bounce"
    assert notify.last_notification(case) is None
    assert notify.last_notification(case, include_failed=True) == event
    assert clocks(case, profile.sla, dt.datetime.now(dt.timezone.utc))[0].met_at is None

    outcomes = [entry["outcome"] for entry in AuditLog().entries() if entry["action"] == "mail.sent"]
    assert outcomes == ["rejected"]


def test_invalid_recipient_fails(mandrill, store, profile):
    case = typed_case(store, requester="ana@localhost")
    message = notify.draft(case, "received", profile, now=NOW)
    with pytest.raises(HelpctlError, match="invalid"):
        notify.send(store, case.id, message, profile, ENGINEER)
    assert store.load(case.id).timeline[-1].detail["statuses"][0]["status"] == "invalid"


def test_needs_info_sets_waiting(mandrill, store, profile):
    case = typed_case(store)
    message = notify.draft(case, "needs-info", profile, note="Which browser do you use?", now=NOW)
    notify.send(store, case.id, message, profile, ENGINEER)

    case = store.load(case.id)
    assert case.status == "waiting"
    assert [event.event for event in case.timeline[-2:]] == ["notified", "status-changed"]
    assert case.timeline[-1].detail["status"] == "waiting"

    found = {clock.name: clock for clock in clocks(case, profile.sla, dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3))}
    assert found[NEXT_UPDATE].paused
    assert found[NEXT_UPDATE].due_at is None


def test_blocked_draft_is_not_sent(mandrill, store, profile):
    case = typed_case(store)
    message = notify.draft(case, "update", profile, note=f"Ask {CARLOS}.", now=NOW)
    with pytest.raises(PreconditionFailed):
        notify.send(store, case.id, message, profile, ENGINEER)
    assert sent_bodies(mandrill) == []
    assert store.load(case.id).timeline[-1].event == "opened"


def test_draft_for_changed_requester(mandrill, store, profile):
    case = typed_case(store)
    message = notify.draft(case, "received", profile, now=NOW)
    with store.edit(case.id) as changed:
        changed.requester.email = "luisa.fernandez@kiwicorp.co"
    with pytest.raises(PreconditionFailed):
        notify.send(store, case.id, message, profile, ENGINEER)
    assert sent_bodies(mandrill) == []


def test_mandrill_unreachable_is_audited(store, profile, monkeypatch):
    monkeypatch.setenv("HELPCTL_MANDRILL_URL", "http://127.0.0.1:9/api/1.0")
    profile = load_profile("sandbox")
    case = typed_case(store)
    message = notify.draft(case, "received", profile, now=NOW)

    with pytest.raises(ServiceError):
        notify.send(store, case.id, message, profile, ENGINEER, client=quiet_client(profile))
    assert store.load(case.id).timeline[-1].event == "opened"
    entries = [entry for entry in AuditLog().entries() if entry["action"] == "mail.sent"]
    assert [entry["outcome"] for entry in entries] == ["failed"]
    assert entries[0]["detail"]["error"] == "service"


def test_send_502_outcome_unknown(mandrill, store, profile):
    case = typed_case(store)
    message = notify.draft(case, "received", profile, now=NOW)
    mandrill.knobs.script = [ScriptedResponse(502, HTML_502, {"Content-Type": "text/html"}, path="messages/send")]

    with pytest.raises(ServiceError) as raised:
        notify.send(store, case.id, message, profile, ENGINEER)
    assert raised.value.status == 502
    # A send is never retried, because a retry could deliver the mail twice.
    assert len(mandrill.requests_to("/messages/send.json")) == 1
    assert store.load(case.id).timeline[-1].event == "opened"
    outcomes = [entry["outcome"] for entry in AuditLog().entries() if entry["action"] == "mail.sent"]
    assert outcomes == ["unknown"]


# ----- the command -----


def test_cli_dry_run_sends_nothing(store, mandrill, capsys):
    case = typed_case(store)
    assert run("notify", case.id, "received", "--dry-run") == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("From: Fluid Attacks Help <help@fluidattacks.com>\nTo: Ana Gómez <ana.gomez@kiwicorp.co>\n")
    assert "Subject: Re: Vulnerabilities tab is empty [case 261204-kiwi01]" in captured.out
    assert "Hello Ana Gómez," in captured.out
    assert "redaction check: passed" in captured.err
    assert sent_bodies(mandrill) == []
    assert store.load(case.id).timeline[-1].event == "opened"


def test_cli_dry_run_blocked_exit_5(store, mandrill, capsys):
    case = typed_case(store)
    assert run("notify", case.id, "update", "--note", f"Ask {CARLOS}.", "--dry-run") == ExitCode.PRECONDITION
    captured = capsys.readouterr()
    assert "redaction check: the message is blocked" in captured.err
    assert "e-mail address other than the requester's" in captured.err
    assert CARLOS in captured.out
    assert sent_bodies(mandrill) == []


def test_cli_dry_run_json(store, mandrill, capsys):
    case = typed_case(store)
    assert run("--json", "notify", case.id, "received", "--lang", "es", "--dry-run") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["dry_run"] is True
    assert data["sendable"] is True
    assert data["language"] == "es"
    assert data["to"] == ANA


def test_cli_needs_confirmation(store, mandrill, capsys):
    case = typed_case(store)
    assert run("--no-input", "notify", case.id, "received") == ExitCode.USAGE
    assert "rerun with --yes" in capsys.readouterr().err
    assert sent_bodies(mandrill) == []


def test_cli_sends_with_yes(store, mandrill, capsys):
    case = typed_case(store)
    assert run("--json", "notify", case.id, "received", "--yes") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True
    assert data["statuses"][0]["status"] == "sent"
    assert len(sent_bodies(mandrill)) == 1


def test_cli_blocked_send_exit_5(store, mandrill, capsys):
    case = typed_case(store)
    assert run("notify", case.id, "update", "--note", "token=abcdefghijklmnop1234", "--yes") == ExitCode.PRECONDITION
    assert "secret (token)" in capsys.readouterr().err
    assert sent_bodies(mandrill) == []


def test_cli_rejected_exit_1(store, mandrill, capsys):
    case = typed_case(store, requester=CARLOS, name="Carlos Ruiz")
    assert run("notify", case.id, "received", "--yes") == ExitCode.FAILURE
    assert "rejected (hard-bounce)" in capsys.readouterr().err
    assert store.load(case.id).timeline[-1].detail["ok"] is False


def test_cli_unknown_template_exit_2(store, mandrill, capsys):
    case = typed_case(store)
    assert run("notify", case.id, "farewell", "--dry-run") == ExitCode.USAGE
    assert "unknown template 'farewell'" in capsys.readouterr().err
