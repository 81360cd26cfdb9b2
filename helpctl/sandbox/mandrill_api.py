"""A Mandrill (Mailchimp Transactional) API 1.0 stand-in.

Every call is `POST /api/1.0/<group>/<method>.json` with a JSON object body that carries
the API key as `"key"`. Errors use Mandrill's body `{"status": "error", "code", "name",
"message"}` and, as Mandrill long did, HTTP 500 for all of them (`Invalid_Key`,
`ValidationError`, `Unknown_Message`, ...), so clients must read the body and not only the
status. With the knob `legacy_status` off, the newer status codes are used instead (401
for `Invalid_Key`, 404 for `Unknown_Message`). Searches beyond `searches_per_minute` get
HTTP 429 `RequestLimitExceeded` with a Retry-After header in seconds.

Methods: `users/ping`, `users/ping2`, `messages/search`, `messages/info`, `rejects/list`
and `messages/send`. Search follows the real service's pitfalls: without dates it covers
only the last 7 days, `limit` defaults to 100 (max 1000), and messages older than the
account's retention (knob `retention_days`) are gone, from `messages/info` too.

The query language is a subset of Mandrill's Lucene syntax: `*`, `field:value` terms with
the fields below (values may be quoted, `*` and `?` wildcards after the first character),
joined by `AND`/`OR` (AND binds tighter). Parentheses, NOT and terms without an operator
between them are rejected with a ValidationError.

Time comes from an injectable `clock` (seconds, like `time.monotonic`): the service's now
is `anchor` plus the clock's elapsed time, so a test with a fake clock controls both the
rate limit and the retention cut-off without waiting.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import fnmatch
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

from helpctl.sandbox import mandrill_seed as seed
from helpctl.sandbox.server import Knobs, Request, Response, Service

logger = logging.getLogger(__name__)

API_PREFIX = "/api/1.0/"
VALID_KEYS = frozenset({"sandbox-mandrill-key"})

DEFAULT_SEARCH_DAYS = 7
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
RATE_WINDOW_SECONDS = 60.0
REJECTS_LIMIT = 1000

# Fields of the search subset; `email` also matches a part of the address (split at @ and .).
SEARCH_FIELDS = ("email", "full_email", "subject", "sender", "state", "tags", "template")
# Keys that only `messages/info` returns.
DETAIL_KEYS = ("opens_detail", "clicks_detail", "smtp_events")

# Mandrill's error codes, by error name.
ERROR_CODES = {
    "Invalid_Key": -1,
    "ValidationError": -2,
    "GeneralError": -1,
    "Unknown_Message": 11,
    "RequestLimitExceeded": -1,
}
# HTTP statuses of the newer API; with `legacy_status` every error except 429 is a 500.
MODERN_STATUSES = {"Invalid_Key": 401, "Unknown_Message": 404, "RequestLimitExceeded": 429}

_PATH = re.compile(r"^/api/1\.0/(?P<group>[a-z0-9_-]+)/(?P<method>[a-z0-9_-]+)\.json$")
_TOKEN = re.compile(
    r'\s*(?:(?P<operator>AND|OR)(?=\s|$)'
    r'|(?P<field>[a-z_]+):(?P<value>"(?:[^"\\]|\\.)*"|(?:[^\s"\\()]|\\.)+)'
    r"|(?P<all>\*)(?=\s|$)"
    r"|(?P<other>\S+))"
)


@dataclasses.dataclass
class MandrillKnobs(Knobs):
    retention_days: int = 30
    searches_per_minute: int = 20
    # Return HTTP 500 for every error except 429, as Mandrill did for years.
    legacy_status: bool = True


class ApiError(Exception):
    """A Mandrill error response, raised inside a handler and turned into JSON by `handle`."""

    def __init__(self, name: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.message = message
        self.retry_after = retry_after


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class MandrillService(Service):
    name = "mandrill"

    def __init__(self, anchor: dt.datetime | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.knobs = MandrillKnobs()
        self.anchor = (anchor or _utc_now()).astimezone(dt.timezone.utc)
        self.clock = clock
        self._started = clock()
        self._search_times: collections.deque[float] = collections.deque()
        self._sent_count = 0
        self.messages = seed.build_messages(self.anchor)
        self.rejects = seed.build_rejects(self.anchor)

    def now(self) -> dt.datetime:
        """Return the service's current time: the anchor plus the clock's elapsed seconds."""
        return self.anchor + dt.timedelta(seconds=self.clock() - self._started)

    # ----- dispatch -----

    def handle(self, request: Request) -> Response:
        found = _PATH.match(request.path)
        if not found:
            logger.info("sandbox mandrill: HTTP 404 for unknown path %s", request.path)
            return Response.json({"status": "error", "code": -1, "name": "GeneralError", "message": "Unknown API path"}, 404)
        if request.method != "POST":
            logger.info("sandbox mandrill: HTTP 405 for %s %s", request.method, request.path)
            return Response.json({"status": "error", "code": -1, "name": "GeneralError", "message": "Use POST"}, 405, {"Allow": "POST"})

        handler = getattr(self, f"_{found['group']}_{found['method']}".replace("-", "_"), None)
        try:
            if handler is None:
                raise ApiError("GeneralError", f"Unknown method {found['group']}/{found['method']}")
            params = self._authenticate(request)
            with self.lock:
                return Response.json(handler(params))
        except ApiError as error:
            return self._error(error)

    def _error(self, error: ApiError) -> Response:
        status = 500
        if error.name == "RequestLimitExceeded" or not self.knobs.legacy_status:
            status = MODERN_STATUSES.get(error.name, 500)
        body = {"status": "error", "code": ERROR_CODES.get(error.name, -1), "name": error.name, "message": error.message}
        headers = {}
        if error.retry_after is not None:
            headers["Retry-After"] = str(error.retry_after)
        logger.info("sandbox mandrill: HTTP %d %s: %s", status, error.name, error.message)
        return Response.json(body, status, headers)

    def _authenticate(self, request: Request) -> dict[str, Any]:
        try:
            params = request.json()
        except (ValueError, UnicodeDecodeError):
            params = None

        # Mandrill treats a body it cannot parse as one without a key.
        if not isinstance(params, dict) or not params.get("key"):
            raise ApiError("ValidationError", "You must specify a key value")
        if params["key"] not in VALID_KEYS:
            raise ApiError("Invalid_Key", "Invalid API key")
        return params

    # ----- users -----

    def _users_ping(self, params: dict[str, Any]) -> str:
        return "PONG!"

    def _users_ping2(self, params: dict[str, Any]) -> dict[str, str]:
        return {"PING": "PONG!"}

    # ----- messages/search and messages/info -----

    def _messages_search(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        self._count_search()
        matches = compile_query(str(params.get("query") or "*"))
        start, end = self._search_range(params.get("date_from"), params.get("date_to"))
        limit = _limit(params.get("limit"))
        retained_from = self._retained_from()

        rows = []
        for record in reversed(self.messages):
            moment = _from_timestamp(record["ts"])
            if start <= moment < end and moment >= retained_from and matches(record):
                rows.append(_search_view(record))
            if len(rows) >= limit:
                break
        return rows

    def _count_search(self) -> None:
        now = self.clock()
        while self._search_times and now - self._search_times[0] >= RATE_WINDOW_SECONDS:
            self._search_times.popleft()

        if len(self._search_times) >= self.knobs.searches_per_minute:
            # Retry one minute after the oldest search of the window, rounded up to a second.
            wait = math.ceil(RATE_WINDOW_SECONDS - (now - self._search_times[0]))
            logger.info("sandbox mandrill: search rate limit reached, retry after %d s", wait)
            raise ApiError("RequestLimitExceeded", "Too Many Requests attempted recently", retry_after=max(wait, 1))
        self._search_times.append(now)

    def _search_range(self, date_from: Any, date_to: Any) -> tuple[dt.datetime, dt.datetime]:
        now = self.now()
        start = _parse_date(date_from, "date_from") if date_from else now - dt.timedelta(days=DEFAULT_SEARCH_DAYS)
        end = now
        if date_to:
            end = _parse_date(date_to, "date_to")
            # A bare date includes that whole day.
            if len(str(date_to).strip()) == 10:
                end += dt.timedelta(days=1)
        if start > end:
            raise ApiError("ValidationError", "date_from must not be after date_to")
        return start, end

    def _retained_from(self) -> dt.datetime:
        return self.now() - dt.timedelta(days=self.knobs.retention_days)

    def _messages_info(self, params: dict[str, Any]) -> dict[str, Any]:
        requested_id = str(params.get("id") or "")
        if not requested_id:
            raise ApiError("ValidationError", "Validation error: {\"id\":\"Please enter a value\"}")

        retained_from = self._retained_from()
        for record in self.messages:
            if record["_id"] == requested_id and "email" in record and _from_timestamp(record["ts"]) >= retained_from:
                return dict(record)
        raise ApiError("Unknown_Message", f"No message exists with the id '{requested_id}'")

    # ----- rejects -----

    def _rejects_list(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        email = str(params.get("email") or "").strip().lower()
        include_expired = bool(params.get("include_expired"))
        now = self.now()

        entries = []
        for entry in self.rejects:
            if email and entry["email"].lower() != email:
                continue
            view = dict(entry, expired=_expired(entry, now))
            if view["expired"] and not include_expired:
                continue
            entries.append(view)
        return entries[:REJECTS_LIMIT]

    def _active_reject(self, email: str) -> dict[str, Any] | None:
        now = self.now()
        for entry in self.rejects:
            if entry["email"].lower() == email.lower() and not _expired(entry, now):
                return entry
        return None

    # ----- messages/send -----

    def _messages_send(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        message = params.get("message")
        if not isinstance(message, dict):
            raise ApiError("ValidationError", "Validation error: {\"message\":\"Please enter an array\"}")
        recipients = message.get("to")
        if not isinstance(recipients, list) or not recipients:
            raise ApiError("ValidationError", "Validation error: {\"message\":{\"to\":\"Please enter an array\"}}")
        sender = str(message.get("from_email") or "")
        if "@" not in sender:
            raise ApiError("ValidationError", "Validation error: {\"message\":{\"from_email\":\"An email address must contain a single @\"}}")

        queued = bool(params.get("async"))
        return [self._send_one(message, recipient, sender, queued) for recipient in recipients]

    def _send_one(self, message: dict[str, Any], recipient: Any, sender: str, queued: bool) -> dict[str, Any]:
        email = str(recipient.get("email") or "") if isinstance(recipient, dict) else ""
        self._sent_count += 1
        message_id = hashlib.md5(f"sandbox-mandrill-send:{self._sent_count}:{email}".encode("utf-8")).hexdigest()

        if not _valid_address(email):
            return {"email": email, "status": "invalid", "reject_reason": None, "_id": message_id}

        reject_reason = None
        if sender.rsplit("@", 1)[-1].lower() not in seed.VERIFIED_DOMAINS:
            reject_reason = "unsigned"
        elif (entry := self._active_reject(email)) is not None:
            reject_reason = entry["reason"]
            entry["last_event_at"] = self.now().strftime(seed.REJECTS_DATE_FORMAT)

        status = "queued" if queued else "sent"
        if reject_reason:
            status = "rejected"
        self._record_sent(message, email, sender, message_id, status, reject_reason)
        return {"email": email, "status": status, "reject_reason": reject_reason, "_id": message_id}

    def _record_sent(self, message: dict[str, Any], email: str, sender: str, message_id: str, status: str, reject_reason: str | None) -> None:
        now = self.now()
        ts = int(now.timestamp())
        state = "rejected" if status == "rejected" else "sent"
        self.messages.append(
            {
                "ts": ts,
                "_id": message_id,
                "sender": sender,
                "template": None,
                "subject": str(message.get("subject") or ""),
                "email": email,
                "tags": list(message.get("tags") or []),
                "opens": 0,
                "clicks": 0,
                "state": state,
                "metadata": dict(message.get("metadata") or {}),
                "subaccount": None,
                "resends": [],
                "reject": {"reason": reject_reason, "last_event_at": now.strftime(seed.REJECTS_DATE_FORMAT)} if reject_reason else None,
                "diag": None,
                "bounce_description": None,
                "opens_detail": [],
                "clicks_detail": [],
                "smtp_events": [] if reject_reason else [{"ts": ts + 1, "type": "sent", "diag": "250 2.0.0 OK"}],
            }
        )


# ----- helpers -----


def _from_timestamp(ts: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc)


def _search_view(record: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in record.items() if name not in DETAIL_KEYS}


def _parse_date(value: Any, field: str) -> dt.datetime:
    text = str(value).strip()
    for pattern in ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S"):
        try:
            return dt.datetime.strptime(text, pattern).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            continue
    raise ApiError("ValidationError", f"Validation error: {{\"{field}\":\"Please enter a date in YYYY-MM-DD format\"}}")


def _limit(value: Any) -> int:
    if value is None:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except (TypeError, ValueError):
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError("ValidationError", f"Validation error: {{\"limit\":\"Please enter a number from 1 to {MAX_LIMIT}\"}}")
    return limit


def _expired(entry: dict[str, Any], now: dt.datetime) -> bool:
    if not entry.get("expires_at"):
        return False
    expires = dt.datetime.strptime(entry["expires_at"], seed.REJECTS_DATE_FORMAT).replace(tzinfo=dt.timezone.utc)
    return expires <= now


def _valid_address(email: str) -> bool:
    local, _, domain = email.partition("@")
    return bool(local) and "." in domain and not any(char.isspace() for char in email)


# ----- query language -----

Matcher = Callable[[dict[str, Any]], bool]


def compile_query(query: str) -> Matcher:
    """Compile the Lucene subset into a predicate over message records.

    Raises ApiError("ValidationError") for syntax outside the subset.
    """
    alternatives: list[list[Matcher]] = [[]]
    expect_term = True
    for token in _TOKEN.finditer(query.strip()):
        if token["operator"]:
            if expect_term:
                raise ApiError("ValidationError", f"Search query syntax error near {token['operator']!r}")
            if token["operator"] == "OR":
                alternatives.append([])
            expect_term = True
            continue

        if not expect_term:
            raise ApiError("ValidationError", "Search query syntax error: join terms with AND or OR")
        alternatives[-1].append(_term(token))
        expect_term = False

    if expect_term:
        raise ApiError("ValidationError", "Search query syntax error: the query ends without a term")
    return lambda record: "email" in record and any(all(term(record) for term in terms) for terms in alternatives)


def _term(token: re.Match[str]) -> Matcher:
    if token["all"]:
        return lambda record: True
    if token["other"]:
        raise ApiError("ValidationError", f"Search query syntax error near {token['other']!r}: use field:value terms")

    field, value = token["field"], _unquote(token["value"])
    if field not in SEARCH_FIELDS:
        raise ApiError("ValidationError", f"Unknown search field {field!r}")
    if value[:1] in ("*", "?"):
        raise ApiError("ValidationError", f"Search query syntax error: {field}:{value} starts with a wildcard")
    return lambda record: _field_matches(field, value.lower(), record)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        value = value[1:-1]
    return re.sub(r"\\(.)", r"\1", value)


def _field_matches(field: str, pattern: str, record: dict[str, Any]) -> bool:
    if field == "tags":
        return any(_matches(pattern, str(tag).lower()) for tag in record.get("tags") or [])
    if field == "full_email":
        return _matches(pattern, str(record.get("email") or "").lower())
    if field == "email":
        address = str(record.get("email") or "").lower()
        parts = re.split(r"[@.]", address)
        return _matches(pattern, address) or any(_matches(pattern, part) for part in parts)
    if field == "subject":
        subject = str(record.get("subject") or "").lower()
        # A phrase matches as a substring; a single word must match a whole word.
        if " " in pattern:
            return pattern in subject
        return any(_matches(pattern, word) for word in re.findall(r"\w+(?:[@.-]\w+)*", subject))
    return _matches(pattern, str(record.get(field) or "").lower())


def _matches(pattern: str, text: str) -> bool:
    if any(char in pattern for char in "*?"):
        return fnmatch.fnmatchcase(text, pattern)
    return pattern == text
