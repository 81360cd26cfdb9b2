"""`helpctl consult`: questions to developers on GitLab, and their answers brought back by sync."""

from __future__ import annotations

import json

import gitlab
import pytest
import typer
from typer.testing import CliRunner

from helpctl.app import root_callback
from helpctl.cases.model import Case, Person, Subjects
from helpctl.cases.store import CaseStore, new_case_id
from helpctl.clients.gitlab import GitlabClient, has_marker
from helpctl.commands.consult import register
from helpctl.config.profiles import load_profile
from helpctl.consult import consult, consultation_marker
from helpctl.errors import HelpctlError, PreconditionFailed, UsageError
from helpctl.filing import case_marker
from helpctl.filing_case import file_case
from helpctl.sandbox import Sandbox
from helpctl.sandbox.gitlab_seed import UNIVERSE_ID, UNIVERSE_PATH, SeedToken
from helpctl.sandbox.server import HTML_502, ScriptedResponse
from helpctl.sync import is_helpctl_note, sync_case

ACTOR = "support.sandbox@fluidattacks.com"
GITLAB_TOKEN = "sandbox-gitlab-token"
DEVELOPER_TOKEN = "sandbox-test-dgarcia"
QUESTION = "Does the invitation of luisa.fernandez@kiwicorp.co expire after 7 days? token=abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(services=["gitlab"]) as running:
        yield running


@pytest.fixture
def gitlab_service(sandbox):
    service = sandbox.service("gitlab")
    service.reset()
    service.tokens[DEVELOPER_TOKEN] = SeedToken("dgarcia", ["api"])
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
    """The universe project reached with Diana García's token."""
    return gitlab.Gitlab(sandbox.url("gitlab"), private_token=DEVELOPER_TOKEN).projects.get(UNIVERSE_PATH)


def new_case(store, *, classified: bool = False) -> Case:
    case = Case(
        id=new_case_id(),
        profile="sandbox",
        subject="Carlos cannot accept the invitation to kiwiapp",
        requester=Person("ana.gomez@kiwicorp.co", "Ana Gómez"),
        body="Carlos was invited 9 days ago and the link says it expired.",
        organization="kiwicorp",
        subjects=Subjects(users=["carlos.ruiz@kiwicorp.co"], groups=["kiwiapp"], organizations=["kiwicorp"]),
        classification={"label": "bug", "rules": []} if classified else None,
    )
    case.record(ACTOR, "opened", source="typed")
    return store.create(case)


def issue_in_stand_in(service, iid: int) -> dict:
    return next(issue for issue in service.issues[UNIVERSE_ID] if issue["iid"] == iid)


def notes_in_stand_in(service, iid: int) -> list[dict]:
    return service.notes.get((UNIVERSE_ID, iid), [])


def cli(*arguments: str) -> tuple[int, object]:
    app = typer.Typer()
    app.callback()(root_callback)
    register(app)
    result = CliRunner().invoke(app, list(arguments))
    if isinstance(result.exception, HelpctlError):
        return int(result.exception.exit_code), result
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result


# ----- asking -----


def test_consult_filed_issue_note(store, profile, client, gitlab_service):
    case = new_case(store, classified=True)
    iid = file_case(store, case.id, profile, ACTOR)["iid"]

    result = consult(store, case.id, "@dgarcia", QUESTION, profile, ACTOR, client=client)

    assert result.issue_created is False
    assert result.iid == iid
    note = notes_in_stand_in(gitlab_service, iid)[-1]
    assert note["id"] == result.note_id
    assert note["body"].startswith("@dgarcia Does the invitation of user-2 expire after 7 days? token=[redacted:token]")
    assert "luisa.fernandez" not in note["body"]
    assert "abcdef0123456789" not in note["body"]
    assert is_helpctl_note(note["body"])
    assert result.redactions == {"email": 1, "token": 1}


def test_consult_records_case(store, profile, client):
    case = new_case(store, classified=True)
    iid = file_case(store, case.id, profile, ACTOR)["iid"]

    result = consult(store, case.id, "dgarcia", QUESTION, profile, ACTOR, client=client)
    recorded = store.load(case.id)

    consulted = [event for event in recorded.timeline if event.event == "consulted"]
    assert len(consulted) == 1
    assert consulted[0].detail["note_id"] == result.note_id
    assert consulted[0].detail["developer"] == "dgarcia"
    entry = recorded.extra["consultations"][0]
    assert entry["status"] == "open"
    assert entry["issue"] == iid
    assert "luisa.fernandez" not in entry["question"]


def test_consult_unfiled_opens_confidential_issue(store, profile, client, gitlab_service):
    case = new_case(store)

    result = consult(store, case.id, "dgarcia", QUESTION, profile, ACTOR, client=client)

    issue = issue_in_stand_in(gitlab_service, result.iid)
    assert result.issue_created is True
    assert issue["confidential"] is True
    assert issue["title"] == "[Platform] Consultation: Carlos cannot accept the invitation to kiwiapp"
    assert has_marker(issue["description"], consultation_marker(case.id))
    assert not has_marker(issue["description"], case_marker(case.id))
    assert "luisa.fernandez" not in issue["description"]
    assert issue["description"].startswith("@dgarcia ")
    assert issue["labels"] == []
    assert result.warnings == ["the project has no 'consultation' label, so the consultation issue has no label"]
    assert store.load(case.id).extra["consultation_issue"]["iid"] == result.iid


def test_consult_label_when_project_has_it(store, profile, client, gitlab_service):
    client.create_label("consultation")
    case = new_case(store)

    result = consult(store, case.id, "dgarcia", QUESTION, profile, ACTOR, client=client)

    assert issue_in_stand_in(gitlab_service, result.iid)["labels"] == ["consultation"]
    assert result.warnings == []


def test_consult_twice_one_issue(store, profile, client, gitlab_service):
    case = new_case(store)
    first = consult(store, case.id, "dgarcia", QUESTION, profile, ACTOR, client=client)

    second = consult(store, case.id, "pmorales", "Is the expiry configurable?", profile, ACTOR, client=client)

    assert second.issue_created is False
    assert second.iid == first.iid
    assert notes_in_stand_in(gitlab_service, first.iid)[-1]["body"].startswith("@pmorales Is the expiry configurable?")
    assert len(store.load(case.id).extra["consultations"]) == 2


def test_filing_ignores_consultation_issue(store, profile, client):
    case = new_case(store)
    consulted = consult(store, case.id, "dgarcia", QUESTION, profile, ACTOR, client=client)
    with store.edit(case.id) as editing:
        editing.classification = {"label": "bug", "rules": []}

    outcome = file_case(store, case.id, profile, ACTOR)

    assert outcome["created"] is True
    assert outcome["iid"] != consulted.iid


def test_consult_create_lost_response(store, profile, client, gitlab_service):
    case = new_case(store)
    gitlab_service.knobs.drop_after_create = True

    result = consult(store, case.id, "dgarcia", QUESTION, profile, ACTOR, client=client)

    gitlab_service.knobs.drop_after_create = False
    marked = [issue for issue in gitlab_service.issues[UNIVERSE_ID] if has_marker(issue["description"], consultation_marker(case.id))]
    assert [issue["iid"] for issue in marked] == [result.iid]


def test_consult_note_stored_response_lost(store, profile, client, gitlab_service):
    case = new_case(store, classified=True)
    iid = file_case(store, case.id, profile, ACTOR)["iid"]
    gitlab_service.knobs.drop_after_create = True

    result = consult(store, case.id, "dgarcia", QUESTION, profile, ACTOR, client=client)

    gitlab_service.knobs.drop_after_create = False
    notes = notes_in_stand_in(gitlab_service, iid)
    assert [note["id"] for note in notes] == [result.note_id]
    assert len(gitlab_service.requests_to(f"/issues/{iid}/notes", "POST")) == 1


def test_consult_note_request_lost(store, profile, client, gitlab_service):
    case = new_case(store, classified=True)
    iid = file_case(store, case.id, profile, ACTOR)["iid"]
    notes_path = f"/issues/{iid}/notes"
    proxy_error = ScriptedResponse(502, HTML_502, {"Content-Type": "text/html"}, notes_path)
    gitlab_service.knobs.script.append(proxy_error)

    with pytest.raises(HelpctlError) as caught:
        consult(store, case.id, "dgarcia", QUESTION, profile, ACTOR, client=client)

    assert caught.value.status == 502
    assert notes_in_stand_in(gitlab_service, iid) == []
    assert "consultations" not in store.load(case.id).extra


def test_consult_unknown_developer(store, profile, client, gitlab_service):
    case = new_case(store)

    with pytest.raises(PreconditionFailed) as caught:
        consult(store, case.id, "nobody", QUESTION, profile, ACTOR, client=client)

    assert "GitLab user 'nobody' not found" in caught.value.message
    assert len(gitlab_service.issues[UNIVERSE_ID]) == 2


@pytest.mark.parametrize("developer", ["", "two words", "a/b"])
def test_consult_invalid_username(store, profile, client, developer):
    case = new_case(store)

    with pytest.raises(UsageError):
        consult(store, case.id, developer, QUESTION, profile, ACTOR, client=client)


def test_consult_closed_case_refused(store, profile, client):
    case = new_case(store)
    with store.edit(case.id) as editing:
        editing.status = "closed"

    with pytest.raises(PreconditionFailed):
        consult(store, case.id, "dgarcia", QUESTION, profile, ACTOR, client=client)


# ----- answers -----


def test_answer_on_filed_issue_synced(store, profile, client, developer):
    case = new_case(store, classified=True)
    iid = file_case(store, case.id, profile, ACTOR)["iid"]
    asked = consult(store, case.id, "dgarcia", QUESTION, profile, ACTOR, client=client)
    issue = developer.issues.get(iid)
    issue.notes.create({"body": "Yes: invitations expire after 7 days. Send a new one."})

    result = sync_case(store, case.id, client, ACTOR, profile=profile)

    assert [event["event"] for event in result.events] == ["consultation-answered"]
    answer = result.events[0]
    assert answer["developer"] == "dgarcia"
    assert answer["excerpt"] == "Yes: invitations expire after 7 days. Send a new one."
    assert answer["question_notes"] == [asked.note_id]
    entry = store.load(case.id).extra["consultations"][0]
    assert entry["status"] == "answered"
    assert entry["answer_notes"] == [answer["note_id"]]


def test_other_author_is_comment(store, profile, client, developer, gitlab_service):
    case = new_case(store, classified=True)
    iid = file_case(store, case.id, profile, ACTOR)["iid"]
    consult(store, case.id, "pmorales", "Which resolver counts them?", profile, ACTOR, client=client)
    developer.issues.get(iid).notes.create({"body": "Not mine, asking Pablo."})

    result = sync_case(store, case.id, client, ACTOR, profile=profile)

    assert [event["event"] for event in result.events] == ["issue-comment"]
    assert store.load(case.id).extra["consultations"][0]["status"] == "open"


def test_answer_on_consultation_issue_synced(store, profile, client, developer):
    case = new_case(store)
    asked = consult(store, case.id, "dgarcia", QUESTION, profile, ACTOR, client=client)
    developer.issues.get(asked.iid).notes.create({"body": "They expire after 7 days."})

    result = sync_case(store, case.id, client, ACTOR, profile=profile)

    assert result.issues == [asked.iid]
    assert [event["event"] for event in result.events] == ["consultation-answered"]
    assert result.events[0]["iid"] == asked.iid


def test_answered_consultation_not_followed(store, profile, client, developer):
    case = new_case(store)
    asked = consult(store, case.id, "dgarcia", QUESTION, profile, ACTOR, client=client)
    developer.issues.get(asked.iid).notes.create({"body": "They expire after 7 days."})
    sync_case(store, case.id, client, ACTOR, profile=profile)

    with pytest.raises(PreconditionFailed):
        sync_case(store, case.id, client, ACTOR, profile=profile)


# ----- command -----


def test_cli_consult_json(store, profile, gitlab_service):
    case = new_case(store)

    code, result = cli("--json", "consult", case.id, "--developer", "dgarcia", "--question", QUESTION)

    assert code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["issue_created"] is True
    assert answer["confidential"] is True
    assert answer["question"].startswith("Does the invitation of user-2 expire")


def test_cli_consult_empty_question(store, profile):
    case = new_case(store)

    code, result = cli("consult", case.id, "--developer", "dgarcia", "--question", "  ")

    assert code == 2
    assert "the question is empty" in str(result.exception)
