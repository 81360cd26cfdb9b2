"""The Mandrill stand-in and client: real httpx over 127.0.0.1, plus exact error bodies.

Time is a fake clock shared by the stand-in and the client, so rate limits and retries
are exercised without waiting.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from helpctl.clients.mandrill import MandrillClient, SearchLimiter, undelivered
from helpctl.config.settings import MandrillSettings
from helpctl.errors import AuthError, NotFound, RateLimited, ServiceError, ServiceTimeout, UsageError
from helpctl.sandbox import Sandbox
from helpctl.sandbox import mandrill_seed as seed
from helpctl.sandbox.mandrill_api import ApiError, compile_query
from helpctl.sandbox.server import HTML_502, ScriptedResponse

KEY = "sandbox-mandrill-key"
ANCHOR = dt.datetime(2026, 12, 4, 15, 0, tzinfo=dt.timezone.utc)
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
def make_client(sandbox: Sandbox, clock: FakeClock) -> Iterator[Callable[..., MandrillClient]]:
    clients = []

    def make(key: str = KEY, **overrides: Any) -> MandrillClient:
        settings = MandrillSettings(url=sandbox.url("mandrill"), fixed_token=KEY, timeout=5.0)
        for name, value in overrides.items():
            setattr(settings, name, value)
        client = MandrillClient(settings, key, sleep=clock.sleep, clock=clock)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def mock_client(handler: Callable[[httpx.Request], httpx.Response], clock: FakeClock, **overrides: Any) -> MandrillClient:
    settings = MandrillSettings(url=MOCK_URL, timeout=5.0)
    for name, value in overrides.items():
        setattr(settings, name, value)
    return MandrillClient(settings, KEY, sleep=clock.sleep, clock=clock, transport=httpx.MockTransport(handler))


def error_body(name: str, message: str, code: int = -1) -> dict[str, Any]:
    return {"status": "error", "code": code, "name": name, "message": message}


def days(value: float) -> dt.date:
    return (ANCHOR - dt.timedelta(days=value)).date()


# ----- stand-in over real sockets -----


def test_ping_valid_key(make_client: Callable[..., MandrillClient]) -> None:
    assert make_client().ping() == {"PING": "PONG!"}


def test_invalid_key_http_500(make_client: Callable[..., MandrillClient], service: Any) -> None:
    client = make_client(key="wrong-mandrill-key")

    with pytest.raises(AuthError) as caught:
        client.ping()

    assert "Invalid_Key" in caught.value.message
    assert "helpctl auth login mandrill" in (caught.value.hint or "")
    assert "wrong-mandrill-key" not in caught.value.message
    assert [item.status for item in service.requests_to("users/ping2")] == [500]


def test_invalid_key_not_retried(make_client: Callable[..., MandrillClient], service: Any, clock: FakeClock) -> None:
    with pytest.raises(AuthError):
        make_client(key="wrong-mandrill-key").search("*", days(3), ANCHOR.date())

    assert len(service.requests_to("messages/search")) == 1
    assert clock.sleeps == []


def test_modern_status_invalid_key(make_client: Callable[..., MandrillClient], service: Any) -> None:
    service.knobs.legacy_status = False

    with pytest.raises(AuthError):
        make_client(key="wrong-mandrill-key").ping()

    assert [item.status for item in service.requests_to("users/ping2")] == [401]


def test_missing_key_validation_error(sandbox: Sandbox) -> None:
    response = httpx.post(sandbox.url("mandrill") + "/users/ping2.json", json={"Key": KEY})

    assert response.status_code == 500
    assert response.json() == error_body("ValidationError", "You must specify a key value", -2)


def test_form_body_validation_error(sandbox: Sandbox) -> None:
    response = httpx.post(sandbox.url("mandrill") + "/users/ping2.json", data={"key": KEY})

    assert response.status_code == 500
    assert response.json()["name"] == "ValidationError"


def test_get_method_not_allowed(sandbox: Sandbox) -> None:
    response = httpx.get(sandbox.url("mandrill") + "/users/ping2.json")

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_query_syntax_usage_error(make_client: Callable[..., MandrillClient]) -> None:
    with pytest.raises(UsageError) as caught:
        make_client().search("NOT email:ana", days(3), ANCHOR.date())

    assert "syntax error" in caught.value.message


def test_search_without_dates_last_seven_days(sandbox: Sandbox) -> None:
    url = sandbox.url("mandrill") + "/messages/search.json"
    query = {"key": KEY, "query": 'email:"carlos.ruiz@kiwicorp.co"'}

    undated = httpx.post(url, json=query).json()
    dated = httpx.post(url, json=dict(query, date_from=str(days(10)), date_to=str(ANCHOR.date()))).json()

    assert [item["subject"] for item in undated] == ["Reminder: you have been invited to kiwiapp"]
    assert len(dated) == 2
    assert dated[1]["subject"] == "You have been invited to kiwiapp"


def test_search_limit_over_max(sandbox: Sandbox) -> None:
    body = {"key": KEY, "query": "*", "date_from": str(days(20)), "date_to": str(ANCHOR.date()), "limit": 1001}

    response = httpx.post(sandbox.url("mandrill") + "/messages/search.json", json=body)

    assert response.status_code == 500
    assert response.json()["name"] == "ValidationError"


def test_search_newest_first_and_limit(make_client: Callable[..., MandrillClient]) -> None:
    rows = make_client().search("*", days(29), ANCHOR.date(), limit=5)

    assert len(rows) == 5
    assert [row["ts"] for row in rows] == sorted((row["ts"] for row in rows), reverse=True)


def test_search_drops_sms_items(make_client: Callable[..., MandrillClient], sandbox: Sandbox) -> None:
    body = {"key": KEY, "query": "*", "date_from": str(days(2)), "date_to": str(ANCHOR.date()), "limit": 1000}
    raw = httpx.post(sandbox.url("mandrill") + "/messages/search.json", json=body).json()

    rows = make_client().search("*", days(2), ANCHOR.date(), limit=1000)

    assert all("email" in row for row in raw)
    assert all("email" in row for row in rows)
    assert all(row["_id"] != seed.message_id("sms-verification") for row in rows)


def test_search_outside_retention(make_client: Callable[..., MandrillClient]) -> None:
    client = make_client()

    rows = client.search('email:"ana.gomez@kiwicorp.co"', days(60), ANCHOR.date())

    assert seed.message_id("ana-invitation") not in {row["_id"] for row in rows}
    assert len(rows) == 3
    with pytest.raises(NotFound):
        client.info(seed.message_id("ana-invitation"))


def test_retention_knob_longer(make_client: Callable[..., MandrillClient], service: Any) -> None:
    service.knobs.retention_days = 90

    rows = make_client().search('email:"ana.gomez@kiwicorp.co"', days(60), ANCHOR.date())

    assert seed.message_id("ana-invitation") in {row["_id"] for row in rows}


def test_info_hard_bounce_events(make_client: Callable[..., MandrillClient]) -> None:
    message = make_client().info(seed.message_id("carlos-invitation"))

    assert message["state"] == "bounced"
    assert message["email"] == "carlos.ruiz@kiwicorp.co"
    assert message["smtp_events"][-1]["type"] == "bounced"
    assert "550 5.1.1" in message["smtp_events"][-1]["diag"]


def test_info_unknown_message(make_client: Callable[..., MandrillClient], service: Any) -> None:
    with pytest.raises(NotFound) as caught:
        make_client().info("0" * 32)

    assert caught.value.status == 500
    assert caught.value.service == "mandrill"


def test_search_has_no_details(make_client: Callable[..., MandrillClient]) -> None:
    rows = make_client().search('full_email:"carlos.ruiz@kiwicorp.co"', days(10), ANCHOR.date())

    assert len(rows) == 2
    assert all("smtp_events" not in row for row in rows)


def test_rejects_hard_bounce_entry(make_client: Callable[..., MandrillClient]) -> None:
    entries = make_client().rejects("carlos.ruiz@kiwicorp.co")

    assert len(entries) == 1
    assert entries[0]["reason"] == "hard-bounce"
    assert entries[0]["expired"] is False
    assert entries[0]["created_at"].startswith(str(days(9)))
    assert "User unknown" in entries[0]["detail"]


def test_rejects_expired_hidden(make_client: Callable[..., MandrillClient]) -> None:
    client = make_client()

    active = client.rejects("nico.paez@kiwicorp.co")
    everything = client.rejects("nico.paez@kiwicorp.co", include_expired=True)

    assert active == []
    assert [entry["reason"] for entry in everything] == ["soft-bounce"]
    assert everything[0]["expired"] is True


def test_rejects_whole_list(make_client: Callable[..., MandrillClient]) -> None:
    reasons = {entry["email"]: entry["reason"] for entry in make_client().rejects()}

    assert reasons == {
        "carlos.ruiz@kiwicorp.co": "hard-bounce",
        "antiguo.admin@kiwicorp.co": "unsub",
        "compras@kiwicorp.co": "spam",
    }


# ----- search rate limit (20 a minute) -----


def test_limiter_keeps_twenty_per_minute(make_client: Callable[..., MandrillClient], service: Any, clock: FakeClock) -> None:
    client = make_client()
    started = clock()

    for _ in range(25):
        client.search('email:"ana.gomez@kiwicorp.co"', days(3), ANCHOR.date())

    statuses = [item.status for item in service.requests_to("messages/search")]
    assert statuses == [200] * 25
    assert clock() - started >= 60.0
    assert len(clock.sleeps) == 1


def test_server_429_waits_and_retries(make_client: Callable[..., MandrillClient], service: Any, clock: FakeClock) -> None:
    client = make_client(searches_per_minute=100)

    for _ in range(21):
        rows = client.search('email:"ana.gomez@kiwicorp.co"', days(3), ANCHOR.date())

    statuses = [item.status for item in service.requests_to("messages/search")]
    assert statuses.count(429) == 1
    assert statuses[-1] == 200
    assert len(rows) == 2
    assert clock.sleeps == [60.0]


def test_server_429_body(sandbox: Sandbox, service: Any) -> None:
    service.knobs.searches_per_minute = 1
    body = {"key": KEY, "query": "*", "date_from": str(days(1)), "date_to": str(ANCHOR.date())}
    url = sandbox.url("mandrill") + "/messages/search.json"

    httpx.post(url, json=body)
    response = httpx.post(url, json=body)

    assert response.status_code == 429
    assert response.json()["name"] == "RequestLimitExceeded"
    assert response.headers["retry-after"] == "60"


def test_limiter_sliding_window(clock: FakeClock) -> None:
    limiter = SearchLimiter(2, clock, clock.sleep)

    limiter.acquire()
    clock.now += 30
    limiter.acquire()
    limiter.acquire()

    assert clock.sleeps == [30.0]


# ----- failures over sockets -----


def test_html_502_retried(make_client: Callable[..., MandrillClient], service: Any, clock: FakeClock) -> None:
    page = ScriptedResponse(502, HTML_502, {"Content-Type": "text/html"}, path="messages/search")
    service.knobs.script = [page, page]

    rows = make_client().search('email:"ana.gomez@kiwicorp.co"', days(3), ANCHOR.date())

    assert len(rows) == 2
    assert clock.sleeps == [0.5, 1.0]
    assert [item.status for item in service.requests_to("messages/search")] == [502, 502, 200]


def test_html_502_gives_up(make_client: Callable[..., MandrillClient], service: Any) -> None:
    page = ScriptedResponse(502, HTML_502, {"Content-Type": "text/html"}, path="rejects/list")
    service.knobs.script = [page, page, page]

    with pytest.raises(ServiceError) as caught:
        make_client().rejects("carlos.ruiz@kiwicorp.co")

    assert caught.value.status == 502
    assert "502 Bad Gateway" in caught.value.message
    assert "<html>" not in caught.value.message
    assert len(service.requests_to("rejects/list")) == 3


def test_timeout_service_timeout(make_client: Callable[..., MandrillClient], service: Any) -> None:
    service.knobs.script = [ScriptedResponse(200, b"[]", path="messages/search", delay=0.3)]

    with pytest.raises(ServiceTimeout) as caught:
        make_client(timeout=0.1).search("*", days(1), ANCHOR.date())

    assert "after 0.1 s" in caught.value.message


def test_connection_refused_retried(clock: FakeClock) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = MandrillSettings(url=f"http://127.0.0.1:{port}/api/1.0", timeout=2.0)
    client = MandrillClient(settings, KEY, sleep=clock.sleep, clock=clock)

    with pytest.raises(ServiceError) as caught:
        client.ping()

    assert "could not reach Mandrill" in caught.value.message
    assert clock.sleeps == [0.5, 1.0]


# ----- messages/send -----


def test_send_per_recipient_results(make_client: Callable[..., MandrillClient]) -> None:
    message = {
        "subject": "About your case",
        "text": "Hello",
        "from_email": "help@fluidattacks.com",
        "to": [
            {"email": "ana.gomez@kiwicorp.co", "type": "to"},
            {"email": "carlos.ruiz@kiwicorp.co", "type": "to"},
            {"email": "not-an-address", "type": "to"},
        ],
    }

    results = make_client().send(message)

    by_email = {item["email"]: item for item in results}
    assert by_email["ana.gomez@kiwicorp.co"]["status"] == "sent"
    assert by_email["carlos.ruiz@kiwicorp.co"]["status"] == "rejected"
    assert by_email["carlos.ruiz@kiwicorp.co"]["reject_reason"] == "hard-bounce"
    assert by_email["not-an-address"]["status"] == "invalid"
    assert [item["email"] for item in undelivered(results)] == ["carlos.ruiz@kiwicorp.co", "not-an-address"]


def test_send_recorded_for_search(make_client: Callable[..., MandrillClient]) -> None:
    client = make_client()
    message = {"subject": "About your case", "text": "Hi", "from_email": "help@fluidattacks.com", "to": [{"email": "carlos.ruiz@kiwicorp.co"}]}

    client.send(message)
    rows = client.search('subject:"about your case"', ANCHOR.date(), ANCHOR.date())

    assert [row["state"] for row in rows] == ["rejected"]
    assert rows[0]["reject"]["reason"] == "hard-bounce"


def test_send_unsigned_domain(make_client: Callable[..., MandrillClient]) -> None:
    message = {"subject": "Hi", "text": "Hi", "from_email": "help@unverified.example", "to": [{"email": "ana.gomez@kiwicorp.co"}]}

    results = make_client().send(message)

    assert results[0]["status"] == "rejected"
    assert results[0]["reject_reason"] == "unsigned"


def test_send_not_retried_502(make_client: Callable[..., MandrillClient], service: Any, clock: FakeClock) -> None:
    service.knobs.script = [ScriptedResponse(502, HTML_502, {"Content-Type": "text/html"}, path="messages/send")]
    message = {"subject": "Hi", "text": "Hi", "from_email": "help@fluidattacks.com", "to": [{"email": "ana.gomez@kiwicorp.co"}]}

    with pytest.raises(ServiceError) as caught:
        make_client().send(message)

    assert "may have been sent" in (caught.value.hint or "")
    assert len(service.requests_to("messages/send")) == 1
    assert clock.sleeps == []


def test_send_without_recipients(make_client: Callable[..., MandrillClient], service: Any) -> None:
    with pytest.raises(UsageError):
        make_client().send({"subject": "Hi", "to": []})

    assert service.requests_to("messages/send") == []


# ----- exact error bodies (httpx.MockTransport) -----


@pytest.mark.parametrize(
    ("status", "body", "error_type", "text"),
    [
        (500, error_body("Invalid_Key", "Invalid API key"), AuthError, "Invalid API key"),
        (401, error_body("Invalid_Key", "Invalid API key"), AuthError, "Invalid API key"),
        (500, error_body("ValidationError", "You must specify a key value", -2), UsageError, "You must specify a key value"),
        (500, error_body("Unknown_Message", "No message exists with the id 'abc'", 11), NotFound, "No message exists"),
        (404, error_body("Unknown_Message", "No message exists with the id 'abc'", 11), NotFound, "No message exists"),
        (402, error_body("PaymentRequired", "This feature is only available for accounts with a positive balance.", 10), ServiceError, "PaymentRequired"),
        (200, error_body("GeneralError", "Something went wrong"), ServiceError, "GeneralError for messages/info: Something went wrong"),
    ],
)
def test_error_body_mapping(clock: FakeClock, status: int, body: dict[str, Any], error_type: type, text: str) -> None:
    client = mock_client(lambda request: httpx.Response(status, json=body), clock)

    with pytest.raises(error_type) as caught:
        client.info("abc")

    assert type(caught.value) is error_type
    assert text in caught.value.message
    assert clock.sleeps == []


def test_key_sent_in_body(clock: FakeClock) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"PING": "PONG!"})

    mock_client(handler, clock).ping()

    assert seen[0].method == "POST"
    assert seen[0].url.path == "/api/1.0/users/ping2.json"
    assert json.loads(seen[0].content) == {"key": KEY}
    assert KEY not in str(seen[0].headers)


def test_search_sends_dates(clock: FakeClock) -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json=[])

    client = mock_client(handler, clock)
    client.search('email:"a@kiwicorp.co"', dt.date(2026, 11, 1), dt.datetime(2026, 11, 30, 23, 0, tzinfo=dt.timezone.utc), limit=10)

    assert bodies[0]["date_from"] == "2026-11-01"
    assert bodies[0]["date_to"] == "2026-11-30"
    assert bodies[0]["limit"] == 10


@pytest.mark.parametrize(
    ("date_from", "date_to", "limit"),
    [("2026-12-02", "2026-12-01", 100), ("yesterday", "2026-12-01", 100), ("2026-12-01", "2026-12-01", 1001), ("2026-12-01", "2026-12-01", 0)],
)
def test_search_bad_arguments(clock: FakeClock, date_from: str, date_to: str, limit: int) -> None:
    calls: list[httpx.Request] = []
    client = mock_client(lambda request: calls.append(request) or httpx.Response(200, json=[]), clock)

    with pytest.raises(UsageError):
        client.search("*", date_from, date_to, limit)

    assert calls == []


def test_429_without_retry_after(clock: FakeClock) -> None:
    body = error_body("RequestLimitExceeded", "Too Many Requests attempted recently")
    client = mock_client(lambda request: httpx.Response(429, json=body), clock)

    with pytest.raises(RateLimited) as caught:
        client.search("*", "2026-12-01", "2026-12-01")

    assert clock.sleeps == [60.0]
    assert caught.value.retry_after == 60.0
    assert "Too Many Requests" in caught.value.message


def test_429_retry_after_zero_bounded(clock: FakeClock) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(429, text="slow down", headers={"Retry-After": "0"})

    with pytest.raises(RateLimited):
        mock_client(handler, clock).rejects()

    assert len(calls) == 6


def test_500_html_excerpt_short(clock: FakeClock) -> None:
    page = "<html><body><h1>500 Internal Server Error</h1>" + "<p>x</p>" * 500 + "</body></html>"
    client = mock_client(lambda request: httpx.Response(500, text=page, headers={"Content-Type": "text/html"}), clock)

    with pytest.raises(ServiceError) as caught:
        client.rejects()

    assert "500 Internal Server Error" in caught.value.message
    assert len(caught.value.message) < 200
    assert clock.sleeps == [0.5, 1.0]


def test_service_unavailable_retried(clock: FakeClock) -> None:
    responses = [
        httpx.Response(503, json=error_body("ServiceUnavailable", "Service temporarily unavailable")),
        httpx.Response(200, json={"PING": "PONG!"}),
    ]
    client = mock_client(lambda request: responses.pop(0), clock)

    assert client.ping() == {"PING": "PONG!"}
    assert clock.sleeps == [0.5]


def test_200_not_json(clock: FakeClock) -> None:
    client = mock_client(lambda request: httpx.Response(200, text="PONG"), clock)

    with pytest.raises(ServiceError) as caught:
        client.ping()

    assert "not JSON" in caught.value.message


def test_wrong_shape_response(clock: FakeClock) -> None:
    client = mock_client(lambda request: httpx.Response(200, json={"unexpected": True}), clock)

    with pytest.raises(ServiceError) as caught:
        client.search("*", "2026-12-01", "2026-12-01")

    assert "instead of a list" in caught.value.message


def test_timeout_mock(clock: FakeClock) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(ServiceTimeout):
        mock_client(handler, clock).rejects()


def test_key_masked_in_errors(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    responses = [
        httpx.Response(502, text=f"<html>upstream said {KEY}</html>"),
        httpx.Response(500, json=error_body("GeneralError", f"bad key {KEY}")),
    ]
    client = mock_client(lambda request: responses.pop(0), clock)

    with caplog.at_level(logging.DEBUG, logger="helpctl"), pytest.raises(ServiceError) as caught:
        client.ping()

    assert KEY not in caught.value.message
    assert "***" in caught.value.message
    assert KEY not in caplog.text


def test_reason_spelling_normalized(clock: FakeClock) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("messages/send.json"):
            return httpx.Response(200, json=[{"email": "user@kiwicorp.co", "status": "rejected", "_id": "abc123", "reject_reason": "hard_bounce"}])
        return httpx.Response(200, json=[{"email": "user@kiwicorp.co", "reason": "soft_bounce"}])

    client = mock_client(handler, clock)
    results = client.send({"to": [{"email": "user@kiwicorp.co"}], "from_email": "help@fluidattacks.com"})
    entries = client.rejects("user@kiwicorp.co")

    assert results[0]["reject_reason"] == "hard-bounce"
    assert undelivered(results) == results
    assert entries[0]["reason"] == "soft-bounce"


def test_empty_key_rejected() -> None:
    with pytest.raises(AuthError):
        MandrillClient(MandrillSettings(url=MOCK_URL), "")


# ----- stand-in query language -----


def record(email: str = "ana.gomez@kiwicorp.co", subject: str = "New vulnerabilities reported in kiwiapp", **extra: Any) -> dict[str, Any]:
    return {"email": email, "subject": subject, "state": "sent", "tags": ["notification"], "sender": "no-reply@fluidattacks.com", **extra}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("*", True),
        ('email:"ana.gomez@kiwicorp.co"', True),
        ("email:kiwicorp", True),
        ("email:ana.gomez@kiwicorp.co", True),
        ("email:ana*", True),
        ('full_email:"ana.gomez@kiwicorp.co"', True),
        ("full_email:kiwicorp", False),
        ("subject:kiwiapp", True),
        ("subject:kiwi", False),
        ('subject:"reported in kiwiapp"', True),
        ("state:sent AND tags:notification", True),
        ("state:bounced AND tags:notification", False),
        ("state:bounced OR subject:vulnerabilities", True),
        ("email:luisa OR email:marta", False),
    ],
)
def test_query_matches(query: str, expected: bool) -> None:
    assert compile_query(query)(record()) is expected


def test_query_skips_sms() -> None:
    assert compile_query("*")({"channel": "sms", "to": "+570000000000"}) is False


@pytest.mark.parametrize("query", ["NOT state:sent", "email:*kiwicorp.co", "(state:sent)", "state:sent state:bounced", "state:sent AND", "unknown:x", "OR state:sent"])
def test_query_rejected(query: str) -> None:
    with pytest.raises(ApiError) as caught:
        compile_query(query)

    assert caught.value.name == "ValidationError"


def test_seed_deterministic() -> None:
    first = seed.build_messages(ANCHOR)
    second = seed.build_messages(ANCHOR)

    assert first == second
    assert len({item["_id"] for item in first}) == len(first)
    assert {item.email for item in seed.background_messages()}.isdisjoint({seed.ANA, seed.CARLOS})


def test_undecodable_body_service_error(clock: FakeClock) -> None:
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    client = mock_client(lambda request: httpx.Response(200, content=b"not gzip data", headers=headers), clock)

    with pytest.raises(ServiceError) as caught:
        client.ping()

    assert "unreadable response" in caught.value.message
