"""The BugSnag Data Access API v2 client (httpx): errors and events of one project.

Auth is `Authorization: token <personal auth token>` (BugSnag rejects `Bearer`) with
`X-Version: 2` on every request. Lists ask for `per_page` from the settings (BugSnag's
default is 30 and its maximum 100) and follow the `rel="next"` link exactly as given, up to
`max_pages` pages. A list stops early, and records why in `Listing.reason`, when the next link
repeats one already fetched, leaves the configured host, or reaches an offset that BugSnag
rejects with 422.

A 429 is retried after its Retry-After seconds, or after a whole 60-second rate window when
the header is missing, at most 5 times and while the waits stay within `retry_budget`
seconds. Proxy 5xx pages are retried twice. Every httpx error and HTTP error status becomes a helpctl error here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from helpctl import credentials
from helpctl.clients.http import EXCERPT_CHARS, ClientBase, html_excerpt, new_client, retry_after_seconds
from helpctl.config.settings import BugsnagSettings
from helpctl.errors import AuthError, NotFound, RateLimited, ServiceError, ServiceTimeout

logger = logging.getLogger(__name__)

SERVICE = "bugsnag"
API_VERSION = "2"
MAX_PER_PAGE = 100
# BugSnag limits requests per one-minute window; without Retry-After we wait out a window.
RATE_WINDOW_SECONDS = 60.0
TRANSIENT_STATUSES = frozenset({502, 503, 504})
TRANSIENT_RETRIES = 2
# A service that keeps sending `Retry-After: 0` must not keep the client looping.
MAX_RATE_RETRIES = 5


@dataclasses.dataclass
class Listing:
    """The rows of a paged list, and whether every page was read."""

    items: list[dict[str, Any]]
    complete: bool = True
    reason: str | None = None
    total: int | None = None  # X-Total-Count of the first page
    pages: int = 0


class BugsnagClient(ClientBase):
    """One BugSnag project, read with one personal auth token."""

    def __init__(
        self,
        settings: BugsnagSettings,
        token: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        retry_budget: float = 120.0,
    ) -> None:
        self.settings = settings
        self.sleep = sleep
        self.retry_budget = retry_budget
        credentials.register_secret(token)
        self._http = new_client(
            settings.timeout,
            transport,
            base_url=settings.url.rstrip("/"),
            headers={"Authorization": f"token {token}", "X-Version": API_VERSION, "Accept": "application/json"},
        )

    # ----- calls -----

    def list_errors(
        self,
        *,
        user_email: str | None = None,
        since: dt.datetime | None = None,
        before: dt.datetime | None = None,
        sort: str = "last_seen",
    ) -> Listing:
        """List the project's errors that have events matching the filters."""
        params = _filter_params(user_email, since, before) + [("sort", sort), ("direction", "desc")]
        return self._list(f"{self._project_path()}/errors", params)

    def list_events(
        self,
        *,
        user_email: str | None = None,
        since: dt.datetime | None = None,
        before: dt.datetime | None = None,
        error_id: str | None = None,
    ) -> Listing:
        """List events, newest first; `user_email` matches as a substring, as BugSnag does."""
        path = f"{self._project_path()}/events"
        if error_id is not None:
            path = f"{self._project_path()}/errors/{error_id}/events"
        params = _filter_params(user_email, since, before) + [("direction", "desc")]
        return self._list(path, params)

    def get_error(self, error_id: str) -> dict[str, Any]:
        """Return one error with its counts over all its events."""
        missing = f"error {error_id} of project {self.settings.project_id}"
        response = self._request(f"{self._project_path()}/errors/{error_id}", [], missing=missing)
        return _json_object(response)

    def error_link(self, error_id: str) -> str:
        """Return the dashboard address of an error, for people to open."""
        web = self.settings.web_url.rstrip("/")
        return f"{web}/{self.settings.organization_slug}/{self.settings.project_slug}/errors/{error_id}"

    # ----- paging -----

    def _project_path(self) -> str:
        return f"/projects/{self.settings.project_id}"

    def _list(self, path: str, params: list[tuple[str, str]]) -> Listing:
        per_page = max(1, min(self.settings.per_page, MAX_PER_PAGE))
        listing = Listing(items=[])
        response = self._request(path, params + [("per_page", str(per_page))])
        listing.total = _int_header(response, "x-total-count")
        seen = {str(response.request.url)}

        while True:
            listing.items += _json_list(response)
            listing.pages += 1
            next_url = response.links.get("next", {}).get("url")
            if not next_url:
                return listing

            reason = self._stop_reason(next_url, seen, listing.pages)
            if reason:
                return _truncated(listing, reason)

            seen.add(next_url)
            try:
                response = self._request(next_url, None)
            except ServiceError as error:
                if error.status != 422:
                    raise
                return _truncated(listing, f"BugSnag rejected a deeper page ({error.message})")

    def _stop_reason(self, next_url: str, seen: set[str], pages: int) -> str | None:
        if next_url in seen:
            return f"BugSnag repeated a next-page link after {pages} pages"
        if _origin(next_url) != _origin(str(self._http.base_url)):
            return f"the next-page link points at another host ({urlsplit(next_url).hostname})"
        if pages >= self.settings.max_pages:
            return f"stopped after max_pages={self.settings.max_pages} pages"
        return None

    # ----- HTTP -----

    def _request(self, url: str, params: list[tuple[str, str]] | None, missing: str | None = None) -> httpx.Response:
        """GET `url` with retries for 429 and proxy 5xx responses; raise helpctl errors.

        `missing` names what a 404 means (the project, unless the caller says otherwise).
        """
        waited = 0.0
        rate_retries = 0
        transient_left = TRANSIENT_RETRIES
        while True:
            response = self._send(url, params)
            if response.status_code == 429:
                delay = retry_after_seconds(response, RATE_WINDOW_SECONDS)
                rate_retries += 1
                if waited + delay > self.retry_budget or rate_retries > MAX_RATE_RETRIES:
                    raise RateLimited(
                        f"BugSnag rate limit reached on {_path_of(url)}; retry in {delay:g} s",
                        service=SERVICE,
                        retry_after=delay,
                        hint="run the probe again later",
                    )
                logger.info("BugSnag returned 429 on %s; retrying in %g s", _path_of(url), delay)
                self.sleep(delay)
                waited += delay
                continue

            if response.status_code in TRANSIENT_STATUSES and transient_left > 0:
                transient_left -= 1
                logger.info("BugSnag returned HTTP %s on %s; retrying", response.status_code, _path_of(url))
                self.sleep(1.0)
                continue

            _raise_for_status(response, self.settings.project_id, missing or f"project {self.settings.project_id}")
            return response

    def _send(self, url: str, params: list[tuple[str, str]] | None) -> httpx.Response:
        try:
            return self._http.get(url, params=params)
        except httpx.TimeoutException as error:
            raise ServiceTimeout(
                f"BugSnag did not respond to {_path_of(url)} within {self.settings.timeout:g} s",
                service=SERVICE,
                hint="try again later or raise bugsnag.timeout",
            ) from error
        except httpx.HTTPError as error:
            raise ServiceError(
                f"could not reach BugSnag at {self.settings.url}: {type(error).__name__}",
                service=SERVICE,
                hint="check bugsnag.url and the network",
            ) from error


def _filter_params(user_email: str | None, since: dt.datetime | None, before: dt.datetime | None) -> list[tuple[str, str]]:
    """Encode filters as BugSnag's `filters[<field>][][type|value]` pairs; times in UTC."""
    filters = []
    if user_email:
        filters.append(("user.email", user_email))
    if since is not None:
        filters.append(("event.since", _utc(since)))
    if before is not None:
        filters.append(("event.before", _utc(before)))

    params = []
    for field, value in filters:
        params.append((f"filters[{field}][][type]", "eq"))
        params.append((f"filters[{field}][][value]", value))
    return params


def _utc(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("BugSnag filter times must be timezone-aware")
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _truncated(listing: Listing, reason: str) -> Listing:
    logger.warning("BugSnag list truncated at %d rows: %s", len(listing.items), reason)
    listing.complete = False
    listing.reason = reason
    return listing


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port


def _path_of(url: str) -> str:
    return urlsplit(url).path or url


def _int_header(response: httpx.Response, name: str) -> int | None:
    try:
        return int(response.headers.get(name, ""))
    except ValueError:
        return None


def _raise_for_status(response: httpx.Response, project_id: str, missing: str) -> None:
    status = response.status_code
    if status < 400:
        return

    detail = _error_detail(response)
    if status == 401:
        raise AuthError(
            f"BugSnag rejected the token: {detail}",
            hint="use a personal auth token (BugSnag settings > My account); helpctl sends it with the 'token' scheme",
        )
    if status == 403:
        raise AuthError(
            f"the BugSnag token may not read project {project_id}: {detail}",
            hint="ask an organization admin for access",
        )
    if status == 404:
        raise NotFound(
            f"BugSnag {missing} not found: {detail}",
            service=SERVICE,
            status=status,
            hint="check bugsnag.project_id and that the token's user belongs to the project",
        )
    raise ServiceError(f"BugSnag returned HTTP {status}: {detail}", service=SERVICE, status=status)


def _error_detail(response: httpx.Response) -> str:
    """Return BugSnag's error messages, or a short excerpt of a page that is not JSON."""
    try:
        body = response.json()
    except ValueError:
        return html_excerpt(response.text)
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        return "; ".join(str(item) for item in body["errors"])[:EXCERPT_CHARS]
    return html_excerpt(response.text)


def _json_list(response: httpx.Response) -> list[dict[str, Any]]:
    body = _json_body(response)
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        message = f"BugSnag returned a list page that is not a JSON array: {html_excerpt(response.text)}"
        raise ServiceError(message, service=SERVICE)
    return body


def _json_object(response: httpx.Response) -> dict[str, Any]:
    body = _json_body(response)
    if not isinstance(body, dict):
        raise ServiceError(f"BugSnag returned a body that is not a JSON object: {html_excerpt(response.text)}", service=SERVICE)
    return body


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as error:
        raise ServiceError(
            f"BugSnag returned a body that is not JSON (HTTP {response.status_code}): {html_excerpt(response.text)}",
            service=SERVICE,
            status=response.status_code,
        ) from error
