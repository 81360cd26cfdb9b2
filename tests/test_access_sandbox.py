"""Access mutations end to end: AccessMutations over gql and httpx against the platform stand-in."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from helpctl.clients.platform import PlatformClient
from helpctl.clients.platform_access import AccessMutations, MutationRefused, OutcomeUnknown, refusal_reason
from helpctl.config.settings import PlatformSettings, Timeouts
from helpctl.errors import AuthError, RateLimited
from helpctl.sandbox import platform_access as stand_in
from helpctl.sandbox.platform_api import PlatformService
from helpctl.sandbox.server import RunningService, ScriptedResponse

NOW = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.timezone.utc)
ENGINEER_TOKEN = "sandbox-platform-token"
USER_TOKEN = "sandbox-user-token"
KIWICORP = "ORG#6c1f2f4e-2b7a-4c8e-9a51-3d0e5b7f9a10"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def running(clock: Clock) -> Iterator[RunningService]:
    service = RunningService(PlatformService(now=NOW, bigcorp=True, clock=clock)).start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def service(running: RunningService) -> PlatformService:
    return running.service  # type: ignore[return-value]


def make_mutations(running: RunningService, token: str = ENGINEER_TOKEN, read: float = 2.0) -> AccessMutations:
    settings = PlatformSettings(url=running.base_url + "/api", timeouts=Timeouts(connect=1.0, read=read, total=5.0), retries=0)
    return AccessMutations(PlatformClient(settings, token, sleep=lambda _seconds: None))


@pytest.fixture
def mutations(running: RunningService) -> Iterator[AccessMutations]:
    client = make_mutations(running)
    yield client
    client.client.close()


def member(service: PlatformService, group: str, email: str) -> Any:
    return service.story.groups[group].members.get(email)


def refusal(call: Any, *arguments: Any) -> MutationRefused:
    with pytest.raises(MutationRefused) as caught:
        call(*arguments)
    return caught.value


# ----- grants -----


def test_grant_creates_pending_invitation(mutations: AccessMutations, service: PlatformService) -> None:
    mutations.grant_group("bigcorp001", "New.Dev@BigCorp.example", "USER", "Developer")

    invited = member(service, "bigcorp001", "new.dev@bigcorp.example")
    assert invited.invitation_state == "PENDING"
    assert invited.role == "user"
    assert invited.responsibility == "Developer"
    assert service.story.organizations["bigcorp"].members["new.dev@bigcorp.example"].invitation_state == "PENDING"
    assert "new.dev@bigcorp.example" in service.story.users


def test_reinvite_within_minute_refused(mutations: AccessMutations, clock: Clock) -> None:
    mutations.grant_group("bigcorp001", "new.dev@bigcorp.example", "USER")
    clock.now += 59

    error = refusal(mutations.grant_group, "bigcorp001", "new.dev@bigcorp.example", "USER")

    assert error.platform_message == stand_in.REINVITE_TOO_SOON
    assert error.reason == "reinvite_too_soon"


def test_reinvite_after_minute_allowed(mutations: AccessMutations, service: PlatformService, clock: Clock) -> None:
    mutations.grant_group("bigcorp001", "new.dev@bigcorp.example", "USER")
    clock.now += 61

    mutations.grant_group("bigcorp001", "new.dev@bigcorp.example", "VULNERABILITY_MANAGER")

    assert member(service, "bigcorp001", "new.dev@bigcorp.example").role == "vulnerability_manager"


def test_grant_registered_refused(mutations: AccessMutations, service: PlatformService) -> None:
    registered = next(
        email for email, item in service.story.groups["bigcorp001"].members.items()
        if item.invitation_state == "REGISTERED" and email.endswith(".example")
    )

    error = refusal(mutations.grant_group, "bigcorp001", registered, "USER")

    assert error.platform_message == stand_in.GROUP_ACCESS_EXISTS
    assert error.reason == "already_member"


def test_customer_manager_cannot_grant_user(mutations: AccessMutations) -> None:
    # On kiwiapp the engineer is customer_manager, which grants staff roles and user_manager only.
    error = refusal(mutations.grant_group, "kiwiapp", "new.dev@kiwicorp.co", "USER")

    assert error.platform_message == "Exception - Invalid role or not enough permissions to grant role: user"
    assert error.reason == "role_not_grantable"


def test_fluid_only_roles_refused(mutations: AccessMutations) -> None:
    staff = refusal(mutations.grant_group, "kiwiapp", "new.dev@kiwicorp.co", "CUSTOMER_MANAGER")
    hacker = refusal(mutations.grant_group, "kiwiapp", "new.dev@kiwicorp.co", "HACKER")

    assert staff.platform_message == stand_in.FLUID_ONLY_ROLE
    assert hacker.platform_message == stand_in.FLUID_ONLY_HACKERS


def test_free_mail_refused(mutations: AccessMutations) -> None:
    error = refusal(mutations.grant_group, "bigcorp001", "someone@gmail.com", "USER")

    assert error.platform_message == stand_in.CORPORATE_EMAIL_ONLY
    assert error.reason == "invalid_email"


def test_user_role_denied(running: RunningService) -> None:
    luisa = make_mutations(running, USER_TOKEN)

    error = refusal(luisa.remove_group, "kiwiapp", "nico.paez@kiwicorp.co")

    assert error.platform_message == "Access denied"
    assert error.reason == "permission"


def test_unknown_group_refused(mutations: AccessMutations) -> None:
    error = refusal(mutations.remove_group, "nosuchgroup", "nico.paez@kiwicorp.co")

    assert error.platform_message == "Access denied or group not found"
    assert error.reason == "group_not_found"


def test_group_without_service_denied(mutations: AccessMutations) -> None:
    error = refusal(mutations.grant_group, "kiwilegacy", "new.dev@kiwicorp.co", "USER_MANAGER")

    assert error.platform_message == "Access denied"


# ----- role changes -----


def test_update_changes_role(mutations: AccessMutations, service: PlatformService) -> None:
    mutations.update_group("kiwiapp", "luisa.fernandez@kiwicorp.co", "USER_MANAGER", "Lead Developer")

    luisa = member(service, "kiwiapp", "luisa.fernandez@kiwicorp.co")
    assert (luisa.role, luisa.responsibility, luisa.invitation_state) == ("user_manager", "Lead Developer", "REGISTERED")


def test_update_pending_invitation(mutations: AccessMutations, service: PlatformService) -> None:
    mutations.update_group("kiwiapp", "carlos.ruiz@kiwicorp.co", "USER_MANAGER", "Developer")

    carlos = member(service, "kiwiapp", "carlos.ruiz@kiwicorp.co")
    assert (carlos.role, carlos.invitation_state) == ("user_manager", "PENDING")


def test_update_non_member_refused(mutations: AccessMutations) -> None:
    error = refusal(mutations.update_group, "kiwiapp", "pedro.rios@kiwicorp.co", "USER_MANAGER", "Developer")

    assert error.platform_message == "Access denied or stakeholder not found"
    assert error.reason == "not_member"


# ----- removals and their cascade -----


def test_remove_keeps_other_groups(mutations: AccessMutations, service: PlatformService) -> None:
    mutations.remove_group("kiwipay", "luisa.fernandez@kiwicorp.co")

    assert member(service, "kiwipay", "luisa.fernandez@kiwicorp.co") is None
    assert member(service, "kiwiapp", "luisa.fernandez@kiwicorp.co") is not None
    assert "luisa.fernandez@kiwicorp.co" in service.story.organizations["kiwicorp"].members


def test_remove_last_group_leaves_platform(mutations: AccessMutations, service: PlatformService) -> None:
    mutations.remove_group("kiwipay", "pedro.rios@kiwicorp.co")

    assert "pedro.rios@kiwicorp.co" not in service.story.organizations["kiwicorp"].members
    assert "pedro.rios@kiwicorp.co" not in service.story.users


def test_removed_account_token_fails(running: RunningService, mutations: AccessMutations) -> None:
    mutations.remove_group("kiwiapp", "luisa.fernandez@kiwicorp.co")
    mutations.remove_group("kiwipay", "luisa.fernandez@kiwicorp.co")
    luisa = make_mutations(running, USER_TOKEN)

    with pytest.raises(AuthError):
        luisa.remove_group("kiwiapp", "nico.paez@kiwicorp.co")


def test_remove_organization_cascades(mutations: AccessMutations, service: PlatformService) -> None:
    mutations.remove_organization(KIWICORP, "luisa.fernandez@kiwicorp.co")

    assert member(service, "kiwiapp", "luisa.fernandez@kiwicorp.co") is None
    assert member(service, "kiwipay", "luisa.fernandez@kiwicorp.co") is None
    assert "luisa.fernandez@kiwicorp.co" not in service.story.users


def test_organization_grant_and_update(mutations: AccessMutations, service: PlatformService) -> None:
    bigcorp = service.story.organizations["bigcorp"]

    mutations.grant_organization(bigcorp.id, "new.lead@bigcorp.example", "USER")
    mutations.update_organization(bigcorp.id, "new.lead@bigcorp.example", "USER_MANAGER")

    assert bigcorp.members["new.lead@bigcorp.example"].role == "user_manager"
    assert bigcorp.members["new.lead@bigcorp.example"].invitation_state == "PENDING"


def test_organization_role_rules(mutations: AccessMutations) -> None:
    # At organization level a customer_manager grants user_manager and customer_manager only.
    error = refusal(mutations.grant_organization, KIWICORP, "new.dev@kiwicorp.co", "USER")

    assert error.platform_message == "Exception - Invalid role or not enough permissions to grant role: user"


def test_unknown_organization_refused(mutations: AccessMutations) -> None:
    error = refusal(mutations.remove_organization, "ORG#00000000-0000-0000-0000-000000000000", "a@kiwicorp.co")

    assert error.platform_message == "Access denied or organization not found"


# ----- knobs, log and failures -----


def test_mutation_log_records_outcomes(mutations: AccessMutations, service: PlatformService) -> None:
    mutations.remove_group("kiwipay", "pedro.rios@kiwicorp.co")
    refusal(mutations.remove_group, "kiwipay", "pedro.rios@kiwicorp.co")

    records = service.access.records()
    assert [(item.mutation, item.outcome) for item in records] == [
        ("removeStakeholderAccess", "applied"),
        ("removeStakeholderAccess", "refused"),
    ]
    assert records[0].arguments == {"groupName": "kiwipay", "userEmail": "pedro.rios@kiwicorp.co"}


def test_concurrency_limit_answers_429(mutations: AccessMutations, service: PlatformService) -> None:
    service.apply_knobs({"mutation_concurrency": 1, "mutation_retry_after": 2})
    assert service.access.admit()  # one mutation already in flight
    try:
        with pytest.raises(RateLimited) as caught:
            mutations.remove_group("kiwipay", "pedro.rios@kiwicorp.co")
    finally:
        service.access.release()

    assert caught.value.retry_after == 2.0
    assert [item.outcome for item in service.access.records()] == ["rate_limited"]
    assert member(service, "kiwipay", "pedro.rios@kiwicorp.co") is not None


def test_knobs_and_log_over_http(running: RunningService, service: PlatformService, mutations: AccessMutations) -> None:
    answer = httpx.post(running.base_url + "/_sandbox/knobs", json={"mutation_latency": 0.01, "mutation_concurrency": 16})
    mutations.remove_group("kiwipay", "pedro.rios@kiwicorp.co")
    log = httpx.get(running.base_url + "/_sandbox/mutations").json()

    assert answer.status_code == 200
    assert service.access.knobs.mutation_concurrency == 16
    assert service.access.knobs.mutation_latency == 0.01
    assert [(item["mutation"], item["outcome"]) for item in log] == [("removeStakeholderAccess", "applied")]


def test_unknown_knob_rejected(running: RunningService) -> None:
    answer = httpx.post(running.base_url + "/_sandbox/knobs", json={"mutation_speed": 3})

    assert answer.status_code == 400


def test_dropped_request_unknown(mutations: AccessMutations, service: PlatformService) -> None:
    service.access.hook = lambda phase, record: phase == "received"

    with pytest.raises(OutcomeUnknown):
        mutations.remove_group("kiwipay", "pedro.rios@kiwicorp.co")

    assert member(service, "kiwipay", "pedro.rios@kiwicorp.co") is not None
    assert [item.outcome for item in service.access.records()] == ["dropped"]


def test_throttle_message_rate_limited(mutations: AccessMutations, service: PlatformService) -> None:
    body = {"data": {"removeStakeholderAccess": None}, "errors": [{"message": "Exception - Too many requests"}]}
    service.knobs.script.append(ScriptedResponse(200, json.dumps(body).encode(), {"Content-Type": "application/json"}))

    with pytest.raises(RateLimited) as caught:
        mutations.remove_group("kiwipay", "pedro.rios@kiwicorp.co")

    assert caught.value.retry_after is None


def test_html_502_outcome_unknown(mutations: AccessMutations, service: PlatformService) -> None:
    service.apply_knobs({"error_rate": 1.0})

    with pytest.raises(OutcomeUnknown) as caught:
        mutations.remove_group("kiwipay", "pedro.rios@kiwicorp.co")

    assert caught.value.status == 502


def test_timeout_outcome_unknown(running: RunningService, service: PlatformService) -> None:
    slow = make_mutations(running, read=0.2)
    service.apply_knobs({"mutation_latency": 0.5})

    with pytest.raises(OutcomeUnknown) as caught:
        slow.remove_group("kiwipay", "pedro.rios@kiwicorp.co")

    assert "timed out" in caught.value.message


def test_bad_document_refused(mutations: AccessMutations, service: PlatformService) -> None:
    service.knobs.script.append(
        ScriptedResponse(400, b'{"errors": [{"message": "Exception - Max query depth exceeded"}]}', {"Content-Type": "application/json"})
    )

    error = refusal(mutations.remove_group, "kiwipay", "pedro.rios@kiwicorp.co")

    assert error.reason == "rejected_request"
    assert error.status == 400


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("Exception - The stakeholder has been granted access to the organization previously", "already_member"),
        ("Access denied or stakeholder not found", "not_member"),
        ("Something new", "refused"),
    ],
)
def test_refusal_reason_table(message: str, reason: str) -> None:
    assert refusal_reason(message) == reason


# ----- generated organizations -----


def test_generated_organization_shape() -> None:
    service = PlatformService(now=NOW, organizations=[stand_in.OrganizationSpec("megacorp", 2000, 40)])
    organization = service.story.organizations["megacorp"]
    groups = [service.story.groups[name] for name in organization.groups]

    assert len(organization.groups) == 40
    assert len(organization.members) == 2001
    assert all(group.members[stand_in.seed.ENGINEER_EMAIL].role == "user_manager" for group in groups)
    assert all(any(item.role == "user_manager" for email, item in group.members.items() if email.endswith(".example")) for group in groups)
    assert sum(len(group.members) for group in groups) > 2000 + 40


def test_generated_organization_deterministic() -> None:
    first = PlatformService(now=NOW, bigcorp=True).story.groups["bigcorp007"].members
    second = PlatformService(now=NOW, bigcorp=True).story.groups["bigcorp007"].members

    assert list(first) == list(second)
    assert [item.role for item in first.values()] == [item.role for item in second.values()]


def test_parse_spec_rejects_bad_text() -> None:
    with pytest.raises(ValueError):
        stand_in.parse_spec("Big Corp:10")

    assert stand_in.parse_spec("megacorp:20000:200") == stand_in.OrganizationSpec("megacorp", 20000, 200)
