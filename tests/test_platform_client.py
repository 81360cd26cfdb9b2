"""PlatformClient: gql over httpx against the platform stand-in on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpctl import paths
from helpctl.clients.platform import Connection, PlatformClient, PlatformQueryError, role_display
from helpctl.config.settings import PlatformSettings, Timeouts
from helpctl.errors import AuthError, RateLimited, ServiceError, ServiceTimeout, UsageError
from helpctl.sandbox.platform_api import PlatformService
from helpctl.sandbox.server import HTML_502, RunningService, ScriptedResponse

NOW = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.timezone.utc)
ENGINEER_TOKEN = "sandbox-platform-token"

VULNERABILITIES = """query OpenVulnerabilities($group: String!, $first: Int!, $after: String) {
  group(groupName: $group) {
    vulnerabilities(first: $first, after: $after, stateStatus: "VULNERABLE") {
      total pageInfo { endCursor hasNextPage } edges { node { id } }
    }
  }
}"""


KIWIPAY_LISTING = (VULNERABILITIES, {"group": "kiwipay"}, "group.vulnerabilities", "OpenVulnerabilities")


class Sleeps:
    """Records the waits the client asks for instead of sleeping."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def running() -> Iterator[RunningService]:
    service = RunningService(PlatformService(now=NOW)).start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def service(running: RunningService) -> PlatformService:
    return running.service  # type: ignore[return-value]


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def settings(url: str, **overrides: Any) -> PlatformSettings:
    values: dict[str, Any] = {
        "url": url,
        "fixed_token": None,
        "timeouts": Timeouts(connect=1.0, read=2.0, total=10.0),
        "retries": 2,
        "page_size": 50,
        "max_items": 2000,
    }
    values.update(overrides)
    return PlatformSettings(**values)


@pytest.fixture
def make_client(running: RunningService, sleeps: Sleeps) -> Iterator[Any]:
    clients: list[PlatformClient] = []

    def make(token: str = ENGINEER_TOKEN, url: str | None = None, **overrides: Any) -> PlatformClient:
        client = PlatformClient(settings(url or running.base_url + "/api", **overrides), token, sleep=sleeps)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def script(service: PlatformService, status: int, body: bytes | str, content_type: str, **extra: Any) -> None:
    data = body.encode("utf-8") if isinstance(body, str) else body
    headers = {"Content-Type": content_type, **extra.pop("headers", {})}
    service.knobs.script.append(ScriptedResponse(status, data, headers, path="/api", **extra))


def api_requests(service: PlatformService) -> int:
    return len(service.requests_to("/api"))


# ----- happy paths -----


def test_me(make_client: Any) -> None:
    me = make_client().me()

    assert me["userEmail"] == "support.sandbox@fluidattacks.com"
    assert me["role"] == "hacker"
    assert me["organizations"][0]["name"] == "kiwicorp"


def test_execute_sends_headers(make_client: Any, service: PlatformService) -> None:
    make_client().execute("query Me { me { role } }", None, "Me")

    body = json.loads(service.log[-1].body)
    assert body["operationName"] == "Me"
    assert "me" in body["query"]
    assert "variables" not in body


def test_execute_partial_answer(make_client: Any) -> None:
    query = (
        "query Legacy($group: String!) { group(groupName: $group) { name service } "
        "access: group(groupName: $group) { name hasAsm } }"
    )
    result = make_client().execute(query, {"group": "kiwilegacy"}, "Legacy")

    assert result.status == 200
    assert result.field("group") is None
    assert result.field("access") == {"name": "kiwilegacy", "hasAsm": False}
    assert [(error.message, error.path) for error in result.errors] == [("Access denied", ("group", "service"))]
    assert result.errors_for("access") == []
    assert result.request()["variables"] == {"group": "kiwilegacy"}


# ----- local checks: nothing is sent -----


@pytest.mark.parametrize(
    ("document", "variables", "operation", "expected"),
    [
        ("query Get_Me { me { role } }", None, "Get_Me", "only letters and digits"),
        ("query Me { me { role } }", None, "", "only letters and digits"),
        ("query Me { me { role } }", None, "Other", "no operation named 'Other'"),
        ("query Me { me { role }", None, "Me", "not a valid GraphQL document"),
        ("query Me { a: me { role } b: me { role } c: me { role } d: me { role } }", None, "Me", "4 root fields"),
        ("query Me { me { role } }", {"extra": 1}, "Me", "does not declare: extra"),
        (
            "query Me { me { organizations { groups { stakeholders { groups { stakeholders "
            "{ groups { stakeholders { email } } } } } } } } }",
            None,
            "Me",
            "9 deep",
        ),
        ("query Me { me { role } }" + "\n" * 10 + "# padding\n" * 400, None, "Me", None),
    ],
)
def test_local_checks(
    make_client: Any,
    service: PlatformService,
    document: str,
    variables: dict[str, Any] | None,
    operation: str,
    expected: str | None,
) -> None:
    client = make_client()
    if expected is None:
        # Comments are dropped when gql prints the document, so the text sent stays short.
        assert client.execute(document, variables, operation).field("me") == {"role": "hacker"}
        return

    with pytest.raises(UsageError) as caught:
        client.execute(document, variables, operation)
    assert expected in caught.value.message
    assert api_requests(service) == 0


def test_local_check_characters(make_client: Any, service: PlatformService) -> None:
    fields = " ".join(f"alias{index}: role" for index in range(400))
    with pytest.raises(UsageError) as caught:
        make_client().execute(f"query Me {{ me {{ {fields} }} }}", None, "Me")

    assert "at most 3000" in caught.value.message
    assert api_requests(service) == 0


# ----- authentication -----


def test_login_required(make_client: Any, service: PlatformService) -> None:
    token = "not-a-sandbox-token"
    with pytest.raises(AuthError) as caught:
        make_client(token=token).me()

    assert caught.value.message == "platform rejected the token: Login required"
    assert "helpctl auth login platform" in (caught.value.hint or "")
    assert token not in caught.value.message
    assert api_requests(service) == 1


def test_expired_token_message(make_client: Any, service: PlatformService) -> None:
    body = json.dumps({"data": None, "errors": [{"message": "Exception - User token has expired"}]})
    script(service, 200, body, "application/json")

    with pytest.raises(AuthError) as caught:
        make_client().me()
    assert "User token has expired" in caught.value.message


def test_empty_token_rejected(running: RunningService) -> None:
    with pytest.raises(AuthError):
        PlatformClient(settings(running.base_url + "/api"), "")


# ----- responses that are not GraphQL -----


def test_html_502_retried(make_client: Any, service: PlatformService, sleeps: Sleeps) -> None:
    script(service, 502, HTML_502, "text/html")

    me = make_client().me()

    assert me["role"] == "hacker"
    assert api_requests(service) == 2
    assert sleeps.calls == [0.5]


def test_html_502_gives_up(make_client: Any, service: PlatformService, sleeps: Sleeps) -> None:
    for _ in range(3):
        script(service, 502, HTML_502, "text/html")

    with pytest.raises(ServiceError) as caught:
        make_client(retries=2).me()

    message = caught.value.message
    assert message.startswith("platform returned HTML 502 (proxy or load balancer): 502 Bad Gateway")
    assert "<" not in message
    assert caught.value.status == 502
    assert api_requests(service) == 3
    assert sleeps.calls == [0.5, 1.0]


def test_json_message_is_auth(make_client: Any, service: PlatformService, sleeps: Sleeps) -> None:
    script(service, 200, '{"message":"This endpoint requires you to be authenticated."}', "application/json")

    with pytest.raises(AuthError) as caught:
        make_client().me()

    assert "requires you to be authenticated" in caught.value.message
    assert api_requests(service) == 1
    assert sleeps.calls == []


def test_json_without_data_is_service_error(make_client: Any, service: PlatformService) -> None:
    script(service, 200, '{"status":"maintenance"}', "application/json")

    with pytest.raises(ServiceError) as caught:
        make_client().me()

    assert "not a GraphQL result" in caught.value.message
    assert api_requests(service) == 1


def test_404_names_url(make_client: Any, running: RunningService, service: PlatformService) -> None:
    url = running.base_url + "/graphql"
    with pytest.raises(ServiceError) as caught:
        make_client(url=url).me()

    assert caught.value.message == f"platform endpoint {url} returned HTTP 404 Not Found"
    assert caught.value.status == 404
    assert len(service.requests_to("/graphql")) == 1


def test_500_graphql_errors_not_retried(make_client: Any, service: PlatformService, sleeps: Sleeps) -> None:
    body = '{"errors":[{"message":"Variable \\"$skip\\" of required type \\"Int!\\" was not provided."}]}'
    script(service, 500, body, "application/json")

    with pytest.raises(PlatformQueryError) as caught:
        make_client(retries=3).me()

    assert caught.value.status == 500
    assert 'Variable "$skip" of required type "Int!" was not provided.' in caught.value.message
    assert caught.value.messages == ['Variable "$skip" of required type "Int!" was not provided.']
    assert api_requests(service) == 1
    assert sleeps.calls == []


def test_400_guard_from_server_not_retried(make_client: Any, service: PlatformService) -> None:
    script(service, 400, '{"errors":[{"message":"Exception - Max query breadth exceeded"}]}', "application/json")

    with pytest.raises(PlatformQueryError) as caught:
        make_client().me()

    assert "Exception - Max query breadth exceeded" in caught.value.message
    assert api_requests(service) == 1


def test_mutation_never_retried(make_client: Any, service: PlatformService, sleeps: Sleeps) -> None:
    script(service, 502, HTML_502, "text/html")

    with pytest.raises(ServiceError):
        make_client(retries=3).execute("mutation Touch { touch }", None, "Touch")

    assert api_requests(service) == 1
    assert sleeps.calls == []


def test_internal_error_returned(make_client: Any, service: PlatformService) -> None:
    service.fail_operations.add("Me")

    result = make_client().execute("query Me { me { role } }", None, "Me")

    assert result.data is None
    assert [error.message for error in result.errors] == ["Exception - Unexpected error"]


# ----- 429 -----


def test_429_retry_after_honoured(make_client: Any, service: PlatformService, sleeps: Sleeps) -> None:
    script(service, 429, '{"message":"429 Too Many Requests"}', "application/json", headers={"Retry-After": "3"})

    assert make_client().me()["role"] == "hacker"
    assert sleeps.calls == [3.0]
    assert api_requests(service) == 2


def test_429_beyond_budget(make_client: Any, service: PlatformService, sleeps: Sleeps) -> None:
    script(service, 429, "{}", "application/json", headers={"Retry-After": "120"})

    with pytest.raises(RateLimited) as caught:
        make_client().me()

    assert caught.value.retry_after == 120.0
    assert sleeps.calls == []
    assert api_requests(service) == 1


def test_429_every_attempt(make_client: Any, service: PlatformService, sleeps: Sleeps) -> None:
    for _ in range(3):
        script(service, 429, "{}", "application/json", headers={"Retry-After": "0.25"})

    with pytest.raises(RateLimited) as caught:
        make_client(retries=2).me()

    assert caught.value.retry_after == 0.25
    assert sleeps.calls == [0.25, 0.25]
    assert api_requests(service) == 3


# ----- timeouts and connections -----


def test_read_timeout(make_client: Any, running: RunningService, service: PlatformService) -> None:
    script(service, 200, '{"data":{"me":{"role":"hacker"}}}', "application/json", delay=0.6)
    client = make_client(timeouts=Timeouts(connect=1.0, read=0.2, total=5.0), retries=0)

    with pytest.raises(ServiceTimeout) as caught:
        client.me()

    assert caught.value.message == f"platform timed out after 0.2 s ({running.base_url}/api)"


def test_timeout_retried_then_answered(make_client: Any, service: PlatformService, sleeps: Sleeps) -> None:
    script(service, 200, '{"data":{"me":{"role":"slow"}}}', "application/json", delay=0.5)
    client = make_client(timeouts=Timeouts(connect=1.0, read=0.2, total=5.0), retries=1)

    assert client.me()["role"] == "hacker"
    assert sleeps.calls == [0.5]


def test_total_budget_shortens_read(make_client: Any, running: RunningService, service: PlatformService) -> None:
    service.knobs.latency = 0.6
    client = make_client(timeouts=Timeouts(connect=1.0, read=5.0, total=0.3), retries=3)

    with pytest.raises(ServiceTimeout) as caught:
        client.me()

    assert caught.value.message == f"platform timed out after 0.3 s ({running.base_url}/api)"


def test_connection_refused(make_client: Any, sleeps: Sleeps) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"

    with pytest.raises(ServiceError) as caught:
        make_client(url=url, retries=1).me()

    assert caught.value.message.startswith(f"could not connect to the platform at {url}")
    assert sleeps.calls == [0.5]


# ----- pagination -----


def test_paginate_to_end(make_client: Any, service: PlatformService) -> None:
    connection = make_client(page_size=50).paginate(*KIWIPAY_LISTING)

    sent = [json.loads(item.body)["variables"] for item in service.requests_to("/api")]
    assert len(connection.items) == 120
    assert len({item["id"] for item in connection.items}) == 120
    assert connection.total == 120
    assert connection.pages == 3
    assert connection.complete
    assert [variables["first"] for variables in sent] == [50, 50, 50]
    assert sent[0]["after"] is None
    assert sent[1]["after"] is not None


def test_paginate_truncated(make_client: Any, service: PlatformService) -> None:
    connection = make_client(page_size=50, max_items=70).paginate(
        VULNERABILITIES, {"group": "kiwipay"}, ("group", "vulnerabilities"), "OpenVulnerabilities"
    )

    sent = [json.loads(item.body)["variables"]["first"] for item in service.requests_to("/api")]
    assert len(connection.items) == 70
    assert connection.truncated
    assert not connection.complete
    assert sent == [50, 20]


def test_paginate_exact_fit_not_truncated(make_client: Any) -> None:
    connection = make_client(page_size=50, max_items=120).paginate(
        VULNERABILITIES, {"group": "kiwipay"}, "group.vulnerabilities", "OpenVulnerabilities"
    )

    assert len(connection.items) == 120
    assert not connection.truncated


def test_paginate_repeated_cursor(make_client: Any, service: PlatformService) -> None:
    page = {
        "data": {
            "group": {
                "vulnerabilities": {
                    "total": 9,
                    "pageInfo": {"endCursor": "same", "hasNextPage": True},
                    "edges": [{"node": {"id": "a"}}],
                }
            }
        }
    }
    for _ in range(3):
        script(service, 200, json.dumps(page), "application/json")

    connection = make_client().paginate(*KIWIPAY_LISTING)

    assert isinstance(connection.interrupted, ServiceError)
    assert "repeated the page cursor" in connection.interrupted.message
    assert connection.pages == 2
    assert api_requests(service) == 2


def test_paginate_interrupted_keeps_items(make_client: Any, service: PlatformService) -> None:
    client = make_client(page_size=50, retries=0)
    first = client.execute(VULNERABILITIES, {"group": "kiwipay", "first": 50, "after": None}, "OpenVulnerabilities")
    service.log.clear()
    script(service, 200, json.dumps({"data": first.data}), "application/json")
    script(service, 502, HTML_502, "text/html")

    connection: Connection = client.paginate(
        VULNERABILITIES, {"group": "kiwipay"}, "group.vulnerabilities", "OpenVulnerabilities"
    )

    assert len(connection.items) == 50
    assert isinstance(connection.interrupted, ServiceError)
    assert connection.interrupted.status == 502


def test_paginate_first_page_error_raises(make_client: Any, service: PlatformService) -> None:
    script(service, 502, HTML_502, "text/html")

    with pytest.raises(ServiceError):
        make_client(retries=0).paginate(*KIWIPAY_LISTING)


def test_paginate_needs_declared_variables(make_client: Any, service: PlatformService) -> None:
    document = 'query Bad { group(groupName: "kiwipay") { vulnerabilities { total } } }'
    with pytest.raises(UsageError):
        make_client().paginate(document, None, "group.vulnerabilities", "Bad")

    assert api_requests(service) == 0


# ----- role enums, their cache and role names -----


def test_role_enums_introspected(make_client: Any) -> None:
    enums = make_client().role_enums()

    assert "VULNERABILITY_MANAGER" in enums["group"]
    assert enums["organization"] == ["CUSTOMER_MANAGER", "USER", "USER_MANAGER"]


def test_role_enum_cache_private_and_reused(make_client: Any, service: PlatformService) -> None:
    first = make_client()
    first.role_enums()
    path = first.facts_cache_path()

    second = make_client()
    second.role_enums()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.cache_dir().stat().st_mode) == 0o700
    assert api_requests(service) == 1
    assert json.loads(path.read_text())["url"] == first.url


def test_role_enum_cache_expires(make_client: Any, service: PlatformService) -> None:
    first = make_client(enum_cache_hours=1)
    first.role_enums()
    stored = json.loads(first.facts_cache_path().read_text())
    stored["fetched_at"] -= 2 * 3600
    first.facts_cache_path().write_text(json.dumps(stored))

    make_client(enum_cache_hours=1).role_enums()

    assert api_requests(service) == 2


def test_introspection_failure_falls_back(
    make_client: Any, service: PlatformService, caplog: pytest.LogCaptureFixture
) -> None:
    error = {"errors": [{"message": 'Unknown argument "includeDeprecated" on field "args" of type "__Directive".'}]}
    script(service, 200, json.dumps(error), "application/json")
    client = make_client()

    with caplog.at_level(logging.WARNING, logger="helpctl.clients.platform"):
        enums = client.role_enums()
    me = client.me()

    assert "USER_MANAGER" in enums["group"]
    assert me["role"] == "hacker"
    assert any("introspection failed" in record.getMessage() for record in caplog.records)
    assert not client.facts_cache_path().exists()
    assert "invitationDate" not in client.stakeholder_fields()


def test_stakeholder_fields_from_schema(make_client: Any) -> None:
    fields = make_client().stakeholder_fields()

    assert {"email", "role", "invitationState", "lastLogin", "invitationDate"} <= fields


@pytest.mark.parametrize(
    ("name", "level", "expected"),
    [
        ("Group Manager", "group", "USER_MANAGER"),
        ("group manager", "group", "USER_MANAGER"),
        ("USER_MANAGER", "group", "USER_MANAGER"),
        ("user_manager", "group", "USER_MANAGER"),
        ("User Manager", "group", "USER_MANAGER"),
        ("Vulnerability Manager", "group", "VULNERABILITY_MANAGER"),
        ("vulnerability-manager", "group", "VULNERABILITY_MANAGER"),
        ("User", "group", "USER"),
        ("Organization Manager", "organization", "USER_MANAGER"),
        ("user", "organization", "USER"),
    ],
)
def test_role_to_enum(make_client: Any, name: str, level: str, expected: str) -> None:
    assert make_client().role_to_enum(name, level) == expected


def test_role_to_enum_renamed_enum(make_client: Any, service: PlatformService) -> None:
    client = make_client()
    path = client.facts_cache_path()
    paths.ensure_private_dir(path.parent)
    facts = {
        "group": ["GROUP_MANAGER", "USER", "VULNERABILITY_MANAGER"],
        "organization": ["ORGANIZATION_MANAGER", "USER"],
        "stakeholder": ["email", "role"],
    }
    path.write_text(json.dumps({"url": client.url, "fetched_at": time.time(), "facts": facts}))

    assert client.role_to_enum("Group Manager") == "GROUP_MANAGER"
    assert client.role_to_enum("user_manager") == "GROUP_MANAGER"
    assert client.role_to_enum("USER_MANAGER", "organization") == "ORGANIZATION_MANAGER"
    assert api_requests(service) == 0


@pytest.mark.parametrize(
    ("name", "level"), [("Chief Wizard", "group"), ("Vulnerability Manager", "organization"), ("", "group")]
)
def test_role_to_enum_rejects(make_client: Any, name: str, level: str) -> None:
    with pytest.raises(UsageError):
        make_client().role_to_enum(name, level)


@pytest.mark.parametrize(
    ("value", "level", "expected"),
    [
        ("user_manager", "group", "Group Manager"),
        ("user_manager", "organization", "Organization Manager"),
        ("vulnerability_manager", "group", "Vulnerability Manager"),
        ("user", "group", "User"),
        ("customer_manager", "group", "Customer Manager"),
        ("GROUP_MANAGER", "group", "Group Manager"),
    ],
)
def test_role_display(value: str, level: str, expected: str) -> None:
    assert role_display(value, level) == expected


# ----- logging and secrets -----


def test_debug_log_without_token(make_client: Any, running: RunningService, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="helpctl"):
        make_client().me()

    text = "\n".join(record.getMessage() for record in caplog.records)
    assert f"platform HelpctlMe POST {running.base_url}/api -> HTTP 200" in text
    assert ENGINEER_TOKEN not in text


def test_cache_file_has_no_token(make_client: Any) -> None:
    client = make_client()
    client.role_enums()

    assert ENGINEER_TOKEN not in client.facts_cache_path().read_text()
    assert os.stat(client.facts_cache_path()).st_size > 0
    assert isinstance(client.facts_cache_path(), Path)
