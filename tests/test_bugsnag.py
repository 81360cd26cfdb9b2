"""BugSnag: the stand-in, the client over real sockets and MockTransport, and the errors probe."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from helpctl.cases.model import Case, Person, Subjects
from helpctl.cases.store import CaseStore, new_case_id
from helpctl.clients.bugsnag import BugsnagClient
from helpctl.config.profiles import load_profile
from helpctl.config.settings import BugsnagSettings, ComponentSettings, RoutingSettings
from helpctl.errors import AuthError, NotFound, RateLimited, ServiceError, ServiceTimeout
from helpctl.findings import isoformat
from helpctl.probes import errors as errors_probe
from helpctl.sandbox import observability_seed as seed
from helpctl.sandbox.bugsnag_api import BugsnagService
from helpctl.sandbox.server import RunningService, ScriptedResponse

ANCHOR = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.timezone.utc)
REPORTED = ANCHOR - dt.timedelta(hours=2)
TOKEN = seed.BUGSNAG_TOKEN
PROJECT = seed.BUGSNAG_PROJECT_ID


class FakeClock:
    """Epoch seconds that move only when the code under test sleeps."""

    def __init__(self, start: dt.datetime) -> None:
        self.reset(start)

    def reset(self, start: dt.datetime) -> None:
        self.now = start.timestamp()
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(scope="module")
def shared_clock() -> FakeClock:
    return FakeClock(ANCHOR)


@pytest.fixture(scope="module")
def shared_server(shared_clock: FakeClock) -> Iterator[RunningService]:
    # One server for the module: stopping a server takes half a second.
    running = RunningService(BugsnagService(anchor=ANCHOR, clock=shared_clock.time)).start()
    yield running
    running.stop()


@pytest.fixture
def clock(shared_clock: FakeClock) -> FakeClock:
    shared_clock.reset(ANCHOR)
    return shared_clock


@pytest.fixture
def service(shared_server: RunningService, clock: FakeClock) -> BugsnagService:
    shared_server.service.reset()
    return shared_server.service


@pytest.fixture
def server(shared_server: RunningService, service: BugsnagService) -> RunningService:
    return shared_server


@pytest.fixture
def profile():
    return load_profile("sandbox")


@pytest.fixture
def settings(profile, server: RunningService) -> BugsnagSettings:
    return dataclasses.replace(profile.bugsnag, url=server.base_url)


@pytest.fixture
def client(settings: BugsnagSettings, clock: FakeClock) -> Iterator[BugsnagClient]:
    with BugsnagClient(settings, TOKEN, sleep=clock.sleep) as bugsnag:
        yield bugsnag


@pytest.fixture
def store(tmp_path: Path) -> CaseStore:
    return CaseStore(tmp_path / "cases")


# The incident scenario was reported a day before the others.
INCIDENT_REPORTED = REPORTED - dt.timedelta(hours=24)


def open_case(
    store: CaseStore, requester: str, users: tuple[str, ...] = (), subject: str = "help", reported: dt.datetime = REPORTED
) -> Case:
    case = Case(
        id=new_case_id(),
        profile="sandbox",
        subject=subject,
        requester=Person(requester),
        subjects=Subjects(users=list(users)),
        reported_at=isoformat(reported),
    )
    return store.create(case)


def run_probe(case, client, store, settings, profile):
    return errors_probe.run(case, client, store, settings, profile.routing, now=ANCHOR)


def read_rows(store: CaseStore, case: Case, raw_ref: str) -> list[dict]:
    lines = (store.folder(case.id) / raw_ref).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


# ----- scenarios over sockets -----


def test_bug_scenario_ana_alone(client, store, settings, profile):
    case = open_case(store, seed.ANA, subject="vulnerabilities list empty")
    [finding] = run_probe(case, client, store, settings, profile)

    assert finding.outcome == "ok"
    assert finding.source == "errors"
    assert finding.subject == seed.ANA
    assert finding.signals["errors.distinct_errors"] == 1
    assert finding.signals["errors.events_for_user"] == 8
    assert finding.signals["errors.events"] == 8
    assert finding.signals["errors.users_affected"] == 1
    assert finding.signals["errors.top_error_class"] == "TypeError"
    assert finding.signals["errors.top_context"] == "VulnerabilitiesView"
    assert finding.signals["errors.release_stage"] == "production"
    assert finding.component == "vulnerabilities"
    assert "reading 'edges'" in finding.summary


def test_bug_scenario_window_and_times(client, store, settings, profile):
    case = open_case(store, seed.ANA)
    [finding] = run_probe(case, client, store, settings, profile)

    first = dt.datetime.fromisoformat(finding.signals["errors.first_seen"])
    last = dt.datetime.fromisoformat(finding.signals["errors.last_seen"])
    assert ANCHOR - dt.timedelta(hours=2, minutes=30) <= first <= last <= ANCHOR - dt.timedelta(hours=1, minutes=30)
    assert finding.window == {"start": isoformat(REPORTED - dt.timedelta(hours=6)), "end": isoformat(ANCHOR)}
    assert finding.request["filters"]["user.email"] == seed.ANA


def test_bug_scenario_substring_match_ignored(client, store, settings, profile):
    # BugSnag's user.email filter also returns juliana.gomez@..., whose address contains ana's.
    listing = client.list_events(user_email=seed.ANA, since=REPORTED - dt.timedelta(hours=6), before=ANCHOR)
    emails = {event["user"]["email"] for event in listing.items}
    assert emails == {seed.ANA, seed.JULIANA}

    case = open_case(store, seed.ANA)
    [finding] = run_probe(case, client, store, settings, profile)
    rows = read_rows(store, case, finding.raw_ref)
    assert {row["user"]["email"] for row in rows if row["record"] == "event"} == {seed.ANA}
    assert "5 events of other addresses" in finding.summary


def test_bug_scenario_raw_rows(client, store, settings, profile):
    case = open_case(store, seed.ANA)
    [finding] = run_probe(case, client, store, settings, profile)

    assert finding.raw_ref == f"evidence/errors-{seed.ANA}.jsonl"
    rows = read_rows(store, case, finding.raw_ref)
    assert [row["record"] for row in rows].count("error") == 1
    assert [row["record"] for row in rows].count("event") == 8
    assert rows[0]["link"].endswith(f"/fluid-attacks/integrates-front/errors/{rows[0]['id']}")


def test_incident_scenario_three_users(client, store, settings, profile):
    case = open_case(store, seed.MARTA, users=(seed.LUISA,), subject="findings page fails", reported=INCIDENT_REPORTED)
    marta, luisa = run_probe(case, client, store, settings, profile)

    assert marta.outcome == "ok"
    assert marta.signals["errors.users_affected"] == 3
    assert marta.signals["errors.events"] == 60
    assert marta.signals["errors.events_for_user"] == 24
    assert marta.signals["errors.top_error_class"] == "GraphQLError"
    assert marta.signals["errors.top_context"] == "FindingsView"
    # FindingsView carries the keyword "findings" of the vulnerabilities component.
    assert marta.component == "vulnerabilities"
    assert luisa.subject == seed.LUISA
    assert luisa.signals["errors.users_affected"] == 3


def test_answered_scenario_carlos_empty(client, store, settings, profile):
    case = open_case(store, seed.ANA, users=(seed.CARLOS,), subject="Carlos cannot access kiwiapp")
    ana, carlos = run_probe(case, client, store, settings, profile)

    assert ana.outcome == "ok"
    assert carlos.outcome == "empty"
    assert carlos.signals == {
        "errors.distinct_errors": 0,
        "errors.events": 0,
        "errors.events_for_user": 0,
        "errors.users_affected": 0,
    }
    assert carlos.raw_ref is None
    assert carlos.component is None


def test_case_without_addresses_skipped(client, store, settings, profile):
    case = open_case(store, "")
    [finding] = run_probe(case, client, store, settings, profile)
    assert finding.outcome == "skipped"


# ----- paging: next links, page size, loops and depth limits -----


def test_per_page_above_default(client, service):
    listing = client.list_events(since=ANCHOR - dt.timedelta(hours=28), before=ANCHOR - dt.timedelta(hours=24))

    assert listing.total == len(listing.items)
    assert len(listing.items) > 30
    assert listing.pages == 1
    assert listing.complete


def test_next_links_followed(settings, clock, service):
    small = dataclasses.replace(settings, per_page=25)
    with BugsnagClient(small, TOKEN, sleep=clock.sleep) as client:
        listing = client.list_events(since=ANCHOR - dt.timedelta(hours=28), before=ANCHOR - dt.timedelta(hours=24))

    assert listing.complete
    assert listing.total is not None and listing.total > 50
    assert len(listing.items) == listing.total
    assert len({event["id"] for event in listing.items}) == listing.total
    assert listing.pages == math.ceil(listing.total / 25)
    assert len(service.requests_to("/events")) == listing.pages


def test_repeated_next_link_truncates(settings, clock, service, store, profile):
    service.knobs.repeat_next = True
    small = dataclasses.replace(settings, per_page=5)
    with BugsnagClient(small, TOKEN, sleep=clock.sleep) as client:
        listing = client.list_events(user_email=seed.MARTA)
        case = open_case(store, seed.MARTA, reported=INCIDENT_REPORTED)
        [finding] = run_probe(case, client, store, small, profile)

    assert not listing.complete
    assert listing.pages == 2
    assert "repeated a next-page link" in listing.reason
    assert finding.outcome == "truncated"
    assert "repeated a next-page link" in finding.reason
    assert finding.signals["errors.events_for_user"] == 10


def test_max_pages_truncates(settings, clock, service):
    limited = dataclasses.replace(settings, per_page=10, max_pages=2)
    with BugsnagClient(limited, TOKEN, sleep=clock.sleep) as client:
        listing = client.list_events()

    assert not listing.complete
    assert len(listing.items) == 20
    assert "max_pages=2" in listing.reason
    assert len(service.requests_to("/events")) == 2


def test_deep_offset_422_truncates(settings, clock, service):
    service.knobs.max_offset = 50
    small = dataclasses.replace(settings, per_page=25)
    with BugsnagClient(small, TOKEN, sleep=clock.sleep) as client:
        listing = client.list_events()

    assert not listing.complete
    assert len(listing.items) == 50
    assert "Pagination Offset is invalid" in listing.reason


def test_first_page_422_raises(settings, clock, service):
    service.knobs.max_offset = 1
    service.knobs.script = [ScriptedResponse(422, b'{"errors": ["Pagination Offset is invalid"]}', {"Content-Type": "application/json"})]
    with BugsnagClient(settings, TOKEN, sleep=clock.sleep) as client, pytest.raises(ServiceError) as caught:
        client.list_events()
    assert caught.value.status == 422


# ----- rate limits and the token scheme -----


def test_retry_after_honoured(settings, clock, service):
    service.knobs.rate_limits = {"events": 1}
    small = dataclasses.replace(settings, per_page=30)
    with BugsnagClient(small, TOKEN, sleep=clock.sleep) as client:
        listing = client.list_events(since=ANCHOR - dt.timedelta(hours=28), before=ANCHOR - dt.timedelta(hours=24))

    assert listing.complete
    assert len(listing.items) == listing.total
    assert clock.sleeps == [60.0] * (listing.pages - 1)
    statuses = [item.status for item in service.requests_to("/events")]
    assert statuses.count(429) == listing.pages - 1


def test_missing_retry_after_waits_window(settings, clock, service):
    service.knobs.rate_limits = {"error": 1}
    service.knobs.rate_window = 30.0
    service.knobs.send_retry_after = False
    with BugsnagClient(settings, TOKEN, sleep=clock.sleep) as client:
        edges = client.list_errors(user_email=seed.ANA)
        first = client.get_error(edges.items[0]["id"])
        second = client.get_error(edges.items[0]["id"])

    assert first == second
    assert clock.sleeps == [60.0]


def test_rate_limit_over_budget(settings, clock, service, store, profile):
    service.knobs.rate_limits = {"events": 1}
    small = dataclasses.replace(settings, per_page=5)
    with BugsnagClient(small, TOKEN, sleep=clock.sleep, retry_budget=10.0) as client:
        with pytest.raises(RateLimited) as caught:
            client.list_events(user_email=seed.MARTA)
        case = open_case(store, seed.MARTA, reported=INCIDENT_REPORTED)
        [finding] = run_probe(case, client, store, small, profile)

    assert caught.value.retry_after is not None and caught.value.retry_after > 10
    assert finding.outcome == "rate_limited"
    assert "rate limit" in finding.reason


def test_bad_token_auth_error(settings, clock, service, store, profile):
    with BugsnagClient(settings, "wrong-token-value", sleep=clock.sleep) as client:
        with pytest.raises(AuthError) as caught:
            client.list_events()
        case = open_case(store, seed.ANA, users=(seed.CARLOS,))
        findings = run_probe(case, client, store, settings, profile)

    assert "'token' scheme" in caught.value.hint
    assert "wrong-token-value" not in str(caught.value)
    assert [finding.outcome for finding in findings] == ["failed", "failed"]
    # After the first rejection the probe does not try the same token again.
    assert findings[1].reason.startswith("not tried after an earlier call failed")
    assert len(service.requests_to("/events")) == 2


def test_unknown_project_not_found(settings, clock, store, profile):
    other = dataclasses.replace(settings, project_id="000000000000000000000000")
    with BugsnagClient(other, TOKEN, sleep=clock.sleep) as client:
        with pytest.raises(NotFound) as caught:
            client.list_events()
        case = open_case(store, seed.ANA)
        [finding] = run_probe(case, client, store, other, profile)

    assert "000000000000000000000000" in caught.value.message
    assert "Project not found" in caught.value.message
    assert finding.outcome == "failed"
    assert "000000000000000000000000" in finding.reason


# ----- failures of the service -----


def test_html_502_excerpt(settings, clock, service):
    service.knobs.error_rate = 1.0
    with BugsnagClient(settings, TOKEN, sleep=clock.sleep) as client, pytest.raises(ServiceError) as caught:
        client.list_events()

    assert caught.value.status == 502
    assert "502 Bad Gateway" in caught.value.message
    assert "<" not in caught.value.message
    assert len(service.requests_to("/events")) == 3


def test_transient_502_retried(settings, clock, service):
    service.knobs.script = [ScriptedResponse(502, b"<html><title>502 Bad Gateway</title></html>", {"Content-Type": "text/html"})]
    with BugsnagClient(settings, TOKEN, sleep=clock.sleep) as client:
        listing = client.list_events(user_email=seed.ANA)

    assert listing.complete
    assert len(listing.items) == 15
    assert clock.sleeps == [1.0]


def test_timeout_becomes_timed_out(settings, clock, service, store, profile):
    service.knobs.script = [ScriptedResponse(200, b"[]", {"Content-Type": "application/json"}, delay=0.4)]
    quick = dataclasses.replace(settings, timeout=0.1)
    with BugsnagClient(quick, TOKEN, sleep=clock.sleep) as client:
        case = open_case(store, seed.ANA)
        [finding] = run_probe(case, client, store, quick, profile)

    assert finding.outcome == "timed_out"
    assert "within 0.1 s" in finding.reason


def test_malformed_body_fails(settings, clock, service, store, profile):
    service.knobs.script = [ScriptedResponse(200, b"{not json", {"Content-Type": "application/json"})]
    with BugsnagClient(settings, TOKEN, sleep=clock.sleep) as client:
        case = open_case(store, seed.ANA)
        [finding] = run_probe(case, client, store, settings, profile)

    assert finding.outcome == "failed"
    assert "not JSON" in finding.reason


def test_stand_in_requires_version(server):
    response = httpx.get(f"{server.base_url}/projects/{PROJECT}/errors", headers={"Authorization": f"token {TOKEN}"})
    assert response.status_code == 400
    assert "X-Version" in response.json()["errors"][0]


def test_stand_in_rejects_bearer(server):
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Version": "2"}
    response = httpx.get(f"{server.base_url}/projects/{PROJECT}/errors", headers=headers)
    assert response.status_code == 401
    assert "errors" in response.json()


# ----- exact requests (MockTransport) -----


def mock_settings(**changes) -> BugsnagSettings:
    values = {"url": "http://127.0.0.1:8705", "web_url": "http://127.0.0.1:8705/web", "project_id": "p1"}
    values.update(changes)
    return BugsnagSettings(**values)


def test_request_headers_and_filters():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[], headers={"X-Total-Count": "0"})

    since = dt.datetime(2026, 3, 2, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    before = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.timezone.utc)
    with BugsnagClient(mock_settings(), "secret-token-1", sleep=lambda _: None, transport=httpx.MockTransport(handler)) as client:
        client.list_events(user_email="ana.gomez@kiwicorp.co", since=since, before=before)

    [request] = seen
    assert request.headers["Authorization"] == "token secret-token-1"
    assert request.headers["X-Version"] == "2"
    assert request.url.path == "/projects/p1/events"
    assert parse_qsl(request.url.query.decode()) == [
        ("filters[user.email][][type]", "eq"),
        ("filters[user.email][][value]", "ana.gomez@kiwicorp.co"),
        ("filters[event.since][][type]", "eq"),
        ("filters[event.since][][value]", "2026-03-02T12:00:00Z"),
        ("filters[event.before][][type]", "eq"),
        ("filters[event.before][][value]", "2026-03-02T15:00:00Z"),
        ("direction", "desc"),
        ("per_page", "100"),
    ]


def test_pages_of_30_30_15():
    # A server that pages by 30 and links the next page with offset and base.
    rows = [{"id": f"e{index}"} for index in range(75)]
    requested: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requested.append(str(request.url))
        offset = int(request.url.params.get("offset", "0"))
        headers = {"X-Total-Count": "75"}
        if offset + 30 < 75:
            headers["Link"] = f'<http://127.0.0.1:8705/projects/p1/errors?offset={offset + 30}&base=2026-03-02T15%3A00%3A00Z&per_page=30>; rel="next"'
        return httpx.Response(200, json=rows[offset : offset + 30], headers=headers)

    with BugsnagClient(mock_settings(), "t" * 12, sleep=lambda _: None, transport=httpx.MockTransport(handler)) as client:
        listing = client.list_errors()

    assert [item["id"] for item in listing.items] == [row["id"] for row in rows]
    assert listing.complete
    assert listing.pages == 3
    # Later pages are fetched exactly as linked.
    assert requested[1] == "http://127.0.0.1:8705/projects/p1/errors?offset=30&base=2026-03-02T15%3A00%3A00Z&per_page=30"


def test_same_next_twice_truncates():
    def handler(request: httpx.Request) -> httpx.Response:
        link = '<http://127.0.0.1:8705/projects/p1/errors?offset=30&per_page=30>; rel="next"'
        return httpx.Response(200, json=[{"id": "x"}] * 30, headers={"Link": link})

    with BugsnagClient(mock_settings(), "t" * 12, sleep=lambda _: None, transport=httpx.MockTransport(handler)) as client:
        listing = client.list_errors()

    assert not listing.complete
    assert listing.pages == 2
    assert "repeated" in listing.reason


def test_next_link_other_origin_not_followed():
    requested: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requested.append(str(request.url))
        link = '<http://127.0.0.1:9/projects/p1/errors?offset=30>; rel="next"'
        return httpx.Response(200, json=[{"id": "x"}], headers={"Link": link})

    with BugsnagClient(mock_settings(), "t" * 12, sleep=lambda _: None, transport=httpx.MockTransport(handler)) as client:
        listing = client.list_errors()

    assert len(requested) == 1
    assert not listing.complete
    assert "another host" in listing.reason


def test_retry_after_zero_loop_bounded():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(429, json={"errors": ["Too many requests"]}, headers={"Retry-After": "0"})

    with BugsnagClient(mock_settings(), "t" * 12, sleep=lambda _: None, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(RateLimited):
            client.get_error("e1")
    assert len(calls) == 6


def test_error_not_found_names_project():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"errors": ["Project not found"]})

    with BugsnagClient(mock_settings(), "t" * 12, sleep=lambda _: None, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(NotFound) as caught:
            client.list_events()
    assert "BugSnag project p1 not found" in caught.value.message


def test_missing_error_named():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"errors": ["Error not found"]})

    with BugsnagClient(mock_settings(), "t" * 12, sleep=lambda _: None, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(NotFound) as caught:
            client.get_error("e9")
    assert caught.value.message == "BugSnag error e9 of project p1 not found: Error not found"


def test_connection_refused_service_error():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with BugsnagClient(mock_settings(), "t" * 12, sleep=lambda _: None, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ServiceError) as caught:
            client.list_events()
    assert "could not reach BugSnag" in caught.value.message


def test_read_timeout_service_timeout():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with BugsnagClient(mock_settings(), "t" * 12, sleep=lambda _: None, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ServiceTimeout):
            client.list_events()


# ----- component matching -----


def test_component_from_context(profile):
    routing = profile.routing
    assert errors_probe.component_for("VulnerabilitiesView", routing) == "vulnerabilities"
    assert errors_probe.component_for("FindingsView", routing) == "vulnerabilities"
    assert errors_probe.component_for("EventsView", routing) == "events"
    assert errors_probe.component_for("DashboardView", routing) is None


def test_component_longest_keyword():
    routing = RoutingSettings(
        components={
            "groups": ComponentSettings(keywords=["group"]),
            "members": ComponentSettings(keywords=["access"]),
        }
    )
    assert errors_probe.component_for("GroupAccessView", routing) == "members"


def test_link_uses_dashboard_slugs(client):
    assert client.error_link("abc") == f"{client.settings.web_url}/fluid-attacks/integrates-front/errors/abc"
    assert urlsplit(client.error_link("abc")).hostname == "127.0.0.1"


def test_vanished_error_from_events(tmp_path, profile):
    # An event whose error BugSnag no longer has (404) is still described from the event.
    event = {
        "id": "ev1",
        "error_id": "gone",
        "received_at": "2026-03-02T12:30:00.000Z",
        "context": "VulnerabilitiesView",
        "app": {"releaseStage": "production"},
        "user": {"email": seed.ANA},
        "exceptions": [{"errorClass": "TypeError", "message": "boom"}],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, json=[event])
        return httpx.Response(404, json={"errors": ["Error not found"]})

    store = CaseStore(tmp_path / "cases")
    settings = mock_settings()
    with BugsnagClient(settings, "t" * 12, sleep=lambda _: None, transport=httpx.MockTransport(handler)) as client:
        case = open_case(store, seed.ANA)
        [finding] = run_probe(case, client, store, settings, profile)

    assert finding.outcome == "ok"
    assert finding.signals["errors.top_error_class"] == "TypeError"
    assert finding.signals["errors.users_affected"] == 1
    assert finding.component == "vulnerabilities"
