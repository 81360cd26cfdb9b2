"""Response-time clocks: office-hours arithmetic and the clocks of a case.

Office hours come from `CalendarSettings`: a fixed UTC offset (no daylight saving time),
the weekdays that are office days (Monday=0), the office's opening and closing times, and
holidays as YYYY-MM-DD dates in that offset. Arithmetic is exact to the microsecond and
counts whole weeks at once, so a span of many months costs about as much as a day.

A case has two clocks, read from its timeline:

- first-response starts when the requester reported the case (`reported_at`, else
  `created_at`) and is met by the first delivered `notified` event;
- next-update exists once the first response was sent. It starts at the last delivered
  `notified` event, or at the requester's last `message-added` (or a `reopened` event)
  when that came later, and the next delivered notification starts it again.

Both clocks pause while the case waits on the requester (status `waiting`) and while it
is closed. A reply from the requester ends the wait. A closed case has no running clock:
its first-response clock is met or stopped, and it has no next-update clock.
Naive datetimes are taken as UTC.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import functools
import logging
import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from helpctl.errors import ConfigError

if TYPE_CHECKING:
    from helpctl.cases.model import Case, Event
    from helpctl.config.settings import CalendarSettings, SlaSettings

logger = logging.getLogger(__name__)

FIRST_RESPONSE = "first-response"
NEXT_UPDATE = "next-update"

MICROSECONDS_PER_HOUR = 3_600_000_000
MICROSECONDS_PER_MINUTE = 60_000_000
DAYS_PER_WEEK = 7

_OFFSET = re.compile(r"^(?P<sign>[+-])(?P<hours>\d{2}):(?P<minutes>\d{2})$")
_TIME = re.compile(r"^(?P<hours>\d{1,2}):(?P<minutes>\d{2})$")


# ---------------------------------------------------------------------------------------
# The office calendar


@dataclasses.dataclass(frozen=True)
class OfficeCalendar:
    """A validated `CalendarSettings`: times in minutes after local midnight, dates as ordinals."""

    offset: dt.timezone
    weekdays: frozenset[int]
    opens: int
    closes: int
    # Ordinals of the holidays that fall on office weekdays, sorted for bisect.
    holidays: tuple[int, ...]

    @property
    def day_microseconds(self) -> int:
        return (self.closes - self.opens) * MICROSECONDS_PER_MINUTE

    def is_office_day(self, ordinal: int) -> bool:
        return _weekday(ordinal) in self.weekdays and not self._is_holiday(ordinal)

    def _is_holiday(self, ordinal: int) -> bool:
        index = bisect.bisect_left(self.holidays, ordinal)
        return index < len(self.holidays) and self.holidays[index] == ordinal

    def office_days(self, first: int, last: int) -> int:
        """Count the office days with an ordinal in [first, last)."""
        if last <= first:
            return 0

        weeks, rest = divmod(last - first, DAYS_PER_WEEK)
        count = weeks * len(self.weekdays)
        tail = first + weeks * DAYS_PER_WEEK
        count += sum(1 for ordinal in range(tail, tail + rest) if _weekday(ordinal) in self.weekdays)
        count -= bisect.bisect_left(self.holidays, last) - bisect.bisect_left(self.holidays, first)
        return count

    def local(self, moment: dt.datetime) -> tuple[int, int]:
        """Return the local date's ordinal and the microseconds since local midnight."""
        local = _aware(moment).astimezone(self.offset)
        since_midnight = (local.hour * 3600 + local.minute * 60 + local.second) * 1_000_000 + local.microsecond
        return local.date().toordinal(), since_midnight

    def office_part(self, ordinal: int, since_midnight: int) -> int:
        """Return the office microseconds of day `ordinal` that passed by `since_midnight`."""
        if not self.is_office_day(ordinal):
            return 0
        opens = self.opens * MICROSECONDS_PER_MINUTE
        closes = self.closes * MICROSECONDS_PER_MINUTE
        return min(max(since_midnight, opens), closes) - opens

    def office_since(self, anchor: int, moment: dt.datetime) -> int:
        """Return the office microseconds from local midnight of day `anchor` to `moment`."""
        ordinal, since_midnight = self.local(moment)
        return self.office_days(anchor, ordinal) * self.day_microseconds + self.office_part(ordinal, since_midnight)

    def moment(self, ordinal: int, since_midnight: int) -> dt.datetime:
        """Return the UTC datetime of a local date and time."""
        midnight = dt.datetime.combine(dt.date.fromordinal(ordinal), dt.time(), tzinfo=self.offset)
        return (midnight + dt.timedelta(microseconds=since_midnight)).astimezone(dt.timezone.utc)


def _weekday(ordinal: int) -> int:
    # Ordinal 1 is Monday 0001-01-01.
    return (ordinal - 1) % DAYS_PER_WEEK


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.timezone.utc)


def office_calendar(settings: CalendarSettings) -> OfficeCalendar:
    """Validate `settings` and return the calendar. Raises ConfigError that names the invalid field."""
    key = (settings.utc_offset, tuple(settings.weekdays), settings.start, settings.end, tuple(str(day) for day in settings.holidays))
    return _build_calendar(key)


@functools.lru_cache(maxsize=16)
def _build_calendar(key: tuple[Any, ...]) -> OfficeCalendar:
    utc_offset, weekdays, start, end, holidays = key
    offset = _parse_offset(utc_offset)

    if not weekdays or any(not isinstance(day, int) or not 0 <= day <= 6 for day in weekdays):
        raise ConfigError(f"sla.calendar.weekdays {list(weekdays)!r} is invalid", hint="list office days as numbers, Monday=0 to Sunday=6")
    opens, closes = _parse_time(start, "start"), _parse_time(end, "end")
    if closes <= opens:
        raise ConfigError(f"sla.calendar: the office closes ({end}) before it opens ({start})", hint="set start before end, such as 07:00 and 19:00")

    office_weekdays = frozenset(weekdays)
    ordinals = sorted({_parse_holiday(day) for day in holidays})
    return OfficeCalendar(
        offset=offset,
        weekdays=office_weekdays,
        opens=opens,
        closes=closes,
        holidays=tuple(ordinal for ordinal in ordinals if _weekday(ordinal) in office_weekdays),
    )


def _parse_offset(value: str) -> dt.timezone:
    text = str(value).strip()
    if text.upper() in ("Z", "UTC"):
        return dt.timezone.utc
    found = _OFFSET.match(text)
    if not found or int(found["hours"]) > 23 or int(found["minutes"]) > 59:
        raise ConfigError(f"sla.calendar.utc_offset {value!r} is invalid", hint="write it as -05:00 or +01:00")
    delta = dt.timedelta(hours=int(found["hours"]), minutes=int(found["minutes"]))
    return dt.timezone(-delta if found["sign"] == "-" else delta)


def _parse_time(value: str, field: str) -> int:
    found = _TIME.match(str(value).strip())
    minutes = int(found["hours"]) * 60 + int(found["minutes"]) if found else -1
    if not found or int(found["minutes"]) > 59 or not 0 <= minutes <= 24 * 60:
        raise ConfigError(f"sla.calendar.{field} {value!r} is not a time of day", hint="write it as HH:MM, from 00:00 to 24:00")
    return minutes


def _parse_holiday(value: str) -> int:
    try:
        return dt.date.fromisoformat(str(value).strip()).toordinal()
    except ValueError as error:
        raise ConfigError(f"sla.calendar.holidays: {value!r} is not a date", hint="write holidays as YYYY-MM-DD") from error


# ---------------------------------------------------------------------------------------
# Office-hours arithmetic


def office_hours_between(start: dt.datetime, end: dt.datetime, calendar: CalendarSettings) -> float:
    """Return the office hours from `start` to `end`, negative when `end` is before `start`."""
    return _office_microseconds(start, end, office_calendar(calendar)) / MICROSECONDS_PER_HOUR


def _office_microseconds(start: dt.datetime, end: dt.datetime, office: OfficeCalendar) -> int:
    if end < start:
        return -_office_microseconds(end, start, office)
    anchor, _ = office.local(start)
    return office.office_since(anchor, end) - office.office_since(anchor, start)


def add_office_hours(start: dt.datetime, hours: float, calendar: CalendarSettings) -> dt.datetime:
    """Return the earliest UTC moment that is `hours` office hours after `start`.

    A deadline that falls exactly at closing time is that closing time, not the next
    opening. Raises ValueError for negative or non-finite hours.
    """
    if not math.isfinite(hours) or hours < 0:
        raise ValueError(f"office hours must be a finite number from 0, got {hours!r}")
    office = office_calendar(calendar)
    return _add_microseconds(_aware(start), round(hours * MICROSECONDS_PER_HOUR), office)


def _add_microseconds(start: dt.datetime, amount: int, office: OfficeCalendar) -> dt.datetime:
    if amount == 0:
        return start.astimezone(dt.timezone.utc)

    anchor, _ = office.local(start)
    target = office.office_since(anchor, start) + amount
    day = office.day_microseconds

    # The deadline is on the first day D whose closing time reaches the target, that is
    # office_days(anchor, D + 1) * day >= target. That count only grows with D, so D is
    # found by bisection between the start's day and a bound that covers every holiday.
    days_needed = -(-target // day)
    weeks = -(-(days_needed + len(office.holidays)) // len(office.weekdays)) + 1
    low, high = anchor, anchor + weeks * DAYS_PER_WEEK
    while low < high:
        middle = (low + high) // 2
        if office.office_days(anchor, middle + 1) * day >= target:
            high = middle
        else:
            low = middle + 1

    into_day = target - office.office_days(anchor, low) * day
    return office.moment(low, office.opens * MICROSECONDS_PER_MINUTE + into_day)


# ---------------------------------------------------------------------------------------
# Clocks


@dataclasses.dataclass
class Clock:
    """One response-time clock of a case, in office hours.

    `due_at` is None while the clock is paused or stopped. `remaining_hours` is the target
    minus the office hours used: at `met_at` for a met clock, at the time asked otherwise,
    and negative when the target was missed. `breached` is true for a clock past its
    target, met late included; `due_soon` only for a running clock within
    `sla.due_soon_hours` of its target.
    """

    name: str
    started_at: dt.datetime
    due_at: dt.datetime | None
    paused: bool
    met_at: dt.datetime | None
    remaining_hours: float
    breached: bool
    due_soon: bool
    target_hours: float
    elapsed_hours: float
    stopped: bool = False

    @property
    def state(self) -> str:
        """One of met, stopped (the case is closed), paused (waiting on the requester) or running."""
        if self.met_at is not None:
            return "met"
        if self.stopped:
            return "stopped"
        return "paused" if self.paused else "running"

    @property
    def is_open(self) -> bool:
        """True while the clock still counts against the team: running or paused."""
        return self.state in ("running", "paused")

    def as_dict(self) -> dict[str, Any]:
        from helpctl.findings import isoformat

        return {
            "name": self.name,
            "state": self.state,
            "started_at": isoformat(self.started_at),
            "due_at": isoformat(self.due_at) if self.due_at else None,
            "met_at": isoformat(self.met_at) if self.met_at else None,
            "paused": self.paused,
            "target_hours": self.target_hours,
            "elapsed_hours": round(self.elapsed_hours, 2),
            "remaining_hours": round(self.remaining_hours, 2),
            "breached": self.breached,
            "due_soon": self.due_soon,
        }


# A span when the clocks do not run: (start, end), with end None while it lasts.
Halt = tuple[dt.datetime, dt.datetime | None]


@dataclasses.dataclass
class Timeline:
    """The parts of a case's timeline that the clocks read, in time order."""

    halts: list[Halt]
    responses: list[dt.datetime]
    restarts: list[dt.datetime]
    closed: bool
    waiting: bool


def clocks(case: Case, sla_settings: SlaSettings, now: dt.datetime) -> list[Clock]:
    """Return the case's clocks at `now`: first-response, then next-update once answered."""
    office = office_calendar(sla_settings.calendar)
    now = _aware(now)
    timeline = read_timeline(case)
    started = parse_time(case.reported_at) or parse_time(case.created_at) or now

    first = _clock(FIRST_RESPONSE, started, sla_settings.first_response_hours, timeline, now, office, sla_settings)
    if first.met_at is None or timeline.closed:
        return [first]

    last_response = timeline.responses[-1]
    restart = max([last_response, *[moment for moment in timeline.restarts if moment > last_response]])
    after_restart = dataclasses.replace(timeline, responses=[])
    update = _clock(NEXT_UPDATE, restart, sla_settings.next_update_hours, after_restart, now, office, sla_settings)
    return [first, update]


def first_response(case: Case, sla_settings: SlaSettings, now: dt.datetime) -> Clock:
    """Return the first-response clock of the case at `now`."""
    return clocks(case, sla_settings, now)[0]


def _clock(
    name: str,
    started: dt.datetime,
    target_hours: float,
    timeline: Timeline,
    now: dt.datetime,
    office: OfficeCalendar,
    sla_settings: SlaSettings,
) -> Clock:
    met_at = next((moment for moment in timeline.responses if moment >= started), None)
    if met_at is None and timeline.responses and name == FIRST_RESPONSE:
        # A notification recorded before the report time still answered the requester.
        met_at = timeline.responses[0]
    end = met_at or now

    target = round(target_hours * MICROSECONDS_PER_HOUR)
    # Halts after a met clock's response do not move its deadline.
    halts = [halt for halt in timeline.halts if halt[0] < end]
    elapsed = _running_microseconds(started, max(end, started), halts, office)
    remaining = (target - elapsed) / MICROSECONDS_PER_HOUR
    stopped = met_at is None and timeline.closed
    paused = met_at is None and not stopped and timeline.waiting

    due_at = None
    if met_at is not None or not (paused or stopped):
        due_at = _deadline(started, target, halts, office)
    running = met_at is None and not (paused or stopped)
    return Clock(
        name=name,
        started_at=started,
        due_at=due_at,
        paused=paused,
        met_at=met_at,
        remaining_hours=remaining,
        breached=remaining < 0,
        due_soon=running and 0 <= remaining <= sla_settings.due_soon_hours,
        target_hours=target_hours,
        elapsed_hours=elapsed / MICROSECONDS_PER_HOUR,
        stopped=stopped,
    )


def _running_microseconds(start: dt.datetime, end: dt.datetime, halts: list[Halt], office: OfficeCalendar) -> int:
    """Office microseconds from start to end, less the parts inside halts."""
    total = _office_microseconds(start, end, office)
    for halt_start, halt_end in halts:
        low = max(start, halt_start)
        high = min(end, halt_end or end)
        if high > low:
            total -= _office_microseconds(low, high, office)
    return total


def _deadline(start: dt.datetime, target: int, halts: list[Halt], office: OfficeCalendar) -> dt.datetime | None:
    """Return when `target` office microseconds have run from `start`, skipping halts.

    None when an open halt begins before the deadline is reached.
    """
    cursor, left = start, target
    for halt_start, halt_end in halts:
        if halt_end is not None and halt_end <= cursor:
            continue
        if halt_start > cursor:
            available = _office_microseconds(cursor, halt_start, office)
            if available >= left:
                break
            left -= available
        if halt_end is None:
            return None
        cursor = max(cursor, halt_end)
    return _add_microseconds(cursor, left, office)


# ---------------------------------------------------------------------------------------
# Reading the timeline


def parse_time(value: Any) -> dt.datetime | None:
    """Parse an ISO 8601 time from a case file. Returns None when it is missing or invalid."""
    if isinstance(value, dt.datetime):
        return _aware(value)
    if not value:
        return None
    try:
        return _aware(dt.datetime.fromisoformat(str(value).strip()))
    except ValueError:
        logger.warning("ignoring an invalid time %r in a case timeline", value)
        return None


def delivered(event: Event) -> bool:
    """Return whether a `notified` event reached the requester (events without `ok` count)."""
    return event.event == "notified" and event.detail.get("ok", True) is not False


def read_timeline(case: Case) -> Timeline:
    """Read the halts, the responses and the restarts of the clocks from the case's timeline."""
    reader = _TimelineReader()
    for moment, event in _dated_events(case.timeline):
        reader.read(moment, event)

    # The status in the case file wins when the timeline does not explain it.
    now_status = {"waiting": "waiting", "closed": "closed"}.get(case.status, "running")
    if reader.mode != now_status:
        reader.switch(now_status, parse_time(case.updated_at) or reader.last_moment)
    return reader.result()


def _dated_events(events: Iterable[Event]) -> list[tuple[dt.datetime, Event]]:
    dated = [(moment, event) for event in events if (moment := parse_time(event.at)) is not None]
    # Events are appended in order. The stable sort only repairs hand-edited files.
    return sorted(dated, key=lambda item: item[0])


class _TimelineReader:
    def __init__(self) -> None:
        self.mode = "running"
        self.halt_start: dt.datetime | None = None
        self.halts: list[Halt] = []
        self.responses: list[dt.datetime] = []
        self.restarts: list[dt.datetime] = []
        self.last_moment: dt.datetime | None = None

    def read(self, moment: dt.datetime, event: Event) -> None:
        self.last_moment = moment
        kind = event.event
        if kind == "notified" and delivered(event):
            self.responses.append(moment)
        elif kind == "message-added":
            self.restarts.append(moment)
            if self.mode == "waiting":
                self.switch("running", moment)
        elif kind == "reopened":
            self.restarts.append(moment)
            self.switch("running", moment)
        elif kind == "closed":
            self.switch("closed", moment)
        elif kind == "status-changed":
            status = str(event.detail.get("status") or "")
            self.switch({"waiting": "waiting", "closed": "closed"}.get(status, "running"), moment)

    def switch(self, mode: str, moment: dt.datetime | None) -> None:
        if mode == self.mode or moment is None:
            self.mode = mode
            return
        if self.mode == "running":
            self.halt_start = moment
        elif mode == "running" and self.halt_start is not None:
            self.halts.append((self.halt_start, moment))
            self.halt_start = None
        self.mode = mode

    def result(self) -> Timeline:
        halts = list(self.halts)
        if self.mode != "running" and self.halt_start is not None:
            halts.append((self.halt_start, None))
        return Timeline(
            halts=halts,
            responses=self.responses,
            restarts=self.restarts,
            closed=self.mode == "closed",
            waiting=self.mode == "waiting",
        )
