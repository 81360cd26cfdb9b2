"""The logs probe: run Logs Insights queries about a case's subjects and record findings.

Each named query of the profile (`logs.queries`), or one ad-hoc query, runs once per
subject its template names: `{email}` and `{user}` take the requester and the case's users,
`{group}` the case's groups, `{request_id}` the request ids stored on the case. Rows stream
to `evidence/logs-<query>-<subject>.jsonl` while the signals are computed with bounded
memory. For queries about a group, two count queries compare the errors per hour in the
window with the errors per hour of the 24 h before it (`logs.error_rate_ratio`).

External failures (service errors, time-outs, rate limits, missing AWS credentials) do not
raise: they become findings with the outcomes failed, timed_out or rate_limited. Bad input (an unknown query name, a malformed ad-hoc query, an unknown log
group) raises UsageError.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from helpctl import logsquery
from helpctl.cases.model import Case
from helpctl.cases.store import CaseStore
from helpctl.clients.logs import Fetch, LogsClient, parse_timestamp
from helpctl.config.settings import LogsSettings, RoutingSettings
from helpctl.errors import AuthError, HelpctlError, RateLimited, ServiceTimeout, UsageError
from helpctl.findings import Finding, SignalValue, isoformat, utc_now

logger = logging.getLogger(__name__)

SOURCE = "logs"
ADHOC_CHECK = "adhoc"
NO_SUBJECT = "all"

BASELINE = dt.timedelta(hours=24)
MAX_TRACKED_USERS = 10_000
TOP_CAPACITY = 64  # distinct messages or operations tracked while streaming
MESSAGE_LENGTH = 200  # characters of a message kept as its key
ERROR_LEVELS = frozenset({"ERROR", "FATAL", "CRITICAL"})


@dataclasses.dataclass
class Window:
    start: dt.datetime
    end: dt.datetime
    warning: str | None = None

    @property
    def hours(self) -> float:
        return max((self.end - self.start).total_seconds(), 1.0) / 3600

    def as_dict(self) -> dict[str, str]:
        return {"start": isoformat(self.start), "end": isoformat(self.end)}


@dataclasses.dataclass
class _Query:
    name: str
    template: str
    log_groups: list[str]


def run(
    case: Case,
    client: LogsClient,
    store: CaseStore,
    settings: LogsSettings,
    *,
    now: dt.datetime | None = None,
    query_names: Sequence[str] | None = None,
    query_text: str | None = None,
    log_groups: Sequence[str] | None = None,
    since: dt.datetime | str | None = None,
    until: dt.datetime | str | None = None,
    routing: RoutingSettings | None = None,
) -> list[Finding]:
    """Run the selected queries for every subject of the case; one finding each.

    The window is the case's reported time (or its creation time) minus
    `margin_before_minutes` to plus `margin_after_minutes`, cut at `now`. `since` alone runs
    to now; `until` alone starts the same total span earlier. `routing` maps the operation
    of the rows to a component through the components' keywords.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    now = now or utc_now()
    window = resolve_window(case, settings, now, since, until)
    queries = _select_queries(settings, query_names, query_text, log_groups)
    # Queries of one probe run side by side; the client's own limit of concurrent queries
    # (max_concurrent_queries) still caps what reaches the service.
    with ThreadPoolExecutor(max_workers=max(1, settings.max_concurrent_queries), thread_name_prefix="logs-query") as pool:
        planned: list[Finding | Future[Finding]] = []
        for query in queries:
            planned.extend(_run_query(case, client, store, settings, query, window, routing, pool))
        return [item.result() if isinstance(item, Future) else item for item in planned]


# ----- window and queries -----


def resolve_window(
    case: Case,
    settings: LogsSettings,
    now: dt.datetime,
    since: dt.datetime | str | None,
    until: dt.datetime | str | None,
) -> Window:
    before = dt.timedelta(minutes=settings.margin_before_minutes)
    after = dt.timedelta(minutes=settings.margin_after_minutes)
    start, end = _parse_time(since, "since"), _parse_time(until, "until")
    if start is None and end is None:
        reported = _parse_time(case.reported_at or case.created_at, "the case's reported time")
        assert reported is not None
        start, end = reported - before, reported + after
    elif end is None:
        end = now
    elif start is None:
        start = end - before - after
    assert start is not None and end is not None

    end = min(end, now)
    if start >= end:
        raise UsageError(f"the log window is empty: {isoformat(start)} to {isoformat(end)}", hint="check --since and --until")

    warning = None
    if end > now - dt.timedelta(minutes=settings.ingestion_delay_minutes):
        warning = (
            f"the window ends within {settings.ingestion_delay_minutes} min of now: "
            "recent events may not be ingested yet; run the probe again later"
        )
    return Window(start, end, warning)


def _parse_time(value: dt.datetime | str | None, name: str) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError as error:
            raise UsageError(f"invalid time for {name}: {value!r}", hint="use ISO 8601 in UTC, such as 2024-06-03T10:00:00Z") from error
    if value.tzinfo is None:
        raise UsageError(f"time for {name} has no time zone: {value.isoformat()}", hint="add Z for UTC, such as 2024-06-03T10:00:00Z")
    return value.astimezone(dt.timezone.utc)


def _select_queries(
    settings: LogsSettings,
    names: Sequence[str] | None,
    text: str | None,
    log_groups: Sequence[str] | None,
) -> list[_Query]:
    if text is not None:
        if not text.strip():
            raise UsageError("the ad-hoc Logs Insights query is empty")
        return [_Query(ADHOC_CHECK, text, list(log_groups or settings.log_groups))]

    selected = list(names) if names else list(settings.queries)
    unknown = [name for name in selected if name not in settings.queries]
    if unknown:
        known = ", ".join(settings.queries) or "none"
        raise UsageError(f"unknown logs query {unknown[0]!r}", hint=f"queries in this profile: {known}")
    queries = []
    for name in selected:
        named = settings.queries[name]
        queries.append(_Query(name, named.query, list(log_groups or named.log_groups or settings.log_groups)))
    return queries


def _subjects(case: Case, names: list[str]) -> dict[str, list[str]]:
    """Values the case offers for each placeholder, in order, without duplicates."""
    people = [case.requester.email, *case.subjects.users]
    request_ids = case.extra.get("request_ids") or []
    offered = {
        "email": people,
        "user": people,
        "group": list(case.subjects.groups),
        "request_id": [str(item) for item in request_ids] if isinstance(request_ids, list) else [],
    }
    return {name: list(dict.fromkeys(value.strip() for value in offered[name] if value and value.strip())) for name in names}


# ----- one query -----


def _run_query(
    case: Case,
    client: LogsClient,
    store: CaseStore,
    settings: LogsSettings,
    query: _Query,
    window: Window,
    routing: RoutingSettings | None,
    pool: Any,
) -> list[Any]:
    """Skipped findings at once, and a future finding for each subject the query runs on."""
    names = logsquery.placeholders(query.template)
    offered = _subjects(case, names)
    missing = [name for name in names if not offered[name]]
    if missing:
        reason = f"the case names no {{{missing[0]}}} for this query"
        return [_finding(query.name, NO_SUBJECT, "skipped", f"skipped {query.name}: {reason}", window, reason=reason)]
    if not query.log_groups:
        reason = "no log groups configured (logs.log_groups)"
        return [_finding(query.name, NO_SUBJECT, "skipped", f"skipped {query.name}: {reason}", window, reason=reason)]

    findings = []
    for combination in itertools.product(*(offered[name] for name in names)):
        values = dict(zip(names, combination))
        subject = "+".join(combination) or NO_SUBJECT
        findings.append(pool.submit(_probe_subject, case, client, store, settings, query, window, values, subject, routing))
    return findings


def _probe_subject(
    case: Case,
    client: LogsClient,
    store: CaseStore,
    settings: LogsSettings,
    query: _Query,
    window: Window,
    values: dict[str, str],
    subject: str,
    routing: RoutingSettings | None,
) -> Finding:
    try:
        text = logsquery.render(query.template, values)
    except UsageError as error:
        reason = error.message
        return _finding(query.name, subject, "skipped", f"skipped {query.name} for {subject}: {reason}", window, reason=reason)

    start, end = int(window.start.timestamp()), int(window.end.timestamp())
    request: dict[str, Any] = {"query": text, "log_groups": query.log_groups, "start": start, "end": end}
    try:
        fetch = client.fetch_all(text, query.log_groups, start, end, settings.max_rows)
    except AuthError as error:
        reason = f"{error.message} ({error.hint})" if error.hint else error.message
        return _finding(query.name, subject, "failed", f"{query.name} for {subject} could not run: {reason}", window, request=request, reason=reason)

    tally = Tally()
    raw_ref = None
    if fetch.error is None:
        raw_ref, _ = store.write_rows(case.id, f"logs-{query.name}-{subject}", tally.observe(fetch))

    signals = tally.signals()
    if fetch.matched is not None:
        # After a split the count queries know the total even when max_rows cut the rows.
        signals["logs.matching_events"] = max(fetch.matched, tally.rows)
    signals.update({"logs.complete": fetch.complete, "logs.rows_retrieved": fetch.rows_retrieved})
    notes = [note for note in (window.warning, *fetch.notes) if note]
    queries_run = fetch.queries_run
    if "group" in values and fetch.error is None and fetch.status == "Complete":
        ratio, ran, note = _error_rate_ratio(client, text, query.log_groups, window, request)
        queries_run += ran
        if ratio is not None:
            signals["logs.error_rate_ratio"] = ratio
        if note:
            notes.append(note)
    signals["logs.queries_run"] = queries_run

    outcome, reason, summary = _judge(fetch, tally, query.name, subject, window)
    if reason:
        notes.insert(0, reason)
    component = _component(routing, tally.top_operation(), query.log_groups)
    return _finding(
        query.name,
        subject,
        outcome,
        summary,
        window,
        request=request,
        signals=signals,
        reason="; ".join(notes) or None,
        raw_ref=raw_ref,
        component=component,
    )


def _judge(fetch: Fetch, tally: Tally, name: str, subject: str, window: Window) -> tuple[str, str | None, str]:
    """Return (outcome, reason, summary) for a finished fetch."""
    partial = f"; {fetch.rows_retrieved} partial rows kept" if fetch.rows_retrieved else ""
    if isinstance(fetch.error, RateLimited):
        return "rate_limited", fetch.error.message + partial, f"{name} for {subject}: CloudWatch Logs quota exhausted"
    if isinstance(fetch.error, ServiceTimeout):
        return "timed_out", fetch.error.message + partial, f"{name} for {subject} timed out"
    if fetch.error is not None:
        return "failed", fetch.error.message + partial, f"{name} for {subject} failed"
    if fetch.status == "Timeout":
        return "timed_out", f"CloudWatch ended the query with status Timeout{partial}", f"{name} for {subject} timed out in CloudWatch"
    if fetch.status != "Complete":
        return "failed", f"the query ended with status {fetch.status}{partial}", f"{name} for {subject} ended {fetch.status}"

    span = f"{isoformat(window.start)} to {isoformat(window.end)}"
    if fetch.truncated:
        total = f" of about {fetch.matched}" if fetch.matched else ""
        return "truncated", None, f"{fetch.rows_retrieved}{total} matching log lines for {subject} ({name}, truncated), {tally.errors} errors"
    if fetch.rows_retrieved == 0:
        return "empty", None, f"no log lines for {subject} ({name}) from {span}"
    lines, errors, users = fetch.rows_retrieved, tally.errors, len(tally.users)
    summary = f"{_plural(lines, 'log line')} for {subject} ({name}), {_plural(errors, 'error')}, {_plural(users, 'user')}"
    return "ok", None, summary


def _error_rate_ratio(
    client: LogsClient,
    query: str,
    log_groups: list[str],
    window: Window,
    request: dict[str, Any],
) -> tuple[float | None, int, str | None]:
    """Return (errors per hour in the window / errors per hour in the 24 h before, queries run, note).

    A baseline without errors counts as one error in 24 h, so the ratio stays finite and new
    errors still give a high ratio.
    """
    counting = logsquery.count_query(query, extra_filter="level = 'ERROR'")
    if counting is None:
        return None, 0, "no error rate: the query cannot be counted"

    start, end = int(window.start.timestamp()), int(window.end.timestamp())
    request["error_count_query"] = counting
    request["baseline"] = {"start": start - int(BASELINE.total_seconds()), "end": start - 1}
    ran = 0
    counts = []
    for low, high in ((start, end), (request["baseline"]["start"], request["baseline"]["end"])):
        try:
            result = client.run_query(counting, log_groups, low, high)
        except HelpctlError as error:
            return None, ran + 1, f"no error rate: the count query failed: {error.message}"
        ran += 1
        if not result.complete:
            return None, ran, f"no error rate: the count query ended with status {result.status}"
        counts.append(int(float(result.rows[0].get("n", "0"))) if result.rows else 0)

    window_errors, baseline_errors = counts
    request["baseline"]["errors"] = baseline_errors
    ratio = (window_errors / window.hours) / (max(baseline_errors, 1) / (BASELINE.total_seconds() / 3600))
    return round(ratio, 2), ran, None


def _component(routing: RoutingSettings | None, operation: str | None, log_groups: list[str]) -> str | None:
    """Match the top operation, then the log groups, against the components' keywords.

    The longest matching keyword wins, so GroupVulnerabilities goes to the component with
    "vulnerabilities" rather than the one with "group".
    """
    if routing is None:
        return None
    for text in (operation, *log_groups):
        if not text:
            continue
        lowered = text.lower()
        best: tuple[int, str] | None = None
        for name, component in routing.components.items():
            for keyword in component.keywords:
                if keyword and keyword.lower() in lowered and (best is None or len(keyword) > best[0]):
                    best = (len(keyword), name)
        if best is not None:
            return best[1]
    return None


def _finding(
    check: str,
    subject: str,
    outcome: str,
    summary: str,
    window: Window,
    *,
    request: dict[str, Any] | None = None,
    signals: dict[str, SignalValue] | None = None,
    reason: str | None = None,
    raw_ref: str | None = None,
    component: str | None = None,
) -> Finding:
    return Finding(
        source=SOURCE,
        check=check,
        subject=subject,
        outcome=outcome,
        summary=summary,
        request=request or {},
        signals=signals or {},
        reason=reason,
        raw_ref=raw_ref,
        window=window.as_dict(),
        component=component,
    )


# ----- signals while streaming -----


class TopCounter:
    """Approximate most frequent keys in bounded memory (the Space-Saving algorithm).

    At most `capacity` keys are tracked. A new key replaces the least counted one and
    inherits its count, so every key seen more than total/capacity times is kept.
    """

    def __init__(self, capacity: int = TOP_CAPACITY) -> None:
        self.capacity = capacity
        self.counts: dict[str, int] = {}

    def add(self, key: str) -> None:
        if key in self.counts:
            self.counts[key] += 1
        elif len(self.counts) < self.capacity:
            self.counts[key] = 1
        else:
            victim = min(self.counts, key=self.counts.__getitem__)
            self.counts[key] = self.counts.pop(victim) + 1

    def top(self) -> str | None:
        return max(self.counts, key=self.counts.__getitem__) if self.counts else None


class Tally:
    """Signals of a stream of rows: counts, users, first and last time, top message."""

    def __init__(self) -> None:
        self.rows = 0
        self.errors = 0
        self.users: set[str] = set()
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self.messages = TopCounter()
        self.error_messages = TopCounter()
        self.operations = TopCounter()
        self.error_operations = TopCounter()

    def observe(self, rows: Iterable[dict[str, str]]) -> Iterator[dict[str, str]]:
        for row in rows:
            self.add(row)
            yield row

    def add(self, row: dict[str, str]) -> None:
        self.rows += 1
        fields = _fields(row)
        error = str(fields.get("level", "")).upper() in ERROR_LEVELS
        message = str(fields.get("message") or row.get("@message") or "")[:MESSAGE_LENGTH]
        operation = fields.get("operation")

        self.errors += error
        user = fields.get("user")
        if user and len(self.users) < MAX_TRACKED_USERS:
            self.users.add(str(user))
        self._add_time(row.get("@timestamp"))
        if message:
            (self.error_messages if error else self.messages).add(message)
        if operation:
            (self.error_operations if error else self.operations).add(str(operation))

    def _add_time(self, value: str | None) -> None:
        if not value:
            return
        try:
            moment = parse_timestamp(value)
        except ValueError:
            return
        self.first_ms = moment if self.first_ms is None else min(self.first_ms, moment)
        self.last_ms = moment if self.last_ms is None else max(self.last_ms, moment)

    def top_operation(self) -> str | None:
        return self.error_operations.top() or self.operations.top()

    def signals(self) -> dict[str, SignalValue]:
        # The top message is the most frequent error message when there are errors.
        signals: dict[str, SignalValue] = {
            "logs.matching_events": self.rows,
            "logs.error_events": self.errors,
            "logs.distinct_users": len(self.users),
        }
        if self.first_ms is not None and self.last_ms is not None:
            signals["logs.first_at"] = isoformat(dt.datetime.fromtimestamp(self.first_ms / 1000, dt.timezone.utc))
            signals["logs.last_at"] = isoformat(dt.datetime.fromtimestamp(self.last_ms / 1000, dt.timezone.utc))
        top = self.error_messages.top() or self.messages.top()
        if top:
            signals["logs.top_message"] = top
        return signals


def _fields(row: dict[str, str]) -> dict[str, Any]:
    """Return the row's fields, completed from its @message when that is a JSON object."""
    needed = ("level", "user", "message", "operation")
    if all(name in row for name in needed):
        return row
    text = row.get("@message", "")
    if not text.startswith("{"):
        return row
    try:
        data = json.loads(text)
    except ValueError:
        return row
    if not isinstance(data, dict):
        return row
    return {**data, **row}


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
