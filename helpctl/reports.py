"""Reports over many cases: first-response performance against the SLA, per organization.

A case counts in a window when its first-response clock started in it (the report time,
else the time the case was opened). Its first response is then one of:

- within target: answered within `sla.first_response_hours` office hours;
- breached: answered late, or still unanswered past the target;
- pending: unanswered and still within the target (or paused while waiting);
- no response: closed without a recorded notification, within the target.

The share is `within target / (within target + breached)`, so cases whose outcome is not
known yet do not count. Medians are over the answered cases, in office hours and in
calendar hours.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import statistics
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from helpctl import sla
from helpctl.errors import HelpctlError, UsageError
from helpctl.findings import isoformat

if TYPE_CHECKING:
    from helpctl.cases.model import Case
    from helpctl.cases.store import CaseStore
    from helpctl.config.settings import SlaSettings

logger = logging.getLogger(__name__)

NO_ORGANIZATION = "(none)"
SECONDS_PER_HOUR = 3600


@dataclasses.dataclass
class SlaRow:
    """First-response figures of one organization, or of all cases (`organization` "all")."""

    organization: str
    cases: int = 0
    answered: int = 0
    within_target: int = 0
    breached: int = 0
    pending: int = 0
    no_response: int = 0
    office_hours: list[float] = dataclasses.field(default_factory=list)
    calendar_hours: list[float] = dataclasses.field(default_factory=list)

    @property
    def share(self) -> float | None:
        """Share of the decided cases answered within target, or None when no case is decided."""
        decided = self.within_target + self.breached
        return self.within_target / decided if decided else None

    def add(self, clock: sla.Clock) -> None:
        self.cases += 1
        if clock.met_at is not None:
            self.answered += 1
            self.office_hours.append(clock.elapsed_hours)
            self.calendar_hours.append(max(0.0, (clock.met_at - clock.started_at).total_seconds() / SECONDS_PER_HOUR))
        if clock.breached:
            self.breached += 1
        elif clock.met_at is not None:
            self.within_target += 1
        elif clock.stopped:
            self.no_response += 1
        else:
            self.pending += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "organization": self.organization,
            "cases": self.cases,
            "answered": self.answered,
            "within_target": self.within_target,
            "breached": self.breached,
            "pending": self.pending,
            "no_response": self.no_response,
            "share_within_target": _rounded(self.share, 4),
            "median_office_hours": _rounded(_median(self.office_hours), 2),
            "median_calendar_hours": _rounded(_median(self.calendar_hours), 2),
        }


def sla_report(
    cases: Iterable[Case],
    sla_settings: SlaSettings,
    since: dt.datetime,
    until: dt.datetime,
    now: dt.datetime,
) -> dict[str, Any]:
    """Return first-response figures for the cases whose clock started in [since, until)."""
    total = SlaRow("all")
    by_organization: dict[str, SlaRow] = {}
    for case in cases:
        clock = sla.first_response(case, sla_settings, now)
        if not since <= clock.started_at < until:
            continue
        organization = case.organization or NO_ORGANIZATION
        by_organization.setdefault(organization, SlaRow(organization)).add(clock)
        total.add(clock)

    return {
        "since": isoformat(since),
        "until": isoformat(until),
        "target_hours": sla_settings.first_response_hours,
        "total": total.as_dict(),
        "organizations": [by_organization[name].as_dict() for name in sorted(by_organization)],
    }


def cases_since(store: CaseStore, since: dt.datetime) -> list[Case]:
    """Load the cases opened at or after `since`. Damaged case files are skipped with a warning.

    NOTE: this assumes a case is reported no later than it is opened (`reported_at` <=
    `created_at`). A case whose report time was set after its opening time and falls in
    the window, while it was opened before `since`, is missed.
    """
    from helpctl.cases.index import CaseIndex, ListFilter

    cutoff = isoformat(since)
    loaded = []
    for row in CaseIndex(store.root).list(ListFilter()):
        if row["damaged"] or (row["created_at"] or "") < cutoff:
            continue
        try:
            loaded.append(store.load(row["id"]))
        except HelpctlError as error:
            logger.warning("case %s is left out of the report: %s", row["id"], error.message)
    return loaded


def parse_day(text: str, option: str, offset: dt.timezone, *, end_of_day: bool = False) -> dt.datetime:
    """Parse YYYY-MM-DD (a day in the office's UTC offset) or an ISO 8601 time.

    With `end_of_day`, a bare date means the end of that day (the next midnight).
    """
    value = text.strip()
    try:
        if len(value) == 10:
            moment = dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), tzinfo=offset)
            return moment + dt.timedelta(days=1) if end_of_day else moment
        moment = dt.datetime.fromisoformat(value)
    except ValueError as error:
        raise UsageError(f"{option}: {text!r} is not a date", hint="use YYYY-MM-DD or an ISO 8601 time such as 2026-12-01T08:00:00-05:00") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=offset)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
