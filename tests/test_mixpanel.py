"""Mixpanel: the stand-in, the client with its query ledger and profile cache, and the usage probe."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from helpctl.cases.model import Case, Person, Subjects
from helpctl.cases.store import CaseStore, new_case_id
from helpctl.clients.mixpanel import BudgetExhausted, MixpanelClient, api_urls
from helpctl.config.profiles import load_profile
from helpctl.config.settings import MixpanelSettings
from helpctl.errors import AuthError, ConfigError, ServiceError, UsageError
from helpctl.findings import isoformat
from helpctl.probes import usage as usage_probe
from helpctl.sandbox import observability_seed as seed
from helpctl.sandbox.mixpanel_api import MixpanelService
from helpctl.sandbox.server import RunningService, ScriptedResponse

# The report falls at 23:35Z, so ana's 23:30Z event sits on the UTC day before the anchor's.
ANCHOR = dt.datetime(2024, 3, 11, 1, 35, tzinfo=dt.timezone.utc)
REPORTED = ANCHOR - dt.timedelta(hours=2)
SECRET = seed.MIXPANEL_SECRET


class FakeClock:
    """Epoch seconds that move only when the code under test sleeps or a test advances them."""

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
    running = RunningService(MixpanelService(anchor=ANCHOR, clock=shared_clock.time)).start()
    yield running
    running.stop()


@pytest.fixture
def clock(shared_clock: FakeClock) -> FakeClock:
    shared_clock.reset(ANCHOR)
    return shared_clock


@pytest.fixture
def service(shared_server: RunningService, clock: FakeClock) -> MixpanelService:
    shared_server.service.reset()
    return shared_server.service


@pytest.fixture
def profile():
    return load_profile("sandbox")


@pytest.fixture
def settings(profile, shared_server: RunningService, service: MixpanelService) -> MixpanelSettings:
    return dataclasses.replace(profile.mixpanel, url=shared_server.base_url, export_url=shared_server.base_url)


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "mixpanel-ledger.json"


def make_client(settings: MixpanelSettings, clock: FakeClock, ledger_path: Path, secret: str = SECRET, **options) -> MixpanelClient:
    return MixpanelClient(settings, secret, ledger_path=ledger_path, clock=clock.time, sleep=clock.sleep, **options)


@pytest.fixture
def client(settings, clock, ledger_path) -> Iterator[MixpanelClient]:
    with make_client(settings, clock, ledger_path) as mixpanel:
        yield mixpanel


@pytest.fixture
def store(tmp_path: Path) -> CaseStore:
    return CaseStore(tmp_path / "cases")


def open_case(
    store: CaseStore,
    requester: str,
    users: tuple[str, ...] = (),
    subject: str = "help",
    body: str = "",
    reported: dt.datetime = REPORTED,
) -> Case:
    case = Case(
        id=new_case_id(),
        profile="sandbox",
        subject=subject,
        body=body,
        requester=Person(requester),
        subjects=Subjects(users=list(users)),
        reported_at=isoformat(reported),
    )
    return store.create(case)


def run_probe(case, client, store, settings, **options):
    return usage_probe.run(case, client, store, settings, now=ANCHOR, **options)


# ----- scenarios over sockets -----


def test_bug_scenario_ana_active(client, store, settings):
    case = open_case(store, seed.ANA, subject="vulnerabilities list empty")
    [finding] = run_probe(case, client, store, settings)

    assert finding.outcome == "ok"
    assert finding.source == "usage"
    assert finding.signals["usage.profile_found"] is True
    assert finding.signals["usage.events_near_report"] == 8
    assert finding.signals["usage.last_seen"] == isoformat(ANCHOR - dt.timedelta(hours=1, minutes=40))
    # "vulnerabilities" in the subject names the vulnerabilities feature of the profile.
    assert finding.signals["usage.feature_used"] is True
    assert "View vulnerabilities x4" in finding.summary


def test_incident_scenario_marta_findings(client, store, settings):
    # The incident scenario was reported a day before the others.
    case = open_case(store, seed.MARTA, subject="findings page fails", reported=REPORTED - dt.timedelta(hours=24))
    [finding] = run_probe(case, client, store, settings)

    assert finding.outcome == "ok"
    # Seven events of the incident plus two of her daily habit that fall in the window.
    assert finding.signals["usage.events_near_report"] == 9
    assert "usage.feature_used" not in finding.signals
    assert "View findings x7" in finding.summary
    assert finding.request["feature"] is None


def test_feature_scenario_pedro_never_exported(client, store, settings):
    case = open_case(store, seed.PEDRO, subject="export the member list to CSV")
    [finding] = run_probe(case, client, store, settings)

    assert finding.outcome == "ok"
    assert finding.signals["usage.feature_used"] is False
    assert finding.signals["usage.events_near_report"] == 4
    assert finding.request["feature"] == "members-export"
    assert "never used members-export" in finding.summary
    # The export reached 30 days back, where pedro viewed members daily.
    rows = (store.folder(case.id) / finding.raw_ref).read_text(encoding="utf-8").splitlines()
    assert sum(json.loads(row)["event"] == "View members" for row in rows) > 20


def test_answered_scenario_carlos_no_profile(client, store, settings, service):
    case = open_case(store, seed.ANA, users=(seed.CARLOS,), subject="Carlos cannot access kiwiapp")
    ana, carlos = run_probe(case, client, store, settings)

    assert ana.outcome == "ok"
    assert carlos.outcome == "empty"
    assert carlos.signals == {"usage.profile_found": False}
    assert carlos.raw_ref is None
    assert len(service.requests_to("/engage")) == 2
    assert len(service.requests_to("/export")) == 1


def test_explicit_feature_option(client, store, settings):
    case = open_case(store, seed.ANA, subject="question")
    [finding] = run_probe(case, client, store, settings, feature="Members-Export")
    assert finding.signals["usage.feature_used"] is False

    with pytest.raises(UsageError) as caught:
        run_probe(case, client, store, settings, feature="dark-mode")
    assert "members-export" in caught.value.hint


def test_feature_named_by_case_text(settings):
    def named(subject: str, body: str = ""):
        case = Case(id="c", profile="sandbox", subject=subject, body=body, requester=Person(seed.ANA))
        found = usage_probe.resolve_feature(case, settings)
        return found[0] if found else None

    assert named("export the member list to CSV") == "members-export"
    assert named("Members export please") == "members-export"
    assert named("hi", "I clicked Export members and nothing happened") == "members-export"
    assert named("vulnerabilities list empty") == "vulnerabilities"
    assert named("Carlos cannot access kiwiapp") is None
    assert named("export the findings") is None


# ----- profile cache -----


def test_profile_looked_up_once(client, store, settings, service):
    first = open_case(store, seed.ANA)
    second = open_case(store, seed.ANA)
    run_probe(first, client, store, settings)
    [finding] = run_probe(second, client, store, settings)

    assert finding.outcome == "ok"
    assert len(service.requests_to("/engage")) == 1
    assert len(service.requests_to("/export")) == 2


def test_missing_profile_checked_daily(client, clock, service):
    assert client.find_profile(seed.CARLOS) is None
    assert client.find_profile(seed.CARLOS) is None
    assert len(service.requests_to("/engage")) == 1

    clock.now += 24 * 3600 + 1
    assert client.find_profile(seed.CARLOS) is None
    assert len(service.requests_to("/engage")) == 2


def test_profile_distinct_id_resolved(client):
    found = client.find_profile("  Ana.Gomez@kiwicorp.co ")
    assert found is not None
    assert found.distinct_ids == [seed.distinct_id(seed.ANA)]
    assert found.last_seen == "2024-03-10T23:55:00"
    assert client.find_profile(seed.ANA).cached


# ----- export: UTC days, exact window, duplicates -----


def test_utc_day_boundary(client):
    tokyo = dt.timezone(dt.timedelta(hours=9))
    since = dt.datetime(2024, 3, 11, 8, 0, tzinfo=tokyo)  # 2024-03-10 23:00Z
    before = dt.datetime(2024, 3, 11, 9, 0, tzinfo=tokyo)  # 2024-03-11 00:00Z
    export = client.export_events([seed.distinct_id(seed.ANA)], since, before)

    assert export.from_date == "2024-03-10"
    assert export.to_date == "2024-03-11"
    moments = [dt.datetime.fromtimestamp(event["properties"]["time"], dt.timezone.utc) for event in export.events]
    assert dt.datetime(2024, 3, 10, 23, 30, tzinfo=dt.timezone.utc) in moments
    assert all(since <= moment < before for moment in moments)


def test_export_drops_duplicates(client):
    since = REPORTED - dt.timedelta(minutes=30)
    export = client.export_events([seed.distinct_id(seed.ANA)], since, REPORTED)

    names = [event["event"] for event in export.events]
    assert names.count("Filter vulnerabilities") == 1
    assert export.duplicates == 1
    assert export.malformed_lines == 0


def test_stand_in_gzip_export(shared_server, service):
    params = {"project_id": seed.MIXPANEL_PROJECT_ID, "from_date": "2024-02-01", "to_date": "2024-03-11"}
    auth = (seed.MIXPANEL_SERVICE_ACCOUNT, SECRET)
    with httpx.Client(auth=auth) as raw:
        response = raw.get(f"{shared_server.base_url}/api/2.0/export", params=params, headers={"Accept-Encoding": "gzip"})

    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert all(json.loads(line)["properties"]["time"] for line in response.text.splitlines())


def test_stand_in_requires_project_id(shared_server, service):
    auth = (seed.MIXPANEL_SERVICE_ACCOUNT, SECRET)
    response = httpx.get(f"{shared_server.base_url}/api/2.0/export?from_date=2024-03-10&to_date=2024-03-10", auth=auth)

    assert response.status_code == 400
    assert set(response.json()) == {"request", "error"}
    assert "project_id" in response.json()["error"]


# ----- the hourly query budget -----


def test_ledger_blocks_61st_query(client, clock, service):
    identity = [seed.distinct_id(seed.ANA)]
    for _ in range(60):
        client.export_events(identity, REPORTED - dt.timedelta(hours=1), REPORTED)

    with pytest.raises(BudgetExhausted) as caught:
        client.export_events(identity, REPORTED - dt.timedelta(hours=1), REPORTED)

    assert len(service.requests_to("/export")) == 60
    assert caught.value.available_at == ANCHOR + dt.timedelta(hours=1)
    assert caught.value.retry_after == 3600

    clock.now += 3600
    client.export_events(identity, REPORTED - dt.timedelta(hours=1), REPORTED)
    assert len(service.requests_to("/export")) == 61


def test_probe_over_budget_deferred(client, store, settings, service):
    for _ in range(settings.hourly_budget):
        client.ledger.spend("test")
    case = open_case(store, seed.ANA, users=(seed.CARLOS,))
    findings = run_probe(case, client, store, settings)

    assert [finding.outcome for finding in findings] == ["rate_limited", "rate_limited"]
    assert findings[0].signals == {"usage.deferred_until": "2024-03-11T02:35:00Z"}
    assert findings[0].reason == "deferred until 02:35Z"
    assert findings[1].subject == seed.CARLOS
    assert findings[1].reason == "deferred until 02:35Z"
    assert service.log == []


def test_server_429_rate_limited(client, store, settings, service, clock):
    service.knobs.queries_per_hour = 1
    case = open_case(store, seed.MARTA, users=(seed.LUISA,))
    marta, luisa = run_probe(case, client, store, settings)

    assert marta.outcome == "rate_limited"
    assert "hourly query limit" in marta.summary
    assert marta.reason == "deferred until 02:35Z"
    assert luisa.outcome == "rate_limited"
    # The 429 blocks the ledger, so luisa's lookup was never sent.
    assert [item.status for item in service.log] == [200, 429]
    with pytest.raises(BudgetExhausted):
        client.find_profile(seed.PEDRO)


def test_ledger_shared_between_clients(settings, clock, ledger_path):
    with make_client(settings, clock, ledger_path) as first, make_client(settings, clock, ledger_path) as second:
        first.find_profile(seed.ANA)
        second.find_profile(seed.MARTA)
        assert first.ledger.used() == 2
        assert second.ledger.used() == 2


def test_state_files_private(client, store, settings, ledger_path):
    case = open_case(store, seed.ANA)
    run_probe(case, client, store, settings)

    assert stat.S_IMODE(ledger_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(ledger_path.stat().st_mode) == 0o600
    profiles = ledger_path.with_name("mixpanel-profiles.json")
    assert stat.S_IMODE(profiles.stat().st_mode) == 0o600
    assert seed.distinct_id(seed.ANA) in profiles.read_text(encoding="utf-8")
    assert not list(ledger_path.parent.glob("*.tmp"))


def test_damaged_ledger_restarted(client, ledger_path):
    ledger_path.parent.mkdir(parents=True, exist_ok=True)
    ledger_path.write_text("{not json", encoding="utf-8")
    client.ledger.spend("test")
    assert client.ledger.used() == 1


# ----- failures -----


def test_bad_secret_auth_error(settings, clock, ledger_path, store, service):
    with make_client(settings, clock, ledger_path, secret="wrong-secret-value") as client:
        with pytest.raises(AuthError) as caught:
            client.find_profile(seed.ANA)
        case = open_case(store, seed.ANA, users=(seed.CARLOS,))
        findings = run_probe(case, client, store, settings)

    assert "wrong-secret-value" not in str(caught.value)
    assert [finding.outcome for finding in findings] == ["failed", "failed"]
    assert len(service.requests_to("/engage")) == 2


def test_project_id_required(settings, clock, ledger_path):
    with pytest.raises(ConfigError):
        make_client(dataclasses.replace(settings, project_id=""), clock, ledger_path)


def test_html_502_retried_once(client, service, clock):
    service.knobs.error_rate = 1.0
    with pytest.raises(ServiceError) as caught:
        client.find_profile(seed.ANA)

    assert "502 Bad Gateway" in caught.value.message
    assert "<" not in caught.value.message
    assert len(service.log) == 2
    assert client.ledger.used() == 2
    assert clock.sleeps == [2.0]


def test_export_timeout_timed_out(settings, clock, ledger_path, store, service):
    quick = dataclasses.replace(settings, timeout=0.1)
    with make_client(quick, clock, ledger_path) as client:
        client.find_profile(seed.ANA)
        service.knobs.script = [ScriptedResponse(200, b"", {}, path="/export", delay=0.4)]
        case = open_case(store, seed.ANA)
        [finding] = run_probe(case, client, store, quick)

    assert finding.outcome == "timed_out"
    assert "within 0.1 s" in finding.reason


# ----- hosts and exact requests -----


def test_residency_hosts():
    assert api_urls(MixpanelSettings(residency="us")) == ("https://mixpanel.com", "https://data.mixpanel.com")
    assert api_urls(MixpanelSettings(residency="eu")) == ("https://eu.mixpanel.com", "https://data-eu.mixpanel.com")
    assert api_urls(MixpanelSettings(residency="in")) == ("https://in.mixpanel.com", "https://data-in.mixpanel.com")
    assert api_urls(MixpanelSettings(url="http://127.0.0.1:8706/")) == ("http://127.0.0.1:8706", "http://127.0.0.1:8706")
    local = MixpanelSettings(url="http://127.0.0.1:8706", export_url="http://127.0.0.1:8716")
    assert api_urls(local) == ("http://127.0.0.1:8706", "http://127.0.0.1:8716")


def mock_client(handler, clock: FakeClock, ledger_path: Path) -> MixpanelClient:
    settings = MixpanelSettings(url="http://127.0.0.1:8706", project_id="99", service_account="sa.user")
    return MixpanelClient(settings, "mp-secret-1", ledger_path=ledger_path, clock=clock.time, sleep=clock.sleep, transport=httpx.MockTransport(handler))


def test_exact_engage_and_export(clock, ledger_path):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/query/engage":
            return httpx.Response(200, json={"page": 0, "page_size": 1000, "results": [{"$distinct_id": "d-1", "$properties": {}}]})
        return httpx.Response(200, text="")

    with mock_client(handler, clock, ledger_path) as client:
        profile = client.find_profile("ana@example.com")
        client.export_events(profile.distinct_ids, REPORTED, ANCHOR, event_names=["Export members"])

    engage, export = seen
    assert engage.method == "POST"
    assert engage.headers["Authorization"] == "Basic " + base64.b64encode(b"sa.user:mp-secret-1").decode()
    assert engage.url.params["project_id"] == "99"
    assert parse_qs(engage.content.decode()) == {"where": ['properties["$email"] == "ana@example.com"'], "page": ["0"]}
    assert export.url.path == "/api/2.0/export"
    assert dict(export.url.params) == {
        "project_id": "99",
        "from_date": "2024-03-10",
        "to_date": "2024-03-11",
        "where": 'properties["distinct_id"] == "d-1"',
        "event": '["Export members"]',
    }


def test_malformed_line_partial(clock, ledger_path, store, settings):
    moment = int((REPORTED - dt.timedelta(minutes=5)).timestamp())
    good = json.dumps({"event": "View findings", "properties": {"time": moment, "distinct_id": "d-1", "$insert_id": "i1"}})

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/query/engage":
            return httpx.Response(200, json={"page_size": 1000, "results": [{"$distinct_id": "d-1", "$properties": {}}]})
        return httpx.Response(200, text=f"{good}\n{{\"event\": \"View fi\n")

    with mock_client(handler, clock, ledger_path) as client:
        case = open_case(store, "someone@example.com")
        [finding] = run_probe(case, client, store, settings)

    assert finding.outcome == "partial"
    assert finding.signals["usage.events_near_report"] == 1
    assert "1 export lines were not valid JSON" in finding.reason


def test_concurrent_429_blocks_minute(clock, ledger_path):
    message = "Query rate limit exceeded for project_id: 99. 5/5 queries running concurrently and 3/60 queries running in the last hour."

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"request": request.url.path, "error": message})

    with mock_client(handler, clock, ledger_path) as client, pytest.raises(BudgetExhausted) as caught:
        client.find_profile("ana@example.com")

    assert "concurrent" in caught.value.message
    assert caught.value.available_at == ANCHOR + dt.timedelta(seconds=60)


def test_engage_pages_followed(clock, ledger_path):
    pages: list[dict[str, list[str]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode())
        pages.append(form)
        if form["page"] == ["0"]:
            results = [{"$distinct_id": "d-1"}, {"$distinct_id": "d-2"}]
            return httpx.Response(200, json={"page": 0, "page_size": 2, "session_id": "s-9", "results": results})
        return httpx.Response(200, json={"page": 1, "page_size": 2, "session_id": "s-9", "results": [{"$distinct_id": "d-3"}]})

    with mock_client(handler, clock, ledger_path) as client:
        profile = client.find_profile("shared@example.com")

    assert profile.distinct_ids == ["d-1", "d-2", "d-3"]
    assert pages[1]["session_id"] == ["s-9"]
    assert client.ledger.used() == 2


class _BrokenStream(httpx.SyncByteStream):
    """A response body that stops with a dropped connection after one line."""

    def __iter__(self):
        yield b'{"event": "Login", "properties": {"time": 1710113000, "distinct_id": "d-1"}}\n'
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


def test_export_broken_off_failed(clock, ledger_path, store, settings):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/query/engage":
            return httpx.Response(200, json={"page_size": 1000, "results": [{"$distinct_id": "d-1"}]})
        return httpx.Response(200, stream=_BrokenStream())

    with mock_client(handler, clock, ledger_path) as client:
        case = open_case(store, "someone@example.com")
        [finding] = run_probe(case, client, store, settings)

    assert finding.outcome == "failed"
    assert "broke off after 1 events" in finding.reason
    assert finding.raw_ref is None
