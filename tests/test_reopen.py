"""Reopening a case with its GitLab issue, by command and after an e-mail reply, over 127.0.0.1."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage

import gitlab
import pytest

from helpctl.cases.model import Case, Person, Subjects
from helpctl.cases.store import CaseStore, new_case_id
from helpctl.clients.gitlab import GitlabClient
from helpctl.config.profiles import load_profile
from helpctl.errors import HelpctlError, PreconditionFailed, UsageError
from helpctl.filing_case import file_case
from helpctl.findings import isoformat, utc_now
from helpctl.intake import open_or_thread, parse_message
from helpctl.reopen import after_intake, follow_up_reopened, reopen_with_issue
from helpctl.sandbox import Sandbox
from helpctl.sandbox.gitlab_seed import UNIVERSE_ID, UNIVERSE_PATH, SeedToken
from helpctl.sandbox.server import HTML_502, ScriptedResponse
from helpctl.sla import clocks
from helpctl.sync import is_helpctl_note, sync_case

ACTOR = "support.sandbox@fluidattacks.com"
GITLAB_TOKEN = "sandbox-gitlab-token"
DEVELOPER_TOKEN = "sandbox-test-pmorales"
MESSAGE_ID = "<first-report@mail.kiwicorp.co>"


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(services=["gitlab"]) as running:
        yield running


@pytest.fixture
def gitlab_service(sandbox):
    service = sandbox.service("gitlab")
    service.reset()
    service.tokens[DEVELOPER_TOKEN] = SeedToken("pmorales", ["api"])
    return service


@pytest.fixture
def profile(sandbox, gitlab_service, monkeypatch):
    for name, value in sandbox.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HELPCTL_GITLAB_MAX_RETRIES", "1")
    monkeypatch.setenv("HELPCTL_GITLAB_TIMEOUT", "2")
    return load_profile("sandbox")


@pytest.fixture
def store(profile):
    return CaseStore()


@pytest.fixture
def client(profile):
    return GitlabClient(profile.gitlab, GITLAB_TOKEN)


@pytest.fixture
def developer(sandbox, gitlab_service):
    return gitlab.Gitlab(sandbox.url("gitlab"), private_token=DEVELOPER_TOKEN).projects.get(UNIVERSE_PATH)


def closed_filed_case(store, profile, developer=None, *, close_issue: bool = True) -> tuple[Case, int]:
    """File a bug, let the developer close its issue, sync, and close the case."""
    case = Case(
        id=new_case_id(),
        profile="sandbox",
        subject="Open vulnerabilities count does not match the list in kiwiapp",
        requester=Person("ana.gomez@kiwicorp.co", "Ana Gómez"),
        organization="kiwicorp",
        subjects=Subjects(groups=["kiwiapp"], organizations=["kiwicorp"]),
        classification={"label": "bug", "rules": []},
        messages=[{"message_id": MESSAGE_ID, "received_at": isoformat(utc_now()), "file": None, "attachments": []}],
    )
    case.record(ACTOR, "opened", source="email", message_id=MESSAGE_ID)
    store.create(case)
    iid = file_case(store, case.id, profile, ACTOR)["iid"]
    if close_issue and developer is not None:
        issue = developer.issues.get(iid)
        issue.state_event = "close"
        issue.save()
        sync_case(store, case.id, GitlabClient(profile.gitlab, GITLAB_TOKEN), ACTOR, profile=profile)
    with store.edit(case.id) as editing:
        editing.status = "closed"
        editing.resolution = "fixed in the release of this week"
        editing.record(ACTOR, "closed", resolution=editing.resolution)
    return store.load(case.id), iid


def stand_in_issue(service, iid: int) -> dict:
    return next(issue for issue in service.issues[UNIVERSE_ID] if issue["iid"] == iid)


def user_notes(service, iid: int) -> list[dict]:
    return [note for note in service.notes.get((UNIVERSE_ID, iid), []) if not note["system"]]


def reply_bytes() -> bytes:
    message = EmailMessage()
    message["From"] = "Ana Gómez <ana.gomez@kiwicorp.co>"
    message["To"] = "help@fluidattacks.com"
    message["Subject"] = "RE: Open vulnerabilities count does not match the list in kiwiapp"
    message["Message-ID"] = "<reply-1@mail.kiwicorp.co>"
    message["In-Reply-To"] = MESSAGE_ID
    message["References"] = MESSAGE_ID
    message["Date"] = "Fri, 04 Dec 2026 10:00:00 -0500"
    message.set_content("It happens again: the counter says 9 and the list shows 4.")
    return message.as_bytes()


# ----- reopen_with_issue -----


def test_reopen_reopens_issue(store, profile, client, developer, gitlab_service):
    case, iid = closed_filed_case(store, profile, developer)

    result = reopen_with_issue(store, case.id, "the counter is wrong again", profile, ACTOR, issue_action="reopen", client=client)

    assert result.issue_reopened is True
    assert stand_in_issue(gitlab_service, iid)["state"] == "opened"
    note = user_notes(gitlab_service, iid)[-1]
    assert note["id"] == result.note_id
    assert note["body"].startswith(f"Reopened because the requester of Help Channel case `{case.id}` reports the problem again: the counter")
    assert is_helpctl_note(note["body"])
    reopened = store.load(case.id)
    assert reopened.status == "open"
    assert reopened.resolution is None
    assert reopened.classification["label"] == "bug"
    assert reopened.issue["iid"] == iid
    assert reopened.issue["state"] == "opened"
    assert [event.event for event in reopened.timeline[-3:]] == ["reopened", "issue-reopened", "issue-commented"]
    assert reopened.timeline[-3].detail["reason"] == "the counter is wrong again"


def test_reopen_then_sync_quiet(store, profile, client, developer):
    case, _ = closed_filed_case(store, profile, developer)
    reopen_with_issue(store, case.id, "again", profile, ACTOR, issue_action="reopen", client=client)

    assert sync_case(store, case.id, client, ACTOR, profile=profile).events == []


def test_reopen_with_comment_only(store, profile, client, developer, gitlab_service):
    case, iid = closed_filed_case(store, profile, developer)

    result = reopen_with_issue(store, case.id, "Call me at +57 300 123 4567", profile, ACTOR, issue_action="comment", client=client)

    assert result.issue_reopened is False
    assert stand_in_issue(gitlab_service, iid)["state"] == "closed"
    note = user_notes(gitlab_service, iid)[-1]
    assert note["body"].startswith(f"The requester of Help Channel case `{case.id}` reports the problem again: Call me at [redacted:phone]")
    assert [event.event for event in store.load(case.id).timeline[-2:]] == ["reopened", "issue-commented"]


def test_reopen_open_issue_comments(store, profile, client, developer, gitlab_service):
    case, iid = closed_filed_case(store, profile, developer, close_issue=False)

    result = reopen_with_issue(store, case.id, "again", profile, ACTOR, issue_action="reopen", client=client)

    assert result.issue_reopened is False
    assert result.issue_state == "opened"
    assert len(user_notes(gitlab_service, iid)) == 1


def test_reopen_none_leaves_gitlab(store, profile, developer, gitlab_service):
    case, iid = closed_filed_case(store, profile, developer)
    logged_before = len(gitlab_service.log)

    result = reopen_with_issue(store, case.id, "again", profile, ACTOR, issue_action="none")

    assert result.status == "open"
    assert gitlab_service.log[logged_before:] == []
    assert user_notes(gitlab_service, iid) == []


def test_reopen_restarts_clock(store, profile, client, developer):
    case, _ = closed_filed_case(store, profile, developer)
    with store.edit(case.id) as editing:
        editing.record(ACTOR, "notified", template="resolved", ok=True)
        editing.timeline[-1].at = isoformat(utc_now() - dt.timedelta(days=30))

    reopen_with_issue(store, case.id, "again", profile, ACTOR, issue_action="comment", client=client)

    reopened_at = store.load(case.id).timeline[-2].at
    running = clocks(store.load(case.id), profile.sla, utc_now())
    assert [clock.name for clock in running] == ["first-response", "next-update"]
    assert isoformat(running[-1].started_at) == reopened_at
    assert running[-1].breached is False


def test_reopen_gitlab_failure_keeps_case_closed(store, profile, client, developer, gitlab_service):
    case, iid = closed_filed_case(store, profile, developer)
    for _ in range(2):
        gitlab_service.knobs.script.append(ScriptedResponse(502, HTML_502, {"Content-Type": "text/html"}, f"/issues/{iid}"))

    with pytest.raises(HelpctlError) as caught:
        reopen_with_issue(store, case.id, "again", profile, ACTOR, issue_action="reopen", client=client)

    assert caught.value.exit_code == 1
    assert store.load(case.id).status == "closed"


def test_reopen_refusals(store, profile, client, developer):
    case, _ = closed_filed_case(store, profile, developer)

    with pytest.raises(UsageError):
        reopen_with_issue(store, case.id, "again", profile, ACTOR, issue_action="close", client=client)
    with pytest.raises(UsageError):
        reopen_with_issue(store, case.id, "  ", profile, ACTOR, client=client)
    reopen_with_issue(store, case.id, "again", profile, ACTOR, issue_action="none")
    with pytest.raises(PreconditionFailed):
        reopen_with_issue(store, case.id, "again", profile, ACTOR, client=client)


# ----- after intake -----


def test_intake_reply_comments_once(store, profile, client, developer, gitlab_service):
    case, iid = closed_filed_case(store, profile, developer)
    raw = reply_bytes()
    intake = open_or_thread(store, parse_message(raw), raw, profile="sandbox", actor=ACTOR)

    result = after_intake(store, intake, profile, ACTOR, client=client)
    again = follow_up_reopened(store, case.id, profile, ACTOR, client=client)

    assert intake.action == "reopened"
    assert result.note_id is not None
    assert again.already_done is True
    notes = user_notes(gitlab_service, iid)
    assert len(notes) == 1
    assert notes[0]["body"].startswith(f"The requester of Help Channel case `{case.id}` reports the problem again: reply received by e-mail")
    assert stand_in_issue(gitlab_service, iid)["state"] == "closed"


def test_intake_reply_reopen_action(store, profile, client, developer, gitlab_service):
    case, iid = closed_filed_case(store, profile, developer)
    raw = reply_bytes()
    intake = open_or_thread(store, parse_message(raw), raw, profile="sandbox", actor=ACTOR)

    result = after_intake(store, intake, profile, ACTOR, issue_action="reopen", client=client)

    assert result.issue_reopened is True
    assert stand_in_issue(gitlab_service, iid)["state"] == "opened"
    assert sync_case(store, case.id, client, ACTOR, profile=profile).events == []


def test_after_intake_other_actions(store, profile, client, developer):
    case, _ = closed_filed_case(store, profile, developer)
    with store.edit(case.id) as editing:
        editing.status = "open"
    raw = reply_bytes()
    intake = open_or_thread(store, parse_message(raw), raw, profile="sandbox", actor=ACTOR)

    assert intake.action == "threaded"
    assert after_intake(store, intake, profile, ACTOR, client=client) is None


def test_follow_up_never_reopened(store, profile, client, developer):
    case, _ = closed_filed_case(store, profile, developer)

    with pytest.raises(PreconditionFailed):
        follow_up_reopened(store, case.id, profile, ACTOR, client=client)
