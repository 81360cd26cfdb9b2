"""The timeline of a case: its own events and its probes' evidence rows, oldest first.

Two kinds of items are merged. Case items (`kind="case"`) come from the case's `timeline`
(opened, messages, notes, probes, classification, filing, notifications, issue changes)
plus one `reported` item at `reported_at`. Evidence items (`kind="evidence"`) come from the
JSON Lines files that findings name in `raw_ref`. An extractor per source (and per check
where a source writes several row shapes) reads the time and a one-line label of a row.
Sources without an extractor fall back to common time keys.

Rows without a time are skipped and counted by source, and lines that are not JSON objects
are counted as unreadable. A log event that several Logs Insights queries returned is shown
once. Files are read line by line and only the compact items are kept, so with a limit at
most that many items (the newest) are held in memory. Without one, every matched item is.

Each item may belong to a chart series: `errors` (BugSnag events, ERROR log lines, failed
browser requests, undelivered mail) or `usage` (Mixpanel events, other log lines, browser
requests that succeeded, sessions, logins, mail opens).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import heapq
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from helpctl.cases.model import Case, Event
from helpctl.charts import DEFAULT_WINDOW, MinuteCounts
from helpctl.errors import UsageError
from helpctl.findings import isoformat

logger = logging.getLogger(__name__)

KINDS = ("case", "evidence")
CASE_SOURCE = "case"
EVIDENCE_SOURCES = ("platform", "mail", "errors", "usage", "sessions", "logs", "browser")
SERIES = ("errors", "usage")

# Keys tried, in this order, for rows of a source without its own extractor.
TIME_KEYS = ("at", "@timestamp", "timestamp", "ts", "received_at", "startedDateTime", "time")
LABEL_KEYS = ("message", "@message", "summary", "event", "name", "title", "type", "kind", "status")
LABEL_CHARS = 200

# Epoch values at or above this are milliseconds: 10^11 seconds is in the year 5138.
EPOCH_MILLISECONDS_FROM = 10**11
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_MARKDOWN_LINK = re.compile(r"\s*\[([^\]]*)\]\([^)]*\)")
_ERROR_LEVELS = frozenset({"ERROR", "FATAL", "CRITICAL", "ALERT", "EMERGENCY"})
_UNDELIVERED = frozenset({"bounced", "soft-bounced", "rejected", "spam", "unsub", "deferred"})

# Row identities of sources whose files overlap: every Logs Insights query of a case that
# matches a log event returns it with the same `@ptr`, so it is shown once.
ROW_IDENTITY: dict[str, Callable[[dict[str, Any]], Any]] = {"logs": lambda row: row.get("@ptr")}


class Entry(NamedTuple):
    """The time, event name, label and chart series that an extractor reads from one row."""

    at: dt.datetime
    event: str
    label: str
    series: str | None = None


# An extractor returns None for a row without a time, which is counted. An empty list means
# that the row only repeats what other rows show.
Extractor = Callable[[dict[str, Any]], list[Entry] | None]


@dataclasses.dataclass(frozen=True)
class Item:
    at: dt.datetime
    source: str
    kind: str
    event: str
    label: str
    series: str | None = None
    actor: str | None = None
    ref: str | None = None  # evidence file, relative to the case folder

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["at"] = isoformat(self.at)
        return {name: value for name, value in data.items() if value is not None}


@dataclasses.dataclass
class TimelineFilter:
    sources: frozenset[str] | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    kind: str | None = None
    limit: int | None = None

    def reads(self, source: str, kind: str) -> bool:
        """Return whether items of this source and kind can pass. Files of other sources are not read."""
        if self.sources is not None and source not in self.sources:
            return False
        return self.kind is None or kind == self.kind

    def accepts(self, item: Item) -> bool:
        if not self.reads(item.source, item.kind):
            return False
        if self.since is not None and item.at < self.since:
            return False
        return self.until is None or item.at <= self.until


@dataclasses.dataclass
class Timeline:
    """The merged items, oldest first, and what could not be placed on the timeline."""

    case_id: str
    items: list[Item]
    matched: int  # items that passed the filter, before the limit
    reported_at: dt.datetime | None
    # Every matched item of a chart series is counted here, including items past the limit.
    chart_counts: MinuteCounts
    untimed: dict[str, int]  # rows without a time, by source
    unreadable: dict[str, int]  # lines that are not JSON objects, by source
    missing: list[str]  # evidence files named by findings but absent or outside the case
    duplicates: int = 0  # rows already read from another file of the same source

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case_id,
            "reported_at": isoformat(self.reported_at) if self.reported_at else None,
            "matched": self.matched,
            "shown": len(self.items),
            "untimed": self.untimed,
            "unreadable": self.unreadable,
            "missing": self.missing,
            "duplicates": self.duplicates,
            "items": [item.to_dict() for item in self.items],
        }


# ---------------------------------------------------------------------------------------------
# Times and labels


def parse_moment(value: Any) -> dt.datetime | None:
    """Read a UTC time from ISO 8601, `YYYY-MM-DD HH:MM:SS[.fff]` or epoch seconds/milliseconds.

    Naive times are taken as UTC. Returns None for empty values, "-", zero or negative epochs
    and anything unreadable.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return _from_epoch(float(value))
    if not isinstance(value, str):
        return None

    text = value.strip()
    if not text or text == "-":
        return None
    if _NUMBER.match(text):
        return _from_epoch(float(text))
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)


def _from_epoch(number: float) -> dt.datetime | None:
    if number <= 0:
        return None
    if number >= EPOCH_MILLISECONDS_FROM:
        number /= 1000
    try:
        return dt.datetime.fromtimestamp(number, dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def parse_option_time(value: str, option: str) -> dt.datetime:
    """Parse a `--since`/`--until` value (ISO 8601 date or time; naive means UTC)."""
    moment = parse_moment(value) if not _NUMBER.match(value.strip()) else None
    if moment is None:
        raise UsageError(f"{option}: {value!r} is not a date or time", hint="use ISO 8601, such as 2026-12-04 or 2026-12-04T18:00:00Z")
    return moment


def one_line(text: Any, limit: int = LABEL_CHARS) -> str:
    """Collapse whitespace to single spaces and cut to `limit` characters."""
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        return flat[: limit - 3] + "..."
    return flat


def _collect(*candidates: tuple[Any, ...]) -> list[Entry] | None:
    """Build entries from (time value, event, label[, series]) tuples, or None when no tuple has a time."""
    entries = []
    for value, event, label, *series in candidates:
        moment = parse_moment(value)
        if moment is not None:
            entries.append(Entry(moment, event, one_line(label), series[0] if series else None))
    return entries or None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# ---------------------------------------------------------------------------------------------
# Extractors: one per row shape written by helpctl/probes/*.py and helpctl/attachments.py


def extract_platform_membership(row: dict[str, Any]) -> list[Entry] | None:
    member = row.get("email") or "a member"
    return _collect(
        (row.get("invitationDate"), "invited", f"{member} invited as {row.get('role') or 'no role'}"),
        (row.get("firstLogin"), "first-login", f"{member} logged in for the first time", "usage"),
        (row.get("lastLogin"), "last-login", f"{member} logged in for the last time", "usage"),
    )


def extract_platform_event(row: dict[str, Any]) -> list[Entry] | None:
    name = f"{row.get('eventType') or 'platform'} event {row.get('id') or ''}".strip()
    detail = f": {row['detail']}" if row.get("detail") else ""
    return _collect(
        (row.get("eventDate"), "event-created", f"{name} created{detail}"),
        (row.get("closingDate"), "event-solved", f"{name} solved"),
    )


def extract_platform_vulnerability(row: dict[str, Any]) -> list[Entry] | None:
    # Finding rows carry counters only; vulnerability rows have the report date.
    where = f"{row.get('where')} ({row.get('specific')})" if row.get("specific") else row.get("where")
    label = f"vulnerability {row.get('state') or ''} reported in {where}, treatment {row.get('treatmentStatus')}"
    return _collect((row.get("reportDate"), "vulnerability-reported", label))


def extract_mail(row: dict[str, Any]) -> list[Entry] | None:
    kind = row.get("kind")
    if kind == "request":
        return []  # The row describes the search request, which the finding records.
    if kind == "search":
        return _mail_message(_mapping(row.get("message")))
    if kind == "info":
        return _mail_details(_mapping(row.get("message")))
    if kind == "reject":
        entry = _mapping(row.get("entry"))
        label = f"{entry.get('email')} added to Mandrill's rejects list ({entry.get('reason')}): {entry.get('detail') or ''}"
        return _collect((entry.get("created_at"), "mail-rejects-list", label, "errors"))
    return extract_generic(row)


def _mail_message(message: dict[str, Any]) -> list[Entry] | None:
    state = str(message.get("state") or "unknown")
    label = f"mail \"{message.get('subject') or '(no subject)'}\" to {message.get('email')}: {state}"
    undelivered = state in _UNDELIVERED
    if undelivered and message.get("diag"):
        label += f" ({message['diag']})"
    return _collect((message.get("ts"), "mail", label, "errors" if undelivered else None))


def _mail_details(message: dict[str, Any]) -> list[Entry]:
    """Read the SMTP events, opens and clicks of one message. The search row gives its sending."""
    subject = message.get("subject") or "(no subject)"
    candidates: list[tuple[Any, ...]] = []
    for event in _list(message.get("smtp_events")):
        event = _mapping(event)
        kind = str(event.get("type") or "event")
        series = "errors" if kind in _UNDELIVERED else None
        candidates.append((event.get("ts"), "smtp", f"SMTP {kind} for \"{subject}\": {event.get('diag') or ''}", series))
    for opened in _list(message.get("opens_detail")):
        opened = _mapping(opened)
        candidates.append((opened.get("ts"), "mail-opened", f"opened \"{subject}\" ({opened.get('location') or 'unknown place'})", "usage"))
    for clicked in _list(message.get("clicks_detail")):
        # The clicked URL may carry tokens, so the label leaves it out.
        candidates.append((_mapping(clicked).get("ts"), "mail-clicked", f"clicked a link in \"{subject}\"", "usage"))
    return _collect(*candidates) or []


def extract_bugsnag(row: dict[str, Any]) -> list[Entry] | None:
    if row.get("record") == "error":
        label = (
            f"BugSnag error {row.get('error_class')}: {row.get('message')} in {row.get('context')} first seen "
            f"({row.get('events')} events, {row.get('users')} users)"
        )
        return _collect((row.get("first_seen"), "error-first-seen", label))

    exception = _mapping((_list(row.get("exceptions")) or [{}])[0])
    user = _mapping(row.get("user")).get("email")
    label = f"{exception.get('errorClass')}: {exception.get('message')} in {row.get('context')}"
    if user:
        label += f" ({user})"
    return _collect((row.get("received_at"), "error", label, "errors"))


def extract_mixpanel(row: dict[str, Any]) -> list[Entry] | None:
    properties = _mapping(row.get("properties"))
    label = str(row.get("event") or "event")
    if properties.get("group"):
        label += f" in {properties['group']}"
    return _collect((properties.get("time"), "usage", label, "usage"))


def extract_logrocket(row: dict[str, Any]) -> list[Entry] | None:
    highlights = _MARKDOWN_LINK.sub("", str(row.get("highlights") or ""))
    label = f"session of {row.get('durationMinutes')} min: {highlights}"
    return _collect((row.get("startedAt"), "session", label, "usage"))


def extract_logs(row: dict[str, Any]) -> list[Entry] | None:
    fields = dict(row)
    message = fields.get("@message")
    if isinstance(message, str) and message.lstrip().startswith("{"):
        try:
            parsed = json.loads(message)
        except json.JSONDecodeError:
            parsed = None
        # Insights extracts JSON fields itself; a row that lacks them still has @message.
        for name, value in _mapping(parsed).items():
            fields.setdefault(name, value)

    level = str(fields.get("level") or "").upper()
    text = fields.get("message") or fields.get("error") or message or ""
    head = " ".join(str(part) for part in (level or "LOG", fields.get("operation")) if part)
    label = f"{head}: {text}" if text else head
    if fields.get("user"):
        label += f" ({fields['user']})"
    series = "errors" if level in _ERROR_LEVELS else "usage"
    return _collect((fields.get("@timestamp") or fields.get("timestamp"), "log", label, series))


def extract_browser(row: dict[str, Any]) -> list[Entry] | None:
    status = row.get("status")
    errors = [_mapping(error) for error in _list(row.get("graphql_errors"))]
    label = f"{row.get('method') or 'GET'} {row.get('url')} -> {status}"
    if isinstance(row.get("time_ms"), (int, float)):
        label += f" in {row['time_ms']:.0f} ms"
    if errors:
        label += f"; GraphQL error: {errors[0].get('message')}"
    # Status 0 means the browser got no response (blocked, offline, cancelled).
    failed = not isinstance(status, int) or status == 0 or status >= 400 or bool(errors)
    return _collect((row.get("at"), "request", label, "errors" if failed else "usage"))


def extract_generic(row: dict[str, Any]) -> list[Entry] | None:
    """Read the time from the first of TIME_KEYS that contains one, and a label from LABEL_KEYS."""
    moment = None
    for key in TIME_KEYS:
        moment = parse_moment(row.get(key))
        if moment is not None:
            break
    if moment is None:
        return None

    label = next((row[key] for key in LABEL_KEYS if isinstance(row.get(key), (str, int, float)) and row.get(key) != ""), None)
    if label is None:
        scalars = [f"{key}={value}" for key, value in row.items() if key not in TIME_KEYS and isinstance(value, (str, int, float, bool))]
        label = ", ".join(scalars[:4]) or "row"
    return [Entry(moment, "row", one_line(label))]


EXTRACTORS: dict[str, Extractor] = {
    "platform/membership": extract_platform_membership,
    "platform/events": extract_platform_event,
    "platform/vulnerabilities": extract_platform_vulnerability,
    "mail": extract_mail,
    "errors": extract_bugsnag,
    "usage": extract_mixpanel,
    "sessions": extract_logrocket,
    "logs": extract_logs,
    "browser": extract_browser,
}


def extractor_for(source: str, check: str | None = None) -> Extractor:
    """Return the extractor of `source/check`, else of `source`, else the generic one."""
    return EXTRACTORS.get(f"{source}/{check}") or EXTRACTORS.get(source) or extract_generic


# ---------------------------------------------------------------------------------------------
# Case events


def describe_event(event: Event) -> str:
    """Return a one-line label of a case timeline event."""
    detail = event.detail or {}
    describe = _EVENT_LABELS.get(event.event)
    if describe is not None:
        try:
            return one_line(describe(detail))
        except (KeyError, TypeError, ValueError, AttributeError):
            logger.debug("case event %s has unexpected detail; showing it as it is", event.event)
    return one_line(_generic_event(event.event, detail))


def _generic_event(name: str, detail: dict[str, Any]) -> str:
    details = [f"{key}={_short(value)}" for key, value in detail.items() if value not in (None, "", [], {})]
    return f"{name}: {', '.join(details[:5])}" if details else name


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "/".join(_short(item) for item in value[:4])
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} {_short(item)}" for key, item in list(value.items())[:4]) + "}"
    return one_line(value, 80)


def _counts(values: dict[str, Any]) -> str:
    return ", ".join(f"{count} {name}" for name, count in values.items())


def _notified(detail: dict[str, Any]) -> str:
    recipients = ", ".join(str(item) for item in detail.get("recipients") or []) or "nobody"
    statuses = detail.get("statuses") or []
    states = ", ".join(str(_mapping(item).get("status", item)) for item in statuses)
    text = f"sent the {detail.get('template')} message ({detail.get('language')}) to {recipients}"
    return text + (f": {states}" if states else "")


_EVENT_LABELS: dict[str, Callable[[dict[str, Any]], str]] = {
    "opened": lambda detail: "case opened" + (f" from {detail['source']}" if detail.get("source") else ""),
    "message-added": lambda detail: f"requester's message added ({detail.get('message_id') or 'no Message-ID'})",
    "note": lambda detail: f"note: {detail.get('text')}",
    "probed": lambda detail: f"{detail['source']} probe: {detail.get('findings')} findings ({_counts(detail.get('outcomes') or {})})",
    "classified": lambda detail: f"classified as {detail.get('label')}"
    + (f" by {', '.join(detail['rules'])}" if detail.get("rules") else " (no rule fired)")
    + (" (override)" if detail.get("override") else ""),
    "filed": lambda detail: f"filed issue #{detail.get('iid')} for {detail.get('assignee') or 'nobody'}: {detail.get('url')}",
    "notified": _notified,
    "status-changed": lambda detail: f"status {detail.get('previous')} -> {detail.get('status')}"
    + (f": {detail['reason']}" if detail.get("reason") else ""),
    "closed": lambda detail: f"closed: {detail.get('resolution')}",
    "reopened": lambda detail: f"reopened: {detail.get('reason')}",
    "attached": lambda detail: f"attached {detail.get('file')}",
    "edited": lambda detail: f"edited {', '.join(detail.get('changes') or {})}",
}


def case_items(case: Case, untimed: collections.Counter[str]) -> Iterator[Item]:
    reported = parse_moment(case.reported_at)
    if reported is not None:
        requester = case.requester.display() or "the requester"
        yield Item(reported, CASE_SOURCE, "case", "reported", one_line(f"reported by {requester}: {case.subject}"))

    for event in case.timeline:
        moment = parse_moment(event.at)
        if moment is None:
            untimed[CASE_SOURCE] += 1
            continue
        yield Item(moment, CASE_SOURCE, "case", event.event, describe_event(event), actor=event.actor)


# ---------------------------------------------------------------------------------------------
# Evidence files


@dataclasses.dataclass
class _Reading:
    untimed: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    unreadable: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    missing: list[str] = dataclasses.field(default_factory=list)
    seen: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    duplicates: int = 0

    def repeated(self, source: str, row: dict[str, Any]) -> bool:
        """Return whether a row with this identity was read before, and remember it otherwise."""
        identity = ROW_IDENTITY.get(source)
        key = identity(row) if identity else None
        if not isinstance(key, str) or not key:
            return False
        if (source, key) in self.seen:
            self.duplicates += 1
            return True
        self.seen.add((source, key))
        return False


def evidence_files(case: Case) -> list[tuple[str, str, str | None]]:
    """Return (raw_ref, source, check) of the case's findings, each file once."""
    seen: dict[str, tuple[str, str, str | None]] = {}
    for finding in case.findings:
        raw_ref = finding.get("raw_ref")
        if isinstance(raw_ref, str) and raw_ref and raw_ref not in seen:
            seen[raw_ref] = (raw_ref, str(finding.get("source") or "unknown"), finding.get("check"))
    return list(seen.values())


def _inside(folder: Path, raw_ref: str) -> Path | None:
    """Resolve `raw_ref` within the case folder; None when it points outside it."""
    base = folder.resolve()
    path = (base / raw_ref).resolve()
    if path == base or base not in path.parents:
        return None
    return path


def evidence_items(folder: Path, raw_ref: str, source: str, check: str | None, reading: _Reading) -> Iterator[Item]:
    """Stream one evidence file and yield the items of its rows."""
    path = _inside(folder, raw_ref)
    if path is None or not path.is_file():
        reading.missing.append(raw_ref)
        return

    extractor = extractor_for(source, check)
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            entries = _extract_line(line, extractor, source, reading)
            for entry in entries or []:
                yield Item(entry.at, source, "evidence", entry.event, entry.label, entry.series, ref=raw_ref)


def _extract_line(line: str, extractor: Extractor, source: str, reading: _Reading) -> list[Entry] | None:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        reading.unreadable[source] += 1
        return None
    if not isinstance(row, dict):
        reading.unreadable[source] += 1
        return None
    if reading.repeated(source, row):
        return []

    try:
        entries = extractor(row)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as error:
        # Evidence is third-party data: a row of an unexpected shape is counted, not fatal.
        logger.debug("%s row could not be read: %s", source, error)
        reading.unreadable[source] += 1
        return None
    if entries is None:
        reading.untimed[source] += 1
    return entries


# ---------------------------------------------------------------------------------------------
# Merging


def sort_key(item: Item, sequence: int) -> tuple[Any, ...]:
    """Order by time. At equal times, case items come first, then sources by name, then rows as read."""
    return (item.at, 0 if item.kind == "case" else 1, item.source, sequence)


def all_items(case: Case, folder: Path, reading: _Reading, criteria: TimelineFilter) -> Iterator[Item]:
    if criteria.reads(CASE_SOURCE, "case"):
        yield from case_items(case, reading.untimed)
    for raw_ref, source, check in evidence_files(case):
        if criteria.reads(source, "evidence"):
            yield from evidence_items(folder, raw_ref, source, check, reading)


def build(
    case: Case, folder: Path, criteria: TimelineFilter | None = None, *, chart_window: dt.timedelta | None = DEFAULT_WINDOW
) -> Timeline:
    """Merge the case's events and evidence rows that pass `criteria`, oldest first.

    With `criteria.limit`, only the newest `limit` items are kept; `matched` still counts
    all. Chart counts cover the items within `chart_window` of the reported moment
    (`reported_at`, else `created_at`).
    """
    criteria = criteria or TimelineFilter()
    check_filter(criteria)
    reading = _Reading()
    reported = parse_moment(case.reported_at) or parse_moment(case.created_at)
    chart_counts = MinuteCounts(reported, chart_window)
    selected: list[tuple[tuple[Any, ...], Item]] = []
    matched = 0

    for sequence, item in enumerate(all_items(case, folder, reading, criteria)):
        if not criteria.accepts(item):
            continue
        matched += 1
        if item.series is not None:
            chart_counts.add(item.at, item.series)
        _keep(selected, (sort_key(item, sequence), item), criteria.limit)

    selected.sort(key=lambda pair: pair[0])
    return Timeline(
        case_id=case.id,
        items=[item for _, item in selected],
        matched=matched,
        reported_at=reported,
        chart_counts=chart_counts,
        untimed=dict(reading.untimed),
        unreadable=dict(reading.unreadable),
        missing=reading.missing,
        duplicates=reading.duplicates,
    )


def _keep(selected: list[tuple[tuple[Any, ...], Item]], pair: tuple[tuple[Any, ...], Item], limit: int | None) -> None:
    """Add a pair to `selected`. With a limit, `selected` is a min-heap of the newest `limit` items."""
    if limit is None:
        selected.append(pair)
    elif len(selected) < limit:
        heapq.heappush(selected, pair)
    elif pair[0] > selected[0][0]:
        heapq.heapreplace(selected, pair)


def known_sources(case: Case) -> list[str]:
    found = {str(finding.get("source")) for finding in case.findings if finding.get("source")}
    return [CASE_SOURCE, *EVIDENCE_SOURCES, *sorted(found - set(EVIDENCE_SOURCES))]


def check_filter(criteria: TimelineFilter) -> None:
    if criteria.kind is not None and criteria.kind not in KINDS:
        raise UsageError(f"--kind: {criteria.kind!r} is not a kind", hint=f"use one of: {', '.join(KINDS)}")
    if criteria.limit is not None and criteria.limit < 1:
        raise UsageError(f"--limit: {criteria.limit} is not a positive number")
    if criteria.since and criteria.until and criteria.since > criteria.until:
        raise UsageError("--since is later than --until", hint="swap the two times")


def check_sources(case: Case, sources: Iterable[str]) -> frozenset[str]:
    """Validate `--source` names against helpctl's evidence sources and the case's own."""
    known = known_sources(case)
    names = frozenset(name.strip().lower() for name in sources)
    unknown = sorted(names - set(known))
    if unknown:
        raise UsageError(f"--source: {unknown[0]!r} is not a source", hint=f"use any of: {', '.join(known)}")
    return names
