"""The platform stand-in over a real socket: guards, authentication, authorization, the story."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from helpctl.sandbox import Sandbox
from helpctl.sandbox.platform_api import PlatformService
from helpctl.sandbox.server import RunningService

NOW = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.timezone.utc)
ENGINEER_TOKEN = "sandbox-platform-token"
USER_TOKEN = "sandbox-user-token"


@pytest.fixture
def running() -> Iterator[RunningService]:
    service = RunningService(PlatformService(now=NOW)).start()
    try:
        yield service
    finally:
        service.stop()


def post(
    running: RunningService,
    query: str,
    variables: dict[str, Any] | None = None,
    operation: str | None = None,
    token: str | None = ENGINEER_TOKEN,
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body: dict[str, Any] = {"query": query, "variables": variables or {}}
    if operation is not None:
        body["operationName"] = operation
    return httpx.post(running.base_url + "/api", json=body, headers=headers, timeout=5)


def only_message(response: httpx.Response) -> str:
    errors = response.json()["errors"]
    assert len(errors) == 1
    return errors[0]["message"]


# ----- guards -----


def test_guard_breadth(running: RunningService) -> None:
    response = post(running, "query Four { a: me { role } b: me { role } c: me { role } d: me { role } }")

    assert response.status_code == 400
    assert only_message(response) == "Exception - Max query breadth exceeded"


def test_guard_three_roots_allowed(running: RunningService) -> None:
    response = post(running, "query Three { a: me { role } b: me { role } c: me { role } }")

    assert response.status_code == 200
    assert response.json()["data"]["c"] == {"role": "hacker"}


EIGHT_DEEP = "me { organizations { groups { stakeholders { groups { stakeholders { groups { name } } } } } } }"
NINE_DEEP = (
    "me { organizations { groups { stakeholders { groups { stakeholders { groups { stakeholders { email } } } } } } } }"
)


def test_guard_depth(running: RunningService) -> None:
    response = post(running, f"query Deep {{ {NINE_DEEP} }}")

    assert response.status_code == 400
    assert only_message(response) == "Exception - Max query depth exceeded"


def test_guard_depth_eight_allowed(running: RunningService) -> None:
    response = post(running, f"query Deep {{ {EIGHT_DEEP} }}")

    assert response.status_code == 200
    assert response.json()["data"]["me"]["organizations"][0]["groups"]


def test_guard_depth_counts_fragments(running: RunningService) -> None:
    query = (
        "query Deep { me { organizations { groups { ...Nested } } } }\n"
        "fragment Nested on Group { stakeholders { groups { stakeholders { groups { stakeholders { email } } } } } }"
    )
    response = post(running, query)

    assert response.status_code == 400
    assert only_message(response) == "Exception - Max query depth exceeded"


def test_guard_characters(running: RunningService) -> None:
    query = "query Long { me { role } }" + " " * 3000
    response = post(running, query)

    assert response.status_code == 400
    assert only_message(response) == "Exception - Max characters exceeded"


@pytest.mark.parametrize(
    ("query", "operation"),
    [
        ("query Get_Me { me { role } }", None),
        ("query GetMe { me { role } }", "Get-Me"),
    ],
)
def test_guard_operation_name(running: RunningService, query: str, operation: str | None) -> None:
    response = post(running, query, operation=operation)

    assert response.status_code == 400
    assert only_message(response) == "Exception - Invalid operation name"


def test_guard_extra_variables(running: RunningService) -> None:
    response = post(running, "query Me($unused: String) { me { role } }", {"unused": "x", "extra": 1})

    assert response.status_code == 400
    assert only_message(response) == "Exception - Extra variables in operation"


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ('query Page { group(groupName: "kiwipay") { vulnerabilities(first: 0) { total } } }', {}),
        (
            "query Page($first: Int) { group(groupName: \"kiwipay\") { vulnerabilities(first: $first) { total } } }",
            {"first": -5},
        ),
    ],
)
def test_guard_first_positive(running: RunningService, query: str, variables: dict[str, Any]) -> None:
    response = post(running, query, variables)

    assert response.status_code == 400
    assert only_message(response) == "Exception - The argument must be a positive integer: first"


def test_guard_unknown_field_is_400(running: RunningService) -> None:
    response = post(running, "query Me { me { shoeSize } }")

    assert response.status_code == 400
    assert "shoeSize" in only_message(response)


def test_guard_syntax_error_is_400(running: RunningService) -> None:
    response = post(running, "query Me { me { role }")

    assert response.status_code == 400
    assert only_message(response).startswith("Syntax Error")


def test_guard_body_not_json(running: RunningService) -> None:
    response = httpx.post(running.base_url + "/api", content=b"not json", headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert only_message(response) == "Operation data should be a JSON object"


def test_wrong_path_is_404(running: RunningService) -> None:
    response = httpx.post(running.base_url + "/graphql", json={"query": "{ me { role } }"})

    assert response.status_code == 404
    assert response.content == b""


# ----- authentication -----


@pytest.mark.parametrize("token", [None, "not-a-sandbox-token"])
def test_login_required(running: RunningService, token: str | None) -> None:
    response = post(running, "query Me { me { userEmail } }", token=token)

    assert response.status_code == 200
    assert response.json()["data"] is None
    assert only_message(response) == "Login required"
    assert response.json()["errors"][0]["path"] == ["me"]


def test_introspection_without_token(running: RunningService) -> None:
    query = 'query Roles { __type(name: "StakeholderRole") { enumValues { name } } }'
    response = post(running, query, token=None)

    names = [value["name"] for value in response.json()["data"]["__type"]["enumValues"]]
    assert response.status_code == 200
    assert "USER_MANAGER" in names
    assert "VULNERABILITY_MANAGER" in names


@pytest.mark.parametrize("type_name", ["OrganizationRole", "InvitationState", "StakeholderEntity"])
def test_enums_introspectable(running: RunningService, type_name: str) -> None:
    query = 'query Enum($name: String!) { __type(name: $name) { kind enumValues { name } } }'
    response = post(running, query, {"name": type_name})

    assert response.json()["data"]["__type"]["kind"] == "ENUM"


def test_me_of_each_token(running: RunningService) -> None:
    engineer = post(running, "query Me { me { userEmail userName role } }").json()["data"]["me"]
    user = post(running, "query Me { me { userEmail role } }", token=USER_TOKEN).json()["data"]["me"]

    assert engineer == {"userEmail": "support.sandbox@fluidattacks.com", "userName": "Sandra Soporte", "role": "hacker"}
    assert user == {"userEmail": "luisa.fernandez@kiwicorp.co", "role": "user"}


# ----- authorization -----


def test_members_need_listing_role(running: RunningService) -> None:
    query = 'query Members { group(groupName: "kiwiapp") { name userRole stakeholders { email } } }'
    response = post(running, query, token=USER_TOKEN)

    body = response.json()
    assert response.status_code == 200
    assert body["data"]["group"]["stakeholders"] is None
    assert body["data"]["group"]["userRole"] == "user"
    assert only_message(response) == "Access denied"
    assert body["errors"][0]["path"] == ["group", "stakeholders"]


def test_members_listed_for_engineer(running: RunningService) -> None:
    query = 'query Members { group(groupName: "kiwiapp") { stakeholders { email role invitationState } } }'
    members = post(running, query).json()["data"]["group"]["stakeholders"]

    by_email = {member["email"]: member for member in members}
    assert by_email["ana.gomez@kiwicorp.co"]["role"] == "user_manager"
    assert by_email["carlos.ruiz@kiwicorp.co"]["invitationState"] == "PENDING"
    assert by_email["marta.vidal@kiwicorp.co"]["role"] == "vulnerability_manager"
    assert by_email["jorge.mesa@kiwicorp.co"]["role"] == "user_manager"
    assert len(members) == 7


def test_unknown_group(running: RunningService) -> None:
    response = post(running, 'query Group { group(groupName: "kiwix") { name } }')

    assert response.json()["data"] == {"group": None}
    assert only_message(response) == "Access denied or group not found"


def test_group_without_role(running: RunningService) -> None:
    response = post(running, 'query Group { group(groupName: "kiwilegacy") { name } }', token=USER_TOKEN)

    assert only_message(response) == "Access denied or group not found"


def test_group_without_asm_open_fields(running: RunningService) -> None:
    query = 'query Group { group(groupName: "kiwilegacy") { name userRole permissions hasAsm } }'
    response = post(running, query)

    group = response.json()["data"]["group"]
    assert "errors" not in response.json()
    assert group["hasAsm"] is False
    assert group["userRole"] == "user"
    assert "api_resolvers_group_stakeholders_resolve" not in group["permissions"]


@pytest.mark.parametrize("field", ["organization", "tier", "openVulnerabilities", "findings { id }", "events { id }"])
def test_group_without_asm_denies(running: RunningService, field: str) -> None:
    response = post(running, f'query Group {{ group(groupName: "kiwilegacy") {{ name {field} }} }}')

    assert only_message(response) == "Access denied"


def test_unknown_organization(running: RunningService) -> None:
    by_id = post(running, 'query Org { organization(organizationId: "ORG#nope") { name } }')
    by_name = post(running, 'query Org { organizationId(organizationName: "nope") { name } }')

    assert only_message(by_id) == "Access denied or organization not found"
    assert only_message(by_name) == "Access denied or organization not found"


def test_organization_by_name(running: RunningService) -> None:
    query = 'query Org { organizationId(organizationName: "kiwicorp") { id name country groups { name } } }'
    organization = post(running, query).json()["data"]["organizationId"]

    assert organization["id"] == "ORG#6c1f2f4e-2b7a-4c8e-9a51-3d0e5b7f9a10"
    assert organization["country"] == "Colombia"
    assert [group["name"] for group in organization["groups"]] == ["kiwiapp", "kiwipay", "kiwilegacy"]


def test_stakeholder_not_member(running: RunningService) -> None:
    query = (
        'query Member { stakeholder(entity: GROUP, groupName: "kiwiapp", '
        'userEmail: "pedro.rios@kiwicorp.co") { email } }'
    )
    response = post(running, query)

    assert only_message(response) == "Access denied or stakeholder not found"


def test_stakeholder_pending_invitation(running: RunningService) -> None:
    query = (
        'query Member { stakeholder(entity: GROUP, groupName: "kiwiapp", userEmail: "carlos.ruiz@kiwicorp.co") '
        "{ email role invitationState firstLogin lastLogin invitationDate responsibility } }"
    )
    member = post(running, query).json()["data"]["stakeholder"]

    assert member["invitationState"] == "PENDING"
    assert member["lastLogin"] is None
    assert member["invitationDate"] == "2025-03-01 12:00:00"


def test_stakeholder_never_logged_in_dash(running: RunningService) -> None:
    query = (
        'query Member { stakeholder(entity: GROUP, groupName: "kiwiapp", userEmail: "nico.paez@kiwicorp.co") '
        "{ invitationState firstLogin lastLogin } }"
    )
    member = post(running, query).json()["data"]["stakeholder"]

    assert member == {"invitationState": "REGISTERED", "firstLogin": "-", "lastLogin": "-"}


def test_stakeholder_query_needs_listing_role(running: RunningService) -> None:
    query = (
        'query Member { stakeholder(entity: GROUP, groupName: "kiwiapp", '
        'userEmail: "ana.gomez@kiwicorp.co") { email } }'
    )
    response = post(running, query, token=USER_TOKEN)

    assert only_message(response) == "Access denied"


def test_organization_stakeholder(running: RunningService) -> None:
    query = (
        "query Member($org: String!) { stakeholder(entity: ORGANIZATION, organizationId: $org, "
        'userEmail: "luisa.fernandez@kiwicorp.co") { role groups { name } } }'
    )
    member = post(running, query, {"org": "ORG#6c1f2f4e-2b7a-4c8e-9a51-3d0e5b7f9a10"}).json()["data"]["stakeholder"]

    assert member["role"] == "user"
    assert [group["name"] for group in member["groups"]] == ["kiwiapp", "kiwipay"]


def test_event_not_found(running: RunningService) -> None:
    response = post(running, 'query Event { event(groupName: "kiwiapp", identifier: "1") { id } }')

    assert only_message(response) == "Exception - Event not found"


def test_events_of_kiwiapp(running: RunningService) -> None:
    events = post(running, 'query Events { events(groupName: "kiwiapp") { id eventType eventStatus } }').json()

    assert events["data"]["events"] == [
        {"id": "463457733", "eventType": "VPN_ISSUES", "eventStatus": "CREATED"},
        {"id": "413372600", "eventType": "ENVIRONMENT_ISSUES", "eventStatus": "SOLVED"},
    ]


# ----- the story's numbers and pagination -----


def test_kiwiapp_counter_disagrees(running: RunningService) -> None:
    query = (
        'query Counts { group(groupName: "kiwiapp") { openFindings openVulnerabilities findings { id } '
        'vulnerabilities(first: 100, stateStatus: "VULNERABLE") { total edges { node { state } } } } }'
    )
    group = post(running, query).json()["data"]["group"]

    assert group["openVulnerabilities"] == 7
    assert group["vulnerabilities"]["total"] == 4
    assert len(group["findings"]) == 3
    assert {edge["node"]["state"] for edge in group["vulnerabilities"]["edges"]} == {"VULNERABLE"}


def test_vulnerability_pages(running: RunningService) -> None:
    query = (
        "query Page($after: String) { group(groupName: \"kiwipay\") { "
        'vulnerabilities(first: 50, after: $after, stateStatus: "VULNERABLE") { total '
        "pageInfo { endCursor hasNextPage } edges { cursor node { id } } } } }"
    )
    seen: list[str] = []
    after = None
    for _ in range(5):
        page = post(running, query, {"after": after}).json()["data"]["group"]["vulnerabilities"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        assert {edge["cursor"] for edge in page["edges"]} == {page["pageInfo"]["endCursor"]}
        assert page["total"] == 120
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]

    assert len(seen) == 120
    assert len(set(seen)) == 120


def test_default_listing_hides_states(running: RunningService) -> None:
    query = 'query Page { group(groupName: "kiwiapp") { vulnerabilities(first: 50) { total } } }'
    total = post(running, query).json()["data"]["group"]["vulnerabilities"]["total"]

    assert total == 7  # 4 vulnerable and 3 safe locations


def test_seed_dates_follow_now(running: RunningService) -> None:
    query = 'query Events { events(groupName: "kiwiapp") { eventDate closingDate } }'
    events = post(running, query).json()["data"]["events"]

    assert events[0]["eventDate"] == "2025-03-05 12:00:00"
    assert events[1]["closingDate"] == "2025-02-01 12:00:00"


# ----- fault knobs -----


def test_fail_operations(running: RunningService) -> None:
    running.service.fail_operations.add("Broken")
    broken = post(running, "query Broken { me { role } }")
    fine = post(running, "query Fine { me { role } }")

    assert broken.status_code == 200
    assert broken.json()["data"] is None
    assert only_message(broken) == "Exception - Unexpected error"
    assert fine.json()["data"] == {"me": {"role": "hacker"}}


def test_fail_operations_over_http(running: RunningService) -> None:
    answer = httpx.post(running.base_url + "/_sandbox/knobs", json={"fail_operations": ["Broken"], "latency": 0})
    response = post(running, "query Broken { me { role } }")

    assert answer.json() == {"ok": True}
    assert only_message(response) == "Exception - Unexpected error"


def test_sandbox_starts_platform() -> None:
    with Sandbox(services=["platform"], platform={"now": NOW}) as sandbox:
        url = sandbox.environment()["HELPCTL_PLATFORM_URL"]
        response = httpx.post(
            url, json={"query": "query Me { me { role } }"}, headers={"Authorization": f"Bearer {ENGINEER_TOKEN}"}
        )

    assert url.startswith("http://127.0.0.1:")
    assert url.endswith("/api")
    assert response.json()["data"] == {"me": {"role": "hacker"}}
