"""Office-hours arithmetic and the response-time clocks of a case."""

from __future__ import annotations

import datetime as dt
import random
import time

import pytest

from helpctl.cases.index import CaseIndex, ListFilter
from helpctl.cases.model import Case, Event, Person
from helpctl.cases.store import CaseStore
from helpctl.commands.case_sla import clock_rows, due_filter
from helpctl.config.profiles import load_profile
from helpctl.config.settings import CalendarSettings, SlaSettings
from helpctl.errors import ConfigError
from helpctl.findings import isoformat
from helpctl.sla import FIRST_RESPONSE, NEXT_UPDATE, add_office_hours, clocks, office_calendar, office_hours_between

OFFICE = dt.timezone(dt.timedelta(hours=-5))
UTC = dt.timezone.utc
# Monday to Friday 07:00-19:00 at UTC-5; 2026-12-08 (a Tuesday) is a holiday.
CALENDAR = CalendarSettings(utc_offset="-05:00", weekdays=[0, 1, 2, 3, 4], start="07:00", end="19:00", holidays=["2026-12-08", "2026-12-25"])
SLA = SlaSettings(first_response_hours=16, next_update_hours=16, due_soon_hours=4, calendar=CALENDAR)
ENGINEER = "support.sandbox@fluidattacks.com"


def local(day: int, hour: int, minute: int = 0, month: int = 12) -> dt.datetime:
    """A moment in December 2026 (or `month`) at the office's UTC-5."""
    return dt.datetime(2026, month, day, hour, minute, tzinfo=OFFICE)


def event(at: dt.datetime, name: str, **detail) -> Event:
    return Event(at=isoformat(at), actor=ENGINEER, event=name, detail=detail)


def make_case(reported: dt.datetime, events: list[Event], status: str = "open", case_id: str = "261204-aaaaaa", organization: str | None = "kiwicorp") -> Case:
    timeline = [event(reported, "opened", source="typed"), *events]
    return Case(
        id=case_id,
        profile="sandbox",
        subject="Vulnerabilities tab is empty",
        requester=Person("ana.gomez@kiwicorp.co", "Ana Gómez"),
        status=status,
        organization=organization,
        created_at=isoformat(reported),
        updated_at=timeline[-1].at,
        reported_at=isoformat(reported),
        timeline=timeline,
    )


def by_name(case: Case, now: dt.datetime) -> dict:
    return {clock.name: clock for clock in clocks(case, SLA, now)}


def brute_force_hours(start: dt.datetime, end: dt.datetime, step_minutes: int = 15) -> float:
    """Count office hours step by step: slow, but obviously right for aligned times."""
    step = dt.timedelta(minutes=step_minutes)
    count, moment = 0, start
    while moment < end:
        here = moment.astimezone(OFFICE)
        office_day = here.weekday() < 5 and here.date().isoformat() not in CALENDAR.holidays
        if office_day and 7 * 60 <= here.hour * 60 + here.minute < 19 * 60:
            count += 1
        moment += step
    return count * step_minutes / 60


# ----- office_hours_between -----


def test_hours_same_day():
    assert office_hours_between(local(7, 9), local(7, 11, 30), CALENDAR) == 2.5


def test_hours_across_weekend():
    # Friday 17:00 to Monday 09:00: two hours on Friday and two on Monday.
    assert office_hours_between(local(4, 17), local(7, 9), CALENDAR) == 4.0


def test_hours_skip_holiday():
    # Monday 18:00 to Wednesday 08:00, with Tuesday a holiday.
    assert office_hours_between(local(7, 18), local(9, 8), CALENDAR) == 2.0


def test_hours_before_and_after_opening():
    assert office_hours_between(local(7, 5), local(7, 8), CALENDAR) == 1.0
    assert office_hours_between(local(7, 20), local(9, 7, 30), CALENDAR) == 0.5
    assert office_hours_between(local(5, 10), local(6, 22), CALENDAR) == 0.0


def test_hours_negative_when_reversed():
    assert office_hours_between(local(7, 11), local(7, 9), CALENDAR) == -2.0


def test_hours_many_weeks():
    # 2027-01-04 to 2028-01-03 is 52 weeks minus the holidays, none of them in 2027 here.
    start = dt.datetime(2027, 1, 4, tzinfo=OFFICE)
    end = dt.datetime(2028, 1, 3, tzinfo=OFFICE)
    assert office_hours_between(start, end, CALENDAR) == 52 * 5 * 12


def test_hours_match_brute_force():
    generator = random.Random(20741933)
    base = local(1, 0)
    for _ in range(40):
        start = base + dt.timedelta(minutes=15 * generator.randrange(0, 4 * 24 * 40))
        end = start + dt.timedelta(minutes=15 * generator.randrange(0, 4 * 24 * 9))
        assert office_hours_between(start, end, CALENDAR) == brute_force_hours(start, end), (start, end)


def test_hours_accept_utc_and_naive():
    aware = office_hours_between(local(7, 9), local(7, 10), CALENDAR)
    naive = office_hours_between(dt.datetime(2026, 12, 7, 14), dt.datetime(2026, 12, 7, 15), CALENDAR)
    assert aware == naive == 1.0


# ----- add_office_hours -----


def test_add_across_weekend_and_holiday():
    # Friday 18:00: one hour on Friday, twelve on Monday, Tuesday is a holiday, three on Wednesday.
    due = add_office_hours(local(4, 18), 16, CALENDAR)
    assert due == local(9, 10)
    assert due.tzinfo == UTC


def test_add_ends_at_closing_time():
    assert add_office_hours(local(7, 7), 12, CALENDAR) == local(7, 19)


def test_add_from_weekend_and_night():
    assert add_office_hours(local(5, 12), 1, CALENDAR) == local(7, 8)
    assert add_office_hours(local(7, 23), 0.5, CALENDAR) == local(9, 7, 30)


def test_add_zero_and_negative():
    assert add_office_hours(local(5, 12), 0, CALENDAR) == local(5, 12)
    with pytest.raises(ValueError):
        add_office_hours(local(7, 9), -1, CALENDAR)


def test_add_round_trips():
    generator = random.Random(7)
    for _ in range(200):
        start = local(1, 0) + dt.timedelta(minutes=generator.randrange(0, 60 * 24 * 60))
        hours = generator.randrange(1, 400) / 4
        due = add_office_hours(start, hours, CALENDAR)
        assert office_hours_between(start, due, CALENDAR) == hours
        # The earliest such moment: a minute before is short of the hours.
        assert office_hours_between(start, due - dt.timedelta(minutes=1), CALENDAR) < hours


def test_add_long_span_is_fast():
    started = time.perf_counter()
    due = add_office_hours(local(7, 7), 10 * 52 * 5 * 12, CALENDAR)
    assert time.perf_counter() - started < 0.05
    assert office_hours_between(local(7, 7), due, CALENDAR) == 10 * 52 * 5 * 12
    assert due.year == 2036


def test_calendar_rejects_bad_settings():
    cases = [
        CalendarSettings(utc_offset="EST"),
        CalendarSettings(start="19:00", end="07:00"),
        CalendarSettings(start="7am"),
        CalendarSettings(weekdays=[]),
        CalendarSettings(weekdays=[7]),
        CalendarSettings(holidays=["2026-13-01"]),
    ]
    for settings in cases:
        with pytest.raises(ConfigError):
            office_calendar(settings)


def test_shipped_profile_calendar():
    profile = load_profile("fluidattacks")
    assert profile.sla.first_response_hours == 16
    office = office_calendar(profile.sla.calendar)
    assert office.offset == OFFICE
    assert (office.opens, office.closes) == (7 * 60, 19 * 60)


# ----- clocks -----


def test_first_response_running():
    case = make_case(local(4, 10), [])
    clock = by_name(case, local(4, 14))[FIRST_RESPONSE]
    assert clock.state == "running"
    assert clock.remaining_hours == 12.0
    assert clock.due_at == local(7, 14)
    assert not clock.due_soon
    assert not clock.breached


def test_first_response_due_soon():
    clock = by_name(make_case(local(4, 10), []), local(7, 11))[FIRST_RESPONSE]
    assert clock.remaining_hours == 3.0
    assert clock.due_soon
    assert not clock.breached


def test_first_response_breached_by_hours():
    clock = by_name(make_case(local(4, 10), []), local(7, 17))[FIRST_RESPONSE]
    assert clock.breached
    assert clock.remaining_hours == -3.0
    assert not clock.due_soon


def test_reported_at_starts_the_clock():
    case = make_case(local(4, 10), [])
    case.created_at = isoformat(local(4, 15))
    assert by_name(case, local(4, 16))[FIRST_RESPONSE].elapsed_hours == 6.0


def test_first_response_met():
    case = make_case(local(4, 10), [event(local(4, 12), "notified", template="received", ok=True)])
    found = by_name(case, local(7, 17))
    first = found[FIRST_RESPONSE]
    assert first.state == "met"
    assert first.met_at == local(4, 12)
    assert first.remaining_hours == 14.0
    assert not first.breached
    assert found[NEXT_UPDATE].started_at == local(4, 12)
    assert found[NEXT_UPDATE].remaining_hours == -1.0


def test_first_response_met_late():
    case = make_case(local(4, 10), [event(local(7, 18), "notified", template="received", ok=True)])
    first = by_name(case, local(7, 19))[FIRST_RESPONSE]
    assert first.met_at == local(7, 18)
    assert first.breached
    assert first.remaining_hours == -4.0


def test_rejected_notification_does_not_count():
    case = make_case(local(4, 10), [event(local(4, 12), "notified", template="received", ok=False)])
    found = by_name(case, local(4, 13))
    assert found[FIRST_RESPONSE].met_at is None
    assert NEXT_UPDATE not in found


def test_waiting_pauses_then_reply_restarts():
    events = [
        event(local(4, 11), "notified", template="needs-info", ok=True),
        event(local(4, 11), "status-changed", previous="open", status="waiting", reason="needs-info"),
    ]
    case = make_case(local(4, 10), events, status="waiting")

    paused = by_name(case, local(9, 12))[NEXT_UPDATE]
    assert paused.paused
    assert paused.state == "paused"
    assert paused.due_at is None
    assert paused.remaining_hours == 16.0
    assert not paused.breached

    case.timeline += [
        event(local(9, 9), "status-changed", previous="waiting", status="open", reason="the requester replied"),
        event(local(9, 9), "message-added", source="email", message_id="<reply@kiwicorp.co>"),
    ]
    case.status = "open"
    running = by_name(case, local(9, 12))[NEXT_UPDATE]
    assert not running.paused
    assert running.started_at == local(9, 9)
    assert running.remaining_hours == 13.0
    assert running.due_at == local(10, 13)


def test_waiting_before_answer_resumes():
    events = [
        event(local(7, 9), "status-changed", previous="open", status="waiting"),
        event(local(9, 9), "message-added", source="email"),
    ]
    case = make_case(local(4, 10), events)
    first = by_name(case, local(9, 11))[FIRST_RESPONSE]
    # Friday 10-19 and Monday 7-9 run (11 hours), the wait does not, Wednesday 9-11 runs.
    assert first.elapsed_hours == 13.0
    assert first.due_at == local(9, 14)


def test_closed_case_stops_clocks():
    events = [
        event(local(4, 12), "notified", template="received", ok=True),
        event(local(7, 9), "closed", resolution="answered", previous_status="open"),
    ]
    found = by_name(make_case(local(4, 10), events, status="closed"), local(11, 9))
    assert list(found) == [FIRST_RESPONSE]
    assert found[FIRST_RESPONSE].state == "met"

    unanswered = make_case(local(4, 10), [event(local(7, 9), "closed", resolution="duplicate")], status="closed")
    first = by_name(unanswered, local(11, 9))[FIRST_RESPONSE]
    assert first.state == "stopped"
    assert first.due_at is None
    assert first.elapsed_hours == 11.0
    assert not first.breached


def test_reopened_restarts_update():
    events = [
        event(local(4, 12), "notified", template="resolved", ok=True),
        event(local(4, 13), "closed", resolution="fixed"),
        event(local(9, 8), "reopened", reason="the problem came back"),
    ]
    found = by_name(make_case(local(4, 10), events), local(9, 10))
    assert found[NEXT_UPDATE].started_at == local(9, 8)
    assert found[NEXT_UPDATE].remaining_hours == 14.0


def test_status_without_event_pauses():
    # A case file set to waiting by hand, with no status event: the file's status wins.
    case = make_case(local(4, 10), [event(local(4, 11), "notified", template="update", ok=True)], status="waiting")
    case.updated_at = isoformat(local(4, 12))
    update = by_name(case, local(9, 12))[NEXT_UPDATE]
    assert update.paused
    assert update.elapsed_hours == 1.0


def test_clock_rows_for_case_show():
    profile = load_profile("sandbox")
    rows = clock_rows(make_case(local(4, 10), []), profile, local(7, 17))
    assert [row["name"] for row in rows] == [FIRST_RESPONSE]
    assert rows[0]["state"] == "running"
    assert rows[0]["breached"] is True
    assert rows[0]["summary"] == "breached by 3.0 office h"
    assert rows[0]["due_at"] == isoformat(local(7, 14))


# ----- due_filter over the case index -----


def test_due_filter_on_index_rows():
    profile = load_profile("sandbox")
    store = CaseStore()
    now = local(7, 11)
    store.create(make_case(local(4, 10), [], case_id="261204-due000"))  # 3 h left: due soon
    store.create(make_case(local(3, 18), [], case_id="261203-late00"))  # 1 h late: breached
    store.create(make_case(local(7, 9), [], case_id="261207-fresh0"))  # 14 h left
    answered = [event(local(4, 9), "notified", template="received", ok=True), event(local(4, 9, 30), "closed", resolution="done")]
    store.create(make_case(local(4, 8), answered, status="closed", case_id="261204-closed"))
    rows = CaseIndex(store.root).list(ListFilter())

    due = due_filter(rows, profile, now, due=True, breached=False, store=store)
    breached = due_filter(rows, profile, now, due=False, breached=True, store=store)
    either = due_filter(rows, profile, now, due=True, breached=True, store=store)

    assert [row["id"] for row in due] == ["261204-due000"]
    assert [row["id"] for row in breached] == ["261203-late00"]
    assert sorted(row["id"] for row in either) == ["261203-late00", "261204-due000"]
    assert due[0]["clocks"][0]["remaining_hours"] == 3.0
    assert due_filter(rows, profile, now, due=False, breached=False, store=store) == rows


def test_due_filter_skips_damaged_case():
    profile = load_profile("sandbox")
    store = CaseStore()
    store.create(make_case(local(4, 8), [], case_id="261204-late00"))
    (store.folder("261204-late00") / "case.yaml").write_text("id: [unclosed\n")
    rows = [{"id": "261204-late00", "status": "open", "created_at": None, "updated_at": None}]
    assert due_filter(rows, profile, local(7, 11), due=False, breached=True, store=store) == []
