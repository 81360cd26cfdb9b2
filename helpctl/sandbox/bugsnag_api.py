"""A BugSnag Data Access API v2 stand-in: the errors and events of one project.

Requests need `Authorization: token <token>` and `X-Version: 2` (or an `Accept` header with
`version=2`). A missing version gets 400, a bad token or another scheme (`Bearer`) gets
401, an unknown project gets 404 "Project not found"; every error body is
`{"errors": [...]}`. Paths:

- `GET /projects/<project>/errors`, `GET /projects/<project>/errors/<error>`
- `GET /projects/<project>/events`, `GET /projects/<project>/errors/<error>/events`

Lists take `filters[<field>][][type]` / `filters[<field>][][value]` pairs (eq, ne, empty),
`per_page` (default 30, at most 100), `sort`, `direction`, and page with `offset` and a
`base` snapshot carried in the `Link: <...>; rel="next"` header, with `X-Total-Count`.
As in BugSnag, `user.email` and `user.name` match as case-insensitive substrings.

An error in a filtered list counts only the events that match the filters; the single-error
path counts all its events. Knobs beyond the base class: per-endpoint rate limits per
window (429 with Retry-After and X-RateLimit-* headers), a deepest offset rejected with 422,
and a next link that repeats the same page, as a broken cursor does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from helpctl.sandbox import observability_seed as seed
from helpctl.sandbox.server import Knobs, Request, Response, Service

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
RELATIVE_TIME = re.compile(r"^(\d+)([dhm])$")
ERROR_SORTS = ("last_seen", "first_seen", "users", "events", "unsorted")
STRING_FILTERS = {"user.email", "user.name"}


@dataclasses.dataclass
class BugsnagKnobs(Knobs):
    # Requests allowed per `rate_window` seconds, by endpoint: errors, error, events.
    rate_limits: dict[str, int] = dataclasses.field(default_factory=dict)
    rate_window: float = 60.0
    # Send Retry-After with a rate-limit 429 (BugSnag does; some proxies drop it).
    send_retry_after: bool = True
    # An offset at or beyond this gets 422 "Pagination Offset is invalid"; 0 means no limit.
    max_offset: int = 0
    # Every next link points at the second page, so a naive client loops forever.
    repeat_next: bool = False


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclasses.dataclass
class _Filter:
    field: str
    kind: str
    value: str
    moment: dt.datetime | None = None  # the parsed value of event.since and event.before


_ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^/projects/(?P<project>[^/]+)/errors/?$"), "errors"),
    (re.compile(r"^/projects/(?P<project>[^/]+)/errors/(?P<error>[^/]+)/events/?$"), "events"),
    (re.compile(r"^/projects/(?P<project>[^/]+)/errors/(?P<error>[^/]+)/?$"), "error"),
    (re.compile(r"^/projects/(?P<project>[^/]+)/events/?$"), "events"),
]


def bugsnag_time(moment: dt.datetime) -> str:
    moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class BugsnagService(Service):
    name = "bugsnag"

    def __init__(self, anchor: dt.datetime | None = None, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.knobs = BugsnagKnobs()
        self.anchor = anchor or dt.datetime.now(dt.timezone.utc)
        # Seconds since the epoch; tests pass a fake clock so rate windows pass without sleeping.
        self.clock = clock
        self.tokens = {seed.BUGSNAG_TOKEN}
        story = seed.bugsnag_story(self.anchor)
        self.errors = {error.id: error for error in story.errors}
        self.events = story.events
        self._windows: dict[str, tuple[float, int]] = {}

    def reset(self) -> None:
        """Restore the default knobs and forget requests and rate windows, for tests that share a server."""
        with self.lock:
            self.knobs = BugsnagKnobs()
            self.log.clear()
            self._windows.clear()

    # ----- dispatch -----

    def handle(self, request: Request) -> Response:
        if request.method != "GET":
            return _error_response(ApiError(405, "Method not allowed"))
        try:
            endpoint, groups = self._route(request.path)
            self._authenticate(request)
            with self.lock:
                headers = self._rate_limit(endpoint)
            if groups["project"] != seed.BUGSNAG_PROJECT_ID:
                raise ApiError(404, "Project not found")
            response = self._respond(request, endpoint, groups)
            response.headers.update(headers)
            return response
        except ApiError as error:
            return _error_response(error)

    def _route(self, path: str) -> tuple[str, dict[str, str]]:
        for pattern, endpoint in _ROUTES:
            found = pattern.match(path)
            if found:
                return endpoint, found.groupdict()
        raise ApiError(404, "Not found")

    def _authenticate(self, request: Request) -> None:
        version = request.header("x-version") or _accept_version(request.header("accept"))
        if version != "2":
            raise ApiError(400, "Please specify an API version with the X-Version header (version 1 is no longer supported)")

        scheme, _, token = request.header("authorization").partition(" ")
        if scheme.lower() != "token" or token.strip() not in self.tokens:
            raise ApiError(401, "Invalid authentication token; send 'Authorization: token <personal auth token>'")

    def _rate_limit(self, endpoint: str) -> dict[str, str]:
        limit = self.knobs.rate_limits.get(endpoint)
        if not limit:
            return {}

        now = self.clock()
        started, used = self._windows.get(endpoint, (now, 0))
        if now - started >= self.knobs.rate_window:
            started, used = now, 0

        reset = started + self.knobs.rate_window
        if used >= limit:
            headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": "0"}
            if self.knobs.send_retry_after:
                headers["Retry-After"] = str(max(1, math.ceil(reset - now)))
            raise ApiError(429, "Too many requests", headers)

        self._windows[endpoint] = (started, used + 1)
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(limit - used - 1)}

    def _respond(self, request: Request, endpoint: str, groups: dict[str, str]) -> Response:
        error_id = groups.get("error")
        if error_id is not None and error_id not in self.errors:
            raise ApiError(404, "Error not found")

        if endpoint == "error":
            return Response.json(self._error_json(request, self.errors[error_id], self._events_of(error_id)))

        filters = _parse_filters(request, self.clock)
        base = _parse_time(request.arg("base"), "base", self.clock) if request.arg("base") else None
        events = [event for event in self.events if _matches(event, self.errors[event.error_id], filters, base)]
        if endpoint == "events":
            if error_id is not None:
                events = [event for event in events if event.error_id == error_id]
            rows = self._sorted_events(request, events)
            return self._page(request, [self._event_json(request, event) for event in rows])
        return self._page(request, self._error_rows(request, events))

    # ----- lists -----

    def _events_of(self, error_id: str) -> list[seed.ErrorEvent]:
        return [event for event in self.events if event.error_id == error_id]

    def _sorted_events(self, request: Request, events: list[seed.ErrorEvent]) -> list[seed.ErrorEvent]:
        descending = (request.arg("direction") or "desc") != "asc"
        return sorted(events, key=lambda event: (event.received_at, event.id), reverse=descending)

    def _error_rows(self, request: Request, events: list[seed.ErrorEvent]) -> list[dict[str, Any]]:
        by_error: dict[str, list[seed.ErrorEvent]] = {}
        for event in events:
            by_error.setdefault(event.error_id, []).append(event)
        rows = [self._error_json(request, self.errors[error_id], matched) for error_id, matched in by_error.items()]

        sort = request.arg("sort") or "last_seen"
        if sort not in ERROR_SORTS:
            raise ApiError(400, f"Invalid sort {sort!r}; use one of {', '.join(ERROR_SORTS)}")
        if sort != "unsorted":
            descending = (request.arg("direction") or "desc") != "asc"
            rows.sort(key=lambda row: (row[sort], row["id"]), reverse=descending)
        return rows

    def _page(self, request: Request, rows: list[dict[str, Any]]) -> Response:
        per_page = min(_positive_int(request.arg("per_page"), "per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)
        offset = _positive_int(request.arg("offset"), "offset", 0, minimum=0)
        if self.knobs.max_offset and offset >= self.knobs.max_offset:
            raise ApiError(422, "Pagination Offset is invalid")

        headers = {"X-Total-Count": str(len(rows))}
        if offset + per_page < len(rows):
            next_offset = per_page if self.knobs.repeat_next else offset + per_page
            base = request.arg("base") or bugsnag_time(dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc))
            headers["Link"] = f'<{self._page_url(request, next_offset, per_page, base)}>; rel="next"'
        return Response.json(rows[offset : offset + per_page], 200, headers)

    def _page_url(self, request: Request, offset: int, per_page: int, base: str) -> str:
        query = {name: values for name, values in request.query.items() if name not in ("offset", "per_page", "base")}
        query.update(offset=[str(offset)], per_page=[str(per_page)], base=[base])
        return f"{self._base_url(request)}{request.path}?{urlencode(query, doseq=True)}"

    def _base_url(self, request: Request) -> str:
        # Links point back at the address the client used, which is always a loopback one.
        host = request.header("host") or "127.0.0.1"
        if not host.startswith(LOOPBACK_HOSTS):
            host = "127.0.0.1"
        return f"http://{host}"

    # ----- representations -----

    def _error_json(self, request: Request, error: seed.ErrorGroup, events: list[seed.ErrorEvent]) -> dict[str, Any]:
        """Describe `error` with counts and times over `events` (the filtered ones, or all)."""
        every = self._events_of(error.id)
        project_url = f"{self._base_url(request)}/projects/{seed.BUGSNAG_PROJECT_ID}"
        return {
            "id": error.id,
            "project_id": seed.BUGSNAG_PROJECT_ID,
            "url": f"{project_url}/errors/{error.id}",
            "project_url": project_url,
            "error_class": error.error_class,
            "message": error.message,
            "context": error.context,
            "original_severity": error.severity,
            "overridden_severity": None,
            "status": error.status,
            "release_stages": [error.release_stage],
            "events": len(events),
            "unthrottled_occurrence_count": len(events),
            "users": len({event.user_email for event in events}),
            "first_seen": bugsnag_time(min(event.received_at for event in events)),
            "last_seen": bugsnag_time(max(event.received_at for event in events)),
            "first_seen_unfiltered": bugsnag_time(min(event.received_at for event in every)),
            "last_seen_unfiltered": bugsnag_time(max(event.received_at for event in every)),
            "events_url": f"{project_url}/errors/{error.id}/events",
            "comment_count": 0,
            "linked_issues": [],
        }

    def _event_json(self, request: Request, event: seed.ErrorEvent) -> dict[str, Any]:
        error = self.errors[event.error_id]
        project_url = f"{self._base_url(request)}/projects/{seed.BUGSNAG_PROJECT_ID}"
        return {
            "id": event.id,
            "url": f"{project_url}/events/{event.id}",
            "project_url": project_url,
            "is_full_report": False,
            "error_id": event.error_id,
            "received_at": bugsnag_time(event.received_at),
            "exceptions": [{"errorClass": error.error_class, "message": error.message}],
            "severity": error.severity,
            "unhandled": event.unhandled,
            "context": event.context,
            "app": {"releaseStage": event.release_stage},
            "user": {"id": event.user_id, "email": event.user_email, "name": event.user_name},
            "request": {"url": event.url},
        }


# ----- filters -----


def _accept_version(accept: str) -> str:
    found = re.search(r"version\s*=\s*(\d+)", accept)
    return found.group(1) if found else ""


def _parse_filters(request: Request, clock: Callable[[], float]) -> list[_Filter]:
    """Pair `filters[f][][type]` and `filters[f][][value]` in the order they were sent."""
    fields: dict[str, dict[str, list[str]]] = {}
    for name, values in request.query.items():
        found = re.fullmatch(r"filters\[([^\]]+)\]\[\]\[(type|value)\]", name)
        if found is None:
            if name.startswith("filters"):
                raise ApiError(400, f"Invalid filter parameter {name!r}")
            continue
        fields.setdefault(found.group(1), {"type": [], "value": []})[found.group(2)] += values

    filters = []
    for field, parts in fields.items():
        if field not in _FILTER_FIELDS:
            raise ApiError(400, f"Invalid filter field {field!r}")
        for index, kind in enumerate(parts["type"]):
            if kind not in ("eq", "ne", "empty"):
                raise ApiError(400, f"Invalid filter type {kind!r} for {field}")
            value = parts["value"][index] if index < len(parts["value"]) else ""
            moment = _parse_time(value, field, clock) if field in ("event.since", "event.before") else None
            filters.append(_Filter(field, kind, value, moment))
    return filters


def _event_value(event: seed.ErrorEvent, error: seed.ErrorGroup, field: str) -> str:
    values = {
        "user.email": event.user_email,
        "user.id": event.user_id,
        "user.name": event.user_name,
        "app.release_stage": event.release_stage,
        "event.class": error.error_class,
        "event.message": error.message,
        "error.status": error.status,
    }
    return values[field]


_FILTER_FIELDS = {
    "user.email",
    "user.id",
    "user.name",
    "app.release_stage",
    "event.class",
    "event.message",
    "error.status",
    "event.since",
    "event.before",
}


def _matches(event: seed.ErrorEvent, error: seed.ErrorGroup, filters: list[_Filter], base: dt.datetime | None) -> bool:
    if base is not None and event.received_at > base:
        return False

    # Values of one field are alternatives (OR); different fields must all match (AND).
    by_field: dict[str, list[_Filter]] = {}
    for item in filters:
        by_field.setdefault(item.field, []).append(item)
    return all(any(_matches_one(event, error, item) for item in items) for items in by_field.values())


def _matches_one(event: seed.ErrorEvent, error: seed.ErrorGroup, item: _Filter) -> bool:
    if item.moment is not None:
        if item.field == "event.since":
            return event.received_at >= item.moment
        return event.received_at < item.moment

    actual = _event_value(event, error, item.field)
    if item.kind == "empty":
        return not actual
    if item.field in STRING_FILTERS:
        found = item.value.lower() in actual.lower()
    else:
        found = item.value == actual
    return found if item.kind == "eq" else not found


def _parse_time(raw: str | None, name: str, clock: Callable[[], float]) -> dt.datetime:
    raw = (raw or "").strip()
    relative = RELATIVE_TIME.match(raw)
    if relative:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[relative.group(2)]
        now = dt.datetime.fromtimestamp(clock(), dt.timezone.utc)
        return now - dt.timedelta(**{unit: int(relative.group(1))})
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError as error:
        raise ApiError(400, f"Invalid time {raw!r} for {name}; use ISO 8601 or a relative time such as 7d") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment


def _positive_int(raw: str | None, name: str, default: int, minimum: int = 1) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as error:
        raise ApiError(400, f"Invalid {name} {raw!r}") from error
    if value < minimum:
        raise ApiError(400, f"Invalid {name} {raw!r}")
    return value


def _error_response(error: ApiError) -> Response:
    return Response.json({"errors": [error.message]}, error.status, error.headers)
