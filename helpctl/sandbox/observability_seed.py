"""The KiwiCorp story as the BugSnag, Mixpanel and LogRocket stand-ins serve it.

Every moment is an offset from `anchor` (aware UTC, the moment the stand-in starts unless a
test passes one). The four scenarios of the story were reported at anchor - 2 h:

- bug: ana.gomez hit "TypeError: Cannot read properties of undefined (reading 'edges')" in
  `VulnerabilitiesView` 8 times between anchor - 2h30 and anchor - 1h30, and viewed the
  vulnerabilities page around anchor - 2 h.
- incident: marta.vidal, luisa.fernandez and sofia.lopez hit "GraphQLError: Exception -
  Unexpected error" in `FindingsView` 60 times between anchor - 27 h and anchor - 25 h (the
  incident was reported a day before the other scenarios, so their windows stay apart).
- feature: pedro.rios views findings and members regularly and never sends "Export members"
  (the feature does not exist).
- answered: carlos.ruiz never logged in, so no stand-in has an error, a profile or a session
  for him.

Noise that probes must filter out: errors of other users in the same hours (juliana.gomez,
whose address contains ana's because BugSnag matches `user.email` as a substring), an old
error of ana's five days before, a staging error, a duplicated Mixpanel event (the export
API does not deduplicate) and daily activity of every active user.

Randomness comes from `random.Random(SEED)` and ids from hashes of fixed names, so the same
anchor always gives the same data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import random
import uuid

SEED = 20240311

ANA = "ana.gomez@kiwicorp.co"
CARLOS = "carlos.ruiz@kiwicorp.co"
LUISA = "luisa.fernandez@kiwicorp.co"
MARTA = "marta.vidal@kiwicorp.co"
NICO = "nico.paez@kiwicorp.co"
PEDRO = "pedro.rios@kiwicorp.co"
SOFIA = "sofia.lopez@kiwicorp.co"
ENGINEER = "support.sandbox@fluidattacks.com"
# Not a member of the seeded groups: her address contains ana's as a substring.
JULIANA = "juliana.gomez@kiwicorp.co"

NAMES = {
    ANA: "Ana Gómez",
    CARLOS: "Carlos Ruiz",
    LUISA: "Luisa Fernández",
    MARTA: "Marta Vidal",
    NICO: "Nico Páez",
    PEDRO: "Pedro Ríos",
    SOFIA: "Sofía López",
    ENGINEER: "Sandra Soporte",
    JULIANA: "Juliana Gómez",
}

# Public, documented sandbox values; they match profiles/sandbox.yaml.
BUGSNAG_TOKEN = "sandbox-bugsnag-token"
BUGSNAG_ORGANIZATION_SLUG = "fluid-attacks"
BUGSNAG_PROJECT_SLUG = "integrates-front"
BUGSNAG_PROJECT_ID = "5f1a2b3c4d5e6f7a8b9c0d1e"

MIXPANEL_PROJECT_ID = "2412345"
MIXPANEL_SERVICE_ACCOUNT = "helpctl-sandbox.3f9a1c.mp-service-account"
MIXPANEL_SECRET = "sandbox-mixpanel-secret"

LOGROCKET_KEY = "sandbox-logrocket-key"
LOGROCKET_ORGANIZATION = "fluid-attacks"
LOGROCKET_APP = "integrates"

_ID_NAMESPACE = uuid.UUID("5d2c6a0e-1f7b-4b9e-8e43-7a9c0f1b2d35")


def stable_hex(*parts: object, length: int = 24) -> str:
    """Return a hex id derived from `parts`, the same on every run."""
    text = "|".join(str(part) for part in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def distinct_id(email: str) -> str:
    """Return the Mixpanel distinct_id the product gave the user (not the e-mail)."""
    return str(uuid.uuid5(_ID_NAMESPACE, email))


# ----- BugSnag -----


@dataclasses.dataclass(frozen=True)
class ErrorGroup:
    """A BugSnag error: the events that share a grouping hash."""

    id: str
    error_class: str
    message: str
    context: str
    release_stage: str
    severity: str = "error"
    status: str = "open"


@dataclasses.dataclass(frozen=True)
class ErrorEvent:
    id: str
    error_id: str
    received_at: dt.datetime
    user_email: str
    context: str
    release_stage: str
    url: str
    unhandled: bool = True

    @property
    def user_id(self) -> str:
        return distinct_id(self.user_email)

    @property
    def user_name(self) -> str:
        return NAMES.get(self.user_email, "")


@dataclasses.dataclass
class BugsnagStory:
    errors: list[ErrorGroup]
    events: list[ErrorEvent]


def _spread(rng: random.Random, start: dt.datetime, end: dt.datetime, count: int) -> list[dt.datetime]:
    """Return `count` sorted moments between `start` and `end`, whole seconds."""
    span = (end - start).total_seconds()
    offsets = sorted(rng.uniform(0, span) for _ in range(count))
    return [start + dt.timedelta(seconds=int(offset)) for offset in offsets]


def _error(error_class: str, message: str, context: str, release_stage: str = "production") -> ErrorGroup:
    return ErrorGroup(stable_hex("bugsnag-error", error_class, message, context), error_class, message, context, release_stage)


def _events(
    rng: random.Random,
    error: ErrorGroup,
    users: list[tuple[str, int]],
    start: dt.datetime,
    end: dt.datetime,
    url: str,
) -> list[ErrorEvent]:
    """Return the events of `error`: `count` of them for each (user, count), spread over the hours."""
    events = []
    for email, count in users:
        for index, moment in enumerate(_spread(rng, start, end, count)):
            event_id = stable_hex("bugsnag-event", error.id, email, index)
            events.append(ErrorEvent(event_id, error.id, moment, email, error.context, error.release_stage, url))
    return events


def bugsnag_story(anchor: dt.datetime) -> BugsnagStory:
    rng = random.Random(SEED)
    hour = dt.timedelta(hours=1)
    app = "https://app.fluidattacks.com/orgs/kiwicorp/groups"

    edges = _error("TypeError", "Cannot read properties of undefined (reading 'edges')", "VulnerabilitiesView")
    loader = _error("GraphQLError", "Exception - Unexpected error", "FindingsView")
    chunk = _error("ChunkLoadError", "Loading chunk 812 failed.", "DashboardView")
    role = _error("TypeError", "Cannot read properties of null (reading 'role')", "StakeholdersView")
    fetch = _error("NetworkError", "Failed to fetch", "OrganizationView")
    staging = _error("ReferenceError", "toggleFilter is not defined", "FindingsView", "staging")

    events = []
    events += _events(rng, edges, [(ANA, 8)], anchor - 2.5 * hour, anchor - 1.5 * hour, f"{app}/kiwiapp/vulns")
    events += _events(
        rng, loader, [(MARTA, 24), (LUISA, 20), (SOFIA, 16)], anchor - 27 * hour, anchor - 25 * hour, f"{app}/kiwiapp/findings"
    )
    events += _events(rng, chunk, [(LUISA, 6)], anchor - 72 * hour, anchor - 0.5 * hour, f"{app}/kiwiapp/dashboard")
    events += _events(rng, role, [(JULIANA, 5)], anchor - 3 * hour, anchor - hour, f"{app}/kiwiapp/members")
    events += _events(rng, fetch, [(ANA, 2)], anchor - 121 * hour, anchor - 120 * hour, "https://app.fluidattacks.com/orgs/kiwicorp")
    events += _events(rng, staging, [(ENGINEER, 3)], anchor - 4 * hour, anchor - 2 * hour, f"{app}/kiwiapp/findings")

    events.sort(key=lambda event: event.received_at)
    return BugsnagStory([edges, loader, chunk, role, fetch, staging], events)


# ----- Mixpanel -----


@dataclasses.dataclass(frozen=True)
class UsageProfile:
    email: str
    distinct_id: str
    created: dt.datetime
    groups: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class UsageEvent:
    name: str
    distinct_id: str
    time: dt.datetime
    insert_id: str
    group: str


@dataclasses.dataclass
class MixpanelStory:
    profiles: list[UsageProfile]
    events: list[UsageEvent]

    def last_seen(self, profile: UsageProfile) -> dt.datetime | None:
        moments = [event.time for event in self.events if event.distinct_id == profile.distinct_id]
        return max(moments, default=None)


# (offset before the anchor, event name, group) for the hours around the report.
_NEAR_REPORT = {
    ANA: [
        (dt.timedelta(hours=3, minutes=5), "Login", "kiwiapp"),
        (dt.timedelta(hours=3), "View group", "kiwiapp"),
        (dt.timedelta(hours=2, minutes=25), "View vulnerabilities", "kiwiapp"),
        (dt.timedelta(hours=2, minutes=15), "View vulnerabilities", "kiwiapp"),
        (dt.timedelta(hours=2, minutes=10), "Filter vulnerabilities", "kiwiapp"),
        # With the anchor at 01:35Z this event falls at 23:30Z of the day before.
        (dt.timedelta(hours=2, minutes=5), "View vulnerabilities", "kiwiapp"),
        (dt.timedelta(hours=1, minutes=58), "View vulnerabilities", "kiwiapp"),
        (dt.timedelta(hours=1, minutes=40), "View findings", "kiwiapp"),
    ],
    MARTA: [
        (dt.timedelta(hours=27, minutes=10), "Login", "kiwiapp"),
        (dt.timedelta(hours=26, minutes=50), "View findings", "kiwiapp"),
        (dt.timedelta(hours=26, minutes=35), "View findings", "kiwipay"),
        (dt.timedelta(hours=26, minutes=20), "View findings", "kiwiapp"),
        (dt.timedelta(hours=26, minutes=5), "View findings", "kiwiapp"),
        (dt.timedelta(hours=25, minutes=50), "View findings", "kiwipay"),
        (dt.timedelta(hours=25, minutes=35), "View findings", "kiwiapp"),
    ],
    PEDRO: [
        (dt.timedelta(hours=2, minutes=30), "Login", "kiwipay"),
        (dt.timedelta(hours=2, minutes=15), "View members", "kiwipay"),
        (dt.timedelta(hours=2, minutes=12), "View members", "kiwipay"),
        (dt.timedelta(hours=2, minutes=5), "View findings", "kiwipay"),
    ],
    LUISA: [
        (dt.timedelta(hours=2, minutes=45), "View findings", "kiwiapp"),
        (dt.timedelta(hours=2, minutes=40), "View events", "kiwiapp"),
    ],
}

# Daily habits over the previous weeks: (days, event names, group).
_DAILY = {
    ANA: (14, ("View vulnerabilities", "View members"), "kiwiapp"),
    MARTA: (10, ("View findings", "View vulnerabilities"), "kiwiapp"),
    PEDRO: (20, ("View findings", "View members"), "kiwipay"),
    LUISA: (12, ("View events", "View findings"), "kiwiapp"),
}

# Profiles only for people who logged in: carlos (pending invitation) and nico (never
# logged in) have none.
_PROFILES = {
    ANA: (400, ("kiwiapp", "kiwipay")),
    MARTA: (300, ("kiwiapp",)),
    PEDRO: (200, ("kiwipay",)),
    LUISA: (350, ("kiwiapp", "kiwipay")),
}


def _usage_event(name: str, email: str, moment: dt.datetime, group: str) -> UsageEvent:
    identity = distinct_id(email)
    insert_id = stable_hex("mixpanel-event", name, identity, moment.isoformat(), length=32)
    return UsageEvent(name, identity, moment, insert_id, group)


def mixpanel_story(anchor: dt.datetime) -> MixpanelStory:
    rng = random.Random(SEED + 1)
    profiles = [
        UsageProfile(email, distinct_id(email), anchor - dt.timedelta(days=days), groups)
        for email, (days, groups) in _PROFILES.items()
    ]

    events = []
    for email, moments in _NEAR_REPORT.items():
        events += [_usage_event(name, email, anchor - offset, group) for offset, name, group in moments]

    for email, (days, names, group) in _DAILY.items():
        for day in range(1, days + 1):
            for name in names:
                offset = dt.timedelta(days=day, hours=rng.randint(1, 9), minutes=rng.randint(0, 59))
                events.append(_usage_event(name, email, anchor - offset, group))

    # The export API sends a retried event twice with the same $insert_id.
    duplicated = next(event for event in events if event.name == "Filter vulnerabilities")
    events.append(duplicated)

    events.sort(key=lambda event: event.time)
    return MixpanelStory(profiles, events)


# ----- LogRocket -----


@dataclasses.dataclass(frozen=True)
class Session:
    id: str
    email: str
    started_at: dt.datetime
    minutes: int
    highlights: str


_SESSIONS = {
    ANA: [
        (dt.timedelta(hours=2, minutes=30), 35, "Opened kiwiapp > Vulnerabilities: the table stayed empty and the console logged a TypeError reading 'edges'. Reloaded twice."),
        (dt.timedelta(days=1, hours=4), 20, "Reviewed the members of kiwiapp and invited carlos.ruiz@kiwicorp.co."),
        (dt.timedelta(days=3, hours=2), 15, "Browsed the vulnerabilities of kiwiapp and filtered by severity."),
    ],
    MARTA: [
        (dt.timedelta(hours=2, minutes=55), 80, "Opened Findings in kiwiapp and kiwipay: every load ended in 'Unexpected error'. Retried from both groups."),
        (dt.timedelta(days=6, hours=1), 25, "Exported a findings report for kiwiapp."),
    ],
    PEDRO: [
        (dt.timedelta(hours=2, minutes=35), 30, "Opened Members in kiwipay, scrolled the whole list and looked for an export button."),
        (dt.timedelta(days=1, hours=3), 10, "Viewed the findings of kiwipay."),
    ],
    LUISA: [
        (dt.timedelta(hours=2, minutes=45), 20, "Opened Findings in kiwiapp and got 'Unexpected error'; switched to Events."),
    ],
}


def logrocket_sessions(anchor: dt.datetime) -> list[Session]:
    sessions = []
    for email, rows in _SESSIONS.items():
        for offset, minutes, highlights in rows:
            session_id = stable_hex("logrocket-session", email, offset.total_seconds(), length=16)
            sessions.append(Session(session_id, email, anchor - offset, minutes, highlights))
    sessions.sort(key=lambda session: session.started_at)
    return sessions
