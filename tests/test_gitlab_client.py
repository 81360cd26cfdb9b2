"""GitlabClient against the GitLab stand-in on 127.0.0.1: results, retries and error mapping."""

from __future__ import annotations

import datetime as dt
import email.utils
import socket

import pytest

from helpctl.clients.gitlab import GitlabClient, has_marker, retry_after_seconds
from helpctl.config.settings import GitlabSettings
from helpctl.errors import AuthError, NotFound, RateLimited, ServiceError, ServiceTimeout, UsageError
from helpctl.sandbox.gitlab_api import GitlabService
from helpctl.sandbox.server import HTML_502, Request, Response, RunningService, ScriptedResponse

TOKEN = "sandbox-gitlab-token"
PROJECT = "fluidattacks/universe"
MARKER = "<!-- helpctl-case: 250301-k1w1ab -->"
CLOUDFLARE_520 = (
    b"<!DOCTYPE html><html><head><title>example.com | 520: Web server is returning an unknown error</title>"
    b"<style>" + b"body{margin:0}" * 400 + b"</style></head><body><h1>Error 520</h1>" + b"<p>Ray ID</p>" * 300 + b"</body></html>"
)


@pytest.fixture(scope="module")
def server():
    started = RunningService(GitlabService()).start()
    yield started
    started.stop()


@pytest.fixture
def service(server):
    server.service.reset()
    return server.service


def make_client(server, token=TOKEN, project=PROJECT, **overrides):
    values = {"url": server.base_url, "project": project, "timeout": 2.0, "max_retries": 2}
    values.update(overrides)
    return GitlabClient(GitlabSettings(**values), token)


@pytest.fixture
def client(server, service):
    return make_client(server)


def script(service, *answers):
    service.knobs.script = list(answers)


# ----- results -----


def test_current_user_cached(client, service):
    first = client.current_user()
    second = client.current_user()

    assert first == second
    assert first["username"] == "ssoporte"
    assert len(service.requests_to("/api/v4/user")) == 1


def test_project_dict(client, server):
    project = client.project()

    assert project["id"] == 20741933
    assert project["path_with_namespace"] == PROJECT
    assert project["web_url"] == f"{server.base_url}/{PROJECT}"
    assert project["default_branch"] == "trunk"


def test_user_by_username(client):
    assert client.user_by_username("pmorales")["id"] == 104
    assert client.user_by_username("nobody") is None


def test_label_names(client):
    assert client.label_names() == {"type::bug", "type::feature", "incident", "customer-reported", "product::integrates"}


def test_create_label(client):
    client.create_label("area::vulnerabilities")

    assert "area::vulnerabilities" in client.label_names()


def test_create_label_comma(client, service):
    with pytest.raises(UsageError):
        client.create_label("area: db,cache")

    assert service.requests_to("/labels", "POST") == []


def test_issue_dicts(client):
    created = client.create_issue(
        {"title": "t", "description": "d", "labels": ["type::bug"], "assignee_ids": [104], "issue_type": "incident"}
    )
    fetched = client.get_issue(created["iid"])

    assert created == fetched
    assert created["assignee"] == "pmorales"
    assert created["labels"] == ["type::bug"]
    assert created["state"] == "opened"
    assert created["issue_type"] == "incident"
    assert created["web_url"].endswith(f"/-/issues/{created['iid']}")


def test_get_issue_missing(client):
    with pytest.raises(NotFound) as caught:
        client.get_issue(404)

    assert "issue #404 not found" in caught.value.message


def test_marker_found_any_state(client, server):
    issue = client.create_issue({"title": "filed", "description": f"body\n{MARKER}"})
    make_gitlab_issue_closed(server, issue["iid"])

    found = client.find_issue_by_marker(MARKER)

    assert found["iid"] == issue["iid"]
    assert found["state"] == "closed"


def test_marker_oldest_wins(client):
    first = client.create_issue({"title": "first", "description": MARKER})
    client.create_issue({"title": "duplicate", "description": MARKER})

    assert client.find_issue_by_marker(MARKER)["iid"] == first["iid"]


def test_marker_must_be_a_line(client):
    client.create_issue({"title": "prose", "description": "see helpctl-case: 250301-k1w1ab for details"})
    client.create_issue({"title": "quoted", "description": f"> {MARKER}"})

    assert client.find_issue_by_marker(MARKER) is None


def test_has_marker_lines():
    assert has_marker(f"a\n  {MARKER}  \n", MARKER)
    assert not has_marker(f"a {MARKER}", MARKER)
    assert not has_marker(None, MARKER)


def test_recent_commits_merged(client, service):
    since = service.now - dt.timedelta(days=60)
    paths = ["integrates/back/src/api/resolvers/vulnerability", "integrates/back/src/vulnerabilities"]

    commits = client.recent_commits(paths, since)

    assert [commit["author_email"] for commit in commits] == [
        "pablo.morales@fluidattacks.com",
        "pablo.morales@fluidattacks.com",
        "leo.torres@fluidattacks.com",
    ]
    assert commits[0]["path"] == paths[0]
    assert commits[1]["path"] == paths[1]


def test_user_agent(client, service):
    client.current_user()

    assert list(service.user_agents) == ["helpctl/0.1.0"]


# ----- 401 / 403 / 404: mapped apart, never retried -----


def test_401_auth_error(server, service):
    client = make_client(server, token="glpat-not-a-real-token-000")

    with pytest.raises(AuthError) as caught:
        client.project()

    assert "401 Unauthorized" in caught.value.message
    assert "helpctl auth login gitlab" in caught.value.hint
    assert "glpat-not-a-real-token-000" not in caught.value.message + caught.value.hint
    assert len(service.log) == 1


def test_403_scope_auth_error(server, service):
    client = make_client(server, token="sandbox-gitlab-readonly")

    with pytest.raises(AuthError) as caught:
        client.create_issue({"title": "x"})

    assert "'api' scope" in caught.value.message
    assert "insufficient_scope" in caught.value.message
    assert len(service.requests_to("/issues", "POST")) == 1


def test_403_role_auth_error(client, service):
    script(service, ScriptedResponse(403, b'{"message":"403 Forbidden"}', {"Content-Type": "application/json"}, "/labels"))

    with pytest.raises(AuthError) as caught:
        client.create_label("area::x")

    assert "too low a role" in caught.value.message
    assert "Reporter" in caught.value.hint
    assert len(service.requests_to("/labels", "POST")) == 1


@pytest.mark.parametrize("project", ["fluidattacks/missing", "fluidattacks/infra-secrets"])
def test_404_project_names_user(server, service, project):
    client = make_client(server, project=project, max_retries=3)

    with pytest.raises(NotFound) as caught:
        client.project()

    assert caught.value.message == f"project {project} not found or this token (user ssoporte) has no access to it"
    assert len(service.requests_to("/api/v4/projects/", "GET")) == 1


# ----- 429 and transient failures -----


def test_429_then_success(client, service):
    script(service, ScriptedResponse(429, b'{"message":"429 Too Many Requests"}', {"Retry-After": "0"}, "/labels"))

    names = client.label_names()

    assert "type::bug" in names
    assert [entry.status for entry in service.requests_to("/labels")] == [429, 200]


def test_429_fractional_retry_after(client, service):
    # python-gitlab parses Retry-After with int(); the client rounds "0.0" up before that.
    script(service, ScriptedResponse(429, b"{}", {"Retry-After": "0.0"}, "/labels"))

    assert "incident" in client.label_names()


def test_429_exhausted_rate_limited(client, service):
    answer = ScriptedResponse(429, b'{"message":"429 Too Many Requests"}', {"Retry-After": "0"}, "/labels")
    script(service, answer, answer, answer)

    with pytest.raises(RateLimited) as caught:
        client.label_names()

    assert caught.value.retry_after == 0
    assert caught.value.status == 429
    assert len(service.requests_to("/labels")) == 3


def test_429_long_wait_not_slept(client, service):
    script(service, ScriptedResponse(429, b"{}", {"Retry-After": "3600"}, "/labels"))

    with pytest.raises(RateLimited) as caught:
        client.label_names()

    assert caught.value.retry_after == 3600
    assert "wait 3600 s" in caught.value.hint
    assert len(service.requests_to("/labels")) == 1


def test_stale_retry_after_forgotten(client, service):
    script(service, ScriptedResponse(429, b"{}", {"Retry-After": "0"}, "/labels"))
    client.label_names()
    answer = ScriptedResponse(429, b"{}", {}, "/users")
    script(service, answer, answer, answer)

    with pytest.raises(RateLimited) as caught:
        client.user_by_username("jhead")

    assert caught.value.retry_after is None


def test_520_html_excerpt(client, service):
    answer = ScriptedResponse(520, CLOUDFLARE_520, {"Content-Type": "text/html"}, "/labels")
    script(service, answer, answer, answer)

    with pytest.raises(ServiceError) as caught:
        client.label_names()

    assert caught.value.status == 520
    assert "520: Web server is returning an unknown error" in caught.value.message
    assert "<" not in caught.value.message
    assert len(caught.value.message) < 300
    assert len(service.requests_to("/labels")) == 3


def test_502_then_success(client, service):
    script(service, ScriptedResponse(502, HTML_502, {"Content-Type": "text/html"}, "/users"))

    assert client.user_by_username("jhead")["username"] == "jhead"
    assert [entry.status for entry in service.requests_to("/users")] == [502, 200]


class FlakySecondPage(GitlabService):
    """Fails the first request for page 2 of any list with a Cloudflare 520 page."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def handle(self, request: Request) -> Response:
        if request.arg("page") == "2" and not self.failed:
            self.failed = True
            return Response(520, CLOUDFLARE_520, {"Content-Type": "text/html"})
        return super().handle(request)


def test_520_on_page_two_retried():
    server = RunningService(FlakySecondPage()).start()
    try:
        for number in range(150):
            server.service._add_label(20741933, f"area::{number:03d}", "#ffffff")
        names = make_client(server).label_names()
    finally:
        server.stop()

    assert len(names) == 155
    assert server.service.failed
    assert [entry.status for entry in server.service.requests_to("/labels")] == [200, 520, 200]


def test_create_not_retried_on_502(client, service):
    script(service, ScriptedResponse(502, HTML_502, {"Content-Type": "text/html"}, "/issues"))

    with pytest.raises(ServiceError) as caught:
        client.create_issue({"title": "x"})

    assert caught.value.status == 502
    assert "502 Bad Gateway" in caught.value.message
    assert len(service.requests_to("/issues", "POST")) == 1


def test_400_detail(client):
    with pytest.raises(ServiceError) as caught:
        client.create_issue({"title": "x", "description": "d" * 1_048_577})

    assert caught.value.status == 400
    assert "description is too long (maximum is 1048576 characters)" in caught.value.message


def test_timeout(server, service):
    service.knobs.latency = 0.4
    client = make_client(server, timeout=0.1, max_retries=0)

    with pytest.raises(ServiceTimeout) as caught:
        client.current_user()

    assert "timed out after 0.1 s" in caught.value.message


def test_connection_refused():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = GitlabClient(GitlabSettings(url=f"http://127.0.0.1:{port}", max_retries=0, timeout=1.0), TOKEN)

    with pytest.raises(ServiceError) as caught:
        client.current_user()

    assert "connection to GitLab failed" in caught.value.message
    assert type(caught.value) is ServiceError


def test_not_json_body(client, service):
    script(service, ScriptedResponse(200, b"<html>maintenance</html>", {"Content-Type": "text/html"}, "/user"))

    with pytest.raises(ServiceError) as caught:
        client.current_user()

    assert "not JSON" in caught.value.message


def test_not_json_list(client, service):
    script(service, ScriptedResponse(200, b"[oops", {"Content-Type": "application/json"}, "/labels"))

    with pytest.raises(ServiceError) as caught:
        client.label_names()

    assert "not JSON" in caught.value.message


def test_excerpt_masks_token(client, service):
    body = f"<html><body>upstream failed for PRIVATE-TOKEN {TOKEN}</body></html>".encode()
    answer = ScriptedResponse(500, body, {"Content-Type": "text/html"}, "/labels")
    script(service, answer, answer, answer)

    with pytest.raises(ServiceError) as caught:
        client.label_names()

    assert TOKEN not in caught.value.message
    assert "***" in caught.value.message


# ----- Retry-After parsing -----


def test_retry_after_values():
    now = 1_700_000_000.0
    later = email.utils.formatdate(now + 30, usegmt=True)

    assert retry_after_seconds("2", now) == 2.0
    assert retry_after_seconds("0.25", now) == 0.25
    assert retry_after_seconds(later, now) == pytest.approx(30, abs=1)
    assert retry_after_seconds("-5", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def make_gitlab_issue_closed(server, iid):
    import gitlab

    handle = gitlab.Gitlab(server.base_url, private_token=TOKEN).projects.get(PROJECT, lazy=True)
    issue = handle.issues.get(iid)
    issue.state_event = "close"
    issue.save()
