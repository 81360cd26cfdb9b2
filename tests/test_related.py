"""Related cases and issues, links and merges, against the GitLab stand-in over 127.0.0.1."""

from __future__ import annotations

import json
from email.message import EmailMessage

import gitlab
import pytest
import typer
from typer.testing import CliRunner

from helpctl.app import root_callback
from helpctl.cases.model import Case, Person, Subjects
from helpctl.cases.store import CaseStore, new_case_id
from helpctl.clients.gitlab import GitlabClient
from helpctl.commands.case_links import register_case
from helpctl.config.profiles import load_profile
from helpctl.errors import HelpctlError, PreconditionFailed, UsageError
from helpctl.filing_case import file_case
from helpctl.findings import Finding
from helpctl.intake import MessageIdMap, open_or_thread, parse_message
from helpctl.related import (
    find_related,
    link_cases,
    link_issue,
    log_phrase,
    log_signature,
    merge_cases,
    search_related,
    subject_similarity,
    unlink,
)
from helpctl.sandbox import Sandbox
from helpctl.sandbox.gitlab_seed import UNIVERSE_ID, UNIVERSE_PATH, SeedToken
from helpctl.sandbox.server import HTML_502, ScriptedResponse
from helpctl.sync import is_helpctl_note, sync_case

ACTOR = "support.sandbox@fluidattacks.com"
GITLAB_TOKEN = "sandbox-gitlab-token"
DEVELOPER_TOKEN = "sandbox-test-pmorales"
SUBJECT = "Open vulnerabilities count does not match the list in kiwiapp"


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


def error_finding(error_class="TypeError", context="VulnerabilitiesView") -> Finding:
    return Finding(
        source="errors",
        check="user_errors",
        subject="ana.gomez@kiwicorp.co",
        outcome="ok",
        summary=f"{error_class} in {context}",
        signals={"errors.top_error_class": error_class, "errors.top_context": context},
    )


def log_finding(message: str) -> Finding:
    return Finding(source="logs", check="user_errors", subject="kiwiapp", outcome="ok", summary="errors", signals={"logs.top_message": message})


def new_case(
    store,
    subject=SUBJECT,
    requester="ana.gomez@kiwicorp.co",
    organization="kiwicorp",
    findings=(),
    label=None,
    users=(),
    status="open",
) -> Case:
    case = Case(
        id=new_case_id(),
        profile="sandbox",
        subject=subject,
        requester=Person(requester, ""),
        body="The dashboard and the list disagree.",
        status=status,
        organization=organization,
        subjects=Subjects(users=list(users), groups=["kiwiapp"], organizations=[organization] if organization else []),
        classification={"label": label, "rules": []} if label else None,
        findings=[finding.to_dict() for finding in findings],
    )
    case.record(ACTOR, "opened", source="typed")
    return store.create(case)


def filed(store, profile, **fields) -> tuple[Case, int]:
    case = new_case(store, label="bug", **fields)
    return case, file_case(store, case.id, profile, ACTOR)["iid"]


def notes_in_stand_in(service, iid: int) -> list[dict]:
    return service.notes.get((UNIVERSE_ID, iid), [])


def references(related) -> list[str]:
    return [item.reference for item in related]


def cli(*arguments: str) -> tuple[int, object]:
    app = typer.Typer()
    app.callback()(root_callback)
    case_app = typer.Typer()
    register_case(case_app)
    app.add_typer(case_app, name="case")
    result = CliRunner().invoke(app, list(arguments))
    if isinstance(result.exception, HelpctlError):
        return int(result.exception.exit_code), result
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result


# ----- similarity and signatures -----


def test_log_signature_ignores_values():
    first = log_signature('Access denied for ana.gomez@kiwicorp.co on finding 3381 (request 5f0e8a4c-1d2b-4c3d-9e8f-0a1b2c3d4e5f)')
    second = log_signature('Access denied for luisa@kiwicorp.co on finding 12 (request 11111111-2222-4333-8444-555555555555)')

    assert first == second
    assert first == "access denied for <email> on finding <n> (request <uuid>)"


def test_log_phrase_constant_part():
    assert log_phrase("Timeout after 30000 ms querying vulnerabilities of group kiwiapp") == "ms querying vulnerabilities of group kiwiapp"
    assert log_phrase("id 12 34") is None


@pytest.mark.parametrize(
    ("first", "second", "similar"),
    [
        (SUBJECT, "RE: Open vulnerabilities count does not match the list in kiwipay", True),
        (SUBJECT, "[Platform] Open vulnerabilities count does not match the list in kiwiapp", True),
        (SUBJECT, "Please add SSO with Okta for our organization", False),
        ("", SUBJECT, False),
    ],
)
def test_subject_similarity(first, second, similar):
    assert (subject_similarity(first, second) >= 0.6) is similar


# ----- finding related cases -----


def test_related_same_error(store, profile):
    case = new_case(store, findings=[error_finding()])
    other = new_case(store, subject="The vulnerabilities page crashes", organization="acme", requester="x@acme.co", findings=[error_finding()])
    new_case(store, subject="Another crash", organization="acme", requester="y@acme.co", findings=[error_finding(context="EventsView")])

    related = search_related(store, case, profile, include_issues=False).related

    assert references(related) == [other.id]
    assert related[0].reasons == ["same BugSnag error TypeError in VulnerabilitiesView"]
    assert related[0].score == 0.9


def test_related_same_log_signature(store, profile):
    case = new_case(store, findings=[log_finding("Access denied for ana.gomez@kiwicorp.co on finding 3381")])
    other = new_case(store, subject="Cannot see a finding", organization="acme", requester="x@acme.co",
                     findings=[log_finding("Access denied for luisa@kiwicorp.co on finding 12")])

    related = search_related(store, case, profile, include_issues=False).related

    assert references(related) == [other.id]
    assert related[0].reasons == ["same log signature 'Access denied for ana.gomez@kiwicorp.co on finding 3381'"]


def test_related_same_org_similar_subject(store, profile):
    case = new_case(store)
    similar = new_case(store, subject="RE: Open vulnerabilities count does not match the list", requester="luisa.fernandez@kiwicorp.co")
    new_case(store, subject=SUBJECT, organization="acme", requester="x@acme.co")
    new_case(store, subject="Please add SSO with Okta", requester="pedro.rios@kiwicorp.co")
    new_case(store, subject=SUBJECT, requester="marta.vidal@kiwicorp.co", status="closed")

    related = search_related(store, case, profile, include_issues=False).related

    assert references(related) == [similar.id]
    assert related[0].reasons[0].startswith("same organization kiwicorp and a similar subject (")


def test_related_same_issue_ranks_first(store, profile, client):
    case, iid = filed(store, profile, findings=[error_finding()])
    follower = new_case(store, subject="Something else", organization="acme", requester="x@acme.co")
    link_issue(store, follower.id, iid, profile, ACTOR, client=client)
    lookalike = new_case(store, subject="Crash", organization="acme", requester="y@acme.co", findings=[error_finding()])

    related = search_related(store, store.load(case.id), profile, include_issues=False).related

    assert references(related) == [follower.id, lookalike.id]
    assert related[0].reasons == [f"same GitLab issue #{iid}"]
    assert related[0].linked is False


def test_related_reasons_combine(store, profile):
    case = new_case(store, findings=[error_finding()])
    other = new_case(store, subject="RE: Open vulnerabilities count does not match the list", requester="luisa@kiwicorp.co",
                     findings=[error_finding()])

    related = search_related(store, case, profile, include_issues=False).related

    assert references(related) == [other.id]
    assert len(related[0].reasons) == 2
    assert related[0].score > 0.9


def test_related_open_issues(store, profile, client, gitlab_service):
    case, own_iid = filed(store, profile, findings=[error_finding(), log_finding("Timeout after 30000 ms querying vulnerabilities of group kiwiapp")])
    named = client.create_issue({"title": "Crash on the vulnerabilities page", "description": "TypeError in VulnerabilitiesView since Monday"})
    logged = client.create_issue({"title": "Slow group", "description": "Logs: Timeout after 100 ms querying vulnerabilities of group kiwiapp"})
    titled = client.create_issue({"title": "[Platform] Open vulnerabilities count does not match the list", "description": "-"})
    closed = client.create_issue({"title": "[Platform] Open vulnerabilities count does not match the list in kiwiapp", "description": "TypeError"})
    client.set_issue_state(closed["iid"], "close")

    related = find_related(store, store.load(case.id), profile, client=client)

    # The title match scores 0.9 × its similarity (about 0.93), above the log match's 0.8.
    assert [item.iid for item in related] == [named["iid"], titled["iid"], logged["iid"]]
    assert related[0].reasons == ["names BugSnag error TypeError in VulnerabilitiesView"]
    assert related[1].reasons[0].startswith("title similar to the subject (")
    assert related[2].reasons == ["names the log message 'ms querying vulnerabilities of group kiwiapp'"]
    assert own_iid not in [item.iid for item in related]


def test_related_gitlab_failure_keeps_cases(store, profile, client, gitlab_service):
    case = new_case(store, findings=[error_finding()])
    other = new_case(store, subject="Crash", organization="acme", requester="x@acme.co", findings=[error_finding()])
    for _ in range(2):
        gitlab_service.knobs.script.append(ScriptedResponse(502, HTML_502, {"Content-Type": "text/html"}, "/issues"))

    report = search_related(store, case, profile, client=client)

    assert references(report.related) == [other.id]
    assert len(report.problems) == 1
    assert "502 Bad Gateway" in report.problems[0]


# ----- linking -----


def test_link_comments_and_follows(store, profile, client, gitlab_service):
    original, iid = filed(store, profile)
    newcomer = new_case(store, subject="Counter wrong, call +57 300 123 4567 or pedro.rios@kiwicorp.co", requester="pedro.rios@kiwicorp.co")

    result = link_cases(store, newcomer.id, original.id, profile, ACTOR, client=client)

    note = notes_in_stand_in(gitlab_service, iid)[-1]
    assert note["id"] == result.note_id
    assert note["body"].startswith(f"Another client reports the same: Help Channel case `{newcomer.id}` from organization kiwicorp: Counter wrong")
    assert "pedro.rios" not in note["body"]
    assert "300 123 4567" not in note["body"]
    assert is_helpctl_note(note["body"])
    follower = store.load(newcomer.id)
    assert follower.issue["iid"] == iid
    assert follower.issue["linked_from"] == original.id
    assert follower.status == "filed"
    assert follower.extra["links"][0]["case"] == original.id
    assert store.load(original.id).extra["links"][0]["case"] == newcomer.id
    assert result.follows_issue is True


def test_link_proposes_incident(store, profile, client):
    original, _ = filed(store, profile)
    newcomer = new_case(store, requester="pedro.rios@kiwicorp.co")

    result = link_cases(store, newcomer.id, original.id, profile, ACTOR, client=client)

    assert result.affected == ["ana.gomez@kiwicorp.co", "pedro.rios@kiwicorp.co"]
    assert result.incident_command == (
        f"helpctl classify {original.id} --as incident "
        f"--reason '2 users affected across linked cases {', '.join(sorted([original.id, newcomer.id]))}'"
    )
    assert store.load(original.id).classification["label"] == "bug"


def test_link_no_incident_for_one_user(store, profile, client, gitlab_service):
    original, iid = filed(store, profile)
    again = new_case(store, subject="Still wrong", requester="ana.gomez@kiwicorp.co")
    notes_before = len(notes_in_stand_in(gitlab_service, iid))

    result = link_cases(store, again.id, original.id, profile, ACTOR, client=client)

    assert result.incident_command is None
    assert result.note_id is None
    assert result.warnings == [f"ana.gomez@kiwicorp.co already reports through a case on issue #{iid}; no comment was posted"]
    assert len(notes_in_stand_in(gitlab_service, iid)) == notes_before


def test_link_twice_one_comment(store, profile, client, gitlab_service):
    original, iid = filed(store, profile)
    newcomer = new_case(store, requester="pedro.rios@kiwicorp.co")
    link_cases(store, newcomer.id, original.id, profile, ACTOR, client=client)

    again = link_cases(store, newcomer.id, original.id, profile, ACTOR, client=client)

    assert again.already_linked is True
    assert len(notes_in_stand_in(gitlab_service, iid)) == 1
    assert len(store.load(newcomer.id).extra["links"]) == 1


def test_link_itself_refused(store, profile, client):
    case = new_case(store)

    with pytest.raises(UsageError):
        link_cases(store, case.id, case.id, profile, ACTOR, client=client)


def test_link_issue_follows(store, profile, client, gitlab_service):
    case = new_case(store, subject="Typo in the invitation", requester="luisa.fernandez@kiwicorp.co")

    result = link_issue(store, case.id, 2, profile, ACTOR, client=client)

    linked = store.load(case.id)
    assert linked.issue["iid"] == 2
    assert linked.issue["state"] == "opened"
    assert linked.status == "filed"
    assert linked.extra["links"] == [{**linked.extra["links"][0], "type": "issue", "iid": 2}]
    assert notes_in_stand_in(gitlab_service, 2)[-1]["id"] == result.note_id


def test_linked_follower_syncs_new_notes(store, profile, client, sandbox):
    developer = gitlab.Gitlab(sandbox.url("gitlab"), private_token=DEVELOPER_TOKEN).projects.get(UNIVERSE_PATH)
    developer.issues.get(2).notes.create({"body": "An old comment from before the link."})
    case = new_case(store, subject="Typo in the invitation", requester="luisa.fernandez@kiwicorp.co")
    link_issue(store, case.id, 2, profile, ACTOR, client=client)
    developer.issues.get(2).notes.create({"body": "Fix merged."})

    result = sync_case(store, case.id, client, ACTOR, profile=profile)

    assert [(event["event"], event["excerpt"]) for event in result.events] == [("issue-comment", "Fix merged.")]


def test_link_missing_issue(store, profile, client):
    case = new_case(store)

    with pytest.raises(HelpctlError) as caught:
        link_issue(store, case.id, 404, profile, ACTOR, client=client)

    assert "issue #404 not found" in caught.value.message
    assert "links" not in store.load(case.id).extra


# ----- unlinking -----


def test_unlink_case_both_sides(store, profile, client):
    original, _ = filed(store, profile)
    newcomer = new_case(store, requester="pedro.rios@kiwicorp.co")
    link_cases(store, newcomer.id, original.id, profile, ACTOR, client=client)

    removed = unlink(store, newcomer.id, ACTOR, other_id=original.id)

    assert [link["case"] for link in removed] == [original.id]
    follower = store.load(newcomer.id)
    assert follower.extra["links"] == []
    assert follower.issue is None
    assert follower.status == "open"
    assert store.load(original.id).extra["links"] == []
    assert store.load(original.id).issue["iid"] is not None


def test_unlink_issue(store, profile, client):
    case = new_case(store)
    link_issue(store, case.id, 2, profile, ACTOR, client=client)

    unlink(store, case.id, ACTOR, iid=2)

    assert store.load(case.id).issue is None
    assert [event.event for event in store.load(case.id).timeline][-1] == "unlinked"


def test_unlink_without_link(store, profile):
    case = new_case(store)

    with pytest.raises(PreconditionFailed):
        unlink(store, case.id, ACTOR, iid=7)


# ----- merging -----


def email_bytes(message_id: str, subject: str, *, in_reply_to: str | None = None, attachment: bytes | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = "Ana Gómez <ana.gomez@kiwicorp.co>"
    message["To"] = "help@fluidattacks.com"
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message["Date"] = "Thu, 03 Dec 2026 09:12:00 -0500"
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    message.set_content("The counter says 7 and the list shows 4 in kiwiapp.")
    if attachment is not None:
        message.add_attachment(attachment, maintype="image", subtype="png", filename="screenshot.png")
    return message.as_bytes()


def intake(store, raw: bytes):
    return open_or_thread(store, parse_message(raw), raw, profile="sandbox", actor=ACTOR)


def test_merge_moves_everything(store):
    case = intake(store, email_bytes("<first@kiwicorp.co>", "Counter is wrong")).case
    other = intake(store, email_bytes("<second@kiwicorp.co>", "Counter still wrong", attachment=b"\x89PNG fake")).case
    with store.edit(other.id) as editing:
        editing.notes.append({"at": "2026-12-03T15:00:00Z", "actor": ACTOR, "text": "Asked for a screenshot"})
        raw_ref, _ = store.write_rows(editing.id, "platform-open_vulnerabilities", [{"id": 1}])
        finding = log_finding("Access denied")
        finding.raw_ref = raw_ref
        editing.put_finding(finding)
        editing.record(ACTOR, "status-changed", previous="open", status="waiting", reason="needs-info sent")

    result = merge_cases(store, case.id, other.id, ACTOR)

    merged, emptied = store.load(case.id), store.load(other.id)
    assert (result.messages, result.attachments, result.notes, result.findings) == (1, 1, 1, 1)
    assert [entry["message_id"] for entry in merged.messages] == ["<first@kiwicorp.co>", "<second@kiwicorp.co>"]
    for relative in [merged.messages[1]["file"], *merged.attachments, merged.findings[0]["raw_ref"]]:
        assert (store.folder(case.id) / relative).is_file()
    assert merged.notes[0]["merged_from"] == other.id
    copied = [event.event for event in merged.timeline if event.detail.get("merged_from") == other.id]
    assert "opened" in copied
    assert "status-changed" not in copied
    assert merged.timeline[-1].event == "merged"
    assert emptied.status == "closed"
    assert emptied.resolution == f"merged into {case.id}"
    assert emptied.extra["merged_into"] == case.id
    assert [event.event for event in emptied.timeline][0] == "opened"
    assert emptied.timeline[-1].event == "closed"
    assert (emptied.messages, emptied.attachments, emptied.notes, emptied.findings) == ([], [], [], [])
    leftover = [path.name for path in store.folder(other.id).rglob("*") if path.is_file() and not path.name.startswith(".")]
    assert leftover == ["case.yaml"]


def test_merge_threads_later_replies(store):
    case = intake(store, email_bytes("<first@kiwicorp.co>", "Counter is wrong")).case
    other = intake(store, email_bytes("<second@kiwicorp.co>", "Counter still wrong")).case
    merge_cases(store, case.id, other.id, ACTOR)

    reply = intake(store, email_bytes("<third@kiwicorp.co>", "RE: Counter still wrong", in_reply_to="<second@kiwicorp.co>"))

    assert reply.case.id == case.id
    assert reply.action == "threaded"
    message_map = MessageIdMap(store)
    message_map.load()
    assert message_map.find("<second@kiwicorp.co>") == case.id


def test_merge_adopts_issue(store, profile):
    case = new_case(store, subject="Counter wrong")
    other, iid = filed(store, profile)

    result = merge_cases(store, case.id, other.id, ACTOR)

    assert result.issue_adopted is True
    assert store.load(case.id).issue["iid"] == iid


def test_merge_refusals(store):
    case = new_case(store)
    other = new_case(store)
    merge_cases(store, case.id, other.id, ACTOR)

    with pytest.raises(UsageError):
        merge_cases(store, case.id, case.id, ACTOR)
    with pytest.raises(PreconditionFailed) as caught:
        merge_cases(store, case.id, other.id, ACTOR)

    assert f"already merged into case {case.id}" in caught.value.message


# ----- commands -----


def test_cli_related_offers_link(store, profile):
    case = new_case(store, findings=[error_finding()])
    other = new_case(store, subject="Crash", organization="acme", requester="x@acme.co", findings=[error_finding()])

    code, result = cli("case", "related", case.id, "--no-issues")

    assert code == 0, result.output
    assert other.id in result.stdout
    assert f"to link: helpctl case link {case.id} --case {other.id}" in result.stderr


def test_cli_link_prints_incident(store, profile):
    original, _ = filed(store, profile)
    newcomer = new_case(store, requester="pedro.rios@kiwicorp.co")

    code, result = cli("case", "link", newcomer.id, "--case", original.id)

    assert code == 0, result.output
    assert f"helpctl classify {original.id} --as incident --reason" in result.stdout


def test_cli_link_needs_one_target(store, profile):
    case = new_case(store)

    code, _ = cli("case", "link", case.id)

    assert code == 2


def test_cli_merge_needs_yes(store):
    case, other = new_case(store), new_case(store)

    code, _ = cli("case", "merge", case.id, other.id)
    assert code == 2
    assert store.load(other.id).status == "open"

    code, result = cli("--json", "case", "merge", case.id, other.id, "--yes")
    assert code == 0
    assert json.loads(result.stdout)["other_case"] == other.id
    assert store.load(other.id).status == "closed"


def test_cli_unlink_all_needs_yes(store, profile, client):
    case = new_case(store)
    link_issue(store, case.id, 2, profile, ACTOR, client=client)

    code, _ = cli("case", "unlink", case.id)
    assert code == 2

    code, result = cli("--json", "case", "unlink", case.id, "--yes")
    assert code == 0
    assert [link["iid"] for link in json.loads(result.stdout)["removed"]] == [2]
