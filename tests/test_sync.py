"""`helpctl sync`: python-gitlab against the GitLab stand-in, notify against Mandrill, over 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json

import gitlab
import pytest
import typer
from typer.testing import CliRunner

from helpctl.app import root_callback
from helpctl.cases.model import Case, Event, Person, Subjects
from helpctl.cases.store import CaseStore
from helpctl.clients.gitlab import GitlabClient
from helpctl.commands.sync import register
from helpctl.config.profiles import load_profile
from helpctl.errors import HelpctlError, PreconditionFailed
from helpctl.filing_case import file_case
from helpctl.findings import Finding, isoformat, utc_now
from helpctl.sandbox import Sandbox
from helpctl.sandbox.gitlab_seed import UNIVERSE_ID, UNIVERSE_PATH, SeedToken
from helpctl.sandbox.server import HTML_502, ScriptedResponse
from helpctl.sync import followed_cases, is_helpctl_note, note_marker, owed_update, sync_case, sync_cases

ACTOR = "support.sandbox@fluidattacks.com"
GITLAB_TOKEN = "sandbox-gitlab-token"
DEVELOPER_TOKEN = "sandbox-test-pmorales"
REQUESTER = "ana.gomez@kiwicorp.co"


# ----- fixtures -----


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(services=["gitlab", "mandrill"]) as running:
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
    # One retry keeps the scripted 5xx tests short; the CLI reads the same variables.
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
    """The universe project reached with Pablo Morales's token: the developer side of every test."""
    return gitlab.Gitlab(sandbox.url("gitlab"), private_token=DEVELOPER_TOKEN).projects.get(UNIVERSE_PATH)


def new_case(store, subject="Open vulnerabilities count does not match the list in kiwiapp", requester=REQUESTER, **fields) -> Case:
    finding = Finding(
        source="platform",
        check="open_vulnerabilities",
        subject="kiwiapp",
        outcome="ok",
        summary="openVulnerabilities says 7 while the VULNERABLE list has 4",
        signals={"platform.open_vulnerabilities_mismatch": True},
        component="vulnerabilities",
    )
    case = Case(
        id="",
        profile="sandbox",
        subject=subject,
        requester=Person(requester, "Ana Gómez"),
        body="The kiwiapp dashboard says 7 open vulnerabilities but the list shows 4.",
        organization="kiwicorp",
        subjects=Subjects(groups=["kiwiapp"], organizations=["kiwicorp"]),
        classification={"label": "bug", "rules": [{"name": "vulnerability-count-mismatch", "label": "bug", "findings": [finding.key]}]},
        findings=[finding.to_dict()],
        **fields,
    )
    from helpctl.cases.store import new_case_id

    case.id = new_case_id()
    case.record(ACTOR, "opened", source="typed")
    return store.create(case)


def filed_case(store, profile, **fields) -> tuple[Case, int]:
    case = new_case(store, **fields)
    outcome = file_case(store, case.id, profile, ACTOR)
    return store.load(case.id), outcome["iid"]


def events_of(case: Case, name: str) -> list[Event]:
    return [event for event in case.timeline if event.event == name]


def first_milestone(service) -> dict:
    return service.milestones[UNIVERSE_ID][0]


def cli(*arguments: str) -> tuple[int, object]:
    """Run `helpctl ARGS` with the sync command registered; returns the exit code and the result."""
    app = typer.Typer()
    app.callback()(root_callback)
    register(app)
    result = CliRunner().invoke(app, list(arguments))
    if isinstance(result.exception, HelpctlError):
        return int(result.exception.exit_code), result
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result


# ----- what sync records -----


def test_sync_records_each_change(store, profile, client, developer, gitlab_service):
    case, iid = filed_case(store, profile)
    issue = developer.issues.get(iid)
    issue.state_event = "close"
    issue.labels = [*issue.labels, "priority::high"]
    issue.assignee_ids = [106]
    issue.milestone_id = first_milestone(gitlab_service)["id"]
    issue.save()
    issue.notes.create({"body": "Fixed in the resolver:\n\nthe counter now filters by state."})

    result = sync_case(store, case.id, client, ACTOR, profile=profile)
    synced = store.load(case.id)

    assert [event["event"] for event in result.events] == [
        "issue-closed", "issue-labels", "issue-assignee", "issue-milestone", "issue-comment",
    ]
    assert events_of(synced, "issue-labels")[0].detail["added"] == ["priority::high"]
    assert events_of(synced, "issue-assignee")[0].detail["assignees"] == ["ltorres"]
    assert events_of(synced, "issue-assignee")[0].detail["previous"] == ["pmorales"]
    assert events_of(synced, "issue-milestone")[0].detail["milestone"] == "Sprint 2026-50"
    comment = events_of(synced, "issue-comment")[0].detail
    assert comment["author"] == "pmorales"
    assert comment["excerpt"] == "Fixed in the resolver: the counter now filters by state."
    assert synced.issue["state"] == "closed"
    assert synced.issue["last_note"] == comment["note_id"]
    assert synced.issue["synced_at"]


def test_second_sync_records_nothing(store, profile, client, developer):
    case, iid = filed_case(store, profile)
    issue = developer.issues.get(iid)
    issue.state_event = "close"
    issue.save()
    issue.notes.create({"body": "done"})
    sync_case(store, case.id, client, ACTOR, profile=profile)
    before = len(store.load(case.id).timeline)

    again = sync_case(store, case.id, client, ACTOR, profile=profile)

    assert again.events == []
    assert len(store.load(case.id).timeline) == before


def test_sync_detects_reopened(store, profile, client, developer):
    case, iid = filed_case(store, profile)
    issue = developer.issues.get(iid)
    issue.state_event = "close"
    issue.save()
    sync_case(store, case.id, client, ACTOR, profile=profile)
    issue = developer.issues.get(iid)
    issue.state_event = "reopen"
    issue.save()

    result = sync_case(store, case.id, client, ACTOR, profile=profile)

    assert [event["event"] for event in result.events] == ["issue-reopened"]
    assert store.load(case.id).issue["state"] == "opened"


def test_sync_milestone_removed(store, profile, client, developer, gitlab_service):
    case, iid = filed_case(store, profile)
    issue = developer.issues.get(iid)
    issue.milestone_id = first_milestone(gitlab_service)["id"]
    issue.save()
    sync_case(store, case.id, client, ACTOR, profile=profile)
    issue = developer.issues.get(iid)
    issue.milestone_id = 0
    issue.save()

    result = sync_case(store, case.id, client, ACTOR, profile=profile)

    assert result.events == [{"event": "issue-milestone", "source": "gitlab", "iid": iid, "previous": "Sprint 2026-50", "milestone": None}]


def test_sync_skips_system_and_own_notes(store, profile, client, developer):
    case, iid = filed_case(store, profile)
    client.add_note(iid, "Asked the requester for a screenshot.", marker=note_marker(case.id))
    issue = developer.issues.get(iid)
    issue.state_event = "close"
    issue.save()

    result = sync_case(store, case.id, client, ACTOR, profile=profile)

    assert [event["event"] for event in result.events] == ["issue-closed"]
    assert store.load(case.id).issue["last_note"] is not None


def test_note_marker_recognised():
    marker = note_marker("261204-abcdef")

    assert is_helpctl_note(f"text\n\n{marker}")
    assert not is_helpctl_note("text <!-- helpctl-case: 261204-abcdef -->")
    assert note_marker("261204-abcdef") != marker


def test_sync_unfiled_case_refused(store, profile, client):
    case = new_case(store)

    with pytest.raises(PreconditionFailed) as caught:
        sync_case(store, case.id, client, ACTOR, profile=profile)

    assert "follows no GitLab issue" in caught.value.message


def test_followed_cases_default(store, profile):
    filed, _ = filed_case(store, profile)
    new_case(store)
    closed, _ = filed_case(store, profile)
    with store.edit(closed.id) as editing:
        editing.status = "closed"

    assert followed_cases(store, profile_name="sandbox") == [filed.id]
    assert followed_cases(store, profile_name="fluidattacks") == []


# ----- failures -----


def test_sync_429_then_success(store, profile, client, developer, gitlab_service):
    case, iid = filed_case(store, profile)
    issue = developer.issues.get(iid)
    issue.state_event = "close"
    issue.save()
    path = f"/issues/{iid}"
    gitlab_service.knobs.script.append(ScriptedResponse(429, b'{"message":"429 Too Many Requests"}', {"Retry-After": "0"}, path))

    logged_before = len(gitlab_service.log)

    report = sync_cases(store, [case.id], profile, ACTOR, client=client)

    assert report.failed == []
    assert [event["event"] for event in report.synced[0].events] == ["issue-closed"]
    statuses = [entry.status for entry in gitlab_service.log[logged_before:] if entry.method == "GET" and entry.path.endswith(path)]
    assert statuses == [429, 200]


def test_one_failure_others_synced(store, profile, client, developer, gitlab_service):
    broken, broken_iid = filed_case(store, profile)
    healthy, healthy_iid = filed_case(store, profile, subject="Members export is empty")
    issue = developer.issues.get(healthy_iid)
    issue.state_event = "close"
    issue.save()
    for _ in range(2):  # the first try and the one retry that max_retries=1 allows
        gitlab_service.knobs.script.append(ScriptedResponse(502, HTML_502, {"Content-Type": "text/html"}, f"/issues/{broken_iid}"))

    report = sync_cases(store, [broken.id, healthy.id], profile, ACTOR, client=client)

    assert [item.case_id for item in report.failed] == [broken.id]
    assert report.failed[0].error.status == 502
    assert "502 Bad Gateway" in report.failed[0].error.message
    assert "<html>" not in report.failed[0].error.message
    assert [event["event"] for event in report.synced[1].events] == ["issue-closed"]
    assert events_of(store.load(broken.id), "issue-closed") == []


def test_cli_partial_exit_3(store, profile, developer, gitlab_service):
    broken, broken_iid = filed_case(store, profile)
    healthy, _ = filed_case(store, profile, subject="Members export is empty")
    for _ in range(2):
        gitlab_service.knobs.script.append(ScriptedResponse(502, HTML_502, {"Content-Type": "text/html"}, f"/issues/{broken_iid}"))

    code, result = cli("--json", "sync")

    assert code == 3
    report = json.loads(result.stdout)
    assert report["failed"] == [broken.id]
    results = {item["case"]: item for item in report["synced"]}
    assert sorted(results) == sorted([broken.id, healthy.id])
    assert results[broken.id]["error"]["exit_code"] == 1
    assert results[healthy.id]["error"] is None


def test_cli_all_failed_keeps_exit_code(store, profile):
    case = new_case(store)

    code, result = cli("sync", case.id)

    assert code == 5
    assert "follows no GitLab issue" in str(result.exception)


def test_cli_nothing_to_sync(store, profile):
    code, result = cli("--json", "sync")

    assert code == 0
    assert json.loads(result.stdout) == {"synced": [], "owed": [], "failed": []}


# ----- owed updates -----


def test_owed_resolved_with_draft(store, profile, client, developer):
    case, iid = filed_case(store, profile)
    issue = developer.issues.get(iid)
    issue.state_event = "close"
    issue.save()

    report = sync_cases(store, [case.id], profile, ACTOR, client=client)

    assert len(report.owed) == 1
    owed = report.owed[0]
    assert owed.template == "resolved"
    assert owed.reasons == ["the issue changed since the last notification (issue-closed)"]
    assert owed.draft.to == REQUESTER
    assert owed.draft.problems == []
    assert "marked the issue as resolved" in owed.draft.text
    assert case.id in owed.draft.subject + owed.draft.text


def test_owed_update_spanish_note(store, profile, client, developer, gitlab_service):
    case, iid = filed_case(store, profile, language="es")
    issue = developer.issues.get(iid)
    issue.milestone_id = first_milestone(gitlab_service)["id"]
    issue.save()

    report = sync_cases(store, [case.id], profile, ACTOR, client=client)

    assert report.owed[0].template == "update"
    assert report.owed[0].note == "El trabajo está planeado para el hito Sprint 2026-50."
    assert report.owed[0].draft.language == "es"


def test_not_owed_without_change(store, profile, client):
    case, _ = filed_case(store, profile)

    report = sync_cases(store, [case.id], profile, ACTOR, client=client)

    assert report.owed == []


def test_owed_when_clock_breached(store, profile):
    week_ago = utc_now() - dt.timedelta(days=7)
    case, _ = filed_case(store, profile, reported_at=isoformat(week_ago - dt.timedelta(hours=1)))
    with store.edit(case.id) as editing:
        editing.timeline.insert(1, Event(at=isoformat(week_ago), actor=ACTOR, event="notified", detail={"template": "received", "ok": True}))

    owed = owed_update(store.load(case.id), profile)

    assert owed is not None
    assert owed.template == "update"
    assert len(owed.reasons) == 1
    assert owed.reasons[0].startswith("the next-update clock is breached by ")
    assert owed.note == "We are still working on your case and will write to you again as soon as there is news."
    assert owed.draft.problems == []


def test_not_owed_after_notification(store, profile, client, developer):
    case, iid = filed_case(store, profile)
    issue = developer.issues.get(iid)
    issue.labels = ["type::bug"]
    issue.save()
    sync_case(store, case.id, client, ACTOR, profile=profile)
    with store.edit(case.id) as editing:
        editing.record(ACTOR, "notified", template="update", ok=True)

    assert owed_update(store.load(case.id), profile) is None


def test_closed_case_not_owed(store, profile, client, developer):
    case, iid = filed_case(store, profile)
    issue = developer.issues.get(iid)
    issue.state_event = "close"
    issue.save()
    sync_case(store, case.id, client, ACTOR, profile=profile)
    with store.edit(case.id) as editing:
        editing.status = "closed"

    assert owed_update(store.load(case.id), profile) is None


# ----- sending -----


def test_notify_needs_confirmation(store, profile, developer, sandbox):
    case, iid = filed_case(store, profile)
    issue = developer.issues.get(iid)
    issue.state_event = "close"
    issue.save()
    sent_before = len(sandbox.service("mandrill").messages)

    code, result = cli("sync", "--notify")

    assert code == 2
    assert "confirmation needed" in str(result.exception)
    assert len(sandbox.service("mandrill").messages) == sent_before
    assert events_of(store.load(case.id), "notified") == []


def test_notify_sends_with_yes(store, profile, developer, sandbox):
    case, iid = filed_case(store, profile)
    issue = developer.issues.get(iid)
    issue.state_event = "close"
    issue.save()
    mandrill = sandbox.service("mandrill")
    sent_before = len(mandrill.messages)

    code, result = cli("--json", "sync", "--notify", "--yes")

    assert code == 0, result.output
    report = json.loads(result.stdout)
    assert report["owed"][0]["sent"]["ok"] is True
    sent = mandrill.messages[sent_before:]
    assert [message["email"] for message in sent] == [REQUESTER]
    assert sent[0]["metadata"] == {"case_id": case.id, "template": "resolved"}
    notified = events_of(store.load(case.id), "notified")
    assert [event.detail["template"] for event in notified] == ["resolved"]

    code, again = cli("--json", "sync", "--notify", "--yes")

    assert code == 0
    assert json.loads(again.stdout)["owed"] == []
    assert len(mandrill.messages) == sent_before + 1


def test_notify_rejected_recipient_partial(store, profile, developer):
    # carlos.ruiz hard-bounced in the sandbox story, so Mandrill's rejects list contains his address.
    case, iid = filed_case(store, profile, requester="carlos.ruiz@kiwicorp.co")
    issue = developer.issues.get(iid)
    issue.state_event = "close"
    issue.save()

    code, result = cli("--json", "sync", "--notify", "--yes")

    assert code == 3
    report = json.loads(result.stdout)
    assert report["owed"][0]["send_error"]["exit_code"] == 1
    assert events_of(store.load(case.id), "notified")[0].detail["ok"] is False


def test_cli_text_shows_draft(store, profile, developer):
    case, iid = filed_case(store, profile)
    developer.issues.get(iid).notes.create({"body": "Looking into it."})

    code, result = cli("sync")

    assert code == 0, result.output
    assert "issue-comment" in result.stdout
    assert f"{case.id} #{iid} issue-comment by @pmorales: Looking into it." in result.stdout
    assert f"{case.id} is owed an update (update)" in result.stdout
    assert f"To: Ana Gómez <{REQUESTER}>" in result.stdout


def test_issue_on_another_gitlab_not_synced():
    from helpctl.cases.model import Case, Person
    from helpctl.config.profiles import load_profile
    from helpctl.errors import PreconditionFailed
    from helpctl.sync import check_same_tracker

    profile = load_profile("sandbox")
    case = Case(id="261204-aaaaaa", profile="sandbox", subject="s", requester=Person(email="a@kiwicorp.co"))
    case.issue = {"iid": 3, "url": "http://127.0.0.1:40947/fluidattacks/universe/-/issues/3"}

    with pytest.raises(PreconditionFailed) as caught:
        check_same_tracker(case, profile)
    assert "127.0.0.1:40947" in caught.value.message

    case.issue["url"] = "http://127.0.0.1:8702/fluidattacks/universe/-/issues/3"
    check_same_tracker(case, profile)
