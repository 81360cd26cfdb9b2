"""The LogRocket client (httpx): session highlights of a user, and deep links to sessions.

LogRocket has no public API that lists a user's sessions. Its Highlights API summarises
the user's 10 most recent sessions asynchronously: `request_highlights` submits the
request and returns its id, `get_highlights` reads the state (PENDING, READY or FAILED),
and `wait_for_highlights` polls until the result is ready or a deadline passes. Generation
takes minutes, so a probe usually collects the result on a later run.

Without an API key, `deep_link` gives the address of the user's sessions in LogRocket's
web app for the engineer to open by hand (it works when the app identifies users by the
same value, usually the e-mail).

Auth is `Authorization: token <API key>`. A 429 is retried after Retry-After within a time
budget. A poll that gets a proxy 5xx page is retried twice. A submit is never retried after
a 5xx, because LogRocket may have accepted it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from helpctl import credentials
from helpctl.clients.http import EXCERPT_CHARS, ClientBase, html_excerpt, new_client, retry_after_seconds
from helpctl.config.settings import LogrocketSettings
from helpctl.errors import AuthError, ConfigError, NotFound, RateLimited, ServiceError, ServiceTimeout

logger = logging.getLogger(__name__)

SERVICE = "logrocket"
STATES = ("PENDING", "READY", "FAILED")
POLL_INTERVAL_SECONDS = 5.0
MAX_POLL_INTERVAL_SECONDS = 30.0
DEFAULT_RETRY_AFTER = 10.0
RATE_LIMIT_BUDGET = 60.0  # seconds one call may spend waiting out 429 responses
MAX_RATE_RETRIES = 5
TRANSIENT_STATUSES = frozenset({502, 503, 504})
TRANSIENT_RETRIES = 2


@dataclasses.dataclass
class Highlights:
    request_id: str
    status: str  # PENDING, READY or FAILED
    summary: str = ""
    sessions: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    error: str | None = None


def app_parts(settings: LogrocketSettings) -> tuple[str, str]:
    """Split the App ID `org/app` into its organization and app."""
    org, _, app = settings.app_id.strip().strip("/").partition("/")
    if not org or not app or "/" in app:
        raise ConfigError(
            f"logrocket.app_id {settings.app_id!r} is invalid",
            hint="use LogRocket's App ID, such as 'my-org/my-app'",
        )
    return org, app


def deep_link(settings: LogrocketSettings, user: str) -> str:
    """Return the web address of `user`'s sessions (`<web_url>/<org>/<app>/sessions?u=<user>`)."""
    org, app = app_parts(settings)
    return f"{settings.web_url.rstrip('/')}/{org}/{app}/sessions?u={quote(user, safe='')}"


class LogrocketClient(ClientBase):
    def __init__(
        self,
        settings: LogrocketSettings,
        key: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.sleep = sleep
        self.clock = clock
        org, app = app_parts(settings)
        self._path = f"/v1/orgs/{quote(org, safe='')}/apps/{quote(app, safe='')}/highlights/"
        credentials.register_secret(key)
        self._http = new_client(
            settings.timeout,
            transport,
            base_url=settings.url.rstrip("/"),
            headers={"Authorization": f"token {key}", "Accept": "application/json"},
        )

    def deep_link(self, user: str) -> str:
        return deep_link(self.settings, user)

    def request_highlights(self, user: str, *, start: dt.datetime | None = None, end: dt.datetime | None = None) -> str:
        """Submit a highlights request for `user` (an e-mail or a user id); return its id."""
        body: dict[str, Any] = {"userEmail" if "@" in user else "userID": user}
        if start is not None or end is not None:
            body["timeRange"] = {name: _epoch_ms(moment) for name, moment in (("startMs", start), ("endMs", end)) if moment}

        created = _json_object(self._call("POST", {"json": body}, retry_transient=False))
        request_id = created.get("id")
        if not isinstance(request_id, str) or not request_id:
            raise ServiceError("LogRocket accepted the highlights request but returned no id", service=SERVICE)
        return request_id

    def get_highlights(self, request_id: str) -> Highlights:
        """Read the state of a highlights request; NotFound when LogRocket no longer has it."""
        state = _json_object(self._call("GET", {"params": {"id": request_id}}, retry_transient=True, request_id=request_id))
        status = str(state.get("status") or "").upper()
        if status not in STATES:
            raise ServiceError(f"LogRocket returned an unknown highlights status {status!r}", service=SERVICE)

        sessions = state.get("sessions") or []
        return Highlights(
            request_id=request_id,
            status=status,
            summary=str(state.get("summary") or ""),
            sessions=[item for item in sessions if isinstance(item, dict)],
            error=state.get("error"),
        )

    def wait_for_highlights(self, request_id: str, *, timeout: float) -> Highlights:
        """Poll until the request is READY or FAILED, or `timeout` seconds pass (then PENDING)."""
        deadline = self.clock() + timeout
        interval = POLL_INTERVAL_SECONDS
        while True:
            highlights = self.get_highlights(request_id)
            left = deadline - self.clock()
            if highlights.status != "PENDING" or left <= 0:
                return highlights
            self.sleep(min(interval, left))
            interval = min(interval * 2, MAX_POLL_INTERVAL_SECONDS)

    # ----- HTTP -----

    def _call(
        self, method: str, options: dict[str, Any], *, retry_transient: bool, request_id: str | None = None
    ) -> httpx.Response:
        """Send one request with retries for 429 (and proxy 5xx when allowed); raise helpctl errors."""
        waited, rate_retries = 0.0, 0
        transient_left = TRANSIENT_RETRIES if retry_transient else 0
        while True:
            response = self._send(method, options)
            if response.status_code == 429:
                delay = retry_after_seconds(response, DEFAULT_RETRY_AFTER)
                rate_retries += 1
                if waited + delay > RATE_LIMIT_BUDGET or rate_retries > MAX_RATE_RETRIES:
                    message = f"LogRocket rate limit reached; retry in {delay:g} s"
                    raise RateLimited(message, service=SERVICE, retry_after=delay)
                logger.info("LogRocket returned 429; retrying in %g s", delay)
                self.sleep(delay)
                waited += delay
                continue

            if response.status_code in TRANSIENT_STATUSES and transient_left > 0:
                transient_left -= 1
                logger.info("LogRocket returned HTTP %s; retrying", response.status_code)
                self.sleep(1.0)
                continue

            _raise_for_status(response, request_id)
            return response

    def _send(self, method: str, options: dict[str, Any]) -> httpx.Response:
        try:
            return self._http.request(method, self._path, **options)
        except httpx.TimeoutException as error:
            raise ServiceTimeout(f"LogRocket did not respond within {self.settings.timeout:g} s", service=SERVICE) from error
        except httpx.HTTPError as error:
            raise ServiceError(
                f"could not reach LogRocket at {self.settings.url}: {type(error).__name__}",
                service=SERVICE,
                hint="check logrocket.url",
            ) from error


def _epoch_ms(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("LogRocket time ranges must be timezone-aware")
    return int(moment.timestamp() * 1000)


def _raise_for_status(response: httpx.Response, request_id: str | None) -> None:
    status = response.status_code
    if status < 400:
        return

    detail = _error_detail(response)
    if status in (401, 403):
        raise AuthError(
            f"LogRocket rejected the API key: {detail}",
            hint="run 'helpctl auth login logrocket' with a key from the app's settings",
        )
    if status == 404:
        missing = f"highlights request {request_id}" if request_id else f"app {response.request.url.path}"
        message = f"LogRocket has no {missing}: {detail}"
        raise NotFound(message, service=SERVICE, status=status, hint="check logrocket.app_id")
    raise ServiceError(f"LogRocket returned HTTP {status}: {detail}", service=SERVICE, status=status)


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return html_excerpt(response.text)
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])[:EXCERPT_CHARS]
    return html_excerpt(response.text)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as error:
        message = f"LogRocket returned a body that is not JSON: {html_excerpt(response.text)}"
        raise ServiceError(message, service=SERVICE) from error
    if not isinstance(body, dict):
        raise ServiceError("LogRocket returned JSON that is not an object", service=SERVICE)
    return body
