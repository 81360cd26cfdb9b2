"""The mail probe against the Mandrill stand-in over 127.0.0.1, and edge cases via MockTransport."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpctl.cases.model import Case, Person, Subjects
from helpctl.cases.store import CaseStore
from helpctl.clients.mandrill import MandrillClient
from helpctl.config.settings import MandrillSettings, Profile
from helpctl.errors import UsageError
from helpctl.findings import isoformat
from helpctl.probes import mail
from helpctl.sandbox import Sandbox
from helpctl.sandbox import mandrill_seed as seed
from helpctl.sandbox.server import HTML_502, ScriptedResponse

KEY = "sandbox-mandrill-key"
ANCHOR = dt.datetime(2026, 12, 4, 15, 0, tzinfo=dt.timezone.utc)
REPORTED = ANCHOR - dt.timedelta(hours=2)
MOCK_URL = "http://127.0.0.1:9/api/1.0"


class FakeClock:
    """A monotonic clock whose `sleep` advances time instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox(clock: FakeClock) -> Iterator[Sandbox]:
    with Sandbox(services=["mandrill"], mandrill={"anchor": ANCHOR, "clock": clock}) as running:
        yield running


@pytest.fixture
def service(sandbox: Sandbox) -> Any:
    return sandbox.service("mandrill")


@pytest.fixture
def settings(sandbox: Sandbox) -> MandrillSettings:
    return MandrillSettings(url=sandbox.url("mandrill"), fixed_token=KEY, timeout=5.0, retention_days=30, window_days=14)


@pytest.fixture
def client(settings: MandrillSettings, clock: FakeClock) -> Iterator[MandrillClient]:
    with MandrillClient(settings, KEY, sleep=clock.sleep, clock=clock) as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> CaseStore:
    return CaseStore(tmp_path / "cases")


@pytest.fixture
def open_case(store: CaseStore) -> Callable[..., Case]:
    def make(requester: str = seed.ANA, users: list[str] | None = None, reported: dt.datetime | None = REPORTED) -> Case:
        case = Case(
            id="261204-mail01",
            profile="sandbox",
            subject="Carlos cannot access kiwiapp",
            requester=Person(requester, "Ana Gómez"),
            subjects=Subjects(users=users or [], groups=["kiwiapp"]),
            reported_at=isoformat(reported) if reported else None,
        )
        return store.create(case)

    return make


def by_subject(findings: list[Any]) -> dict[str, Any]:
    return {finding.subject: finding for finding in findings}


def evidence_rows(store: CaseStore, case: Case, finding: Any) -> list[dict[str, Any]]:
    path = store.folder(case.id) / finding.raw_ref
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def search_bodies(service: Any) -> list[dict[str, Any]]:
    return [json.loads(item.body) for item in service.requests_to("messages/search")]


# ----- the seeded scenarios -----


def test_answered_carlos_hard_bounce(open_case: Callable[..., Case], client: MandrillClient, store: CaseStore, settings: MandrillSettings) -> None:
    case = open_case(users=[seed.CARLOS])

    carlos = by_subject(mail.run(case, client, store, settings, now=ANCHOR))[seed.CARLOS]

    assert carlos.outcome == "ok"
    assert carlos.source == "mail"
    assert carlos.component == "members"
    assert carlos.signals["mail.hard_bounce"] is True
    assert carlos.signals["mail.delivered"] is False
    assert carlos.signals["mail.opened"] is False
    assert carlos.signals["mail.rejected"] is True
    assert carlos.signals["mail.reject_reason"] == "hard-bounce"
    assert carlos.signals["mail.messages_found"] == 2
    assert carlos.signals["mail.smtp_diagnostic"].startswith("550 5.1.1 <carlos.ruiz@kiwicorp.co>")
    assert carlos.signals["mail.outside_retention"] is False
    bounced_on = (ANCHOR - dt.timedelta(days=9)).date().isoformat()
    assert carlos.summary.startswith(f"the invitation to kiwiapp sent to carlos.ruiz@kiwicorp.co on {bounced_on} hard-bounced: 550 5.1.1")
    assert "is on the rejects list (hard-bounce" in carlos.summary


def test_answered_evidence_rows(open_case: Callable[..., Case], client: MandrillClient, store: CaseStore, settings: MandrillSettings) -> None:
    case = open_case(users=[seed.CARLOS])

    carlos = by_subject(mail.run(case, client, store, settings, now=ANCHOR))[seed.CARLOS]
    rows = evidence_rows(store, case, carlos)

    assert carlos.raw_ref == "evidence/mail-carlos.ruiz@kiwicorp.co.jsonl"
    assert [row["kind"] for row in rows] == ["request", "search", "search", "info", "info", "reject"]
    assert rows[-1]["entry"]["reason"] == "hard-bounce"
    assert KEY not in json.dumps(rows)


def test_bug_ana_delivered_opened(open_case: Callable[..., Case], client: MandrillClient, store: CaseStore, settings: MandrillSettings) -> None:
    case = open_case()

    [ana] = mail.run(case, client, store, settings, now=ANCHOR)

    assert ana.subject == seed.ANA
    assert ana.outcome == "ok"
    assert ana.signals["mail.messages_found"] == 3
    assert ana.signals["mail.delivered"] is True
    assert ana.signals["mail.opened"] is True
    assert ana.signals["mail.hard_bounce"] is False
    assert ana.signals["mail.soft_bounce"] is False
    assert ana.signals["mail.rejected"] is False
    assert ana.signals["mail.reject_reason"] is None
    assert ana.signals["mail.unsubscribed"] is False
    assert ana.component is None
    assert ana.summary.startswith("3 mails to ana.gomez@kiwicorp.co between")
    assert "3 delivered, 3 opened" in ana.summary


def test_retention_edge_partial(open_case: Callable[..., Case], client: MandrillClient, store: CaseStore, settings: MandrillSettings) -> None:
    case = open_case(reported=ANCHOR - dt.timedelta(days=25))

    [ana] = mail.run(case, client, store, settings, now=ANCHOR)

    assert ana.outcome == "partial"
    assert ana.signals["mail.outside_retention"] is True
    assert ana.reason.startswith("outside retention: cannot tell")
    assert "outside retention: cannot tell before" in ana.summary
    assert ana.window["requested_from"] == isoformat(ANCHOR - dt.timedelta(days=39))
    assert ana.window["from"] == isoformat(ANCHOR - dt.timedelta(days=30))
    assert seed.message_id("ana-invitation") not in ana.request["info_ids"]


def test_not_found_is_empty(open_case: Callable[..., Case], client: MandrillClient, store: CaseStore, settings: MandrillSettings) -> None:
    case = open_case(requester="nobody@kiwicorp.co")

    [nobody] = mail.run(case, client, store, settings, now=ANCHOR)

    assert nobody.outcome == "empty"
    assert nobody.reason is None
    assert nobody.signals["mail.messages_found"] == 0
    assert nobody.signals["mail.outside_retention"] is False
    assert nobody.summary.startswith("no mail to nobody@kiwicorp.co found between")


def test_rejects_entry_without_mail(open_case: Callable[..., Case], client: MandrillClient, store: CaseStore, settings: MandrillSettings) -> None:
    case = open_case(requester="antiguo.admin@kiwicorp.co")

    [finding] = mail.run(case, client, store, settings, now=ANCHOR)

    assert finding.outcome == "ok"
    assert finding.signals["mail.unsubscribed"] is True
    assert finding.signals["mail.rejected"] is True
    assert finding.signals["mail.reject_reason"] == "unsub"
    assert finding.signals["mail.delivered"] is False


def test_soft_bounce_then_delivered(open_case: Callable[..., Case], client: MandrillClient, store: CaseStore, settings: MandrillSettings) -> None:
    case = open_case(requester=seed.NICO, reported=ANCHOR - dt.timedelta(days=20))

    [nico] = mail.run(case, client, store, settings, now=ANCHOR)

    assert nico.signals["mail.soft_bounce"] is True
    assert nico.signals["mail.delivered"] is True
    assert nico.signals["mail.rejected"] is False
    assert "over quota" in nico.signals["mail.smtp_diagnostic"]
    assert "soft-bounced" in nico.summary


# ----- how the probe searches -----


def test_always_sends_dates(open_case: Callable[..., Case], client: MandrillClient, store: CaseStore, settings: MandrillSettings, service: Any) -> None:
    case = open_case(users=[seed.CARLOS])

    mail.run(case, client, store, settings, now=ANCHOR)

    bodies = search_bodies(service)
    assert len(bodies) == 2
    for body in bodies:
        assert body["date_from"] == (REPORTED - dt.timedelta(days=14)).date().isoformat()
        assert body["date_to"] == ANCHOR.date().isoformat()


def test_finds_mail_older_than_seven_days(open_case: Callable[..., Case], client: MandrillClient, store: CaseStore, settings: MandrillSettings) -> None:
    case = open_case(requester=seed.CARLOS)

    [carlos] = mail.run(case, client, store, settings, now=ANCHOR)

    assert seed.message_id("carlos-invitation") in carlos.request["info_ids"]


def test_twenty_searches_per_minute(open_case: Callable[..., Case], client: MandrillClient, store: CaseStore, settings: MandrillSettings, service: Any, clock: FakeClock) -> None:
    users = [f"user{number}@kiwicorp.co" for number in range(24)]
    case = open_case(users=users)
    started = clock()

    findings = mail.run(case, client, store, settings, now=ANCHOR)

    statuses = [item.status for item in service.requests_to("messages/search")]
    assert statuses == [200] * 25
    assert [finding.outcome for finding in findings].count("empty") == 24
    assert clock() - started >= 60.0


def test_server_429_waits(open_case: Callable[..., Case], store: CaseStore, settings: MandrillSettings, service: Any, clock: FakeClock) -> None:
    service.knobs.searches_per_minute = 1
    settings.searches_per_minute = 100
    case = open_case(users=[seed.CARLOS])

    with MandrillClient(settings, KEY, sleep=clock.sleep, clock=clock) as client:
        findings = by_subject(mail.run(case, client, store, settings, now=ANCHOR))

    assert findings[seed.ANA].outcome == "ok"
    assert findings[seed.CARLOS].outcome == "ok"
    assert [item.status for item in service.requests_to("messages/search")] == [200, 429, 200]
    assert clock.sleeps == [60.0]


def test_info_count_bounded(open_case: Callable[..., Case], client: MandrillClient, store: CaseStore, settings: MandrillSettings, service: Any) -> None:
    case = open_case()

    [ana] = mail.run(case, client, store, settings, now=ANCHOR, max_messages=1)

    assert len(service.requests_to("messages/info")) == 1
    assert ana.request["info_ids"] == [seed.message_id("ana-report-ready")]


def test_profile_as_settings(open_case: Callable[..., Case], client: MandrillClient, store: CaseStore, settings: MandrillSettings) -> None:
    profile = Profile(mandrill=settings)
    case = open_case(reported=None)

    [ana] = mail.run(case, client, store, profile, now=ANCHOR)

    assert ana.outcome == "ok"


# ----- failures -----


def test_timeout_timed_out(open_case: Callable[..., Case], store: CaseStore, settings: MandrillSettings, service: Any, clock: FakeClock) -> None:
    service.knobs.script = [ScriptedResponse(200, b"[]", path="messages/search", delay=0.3)]
    settings.timeout = 0.1
    case = open_case(users=[seed.CARLOS])

    with MandrillClient(settings, KEY, sleep=clock.sleep, clock=clock) as client:
        findings = by_subject(mail.run(case, client, store, settings, now=ANCHOR))

    assert findings[seed.ANA].outcome == "timed_out"
    assert findings[seed.ANA].signals == {}
    assert findings[seed.ANA].raw_ref is None
    assert "timed out on messages/search" in findings[seed.ANA].reason
    assert findings[seed.CARLOS].outcome == "ok"


def test_invalid_key_failed(open_case: Callable[..., Case], store: CaseStore, settings: MandrillSettings, service: Any, clock: FakeClock) -> None:
    case = open_case(users=[seed.CARLOS])

    with MandrillClient(settings, "wrong-mandrill-key", sleep=clock.sleep, clock=clock) as client:
        findings = by_subject(mail.run(case, client, store, settings, now=ANCHOR))

    assert findings[seed.ANA].outcome == "failed"
    assert "helpctl auth login mandrill" in findings[seed.ANA].reason
    assert findings[seed.CARLOS].outcome == "failed"
    assert findings[seed.CARLOS].reason.startswith("not tried after an earlier call failed")
    assert len(service.requests_to("messages/search")) == 1
    assert "wrong-mandrill-key" not in json.dumps([finding.to_dict() for finding in findings.values()])


def test_rejects_502_partial(open_case: Callable[..., Case], client: MandrillClient, store: CaseStore, settings: MandrillSettings, service: Any) -> None:
    page = ScriptedResponse(502, HTML_502, {"Content-Type": "text/html"}, path="rejects/list")
    service.knobs.script = [page, page, page]
    case = open_case(requester=seed.CARLOS)

    [carlos] = mail.run(case, client, store, settings, now=ANCHOR)

    assert carlos.outcome == "partial"
    assert carlos.reason.startswith("rejects list: Mandrill returned HTTP 502 for rejects/list")
    assert carlos.signals["mail.hard_bounce"] is True


def test_html_502_search_retried(open_case: Callable[..., Case], client: MandrillClient, store: CaseStore, settings: MandrillSettings, service: Any) -> None:
    page = ScriptedResponse(502, HTML_502, {"Content-Type": "text/html"}, path="messages/search")
    service.knobs.script = [page]
    case = open_case()

    [ana] = mail.run(case, client, store, settings, now=ANCHOR)

    assert ana.outcome == "ok"
    assert [item.status for item in service.requests_to("messages/search")] == [502, 200]


def test_invalid_report_time(open_case: Callable[..., Case], client: MandrillClient, store: CaseStore, settings: MandrillSettings, service: Any) -> None:
    case = open_case()
    case.reported_at = "last tuesday"

    with pytest.raises(UsageError):
        mail.run(case, client, store, settings, now=ANCHOR)

    assert service.requests_to("messages/search") == []


def test_no_address_skipped(open_case: Callable[..., Case], client: MandrillClient, store: CaseStore, settings: MandrillSettings) -> None:
    case = open_case(requester="", users=["Carlos Ruiz"])

    [finding] = mail.run(case, client, store, settings, now=ANCHOR)

    assert finding.outcome == "skipped"
    assert finding.subject == "carlos ruiz"
    assert "not an email address" in finding.reason


def test_empty_case_skipped(open_case: Callable[..., Case], client: MandrillClient, store: CaseStore, settings: MandrillSettings) -> None:
    case = open_case(requester="")

    [finding] = mail.run(case, client, store, settings, now=ANCHOR)

    assert finding.outcome == "skipped"
    assert finding.subject == case.id


# ----- edge cases through httpx.MockTransport -----


def mock_probe_client(handler: Callable[[httpx.Request], httpx.Response], clock: FakeClock) -> MandrillClient:
    settings = MandrillSettings(url=MOCK_URL, timeout=5.0)
    return MandrillClient(settings, KEY, sleep=clock.sleep, clock=clock, transport=httpx.MockTransport(handler))


def mock_message(number: int, **fields: Any) -> dict[str, Any]:
    ts = int((REPORTED - dt.timedelta(hours=number + 1)).timestamp())
    message = {"ts": ts, "_id": f"id{number}", "email": "user@kiwicorp.co", "subject": "Weekly summary", "state": "sent", "opens": 0}
    message.update(fields)
    return message


def test_rate_limited_stops_probe(open_case: Callable[..., Case], store: CaseStore, clock: FakeClock) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        body = {"status": "error", "code": -1, "name": "RequestLimitExceeded", "message": "Too Many Requests attempted recently"}
        return httpx.Response(429, json=body)

    case = open_case(users=[seed.CARLOS])
    settings = MandrillSettings(url=MOCK_URL)

    findings = by_subject(mail.run(case, mock_probe_client(handler, clock), store, settings, now=ANCHOR))

    assert findings[seed.ANA].outcome == "rate_limited"
    assert findings[seed.CARLOS].outcome == "rate_limited"
    assert findings[seed.CARLOS].reason.startswith("not tried")
    assert len(calls) == 2
    assert clock.sleeps == [60.0]


def test_rejected_message_not_delivered(open_case: Callable[..., Case], store: CaseStore, clock: FakeClock) -> None:
    rejected = mock_message(1, state="rejected", reject={"reason": "hard_bounce", "last_event_at": "2026-12-04 12:00:00"})

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("messages/search.json"):
            return httpx.Response(200, json=[rejected])
        if request.url.path.endswith("messages/info.json"):
            return httpx.Response(200, json=dict(rejected, smtp_events=[]))
        return httpx.Response(200, json=[])

    case = open_case(requester="user@kiwicorp.co")

    [finding] = mail.run(case, mock_probe_client(handler, clock), store, MandrillSettings(url=MOCK_URL), now=ANCHOR)

    assert finding.outcome == "ok"
    assert finding.signals["mail.delivered"] is False
    assert finding.signals["mail.rejected"] is True
    assert finding.signals["mail.reject_reason"] == "hard-bounce"
    assert "was rejected (hard-bounce)" in finding.summary


def test_search_at_limit_truncated(open_case: Callable[..., Case], store: CaseStore, clock: FakeClock) -> None:
    rows = [mock_message(number % 300) for number in range(mail.SEARCH_LIMIT)]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("messages/search.json"):
            return httpx.Response(200, json=rows)
        if request.url.path.endswith("messages/info.json"):
            return httpx.Response(200, json=rows[0])
        return httpx.Response(200, json=[])

    case = open_case(requester="user@kiwicorp.co")

    [finding] = mail.run(case, mock_probe_client(handler, clock), store, MandrillSettings(url=MOCK_URL), now=ANCHOR)

    assert finding.outcome == "truncated"
    assert "maximum of 1000" in finding.reason


def test_other_addresses_filtered(open_case: Callable[..., Case], store: CaseStore, clock: FakeClock) -> None:
    rows = [mock_message(1), mock_message(2, email="user@kiwicorp.co.example"), mock_message(3, ts=int((ANCHOR - dt.timedelta(days=20)).timestamp()))]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("messages/search.json"):
            return httpx.Response(200, json=rows)
        if request.url.path.endswith("messages/info.json"):
            return httpx.Response(200, json=rows[0])
        return httpx.Response(200, json=[])

    case = open_case(requester="User@KiwiCorp.co")

    [finding] = mail.run(case, mock_probe_client(handler, clock), store, MandrillSettings(url=MOCK_URL), now=ANCHOR)

    assert finding.subject == "user@kiwicorp.co"
    assert finding.signals["mail.messages_found"] == 1


def test_info_failure_partial(open_case: Callable[..., Case], store: CaseStore, clock: FakeClock) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("messages/search.json"):
            return httpx.Response(200, json=[mock_message(1), mock_message(2)])
        if request.url.path.endswith("messages/info.json"):
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, json=[])

    case = open_case(requester="user@kiwicorp.co")

    [finding] = mail.run(case, mock_probe_client(handler, clock), store, MandrillSettings(url=MOCK_URL), now=ANCHOR)

    assert finding.outcome == "partial"
    assert finding.reason.startswith("message details: Mandrill timed out on messages/info")
    assert finding.signals["mail.delivered"] is True


def test_search_query_quoting() -> None:
    assert mail.search_query("ana.gomez@kiwicorp.co") == 'email:"ana.gomez@kiwicorp.co"'
    assert mail.search_query('odd"name@kiwicorp.co') == 'email:"odd\\"name@kiwicorp.co"'
