"""The platform probe: what the Fluid Attacks platform reports about a case's people and groups.

Checks (`CHECKS`), each giving one finding per subject:

- token: whose token the client uses and its user-level role.
- membership: each user of the case (and the requester) in each group of the case: role,
  invitation state, days pending, last login.
- user-groups: how many groups of the case's organization each user can access.
- group: whether each group exists and what plan it has.
- vulnerabilities: each group's open-vulnerability counter against the vulnerabilities it
  lists (the listing is followed to its end, within `max_items`).
- events: each group's events and how many are unsolved.

The platform returns a bare "Access denied" for three different causes: the token has no
role on the group, the object does not exist, or the group's plan lacks the service. Every
group query therefore also asks, under the alias `access`, for the token's own role,
permissions and `hasAsm`, and unknown groups are looked up among the groups of the token's
organizations (`me`). The finding's summary and `platform.access_denied_reason` say which
cause it is.

Failures never raise: the client turns every gql and httpx error into a helpctl error, and
each becomes a finding with outcome failed, timed_out or rate_limited. After the platform
rejects the token, the remaining subjects are not tried and get the same outcome.

Every query stays within the platform's limits: at most 3 root fields, depth 8, 3000
characters and operation names of letters and digits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from helpctl.cases.model import Case
from helpctl.cases.store import CaseStore
from helpctl.errors import AuthError, HelpctlError, RateLimited, ServiceError, ServiceTimeout, UsageError
from helpctl.findings import Finding, SignalValue, utc_now

if TYPE_CHECKING:
    from helpctl.clients.platform import Connection, PlatformClient, PlatformResult

logger = logging.getLogger(__name__)

SOURCE = "platform"
CHECKS = ("token", "membership", "user-groups", "group", "vulnerabilities", "events")
ACCESS_DENIAL_REASONS = ("no_role", "not_found", "service_missing", "token_lacks_permission", "not_member")

# The platform's messages (exact strings) that the probe interprets.
ACCESS_DENIED = "Access denied"
GROUP_NOT_FOUND = "Access denied or group not found"
ORGANIZATION_NOT_FOUND = "Access denied or organization not found"
STAKEHOLDER_NOT_FOUND = "Access denied or stakeholder not found"
SERVER_ERROR = re.compile(r"unexpected error|internal server error", re.IGNORECASE)

LIST_GROUP_MEMBERS = "api_resolvers_group_stakeholders_resolve"
# Group roles that may list members, used when the platform returns no permissions.
MEMBER_LISTING_ROLES = frozenset(
    {"user_manager", "group_manager", "vulnerability_manager", "customer_manager", "admin"}
)
NEVER = frozenset({"", "-"})

ACCESS_FIELD = "access: group(groupName: $group) { name userRole permissions hasAsm }"

ME_QUERY = """query HelpctlMe {
  me { userEmail userName role permissions organizations { id name groups { name } } }
}"""

MEMBERSHIP_QUERY = """query HelpctlMembership($group: String!, $email: String!) {
  stakeholder(entity: GROUP, groupName: $group, userEmail: $email) {
    email role responsibility invitationState firstLogin lastLogin%(extra)s
  }
  %(access)s
}"""

ORGANIZATION_QUERY = """query HelpctlOrganization($name: String!) {
  organizationId(organizationName: $name) { id name groups { name } }
}"""

USER_GROUPS_QUERY = """query HelpctlUserGroups($organization: String!, $email: String!) {
  stakeholder(entity: ORGANIZATION, organizationId: $organization, userEmail: $email) {
    email role invitationState groups { name }
  }
}"""

GROUP_QUERY = """query HelpctlGroup($group: String!) {
  group(groupName: $group) { name organization description service subscription tier hasAsm hasMachine hasSquad }
  %(access)s
}""" % {"access": ACCESS_FIELD}

COUNTERS_QUERY = """query HelpctlVulnerabilityCounters($group: String!) {
  group(groupName: $group) {
    name openFindings openVulnerabilities closedVulnerabilities
    findings { id title status openVulnerabilities closedVulnerabilities }
  }
  %(access)s
}""" % {"access": ACCESS_FIELD}

OPEN_VULNERABILITIES_QUERY = """query HelpctlOpenVulnerabilities($group: String!, $first: Int!, $after: String) {
  group(groupName: $group) {
    vulnerabilities(first: $first, after: $after, stateStatus: "VULNERABLE") {
      total
      pageInfo { endCursor hasNextPage }
      edges { node { id findingId where specific state treatmentStatus severityTemporalScore reportDate } }
    }
  }
}"""

EVENTS_QUERY = """query HelpctlEvents($group: String!) {
  events(groupName: $group) { id eventType eventStatus eventDate closingDate detail }
  %(access)s
}""" % {"access": ACCESS_FIELD}


@dataclasses.dataclass
class _Denial:
    """The cause of a denied group query, as far as the token's own access shows it."""

    reason: str | None  # one of ACCESS_DENIAL_REASONS, or None when it stays ambiguous
    summary: str
    group_exists: bool | None = None


@dataclasses.dataclass
class _ServerErrorHit:
    finding: Finding
    user: str
    message: str


class _Run:
    """The state of one probe run: the case, the client and what was learned so far."""

    def __init__(self, case: Case, client: PlatformClient, store: CaseStore, now: dt.datetime) -> None:
        self.case = case
        self.client = client
        self.store = store
        self.now = now
        self.auth_failure: AuthError | None = None
        self.server_errors: list[_ServerErrorHit] = []
        self._me: dict[str, Any] | HelpctlError | None = None
        self._organizations: dict[str, PlatformResult | HelpctlError] = {}
        self._stakeholder_fields: frozenset[str] | None = None

    def execute(self, document: str, variables: dict[str, Any], operation: str) -> PlatformResult:
        """Run a query unless the token was already rejected; remember a rejection."""
        if self.auth_failure is not None:
            raise self.auth_failure
        try:
            return self.client.execute(document, variables, operation)
        except AuthError as error:
            self.auth_failure = error
            raise

    def paginate(self, document: str, variables: dict[str, Any], path: str, operation: str) -> Connection:
        if self.auth_failure is not None:
            raise self.auth_failure
        try:
            return self.client.paginate(document, variables, path, operation)
        except AuthError as error:
            self.auth_failure = error
            raise

    def me(self) -> dict[str, Any]:
        """Return the token's `me`, read once per run; raises the error it failed with."""
        if self._me is None:
            try:
                result = self.execute(ME_QUERY, {}, "HelpctlMe")
                me = result.field("me")
                if not isinstance(me, dict):
                    raise ServiceError(f"platform returned no 'me': {_messages(result)}", service=SOURCE)
                self._me = me
            except HelpctlError as error:
                self._me = error
        if isinstance(self._me, HelpctlError):
            raise self._me
        return self._me

    def token_label(self) -> str:
        try:
            return f"the token ({self.me().get('userEmail')})"
        except HelpctlError:
            return "the token"

    def organization(self, name: str) -> PlatformResult:
        """Look an organization up by name once per run; raises the error it failed with."""
        if name not in self._organizations:
            try:
                self._organizations[name] = self.execute(ORGANIZATION_QUERY, {"name": name}, "HelpctlOrganization")
            except HelpctlError as error:
                self._organizations[name] = error
        found = self._organizations[name]
        if isinstance(found, HelpctlError):
            raise found
        return found

    def stakeholder_fields(self) -> frozenset[str]:
        if self._stakeholder_fields is None:
            self._stakeholder_fields = self.client.stakeholder_fields()
        return self._stakeholder_fields

    def save_rows(self, name: str, rows: list[Any]) -> str:
        path, _count = self.store.write_rows(self.case.id, f"platform-{name}", rows)
        return path


def run(
    case: Case,
    client: PlatformClient,
    store: CaseStore,
    checks: Sequence[str] | None = None,
    now: dt.datetime | None = None,
) -> list[Finding]:
    """Run the selected checks (all by default) and return their findings.

    Raises UsageError for an unknown check name; every platform failure becomes a finding.
    """
    selected = _select(checks)
    state = _Run(case, client, store, now or utc_now())
    findings: list[Finding] = []
    for name in CHECKS:
        if name in selected:
            findings += CHECK_FUNCTIONS[name](state)

    _count_affected_users(state)
    return findings


def _select(checks: Sequence[str] | None) -> set[str]:
    if not checks:
        return set(CHECKS)
    unknown = [name for name in checks if name not in CHECKS]
    if unknown:
        raise UsageError(f"unknown platform check {unknown[0]!r}; valid checks: {', '.join(CHECKS)}")
    return set(checks)


# ---------------------------------------------------------------------------------------------
# Subjects


def _users(case: Case) -> list[str]:
    """Return the case's users and then the requester, lowercased, without repeats."""
    found: list[str] = []
    for email in [*case.subjects.users, case.requester.email]:
        email = (email or "").strip().lower()
        if email and email not in found:
            found.append(email)
    return found


def _groups(case: Case) -> list[str]:
    return _unique(case.subjects.groups)


def _organizations(case: Case) -> list[str]:
    return _unique([case.organization] if case.organization else case.subjects.organizations)


def _unique(values: Sequence[str | None]) -> list[str]:
    found: list[str] = []
    for value in values:
        value = (value or "").strip().lower()
        if value and value not in found:
            found.append(value)
    return found


# ---------------------------------------------------------------------------------------------
# Checks


def _check_token(state: _Run) -> list[Finding]:
    request = _request(("HelpctlMe", ME_QUERY, {}))
    try:
        me = state.me()
    except HelpctlError as error:
        return [_failure("token", "token", None, error, request)]

    email, role = str(me.get("userEmail") or ""), str(me.get("role") or "")
    organizations = ", ".join(str(item.get("name")) for item in me.get("organizations") or [] if item)
    summary = f"the token belongs to {me.get('userName') or email} ({email}), user-level role {role}"
    if organizations:
        summary += f", with access to {organizations}"
    signals: dict[str, SignalValue] = {"platform.token_email": email, "platform.token_role": role}
    return [_finding("token", "token", "ok", summary, request, signals, raw_ref=state.save_rows("token", [me]))]


def _check_membership(state: _Run) -> list[Finding]:
    users, groups = _users(state.case), _groups(state.case)
    if not users or not groups:
        missing = "no user or requester email" if not users else "no group"
        return [_skipped("membership", state.case, f"the case names {missing}")]

    extra = " invitationDate" if "invitationDate" in state.stakeholder_fields() else ""
    document = MEMBERSHIP_QUERY % {"extra": extra, "access": ACCESS_FIELD}
    findings = []
    for group in groups:
        for email in users:
            findings.append(_membership(state, document, group, email))
    return findings


def _membership(state: _Run, document: str, group: str, email: str) -> Finding:
    subject = f"{email} in {group}"
    variables = {"group": group, "email": email}
    request = _request(("HelpctlMembership", document, variables))
    try:
        result = state.execute(document, variables, "HelpctlMembership")
    except HelpctlError as error:
        return _user_failure(state, "membership", subject, email, error, request)

    record = result.field("stakeholder")
    if isinstance(record, dict):
        raw_ref = state.save_rows(f"membership-{group}-{email}", [record])
        return _member_finding(state, subject, group, email, record, request, raw_ref)

    denial = _denial(state, group, result, needs_member_listing=True)
    if denial is not None:
        return _denied("membership", subject, "members", denial, request)
    if STAKEHOLDER_NOT_FOUND in _messages_for(result, "stakeholder"):
        summary = f"{email} is not a member of {group} and has no pending invitation to it"
        signals = {"platform.member_found": False, "platform.access_denied_reason": "not_member"}
        return _finding("membership", subject, "ok", summary, request, signals, component="members")
    return _result_failure(state, "membership", subject, "members", result, request, user=email)


def _member_finding(
    state: _Run, subject: str, group: str, email: str, record: dict[str, Any], request: dict[str, Any], raw_ref: str
) -> Finding:
    role = str(record.get("role") or "")
    display = state.client.role_display(role) if role else "no role"
    invitation = str(record.get("invitationState") or "")
    signals: dict[str, SignalValue] = {
        "platform.member_found": True,
        "platform.role": role,
        "platform.role_display": display,
        "platform.invitation_state": invitation,
        "platform.responsibility": record.get("responsibility"),
    }
    last_login = _parse_date(record.get("lastLogin"))
    never = str(record.get("lastLogin") or "").strip() in NEVER
    signals["platform.never_logged_in"] = never
    if last_login is not None:
        signals["platform.days_since_last_login"] = _days_between(last_login, state.now)

    if invitation == "PENDING":
        invited = _parse_date(record.get("invitationDate"))
        if invited is None:
            summary = f"{email} was invited to {group} as {display} and has not accepted the invitation"
            summary += " (the platform does not say when it was sent)"
        else:
            days = _days_between(invited, state.now)
            signals["platform.invitation_pending_days"] = days
            summary = f"{email} was invited to {group} {_plural(days, 'day')} ago and has not accepted the invitation"
    elif invitation == "UNREGISTERED":
        summary = f"{email} has access to {group} as {display} but has not registered on the platform"
    elif never:
        summary = f"{email} is a member of {group} as {display} but has never logged in"
    elif last_login is not None:
        days = _days_between(last_login, state.now)
        summary = f"{email} is a member of {group} as {display}; last login {_plural(days, 'day')} ago"
    else:
        summary = f"{email} is a member of {group} as {display}; last login {record.get('lastLogin')!r}"
    return _finding("membership", subject, "ok", summary, request, signals, raw_ref=raw_ref, component="members")


def _check_user_groups(state: _Run) -> list[Finding]:
    users, organizations = _users(state.case), _organizations(state.case)
    if not users or not organizations:
        missing = "no user or requester email" if not users else "no organization"
        return [_skipped("user-groups", state.case, f"the case names {missing}")]

    findings = []
    for organization in organizations:
        for email in users:
            findings.append(_user_groups(state, organization, email))
    return findings


def _user_groups(state: _Run, organization: str, email: str) -> Finding:
    subject = f"{email} in {organization}"
    lookup = _request(("HelpctlOrganization", ORGANIZATION_QUERY, {"name": organization}))
    try:
        found = state.organization(organization)
    except HelpctlError as error:
        return _user_failure(state, "user-groups", subject, email, error, lookup)

    record = found.field("organizationId")
    if not isinstance(record, dict):
        return _organization_missing(state, subject, organization, found, lookup)

    variables = {"organization": str(record.get("id")), "email": email}
    request = _request(
        ("HelpctlOrganization", ORGANIZATION_QUERY, {"name": organization}),
        ("HelpctlUserGroups", USER_GROUPS_QUERY, variables),
    )
    try:
        result = state.execute(USER_GROUPS_QUERY, variables, "HelpctlUserGroups")
    except HelpctlError as error:
        return _user_failure(state, "user-groups", subject, email, error, request)
    return _user_groups_finding(state, subject, organization, email, record, result, request)


def _user_groups_finding(
    state: _Run,
    subject: str,
    organization: str,
    email: str,
    record: dict[str, Any],
    result: PlatformResult,
    request: dict[str, Any],
) -> Finding:
    stakeholder = result.field("stakeholder")
    messages = _messages_for(result, "stakeholder")
    if not isinstance(stakeholder, dict):
        if STAKEHOLDER_NOT_FOUND in messages:
            summary = f"{email} is not a member of organization {organization}"
            signals = {"platform.groups_in_organization": 0, "platform.access_denied_reason": "not_member"}
            return _finding("user-groups", subject, "ok", summary, request, signals, component="members")
        if ACCESS_DENIED in messages:
            summary = f"{state.token_label()} lacks the permission to list members of organization {organization}"
            denial = _Denial("token_lacks_permission", summary)
            return _denied("user-groups", subject, "members", denial, request)
        return _result_failure(state, "user-groups", subject, "members", result, request, user=email)

    in_organization = {str(group.get("name")) for group in record.get("groups") or [] if group}
    names = sorted(str(group.get("name")) for group in stakeholder.get("groups") or [] if group)
    names = [name for name in names if name in in_organization]
    summary = f"{email} can access {_plural(len(names), 'group')} in {organization}"
    summary += f": {', '.join(names)}" if names else ""
    signals = {"platform.groups_in_organization": len(names)}
    raw_ref = state.save_rows(f"user-groups-{organization}-{email}", [stakeholder])
    return _finding("user-groups", subject, "ok", summary, request, signals, raw_ref=raw_ref, component="members")


def _organization_missing(
    state: _Run, subject: str, organization: str, result: PlatformResult, request: dict[str, Any]
) -> Finding:
    if ORGANIZATION_NOT_FOUND in _messages(result):
        summary = f"organization {organization} was not found among the organizations {state.token_label()} can access"
        denial = _Denial("not_found", summary)
        return _denied("user-groups", subject, "members", denial, request)
    return _result_failure(state, "user-groups", subject, "members", result, request)


def _check_group(state: _Run) -> list[Finding]:
    groups = _groups(state.case)
    if not groups:
        return [_skipped("group", state.case, "the case names no group")]
    return [_group(state, group) for group in groups]


def _group(state: _Run, group: str) -> Finding:
    variables = {"group": group}
    request = _request(("HelpctlGroup", GROUP_QUERY, variables))
    try:
        result = state.execute(GROUP_QUERY, variables, "HelpctlGroup")
    except HelpctlError as error:
        return _failure("group", group, "groups", error, request)

    record = result.field("group")
    if isinstance(record, dict) and not result.errors_for("group"):
        return _group_finding(state, group, record, result, request)

    denial = _denial(state, group, result)
    if denial is None:
        return _result_failure(state, "group", group, "groups", result, request)
    if denial.reason == "not_found":
        signals = {"platform.group_found": False, "platform.access_denied_reason": "not_found"}
        return _finding("group", group, "ok", denial.summary, request, signals, component="groups")
    if denial.reason == "service_missing":
        signals = {
            "platform.group_found": True,
            "platform.group_active": False,
            "platform.group_has_asm": False,
            "platform.access_denied_reason": "service_missing",
        }
        reason = "the platform denies the service, subscription and tier of a group without ASM"
        return _finding("group", group, "partial", denial.summary, request, signals, reason=reason, component="groups")

    finding = _denied("group", group, "groups", denial, request)
    if denial.group_exists is not None:
        finding.signals["platform.group_found"] = denial.group_exists
    return finding


def _group_finding(
    state: _Run, group: str, record: dict[str, Any], result: PlatformResult, request: dict[str, Any]
) -> Finding:
    has_asm = bool(record.get("hasAsm"))
    signals: dict[str, SignalValue] = {
        "platform.group_found": True,
        # A group is active while its plan includes the ASM service.
        "platform.group_active": has_asm,
        "platform.group_service": record.get("service"),
        "platform.group_tier": record.get("tier"),
        "platform.group_has_asm": has_asm,
    }
    summary = (
        f"{group} belongs to {record.get('organization')}: {record.get('service')} service, "
        f"{record.get('subscription')} subscription, tier {record.get('tier')}, "
        f"ASM {'active' if has_asm else 'missing'}"
    )
    raw_ref = state.save_rows(f"group-{group}", [record, result.field("access")])
    return _finding("group", group, "ok", summary, request, signals, raw_ref=raw_ref, component="groups")


def _check_vulnerabilities(state: _Run) -> list[Finding]:
    groups = _groups(state.case)
    if not groups:
        return [_skipped("vulnerabilities", state.case, "the case names no group")]
    return [_vulnerabilities(state, group) for group in groups]


def _vulnerabilities(state: _Run, group: str) -> Finding:
    variables = {"group": group}
    listing_variables = {"group": group, "first": state.client.settings.page_size, "after": None}
    request = _request(
        ("HelpctlVulnerabilityCounters", COUNTERS_QUERY, variables),
        ("HelpctlOpenVulnerabilities", OPEN_VULNERABILITIES_QUERY, listing_variables),
    )
    try:
        counters = state.execute(COUNTERS_QUERY, variables, "HelpctlVulnerabilityCounters")
    except HelpctlError as error:
        return _failure("vulnerabilities", group, "vulnerabilities", error, request)

    record = counters.field("group")
    # Nullable counters come back as null beside an error, so errors on `group` decide.
    if not isinstance(record, dict) or counters.errors_for("group"):
        denial = _denial(state, group, counters)
        if denial is None:
            return _result_failure(state, "vulnerabilities", group, "vulnerabilities", counters, request)
        return _denied("vulnerabilities", group, "vulnerabilities", denial, request)

    try:
        listing = state.paginate(
            OPEN_VULNERABILITIES_QUERY, variables, "group.vulnerabilities", "HelpctlOpenVulnerabilities"
        )
    except HelpctlError as error:
        return _failure("vulnerabilities", group, "vulnerabilities", error, request, _counter_signals(record))
    return _vulnerability_finding(state, group, record, listing, request)


def _counter_signals(record: dict[str, Any]) -> dict[str, SignalValue]:
    return {
        "platform.findings": len([item for item in record.get("findings") or [] if item]),
        "platform.open_findings": record.get("openFindings"),
        "platform.open_vulnerabilities": record.get("openVulnerabilities"),
    }


def _vulnerability_finding(
    state: _Run, group: str, record: dict[str, Any], listing: Connection, request: dict[str, Any]
) -> Finding:
    signals = _counter_signals(record)
    counter = record.get("openVulnerabilities")
    listed = len(listing.items)
    signals["platform.open_vulnerabilities_listed"] = listed
    request["pages"] = listing.pages

    rows = [{"type": "finding", **item} for item in record.get("findings") or [] if item]
    rows += [{"type": "vulnerability", **item} for item in listing.items]
    raw_ref = state.save_rows(f"vulnerabilities-{group}", rows)

    outcome, reason = "ok", None
    if listing.truncated:
        outcome = "truncated"
        reason = f"the listing stopped at max_items ({state.client.settings.max_items})"
        summary = f"{group} reports {counter} open vulnerabilities; the listing stopped at {listed}"
    elif listing.interrupted is not None or listing.errors:
        outcome = "partial"
        reason = listing.interrupted.message if listing.interrupted else "; ".join(e.message for e in listing.errors)
        summary = f"{group} reports {counter} open vulnerabilities; {listed} were listed before the listing failed"
    else:
        signals["platform.open_vulnerabilities_mismatch"] = counter != listed
        if counter != listed:
            summary = f"{group} reports {counter} open vulnerabilities but lists {listed}"
        elif not listed and not signals["platform.findings"]:
            outcome = "empty"
            summary = f"{group} has no findings and no open vulnerabilities"
        else:
            summary = f"{group} reports {counter} open vulnerabilities and lists all of them"
    summary += f" ({_plural(int(signals['platform.findings'] or 0), 'finding')}, {record.get('openFindings')} open)"
    return _finding(
        "vulnerabilities", group, outcome, summary, request, signals, reason=reason, raw_ref=raw_ref,
        component="vulnerabilities",
    )


def _check_events(state: _Run) -> list[Finding]:
    groups = _groups(state.case)
    if not groups:
        return [_skipped("events", state.case, "the case names no group")]
    return [_events(state, group) for group in groups]


def _events(state: _Run, group: str) -> Finding:
    variables = {"group": group}
    request = _request(("HelpctlEvents", EVENTS_QUERY, variables))
    try:
        result = state.execute(EVENTS_QUERY, variables, "HelpctlEvents")
    except HelpctlError as error:
        return _failure("events", group, "events", error, request)

    events = result.field("events")
    if not isinstance(events, list) or result.errors_for("events"):
        denial = _denial(state, group, result)
        if denial is None:
            return _result_failure(state, "events", group, "events", result, request)
        return _denied("events", group, "events", denial, request)

    events = [event for event in events if isinstance(event, dict)]
    unsolved = [event for event in events if str(event.get("eventStatus") or "").upper() != "SOLVED"]
    signals = {"platform.events": len(events), "platform.events_unsolved": len(unsolved)}
    if not events:
        return _finding("events", group, "empty", f"{group} has no events", request, signals, component="events")

    summary = f"{group} has {_plural(len(events), 'event')}, {len(unsolved)} unsolved"
    if unsolved:
        details = [f"{event.get('eventType')} since {str(event.get('eventDate'))[:10]}" for event in unsolved[:3]]
        summary += f" ({', '.join(details)})"
    raw_ref = state.save_rows(f"events-{group}", events)
    return _finding("events", group, "ok", summary, request, signals, raw_ref=raw_ref, component="events")


CHECK_FUNCTIONS = {
    "token": _check_token,
    "membership": _check_membership,
    "user-groups": _check_user_groups,
    "group": _check_group,
    "vulnerabilities": _check_vulnerabilities,
    "events": _check_events,
}


# ---------------------------------------------------------------------------------------------
# Telling the causes of "Access denied" apart


def _denial(state: _Run, group: str, result: PlatformResult, needs_member_listing: bool = False) -> _Denial | None:
    """Explain a denied group query from the `access` alias; None when it was no denial."""
    access = result.field("access")
    if not isinstance(access, dict):
        if GROUP_NOT_FOUND in _messages_for(result, "access"):
            return _unknown_group(state, group)
        return None

    if needs_member_listing and not _can_list_members(access):
        role = access.get("userRole") or "no role"
        summary = f"{state.token_label()} lacks the permission to list members of {group} (its role there: {role})"
        return _Denial("token_lacks_permission", summary, group_exists=True)
    if access.get("hasAsm") is False:
        summary = f"{group} exists but its plan lacks the ASM service, so the platform denies its data"
        return _Denial("service_missing", summary, group_exists=True)
    return None


def _can_list_members(access: dict[str, Any]) -> bool:
    permissions = access.get("permissions")
    if isinstance(permissions, list):
        return LIST_GROUP_MEMBERS in permissions
    return str(access.get("userRole") or "").lower() in MEMBER_LISTING_ROLES


def _unknown_group(state: _Run, group: str) -> _Denial:
    """Tell "no role on an existing group" from "no such group" with the token's organizations."""
    token = state.token_label()
    try:
        organizations = state.me().get("organizations") or []
    except HelpctlError:
        return _Denial(None, f"the platform denies {group}: it does not exist or {token} has no role in it")

    for organization in organizations:
        names = {str(item.get("name")) for item in (organization or {}).get("groups") or [] if item}
        if group in names:
            summary = f"{group} exists in {organization.get('name')} but {token} has no role in it"
            return _Denial("no_role", summary, group_exists=True)

    visible = ", ".join(str((item or {}).get("name")) for item in organizations) or "none"
    summary = f"no group named {group} exists in the organizations {token} can see ({visible})"
    return _Denial("not_found", summary, group_exists=False)


# ---------------------------------------------------------------------------------------------
# Findings


def _finding(
    check: str,
    subject: str,
    outcome: str,
    summary: str,
    request: dict[str, Any],
    signals: dict[str, SignalValue],
    *,
    reason: str | None = None,
    raw_ref: str | None = None,
    component: str | None = None,
) -> Finding:
    clean = {name: value for name, value in signals.items() if value is not None}
    return Finding(
        source=SOURCE,
        check=check,
        subject=subject,
        outcome=outcome,
        summary=summary,
        request=request,
        signals=clean,
        reason=reason,
        raw_ref=raw_ref,
        component=component,
    )


def _skipped(check: str, case: Case, reason: str) -> Finding:
    return _finding(check, case.id, "skipped", f"{check} not checked: {reason}", {}, {}, reason=reason)


def _denied(check: str, subject: str, component: str, denial: _Denial, request: dict[str, Any]) -> Finding:
    signals: dict[str, SignalValue] = {"platform.access_denied_reason": denial.reason}
    return _finding(
        check, subject, "failed", denial.summary, request, signals, reason=denial.summary, component=component
    )


def _failure(
    check: str,
    subject: str,
    component: str | None,
    error: HelpctlError,
    request: dict[str, Any],
    signals: dict[str, SignalValue] | None = None,
) -> Finding:
    outcome = "failed"
    if isinstance(error, ServiceTimeout):
        outcome = "timed_out"
    elif isinstance(error, RateLimited):
        outcome = "rate_limited"

    signals = dict(signals or {})
    messages = getattr(error, "messages", None)
    status = getattr(error, "status", None) or 0
    if messages is not None and status >= 500:
        # GraphQL errors in a 5xx response mean that the platform itself failed on a valid query.
        signals["platform.server_error"] = True
    reason = error.message + (f" ({error.hint})" if error.hint else "")
    summary = f"could not check {subject}: {error.message}"
    return _finding(check, subject, outcome, summary, request, signals, reason=reason, component=component)


def _user_failure(
    state: _Run, check: str, subject: str, user: str, error: HelpctlError, request: dict[str, Any]
) -> Finding:
    finding = _failure(check, subject, "members", error, request)
    if finding.signals.get("platform.server_error"):
        state.server_errors.append(_ServerErrorHit(finding, user, error.message))
    return finding


def _result_failure(
    state: _Run,
    check: str,
    subject: str,
    component: str,
    result: PlatformResult,
    request: dict[str, Any],
    user: str | None = None,
) -> Finding:
    """Build the finding of a query whose errors the probe cannot explain (internal error or other)."""
    messages = _messages(result)
    internal = next((message for message in result.errors if SERVER_ERROR.search(message.message)), None)
    if internal is None:
        summary = f"could not check {subject}: the platform answered {messages}"
        return _finding(check, subject, "failed", summary, request, {}, reason=messages, component=component)

    summary = f"the platform answered an internal error for {subject}: {internal.message}"
    signals = {"platform.server_error": True}
    finding = _finding(check, subject, "failed", summary, request, signals, reason=messages, component=component)
    if user is not None:
        state.server_errors.append(_ServerErrorHit(finding, user, internal.message))
    return finding


def _count_affected_users(state: _Run) -> None:
    """Set `platform.affected_users` on each server-error finding: the users who got the same error."""
    users_by_message: dict[str, set[str]] = {}
    for hit in state.server_errors:
        users_by_message.setdefault(hit.message, set()).add(hit.user)
    for hit in state.server_errors:
        hit.finding.signals["platform.affected_users"] = len(users_by_message[hit.message])


def _request(*queries: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    """Return the exact queries a finding is based on, in the order they were sent."""
    return {
        "queries": [
            {"operation": operation, "query": document, "variables": dict(variables)}
            for operation, document, variables in queries
        ]
    }


def _messages(result: PlatformResult) -> str:
    return "; ".join(error.message for error in result.errors) or "no data and no error"


def _messages_for(result: PlatformResult, key: str) -> set[str]:
    return {error.message for error in result.errors_for(key)}


# ---------------------------------------------------------------------------------------------
# Dates


def _parse_date(value: Any) -> dt.datetime | None:
    """Parse the platform's date strings ("2024-05-01 13:40:37" or ISO 8601), None for "-" or junk.

    NOTE: a date without an offset is taken as UTC, although the platform may format dates
    in its own time zone. Day counts can then be off by one near midnight.
    """
    text = str(value or "").strip()
    if text in NEVER:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        logger.debug("unparseable platform date %r", text)
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _days_between(earlier: dt.datetime, now: dt.datetime) -> int:
    return max(0, int((now - earlier).total_seconds() // 86400))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
