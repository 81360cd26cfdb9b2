"""The case timeline: extractors per source, merge order, filters, streaming and the chart."""

from __future__ import annotations

import datetime as dt
import json
import os
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpctl import charts, timeline
from helpctl.cases.model import Case, Event, Person, Subjects
from helpctl.cases.store import CaseStore, new_case_id
from helpctl.errors import UsageError
from helpctl.findings import Finding, isoformat

UTC = dt.timezone.utc
REPORTED = dt.datetime(2026, 12, 4, 18, 0, tzinfo=UTC)
ACTOR = "support.sandbox@fluidattacks.com"


def epoch(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def make_case(store: CaseStore, **fields) -> Case:
    case = Case(
        id=new_case_id(),
        profile="sandbox",
        subject="Vulnerabilities tab lists 4 of 7",
        requester=Person(email="ana.gomez@kiwicorp.co", name="Ana Gómez"),
        reported_at=isoformat(REPORTED),
        created_at=isoformat(REPORTED + dt.timedelta(hours=1)),
        **fields,
    )
    return store.create(case)


def add_evidence(store: CaseStore, case_id: str, source: str, check: str, name: str, rows: list) -> str:
    raw_ref, _ = store.write_rows(case_id, name, iter(rows))
    with store.edit(case_id) as case:
        case.put_finding(Finding(source=source, check=check, subject=name, outcome="ok", summary=f"{name} rows", raw_ref=raw_ref))
    return raw_ref


def mixpanel_row(moment: dt.datetime, name: str = "View vulnerabilities") -> dict:
    return {"event": name, "properties": {"time": epoch(moment), "distinct_id": "4f0a738f", "group": "kiwiapp"}}


def bugsnag_event(moment: dt.datetime) -> dict:
    return {
        "record": "event",
        "id": f"event-{epoch(moment)}",
        "error_id": "35145cbe",
        "received_at": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
        "exceptions": [{"errorClass": "TypeError", "message": "Cannot read properties of undefined (reading 'edges')"}],
        "context": "VulnerabilitiesView",
        "user": {"email": "ana.gomez@kiwicorp.co"},
    }


@pytest.fixture()
def store(tmp_path: Path) -> CaseStore:
    return CaseStore(tmp_path / "cases")


# ---------------------------------------------------------------------------------------------
# Times


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-12-04T18:48:07.453Z", dt.datetime(2026, 12, 4, 18, 48, 7, 453000, tzinfo=UTC)),
        ("2026-12-04 18:00:00.000", dt.datetime(2026, 12, 4, 18, 0, tzinfo=UTC)),
        ("2026-12-04 18:00:00", dt.datetime(2026, 12, 4, 18, 0, tzinfo=UTC)),
        ("2026-12-04T13:00:00-05:00", dt.datetime(2026, 12, 4, 18, 0, tzinfo=UTC)),
        (1796407200, dt.datetime(2026, 12, 4, 18, 0, tzinfo=UTC)),
        (1796407200.5, dt.datetime(2026, 12, 4, 18, 0, 0, 500000, tzinfo=UTC)),
        (1796407200000, dt.datetime(2026, 12, 4, 18, 0, tzinfo=UTC)),
        ("1796407200", dt.datetime(2026, 12, 4, 18, 0, tzinfo=UTC)),
    ],
)
def test_parse_moment_forms(value, expected):
    assert timeline.parse_moment(value) == expected


@pytest.mark.parametrize("value", [None, "", "-", " ", 0, -5, "soon", True, {}, [], "2026-13-45", 10**30])
def test_parse_moment_rejects(value):
    assert timeline.parse_moment(value) is None


def test_option_time_invalid():
    with pytest.raises(UsageError) as raised:
        timeline.parse_option_time("yesterday", "--since")

    assert "--since" in raised.value.message


# ---------------------------------------------------------------------------------------------
# Extractors


def test_membership_extractor():
    row = {
        "email": "ana.gomez@kiwicorp.co",
        "role": "user_manager",
        "invitationState": "REGISTERED",
        "firstLogin": "2026-05-18 20:19:02",
        "lastLogin": "2026-12-03 20:19:02",
        "invitationDate": None,
    }

    entries = timeline.extract_platform_membership(row)

    assert [entry.event for entry in entries] == ["first-login", "last-login"]
    assert entries[1].at == dt.datetime(2026, 12, 3, 20, 19, 2, tzinfo=UTC)
    assert entries[1].series == "usage"
    assert "ana.gomez@kiwicorp.co" in entries[1].label


def test_membership_pending_invitation():
    row = {"email": "carlos.ruiz@kiwicorp.co", "role": "user", "firstLogin": "-", "lastLogin": None, "invitationDate": "2026-11-25 20:19:02"}

    entries = timeline.extract_platform_membership(row)

    assert len(entries) == 1
    assert entries[0].event == "invited"
    assert entries[0].label == "carlos.ruiz@kiwicorp.co invited as user"
    assert entries[0].series is None


def test_membership_without_dates():
    row = {"email": "nico.paez@kiwicorp.co", "role": "user", "firstLogin": "-", "lastLogin": "-"}

    assert timeline.extract_platform_membership(row) is None


def test_platform_event_extractor():
    row = {
        "id": "413372600",
        "eventType": "ENVIRONMENT_ISSUES",
        "eventStatus": "SOLVED",
        "eventDate": "2026-10-25 20:19:02",
        "closingDate": "2026-10-28 20:19:02",
        "detail": "The staging environment answered 503 for two days",
    }

    entries = timeline.extract_platform_event(row)

    assert [entry.event for entry in entries] == ["event-created", "event-solved"]
    assert "503 for two days" in entries[0].label
    assert entries[1].label == "ENVIRONMENT_ISSUES event 413372600 solved"


def test_vulnerability_extractor():
    vulnerability = {
        "type": "vulnerability",
        "where": "kiwiapp/api/requirements.txt",
        "specific": "12",
        "state": "VULNERABLE",
        "treatmentStatus": "IN_PROGRESS",
        "reportDate": "2026-10-20 20:19:02",
    }
    finding = {"type": "finding", "id": "124df947", "title": "011. Use of software with known vulnerabilities", "openVulnerabilities": 5}

    entries = timeline.extract_platform_vulnerability(vulnerability)

    assert entries[0].event == "vulnerability-reported"
    assert "kiwiapp/api/requirements.txt (12)" in entries[0].label
    assert timeline.extract_platform_vulnerability(finding) is None


def test_mail_search_extractor():
    sent = {"kind": "search", "message": {"ts": 1796397542, "subject": "Your kiwiapp report is ready", "email": "ana.gomez@kiwicorp.co", "state": "sent", "diag": "250 2.0.0 OK"}}
    bounced = {
        "kind": "search",
        "message": {
            "ts": 1795637942,
            "subject": "You have been invited to kiwiapp",
            "email": "carlos.ruiz@kiwicorp.co",
            "state": "bounced",
            "diag": "smtp;550 5.1.1 <carlos.ruiz@kiwicorp.co>: Recipient address rejected",
        },
    }

    [delivered] = timeline.extract_mail(sent)
    [failed] = timeline.extract_mail(bounced)

    assert delivered.at == dt.datetime.fromtimestamp(1796397542, UTC)
    assert delivered.series is None
    assert "250" not in delivered.label
    assert failed.series == "errors"
    assert failed.label.startswith('mail "You have been invited to kiwiapp" to carlos.ruiz@kiwicorp.co: bounced')
    assert "550 5.1.1" in failed.label


def test_mail_info_extractor():
    row = {
        "kind": "info",
        "message": {
            "ts": 1796156342,
            "subject": "New vulnerabilities reported in kiwiapp",
            "state": "sent",
            "opens_detail": [{"ts": 1796156942, "location": "Bogota, CO"}],
            "clicks_detail": [{"ts": 1796157042, "url": "http://127.0.0.1:8701/orgs/kiwicorp?token=abcdef123456"}],
            "smtp_events": [{"ts": 1796156344, "type": "sent", "diag": "250 2.0.0 OK queued as 12DCF420A7"}],
        },
    }

    entries = timeline.extract_mail(row)

    assert [entry.event for entry in entries] == ["smtp", "mail-opened", "mail-clicked"]
    assert entries[0].series is None
    assert entries[1].series == "usage"
    assert "Bogota, CO" in entries[1].label
    assert all("127.0.0.1" not in entry.label for entry in entries)


def test_mail_rows_without_items():
    request = {"kind": "request", "address": "ana.gomez@kiwicorp.co", "query": 'email:"ana.gomez@kiwicorp.co"'}
    quiet_info = {"kind": "info", "message": {"ts": 1796242742, "state": "rejected", "smtp_events": [], "opens_detail": []}}

    assert timeline.extract_mail(request) == []
    assert timeline.extract_mail(quiet_info) == []


def test_mail_reject_extractor():
    row = {"kind": "reject", "entry": {"email": "carlos.ruiz@kiwicorp.co", "reason": "hard-bounce", "detail": "smtp;550 5.1.1", "created_at": "2026-11-25 20:19:42"}}

    [entry] = timeline.extract_mail(row)

    assert entry.at == dt.datetime(2026, 11, 25, 20, 19, 42, tzinfo=UTC)
    assert entry.event == "mail-rejects-list"
    assert "hard-bounce" in entry.label


def test_bugsnag_extractor():
    moment = dt.datetime(2026, 12, 4, 18, 48, 7, 453000, tzinfo=UTC)
    error = {"record": "error", "error_class": "TypeError", "message": "Cannot read", "context": "VulnerabilitiesView", "events": 8, "users": 1, "first_seen": "2026-12-04T17:58:46.453Z"}

    [event] = timeline.extract_bugsnag(bugsnag_event(moment))
    [first] = timeline.extract_bugsnag(error)

    assert event.at == moment
    assert event.series == "errors"
    assert event.label == "TypeError: Cannot read properties of undefined (reading 'edges') in VulnerabilitiesView (ana.gomez@kiwicorp.co)"
    assert first.event == "error-first-seen"
    assert first.series is None


def test_mixpanel_extractor():
    [entry] = timeline.extract_mixpanel(mixpanel_row(REPORTED, "Filter vulnerabilities"))

    assert entry.at == REPORTED
    assert entry.label == "Filter vulnerabilities in kiwiapp"
    assert entry.series == "usage"


def test_logrocket_extractor():
    row = {
        "sessionID": "s-1",
        "startedAt": int(REPORTED.timestamp() * 1000),
        "durationMinutes": 35,
        "highlights": "Opened kiwiapp > Vulnerabilities: the table stayed empty. [Watch](http://127.0.0.1:8707/app/s/1)",
    }

    [entry] = timeline.extract_logrocket(row)

    assert entry.at == REPORTED
    assert entry.label == "session of 35 min: Opened kiwiapp > Vulnerabilities: the table stayed empty."


def test_logs_extractor():
    message = {"level": "ERROR", "user": "ana.gomez@kiwicorp.co", "operation": "GroupVulnerabilities", "message": "Unexpected error resolving Group.vulnerabilities"}
    error_row = {"@timestamp": "2026-12-04 18:50:56.133", "@message": json.dumps(message), "operation": "GroupVulnerabilities", "@ptr": "p1"}
    info_row = {"@timestamp": "2026-12-04 19:20:53.181", "@message": "plain text line", "level": "INFO", "user": "ana.gomez@kiwicorp.co", "operation": "Me"}

    [error] = timeline.extract_logs(error_row)
    [info] = timeline.extract_logs(info_row)

    assert error.at == dt.datetime(2026, 12, 4, 18, 50, 56, 133000, tzinfo=UTC)
    assert error.label == "ERROR GroupVulnerabilities: Unexpected error resolving Group.vulnerabilities (ana.gomez@kiwicorp.co)"
    assert error.series == "errors"
    assert info.label == "INFO Me: plain text line (ana.gomez@kiwicorp.co)"
    assert info.series == "usage"


@pytest.mark.parametrize(
    ("status", "graphql_errors", "series"),
    [(200, [], "usage"), (500, [], "errors"), (404, [], "errors"), (200, [{"message": "Access denied", "path": ["group"]}], "errors"), (0, [], "errors")],
)
def test_browser_extractor(status, graphql_errors, series):
    row = {"at": "2026-12-04T17:55:01.120Z", "method": "POST", "url": "http://127.0.0.1:8701/api", "status": status, "time_ms": 812.4, "graphql_errors": graphql_errors}

    [entry] = timeline.extract_browser(row)

    assert entry.at == dt.datetime(2026, 12, 4, 17, 55, 1, 120000, tzinfo=UTC)
    assert entry.series == series
    assert entry.label.startswith(f"POST http://127.0.0.1:8701/api -> {status} in 812 ms")


@pytest.mark.parametrize(
    "row",
    [
        {"at": "2026-12-04T18:00:00Z", "message": "m"},
        {"@timestamp": "2026-12-04 18:00:00.000", "message": "m"},
        {"timestamp": "2026-12-04T18:00:00+00:00", "message": "m"},
        {"ts": 1796407200, "message": "m"},
        {"received_at": "2026-12-04T18:00:00Z", "message": "m"},
        {"startedDateTime": "2026-12-04T18:00:00.000Z", "message": "m"},
        {"time": "2026-12-04T18:00:00Z", "message": "m"},
    ],
)
def test_generic_time_keys(row):
    [entry] = timeline.extract_generic(row)

    assert entry.at == REPORTED
    assert entry.label == "m"


def test_generic_label_and_no_time():
    [entry] = timeline.extract_generic({"ts": 1796407200, "code": 7, "state": "odd", "nested": {"x": 1}})

    assert entry.label == "code=7, state=odd"
    assert timeline.extract_generic({"name": "no time here"}) is None


def test_extractor_dispatch():
    assert timeline.extractor_for("platform", "membership") is timeline.extract_platform_membership
    assert timeline.extractor_for("platform", "token") is timeline.extract_generic
    assert timeline.extractor_for("mail", "delivery") is timeline.extract_mail
    assert timeline.extractor_for("newsource", None) is timeline.extract_generic


def test_case_event_labels():
    events = [
        Event(at="2026-12-04T19:00:00Z", actor=ACTOR, event="classified", detail={"label": "bug", "rules": ["vulnerability-count-mismatch"], "override": False}),
        Event(at="2026-12-04T19:00:00Z", actor=ACTOR, event="filed", detail={"iid": 12, "url": "http://127.0.0.1:8702/fluidattacks/universe/-/issues/12", "assignee": "pmorales"}),
        Event(
            at="2026-12-04T19:00:00Z",
            actor=ACTOR,
            event="notified",
            detail={"template": "received", "language": "es", "recipients": ["ana.gomez@kiwicorp.co"], "statuses": [{"email": "ana.gomez@kiwicorp.co", "status": "sent"}]},
        ),
        Event(at="2026-12-04T19:00:00Z", actor=ACTOR, event="issue-comment", detail={"author": "pmorales", "excerpt": "Looking into it\nnow"}),
    ]

    labels = [timeline.describe_event(event) for event in events]

    assert labels[0] == "classified as bug by vulnerability-count-mismatch"
    assert labels[1] == "filed issue #12 for pmorales: http://127.0.0.1:8702/fluidattacks/universe/-/issues/12"
    assert labels[2] == "sent the received message (es) to ana.gomez@kiwicorp.co: sent"
    assert labels[3] == "issue-comment: author=pmorales, excerpt=Looking into it now"


# ---------------------------------------------------------------------------------------------
# Merging


def test_merge_order(store):
    case = make_case(store)
    with store.edit(case.id) as editing:
        editing.timeline = [
            Event(at=isoformat(REPORTED + dt.timedelta(hours=1)), actor=ACTOR, event="opened", detail={"source": "typed"}),
            Event(at=isoformat(REPORTED + dt.timedelta(hours=1)), actor=ACTOR, event="note", detail={"text": "asked for a screenshot"}),
        ]
    minutes = dt.timedelta(minutes=1)
    add_evidence(store, case.id, "usage", "user-activity", "usage-ana", [
        mixpanel_row(REPORTED + 10 * minutes), mixpanel_row(REPORTED - 30 * minutes), mixpanel_row(REPORTED),
    ])
    add_evidence(store, case.id, "errors", "user-errors", "errors-ana", [bugsnag_event(REPORTED + 5 * minutes), bugsnag_event(REPORTED - 30 * minutes)])

    result = timeline.build(store.load(case.id), store.folder(case.id))

    order = [(item.at - REPORTED, item.source, item.event) for item in result.items]
    assert order == [
        (-30 * minutes, "errors", "error"),
        (-30 * minutes, "usage", "usage"),
        (0 * minutes, "case", "reported"),
        (0 * minutes, "usage", "usage"),
        (5 * minutes, "errors", "error"),
        (10 * minutes, "usage", "usage"),
        (60 * minutes, "case", "opened"),
        (60 * minutes, "case", "note"),
    ]
    assert result.matched == 8
    assert result.items[-1].actor == ACTOR
    assert result.items[0].ref == "evidence/errors-ana.jsonl"


def test_untimed_rows_counted(store):
    case = make_case(store)
    add_evidence(store, case.id, "platform", "token", "platform-token", [{"userEmail": ACTOR, "role": "hacker"}])
    add_evidence(store, case.id, "platform", "membership", "platform-membership", [{"email": "nico.paez@kiwicorp.co", "lastLogin": "-"}])

    result = timeline.build(store.load(case.id), store.folder(case.id))

    assert result.untimed == {"platform": 2}
    assert [item.event for item in result.items] == ["reported"]


def test_unreadable_lines_counted(store):
    case = make_case(store)
    raw_ref = add_evidence(store, case.id, "usage", "user-activity", "usage-ana", [mixpanel_row(REPORTED)])
    with open(store.folder(case.id) / raw_ref, "a", encoding="utf-8") as handle:
        handle.write("{not json\n[1, 2]\n\n")

    result = timeline.build(store.load(case.id), store.folder(case.id))

    assert result.unreadable == {"usage": 2}
    assert [item.source for item in result.items] == ["case", "usage"]


def test_missing_and_outside_refs(store, tmp_path):
    secret = tmp_path / "outside.jsonl"
    secret.write_text(json.dumps({"at": "2026-12-04T18:00:00Z", "message": "outside the case"}) + "\n")
    case = make_case(store)
    with store.edit(case.id) as editing:
        editing.put_finding(Finding(source="logs", check="user-activity", subject="a", outcome="ok", summary="s", raw_ref="evidence/gone.jsonl"))
        editing.put_finding(Finding(source="logs", check="user-errors", subject="b", outcome="ok", summary="s", raw_ref="../../outside.jsonl"))

    result = timeline.build(store.load(case.id), store.folder(case.id))

    assert result.missing == ["evidence/gone.jsonl", "../../outside.jsonl"]
    assert all("outside the case" not in item.label for item in result.items)


def test_logs_rows_deduplicated(store):
    case = make_case(store)
    message = json.dumps({"level": "ERROR", "operation": "GroupVulnerabilities", "message": "Unexpected error resolving Group.vulnerabilities"})
    rows = [{"@timestamp": f"2026-12-04 18:0{number}:00.000", "@message": message, "@ptr": f"ptr-{number}"} for number in range(3)]
    add_evidence(store, case.id, "logs", "user-activity", "logs-user-activity", rows)
    add_evidence(store, case.id, "logs", "user-errors", "logs-user-errors", rows[1:])

    result = timeline.build(store.load(case.id), store.folder(case.id))

    assert [item.source for item in result.items].count("logs") == 3
    assert result.duplicates == 2


# ---------------------------------------------------------------------------------------------
# Filters


@pytest.fixture()
def busy_case(store) -> Case:
    case = make_case(store)
    hours = [REPORTED + dt.timedelta(hours=offset) for offset in (-3, -2, -1, 1, 2)]
    add_evidence(store, case.id, "usage", "user-activity", "usage-ana", [mixpanel_row(moment) for moment in hours])
    add_evidence(store, case.id, "errors", "user-errors", "errors-ana", [bugsnag_event(moment) for moment in hours[:2]])
    add_evidence(store, case.id, "platform", "token", "platform-token", [{"userEmail": ACTOR}])
    return store.load(case.id)


def test_filter_source_and_kind(store, busy_case):
    folder = store.folder(busy_case.id)

    errors_only = timeline.build(busy_case, folder, timeline.TimelineFilter(sources=frozenset({"errors"})))
    case_only = timeline.build(busy_case, folder, timeline.TimelineFilter(kind="case"))
    evidence = timeline.build(busy_case, folder, timeline.TimelineFilter(kind="evidence"))

    assert {item.source for item in errors_only.items} == {"errors"}
    assert len(errors_only.items) == 2
    assert [item.event for item in case_only.items] == ["reported"]
    # Evidence files are not read when the filter excludes them, so nothing is counted.
    assert case_only.untimed == {}
    assert {item.kind for item in evidence.items} == {"evidence"}
    assert evidence.untimed == {"platform": 1}


def test_filter_time_window(store, busy_case):
    criteria = timeline.TimelineFilter(since=REPORTED - dt.timedelta(hours=1), until=REPORTED + dt.timedelta(hours=1))

    result = timeline.build(busy_case, store.folder(busy_case.id), criteria)

    assert [item.at - REPORTED for item in result.items] == [dt.timedelta(hours=-1), dt.timedelta(0), dt.timedelta(hours=1)]


def test_limit_keeps_newest(store, busy_case):
    result = timeline.build(busy_case, store.folder(busy_case.id), timeline.TimelineFilter(limit=2))

    assert [item.at - REPORTED for item in result.items] == [dt.timedelta(hours=1), dt.timedelta(hours=2)]
    assert result.matched == 8
    # The chart still counts every matched item, not only the shown ones.
    chart = result.chart_counts.histogram()
    assert sum(chart.counts["usage"]) == 5
    assert sum(chart.counts["errors"]) == 2


@pytest.mark.parametrize(
    ("criteria", "words"),
    [
        (timeline.TimelineFilter(kind="rows"), "--kind"),
        (timeline.TimelineFilter(limit=0), "--limit"),
        (timeline.TimelineFilter(since=REPORTED, until=REPORTED - dt.timedelta(seconds=1)), "--since"),
    ],
)
def test_filter_rejects(store, busy_case, criteria, words):
    with pytest.raises(UsageError) as raised:
        timeline.build(busy_case, store.folder(busy_case.id), criteria)

    assert words in raised.value.message


def test_unknown_source_rejected(busy_case):
    with pytest.raises(UsageError) as raised:
        timeline.check_sources(busy_case, ["errors", "bugsnag"])

    assert "'bugsnag'" in raised.value.message
    assert "logs" in raised.value.hint


def test_streaming_memory_flat(store):
    case = make_case(store)
    start = REPORTED - dt.timedelta(hours=20)
    rows = (mixpanel_row(start + dt.timedelta(seconds=second)) for second in range(60_000))
    raw_ref = add_evidence(store, case.id, "usage", "user-activity", "usage-big", rows)
    size = os.path.getsize(store.folder(case.id) / raw_ref)
    loaded = store.load(case.id)

    tracemalloc.start()
    result = timeline.build(loaded, store.folder(case.id), timeline.TimelineFilter(limit=10))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert result.matched == 60_001
    assert len(result.items) == 10
    assert size > 5_000_000
    assert peak < 3_000_000


# ---------------------------------------------------------------------------------------------
# Chart


@pytest.mark.parametrize(
    ("span", "width"),
    [
        (dt.timedelta(minutes=30), dt.timedelta(minutes=1)),
        (dt.timedelta(hours=3), dt.timedelta(minutes=5)),
        (dt.timedelta(hours=8), dt.timedelta(minutes=15)),
        (dt.timedelta(hours=23), dt.timedelta(minutes=30)),
        (dt.timedelta(hours=47), dt.timedelta(hours=1)),
        (dt.timedelta(days=20), dt.timedelta(hours=12)),
        (dt.timedelta(days=30), dt.timedelta(days=1)),
        (dt.timedelta(days=3000), dt.timedelta(days=64)),
    ],
)
def test_bin_width_from_span(span, width):
    assert charts.choose_width(REPORTED, REPORTED + span, 48) == width


def test_histogram_bins_and_mark():
    points = [
        (REPORTED - dt.timedelta(minutes=50), "errors"),
        (REPORTED - dt.timedelta(minutes=45), "errors"),
        (REPORTED + dt.timedelta(minutes=65), "usage"),
        (REPORTED + dt.timedelta(minutes=66), "other"),
    ]
    reported = REPORTED + dt.timedelta(minutes=7)

    hist = charts.histogram(points, reported=reported)

    assert hist.width == dt.timedelta(minutes=5)
    assert hist.start == REPORTED - dt.timedelta(minutes=50)
    assert hist.bins == 24
    assert hist.counts["errors"][:2] == [1, 1]
    assert sum(hist.counts["errors"]) == 2
    assert hist.counts["usage"][23] == 1
    assert hist.reported_bin == 11
    assert hist.start + hist.width * hist.reported_bin <= reported < hist.start + hist.width * (hist.reported_bin + 1)


def test_histogram_window_and_empty():
    far = REPORTED - dt.timedelta(hours=30)

    hist = charts.histogram([(far, "errors"), (REPORTED, "usage")], reported=REPORTED)

    assert hist.outside == 1
    assert sum(hist.counts["errors"]) == 0
    assert "1 more events lie over 24 h" in charts.footnote(hist)
    assert charts.histogram([(far, "errors")], reported=REPORTED) is None
    assert charts.histogram([], reported=None) is None


def test_histogram_roundtrip():
    hist = charts.histogram([(REPORTED, "errors"), (REPORTED + dt.timedelta(hours=2), "usage")], reported=REPORTED)

    again = charts.Histogram.from_dict(json.loads(json.dumps(hist.to_dict())))

    assert again == hist


@pytest.mark.parametrize(("count", "largest", "level"), [(0, 5, 0), (1, 100, 1), (50, 100, 4), (100, 100, 7), (3, 0, 0)])
def test_bar_level(count, largest, level):
    assert charts.bar_level(count, largest, len(charts.ASCII_LEVELS)) == level


def test_render_text_plain():
    points = [(REPORTED + dt.timedelta(minutes=minute), "errors") for minute in (0, 1, 2, 30)]
    points += [(REPORTED + dt.timedelta(minutes=minute), "usage") for minute in (5, 40)]

    lines = charts.render_text(charts.histogram(points, reported=REPORTED + dt.timedelta(minutes=20)))

    assert lines[0].startswith("Errors and usage per 1 min, 2026-12-04 18:00Z to 2026-12-04 18:41Z")
    errors_row, usage_row, mark_row = lines[1:4]
    assert errors_row.startswith("errors |###")
    assert errors_row.endswith("| max 1/bin, 4 in all")
    assert usage_row.startswith("usage  |     #")
    assert mark_row.index("^") == errors_row.index("|") + 1 + 20
    assert all(ord(character) < 128 for line in lines for character in line)


def test_render_rich_blocks():
    hist = charts.histogram([(REPORTED, "errors"), (REPORTED + dt.timedelta(minutes=3), "usage")], reported=REPORTED)

    text = charts.render_rich(hist)

    assert "█" in text.plain
    assert "^ reported" in text.plain
    assert any(span.style == "red" for span in text.spans)


def test_render_svg_inline():
    points = [(REPORTED - dt.timedelta(minutes=minute), "errors") for minute in (1, 2, 20)] + [(REPORTED, "usage")]
    hist = charts.histogram(points, reported=REPORTED)

    svg = charts.render_svg(hist)

    assert svg.startswith("<svg ")
    assert "http" not in svg
    assert "<script" not in svg
    assert svg.count("<rect ") == sum(1 for name in hist.counts for count in hist.counts[name] if count)
    assert "reported 18:00Z" in svg


# ---------------------------------------------------------------------------------------------
# Command


def cli():
    from helpctl.app import build_app
    from helpctl.commands import case as case_commands
    from helpctl.commands.case_report import register_case

    if not any(info.name == "timeline" for info in case_commands.app.registered_commands):
        register_case(case_commands.app)
    return build_app()


def test_timeline_command_plain(store, busy_case, monkeypatch):
    monkeypatch.setenv("HELPCTL_CASES_DIR", str(store.root))
    result = CliRunner().invoke(cli(), ["case", "timeline", busy_case.id[:9], "--source", "errors", "-s", "case"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["AT", "SOURCE", "EVENT", "DETAIL"]
    assert lines[1].startswith("2026-12-04 15:00:00Z  errors  error")
    assert lines[3].startswith("2026-12-04 18:00:00Z  case    reported")
    assert any(line.startswith("errors |") for line in lines)
    assert all(ord(character) < 128 for character in result.stdout.replace("ó", ""))


def test_timeline_command_json(store, busy_case, monkeypatch):
    monkeypatch.setenv("HELPCTL_CASES_DIR", str(store.root))
    arguments = ["--json", "case", "timeline", busy_case.id, "--kind", "evidence", "--limit", "3", "--since", "2026-12-04T12:00:00Z"]

    result = CliRunner().invoke(cli(), arguments, catch_exceptions=False)

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["matched"] == 7
    assert data["shown"] == 3
    assert [item["at"] for item in data["items"]] == ["2026-12-04T17:00:00Z", "2026-12-04T19:00:00Z", "2026-12-04T20:00:00Z"]
    assert data["chart"]["series"]["errors"]
    assert data["untimed"] == {"platform": 1}


def test_timeline_command_notes(store, busy_case, monkeypatch):
    monkeypatch.setenv("HELPCTL_CASES_DIR", str(store.root))
    with store.edit(busy_case.id) as editing:
        editing.put_finding(Finding(source="logs", check="user-activity", subject="a", outcome="ok", summary="s", raw_ref="evidence/gone.jsonl"))

    everything = CliRunner().invoke(cli(), ["case", "timeline", busy_case.id, "--no-chart"], catch_exceptions=False)
    nothing = CliRunner().invoke(cli(), ["case", "timeline", busy_case.id, "--since", "2027-01-01"], catch_exceptions=False)

    assert everything.exit_code == 0, everything.output
    assert "skipped 1 rows without a time (platform 1)" in everything.stderr
    assert "evidence files not found in the case folder: evidence/gone.jsonl" in everything.stderr
    assert "errors |" not in everything.stdout
    assert nothing.exit_code == 0, nothing.output
    assert nothing.stdout == ""
    assert "no timeline items match" in nothing.stderr
    assert "no errors or usage events near the reported moment to chart" in nothing.stderr


def test_timeline_command_bad_source(store, busy_case, monkeypatch):
    monkeypatch.setenv("HELPCTL_CASES_DIR", str(store.root))
    result = CliRunner().invoke(cli(), ["case", "timeline", busy_case.id, "--source", "bugsnag"])

    assert isinstance(result.exception, UsageError)
    assert result.exception.exit_code == 2


# ---------------------------------------------------------------------------------------------
# Real evidence: every probe against the sandbox stand-ins on 127.0.0.1


HAR = {
    "log": {
        "entries": [
            {
                "startedDateTime": "REPLACED",
                "time": 640.0,
                "request": {"method": "POST", "url": "http://127.0.0.1:8701/api", "headers": [], "postData": {"text": json.dumps({"operationName": "GroupVulnerabilities", "query": "query GroupVulnerabilities { group { vulnerabilities { edges { node { id } } } } }"})}},
                "response": {"status": 200, "headers": [], "content": {"text": json.dumps({"errors": [{"message": "Unexpected error", "path": ["group", "vulnerabilities"]}]})}},
            },
            {
                "startedDateTime": "REPLACED",
                "time": 120.0,
                "request": {"method": "GET", "url": "http://127.0.0.1:8701/orgs/kiwicorp/groups/kiwiapp/vulns", "headers": []},
                "response": {"status": 200, "headers": [], "content": {"text": "<html></html>"}},
            },
        ]
    }
}


def probe_sandbox_case(root: Path, *, file_issue: bool = False) -> tuple[CaseStore, str]:
    """Open the bug scenario's case, run every probe and attach a HAR; returns the store and id."""
    from helpctl.attachments import attach_files
    from helpctl.classification import classify_case
    from helpctl.config.profiles import load_profile
    from helpctl.probing import record_findings
    from helpctl.sandbox import Sandbox
    from helpctl.triage import PROBES, run_probes

    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("HELPCTL_", "AWS_")):
                patch.delenv(name)
        patch.setenv("HELPCTL_HOME", str(root / "home"))
        patch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        patch.setenv("AWS_CONFIG_FILE", str(root / "no-aws-config"))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(root / "no-aws-credentials"))
        with Sandbox() as sandbox:
            for name, value in sandbox.environment().items():
                patch.setenv(name, value)
            sandbox.service("logrocket").knobs.pending_polls = 0
            profile = load_profile("sandbox")
            store = CaseStore(root / "cases")
            now = dt.datetime.now(UTC).replace(microsecond=0)
            case = Case(
                id=new_case_id(),
                profile="sandbox",
                subject="Vulnerabilities tab lists 4 of 7 in kiwiapp",
                requester=Person(email="ana.gomez@kiwicorp.co", name="Ana Gómez"),
                kind="problem",
                body="The dashboard of kiwiapp says 7 open vulnerabilities but the tab lists 4.",
                organization="kiwicorp",
                subjects=Subjects(users=["carlos.ruiz@kiwicorp.co"], groups=["kiwiapp"], organizations=["kiwicorp"]),
                reported_at=isoformat(now - dt.timedelta(hours=2)),
            )
            case.record(ACTOR, "opened", source="typed")
            store.create(case)

            runs = run_probes(case, profile, store, list(PROBES), timeout=60, options={"wait": True})
            for name, run in runs.items():
                record_findings(store, case.id, name, run.findings, ACTOR)

            har = json.loads(json.dumps(HAR))
            for offset, entry in zip((-95, -94), har["log"]["entries"]):
                entry["startedDateTime"] = isoformat(now + dt.timedelta(minutes=offset))
            har_path = root / "kiwiapp-vulns.har"
            har_path.write_text(json.dumps(har))
            attach_files(store, case.id, [har_path], ACTOR, profile.routing.components)
            classify_case(store, case.id, profile, ACTOR)

            if file_issue:
                from helpctl import services
                from helpctl.filing_case import file_case

                file_case(store, case.id, profile, ACTOR, client=services.gitlab_client(profile, profile.gitlab.fixed_token))
    return store, case.id


@pytest.fixture(scope="module")
def sandbox_case(tmp_path_factory) -> tuple[CaseStore, str]:
    return probe_sandbox_case(tmp_path_factory.mktemp("sandbox-timeline"))


def test_sandbox_sources(sandbox_case):
    store, case_id = sandbox_case
    case = store.load(case_id)

    result = timeline.build(case, store.folder(case_id))

    sources = {item.source for item in result.items}
    assert sources >= {"case", "platform", "mail", "errors", "usage", "sessions", "logs", "browser"}
    assert result.unreadable == {}
    assert result.missing == []
    # The user-activity and user-errors queries return ana's error lines twice.
    assert result.duplicates >= 12
    assert all(earlier.at <= later.at for earlier, later in zip(result.items, result.items[1:]))


def test_sandbox_labels(sandbox_case):
    store, case_id = sandbox_case

    result = timeline.build(store.load(case_id), store.folder(case_id))

    bounced = [item for item in result.items if item.source == "mail" and item.series == "errors" and "carlos.ruiz@kiwicorp.co: bounced" in item.label]
    assert len(bounced) == 1
    errors = [item for item in result.items if item.source == "errors" and item.event == "error"]
    assert len(errors) == 8
    assert errors[0].label.startswith("TypeError: Cannot read properties of undefined (reading 'edges') in VulnerabilitiesView")
    logs = [item.label for item in result.items if item.source == "logs" and item.series == "errors"]
    assert "ERROR GroupVulnerabilities: Unexpected error resolving Group.vulnerabilities (ana.gomez@kiwicorp.co)" in logs
    browser = [item for item in result.items if item.source == "browser"]
    assert [item.series for item in browser] == ["errors", "usage"]
    sessions = [item for item in result.items if item.source == "sessions"]
    assert sessions and all(item.series == "usage" for item in sessions)


def test_sandbox_chart(sandbox_case):
    store, case_id = sandbox_case

    result = timeline.build(store.load(case_id), store.folder(case_id))
    hist = result.chart_counts.histogram()

    assert sum(hist.counts["errors"]) >= 8 + 12
    assert sum(hist.counts["usage"]) > 0
    assert hist.reported_bin is not None
    assert hist.bins <= charts.DEFAULT_MAX_BINS


def test_sandbox_command(sandbox_case, monkeypatch):
    store, case_id = sandbox_case
    monkeypatch.setenv("HELPCTL_CASES_DIR", str(store.root))

    result = CliRunner().invoke(cli(), ["case", "timeline", case_id, "--source", "logs", "--limit", "5"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert "showing the newest 5 of" in result.stderr
    rows = [line for line in result.stdout.splitlines() if "  logs  " in line]
    assert len(rows) == 5
