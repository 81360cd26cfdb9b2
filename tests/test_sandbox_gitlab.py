"""The GitLab stand-in, driven by python-gitlab and requests over 127.0.0.1."""

from __future__ import annotations

import datetime as dt

import gitlab
import gitlab.exceptions
import pytest
import requests

from helpctl.sandbox import Sandbox
from helpctl.sandbox.gitlab_api import GitlabService
from helpctl.sandbox.gitlab_seed import SeedToken
from helpctl.sandbox.server import RunningService

TOKEN = "sandbox-gitlab-token"
READONLY_TOKEN = "sandbox-gitlab-readonly"
PROJECT = "fluidattacks/universe"


@pytest.fixture(scope="module")
def server():
    started = RunningService(GitlabService()).start()
    yield started
    started.stop()


@pytest.fixture
def running(server):
    server.service.reset()
    return server


@pytest.fixture
def gl(running):
    return gitlab.Gitlab(running.base_url, private_token=TOKEN)


@pytest.fixture
def project(gl):
    return gl.projects.get(PROJECT)


def api(running, path, token=TOKEN, **params):
    headers = {"PRIVATE-TOKEN": token} if token else {}
    return requests.get(f"{running.base_url}/api/v4{path}", headers=headers, params=params, timeout=5)


def test_user_private_token(gl):
    gl.auth()

    assert gl.user.username == "ssoporte"
    assert gl.user.name == "Sandra Soporte"


def test_user_bearer_token(running):
    client = gitlab.Gitlab(running.base_url, oauth_token=TOKEN)
    client.auth()

    assert client.user.username == "ssoporte"


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_user_bad_token_401(running, token):
    client = gitlab.Gitlab(running.base_url, private_token=token)

    with pytest.raises(gitlab.exceptions.GitlabAuthenticationError) as caught:
        client.auth()

    assert caught.value.response_code == 401
    assert caught.value.response_body == b'{"message": "401 Unauthorized"}'


def test_readonly_token_reads(running):
    client = gitlab.Gitlab(running.base_url, private_token=READONLY_TOKEN)
    client.auth()

    assert client.user.username == "btriager"
    assert client.projects.get(PROJECT).id == 20741933


def test_readonly_token_write_403(running):
    client = gitlab.Gitlab(running.base_url, private_token=READONLY_TOKEN)
    before = len(running.service.issues[20741933])

    with pytest.raises(gitlab.exceptions.GitlabCreateError) as caught:
        client.projects.get(PROJECT, lazy=True).issues.create({"title": "x"})

    assert caught.value.response_code == 403
    assert b'"error": "insufficient_scope"' in caught.value.response_body
    assert b'"scope": "api"' in caught.value.response_body
    assert len(running.service.issues[20741933]) == before


def test_project_by_path_and_id(gl, running):
    by_path = gl.projects.get(PROJECT)
    by_id = gl.projects.get(20741933)

    assert by_path.id == by_id.id == 20741933
    assert by_path.path_with_namespace == PROJECT
    assert by_path.web_url == f"{running.base_url}/{PROJECT}"
    assert running.service.requests_to("/projects/fluidattacks%2Funiverse", "GET")


@pytest.mark.parametrize("reference", ["fluidattacks/missing", "fluidattacks/infra-secrets", 1])
def test_project_hidden_404(gl, reference):
    with pytest.raises(gitlab.exceptions.GitlabGetError) as caught:
        gl.projects.get(reference)

    assert caught.value.response_code == 404
    assert caught.value.response_body == b'{"message": "404 Project Not Found"}'


def test_private_project_member_sees_it(running):
    # The seed gives jhead no token; one added here shows that members do see the project.
    running.service.tokens["head-token"] = SeedToken("jhead", ["api"])
    client = gitlab.Gitlab(running.base_url, private_token="head-token")

    assert client.projects.get("fluidattacks/infra-secrets").name == "infra-secrets"


def test_users_by_username(gl):
    found = gl.users.list(username="JHead")

    assert [user.username for user in found] == ["jhead"]
    assert found[0].name == "Juliana Head"
    assert gl.users.list(username="nobody") == []


def test_members_all_paginated(running, project):
    members = project.members_all.list(get_all=True, per_page=3)
    first = api(running, "/projects/20741933/members/all", per_page=3)

    assert len(members) == 7
    assert {member.username for member in members} >= {"jhead", "imanager", "btriager", "ssoporte"}
    assert first.headers["X-Total"] == "7"
    assert first.headers["X-Total-Pages"] == "3"
    assert first.headers["X-Next-Page"] == "2"
    assert 'rel="next"' in first.headers["Link"]
    assert "page=2" in first.links["next"]["url"]
    assert first.links["next"]["url"].startswith(running.base_url)


def test_labels_paginated(running, project):
    names = [label.name for label in project.labels.list(get_all=True, per_page=2)]
    last = api(running, "/projects/20741933/labels", per_page=2, page=3)

    assert names == ["type::bug", "type::feature", "incident", "customer-reported", "product::integrates"]
    assert len(running.service.requests_to("/labels", "GET")) == 4
    assert last.headers["X-Next-Page"] == ""
    assert "next" not in last.links
    assert len(last.json()) == 1


def test_per_page_capped(running):
    answer = api(running, "/users", per_page=500)

    assert answer.headers["X-Per-Page"] == "100"


def test_bad_page_400(running):
    answer = api(running, "/users", page="two")

    assert answer.status_code == 400


def test_label_create_rules(project):
    created = project.labels.create({"name": "area::vulnerabilities", "color": "#123456"})

    assert created.name == "area::vulnerabilities"
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as duplicate:
        project.labels.create({"name": "area::vulnerabilities", "color": "#123456"})
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as comma:
        project.labels.create({"name": "area: db,cache", "color": "#123456"})
    assert duplicate.value.response_code == 409
    assert comma.value.response_code == 400


def test_issue_labels_list_and_string(project, running):
    from_list = project.issues.create({"title": "a", "labels": ["type::bug", "customer-reported"]})
    from_string = project.issues.create({"title": "b", "labels": "type::feature, new-label"})

    assert from_list.labels == ["type::bug", "customer-reported"]
    assert from_string.labels == ["type::feature", "new-label"]
    names = [label["name"] for label in running.service.labels[20741933]]
    assert "new-label" in names
    assert not any(len(name) == 1 for name in names)


def test_issue_fields(project):
    issue = project.issues.create(
        {
            "title": "Count mismatch",
            "description": "body",
            "assignee_ids": [104, 999],
            "confidential": True,
            "issue_type": "incident",
        }
    )

    assert issue.iid == 3
    assert issue.state == "opened"
    assert issue.confidential is True
    assert issue.issue_type == "incident"
    assert issue.type == "INCIDENT"
    assert [user["username"] for user in issue.assignees] == ["pmorales"]
    assert issue.author["username"] == "ssoporte"
    assert issue.web_url.endswith("/fluidattacks/universe/-/issues/3")


def test_issue_bad_type_400(project):
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as caught:
        project.issues.create({"title": "x", "issue_type": "epic"})

    assert caught.value.response_code == 400


def test_issue_too_long_400(project, running):
    before = len(running.service.issues[20741933])

    with pytest.raises(gitlab.exceptions.GitlabCreateError) as description:
        project.issues.create({"title": "x", "description": "d" * 1_048_577})
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as title:
        project.issues.create({"title": "t" * 256})

    assert description.value.response_code == 400
    assert description.value.error_message == {"description": ["is too long (maximum is 1048576 characters)"]}
    assert title.value.error_message == {"title": ["is too long (maximum is 255 characters)"]}
    assert len(running.service.issues[20741933]) == before


def test_issue_at_limits_accepted(project):
    issue = project.issues.create({"title": "t" * 255, "description": "d" * 1_048_576})

    assert len(issue.description) == 1_048_576


def test_issue_search_filters(project):
    project.issues.create({"title": "Marker", "description": "text\n<!-- helpctl-case: 250301-aaaaaa -->"})
    closed = project.issues.create({"title": "Other", "description": "about 250301-aaaaaa", "labels": ["incident"]})
    closed.state_event = "close"
    closed.save()

    by_text = project.issues.list(search="250301-aaaaaa", get_all=True)
    in_title = project.issues.list(search="250301-aaaaaa", get_all=True, **{"in": "title"})
    opened = project.issues.list(search="250301-aaaaaa", state="opened", get_all=True)
    labelled = project.issues.list(labels=["incident"], get_all=True)

    assert [issue.title for issue in by_text] == ["Other", "Marker"]
    assert in_title == []
    assert [issue.title for issue in opened] == ["Marker"]
    assert [issue.title for issue in labelled] == ["Other"]


def test_issue_update_state_labels(project):
    issue = project.issues.get(2)
    issue.state_event = "close"
    issue.labels = ["type::bug", "incident"]
    issue.save()
    closed = project.issues.get(2)
    closed.state_event = "reopen"
    closed.save()

    assert issue.state == "closed"
    assert issue.closed_at is not None
    assert closed.labels == ["type::bug", "incident"]
    assert project.issues.get(2).state == "opened"
    assert project.issues.get(2).closed_at is None


def test_issue_missing_404(project):
    with pytest.raises(gitlab.exceptions.GitlabGetError) as caught:
        project.issues.get(999)

    assert caught.value.response_code == 404


def test_notes_create_list(project):
    issue = project.issues.get(2)
    issue.notes.create({"body": "first"})
    issue.notes.create({"body": "second"})

    assert [note.body for note in issue.notes.list(get_all=True)] == ["second", "first"]
    assert project.issues.get(2).user_notes_count == 2
    with pytest.raises(gitlab.exceptions.GitlabCreateError):
        issue.notes.create({"body": "n" * 1_000_001})


def test_commits_path_since(project, running):
    since = (running.service.now - dt.timedelta(days=60)).isoformat()
    query = {"path": "integrates/back/src/vulnerabilities", "since": since}
    commits = project.commits.list(get_all=True, query_parameters=query)
    everything = project.commits.list(get_all=True, query_parameters={"path": "integrates/back/src/vulnerabilities"})

    assert [commit.author_email for commit in commits] == ["pablo.morales@fluidattacks.com", "leo.torres@fluidattacks.com"]
    assert commits[0].committed_date > commits[1].committed_date
    assert len(everything) == 2


def test_commits_prefix_is_whole_folder(project):
    # `integrates/back/src/event` must not match `integrates/back/src/events/...`.
    commits = project.commits.list(get_all=True, query_parameters={"path": "integrates/back/src/event"})

    assert commits == []


def test_commits_newest_first(project):
    dates = [commit.committed_date for commit in project.commits.list(get_all=True)]

    assert dates == sorted(dates, reverse=True)
    assert len(dates) == 9


def test_commits_unknown_ref_404(project):
    with pytest.raises(gitlab.exceptions.GitlabListError) as caught:
        project.commits.list(ref_name="nope", get_all=True)

    assert caught.value.response_code == 404


def test_drop_after_create_stores(project, running):
    running.service.knobs.drop_after_create = True

    with pytest.raises(gitlab.exceptions.GitlabCreateError) as caught:
        project.issues.create({"title": "lost answer"}, retry_transient_errors=False)

    assert caught.value.response_code == 502
    assert running.service.issues[20741933][-1]["title"] == "lost answer"


def test_knobs_over_http(running):
    answer = requests.post(f"{running.base_url}/_sandbox/knobs", json={"drop_after_create": True}, timeout=5)

    assert answer.status_code == 200
    assert running.service.knobs.drop_after_create is True


def test_unknown_route_404(running):
    assert api(running, "/nothing/here").status_code == 404


def test_wrong_method_405(running):
    answer = requests.delete(f"{running.base_url}/api/v4/projects/20741933/labels", headers={"PRIVATE-TOKEN": TOKEN}, timeout=5)

    assert answer.status_code == 405


def test_sandbox_launcher_url():
    with Sandbox(services=["gitlab"]) as sandbox:
        url = sandbox.environment()["HELPCTL_GITLAB_URL"]
        client = gitlab.Gitlab(url, private_token=TOKEN)
        client.auth()

        assert url.startswith("http://127.0.0.1:")
        assert client.user.username == "ssoporte"
