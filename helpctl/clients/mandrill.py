"""The Mandrill (Mailchimp Transactional) API client over httpx.

Every call is a POST to `<url>/<group>/<method>.json` with a JSON body that carries the
API key as `"key"`, with no auth header. For years Mandrill returned every API error with
HTTP 500 and a JSON body `{"status": "error", "code", "name", "message"}` (newer accounts
get 401/404/429 instead), so errors are classified by the body's `name`, never by the
status alone:

- `Invalid_Key` -> AuthError, never retried;
- `ValidationError` -> UsageError with Mandrill's message (a bug in the request);
- `Unknown_Message` -> NotFound;
- HTTP 429 or `RequestLimitExceeded` -> wait for Retry-After (60 s when absent) while the
  waits stay within `RATE_LIMIT_BUDGET`, then RateLimited;
- an HTML or other non-JSON 5xx page, `ServiceUnavailable` or a dropped connection ->
  retried up to `MAX_ATTEMPTS` times, then ServiceError with a short excerpt;
- a timeout -> ServiceTimeout; any other error name -> ServiceError with name and message.

`messages/send` is retried only when the connection failed before the request was sent,
because a retried send could deliver the mail twice.

`messages/search` is limited to 20 calls a minute by Mandrill; `SearchLimiter` keeps the
client within `MandrillSettings.searches_per_minute` so the limit is rarely hit.

The key never appears in logs or errors: it is registered with `credentials.mask`, and
every message built from a response is masked.
"""

from __future__ import annotations

import collections
import datetime as dt
import html
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from helpctl import credentials
from helpctl.clients.http import ClientBase, new_client, retry_after_seconds
from helpctl.config.settings import MandrillSettings
from helpctl.errors import AuthError, NotFound, RateLimited, ServiceError, ServiceTimeout, UsageError

logger = logging.getLogger(__name__)

SERVICE = "mandrill"
AUTH_HINT = "run 'helpctl auth login mandrill' with a valid API key"

MAX_ATTEMPTS = 3  # tries of one call when the response is a 5xx page or the connection drops
BACKOFF_SECONDS = 0.5  # pause before the second try, doubled before each later one
RATE_LIMIT_BUDGET = 60.0  # seconds one call may spend waiting out 429 responses
DEFAULT_RETRY_AFTER = 60.0  # Mandrill's search limit resets 60 s after the window's first search
MAX_RATE_LIMIT_WAITS = 5  # bounds the loop when Retry-After is 0
RATE_WINDOW_SECONDS = 60.0

DEFAULT_SEARCH_LIMIT = 100
MAX_SEARCH_LIMIT = 1000
EXCERPT_CHARS = 120

# Some Mandrill docs and clients spell reject reasons with underscores (hard_bounce), while
# the API uses hyphens. Both are accepted and turned into the hyphen form.
_REASON_SPELLING = re.compile(r"_")
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_NOT_JSON = object()


class SearchLimiter:
    """Keep calls within `per_minute` in every sliding 60-second window.

    `clock` returns seconds (like `time.monotonic`); `sleep` waits, so tests pass a fake
    pair that advances time without waiting.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self.per_minute = max(1, per_minute)
        self._clock = clock
        self._sleep = sleep
        self._calls: collections.deque[float] = collections.deque()

    def acquire(self) -> None:
        """Wait until one more call fits in the window, then count it."""
        while True:
            now = self._clock()
            while self._calls and now - self._calls[0] >= RATE_WINDOW_SECONDS:
                self._calls.popleft()
            if len(self._calls) < self.per_minute:
                self._calls.append(now)
                return

            wait = RATE_WINDOW_SECONDS - (now - self._calls[0])
            logger.info("mandrill: %d searches in the last minute, waiting %.1f s", len(self._calls), wait)
            self._sleep(wait)


class MandrillClient(ClientBase):
    """One Mandrill account, reached with one API key. Methods return Mandrill's JSON."""

    def __init__(
        self,
        settings: MandrillSettings,
        key: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not key:
            raise AuthError("no Mandrill API key was given", hint=AUTH_HINT)
        credentials.register_secret(key)
        self.settings = settings
        self._key = key
        self._sleep = sleep
        self._base_url = settings.url.rstrip("/")
        self._limiter = SearchLimiter(settings.searches_per_minute, clock, sleep)
        self._http = new_client(settings.timeout, transport, connect_limit=None)

    # ----- API methods -----

    def ping(self) -> dict[str, Any]:
        """Check the key with `users/ping2` and return `{"PING": "PONG!"}`."""
        return _expect(self._call("users/ping2", {}), dict, "users/ping2")

    def search(
        self,
        query: str,
        date_from: dt.date | str,
        date_to: dt.date | str,
        limit: int = DEFAULT_SEARCH_LIMIT,
    ) -> list[dict[str, Any]]:
        """Search sent mail between two UTC dates, both included.

        The dates are required because Mandrill searches only the last 7 days without them.
        Items without an `email` field (SMS activity) are dropped.
        """
        start = _date_text(date_from, "date_from")
        end = _date_text(date_to, "date_to")
        if start > end:
            raise UsageError(f"the search window starts ({start}) after it ends ({end})")
        if not 1 <= limit <= MAX_SEARCH_LIMIT:
            raise UsageError(f"invalid search limit {limit}", hint=f"use a limit from 1 to {MAX_SEARCH_LIMIT}")

        params = {"query": query, "date_from": start, "date_to": end, "limit": limit}
        rows = _expect(self._call("messages/search", params), list, "messages/search")
        return [_normalized_message(row) for row in rows if isinstance(row, dict) and "email" in row]

    def info(self, message_id: str) -> dict[str, Any]:
        """Return one message with its SMTP events, opens and clicks (`messages/info`)."""
        if not message_id:
            raise UsageError("a Mandrill message id is required")
        return _normalized_message(_expect(self._call("messages/info", {"id": message_id}), dict, "messages/info"))

    def rejects(self, email: str | None = None, *, include_expired: bool = False) -> list[dict[str, Any]]:
        """Return denylist entries (`rejects/list`), for one address when `email` is given."""
        params: dict[str, Any] = {"include_expired": include_expired}
        if email:
            params["email"] = email
        entries = _expect(self._call("rejects/list", params), list, "rejects/list")
        return [dict(entry, reason=normalize_reason(entry.get("reason"))) for entry in entries if isinstance(entry, dict)]

    def send(self, message: dict[str, Any], *, send_async: bool = False) -> list[dict[str, Any]]:
        """Send a message and return one result per recipient.

        HTTP 200 does not mean delivered: check each result's `status` (sent, queued,
        scheduled, rejected or invalid) and `reject_reason`, or use `undelivered`.
        """
        if not isinstance(message, dict) or not message.get("to"):
            raise UsageError("a message with at least one recipient in 'to' is required")
        params = {"message": message, "async": send_async}
        results = _expect(self._call("messages/send", params, idempotent=False), list, "messages/send")
        return [dict(item, reject_reason=normalize_reason(item.get("reject_reason"))) for item in results if isinstance(item, dict)]

    # ----- transport -----

    def _call(self, method: str, params: dict[str, Any], *, idempotent: bool = True) -> Any:
        body = {"key": self._key, **params}
        url = f"{self._base_url}/{method}.json"
        attempt = 0
        waited = 0.0
        waits = 0
        while True:
            attempt += 1
            if method == "messages/search":
                self._limiter.acquire()

            response = self._post(url, body, method, attempt, idempotent)
            if response is None:
                continue

            data = _json_or_marker(response)
            error_name = _error_name(data)
            if response.status_code == 429 or error_name == "RequestLimitExceeded":
                wait = self._rate_limit_wait(response, data, method, waited, waits)
                waited += wait
                waits += 1
                continue

            if error_name == "ServiceUnavailable" and idempotent and attempt < MAX_ATTEMPTS:
                self._back_off(method, attempt, "ServiceUnavailable")
                continue
            if error_name is not None:
                raise self._api_error(method, response.status_code, error_name, str(data.get("message") or ""))

            if response.status_code >= 500 and idempotent and attempt < MAX_ATTEMPTS:
                self._back_off(method, attempt, f"HTTP {response.status_code}")
                continue
            return self._checked_data(method, response, data, idempotent)

    def _post(self, url: str, body: dict[str, Any], method: str, attempt: int, idempotent: bool) -> httpx.Response | None:
        """Send one request. Return None when it failed and should be tried again."""
        try:
            return self._http.post(url, json=body)
        except httpx.TimeoutException as error:
            raise ServiceTimeout(
                f"Mandrill timed out on {method} after {self.settings.timeout:g} s",
                service=SERVICE,
                hint="try again later or raise mandrill.timeout in the profile",
            ) from error
        except httpx.TransportError as error:
            # A send is retried only when the request never left this machine.
            retryable = idempotent or isinstance(error, httpx.ConnectError)
            reason = self._mask(f"{type(error).__name__}: {error}")
            if retryable and attempt < MAX_ATTEMPTS:
                self._back_off(method, attempt, reason)
                return None
            raise ServiceError(
                f"could not reach Mandrill at {self.settings.url} for {method}: {reason}",
                service=SERVICE,
                hint="check mandrill.url in the profile and the network",
            ) from error
        except httpx.HTTPError as error:
            # A body that cannot be decoded, or a redirect loop: retrying does not help.
            reason = self._mask(f"{type(error).__name__}: {error}")
            raise ServiceError(f"Mandrill returned an unreadable response for {method}: {reason}", service=SERVICE) from error

    def _back_off(self, method: str, attempt: int, reason: str) -> None:
        delay = BACKOFF_SECONDS * 2 ** (attempt - 1)
        logger.warning("mandrill %s failed (%s); retry %d of %d in %.1f s", method, reason, attempt, MAX_ATTEMPTS - 1, delay)
        self._sleep(delay)

    def _rate_limit_wait(self, response: httpx.Response, data: Any, method: str, waited: float, waits: int) -> float:
        """Sleep out a 429 and return the seconds waited, or raise RateLimited past the budget."""
        wait = retry_after_seconds(response, DEFAULT_RETRY_AFTER)  # Mandrill sends seconds, never an HTTP date
        if waits >= MAX_RATE_LIMIT_WAITS or waited + wait > RATE_LIMIT_BUDGET:
            message = data.get("message") if isinstance(data, dict) else None
            raise RateLimited(
                self._mask(f"Mandrill rate-limited {method}: {message or 'Too Many Requests'}"),
                service=SERVICE,
                retry_after=wait,
                hint=f"wait {wait:g} s and run the probe again",
            )

        logger.info("mandrill %s rate-limited; waiting %.1f s as Retry-After requests", method, wait)
        self._sleep(wait)
        return wait

    def _api_error(self, method: str, status: int, name: str, message: str) -> Exception:
        message = self._mask(message)
        if name == "Invalid_Key":
            return AuthError(f"Mandrill rejected the API key ({name}: {message})", hint=AUTH_HINT)
        if name == "ValidationError":
            return UsageError(f"Mandrill rejected the {method} request: {message}")
        if name == "Unknown_Message":
            return NotFound(f"Mandrill has no such message: {message}", service=SERVICE, status=status)
        return ServiceError(f"Mandrill returned {name} for {method}: {message}", service=SERVICE, status=status)

    def _checked_data(self, method: str, response: httpx.Response, data: Any, idempotent: bool) -> Any:
        status = response.status_code
        excerpt = self._mask(_excerpt(response.text))
        if status >= 500:
            hint = None if idempotent else "the message may have been sent; search for it before sending again"
            raise ServiceError(
                f"Mandrill returned HTTP {status} for {method}: {excerpt}",
                service=SERVICE,
                status=status,
                hint=hint,
            )
        if not 200 <= status < 300:
            raise ServiceError(f"Mandrill returned HTTP {status} for {method}: {excerpt}", service=SERVICE, status=status)
        if data is _NOT_JSON:
            raise ServiceError(f"Mandrill returned a body that is not JSON for {method}: {excerpt}", service=SERVICE, status=status)
        return data

    def _mask(self, text: str) -> str:
        return credentials.mask(text.replace(self._key, "***"))


def undelivered(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the per-recipient `messages/send` results that will not be delivered."""
    return [item for item in results if item.get("status") in ("rejected", "invalid")]


def normalize_reason(reason: Any) -> Any:
    """Spell a reject reason with hyphens (`hard_bounce` -> `hard-bounce`)."""
    return _REASON_SPELLING.sub("-", reason) if isinstance(reason, str) else reason


def _normalized_message(message: dict[str, Any]) -> dict[str, Any]:
    reject = message.get("reject")
    if isinstance(reject, dict) and "reason" in reject:
        message = dict(message, reject=dict(reject, reason=normalize_reason(reject["reason"])))
    return message


def _date_text(value: dt.date | str, field: str) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise UsageError(f"{field} must be a UTC date or an aware datetime, got {value.isoformat()}")
        return value.astimezone(dt.timezone.utc).date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError as error:
        raise UsageError(f"{field} {value!r} is not a date in YYYY-MM-DD format") from error


def _json_or_marker(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return _NOT_JSON


def _error_name(data: Any) -> str | None:
    if isinstance(data, dict) and data.get("status") == "error":
        return str(data.get("name") or "GeneralError")
    return None


def _expect(data: Any, kind: type, method: str) -> Any:
    if not isinstance(data, kind):
        expected = "a list" if kind is list else "an object"
        raise ServiceError(f"Mandrill returned {type(data).__name__} instead of {expected} for {method}", service=SERVICE)
    return data


def _excerpt(text: str) -> str:
    plain = _SPACE.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()
    if len(plain) > EXCERPT_CHARS:
        return plain[: EXCERPT_CHARS - 1] + "…"
    return plain or "(empty body)"
