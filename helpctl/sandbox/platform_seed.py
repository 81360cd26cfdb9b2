"""The KiwiCorp story as the platform stand-in serves it.

Everything is deterministic: ids come from fixed UUIDs or `uuid5`, and every date is an
offset from the `now` passed to `build_story` (UTC). The story's names (people, groups,
tokens) are shared with the other stand-ins, so keep them in step.

Roles are the platform's lowercase internal values (`user_manager`), as `Stakeholder.role`
returns them. Counters are stored, not computed, because kiwiapp's open-vulnerability
counter disagrees with its listing on purpose.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

ENGINEER_EMAIL = "support.sandbox@fluidattacks.com"
ENGINEER_TOKEN = "sandbox-platform-token"
USER_TOKEN = "sandbox-user-token"
ORGANIZATION_ID = "ORG#6c1f2f4e-2b7a-4c8e-9a51-3d0e5b7f9a10"
ORGANIZATION_NAME = "kiwicorp"

# Fixed namespace so that every run of the seed gives the same finding and vulnerability ids.
_ID_NAMESPACE = uuid.UUID("0b8f4c57-8a1e-4f5a-9c3d-2e6b7a1d9f40")

DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclasses.dataclass
class User:
    email: str
    name: str
    role: str  # user-level role, as `me.role` returns it


@dataclasses.dataclass
class Membership:
    """One person's access to one group or organization."""

    email: str
    role: str
    invitation_state: str = "REGISTERED"
    responsibility: str | None = None
    first_login: dt.datetime | None = None
    last_login: dt.datetime | None = None
    # Logins the platform shows as "-" instead of null (older records).
    dash_when_missing: bool = False
    invited_at: dt.datetime | None = None


@dataclasses.dataclass
class Finding:
    id: str
    title: str
    status: str
    severity_score: float
    open_vulnerabilities: int  # the finding's own counter, as stored
    closed_vulnerabilities: int
    report_date: dt.datetime


@dataclasses.dataclass
class Vulnerability:
    id: str
    finding_id: str
    state: str
    where: str
    specific: str
    vulnerability_type: str
    severity_temporal_score: float
    treatment_status: str
    report_date: dt.datetime


@dataclasses.dataclass
class Event:
    id: str
    event_type: str
    event_status: str
    event_date: dt.datetime
    detail: str
    hacker: str
    closing_date: dt.datetime | None = None


@dataclasses.dataclass
class Group:
    name: str
    organization: str
    description: str
    service: str
    subscription: str
    tier: str
    has_asm: bool
    has_machine: bool
    has_squad: bool
    open_findings: int
    open_vulnerabilities: int  # the group's counter, as stored (may disagree with the listing)
    closed_vulnerabilities: int
    members: dict[str, Membership] = dataclasses.field(default_factory=dict)
    findings: list[Finding] = dataclasses.field(default_factory=list)
    vulnerabilities: list[Vulnerability] = dataclasses.field(default_factory=list)
    events: list[Event] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Organization:
    id: str
    name: str
    country: str
    inactivity_period: int
    groups: list[str] = dataclasses.field(default_factory=list)
    members: dict[str, Membership] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Story:
    now: dt.datetime
    users: dict[str, User]
    tokens: dict[str, str]  # token -> owner's email
    organizations: dict[str, Organization]
    groups: dict[str, Group]

    def organization_by_id(self, organization_id: str) -> Organization | None:
        for organization in self.organizations.values():
            if organization.id == organization_id:
                return organization
        return None

    def groups_of(self, email: str) -> list[Group]:
        return [group for group in self.groups.values() if email in group.members]


def format_date(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.timezone.utc).strftime(DATE_FORMAT) if moment else None


def stable_id(*parts: object) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "/".join(str(part) for part in parts)))


def build_story(now: dt.datetime | None = None) -> Story:
    """Build the seeded story with dates relative to `now` (default: the current UTC time)."""
    now = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).replace(microsecond=0)

    groups = {
        "kiwiapp": _kiwiapp(now),
        "kiwipay": _kiwipay(now),
        "kiwilegacy": _kiwilegacy(now),
    }
    organization = Organization(
        id=ORGANIZATION_ID,
        name=ORGANIZATION_NAME,
        country="Colombia",
        inactivity_period=90,
        groups=list(groups),
        members=_organization_members(now),
    )
    return Story(
        now=now,
        users=_users(),
        tokens={ENGINEER_TOKEN: ENGINEER_EMAIL, USER_TOKEN: "luisa.fernandez@kiwicorp.co"},
        organizations={organization.name: organization},
        groups=groups,
    )


def _users() -> dict[str, User]:
    people = [
        User(ENGINEER_EMAIL, "Sandra Soporte", "hacker"),
        User("ana.gomez@kiwicorp.co", "Ana Gómez", "user"),
        User("carlos.ruiz@kiwicorp.co", "Carlos Ruiz", "user"),
        User("luisa.fernandez@kiwicorp.co", "Luisa Fernández", "user"),
        User("marta.vidal@kiwicorp.co", "Marta Vidal", "user"),
        User("nico.paez@kiwicorp.co", "Nico Páez", "user"),
        User("pedro.rios@kiwicorp.co", "Pedro Ríos", "user"),
        User("sofia.lopez@kiwicorp.co", "Sofía López", "user"),
        User("jorge.mesa@kiwicorp.co", "Jorge Mesa", "user"),
    ]
    return {person.email: person for person in people}


def _days(now: dt.datetime, days: float) -> dt.datetime:
    return now - dt.timedelta(days=days)


def _member(
    now: dt.datetime,
    email: str,
    role: str,
    responsibility: str | None = None,
    *,
    first_login_days: float | None = None,
    last_login_days: float | None = None,
    invited_days: float | None = None,
) -> Membership:
    """Build a membership from day offsets; an invitation date makes it PENDING."""
    return Membership(
        email,
        role,
        "PENDING" if invited_days is not None else "REGISTERED",
        responsibility,
        first_login=None if first_login_days is None else _days(now, first_login_days),
        last_login=None if last_login_days is None else _days(now, last_login_days),
        invited_at=None if invited_days is None else _days(now, invited_days),
    )


def _engineer(now: dt.datetime, role: str) -> Membership:
    return _member(now, ENGINEER_EMAIL, role, "Customer Manager", first_login_days=400, last_login_days=0.05)


def _kiwiapp_members(now: dt.datetime) -> list[Membership]:
    nico = _member(now, "nico.paez@kiwicorp.co", "user", "QA Analyst")
    nico.dash_when_missing = True
    return [
        _member(now, "ana.gomez@kiwicorp.co", "user_manager", "Product Owner", first_login_days=200, last_login_days=1),
        _member(now, "carlos.ruiz@kiwicorp.co", "user", "Developer", invited_days=9),
        _member(now, "luisa.fernandez@kiwicorp.co", "user", "Developer", first_login_days=150, last_login_days=2),
        _member(
            now, "marta.vidal@kiwicorp.co", "vulnerability_manager", "Tech Lead",
            first_login_days=120, last_login_days=6,
        ),
        nico,
        _member(now, "jorge.mesa@kiwicorp.co", "user_manager", "IT Manager", first_login_days=300, last_login_days=4),
        _engineer(now, "customer_manager"),
    ]


def _kiwiapp(now: dt.datetime) -> Group:
    group = Group(
        name="kiwiapp",
        organization=ORGANIZATION_NAME,
        description="KiwiCorp's customer mobile app and its API",
        service="WHITE",
        subscription="continuous",
        tier="SQUAD",
        has_asm=True,
        has_machine=True,
        has_squad=True,
        open_findings=2,
        # The stale counter behind the demo case: only 4 vulnerable locations exist.
        open_vulnerabilities=7,
        closed_vulnerabilities=3,
        members={member.email: member for member in _kiwiapp_members(now)},
    )
    # The findings' own counters are stale too: 5 + 2 open, while 3 + 1 locations are vulnerable.
    outdated = _finding("kiwiapp", "011. Use of software with known vulnerabilities", "VULNERABLE", 6.5, 5, 1, now, 45)
    host_title = "060. Insecure service configuration - Host verification"
    host = _finding("kiwiapp", host_title, "VULNERABLE", 4.3, 2, 0, now, 30)
    xxe = _finding("kiwiapp", "083. XML injection (XXE)", "SAFE", 7.1, 0, 2, now, 80)
    group.findings = [outdated, host, xxe]

    group.vulnerabilities = [
        _location("kiwiapp", outdated, 1, "VULNERABLE", "kiwiapp/api/requirements.txt", "12", "lines"),
        _location("kiwiapp", outdated, 2, "VULNERABLE", "kiwiapp/api/requirements.txt", "27", "lines"),
        _location("kiwiapp", outdated, 3, "VULNERABLE", "kiwiapp/mobile/package.json", "41", "lines"),
        _location("kiwiapp", outdated, 4, "SAFE", "kiwiapp/mobile/package.json", "58", "lines"),
        _location("kiwiapp", host, 1, "VULNERABLE", "https://api.kiwicorp.example/health", "ssh-host-key", "inputs"),
        _location("kiwiapp", xxe, 1, "SAFE", "kiwiapp/api/src/import/xml.py", "88", "lines"),
        _location("kiwiapp", xxe, 2, "SAFE", "kiwiapp/api/src/import/xml.py", "131", "lines"),
    ]
    vpn_detail = "The VPN credentials KiwiCorp provided expired, so testing of the internal API stopped"
    staging_detail = "The staging environment answered 503 for two days"
    group.events = [
        Event("463457733", "VPN_ISSUES", "CREATED", _days(now, 5), vpn_detail, ENGINEER_EMAIL),
        Event(
            "413372600", "ENVIRONMENT_ISSUES", "SOLVED", _days(now, 40), staging_detail, ENGINEER_EMAIL, _days(now, 37)
        ),
    ]
    return group


def _kiwipay(now: dt.datetime) -> Group:
    members = [
        _member(now, "ana.gomez@kiwicorp.co", "user_manager", "Product Owner", first_login_days=200, last_login_days=1),
        _member(now, "luisa.fernandez@kiwicorp.co", "user", "Developer", first_login_days=150, last_login_days=2),
        _member(now, "pedro.rios@kiwicorp.co", "user", "Developer", first_login_days=90, last_login_days=3),
        _member(now, "sofia.lopez@kiwicorp.co", "user", "Developer", first_login_days=60, last_login_days=1),
        _engineer(now, "customer_manager"),
    ]
    group = Group(
        name="kiwipay",
        organization=ORGANIZATION_NAME,
        description="KiwiCorp's payment gateway",
        service="WHITE",
        subscription="continuous",
        tier="MACHINE",
        has_asm=True,
        has_machine=True,
        has_squad=False,
        open_findings=2,
        open_vulnerabilities=120,
        closed_vulnerabilities=10,
        members={member.email: member for member in members},
    )
    leak = _finding("kiwipay", "037. Technical information leak", "VULNERABLE", 5.3, 70, 6, now, 60)
    methods = _finding("kiwipay", "044. Insecure HTTP methods enabled", "VULNERABLE", 4.8, 50, 4, now, 50)
    group.findings = [leak, methods]

    for index in range(1, 77):
        state = "VULNERABLE" if index <= 70 else "SAFE"
        where = f"kiwipay/gateway/src/handlers/h{index:03d}.py"
        group.vulnerabilities.append(_location("kiwipay", leak, index, state, where, str(10 + index), "lines"))
    for index in range(1, 55):
        state = "VULNERABLE" if index <= 50 else "SAFE"
        where = f"https://pay.kiwicorp.example/v1/endpoint{index:02d}"
        group.vulnerabilities.append(_location("kiwipay", methods, index, state, where, "TRACE", "inputs"))
    return group


def _kiwilegacy(now: dt.datetime) -> Group:
    group = Group(
        name="kiwilegacy",
        organization=ORGANIZATION_NAME,
        description="The retired web portal, kept for a one-shot review",
        service="BLACK",
        subscription="oneshot",
        tier="ONESHOT",
        has_asm=False,
        has_machine=False,
        has_squad=False,
        open_findings=1,
        open_vulnerabilities=2,
        closed_vulnerabilities=0,
        members={ENGINEER_EMAIL: _engineer(now, "user")},
    )
    session = _finding("kiwilegacy", "142. Insecure session expiration time", "VULNERABLE", 3.9, 2, 0, now, 300)
    group.findings = [session]
    group.vulnerabilities = [
        _location("kiwilegacy", session, 1, "VULNERABLE", "https://portal.kiwicorp.example/login", "sid", "inputs"),
        _location("kiwilegacy", session, 2, "VULNERABLE", "https://portal.kiwicorp.example/account", "sid", "inputs"),
    ]
    return group


def _organization_members(now: dt.datetime) -> dict[str, Membership]:
    nico = _member(now, "nico.paez@kiwicorp.co", "user")
    nico.dash_when_missing = True
    members = [
        _member(now, ENGINEER_EMAIL, "customer_manager", first_login_days=400, last_login_days=0.05),
        _member(now, "ana.gomez@kiwicorp.co", "user_manager", first_login_days=200, last_login_days=1),
        _member(now, "carlos.ruiz@kiwicorp.co", "user", invited_days=9),
        _member(now, "luisa.fernandez@kiwicorp.co", "user", first_login_days=150, last_login_days=2),
        _member(now, "marta.vidal@kiwicorp.co", "user", first_login_days=120, last_login_days=6),
        nico,
        _member(now, "pedro.rios@kiwicorp.co", "user", first_login_days=90, last_login_days=3),
        _member(now, "sofia.lopez@kiwicorp.co", "user", first_login_days=60, last_login_days=1),
        _member(now, "jorge.mesa@kiwicorp.co", "user_manager", first_login_days=300, last_login_days=4),
    ]
    return {member.email: member for member in members}


def _finding(
    group: str,
    title: str,
    status: str,
    severity: float,
    open_count: int,
    closed_count: int,
    now: dt.datetime,
    reported_days: float,
) -> Finding:
    reported = _days(now, reported_days)
    return Finding(stable_id(group, title), title, status, severity, open_count, closed_count, reported)


_TREATMENTS = ("UNTREATED", "IN_PROGRESS", "UNTREATED", "ACCEPTED")


def _location(
    group: str,
    finding: Finding,
    index: int,
    state: str,
    where: str,
    specific: str,
    kind: str,
) -> Vulnerability:
    return Vulnerability(
        id=stable_id(group, finding.id, index),
        finding_id=finding.id,
        state=state,
        where=where,
        specific=specific,
        vulnerability_type=kind,
        severity_temporal_score=finding.severity_score,
        treatment_status=_TREATMENTS[index % len(_TREATMENTS)],
        report_date=finding.report_date,
    )
