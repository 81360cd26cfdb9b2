"""Log lines of the sandbox story for the Logs Insights stand-in, relative to an anchor time.

Every line is a JSON object with the fields level, user, group, operation, message and
request_id, in one of two log groups: the API (`/aws/lambda/integrates-api`) and the web
front (`/aws/ecs/integrates-web`). Each scenario was reported at anchor - 2 h, except the
incident, reported a day earlier (anchor - 26 h) so that its errors stay out of the other
cases' windows:

- bug: 12 ERROR "Unexpected error resolving Group.vulnerabilities" (GroupVulnerabilities)
  for ana.gomez in kiwiapp between anchor - 2 h 30 and anchor - 1 h 30, among her INFO lines.
- incident: about 40 ERROR "Max connections reached in findings loader" (GroupFindings) per
  hour for marta.vidal, luisa.fernandez and sofia.lopez during anchor - 27 h .. anchor - 25 h,
  and the same message about once per hour during the 24 h before (the baseline).
- feature: pedro.rios has INFO lines of his requests.
- answered: carlos.ruiz (never logged in) and nico.paez have no lines at all.

Background noise: INFO lines of the active members over the last 30 h, a monitor's health
checks without a group field, and a few unrelated errors of luisa.fernandez in kiwipay.
A fixed random seed keeps the story the same on every start.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator

from helpctl.sandbox.logs_engine import LogEvent, make_event

API_GROUP = "/aws/lambda/integrates-api"
WEB_GROUP = "/aws/ecs/integrates-web"
LOG_GROUPS = (API_GROUP, WEB_GROUP)

SEED = 3703

ANA = "ana.gomez@kiwicorp.co"
LUISA = "luisa.fernandez@kiwicorp.co"
MARTA = "marta.vidal@kiwicorp.co"
PEDRO = "pedro.rios@kiwicorp.co"
MONITOR = "monitor@fluidattacks.com"

# Members who use the platform, with the groups their requests name.
ACTIVE_MEMBERS = {
    ANA: ("kiwiapp", "kiwipay"),
    LUISA: ("kiwiapp", "kiwipay"),
    MARTA: ("kiwiapp",),
    PEDRO: ("kiwipay",),
}

INFO_OPERATIONS = ("Me", "GroupFindings", "GroupVulnerabilities", "GroupMembers", "GroupEvents", "OrganizationGroups")
INFO_MESSAGE = "Request completed"

BUG_MESSAGE = "Unexpected error resolving Group.vulnerabilities"
BUG_OPERATION = "GroupVulnerabilities"
BUG_ERRORS = 12

INCIDENT_MESSAGE = "Max connections reached in findings loader"
INCIDENT_OPERATION = "GroupFindings"
INCIDENT_ERRORS_PER_HOUR = 40
SOFIA = "sofia.lopez@kiwicorp.co"
INCIDENT_USERS = ((MARTA, "kiwiapp"), (LUISA, "kiwiapp"), (SOFIA, "kiwipay"), (LUISA, "kiwipay"))
INCIDENT_BEFORE_ANCHOR = dt.timedelta(hours=27)

NOISE_ERROR_MESSAGE = "Timeout fetching event evidence"

REPORTED_BEFORE_ANCHOR = dt.timedelta(hours=2)
NOISE_HOURS = 30


def epoch_ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


class _Writer:
    """Builds the story's events with shared field values and deterministic ids."""

    def __init__(self, anchor: dt.datetime, seed: int) -> None:
        self.anchor = anchor
        self.random = random.Random(seed)
        day = anchor.strftime("%Y/%m/%d")
        self.api_streams = [f"{day}/[$LATEST]{self.random.getrandbits(128):032x}" for _ in range(3)]
        self.web_streams = [f"integrates-web/app/{self.random.getrandbits(128):032x}" for _ in range(2)]
        self.events: list[tuple[str, LogEvent]] = []

    def request_id(self) -> str:
        return str(uuid.UUID(int=self.random.getrandbits(128), version=4))

    def line(self, moment: dt.datetime, level: str, user: str, group: str | None, operation: str, message: str) -> None:
        fields: dict[str, object] = {"level": level, "user": user}
        if group is not None:
            fields["group"] = group
        fields.update(operation=operation, message=message, request_id=self.request_id())
        stream = self.random.choice(self.api_streams)
        self.events.append((API_GROUP, make_event(epoch_ms(moment), fields, stream)))

    def page_view(self, moment: dt.datetime, user: str, group: str, path: str, status: int = 200) -> None:
        fields = {
            "level": "INFO",
            "user": user,
            "group": group,
            "operation": "PageView",
            "message": f"GET {path} {status}",
            "request_id": self.request_id(),
        }
        stream = self.random.choice(self.web_streams)
        self.events.append((WEB_GROUP, make_event(epoch_ms(moment), fields, stream)))

    def jitter(self, seconds: float) -> dt.timedelta:
        return dt.timedelta(seconds=self.random.uniform(0, seconds))


def seed_events(anchor: dt.datetime, *, seed: int = SEED) -> list[tuple[str, LogEvent]]:
    """Return the story's (log group, event) pairs for an aware UTC anchor."""
    writer = _Writer(anchor.astimezone(dt.timezone.utc), seed)
    _background(writer)
    _bug(writer)
    _incident(writer)
    _unrelated_errors(writer)
    return writer.events


def _background(writer: _Writer) -> None:
    start = writer.anchor - dt.timedelta(hours=NOISE_HOURS)
    for user, groups in ACTIVE_MEMBERS.items():
        moment = start + writer.jitter(900)
        while moment < writer.anchor:
            group = writer.random.choice(groups)
            operation = writer.random.choice(INFO_OPERATIONS)
            writer.line(moment, "INFO", user, group, operation, INFO_MESSAGE)
            if writer.random.random() < 0.4:
                writer.page_view(moment - dt.timedelta(seconds=2), user, group, f"/orgs/kiwicorp/groups/{group}/vulns")
            moment += dt.timedelta(minutes=8) + writer.jitter(900)

    moment = start
    while moment < writer.anchor:
        writer.line(moment, "INFO", MONITOR, None, "HealthCheck", "Health check passed")
        moment += dt.timedelta(minutes=10)


def _bug(writer: _Writer) -> None:
    start = writer.anchor - dt.timedelta(hours=2, minutes=30)
    for index in range(BUG_ERRORS):
        moment = start + dt.timedelta(minutes=5 * index) + writer.jitter(60)
        writer.page_view(moment - dt.timedelta(seconds=1), ANA, "kiwiapp", "/orgs/kiwicorp/groups/kiwiapp/vulns")
        writer.line(moment, "ERROR", ANA, "kiwiapp", BUG_OPERATION, BUG_MESSAGE)
        other = writer.random.choice(("Me", "GroupFindings", "GroupEvents"))
        writer.line(moment + dt.timedelta(seconds=40), "INFO", ANA, "kiwiapp", other, INFO_MESSAGE)


def _incident(writer: _Writer) -> None:
    start = writer.anchor - INCIDENT_BEFORE_ANCHOR
    count = INCIDENT_ERRORS_PER_HOUR * 2
    step = dt.timedelta(hours=2) / count
    for index in range(count):
        user, group = INCIDENT_USERS[index % len(INCIDENT_USERS)]
        moment = start + step * index + writer.jitter(step.total_seconds())
        writer.line(moment, "ERROR", user, group, INCIDENT_OPERATION, INCIDENT_MESSAGE)

    baseline_start = start - dt.timedelta(hours=24)
    for hour in range(24):
        user, group = INCIDENT_USERS[hour % len(INCIDENT_USERS)]
        moment = baseline_start + dt.timedelta(hours=hour) + writer.jitter(3600)
        writer.line(moment, "ERROR", user, group, INCIDENT_OPERATION, INCIDENT_MESSAGE)


def _unrelated_errors(writer: _Writer) -> None:
    for hours_before in (20, 14, 6):
        moment = writer.anchor - dt.timedelta(hours=hours_before) + writer.jitter(600)
        writer.line(moment, "ERROR", LUISA, "kiwipay", "GroupEvents", NOISE_ERROR_MESSAGE)


def generate_events(
    count: int,
    start: dt.datetime,
    end: dt.datetime,
    *,
    user: str = "bench.user@kiwicorp.co",
    group: str = "kiwiapp",
    level: str = "ERROR",
    operation: str = INCIDENT_OPERATION,
    message: str = INCIDENT_MESSAGE,
    seed: int = SEED,
) -> Iterator[LogEvent]:
    """Yield `count` events spread over [start, end) in time order, one at a time.

    Timestamps are stratified (one per equal slice, at a random point in it), so the
    events are ordered without sorting and the generator keeps no list. Field values
    other than request_id are shared objects: 250,000 events take about 85 MB (CPython 3.11).
    """
    generator = random.Random(seed)
    first = epoch_ms(start)
    span = epoch_ms(end) - first
    streams = [f"{start:%Y/%m/%d}/[$LATEST]{generator.getrandbits(128):032x}" for _ in range(4)]
    for index in range(count):
        timestamp = first + int((index + generator.random()) * span / count)
        fields = {
            "level": level,
            "user": user,
            "group": group,
            "operation": operation,
            "message": message,
            "request_id": str(uuid.UUID(int=generator.getrandbits(128), version=4)),
        }
        yield make_event(timestamp, fields, streams[index % len(streams)])
