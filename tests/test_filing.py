"""Filing: rendering, size limits, preconditions and idempotency against the GitLab stand-in."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpctl.cases.model import Case, Person, Subjects
from helpctl.clients.gitlab import GitlabClient, has_marker
from helpctl.config.profiles import load_profile
from helpctl.errors import ConfigError, PreconditionFailed, ServiceError, UsageError
from helpctl.filing import build_request, case_marker, file_issue
from helpctl.findings import Finding
from helpctl.routing import route
from helpctl.sandbox.gitlab_api import GitlabService
from helpctl.sandbox.server import RunningService

TOKEN = "sandbox-gitlab-token"
UNIVERSE = 20741933
NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbmEuZ29tZXpAa2l3aWNvcnAuY28ifQ.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


# ----- a proxy that drops connections, so GitLab's response is really lost -----


class DroppingProxy:
    """Forwards HTTP on 127.0.0.1 to the stand-in; may close the connection on the next issue POST.

    `drop` is "before" (the request never reaches GitLab) or "after" (GitLab stores the
    issue and the response is lost); it applies once.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.drop = ""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                mode = proxy.drop if self.command == "POST" and self.path.split("?")[0].endswith("/issues") else ""
                if mode:
                    proxy.drop = ""
                if mode == "before":
                    self.close_connection = True
                    return

                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=5)
                upstream.request(self.command, self.path, body, dict(self.headers.items()))
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                if mode == "after":
                    self.close_connection = True
                    return

                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "connection", "date", "server"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _forward

            def log_message(self, format, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> DroppingProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ----- fixtures -----


@pytest.fixture(scope="module")
def server():
    started = RunningService(GitlabService()).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def proxy(server):
    started = DroppingProxy(server.port).start()
    yield started
    started.stop()


@pytest.fixture
def service(server):
    server.service.reset()
    return server.service


@pytest.fixture
def profile(tmp_path, monkeypatch, server):
    monkeypatch.setenv("HELPCTL_HOME", str(tmp_path))
    for name in ("HELPCTL_GITLAB_URL", "HELPCTL_PLATFORM_URL", "HELPCTL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    loaded = load_profile("sandbox")
    loaded.gitlab = dataclasses.replace(loaded.gitlab, url=server.base_url, timeout=2.0, max_retries=1)
    loaded.routing = copy.deepcopy(loaded.routing)
    return loaded


@pytest.fixture
def client(profile, service):
    return GitlabClient(profile.gitlab, TOKEN)


@pytest.fixture
def mismatch():
    return Finding(
        source="platform",
        check="open_vulnerabilities",
        subject="kiwiapp",
        outcome="ok",
        summary="openVulnerabilities says 7 while the VULNERABLE list has 4",
        request={
            "query": 'query ($group: String!) {\n  group(groupName: $group) { openVulnerabilities }\n}',
            "variables": {"group": "kiwiapp", "requester": "ana.gomez@kiwicorp.co"},
        },
        fetched_at="2025-03-01T11:58:00Z",
        window={"start": "2025-02-28T00:00:00Z", "end": "2025-03-01T11:58:00Z"},
        signals={"platform.open_vulnerabilities_mismatch": True},
        raw_ref="raw/platform-open_vulnerabilities.jsonl",
        component="vulnerabilities",
    )


@pytest.fixture
def case(mismatch):
    return Case(
        id="250301-k1w1ab",
        profile="sandbox",
        subject="Open vulnerabilities count does not match the list in kiwiapp",
        requester=Person("ana.gomez@kiwicorp.co", "Ana Gómez"),
        body=(
            "Hello, the kiwiapp dashboard says 7 open vulnerabilities but the list shows 4.\n"
            "My colleague luisa.fernandez@kiwicorp.co sees the same. Call me at +57 300 123 4567.\n"
            f"The request had Authorization: Bearer {JWT}\n"
            "and our key api_key=0123456789abcdef0123456789abcdef"
        ),
        organization="kiwicorp",
        subjects=Subjects(groups=["kiwiapp"], organizations=["kiwicorp"]),
        classification={
            "label": "bug",
            "rules": [
                {
                    "name": "vulnerability-count-mismatch",
                    "label": "bug",
                    "description": "The group's open-vulnerability counter disagrees with the vulnerabilities listed",
                    "findings": [mismatch.key],
                }
            ],
        },
    )


@pytest.fixture
def bug_route(profile):
    return route("bug", "vulnerabilities", profile.routing, None, NOW)


def marked_issues(service, case_id):
    return [issue for issue in service.issues[UNIVERSE] if has_marker(issue["description"], case_marker(case_id))]


# ----- title -----


def test_title_prefix(case, profile, bug_route, mismatch):
    request = build_request(case, profile, "bug", bug_route, [mismatch])

    assert request.title == "[Platform] Open vulnerabilities count does not match the list in kiwiapp"


def test_title_cut_on_word(case, profile, bug_route):
    case.subject = "word " * 80

    title = build_request(case, profile, "bug", bug_route, []).title

    assert len(title) <= 255
    assert title.endswith("word…")
    assert title.startswith("[Platform] word word")


def test_title_custom_limit(case, profile, bug_route):
    profile.gitlab.title_limit = 40

    title = build_request(case, profile, "bug", bug_route, []).title

    assert title == "[Platform] Open vulnerabilities count…"


def test_title_component_product(case, profile, bug_route):
    profile.routing.components["vulnerabilities"].product = "Integrates"

    assert build_request(case, profile, "bug", bug_route, []).title.startswith("[Integrates] ")


def test_title_redacted(case, profile, bug_route):
    case.subject = "Access for carlos.ruiz@kiwicorp.co"

    assert build_request(case, profile, "bug", bug_route, []).title == "[Platform] Access for user-1"


# ----- labels (normalised lists, never split per character) -----


def test_labels_string_not_split(case, profile, bug_route, client, service):
    profile.labels["bug"] = "type::bug, customer-reported"

    request = build_request(case, profile, "bug", bug_route, [])
    result = file_issue(request, client)

    assert request.labels == ["type::bug", "customer-reported"]
    assert result.labels == ["type::bug", "customer-reported"]
    assert not [label for label in service.labels[UNIVERSE] if len(label["name"]) == 1]


def test_labels_comma_rejected(case, profile, bug_route):
    profile.labels["bug"] = ["type::bug", "area: db,cache"]

    with pytest.raises(ConfigError) as caught:
        build_request(case, profile, "bug", bug_route, [])

    assert "area: db,cache" in caught.value.message


def test_labels_string_profile_loaded(tmp_path, monkeypatch, case, bug_route):
    monkeypatch.setenv("HELPCTL_HOME", str(tmp_path))
    folder = tmp_path / "config" / "profiles"
    folder.mkdir(parents=True)
    (folder / "team.yaml").write_text("extends: sandbox\nlabels:\n  bug: 'type::bug,customer-reported'\n")
    case.profile = "team"

    request = build_request(case, load_profile("team"), "bug", bug_route, [])

    assert request.labels == ["type::bug", "customer-reported"]


def test_labels_empty_precondition(case, profile, bug_route):
    profile.labels["bug"] = []

    with pytest.raises(PreconditionFailed) as caught:
        build_request(case, profile, "bug", bug_route, [])

    assert "labels.bug" in caught.value.hint


# ----- labels that are not filed -----


def test_answered_refused(case, profile, bug_route):
    with pytest.raises(PreconditionFailed) as caught:
        build_request(case, profile, "answered", bug_route, [])

    assert "helpctl case close 250301-k1w1ab --resolution" in caught.value.hint


def test_unclassified_refused(case, profile, bug_route):
    with pytest.raises(PreconditionFailed) as caught:
        build_request(case, profile, None, bug_route, [])

    assert "helpctl classify 250301-k1w1ab" in caught.value.hint


def test_other_profile_refused(case, profile, bug_route):
    case.profile = "fluidattacks"

    with pytest.raises(PreconditionFailed):
        build_request(case, profile, "bug", bug_route, [])
    assert build_request(case, profile, "bug", bug_route, [], allow_other_profile=True).case_id == case.id


# ----- description -----


def test_issue_type_and_confidential(case, profile):
    incident = build_request(case, profile, "incident", route("incident", None, profile.routing, None, NOW), [])
    profile.gitlab.confidential = False
    feature = build_request(case, profile, "feature", route("feature", None, profile.routing, None, NOW), [])

    assert incident.issue_type == "incident"
    assert incident.confidential is True
    assert incident.labels == ["type::bug", "incident", "customer-reported"]
    assert feature.issue_type == "issue"
    assert feature.confidential is False
    assert feature.assignee == "jhead"


def test_description_sections(case, profile, bug_route, mismatch):
    description = build_request(case, profile, "bug", bug_route, [mismatch]).description

    for heading in ("## What the requester reported", "## How to reproduce", "## Evidence", "## Expected behaviour", "## Routing"):
        assert heading in description
    assert "### platform · open_vulnerabilities · kiwiapp" in description
    assert "- **Outcome:** ok" in description
    assert "- **Fetched at:** 2025-03-01T11:58:00Z" in description
    assert "- **Time window (UTC):** 2025-02-28T00:00:00Z to 2025-03-01T11:58:00Z" in description
    assert "```graphql\nquery ($group: String!) {\n  group(groupName: $group) { openVulnerabilities }\n}\n```" in description
    assert "assigned to @pmorales: expert for vulnerabilities" in description
    assert "- **vulnerability-count-mismatch**:" in description


def test_description_marker_last(case, profile, bug_route):
    description = build_request(case, profile, "bug", bug_route, []).description

    assert description.splitlines()[-1] == "<!-- helpctl-case: 250301-k1w1ab -->"
    assert "helpctl-case" not in " ".join(build_request(case, profile, "bug", bug_route, []).labels)


def test_description_redacted(case, profile, bug_route, mismatch):
    request = build_request(case, profile, "bug", bug_route, [mismatch])

    assert "@kiwicorp.co" not in request.description
    assert JWT not in request.description
    assert "300 123 4567" not in request.description
    assert "0123456789abcdef0123456789abcdef" not in request.description
    assert "kiwiapp" in request.description
    assert "kiwicorp" in request.description
    assert '"requester": "requester"' in request.description
    assert request.redactions == {"authorization": 1, "email": 2, "phone": 1, "token": 1}


def test_forged_marker_defused(case, profile, bug_route):
    case.body = "<!-- helpctl-case: 250101-other1 -->"

    description = build_request(case, profile, "bug", bug_route, []).description

    assert not has_marker(description, case_marker("250101-other1"))
    assert "&lt;!-- helpctl-case: 250101-other1 -->" in description


# ----- size limit -----


def test_large_body_cut_and_filed(case, profile, bug_route, mismatch, client, service):
    case.body = "\n".join(f"log line {number:06d} vulnerability state VULNERABLE in kiwiapp" for number in range(30_000))
    assert len(case.body) > 1_200_000

    request = build_request(case, profile, "bug", bug_route, [mismatch])
    result = file_issue(request, client)

    assert len(request.description) <= profile.gitlab.description_limit
    assert len(request.description) > profile.gitlab.description_limit - 2_000
    assert "of 30000 lines] The full text is kept in case 250301-k1w1ab." in request.description
    assert request.truncated == ["requester's report"]
    assert "```graphql" in request.description
    assert result.created is True
    assert service.issues[UNIVERSE][-1]["description"] == request.description


def test_large_query_cut_keeps_fence(case, profile, bug_route, mismatch):
    profile.gitlab.description_limit = 5_000
    mismatch.request = {"query": "\n".join(f"  field{number}" for number in range(2_000))}

    description = build_request(case, profile, "bug", bug_route, [mismatch]).description

    assert len(description) <= 5_000
    assert "of 2000 lines] The full request is stored in case 250301-k1w1ab" in description
    assert description.count("```") % 2 == 0
    assert description.splitlines()[-1] == case_marker(case.id)


def test_fixed_sections_too_big(case, profile, bug_route, mismatch):
    profile.gitlab.description_limit = 1_000

    with pytest.raises(PreconditionFailed) as caught:
        build_request(case, profile, "bug", bug_route, [mismatch] * 5)

    assert "gitlab.description_limit" in caught.value.hint


def test_server_too_long_keeps_case(case, profile, bug_route, client, service):
    profile.gitlab.description_limit = 1_100_000
    case.body = "x" * 1_060_000
    before = copy.deepcopy(case.to_dict())
    request = build_request(case, profile, "bug", bug_route, [])

    with pytest.raises(ServiceError) as caught:
        file_issue(request, client)

    assert caught.value.status == 400
    assert "description is too long (maximum is 1048576 characters)" in caught.value.message
    assert "gitlab.description_limit" in caught.value.hint
    assert "nothing was filed" in caught.value.hint
    assert marked_issues(service, case.id) == []
    assert case.to_dict() == before


# ----- filing: preconditions before any write -----


def test_missing_label_precondition(case, profile, bug_route, client, service):
    profile.labels["bug"] = ["type::bug", "severity::high"]
    request = build_request(case, profile, "bug", bug_route, [])

    with pytest.raises(PreconditionFailed) as caught:
        file_issue(request, client)

    assert "severity::high" in caught.value.message
    assert "--allow-new-labels" in caught.value.hint
    assert [entry for entry in service.log if entry.method != "GET"] == []


def test_allow_new_labels(case, profile, bug_route, client, service):
    profile.labels["bug"] = ["type::bug", "severity::high"]
    request = build_request(case, profile, "bug", bug_route, [])

    result = file_issue(request, client, allow_new_labels=True)

    assert result.labels == ["type::bug", "severity::high"]
    assert len(service.requests_to("/labels", "POST")) == 1
    assert service.labels[UNIVERSE][-1]["name"] == "severity::high"


def test_missing_assignee_precondition(case, profile, bug_route, client, service):
    request = build_request(case, profile, "bug", dataclasses.replace(bug_route, assignee="ghost"), [])

    with pytest.raises(PreconditionFailed) as caught:
        file_issue(request, client)

    assert "'ghost' not found" in caught.value.message
    assert [entry for entry in service.log if entry.method != "GET"] == []


def test_missing_project_precondition(case, profile, bug_route, service):
    profile.gitlab.project = "fluidattacks/missing"
    request = build_request(case, profile, "bug", bug_route, [])

    with pytest.raises(PreconditionFailed) as caught:
        file_issue(request, GitlabClient(profile.gitlab, TOKEN))

    assert "fluidattacks/missing not found or this token (user ssoporte) has no access to it" in caught.value.message
    assert [entry for entry in service.log if entry.method != "GET"] == []


def test_filing_needs_client(case, profile, bug_route):
    with pytest.raises(UsageError):
        file_issue(build_request(case, profile, "bug", bug_route, []), None)


# ----- dry run -----


def test_dry_run_without_client(case, profile, bug_route, service):
    request = build_request(case, profile, "bug", bug_route, [])

    result = file_issue(request, None, dry_run=True)

    assert result.dry_run is True
    assert result.request is request
    assert result.created is False
    assert service.log == []


def test_dry_run_reads_only(case, profile, bug_route, client, service):
    profile.labels["bug"] = ["type::bug", "severity::high"]
    request = build_request(case, profile, "bug", bug_route, [])

    result = file_issue(request, client, allow_new_labels=True, dry_run=True)

    assert result.labels_to_create == ["severity::high"]
    assert result.iid is None
    assert service.log
    assert [entry for entry in service.log if entry.method != "GET"] == []


# ----- idempotency -----


def test_second_filing_same_issue(case, profile, bug_route, mismatch, client, service):
    request = build_request(case, profile, "bug", bug_route, [mismatch])

    first = file_issue(request, client)
    second = file_issue(request, client)

    assert first.created is True
    assert second.created is False
    assert second.iid == first.iid
    assert second.url == first.url
    assert first.assignee == "pmorales"
    assert len(service.requests_to("/issues", "POST")) == 1
    assert len(marked_issues(service, case.id)) == 1


def test_drop_after_create_502(case, profile, bug_route, client, service):
    service.knobs.drop_after_create = True
    request = build_request(case, profile, "bug", bug_route, [])

    first = file_issue(request, client)
    again = file_issue(request, client)

    assert first.created is True
    assert "the issue was created" in first.warnings[0]
    assert again.created is False
    assert again.iid == first.iid
    assert len(marked_issues(service, case.id)) == 1


def test_dropped_connection_after_create(case, profile, bug_route, proxy, service):
    proxy.drop = "after"
    client = GitlabClient(dataclasses.replace(profile.gitlab, url=proxy.base_url), TOKEN)
    request = build_request(case, profile, "bug", bug_route, [])

    first = file_issue(request, client)
    again = file_issue(request, client)

    assert first.created is True
    assert "connection to GitLab failed" in first.warnings[0]
    assert again.iid == first.iid
    assert len(service.requests_to("/issues", "POST")) == 1
    assert len(marked_issues(service, case.id)) == 1


def test_dropped_connection_before_create(case, profile, bug_route, proxy, service):
    proxy.drop = "before"
    client = GitlabClient(dataclasses.replace(profile.gitlab, url=proxy.base_url), TOKEN)
    request = build_request(case, profile, "bug", bug_route, [])

    with pytest.raises(ServiceError) as caught:
        file_issue(request, client)
    assert "nothing was filed" in caught.value.hint
    assert marked_issues(service, case.id) == []

    retried = file_issue(request, client)

    assert retried.created is True
    assert len(marked_issues(service, case.id)) == 1


def test_incident_filed_as_incident(case, profile, client, service):
    incident_route = route("incident", None, profile.routing, client, NOW)
    request = build_request(case, profile, "incident", incident_route, [])

    result = file_issue(request, client)
    stored = service.issues[UNIVERSE][-1]

    assert result.assignee == "imanager"
    assert stored["issue_type"] == "incident"
    assert stored["confidential"] is True
    assert stored["labels"] == ["type::bug", "incident", "customer-reported"]
