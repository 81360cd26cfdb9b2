"""A Mixpanel stand-in: the raw event export and the profile query of one project.

Requests need HTTP Basic auth with the sandbox's service account and secret and a
`project_id` query parameter (missing: 400; another project: 403). Errors are JSON
`{"request": "<path and query>", "error": "<text>"}`, as Mixpanel sends them. Paths:

- `GET /api/2.0/export`: `from_date` and `to_date` (yyyy-mm-dd, inclusive, UTC days, as
  for projects created after 2023), optional `event` (a JSON array of names), `where` and
  `limit` (at most 100,000). The response is JSON Lines, gzip-compressed when the client
  accepts gzip and the body is over 1,400 bytes.
- `POST /api/query/engage` (also served as `/api/2.0/engage`): a form with `where`,
  `distinct_id` or `distinct_ids`, `page` and `session_id`. It returns profiles with
  `$distinct_id` and `$properties`, 1,000 a page.

`where` accepts `properties["<name>"] == "<value>"` clauses joined by all `and` or all `or`,
the subset helpctl sends; anything else gets 400. Every accepted query counts against the
knob `queries_per_hour` over a sliding hour; beyond it the response is 429 with Mixpanel's
"Query rate limit exceeded" text.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import gzip
import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode

from helpctl.sandbox import observability_seed as seed
from helpctl.sandbox.server import Knobs, Request, Response, Service

MAX_EXPORT_LIMIT = 100_000
PAGE_SIZE = 1000
GZIP_MIN_BYTES = 1400
HOUR_SECONDS = 3600.0
CONCURRENT_LIMIT = 100

_CLAUSE = re.compile(r'\s*properties\["([^"\\]+)"\]\s*==\s*("(?:[^"\\]|\\.)*")\s*')
_JOINER = re.compile(r"(and|or)\b")


@dataclasses.dataclass
class MixpanelKnobs(Knobs):
    queries_per_hour: int = 60


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class MixpanelService(Service):
    name = "mixpanel"

    def __init__(self, anchor: dt.datetime | None = None, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.knobs = MixpanelKnobs()
        self.anchor = anchor or dt.datetime.now(dt.timezone.utc)
        # Seconds since the epoch; tests pass a fake clock to move through the hourly window.
        self.clock = clock
        self.story = seed.mixpanel_story(self.anchor)
        self.query_times: list[float] = []

    def reset(self) -> None:
        """Restore the default knobs and forget requests and counted queries, for tests that share a server."""
        with self.lock:
            self.knobs = MixpanelKnobs()
            self.log.clear()
            self.query_times.clear()

    def handle(self, request: Request) -> Response:
        try:
            route = self._route(request)
            self._authenticate(request)
            with self.lock:
                self._count_query()
            if route == "export":
                return self._export(request)
            return self._engage(request)
        except ApiError as error:
            return Response.json({"request": _request_line(request), "error": error.message}, error.status)

    def _route(self, request: Request) -> str:
        if request.path.rstrip("/") == "/api/2.0/export":
            if request.method != "GET":
                raise ApiError(405, "use GET for /api/2.0/export")
            return "export"
        if request.path.rstrip("/") in ("/api/query/engage", "/api/2.0/engage"):
            if request.method not in ("GET", "POST"):
                raise ApiError(405, "use POST for engage")
            return "engage"
        raise ApiError(404, "unknown API path")

    def _authenticate(self, request: Request) -> None:
        username, secret = _basic_credentials(request.header("authorization"))
        if (username, secret) != (seed.MIXPANEL_SERVICE_ACCOUNT, seed.MIXPANEL_SECRET):
            raise ApiError(401, "Unauthorized: invalid service account username or secret")

        project_id = request.arg("project_id")
        if not project_id:
            raise ApiError(400, "project_id is a required parameter when authenticating with a service account")
        if project_id != seed.MIXPANEL_PROJECT_ID:
            raise ApiError(403, f"service account does not have access to project {project_id}")

    def _count_query(self) -> None:
        now = self.clock()
        self.query_times = [moment for moment in self.query_times if now - moment < HOUR_SECONDS]
        limit = self.knobs.queries_per_hour
        if len(self.query_times) >= limit:
            raise ApiError(
                429,
                f"Query rate limit exceeded for project_id: {seed.MIXPANEL_PROJECT_ID}. 0/{CONCURRENT_LIMIT} queries "
                f"running concurrently and {len(self.query_times) + 1}/{limit} queries running in the last hour.",
            )
        self.query_times.append(now)

    # ----- export -----

    def _export(self, request: Request) -> Response:
        first = _parse_day(request.arg("from_date"), "from_date")
        last = _parse_day(request.arg("to_date"), "to_date")
        if last < first:
            raise ApiError(400, "to_date must not be earlier than from_date")

        names = _event_names(request.arg("event"))
        clauses = _parse_where(request.arg("where"))
        limit = _limit(request.arg("limit"))

        lines = []
        for event in self.story.events:
            day = event.time.astimezone(dt.timezone.utc).date()
            if not first <= day <= last or (names is not None and event.name not in names):
                continue
            data = _event_json(event)
            if clauses is not None and not _where_matches(clauses, lambda name, data=data: _event_property(data, name)):
                continue
            lines.append(json.dumps(data, ensure_ascii=False) + "\n")
            if len(lines) >= limit:
                break

        body = "".join(lines).encode("utf-8")
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if "gzip" in request.header("accept-encoding") and len(body) > GZIP_MIN_BYTES:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return Response(200, body, headers)

    # ----- engage -----

    def _engage(self, request: Request) -> Response:
        form = _form(request)
        clauses = _parse_where(form.get("where"))
        requested_ids = _requested_ids(form)
        page = _page_number(form.get("page"))

        matched = []
        for profile in self.story.profiles:
            data = self._profile_json(profile)
            if requested_ids is not None and profile.distinct_id not in requested_ids:
                continue
            if clauses is not None and not _where_matches(clauses, lambda name, data=data: _profile_property(data, name)):
                continue
            matched.append(data)

        chunk = matched[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
        session_id = form.get("session_id") or seed.stable_hex("engage-session", form.get("where"), requested_ids, length=16)
        body = {"page": page, "page_size": PAGE_SIZE, "session_id": session_id, "status": "ok", "total": len(matched)}
        return Response.json({**body, "results": chunk})

    def _profile_json(self, profile: seed.UsageProfile) -> dict[str, Any]:
        last_seen = self.story.last_seen(profile)
        return {
            "$distinct_id": profile.distinct_id,
            "$properties": {
                "$email": profile.email,
                "$name": seed.NAMES.get(profile.email, ""),
                "$created": _mixpanel_time(profile.created),
                "$last_seen": _mixpanel_time(last_seen) if last_seen else None,
                "organization": "kiwicorp",
                "groups": list(profile.groups),
            },
        }


# ----- helpers -----


def _basic_credentials(header: str) -> tuple[str, str]:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    username, _, secret = decoded.partition(":")
    return username, secret


def _request_line(request: Request) -> str:
    query = urlencode({name: values[-1] for name, values in request.query.items()})
    return f"{request.path}?{query}" if query else request.path


def _parse_day(raw: str | None, name: str) -> dt.date:
    if not raw:
        raise ApiError(400, f"{name} is a required parameter")
    try:
        return dt.date.fromisoformat(raw)
    except ValueError as error:
        raise ApiError(400, f"{name} {raw!r} is not a date in the format yyyy-mm-dd") from error


def _event_names(raw: str | None) -> set[str] | None:
    if not raw:
        return None
    try:
        names = json.loads(raw)
    except ValueError as error:
        raise ApiError(400, "event must be a JSON-encoded array of event names") from error
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ApiError(400, "event must be a JSON-encoded array of event names")
    return set(names)


def _limit(raw: str | None) -> int:
    if not raw:
        return MAX_EXPORT_LIMIT
    try:
        limit = int(raw)
    except ValueError as error:
        raise ApiError(400, f"limit {raw!r} is not a number") from error
    if not 1 <= limit <= MAX_EXPORT_LIMIT:
        raise ApiError(400, f"limit must be between 1 and {MAX_EXPORT_LIMIT}")
    return limit


def _parse_where(raw: str | None) -> tuple[str, list[tuple[str, str]]] | None:
    """Parse `properties["a"] == "x" and|or ...` into the joiner and (name, value) pairs."""
    if raw is None or not raw.strip():
        return None

    clauses, joiners, position = [], set(), 0
    while True:
        found = _CLAUSE.match(raw, position)
        if found is None:
            raise ApiError(400, f"unsupported where expression near {raw[position:position + 40]!r}")
        clauses.append((found.group(1), json.loads(found.group(2))))
        position = found.end()
        if position == len(raw):
            break
        joiner = _JOINER.match(raw, position)
        if joiner is None:
            raise ApiError(400, f"unsupported where expression near {raw[position:position + 40]!r}")
        joiners.add(joiner.group(1))
        position = joiner.end()

    if len(joiners) > 1:
        raise ApiError(400, "where expressions that mix 'and' with 'or' need parentheses, which this sandbox does not parse")
    return (joiners.pop() if joiners else "and"), clauses


def _where_matches(parsed: tuple[str, list[tuple[str, str]]], lookup: Callable[[str], Any]) -> bool:
    joiner, clauses = parsed
    results = [lookup(name) == value for name, value in clauses]
    return all(results) if joiner == "and" else any(results)


def _event_property(data: dict[str, Any], name: str) -> Any:
    properties = data["properties"]
    if name in ("distinct_id", "$distinct_id"):
        return properties["distinct_id"]
    return properties.get(name)


def _profile_property(data: dict[str, Any], name: str) -> Any:
    if name in ("distinct_id", "$distinct_id"):
        return data["$distinct_id"]
    return data["$properties"].get(name)


def _event_json(event: seed.UsageEvent) -> dict[str, Any]:
    epoch = int(event.time.timestamp())
    return {
        "event": event.name,
        "properties": {
            "time": epoch,
            "distinct_id": event.distinct_id,
            "$insert_id": event.insert_id,
            "mp_processing_time_ms": epoch * 1000 + 412,
            "$current_url": f"https://app.fluidattacks.com/orgs/kiwicorp/groups/{event.group}",
            "group": event.group,
            "organization": "kiwicorp",
            "mp_lib": "web",
        },
    }


def _mixpanel_time(moment: dt.datetime) -> str:
    # Profile dates are UTC without an offset, as the engage API returns them.
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _form(request: Request) -> dict[str, str]:
    values = {name: items[-1] for name, items in request.query.items()}
    if request.body:
        form = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
        values.update({name: items[-1] for name, items in form.items()})
    return values


def _requested_ids(form: dict[str, str]) -> set[str] | None:
    if form.get("distinct_id"):
        return {form["distinct_id"]}
    if not form.get("distinct_ids"):
        return None
    try:
        ids = json.loads(form["distinct_ids"])
    except ValueError as error:
        raise ApiError(400, "distinct_ids must be a JSON-encoded array") from error
    if not isinstance(ids, list):
        raise ApiError(400, "distinct_ids must be a JSON-encoded array")
    return {str(item) for item in ids}


def _page_number(raw: str | None) -> int:
    if not raw:
        return 0
    try:
        page = int(raw)
    except ValueError as error:
        raise ApiError(400, f"page {raw!r} is not a number") from error
    if page < 0:
        raise ApiError(400, "page must be 0 or more")
    return page
