"""A CloudWatch Logs Insights stand-in that boto3's `logs` client talks to unchanged.

It speaks the AWS JSON 1.1 protocol: `POST /` with `X-Amz-Target: Logs_20140328.<Operation>`
for StartQuery, GetQueryResults, StopQuery and DescribeQueries, responds with
`application/x-amz-json-1.1`, and reports errors as HTTP 400 with `{"__type", "message"}`
(MalformedQueryException also carries `queryCompileError` with the character offsets).
Any SigV4 signature is accepted; a request without one is rejected.

Queries run on the stand-in's own engine (`logs_engine`) over the seeded story
(`logs_seed`). A query is Scheduled, then Running for `running_seconds` (rows appear
gradually), then ends in `final_status`. As on the real service:

- startTime and endTime are epoch seconds, and both are inclusive;
- a query returns at most `row_cap` rows, or fewer when the StartQuery `limit` or a
  `limit` command in the query is smaller;
- GetQueryResults sends no `nextToken` unless the `page_size` knob turns paging on;
- a new query while `max_running` queries run gets LimitExceededException.

`add_events(..., after_queries=N)` hides events from the next N queries, like late ingestion.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from helpctl.sandbox import logs_seed
from helpctl.sandbox.logs_engine import LogEvent, LogStore, QueryOutput, QuerySyntaxError, compile_query, make_event, run
from helpctl.sandbox.server import Knobs, Request, Response, Service

TARGET_PREFIX = "Logs_20140328"
CONTENT_TYPE = "application/x-amz-json-1.1"

logger = logging.getLogger(__name__)

RUNNING_STATUSES = ("Scheduled", "Running")
FINAL_STATUSES = ("Complete", "Failed", "Cancelled", "Timeout", "Unknown")

# Limits of the StartQuery and DescribeQueries parameters in the botocore 1.44 service model.
MAX_QUERY_LIMIT = 100_000
MAX_DESCRIBE_RESULTS = 1000


@dataclasses.dataclass
class LogsKnobs(Knobs):
    scheduled_seconds: float = 0.02  # a new query reports Scheduled this long
    running_seconds: float = 0.1  # then Running this long, with rows appearing gradually
    final_status: str = "Complete"  # how queries end: Complete, Failed, Cancelled, Timeout, Unknown
    final_statuses: list[str] = dataclasses.field(default_factory=list)  # used, one per new query, before final_status
    row_cap: int = 10_000  # rows one query returns at most
    max_running: int = 30  # queries Scheduled or Running at once; more get LimitExceededException
    page_size: int = 0  # rows per GetQueryResults page with a nextToken; 0 returns all rows at once
    reject_starts: int = 0  # the next N StartQuery calls get LimitExceededException
    throttle_polls: int = 0  # the next N GetQueryResults calls get ThrottlingException


class AwsError(Exception):
    """An error response in the AWS JSON shape, raised inside an operation."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


@dataclasses.dataclass
class _Query:
    query_id: str
    query_string: str
    log_groups: list[str]
    created: float  # time.monotonic() at StartQuery
    create_time_ms: int
    scheduled_seconds: float
    running_seconds: float
    final_status: str
    output: QueryOutput
    stopped_at: float | None = None

    def status(self, now: float) -> str:
        if self.stopped_at is not None:
            return "Cancelled"
        elapsed = now - self.created
        if elapsed < self.scheduled_seconds:
            return "Scheduled"
        if elapsed < self.scheduled_seconds + self.running_seconds:
            return "Running"
        return self.final_status

    def progress(self, now: float) -> float:
        """Share of the rows visible at `now`: grows while Running, frozen by StopQuery."""
        status = self.status(now)
        if status in ("Complete",):
            return 1.0
        if status == "Timeout":
            return 0.5
        if status == "Cancelled" and self.stopped_at is not None:
            moment = self.stopped_at
        elif status == "Running":
            moment = now
        else:
            return 0.0
        running = moment - self.created - self.scheduled_seconds
        return min(1.0, max(0.0, running / self.running_seconds)) if self.running_seconds > 0 else 1.0


class LogsService(Service):
    name = "logs"

    def __init__(self, anchor: dt.datetime | None = None, *, seed_story: bool = True) -> None:
        super().__init__()
        self.knobs = LogsKnobs()
        self.anchor = anchor or dt.datetime.now(dt.timezone.utc)
        self.store = LogStore()
        self.queries: dict[str, _Query] = {}
        self.calls: collections.Counter[str] = collections.Counter()
        self.peak_running = 0
        self._query_lock = threading.Lock()
        self._late: list[tuple[int, str, list[LogEvent]]] = []  # (StartQuery count, log group, events)

        for group in logs_seed.LOG_GROUPS:
            self.store.create_group(group)
        if seed_story:
            for group, event in logs_seed.seed_events(self.anchor):
                self.store.add(group, [event])

    # ----- test and benchmark helpers -----

    def add_events(
        self,
        events: Iterable[LogEvent | Mapping[str, Any]],
        log_group: str = logs_seed.API_GROUP,
        *,
        after_queries: int = 0,
    ) -> int:
        """Add events to a log group (created when new); mappings take timestamp, message, log_stream.

        `timestamp` is an aware datetime or epoch milliseconds; `message` a JSON object or text.
        With `after_queries`, queries see the events only after that many more StartQuery
        calls, as when CloudWatch ingests events late.
        """
        converted = (item if isinstance(item, LogEvent) else _event_from_mapping(item) for item in events)
        with self.lock:
            if after_queries <= 0:
                return self.store.add(log_group, converted)
            self.store.create_group(log_group)
            batch = list(converted)
            self._late.append((self.calls["StartQuery"] + after_queries, log_group, batch))
            return len(batch)

    def _ingest_late(self) -> None:
        """Index the late events that are due; callers hold `lock`."""
        started = self.calls["StartQuery"]
        for item in [item for item in self._late if item[0] < started]:
            self._late.remove(item)
            self.store.add(item[1], item[2])

    def running_count(self) -> int:
        now = time.monotonic()
        with self._query_lock:
            return sum(1 for query in self.queries.values() if query.status(now) in RUNNING_STATUSES)

    # ----- protocol -----

    def handle(self, request: Request) -> Response:
        target = request.header("x-amz-target")
        prefix, _, operation = target.partition(".")
        handler = self._operations().get(operation) if prefix == TARGET_PREFIX else None
        try:
            if request.method != "POST" or request.path != "/" or handler is None:
                raise AwsError("UnknownOperationException", f"Unknown operation {target or request.path!r}")
            if not request.header("authorization").startswith("AWS4-HMAC-SHA256 "):
                raise AwsError("MissingAuthenticationTokenException", "Request is missing Authentication Token")
            params = self._params(request)
            with self.lock:
                self.calls[operation] += 1
            return _answer(handler(params))
        except AwsError as error:
            logger.info("logs stand-in rejected %s: %s: %s", operation or request.path, error.code, error.message)
            body = {"__type": error.code, "message": error.message, **error.extra}
            return Response(400, json.dumps(body).encode("utf-8"), {"Content-Type": CONTENT_TYPE})

    def _operations(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "StartQuery": self.start_query,
            "GetQueryResults": self.get_query_results,
            "StopQuery": self.stop_query,
            "DescribeQueries": self.describe_queries,
        }

    @staticmethod
    def _params(request: Request) -> dict[str, Any]:
        try:
            params = request.json()
        except ValueError as error:
            raise AwsError("SerializationException", f"Request body is not valid JSON: {error}") from error
        if params is None:
            return {}
        if not isinstance(params, dict):
            raise AwsError("SerializationException", "Request body must be a JSON object")
        return params

    # ----- operations -----

    def start_query(self, params: dict[str, Any]) -> dict[str, Any]:
        query_string = _required(params, "queryString", str)
        start = _required(params, "startTime", int)
        end = _required(params, "endTime", int)
        if start < 0 or end < start:
            raise AwsError("InvalidParameterException", f"endTime ({end}) must not be before startTime ({start}), both epoch seconds >= 0")
        language = params.get("queryLanguage", "CWLI")
        if language != "CWLI":
            raise AwsError("InvalidParameterException", f"queryLanguage {language} is not supported by this stand-in")
        groups = self._log_groups(params)
        limit = self._limit(params)
        compiled = _compile(query_string)

        with self._query_lock:
            self._admit()
            final = self.knobs.final_statuses.pop(0) if self.knobs.final_statuses else self.knobs.final_status
            if final not in FINAL_STATUSES:
                raise AwsError("InvalidParameterException", f"sandbox knob final_status {final!r} is not one of {FINAL_STATUSES}")
            with self.lock:
                self._ingest_late()
                output = run(compiled, self.store, groups, start * 1000, end * 1000 + 999, limit)
            query = _Query(
                query_id=str(uuid.uuid4()),
                query_string=query_string,
                log_groups=groups,
                created=time.monotonic(),
                create_time_ms=int(time.time() * 1000),
                scheduled_seconds=self.knobs.scheduled_seconds,
                running_seconds=self.knobs.running_seconds,
                final_status=final,
                output=output,
            )
            self.queries[query.query_id] = query
        return {"queryId": query.query_id}

    def _admit(self) -> None:
        """Reject a new query over the concurrency quota; callers hold `_query_lock`."""
        if self.knobs.reject_starts > 0:
            self.knobs.reject_starts -= 1
            raise AwsError("LimitExceededException", f"Account maximum query concurrency limit of [{self.knobs.max_running}] reached.")
        now = time.monotonic()
        running = sum(1 for query in self.queries.values() if query.status(now) in RUNNING_STATUSES)
        if running >= self.knobs.max_running:
            raise AwsError("LimitExceededException", f"Account maximum query concurrency limit of [{self.knobs.max_running}] reached.")
        self.peak_running = max(self.peak_running, running + 1)

    def _log_groups(self, params: dict[str, Any]) -> list[str]:
        present = [name for name in ("logGroupName", "logGroupNames", "logGroupIdentifiers") if name in params]
        if len(present) != 1:
            raise AwsError("InvalidParameterException", "Exactly one of logGroupName, logGroupNames or logGroupIdentifiers is required")
        value = params[present[0]]
        groups: list[Any] = []
        if isinstance(value, str):
            groups = [value]
        elif isinstance(value, list):
            groups = list(value)
        if not groups or len(groups) > 50 or not all(isinstance(name, str) and name for name in groups):
            raise AwsError("InvalidParameterException", f"{present[0]} must name 1 to 50 log groups")
        names = [name.rsplit(":log-group:", 1)[-1].removesuffix(":*") for name in groups]
        for name in names:
            if not self.store.has_group(name):
                raise AwsError("ResourceNotFoundException", f"The specified log group does not exist: {name}")
        return names

    def _limit(self, params: dict[str, Any]) -> int:
        limit = params.get("limit")
        if limit is None:
            return self.knobs.row_cap
        if not isinstance(limit, int) or not 1 <= limit <= MAX_QUERY_LIMIT:
            raise AwsError("InvalidParameterException", f"limit must be a whole number from 1 to {MAX_QUERY_LIMIT}")
        return min(limit, self.knobs.row_cap)

    def get_query_results(self, params: dict[str, Any]) -> dict[str, Any]:
        query = self._query(params)
        with self._query_lock:
            if self.knobs.throttle_polls > 0:
                self.knobs.throttle_polls -= 1
                raise AwsError("ThrottlingException", "Rate exceeded")

        now = time.monotonic()
        status = query.status(now)
        share = query.progress(now)
        rows = query.output.rows
        visible = rows if share >= 1.0 else rows[: int(len(rows) * share)]
        answer: dict[str, Any] = {"queryLanguage": "CWLI", "status": status, "statistics": _statistics(query.output, share)}

        offset, page = self._page(params, query, status)
        if page is not None and offset + page < len(visible):
            answer["nextToken"] = _token(query.query_id, offset + page)
            visible = visible[offset : offset + page]
        else:
            visible = visible[offset:]
        answer["results"] = [[{"field": field, "value": value} for field, value in row] for row in visible]
        return answer

    def _page(self, params: dict[str, Any], query: _Query, status: str) -> tuple[int, int | None]:
        """Return (offset, page size or None) from nextToken, maxItems and the page_size knob."""
        offset = 0
        token = params.get("nextToken")
        if token is not None:
            offset = _token_offset(token, query.query_id)
        sizes = [size for size in (params.get("maxItems"), self.knobs.page_size) if isinstance(size, int) and size > 0]
        if status != "Complete" or not sizes:
            return offset, None
        return offset, min(sizes)

    def stop_query(self, params: dict[str, Any]) -> dict[str, Any]:
        query = self._query(params)
        with self._query_lock:
            now = time.monotonic()
            status = query.status(now)
            if status not in RUNNING_STATUSES:
                raise AwsError("InvalidParameterException", f"Query {query.query_id} is not running (status {status})")
            query.stopped_at = now
        return {"success": True}

    def describe_queries(self, params: dict[str, Any]) -> dict[str, Any]:
        now = time.monotonic()
        group_filter = params.get("logGroupName")
        status_filter = params.get("status")
        size = params.get("maxResults", MAX_DESCRIBE_RESULTS)
        if not isinstance(size, int) or not 1 <= size <= MAX_DESCRIBE_RESULTS:
            raise AwsError("InvalidParameterException", f"maxResults must be a whole number from 1 to {MAX_DESCRIBE_RESULTS}")

        with self._query_lock:
            queries = sorted(self.queries.values(), key=lambda item: item.created, reverse=True)
        items = [
            {
                "queryLanguage": "CWLI",
                "queryId": query.query_id,
                "queryString": query.query_string,
                "status": query.status(now),
                "createTime": query.create_time_ms,
                "logGroupName": query.log_groups[0],
            }
            for query in queries
            if (group_filter is None or group_filter in query.log_groups)
            and (status_filter is None or query.status(now) == status_filter)
        ]

        token = params.get("nextToken")
        offset = _token_offset(token, "describe") if token is not None else 0
        answer: dict[str, Any] = {"queries": items[offset : offset + size]}
        if offset + size < len(items):
            answer["nextToken"] = _token("describe", offset + size)
        return answer

    def _query(self, params: dict[str, Any]) -> _Query:
        query_id = _required(params, "queryId", str)
        with self._query_lock:
            query = self.queries.get(query_id)
        if query is None:
            raise AwsError("ResourceNotFoundException", f"Query {query_id} does not exist")
        return query


def _answer(data: dict[str, Any]) -> Response:
    headers = {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": str(uuid.uuid4())}
    return Response(200, json.dumps(data, separators=(",", ":")).encode("utf-8"), headers)


def _required(params: dict[str, Any], name: str, kind: type) -> Any:
    value = params.get(name)
    if value is None:
        raise AwsError("InvalidParameterException", f"Missing required parameter {name}")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise AwsError("InvalidParameterException", f"Parameter {name} must be of type {kind.__name__}")
    return value


def _compile(query_string: str) -> Any:
    try:
        return compile_query(query_string)
    except QuerySyntaxError as error:
        location = {"startCharOffset": error.start, "endCharOffset": error.end}
        raise AwsError(
            "MalformedQueryException",
            str(error),
            queryCompileError={"location": location, "message": str(error)},
        ) from error


def _statistics(output: QueryOutput, share: float) -> dict[str, float]:
    return {
        "recordsMatched": float(int(output.records_matched * share)),
        "recordsScanned": float(int(output.records_scanned * share)),
        "bytesScanned": float(int(output.bytes_scanned * share)),
    }


def _token(scope: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{scope}:{offset}".encode()).decode()


def _token_offset(token: Any, scope: str) -> int:
    try:
        owner, _, offset = base64.urlsafe_b64decode(str(token).encode()).decode().rpartition(":")
        if owner == scope:
            return int(offset)
    except ValueError:
        pass
    raise AwsError("InvalidParameterException", "The nextToken is invalid or belongs to another request")


def _event_from_mapping(item: Mapping[str, Any]) -> LogEvent:
    timestamp = item["timestamp"]
    if isinstance(timestamp, dt.datetime):
        timestamp = logs_seed.epoch_ms(timestamp)
    return make_event(int(timestamp), item["message"], str(item.get("log_stream", "")))
