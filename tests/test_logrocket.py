"""LogRocket: the Highlights stand-in, the client, and the sessions probe across runs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpctl.cases.model import Case, Person, Subjects
from helpctl.cases.store import CaseStore, new_case_id
from helpctl.clients.logrocket import LogrocketClient, app_parts, deep_link
from helpctl.config.profiles import load_profile
from helpctl.config.settings import LogrocketSettings
from helpctl.errors import AuthError, ConfigError, NotFound, RateLimited, ServiceError
from helpctl.findings import isoformat
from helpctl.probes import sessions as sessions_probe
from helpctl.sandbox import observability_seed as seed
from helpctl.sandbox.logrocket_api import LogrocketService
from helpctl.sandbox.server import RunningService, ScriptedResponse

ANCHOR = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.timezone.utc)
REPORTED = ANCHOR - dt.timedelta(hours=2)
KEY = seed.LOGROCKET_KEY


class FakeClock:
    """Seconds that move only when the code under test sleeps."""

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
    running = RunningService(LogrocketService(anchor=ANCHOR, clock=shared_clock.time)).start()
    yield running
    running.stop()


@pytest.fixture
def clock(shared_clock: FakeClock) -> FakeClock:
    shared_clock.reset(ANCHOR)
    return shared_clock


@pytest.fixture
def service(shared_server: RunningService, clock: FakeClock) -> LogrocketService:
    shared_server.service.reset()
    return shared_server.service


@pytest.fixture
def settings(shared_server: RunningService, service: LogrocketService) -> LogrocketSettings:
    sandbox = load_profile("sandbox").logrocket
    return dataclasses.replace(sandbox, url=shared_server.base_url, web_url=f"{shared_server.base_url}/app")


@pytest.fixture
def client(settings, clock) -> Iterator[LogrocketClient]:
    with LogrocketClient(settings, KEY, sleep=clock.sleep, clock=clock.time) as logrocket:
        yield logrocket


@pytest.fixture
def store(tmp_path: Path) -> CaseStore:
    return CaseStore(tmp_path / "cases")


def open_case(store: CaseStore, requester: str, users: tuple[str, ...] = ()) -> Case:
    case = Case(
        id=new_case_id(),
        profile="sandbox",
        subject="help",
        requester=Person(requester),
        subjects=Subjects(users=list(users)),
        reported_at=isoformat(REPORTED),
    )
    return store.create(case)


def run_probe(case, client, store, settings, **options):
    return sessions_probe.run(case, client, store, settings, now=ANCHOR, **options)


# ----- pending, then ready, across runs -----


def test_first_run_pending(client, store, settings, service):
    case = open_case(store, seed.ANA)
    [finding] = run_probe(case, client, store, settings)

    assert finding.outcome == "partial"
    assert finding.source == "sessions"
    assert finding.signals["sessions.status"] == "pending"
    assert finding.signals["sessions.request_id"] in service.jobs
    assert finding.reason == "highlights requested; collect them with another run or --wait"
    assert service.jobs[finding.signals["sessions.request_id"]].user == seed.ANA


def test_later_runs_collect(client, store, settings, service):
    case = open_case(store, seed.ANA)
    [first] = run_probe(case, client, store, settings)
    # The stand-in returns PENDING to the first poll, so the second run is still pending.
    [second] = run_probe(case, client, store, settings, previous_findings=[first])
    [third] = run_probe(case, client, store, settings, previous_findings=[second.to_dict()])

    request_id = first.signals["sessions.request_id"]
    assert second.outcome == "partial"
    assert second.signals["sessions.request_id"] == request_id
    assert third.outcome == "ok"
    assert third.signals["sessions.status"] == "ready"
    assert third.signals["sessions.count"] == 1
    assert third.signals["sessions.request_id"] == request_id
    assert len(service.requests_to("/highlights", method="POST")) == 1
    assert "TypeError reading 'edges'" in third.summary

    [fourth] = run_probe(case, client, store, settings, previous_findings=[third.to_dict()])
    assert fourth.outcome == "ok"
    assert fourth.signals["sessions.request_id"] == request_id
    assert len(service.requests_to("/highlights", method="POST")) == 1


def test_ready_rows_written(client, store, settings, service):
    service.knobs.pending_polls = 0
    case = open_case(store, seed.MARTA)
    [first] = run_probe(case, client, store, settings)
    [ready] = run_probe(case, client, store, settings, previous_findings=[first])

    assert ready.raw_ref == f"evidence/sessions-{seed.MARTA}.jsonl"
    [row] = [json.loads(line) for line in (store.folder(case.id) / ready.raw_ref).read_text(encoding="utf-8").splitlines()]
    assert row["url"].startswith(f"{settings.url}/app/fluid-attacks/integrates/sessions/")
    assert "Unexpected error" in row["highlights"]


def test_time_range_limits_sessions(client, service):
    request_id = client.request_highlights(seed.ANA)
    service.knobs.pending_polls = 0
    everything = client.get_highlights(request_id)
    assert len(everything.sessions) == 3

    ranged = client.request_highlights(seed.ANA, start=REPORTED - dt.timedelta(days=1), end=ANCHOR)
    assert len(client.get_highlights(ranged).sessions) == 1


def test_carlos_ready_without_sessions(client, store, settings, service):
    service.knobs.pending_polls = 0
    case = open_case(store, seed.ANA, users=(seed.CARLOS,))
    first = run_probe(case, client, store, settings)
    ana, carlos = run_probe(case, client, store, settings, previous_findings=first)

    assert ana.outcome == "ok"
    assert carlos.outcome == "empty"
    assert carlos.signals["sessions.status"] == "ready"
    assert carlos.signals["sessions.count"] == 0
    assert carlos.raw_ref is None


def test_expired_request_resubmitted(client, store, settings, service):
    case = open_case(store, seed.ANA)
    [first] = run_probe(case, client, store, settings)
    service.jobs.clear()
    [second] = run_probe(case, client, store, settings, previous_findings=[first])

    assert second.outcome == "partial"
    assert second.signals["sessions.request_id"] in service.jobs
    assert len(service.requests_to("/highlights", method="POST")) == 2


# ----- waiting -----


def test_wait_polls_until_ready(client, store, settings, service, clock):
    service.knobs.pending_polls = 2
    case = open_case(store, seed.PEDRO)
    [finding] = run_probe(case, client, store, settings, wait=True)

    assert finding.outcome == "ok"
    assert finding.signals["sessions.count"] == 1
    assert clock.sleeps == [5.0, 10.0]
    assert "export button" in finding.summary


def test_wait_gives_up_pending(client, store, settings, service, clock):
    service.knobs.pending_polls = 100
    short = dataclasses.replace(settings, wait_seconds=12)
    case = open_case(store, seed.PEDRO)
    [finding] = run_probe(case, client, store, short, wait=True)

    assert finding.outcome == "partial"
    assert finding.signals["sessions.status"] == "pending"
    assert finding.reason == "highlights still pending after 12 s; collect them with another run"
    assert sum(clock.sleeps) == 12


def test_pending_seconds_knob(client, service, clock):
    service.knobs.pending_polls = 0
    service.knobs.pending_seconds = 30
    request_id = client.request_highlights(seed.ANA)

    assert client.wait_for_highlights(request_id, timeout=60).status == "READY"
    assert sum(clock.sleeps) >= 30


def test_failed_highlights(client, store, settings, service):
    service.knobs.pending_polls = 0
    service.knobs.fail = True
    case = open_case(store, seed.ANA)
    [first] = run_probe(case, client, store, settings)
    [finding] = run_probe(case, client, store, settings, previous_findings=[first])

    assert finding.outcome == "failed"
    assert finding.signals["sessions.status"] == "failed"
    assert finding.reason == "Cancelled: highlight generation failed"


# ----- without a key -----


def test_no_key_gives_link(store, settings, shared_server):
    case = open_case(store, seed.ANA)
    [finding] = run_probe(case, None, store, settings)

    link = f"{shared_server.base_url}/app/fluid-attacks/integrates/sessions?u=ana.gomez%40kiwicorp.co"
    assert finding.outcome == "ok"
    assert finding.signals == {"sessions.status": "link", "sessions.link": link}
    assert "by hand" in finding.summary
    page = httpx.get(link)
    assert page.status_code == 200
    assert "TypeError reading &#x27;edges&#x27;" in page.text


def test_deep_link_shape():
    settings = LogrocketSettings(web_url="http://127.0.0.1:8707/app/", app_id="org-1/app one")
    assert deep_link(settings, "user+tag@example.com") == "http://127.0.0.1:8707/app/org-1/app one/sessions?u=user%2Btag%40example.com"


def test_invalid_app_id():
    with pytest.raises(ConfigError):
        app_parts(LogrocketSettings(app_id="no-slash"))


# ----- failures -----


def test_bad_key_failed(settings, clock, store, service):
    with LogrocketClient(settings, "wrong-key-value", sleep=clock.sleep, clock=clock.time) as client:
        with pytest.raises(AuthError) as caught:
            client.request_highlights(seed.ANA)
        case = open_case(store, seed.ANA, users=(seed.CARLOS,))
        ana, carlos = run_probe(case, client, store, settings)

    assert "wrong-key-value" not in str(caught.value)
    assert ana.outcome == "failed"
    assert "rejected the API key" in ana.reason
    assert ana.signals["sessions.link"].endswith("?u=ana.gomez%40kiwicorp.co")
    assert carlos.outcome == "failed"
    assert carlos.reason.startswith("not tried after an earlier call failed")
    assert len(service.requests_to("/highlights", method="POST")) == 2


def test_unknown_app_not_found(settings, clock):
    other = dataclasses.replace(settings, app_id="fluid-attacks/other")
    with LogrocketClient(other, KEY, sleep=clock.sleep, clock=clock.time) as client, pytest.raises(NotFound):
        client.request_highlights(seed.ANA)


def test_submit_429_retried(client, service, clock):
    service.knobs.script = [ScriptedResponse(429, b'{"error": "Too many requests"}', {"Retry-After": "3"}, path="/highlights")]
    request_id = client.request_highlights(seed.ANA)

    assert request_id in service.jobs
    assert clock.sleeps == [3.0]


def test_submit_429_over_budget(client, service):
    service.knobs.script = [ScriptedResponse(429, b"{}", {"Retry-After": "600"}, path="/highlights")]
    with pytest.raises(RateLimited) as caught:
        client.request_highlights(seed.ANA)
    assert caught.value.retry_after == 600


def test_submit_502_not_retried(client, service):
    service.knobs.error_rate = 1.0
    with pytest.raises(ServiceError) as caught:
        client.request_highlights(seed.ANA)
    assert "502 Bad Gateway" in caught.value.message
    assert len(service.log) == 1


def test_poll_502_retried(client, service, clock):
    request_id = client.request_highlights(seed.ANA)
    service.knobs.pending_polls = 0
    service.knobs.script = [ScriptedResponse(502, b"<title>502 Bad Gateway</title>", {"Content-Type": "text/html"}, path="/highlights")]

    assert client.get_highlights(request_id).status == "READY"
    assert clock.sleeps == [1.0]


def test_poll_timeout_timed_out(settings, clock, store, service):
    quick = dataclasses.replace(settings, timeout=0.1)
    service.knobs.script = [ScriptedResponse(200, b'{"id": "x"}', {}, path="/highlights", delay=0.4)]
    with LogrocketClient(quick, KEY, sleep=clock.sleep, clock=clock.time) as client:
        case = open_case(store, seed.ANA)
        [finding] = run_probe(case, client, store, quick)

    assert finding.outcome == "timed_out"


# ----- exact requests (MockTransport) -----


def test_exact_submit_body():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "req-1"})

    settings = LogrocketSettings(url="http://127.0.0.1:8707", app_id="org-1/app-1")
    with LogrocketClient(settings, "lr-key-123456", sleep=lambda _: None, transport=httpx.MockTransport(handler)) as client:
        assert client.request_highlights("ana@example.com", start=REPORTED, end=ANCHOR) == "req-1"
        client.request_highlights("user-42")

    by_email, by_id = seen
    assert by_email.method == "POST"
    assert by_email.url.path == "/v1/orgs/org-1/apps/app-1/highlights/"
    assert by_email.headers["Authorization"] == "token lr-key-123456"
    assert json.loads(by_email.content) == {
        "userEmail": "ana@example.com",
        "timeRange": {"startMs": int(REPORTED.timestamp() * 1000), "endMs": int(ANCHOR.timestamp() * 1000)},
    }
    assert json.loads(by_id.content) == {"userID": "user-42"}


def test_unknown_status_service_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": "DONE"})

    settings = LogrocketSettings(url="http://127.0.0.1:8707", app_id="org-1/app-1")
    with LogrocketClient(settings, "lr-key-123456", sleep=lambda _: None, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ServiceError) as caught:
            client.get_highlights("req-1")
    assert "DONE" in caught.value.message


def test_collected_highlights_are_kept(tmp_path):
    from helpctl.findings import Finding
    from helpctl.probes.sessions import ready_findings

    collected = Finding(
        source="sessions", check="highlights", subject="ana.gomez@kiwicorp.co", outcome="ok",
        summary="3 sessions", signals={"sessions.status": "ready", "sessions.count": 3},
    )
    pending = Finding(
        source="sessions", check="highlights", subject="carlos.ruiz@kiwicorp.co", outcome="partial",
        summary="pending", signals={"sessions.status": "pending", "sessions.request_id": "r1"},
    )

    ready = ready_findings([collected.to_dict(), pending])
    assert list(ready) == ["ana.gomez@kiwicorp.co"]
    assert ready["ana.gomez@kiwicorp.co"].signals["sessions.count"] == 3
