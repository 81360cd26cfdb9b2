"""CloudWatch Logs Insights client: run queries to a terminal status and fetch complete results.

Insights queries are asynchronous: StartQuery returns an id, GetQueryResults reports
Scheduled or Running (with partial rows) until the query ends as Complete, Failed,
Cancelled, Timeout or Unknown. `run_query` polls with backoff up to `deadline` seconds and
stops the query when the deadline passes or the user interrupts. A query returns at most
`row_cap` rows and Insights offers no paging for them, so `fetch_all` detects a truncated
result by its row count and splits the time window into parts planned from counts of
matches per time bin.

Retries belong to helpctl, not botocore (botocore's own retries are off), so that the
`retry_budget`, the injectable sleep and the log lines cover every retry. LimitExceeded and
throttling errors, 5xx responses and connection failures are retried with jittered
exponential backoff. botocore errors become helpctl errors here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from helpctl import logsquery
from helpctl.config.settings import LogsSettings, is_loopback
from helpctl.errors import AuthError, ConfigError, HelpctlError, NotFound, RateLimited, ServiceError, ServiceTimeout, UsageError

logger = logging.getLogger(__name__)

SERVICE = "logs"
RUNNING_STATUSES = ("Scheduled", "Running")

# The keys sent with `sandbox_credentials`: the stand-in accepts any SigV4 signature.
SANDBOX_KEY = "sandbox"

CONNECT_TIMEOUT = 5.0  # seconds
READ_TIMEOUT = 30.0  # seconds
RETRY_BASE = 1.0  # seconds before the first retry; doubles per retry, then 50-100 % of it is slept
RETRY_MAX = 20.0  # seconds between two retries at most
POLL_GROWTH = 1.5

# Split planning: bins worth `row_cap / 8` matches, and a bound on counting rounds.
BIN_TARGET_DIVISOR = 8
MAX_REFINE_ROUNDS = 4

QUOTA_CODES = frozenset({"LimitExceededException"})
THROTTLE_CODES = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"})
UNAVAILABLE_CODES = frozenset({"ServiceUnavailableException", "InternalFailure", "InternalServerError"})
AUTH_CODES = frozenset({
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "MissingAuthenticationTokenException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
})
AUTH_HINT = "set AWS_PROFILE (or logs.aws_profile in the profile) and run 'aws sso login --profile <name>'"


@dataclasses.dataclass
class QueryResult:
    """The end of one Insights query: its terminal status and the rows it returned."""

    query_id: str
    status: str  # Complete, Failed, Cancelled, Timeout or Unknown
    rows: list[dict[str, str]]
    statistics: dict[str, float]
    limit: int  # rows the query could return at most: the row cap or a smaller `limit` command
    polls: int
    statuses: list[str] = dataclasses.field(default_factory=list)  # statuses seen while polling, in order

    @property
    def complete(self) -> bool:
        return self.status == "Complete"

    @property
    def truncated(self) -> bool:
        # Insights does not report dropped rows, so a result that fills the limit counts as cut short.
        return len(self.rows) >= self.limit


@dataclasses.dataclass(frozen=True)
class Part:
    """A time range in epoch seconds, both ends inclusive, with its expected match count."""

    start: int
    end: int
    expected: int


def epoch_seconds(moment: dt.datetime | int | float) -> int:
    if isinstance(moment, dt.datetime):
        if moment.tzinfo is None:
            raise UsageError(f"time {moment.isoformat()} has no time zone; give times in UTC")
        return int(moment.timestamp())
    return int(moment)


class LogsClient:
    """One CloudWatch Logs client per profile; safe to share between threads.

    At most `max_concurrent_queries` queries of this client run at once.
    """

    def __init__(
        self,
        settings: LogsSettings,
        *,
        session: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        if settings.sandbox_credentials and not (settings.endpoint_url and is_loopback(settings.endpoint_url)):
            raise ConfigError("logs.sandbox_credentials is allowed only with a loopback logs.endpoint_url")
        self.settings = settings
        self._session = session
        self._sleep = sleep
        self._clock = clock
        self._timeouts = (connect_timeout, read_timeout)
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max(1, settings.max_concurrent_queries))
        self._random = random.Random()

    # ----- boto3 -----

    def _boto(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self._build()
            return self._client

    def _build(self) -> Any:
        import boto3
        import botocore.config
        from botocore import exceptions as aws

        config = botocore.config.Config(
            connect_timeout=self._timeouts[0],
            read_timeout=self._timeouts[1],
            retries={"mode": "standard", "total_max_attempts": 1},
        )
        try:
            session = self._session or self._new_session(boto3)
            return session.client("logs", region_name=self.settings.region, endpoint_url=self.settings.endpoint_url, config=config)
        except aws.ProfileNotFound as error:
            raise AuthError(f"AWS profile {self.settings.aws_profile!r} not found", hint=AUTH_HINT) from error
        except aws.BotoCoreError as error:
            raise ConfigError(f"could not set up the CloudWatch Logs client: {error}") from error

    def _new_session(self, boto3: Any) -> Any:
        if self.settings.sandbox_credentials:
            # Fixed keys mean botocore never walks the credential chain for the sandbox.
            return boto3.session.Session(
                aws_access_key_id=SANDBOX_KEY,
                aws_secret_access_key=SANDBOX_KEY,
                region_name=self.settings.region,
            )
        return boto3.session.Session(profile_name=self.settings.aws_profile, region_name=self.settings.region)

    # ----- calls with retries -----

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Call a `logs` operation, retrying transient failures within `retry_budget` seconds."""
        from botocore import exceptions as aws

        started = self._clock()
        attempt = 0
        while True:
            try:
                return getattr(self._boto(), operation)(**params)
            except (aws.ClientError, aws.BotoCoreError) as error:
                failure = translate(error, operation, params)
                if not is_retryable(error):
                    raise failure from error
                # NOTE: a StartQuery that timed out may have started a query anyway. The retry
                # then starts a second one, and the first runs until it ends on its own.

                delay = min(RETRY_MAX, RETRY_BASE * 2**attempt) * self._random.uniform(0.5, 1.0)
                waited = self._clock() - started
                if waited + delay > self.settings.retry_budget:
                    raise _exhausted(failure, operation, attempt + 1, waited) from error

                attempt += 1
                logger.warning("CloudWatch Logs %s failed (%s); retry %d in %.1f s", operation, failure.message, attempt, delay)
                self._sleep(delay)

    # ----- one query -----

    def run_query(
        self,
        query: str,
        log_groups: Sequence[str],
        start: dt.datetime | int,
        end: dt.datetime | int,
        limit: int | None = None,
        *,
        on_start: Callable[[str], None] | None = None,
    ) -> QueryResult:
        """Run one query over [start, end] (epoch seconds or aware datetimes, both inclusive).

        Returns at the query's terminal status; Failed, Cancelled, Timeout and Unknown come
        back as results with whatever rows the service sent. Raises ServiceTimeout after
        stopping the query when `deadline` passes, RateLimited when the concurrency quota
        stays exhausted for `retry_budget`, UsageError for a malformed query or an unknown
        log group, and AuthError for missing or rejected credentials.
        """
        params = self._start_params(query, log_groups, start, end, limit)
        with self._slots:
            query_id = self._call("start_query", **params)["queryId"]
            logger.info("started Logs Insights query %s over %s from %d to %d", query_id, params["logGroupNames"], params["startTime"], params["endTime"])
            if on_start is not None:
                on_start(query_id)
            try:
                answer, statuses = self._wait(query_id)
                rows = self._all_rows(query_id, answer)
            except BaseException:
                # The deadline, an interrupt or a failed poll: free the quota slot now.
                self._stop(query_id)
                raise

        status = str(answer.get("status") or "Unknown")
        effective = min(params["limit"], logsquery.query_limit(query) or params["limit"])
        statistics = {name: float(value) for name, value in (answer.get("statistics") or {}).items()}
        logger.info("Logs Insights query %s ended %s with %d rows after %d polls", query_id, status, len(rows), len(statuses))
        return QueryResult(query_id, status, rows, statistics, effective, len(statuses), _distinct_runs(statuses))

    def _start_params(self, query: str, log_groups: Sequence[str], start: Any, end: Any, limit: int | None) -> dict[str, Any]:
        groups = list(log_groups)
        if not groups:
            raise UsageError("no CloudWatch log groups to query", hint="set logs.log_groups in the profile")
        start_s, end_s = epoch_seconds(start), epoch_seconds(end)
        if end_s < start_s:
            raise UsageError(f"the time window ends ({end_s}) before it starts ({start_s})")
        return {
            "logGroupNames": groups,
            "startTime": start_s,
            "endTime": end_s,
            "queryString": query,
            "limit": limit or self.settings.row_cap,
        }

    def _wait(self, query_id: str) -> tuple[dict[str, Any], list[str]]:
        """Poll until a terminal status; rows seen while Scheduled or Running are never final.

        Returns the last response and the status of every poll.
        """
        deadline = self._clock() + self.settings.deadline
        interval = self.settings.poll_interval
        statuses: list[str] = []
        while True:
            answer = self._call("get_query_results", queryId=query_id)
            status = answer.get("status")
            statuses.append(str(status))
            if status not in RUNNING_STATUSES:
                return answer, statuses

            remaining = deadline - self._clock()
            if remaining <= 0:
                raise ServiceTimeout(
                    f"Logs Insights query {query_id} was still {status} after {self.settings.deadline:g} s; helpctl stopped it",
                    service=SERVICE,
                    hint="narrow the time window or raise logs.deadline",
                )
            self._sleep(min(interval, remaining))
            interval = min(interval * POLL_GROWTH, self.settings.poll_interval_max)

    def _all_rows(self, query_id: str, answer: dict[str, Any]) -> list[dict[str, str]]:
        """Convert the rows, following nextToken pages when the service sends them."""
        rows = _rows(answer)
        token = answer.get("nextToken")
        seen: set[str] = set()
        while token and answer.get("status") == "Complete" and token not in seen:
            seen.add(token)
            page = self._call("get_query_results", queryId=query_id, nextToken=token)
            rows.extend(_rows(page))
            token = page.get("nextToken")
        return rows

    def _stop(self, query_id: str) -> None:
        from botocore import exceptions as aws

        try:
            self._boto().stop_query(queryId=query_id)
            logger.info("stopped Logs Insights query %s", query_id)
        except (aws.ClientError, aws.BotoCoreError) as error:
            # Usually the query ended on its own meanwhile ("not running").
            logger.info("could not stop Logs Insights query %s: %s", query_id, error)

    # ----- complete results -----

    def fetch_all(
        self,
        query: str,
        log_groups: Sequence[str],
        start: dt.datetime | int,
        end: dt.datetime | int,
        max_rows: int | None = None,
    ) -> Fetch:
        """Run `query` and return a Fetch whose iteration streams every matching row.

        The first query runs before this returns, so a malformed query, an unknown log
        group or missing credentials raise here (UsageError, AuthError). Later failures are
        recorded on the Fetch (`status`, `error`) and end the iteration early.
        """
        return Fetch(self, query, list(log_groups), epoch_seconds(start), epoch_seconds(end), max_rows or self.settings.max_rows)

    def count_bins(self, query: str, log_groups: Sequence[str], start: int, end: int, width: int, on_start: Callable[[str], None] | None = None) -> list[tuple[int, int]]:
        """Return (bin start in epoch seconds, matches) for the non-empty bins of `width` seconds."""
        counting = logsquery.count_query(query, bin_seconds=width)
        if counting is None:
            raise UsageError("a query with stats, dedup, pattern or diff cannot be counted per time bin")
        result = self.run_query(counting, log_groups, start, end, on_start=on_start)
        if not result.complete:
            raise ServiceError(f"the count query {result.query_id} ended with status {result.status}", service=SERVICE)

        bins = []
        for row in result.rows:
            label = next((value for name, value in row.items() if name.startswith("bin(")), None)
            if label is None:
                continue
            bins.append((parse_timestamp(label) // 1000, int(float(row.get("n", "0")))))
        return sorted(bins)


class Fetch:
    """Every row of one query over a window, fetched in as few queries as the row cap allows.

    Iterate once to stream the rows. Afterwards `complete` is true when every matching row
    was read, and `truncated` is true when `max_rows` or an unsplittable query cut the
    result short. `status` and `error` record why a query failed. `queries_run`,
    `rows_retrieved` and `matched` (matching events, when known) are the counts.
    """

    def __init__(self, client: LogsClient, query: str, log_groups: list[str], start: int, end: int, max_rows: int) -> None:
        self.client = client
        self.query = query
        self.log_groups = log_groups
        self.start = start
        self.end = end
        self.max_rows = max_rows
        self.row_cap = client.settings.row_cap
        self.queries_run = 0
        self.rows_retrieved = 0
        self.matched: int | None = None
        self.status = "Complete"
        self.error: HelpctlError | None = None
        self.truncated = False
        self.notes: list[str] = []
        self._finished = False
        self._consumed = False
        self._first: QueryResult | None = None
        try:
            self._first = client.run_query(query, log_groups, start, end, self.row_cap, on_start=self._started)
        except (UsageError, AuthError):
            raise
        except HelpctlError as error:
            self._fail(error)

    @property
    def complete(self) -> bool:
        return self._finished and self.status == "Complete" and self.error is None and not self.truncated

    @property
    def minimum_queries(self) -> int | None:
        """The minimum number of queries that could return `matched` rows under the row cap."""
        if self.matched is None:
            return None
        return max(1, math.ceil(self.matched / self.row_cap))

    def _started(self, query_id: str) -> None:
        self.queries_run += 1

    def _fail(self, error: HelpctlError) -> None:
        self.error = error
        self.status = "Error"
        logger.warning("Logs Insights fetch stopped: %s", error.message)

    def __iter__(self) -> Iterator[dict[str, str]]:
        if self._consumed:
            raise RuntimeError("the rows of a Fetch can be read only once")
        self._consumed = True
        first, self._first = self._first, None
        if first is None:
            return

        if not first.complete or not first.truncated:
            yield from self._finish_with(first)
            return
        if first.limit < self.row_cap or not logsquery.is_splittable(self.query):
            yield from self._finish_truncated(first)
            return

        # Full at the row cap: keep the rows that surely contain every event of their time
        # span, then fetch the rest of the window in parts.
        complete_rows, (low, high) = complete_span(first.rows, logsquery.timestamp_order(self.query), self.start, self.end)
        del first
        yield from self._emit(complete_rows)
        try:
            yield from self._fetch_parts(low, high, len(complete_rows))
        except HelpctlError as error:
            self._fail(error)

    def _finish_with(self, result: QueryResult) -> Iterator[dict[str, str]]:
        if not result.complete:
            self.status = result.status
        else:
            self.matched = len(result.rows)
        yield from self._emit(result.rows)
        self._finished = True

    def _finish_truncated(self, result: QueryResult) -> Iterator[dict[str, str]]:
        self.truncated = True
        # recordsMatched counts every matching event, also those past the row limit.
        matched = result.statistics.get("recordsMatched")
        self.matched = int(matched) if matched else None
        if result.limit < self.row_cap:
            self.notes.append(f"the query's own 'limit {result.limit}' returned {len(result.rows)} rows; more events may match")
        else:
            self.notes.append(f"a query with stats, dedup, pattern or diff cannot be split; kept the first {len(result.rows)} rows")
        yield from self._emit(result.rows)
        self._finished = True

    def _emit(self, rows: list[dict[str, str]]) -> Iterator[dict[str, str]]:
        for row in rows:
            if self.rows_retrieved >= self.max_rows:
                self._stop_at_max_rows()
                return
            self.rows_retrieved += 1
            yield row

    def _stop_at_max_rows(self) -> None:
        if not self.truncated:
            self.truncated = True
            self.notes.append(f"stopped at max_rows ({self.max_rows})")

    def _fetch_parts(self, start: int, end: int, already_read: int) -> Iterator[dict[str, str]]:
        parts = self._plan(start, end)
        self.matched = already_read + sum(part.expected for part in parts)
        logger.info("Logs Insights result hit the row cap (%d); fetching %d time parts", self.row_cap, len(parts))
        if logsquery.timestamp_order(self.query) == "desc":
            parts.reverse()

        for part in parts:
            if not (yield from self._fetch_part(part)):
                return
        self._finished = True

    def _fetch_part(self, part: Part) -> Iterator[dict[str, str]]:
        """Stream one part, splitting it again if it comes back full; False stops the fetch."""
        if self.rows_retrieved >= self.max_rows:
            self._stop_at_max_rows()
            return False

        result = self.client.run_query(self.query, self.log_groups, part.start, part.end, self.row_cap, on_start=self._started)
        if not result.complete:
            self.status = result.status
            yield from self._emit(result.rows)
            return False

        if result.truncated and part.start < part.end:
            # More events than counted (late ingestion): count this part again and split it.
            subparts = self._plan(part.start, part.end)
            if len(subparts) == 1 and subparts[0].expected >= self.row_cap:
                self.truncated = True
                self.notes.append(f"the count of {part.start}..{part.end} did not allow a split; kept {len(result.rows)} rows")
                yield from self._emit(result.rows)
                return True
            if logsquery.timestamp_order(self.query) == "desc":
                subparts.reverse()
            for subpart in subparts:
                if not (yield from self._fetch_part(subpart)):
                    return False
            return True

        if result.truncated:
            self.truncated = True
            self.notes.append(f"more than {self.row_cap} events in the second {part.start}; kept {len(result.rows)}")
        yield from self._emit(result.rows)
        return True

    @property
    def _bin_target(self) -> int:
        # Matches per counted bin worth having: a part then misses its cap by 1/8 at most.
        return max(1, self.row_cap // BIN_TARGET_DIVISOR)

    def _plan(self, start: int, end: int) -> list[Part]:
        """Cut [start, end] into contiguous parts of fewer than `row_cap` expected matches.

        One count result contains at most `row_cap - 1` bins, so when many caps' worth of
        events match, its bins are wide and packing them wastes part of every query. Such
        stretches are counted again with narrower bins (`_refine`), once for coarse bins and
        then as long as a bin alone exceeds the cap.
        """
        pieces = self._count(start, end)
        limit = self._bin_target
        for _ in range(MAX_REFINE_ROUNDS):
            if not any(_too_wide(piece, limit) for piece in pieces):
                break
            pieces = self._refine(pieces, limit)
            limit = self.row_cap - 1
        # A part that fills the cap exactly would look truncated, so parts stay below it.
        return pack(pieces, start, end, self.row_cap - 1)

    def _refine(self, pieces: list[Part], limit: int) -> list[Part]:
        """Count runs of adjacent pieces over `limit` again, with one count query per run.

        A run contains about `(row_cap - 1) * bin_target` matches at most, so its new bins
        average `bin_target` matches or fewer.
        """
        refined: list[Part] = []
        for run in _wide_runs(pieces, limit, (self.row_cap - 1) * self._bin_target):
            if self._worth_counting(run, limit):
                refined.extend(self._count(run[0].start, run[-1].end))
            else:
                refined.extend(run)
        return refined

    def _worth_counting(self, run: list[Part], limit: int) -> bool:
        # A count query pays off when the run fills at least one part or a piece alone
        # exceeds the cap. It must also give bins narrower than the run's.
        if not _too_wide(run[0], limit):
            return False
        total = sum(piece.expected for piece in run)
        over_cap = any(piece.expected >= self.row_cap for piece in run)
        if total < self.row_cap and not over_cap:
            return False
        return bin_width(run[0].start, run[-1].end, self.row_cap) < run[0].end - run[0].start + 1

    def _count(self, start: int, end: int) -> list[Part]:
        """Count matches per time bin over [start, end] with one query; empty bins are absent."""
        width = bin_width(start, end, self.row_cap)
        counts = self.client.count_bins(self.query, self.log_groups, start, end, width, on_start=self._started)
        return [Part(max(start, low), min(end, low + width - 1), count) for low, count in counts]


def _too_wide(piece: Part, limit: int) -> bool:
    return piece.expected > limit and piece.start < piece.end


def _wide_runs(pieces: list[Part], limit: int, capacity: int) -> list[list[Part]]:
    """Split pieces into runs: adjacent too-wide pieces up to `capacity` matches, or one other piece."""
    runs: list[list[Part]] = []
    total = 0
    for piece in pieces:
        previous = runs[-1][-1] if runs else None
        joins = (
            previous is not None
            and _too_wide(previous, limit)
            and _too_wide(piece, limit)
            and piece.start == previous.end + 1
            and total + piece.expected <= capacity
        )
        if joins:
            runs[-1].append(piece)
            total += piece.expected
        else:
            runs.append([piece])
            total = piece.expected
    return runs


def bin_width(start: int, end: int, row_cap: int) -> int:
    """Return the narrowest bin in whole seconds whose count over [start, end] stays under the cap.

    The count query's own result is capped too, so it may have at most `row_cap - 1` bins
    (one fewer, so that a full result is never mistaken for a complete one). Insights aligns
    bins to multiples of the width, which can add one bin at the edges.
    """
    seconds = end - start + 1
    allowed = max(2, row_cap - 1)
    width = max(1, math.ceil(seconds / allowed))
    while end // width - start // width + 1 > allowed:
        width += 1
    return width


def group(pieces: list[Part], capacity: int) -> list[list[Part]]:
    """Split time-ordered pieces into consecutive runs of at most `capacity` expected matches.

    Greedy grouping is optimal for consecutive runs: each run takes pieces until the next
    one would overflow it. A piece over the capacity forms a run of its own.
    """
    runs: list[list[Part]] = []
    current: list[Part] = []
    total = 0
    for piece in sorted(pieces, key=lambda item: item.start):
        if current and total + piece.expected > capacity:
            runs.append(current)
            current, total = [], 0
        current.append(piece)
        total += piece.expected
    if current:
        runs.append(current)
    return runs


def pack(pieces: list[Part], start: int, end: int, capacity: int) -> list[Part]:
    """Turn counted pieces into query parts of at most `capacity` expected matches each.

    The parts cover [start, end] without gaps (a stretch without matches joins the part
    after it, the last part runs to `end`), so an event the count missed is still fetched.
    """
    runs = group([piece for piece in pieces if piece.expected > 0], capacity)
    parts: list[Part] = []
    for index, run in enumerate(runs):
        low = start if index == 0 else run[0].start
        high = end if index == len(runs) - 1 else runs[index + 1][0].start - 1
        parts.append(Part(low, high, sum(piece.expected for piece in run)))
    return parts


def complete_span(rows: list[dict[str, str]], order: str | None, start: int, end: int) -> tuple[list[dict[str, str]], tuple[int, int]]:
    """Split a capped result sorted by @timestamp into rows known complete and the window left.

    With `sort @timestamp desc` the capped rows are the newest matches: every match after the
    second of the oldest row is among them. Rows of that second may be missing some of
    its events, so they are dropped and the second is fetched again. `asc` is the mirror
    case. Without a timestamp order nothing is kept and the whole window is left.
    """
    if order not in ("asc", "desc") or not rows or any("@timestamp" not in row for row in rows):
        return [], (start, end)
    seconds = [parse_timestamp(row["@timestamp"]) // 1000 for row in rows]
    if order == "desc":
        edge = min(seconds)
        return [row for row, second in zip(rows, seconds) if second > edge], (start, edge)
    edge = max(seconds)
    return [row for row, second in zip(rows, seconds) if second < edge], (edge, end)


def _distinct_runs(statuses: list[str]) -> list[str]:
    return [status for index, status in enumerate(statuses) if index == 0 or statuses[index - 1] != status]


def _rows(answer: dict[str, Any]) -> list[dict[str, str]]:
    return [{cell["field"]: cell["value"] for cell in row if "field" in cell} for row in answer.get("results") or []]


def parse_timestamp(value: str) -> int:
    """Parse an Insights `@timestamp` (`YYYY-MM-DD HH:MM:SS.mmm`, UTC, or epoch ms) into epoch ms."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    moment = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp() * 1000)


# ----- errors -----


def is_retryable(error: Exception) -> bool:
    from botocore import exceptions as aws

    if isinstance(error, aws.ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return code in QUOTA_CODES | THROTTLE_CODES | UNAVAILABLE_CODES or status >= 500
    return isinstance(error, (aws.ConnectionError, aws.HTTPClientError))


def translate(error: Exception, operation: str, params: dict[str, Any]) -> HelpctlError:
    """Turn a botocore exception into the helpctl error a caller can act on."""
    from botocore import exceptions as aws

    if isinstance(error, aws.ClientError):
        return _translate_client_error(error, operation, params)
    if isinstance(error, (aws.NoCredentialsError, aws.PartialCredentialsError)):
        return AuthError("AWS credentials for CloudWatch Logs were not found", hint=AUTH_HINT)
    if isinstance(error, (aws.SSOError, aws.TokenRetrievalError, aws.CredentialRetrievalError)):
        return AuthError(f"AWS credentials for CloudWatch Logs could not be loaded: {error}", hint=AUTH_HINT)
    if isinstance(error, aws.ProfileNotFound):
        return AuthError(str(error), hint=AUTH_HINT)
    if isinstance(error, (aws.ReadTimeoutError, aws.ConnectTimeoutError)):
        return ServiceTimeout(f"CloudWatch Logs {operation} timed out: {error}", service=SERVICE)
    if isinstance(error, (aws.ConnectionError, aws.HTTPClientError)):
        return ServiceError(f"could not reach CloudWatch Logs for {operation}: {error}", service=SERVICE)
    return ServiceError(f"CloudWatch Logs {operation} failed: {error}", service=SERVICE)


def _translate_client_error(error: Any, operation: str, params: dict[str, Any]) -> HelpctlError:
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "") or code
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")

    if code == "MalformedQueryException":
        return _malformed(error.response, message, params.get("queryString", ""))
    if code == "ResourceNotFoundException" and operation == "start_query":
        groups = ", ".join(params.get("logGroupNames", []))
        return UsageError(f"CloudWatch log group not found: {message}", hint=f"check logs.log_groups in the profile (queried: {groups})")
    if code == "ResourceNotFoundException":
        return NotFound(f"CloudWatch Logs {operation}: {message}", service=SERVICE, status=status)
    if code == "InvalidParameterException":
        return UsageError(f"CloudWatch Logs rejected a parameter of {operation}: {message}")
    if code in AUTH_CODES:
        return AuthError(f"CloudWatch Logs rejected the AWS credentials: {code}: {message}", hint=AUTH_HINT)
    if code in QUOTA_CODES | THROTTLE_CODES:
        return RateLimited(f"CloudWatch Logs {operation}: {code}: {message}", service=SERVICE, status=status)
    return ServiceError(f"CloudWatch Logs {operation} failed: {code or status}: {message}", service=SERVICE, status=status)


def _malformed(response: dict[str, Any], message: str, query: str) -> UsageError:
    location = (response.get("queryCompileError") or {}).get("location") or {}
    position = location.get("startCharOffset")
    if not isinstance(position, int):
        return UsageError(f"malformed Logs Insights query: {message}")
    snippet = query[position : position + 30]
    return UsageError(
        f"malformed Logs Insights query at position {position}: {message}",
        hint=f"check the query near {snippet!r}" if snippet else "check the end of the query",
    )


def _exhausted(failure: HelpctlError, operation: str, attempts: int, waited: float) -> HelpctlError:
    if isinstance(failure, RateLimited):
        return RateLimited(
            f"CloudWatch Logs Insights concurrency quota exhausted (shared with other users in this account); "
            f"{operation} gave up after {attempts} attempts in {waited:.0f} s",
            service=SERVICE,
            status=failure.status,
            hint="run the probe again later, or raise logs.retry_budget",
        )
    failure.message = f"{failure.message} (gave up after {attempts} attempts in {waited:.0f} s)"
    failure.args = (failure.message,)
    return failure
