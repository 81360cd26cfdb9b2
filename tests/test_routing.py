"""Routing chains and component detection, with commits read from the GitLab stand-in."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from helpctl.cases.model import Case, Person
from helpctl.clients.gitlab import GitlabClient
from helpctl.config.profiles import load_profile
from helpctl.config.settings import GitlabSettings
from helpctl.errors import PreconditionFailed, UsageError
from helpctl.findings import Finding
from helpctl.routing import component_for, route
from helpctl.sandbox.gitlab_api import GitlabService
from helpctl.sandbox.server import HTML_502, RunningService, ScriptedResponse

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def server():
    started = RunningService(GitlabService()).start()
    yield started
    started.stop()


@pytest.fixture
def service(server):
    server.service.reset()
    return server.service


@pytest.fixture
def client(server, service):
    settings = GitlabSettings(url=server.base_url, timeout=2.0, max_retries=0)
    return GitlabClient(settings, "sandbox-gitlab-token")


@pytest.fixture
def routing(tmp_path, monkeypatch):
    monkeypatch.setenv("HELPCTL_HOME", str(tmp_path))
    return copy.deepcopy(load_profile("sandbox").routing)


def test_bug_expert(routing, client, service):
    chosen = route("bug", "vulnerabilities", routing, client, service.now)

    assert chosen.assignee == "pmorales"
    assert chosen.reason == "expert for vulnerabilities"
    assert chosen.chain == ["routing.experts.vulnerabilities: pmorales"]
    assert service.requests_to("/commits") == []


def test_bug_committer_fallback(routing, client, service):
    routing.experts = {}

    chosen = route("bug", "vulnerabilities", routing, client, service.now)

    assert chosen.assignee == "pmorales"
    assert chosen.reason == (
        "most recent committer on integrates/back/src/api/resolvers/vulnerability (pablo.morales@fluidattacks.com)"
    )
    assert chosen.chain[0] == "routing.experts.vulnerabilities: empty"
    assert "pablo.morales@fluidattacks.com -> pmorales" in chosen.chain[1]


def test_bug_unmapped_skipped(routing, client, service):
    routing.experts = {}
    routing.committers = {"Leo.Torres@fluidattacks.com": "ltorres"}

    chosen = route("bug", "vulnerabilities", routing, client, service.now)

    assert chosen.assignee == "ltorres"
    assert chosen.reason == "most recent committer on integrates/back/src/vulnerabilities (leo.torres@fluidattacks.com)"


def test_bug_unmapped_listed(routing, client, service):
    routing.experts = {}
    routing.committers = {}

    chosen = route("bug", "vulnerabilities", routing, client, service.now)

    assert chosen.assignee == "btriager"
    assert "unmapped in routing.committers: pablo.morales@fluidattacks.com" in chosen.chain[1]


def test_bug_lookback_window(routing, client, service):
    routing.experts = {}
    routing.commit_lookback_days = 2

    chosen = route("bug", "members", routing, client, service.now)

    assert chosen.assignee == "btriager"
    assert chosen.reason == "bug triager"
    assert "no mapped committer in 0 commits" in chosen.chain[1]


def test_bug_lookback_includes_recent(routing, client, service):
    routing.experts = {}
    routing.commit_lookback_days = 5

    chosen = route("bug", "members", routing, client, service.now)

    assert chosen.assignee == "dgarcia"
    assert "integrates/back/src/api/resolvers/stakeholder" in chosen.reason


def test_bug_without_client(routing):
    routing.experts = {}

    chosen = route("bug", "vulnerabilities", routing, None, NOW)

    assert chosen.assignee == "btriager"
    assert "recent committers: skipped, no GitLab client" in chosen.chain


def test_bug_without_component(routing, client, service):
    chosen = route("bug", None, routing, client, service.now)

    assert chosen.assignee == "btriager"
    assert chosen.component is None
    assert chosen.chain[0] == "routing.experts: no component known for the case"
    assert service.requests_to("/commits") == []


def test_bug_lookup_failure_falls_back(routing, client, service):
    routing.experts = {}
    service.knobs.script = [ScriptedResponse(502, HTML_502, {"Content-Type": "text/html"}, "/commits")]

    chosen = route("bug", "vulnerabilities", routing, client, service.now)

    assert chosen.assignee == "btriager"
    assert "look-up failed" in chosen.chain[1]
    assert "502" in chosen.chain[1]


def test_bug_nobody_precondition(routing):
    routing.experts = {}
    routing.bug_triager = ""

    with pytest.raises(PreconditionFailed) as caught:
        route("bug", "vulnerabilities", routing, None, NOW)

    assert "routing.bug_triager" in caught.value.hint
    assert "routing.experts.vulnerabilities: empty" in caught.value.message


def test_feature_head_of_product(routing, client, service):
    chosen = route("feature", "vulnerabilities", routing, client, service.now)

    assert chosen.assignee == "jhead"
    assert chosen.reason == "Head of Product"
    assert service.log == []


def test_feature_empty_precondition(routing):
    routing.head_of_product = "  "

    with pytest.raises(PreconditionFailed) as caught:
        route("feature", None, routing, None, NOW)

    assert "routing.head_of_product" in caught.value.message
    assert "routing.head_of_product" in caught.value.hint


def test_incident_manager(routing):
    chosen = route("incident", "events", routing, None, NOW)

    assert chosen.assignee == "imanager"
    assert chosen.reason == "Incident Manager"
    assert chosen.label == "incident"


def test_incident_empty_precondition(routing):
    routing.incident_manager = ""

    with pytest.raises(PreconditionFailed) as caught:
        route("incident", None, routing, None, NOW)

    assert "routing.incident_manager" in caught.value.hint


@pytest.mark.parametrize("label", ["answered", None, ""])
def test_unrouted_labels(routing, label):
    with pytest.raises(PreconditionFailed) as caught:
        route(label, None, routing, None, NOW)

    assert "helpctl classify" in caught.value.hint


def test_unknown_label(routing):
    with pytest.raises(UsageError):
        route("question", None, routing, None, NOW)


# ----- component_for -----


def finding(check, component, subject="kiwiapp"):
    return Finding(source="platform", check=check, subject=subject, outcome="ok", summary=check, component=component)


def make_case(subject="Help", body="", classification=None):
    return Case(
        id="250301-k1w1ab",
        profile="sandbox",
        subject=subject,
        requester=Person("ana.gomez@kiwicorp.co", "Ana Gómez"),
        body=body,
        classification=classification,
    )


def test_component_from_fired_findings(routing):
    findings = [finding("counter", "vulnerabilities"), finding("list", "vulnerabilities"), finding("members", "members")]
    rules = [
        {"name": "count", "label": "bug", "findings": [findings[0].key, findings[1].key, findings[2].key]},
        {"name": "pending", "label": "answered", "findings": [findings[2].key]},
    ]
    case = make_case(body="my invitation", classification={"label": "bug", "rules": rules})

    component, why = component_for(case, findings, routing)

    assert component == "vulnerabilities"
    assert why == "2 of 3 findings behind the classification point at vulnerabilities"


def test_component_ignores_losing_rules(routing):
    findings = [finding("members", "members"), finding("counter", "vulnerabilities")]
    rules = [
        {"name": "count", "label": "bug", "findings": [findings[1].key]},
        {"name": "pending", "label": "answered", "findings": [findings[0].key]},
    ]
    case = make_case(classification={"label": "bug", "rules": rules})

    assert component_for(case, findings, routing)[0] == "vulnerabilities"


def test_component_from_keywords(routing):
    case = make_case(subject="No me llega la invitación", body="El rol de mi compañero no cambia")

    component, why = component_for(case, [], routing)

    assert component == "members"
    assert why == "the case text mentions invitación, rol"


def test_component_keywords_whole_words(routing):
    case = make_case(subject="Access control dashboard", body="The control panel is slow")
    routing.components["members"].keywords = ["rol"]

    assert component_for(case, [], routing) == (
        None,
        "no finding names a component and no component keyword appears in the case",
    )


def test_component_unclassified_uses_keywords(routing):
    case = make_case(subject="Vulnerabilities missing")

    assert component_for(case, [finding("events", "events")], routing)[0] == "vulnerabilities"
