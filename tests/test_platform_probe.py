"""The platform probe against the stand-in: each check's findings and signals for the story."""

from __future__ import annotations

import datetime as dt
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpctl.cases.model import Case, Person, Subjects
from helpctl.cases.store import CaseStore
from helpctl.clients.platform import PlatformClient
from helpctl.config.settings import PlatformSettings, Timeouts
from helpctl.errors import UsageError
from helpctl.findings import Finding
from helpctl.probes import platform as probe
from helpctl.sandbox.platform_api import PlatformService, check_guards
from helpctl.sandbox.server import HTML_502, RunningService, ScriptedResponse

SEEDED_AT = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.timezone.utc)
PROBED_AT = SEEDED_AT + dt.timedelta(hours=1)
ENGINEER_TOKEN = "sandbox-platform-token"
USER_TOKEN = "sandbox-user-token"


@pytest.fixture
def running() -> Iterator[RunningService]:
    service = RunningService(PlatformService(now=SEEDED_AT)).start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def service(running: RunningService) -> PlatformService:
    return running.service  # type: ignore[return-value]


@pytest.fixture
def store(tmp_path: Path) -> CaseStore:
    return CaseStore(tmp_path / "cases")


@pytest.fixture
def make_client(running: RunningService) -> Iterator[Any]:
    clients: list[PlatformClient] = []

    def make(token: str = ENGINEER_TOKEN, **overrides: Any) -> PlatformClient:
        values: dict[str, Any] = {
            "url": running.base_url + "/api",
            "fixed_token": None,
            "timeouts": Timeouts(connect=1.0, read=2.0, total=10.0),
            "retries": 1,
            "page_size": 50,
            "max_items": 2000,
        }
        values.update(overrides)
        client = PlatformClient(PlatformSettings(**values), token, sleep=lambda _seconds: None)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def make_case(
    store: CaseStore,
    users: list[str] | None = None,
    groups: list[str] | None = None,
    requester: str = "ana.gomez@kiwicorp.co",
    organization: str | None = "kiwicorp",
) -> Case:
    case = Case(
        id="250310-k1w1ap",
        profile="sandbox",
        subject="Vulnerabilities missing in kiwiapp",
        requester=Person(email=requester, name="Ana Gómez"),
        organization=organization,
        subjects=Subjects(users=users or [], groups=groups or []),
    )
    return store.create(case)


def run(case: Case, client: PlatformClient, store: CaseStore, *checks: str) -> list[Finding]:
    return probe.run(case, client, store, list(checks) or None, now=PROBED_AT)


def by_subject(findings: list[Finding]) -> dict[str, Finding]:
    return {finding.subject: finding for finding in findings}


def api_requests(service: PlatformService, operation: str | None = None) -> int:
    requests = service.requests_to("/api")
    if operation is None:
        return len(requests)
    return sum(1 for item in requests if json.loads(item.body).get("operationName") == operation)


# ----- token -----


def test_token_check(make_client: Any, store: CaseStore) -> None:
    (finding,) = run(make_case(store), make_client(), store, "token")

    assert finding.outcome == "ok"
    assert finding.signals == {
        "platform.token_email": "support.sandbox@fluidattacks.com",
        "platform.token_role": "hacker",
    }
    assert "Sandra Soporte" in finding.summary
    assert finding.request["queries"][0]["operation"] == "HelpctlMe"


def test_login_required_fails_every_check(make_client: Any, service: PlatformService, store: CaseStore) -> None:
    case = make_case(store, users=["carlos.ruiz@kiwicorp.co"], groups=["kiwiapp"])
    findings = run(case, make_client(token="revoked-token-000"), store)

    assert {finding.outcome for finding in findings} == {"failed"}
    assert all("Login required" in (finding.reason or "") for finding in findings)
    assert all("helpctl auth login platform" in (finding.reason or "") for finding in findings)
    # One request for `me`, one introspection; the rest are not sent after the rejection.
    assert api_requests(service) == 2
    assert all("revoked-token-000" not in json.dumps(finding.to_dict()) for finding in findings)


# ----- membership -----


def test_membership_story(make_client: Any, store: CaseStore) -> None:
    users = ["carlos.ruiz@kiwicorp.co", "nico.paez@kiwicorp.co", "pedro.rios@kiwicorp.co"]
    findings = by_subject(run(make_case(store, users, ["kiwiapp"]), make_client(), store, "membership"))

    carlos = findings["carlos.ruiz@kiwicorp.co in kiwiapp"]
    assert carlos.outcome == "ok"
    assert carlos.summary == (
        "carlos.ruiz@kiwicorp.co was invited to kiwiapp 9 days ago and has not accepted the invitation"
    )
    assert carlos.signals["platform.invitation_state"] == "PENDING"
    assert carlos.signals["platform.invitation_pending_days"] == 9
    assert carlos.signals["platform.member_found"] is True
    assert carlos.signals["platform.never_logged_in"] is True
    assert carlos.component == "members"

    nico = findings["nico.paez@kiwicorp.co in kiwiapp"]
    assert nico.signals["platform.never_logged_in"] is True
    assert "platform.days_since_last_login" not in nico.signals
    assert "platform.invitation_pending_days" not in nico.signals
    assert nico.summary.endswith("but has never logged in")

    pedro = findings["pedro.rios@kiwicorp.co in kiwiapp"]
    assert pedro.outcome == "ok"
    assert pedro.signals == {"platform.member_found": False, "platform.access_denied_reason": "not_member"}


def test_membership_includes_requester(make_client: Any, store: CaseStore) -> None:
    findings = by_subject(run(make_case(store, [], ["kiwiapp"]), make_client(), store, "membership"))

    ana = findings["ana.gomez@kiwicorp.co in kiwiapp"]
    assert ana.signals["platform.role"] == "user_manager"
    assert ana.signals["platform.role_display"] == "Group Manager"
    assert ana.signals["platform.responsibility"] == "Product Owner"
    assert ana.signals["platform.days_since_last_login"] == 1
    assert ana.signals["platform.never_logged_in"] is False
    assert ana.summary == "ana.gomez@kiwicorp.co is a member of kiwiapp as Group Manager; last login 1 day ago"


def test_membership_raw_rows(make_client: Any, store: CaseStore) -> None:
    case = make_case(store, ["carlos.ruiz@kiwicorp.co"], ["kiwiapp"], requester="")
    (finding,) = run(case, make_client(), store, "membership")

    path = store.folder(case.id) / str(finding.raw_ref)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["email"] == "carlos.ruiz@kiwicorp.co"
    assert rows[0]["invitationState"] == "PENDING"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_membership_request_recorded(make_client: Any, store: CaseStore) -> None:
    case = make_case(store, ["carlos.ruiz@kiwicorp.co"], ["kiwiapp"], requester="")
    (finding,) = run(case, make_client(), store, "membership")

    (query,) = finding.request["queries"]
    assert query["operation"] == "HelpctlMembership"
    assert query["variables"] == {"group": "kiwiapp", "email": "carlos.ruiz@kiwicorp.co"}
    assert "stakeholder(entity: GROUP" in query["query"]
    assert "invitationDate" in query["query"]


def test_membership_without_invitation_date(make_client: Any, service: PlatformService, store: CaseStore) -> None:
    # The introspection response of a platform whose Stakeholder type has no invitationDate.
    fields = {
        "data": {
            "group": {"enumValues": [{"name": "USER"}]},
            "organization": {"enumValues": [{"name": "USER"}]},
            "stakeholder": {"fields": [{"name": "email"}, {"name": "role"}, {"name": "invitationState"}]},
        }
    }
    headers = {"Content-Type": "application/json"}
    service.knobs.script.append(ScriptedResponse(200, json.dumps(fields).encode(), headers))
    case = make_case(store, ["carlos.ruiz@kiwicorp.co"], ["kiwiapp"], requester="")

    (finding,) = run(case, make_client(), store, "membership")

    assert finding.signals["platform.invitation_state"] == "PENDING"
    assert "platform.invitation_pending_days" not in finding.signals
    assert "does not say when" in finding.summary
    assert "invitationDate" not in finding.request["queries"][0]["query"]


def test_membership_user_token_lacks_permission(make_client: Any, store: CaseStore) -> None:
    case = make_case(store, ["carlos.ruiz@kiwicorp.co"], ["kiwiapp"], requester="")
    (finding,) = run(case, make_client(token=USER_TOKEN), store, "membership")

    assert finding.outcome == "failed"
    assert finding.signals == {"platform.access_denied_reason": "token_lacks_permission"}
    assert finding.summary.startswith(
        "the token (luisa.fernandez@kiwicorp.co) lacks the permission to list members of kiwiapp"
    )


def test_membership_kiwilegacy(make_client: Any, store: CaseStore) -> None:
    case = make_case(store, ["carlos.ruiz@kiwicorp.co"], ["kiwilegacy"], requester="")
    (finding,) = run(case, make_client(), store, "membership")

    assert finding.outcome == "failed"
    assert finding.signals["platform.access_denied_reason"] == "token_lacks_permission"
    assert finding.summary.startswith(
        "the token (support.sandbox@fluidattacks.com) lacks the permission to list members of kiwilegacy"
    )


def test_membership_unknown_group(make_client: Any, store: CaseStore) -> None:
    case = make_case(store, ["carlos.ruiz@kiwicorp.co"], ["kiwix"], requester="")
    (finding,) = run(case, make_client(), store, "membership")

    assert finding.outcome == "failed"
    assert finding.signals["platform.access_denied_reason"] == "not_found"
    assert "no group named kiwix" in finding.summary


def test_membership_server_error_two_users(make_client: Any, service: PlatformService, store: CaseStore) -> None:
    service.fail_operations.add("HelpctlMembership")
    users = ["carlos.ruiz@kiwicorp.co", "luisa.fernandez@kiwicorp.co"]

    findings = run(make_case(store, users, ["kiwiapp"], requester=""), make_client(), store, "membership")

    assert [finding.outcome for finding in findings] == ["failed", "failed"]
    for finding in findings:
        assert finding.signals["platform.server_error"] is True
        assert finding.signals["platform.affected_users"] == 2
        assert "Exception - Unexpected error" in finding.summary


def test_membership_server_error_one_user(make_client: Any, service: PlatformService, store: CaseStore) -> None:
    service.fail_operations.add("HelpctlMembership")

    case = make_case(store, ["carlos.ruiz@kiwicorp.co"], ["kiwiapp"], requester="")
    (finding,) = run(case, make_client(), store, "membership")

    assert finding.signals["platform.affected_users"] == 1


def test_membership_skipped_without_groups(make_client: Any, store: CaseStore) -> None:
    (finding,) = run(make_case(store, ["carlos.ruiz@kiwicorp.co"], []), make_client(), store, "membership")

    assert finding.outcome == "skipped"
    assert finding.reason == "the case names no group"


# ----- user-groups -----


def test_user_groups(make_client: Any, store: CaseStore) -> None:
    users = ["luisa.fernandez@kiwicorp.co", "carlos.ruiz@kiwicorp.co", "someone@else.example"]
    findings = by_subject(run(make_case(store, users, [], requester=""), make_client(), store, "user-groups"))

    luisa = findings["luisa.fernandez@kiwicorp.co in kiwicorp"]
    assert luisa.outcome == "ok"
    assert luisa.signals == {"platform.groups_in_organization": 2}
    assert luisa.summary == "luisa.fernandez@kiwicorp.co can access 2 groups in kiwicorp: kiwiapp, kiwipay"
    assert findings["carlos.ruiz@kiwicorp.co in kiwicorp"].signals["platform.groups_in_organization"] == 1

    stranger = findings["someone@else.example in kiwicorp"]
    assert stranger.signals == {"platform.groups_in_organization": 0, "platform.access_denied_reason": "not_member"}


def test_user_groups_from_subjects(make_client: Any, store: CaseStore) -> None:
    case = make_case(store, ["luisa.fernandez@kiwicorp.co"], [], requester="", organization=None)
    case.subjects.organizations = ["KiwiCorp"]

    (finding,) = run(case, make_client(), store, "user-groups")

    assert finding.subject == "luisa.fernandez@kiwicorp.co in kiwicorp"
    assert finding.signals["platform.groups_in_organization"] == 2


def test_user_groups_user_token(make_client: Any, store: CaseStore) -> None:
    case = make_case(store, ["ana.gomez@kiwicorp.co"], [], requester="")
    (finding,) = run(case, make_client(token=USER_TOKEN), store, "user-groups")

    assert finding.outcome == "failed"
    assert finding.signals["platform.access_denied_reason"] == "token_lacks_permission"


def test_user_groups_unknown_organization(make_client: Any, service: PlatformService, store: CaseStore) -> None:
    users = ["ana.gomez@kiwicorp.co", "luisa.fernandez@kiwicorp.co"]
    case = make_case(store, users, [], requester="", organization="nocorp")
    findings = run(case, make_client(), store, "user-groups")

    assert [finding.signals.get("platform.access_denied_reason") for finding in findings] == ["not_found", "not_found"]
    assert api_requests(service, "HelpctlOrganization") == 1


def test_user_groups_skipped(make_client: Any, store: CaseStore) -> None:
    case = make_case(store, ["ana.gomez@kiwicorp.co"], [], organization=None)
    (finding,) = run(case, make_client(), store, "user-groups")

    assert finding.outcome == "skipped"


# ----- group -----


def test_group_kiwiapp(make_client: Any, store: CaseStore) -> None:
    (finding,) = run(make_case(store, [], ["kiwiapp"]), make_client(), store, "group")

    assert finding.outcome == "ok"
    assert finding.signals == {
        "platform.group_found": True,
        "platform.group_active": True,
        "platform.group_service": "WHITE",
        "platform.group_tier": "SQUAD",
        "platform.group_has_asm": True,
    }
    assert finding.component == "groups"


def test_group_without_asm(make_client: Any, store: CaseStore) -> None:
    (finding,) = run(make_case(store, [], ["kiwilegacy"]), make_client(), store, "group")

    assert finding.outcome == "partial"
    assert finding.signals["platform.access_denied_reason"] == "service_missing"
    assert finding.signals["platform.group_has_asm"] is False
    assert finding.signals["platform.group_found"] is True
    assert "lacks the ASM service" in finding.summary


def test_group_guessed_name_missing(make_client: Any, store: CaseStore) -> None:
    (finding,) = run(make_case(store, [], ["kiwix"]), make_client(), store, "group")

    assert finding.outcome == "ok"
    assert finding.signals == {"platform.group_found": False, "platform.access_denied_reason": "not_found"}
    assert finding.summary.startswith("no group named kiwix exists")


def test_group_no_role(make_client: Any, service: PlatformService, store: CaseStore) -> None:
    # The engineer loses the kiwipay role, but as organization manager still gets it in the org's groups.
    del service.story.groups["kiwipay"].members["support.sandbox@fluidattacks.com"]

    (finding,) = run(make_case(store, [], ["kiwipay"]), make_client(), store, "group")

    assert finding.outcome == "failed"
    assert finding.signals == {"platform.access_denied_reason": "no_role", "platform.group_found": True}
    assert finding.summary == (
        "kiwipay exists in kiwicorp but the token (support.sandbox@fluidattacks.com) has no role in it"
    )


# ----- vulnerabilities -----


def test_vulnerability_mismatch(make_client: Any, store: CaseStore) -> None:
    (finding,) = run(make_case(store, [], ["kiwiapp"]), make_client(), store, "vulnerabilities")

    assert finding.outcome == "ok"
    assert finding.summary.startswith("kiwiapp reports 7 open vulnerabilities but lists 4")
    assert finding.signals == {
        "platform.findings": 3,
        "platform.open_findings": 2,
        "platform.open_vulnerabilities": 7,
        "platform.open_vulnerabilities_listed": 4,
        "platform.open_vulnerabilities_mismatch": True,
    }
    assert finding.component == "vulnerabilities"


def test_vulnerabilities_paginated(make_client: Any, service: PlatformService, store: CaseStore) -> None:
    case = make_case(store, [], ["kiwipay"])
    (finding,) = run(case, make_client(page_size=50), store, "vulnerabilities")

    assert finding.outcome == "ok"
    assert finding.signals["platform.open_vulnerabilities_listed"] == 120
    assert finding.signals["platform.open_vulnerabilities_mismatch"] is False
    assert finding.request["pages"] == 3
    assert api_requests(service, "HelpctlOpenVulnerabilities") == 3

    rows = (store.folder(case.id) / str(finding.raw_ref)).read_text().splitlines()
    assert len(rows) == 2 + 120


def test_vulnerabilities_truncated(make_client: Any, store: CaseStore) -> None:
    client = make_client(page_size=50, max_items=100)
    (finding,) = run(make_case(store, [], ["kiwipay"]), client, store, "vulnerabilities")

    assert finding.outcome == "truncated"
    assert finding.signals["platform.open_vulnerabilities_listed"] == 100
    assert "platform.open_vulnerabilities_mismatch" not in finding.signals
    assert "stopped at 100" in finding.summary
    assert "max_items (100)" in (finding.reason or "")


def test_vulnerabilities_without_asm(make_client: Any, store: CaseStore) -> None:
    (finding,) = run(make_case(store, [], ["kiwilegacy"]), make_client(), store, "vulnerabilities")

    assert finding.outcome == "failed"
    assert finding.signals == {"platform.access_denied_reason": "service_missing"}


def test_vulnerabilities_listing_fails(make_client: Any, service: PlatformService, store: CaseStore) -> None:
    service.fail_operations.add("HelpctlOpenVulnerabilities")

    (finding,) = run(make_case(store, [], ["kiwiapp"]), make_client(), store, "vulnerabilities")

    assert finding.outcome == "partial"
    assert "platform.open_vulnerabilities_mismatch" not in finding.signals
    assert finding.signals["platform.open_vulnerabilities"] == 7


# ----- events -----


def test_events_kiwiapp(make_client: Any, store: CaseStore) -> None:
    (finding,) = run(make_case(store, [], ["kiwiapp"]), make_client(), store, "events")

    assert finding.outcome == "ok"
    assert finding.signals == {"platform.events": 2, "platform.events_unsolved": 1}
    assert finding.summary == "kiwiapp has 2 events, 1 unsolved (VPN_ISSUES since 2025-03-05)"
    assert finding.component == "events"


def test_events_empty(make_client: Any, store: CaseStore) -> None:
    (finding,) = run(make_case(store, [], ["kiwipay"]), make_client(), store, "events")

    assert finding.outcome == "empty"
    assert finding.signals == {"platform.events": 0, "platform.events_unsolved": 0}


def test_events_without_asm(make_client: Any, store: CaseStore) -> None:
    (finding,) = run(make_case(store, [], ["kiwilegacy"]), make_client(), store, "events")

    assert finding.outcome == "failed"
    assert finding.signals == {"platform.access_denied_reason": "service_missing"}


# ----- failures that are not the platform's response -----


def test_timeout_becomes_timed_out(make_client: Any, service: PlatformService, store: CaseStore) -> None:
    service.knobs.latency = 0.4
    client = make_client(timeouts=Timeouts(connect=1.0, read=0.15, total=2.0), retries=0)

    (finding,) = run(make_case(store, [], ["kiwiapp"]), client, store, "events")

    assert finding.outcome == "timed_out"
    assert finding.summary.startswith("could not check kiwiapp: platform timed out after 0.15 s")


def test_rate_limit_becomes_rate_limited(make_client: Any, service: PlatformService, store: CaseStore) -> None:
    headers = {"Content-Type": "application/json", "Retry-After": "600"}
    service.knobs.script.append(ScriptedResponse(429, b"{}", headers))

    (finding,) = run(make_case(store, [], ["kiwiapp"]), make_client(), store, "events")

    assert finding.outcome == "rate_limited"


def test_html_502_becomes_failed(make_client: Any, service: PlatformService, store: CaseStore) -> None:
    service.knobs.error_rate = 1.0

    (finding,) = run(make_case(store, [], ["kiwiapp"]), make_client(retries=1), store, "group")

    assert finding.outcome == "failed"
    assert "HTML 502 (proxy or load balancer)" in finding.summary
    assert "platform.server_error" not in finding.signals


def test_500_graphql_error_is_server_error(make_client: Any, service: PlatformService, store: CaseStore) -> None:
    body = b'{"errors":[{"message":"Exception - Unexpected error"}]}'
    service.knobs.script.append(ScriptedResponse(500, body, {"Content-Type": "application/json"}))

    (finding,) = run(make_case(store, [], ["kiwiapp"]), make_client(), store, "events")

    assert finding.outcome == "failed"
    assert finding.signals == {"platform.server_error": True}
    assert HTML_502 not in finding.summary.encode()


# ----- the whole run -----


def test_full_run(make_client: Any, store: CaseStore) -> None:
    case = make_case(store, ["carlos.ruiz@kiwicorp.co"], ["kiwiapp"])
    findings = run(case, make_client(), store)

    checks = [finding.check for finding in findings]
    assert checks == [
        "token", "membership", "membership", "user-groups", "user-groups", "group", "vulnerabilities", "events"
    ]
    assert all(finding.outcome == "ok" for finding in findings)
    assert len({finding.key for finding in findings}) == len(findings)


def test_case_without_subjects(make_client: Any, store: CaseStore) -> None:
    case = make_case(store, [], [], requester="", organization=None)
    findings = run(case, make_client(), store)

    assert [finding.outcome for finding in findings] == ["ok", "skipped", "skipped", "skipped", "skipped", "skipped"]


def test_unknown_check(make_client: Any, store: CaseStore) -> None:
    with pytest.raises(UsageError):
        run(make_case(store), make_client(), store, "membership", "telepathy")


@pytest.mark.parametrize(
    "document",
    [
        probe.ME_QUERY,
        probe.MEMBERSHIP_QUERY % {"extra": " invitationDate", "access": probe.ACCESS_FIELD},
        probe.ORGANIZATION_QUERY,
        probe.USER_GROUPS_QUERY,
        probe.GROUP_QUERY,
        probe.COUNTERS_QUERY,
        probe.OPEN_VULNERABILITIES_QUERY,
        probe.EVENTS_QUERY,
    ],
)
def test_queries_within_platform_limits(document: str) -> None:
    check_guards(document, {}, None)
