"""Filing: rendering, size limits, preconditions and idempotency against the GitLab stand-in."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import http.client
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest

from helpctl.cases.model import Case, Person, Subjects
from helpctl.cases.store import CaseStore
from helpctl.clients.gitlab import GitlabClient, has_marker
from helpctl.config.profiles import load_profile
from helpctl.errors import ConfigError, PreconditionFailed, ServiceError, UsageError
from helpctl.filing import build_request, case_marker, file_issue
from helpctl.findings import Finding
from helpctl.probes import sessions as sessions_probe
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


# ----- description: reproduction and evidence layout -----


def other_finding(check: str = "group", summary: str = "kiwiapp belongs to kiwicorp: WHITE service") -> Finding:
    return Finding(
        source="platform",
        check=check,
        subject="kiwiapp",
        outcome="ok",
        summary=summary,
        request={"query": "query HelpctlGroup($group: String!) {\n  group(groupName: $group) { name tier }\n}"},
        fetched_at="2025-03-01T11:57:00Z",
        signals={"platform.group_found": True},
        raw_ref="evidence/platform-group-kiwiapp.jsonl",
    )


def section(description: str, heading: str) -> str:
    """Return the text of one `## ` section of the description, without its heading."""
    start = description.index(f"## {heading}\n") + len(heading) + 4
    end = description.find("\n## ", start)
    return description[start:] if end < 0 else description[start:end]


def test_rule_findings_first_with_queries(case, profile, bug_route, mismatch):
    request = build_request(case, profile, "bug", bug_route, [other_finding(), mismatch])
    evidence = section(request.description, "Evidence")

    assert evidence.index("### platform · open_vulnerabilities · kiwiapp") < evidence.index("### Other findings")
    assert "- **Rules:** `vulnerability-count-mismatch` (bug)" in evidence
    assert "group(groupName: $group) { openVulnerabilities }" in evidence
    assert "### platform · group · kiwiapp" not in evidence
    assert "HelpctlGroup" not in evidence


def test_other_findings_table(case, profile, bug_route, mismatch):
    description = build_request(case, profile, "bug", bug_route, [mismatch, other_finding()]).description

    assert "| Source | Check | Subject | Outcome | Summary |\n| --- | --- | --- | --- | --- |\n" in description
    assert "| platform | group | kiwiapp | ok | kiwiapp belongs to kiwicorp: WHITE service |" in description
    assert "| platform | open_vulnerabilities |" not in description


def test_table_cell_escaped(case, profile, bug_route):
    finding = other_finding(summary="state VULNERABLE | SAFE\nsecond line")

    description = build_request(case, profile, "bug", bug_route, [finding]).description

    assert "| ok | state VULNERABLE \\| SAFE second line |" in description


def test_findings_table_without_rules(case, profile, bug_route):
    case.classification = {"label": "bug", "rules": [], "override": {"label": "bug", "reason": "reproduced by the engineer"}}

    description = build_request(case, profile, "bug", bug_route, [other_finding()]).description

    assert "### Findings\n" in description
    assert "### Other findings" not in description
    assert "The label was set by hand: reproduced by the engineer" in description


def test_cut_table_note_apart(case, profile, bug_route, mismatch):
    profile.gitlab.description_limit = 6_000
    others = [other_finding(f"check-{number}", "x" * 60) for number in range(200)]

    request = build_request(case, profile, "bug", bug_route, [mismatch, *others])

    assert len(request.description) <= 6_000
    assert request.truncated == ["other findings"]
    assert re.search(r"\|\n\n\[truncated: \d+ of 200 lines\] The other findings are stored in case 250301-k1w1ab\.", request.description)
    assert request.description.splitlines()[-1] == case_marker(case.id)


def test_raw_refs_not_shown(case, profile, bug_route, mismatch):
    mismatch.raw_ref = "evidence/platform-membership-kiwiapp-carlos.ruiz@kiwicorp.co.jsonl"

    description = build_request(case, profile, "bug", bug_route, [mismatch, other_finding()]).description

    assert "evidence/" not in description
    assert ".jsonl" not in description
    assert "Raw rows:" not in description
    assert "The raw rows that the probes read are kept in the folder of case `250301-k1w1ab`" in description


def test_raw_rows_note_needs_raw_refs(case, profile, bug_route, mismatch):
    mismatch.raw_ref = None

    description = build_request(case, profile, "bug", bug_route, [mismatch]).description

    assert "raw rows" not in description


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ({"start": "2025-02-28T00:00:00Z", "end": "2025-03-01T11:58:00Z"}, "2025-02-28T00:00:00Z to 2025-03-01T11:58:00Z"),
        ({"since": "2025-02-28T00:00:00Z", "until": "2025-03-01T11:58:00Z"}, "2025-02-28T00:00:00Z to 2025-03-01T11:58:00Z"),
        ({"from": "2025-02-15T11:58:00Z", "to": "2025-03-01T11:58:00Z"}, "2025-02-15T11:58:00Z to 2025-03-01T11:58:00Z"),
        ({"start": "2025-02-28T00:00:00Z"}, "from 2025-02-28T00:00:00Z"),
        ({"until": "2025-03-01T11:58:00Z"}, "until 2025-03-01T11:58:00Z"),
        (
            {"from": "2025-02-15T11:58:00Z", "to": "2025-03-01T11:58:00Z", "requested_from": "2025-01-01T00:00:00Z"},
            "2025-02-15T11:58:00Z to 2025-03-01T11:58:00Z (requested from 2025-01-01T00:00:00Z, "
            "but the earlier part is past the service's retention)",
        ),
    ],
)
def test_time_window_keys(case, profile, bug_route, mismatch, window, expected):
    mismatch.window = window

    description = build_request(case, profile, "bug", bug_route, [mismatch]).description

    assert f"- **Time window (UTC):** {expected}\n" in description
    assert "?" not in description.split("- **Time window (UTC):**")[1].splitlines()[0]


@pytest.mark.parametrize("window", [None, {}, {"requested_from": "2025-01-01T00:00:00Z"}])
def test_time_window_omitted(case, profile, bug_route, mismatch, window):
    mismatch.window = window

    description = build_request(case, profile, "bug", bug_route, [mismatch]).description

    assert "Time window" not in description
    assert "none" not in description


def test_platform_queries_fenced(case, profile, bug_route, mismatch):
    mismatch.request = {
        "queries": [
            {"operation": "HelpctlCounters", "query": "query HelpctlCounters {\n  group { openVulnerabilities }\n}", "variables": {"group": "kiwiapp"}},
            {"operation": "HelpctlList", "query": "query HelpctlList {\n  group { vulnerabilities { total } }\n}", "variables": {}},
        ],
        "pages": 1,
        "error_count_query": "fields @message | stats count(*)",
    }

    description = build_request(case, profile, "bug", bug_route, [mismatch]).description

    assert "```graphql\nquery HelpctlCounters {\n  group { openVulnerabilities }\n}\n```" in description
    assert "```graphql\nquery HelpctlList {\n  group { vulnerabilities { total } }\n}\n```" in description
    assert '"operation": "HelpctlCounters"' in description
    assert "`error_count_query`:\n```graphql\nfields @message | stats count(*)\n```" in description
    assert '\\n' not in description


def test_reproduce_from_requester_text(case, profile, bug_route, mismatch):
    case.body += "\n\n--\nAna Gómez\nProduct Owner | KiwiCorp\nTel. +57 601 555 0142"

    reproduce = section(build_request(case, profile, "bug", bug_route, [mismatch, other_finding()]).description, "How to reproduce")

    assert "in their words (signature left out):" in reproduce
    assert "> Hello, the kiwiapp dashboard says 7 open vulnerabilities but the list shows 4." in reproduce
    assert "> My colleague user-1 sees the same." in reproduce
    assert "Product Owner" not in reproduce
    assert "1. Open group kiwiapp of organization kiwicorp with a user who has access to it." in reproduce
    assert (
        "   - platform · open_vulnerabilities · kiwiapp, behind `vulnerability-count-mismatch` (bug): "
        "openVulnerabilities says 7 while the VULNERABLE list has 4"
    ) in reproduce
    assert "Run the platform check" not in reproduce
    assert "platform · group" not in reproduce


def test_reproduce_keeps_inner_dashes(case, profile, bug_route):
    case.body = "Steps:\n--\n" + "\n".join(f"step {number}" for number in range(12))

    reproduce = section(build_request(case, profile, "bug", bug_route, []).description, "How to reproduce")

    assert "> step 11" in reproduce
    assert "signature left out" not in reproduce


def test_reproduce_without_rule_findings(case, profile, bug_route):
    case.classification = {"label": "bug", "rules": []}

    reproduce = section(build_request(case, profile, "bug", bug_route, [other_finding()]).description, "How to reproduce")

    assert "3. No classification rule rests on a probe finding" in reproduce


def fully_decoded(text: str) -> str:
    for _ in range(4):
        text = unquote(text)
    return text


def test_encoded_addresses_not_filed(tmp_path, profile, bug_route):
    case = Case(
        id="250301-s3ss1o",
        profile="sandbox",
        subject="Sessions of kiwiapp users show errors",
        requester=Person("ana.gomez@kiwicorp.co", "Ana Gómez"),
        body="Please look at the sessions of my team.",
        organization="kiwicorp",
        subjects=Subjects(users=["carlos.ruiz@kiwicorp.co", "pedro.rios+qa@kiwicorp.co"], groups=["kiwiapp"]),
        reported_at="2025-03-01T10:00:00Z",
    )
    # The sessions probe without an API key links to each person's sessions, with the
    # address percent-encoded in the query (`?u=ana.gomez%40kiwicorp.co`).
    findings = sessions_probe.run(case, None, CaseStore(tmp_path / "cases"), profile.logrocket, now=NOW)
    findings.append(
        Finding(
            source="usage",
            check="user-activity",
            subject="carlos.ruiz@kiwicorp.co",
            outcome="empty",
            summary="no events; login link http://127.0.0.1:8707/login?next=%2Fs%3Fu%3Dcarlos.ruiz%2540kiwicorp.co",
            request={"link": "http://127.0.0.1:8707/login?next=http%3A%2F%2F127.0.0.1%2Fs%3Fu%3Dpedro.rios%252Bqa%2540kiwicorp.co"},
        )
    )
    case.findings = [finding.to_dict() for finding in findings]
    case.classification = {
        "label": "bug",
        "rules": [{"name": "sessions-linked", "label": "bug", "description": "", "findings": [findings[0].key, findings[3].key]}],
    }
    assert "sessions?u=ana.gomez%40kiwicorp.co" in findings[0].signals["sessions.link"]
    assert "%2Bqa%40kiwicorp.co" in findings[2].signals["sessions.link"]

    description = build_request(case, profile, "bug", bug_route, case.finding_objects()).description

    assert "kiwicorp.co" not in fully_decoded(description).lower()
    assert "sessions?u=requester" in description
    assert "sessions?u=user-1" in description
    assert "sessions?u=user-2" in description
    assert "%3Fu%3Duser-1" in description
    assert "%3Fu%3Duser-2" in description


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
