"""The Mixpanel client (httpx): a person's profile by e-mail and their raw events.

Mixpanel allows a project 60 queries an hour (export and query APIs alike), so every query
goes through `QueryLedger`, a JSON file shared by all cases and helpctl processes. A query
that would exceed `MixpanelSettings.hourly_budget` within the last hour is not sent. The
client raises `BudgetExhausted` (a RateLimited) with the moment it can run instead. A 429 from
Mixpanel blocks the ledger for Retry-After seconds, or else for a minute when the
concurrent limit was hit and an hour when the hourly one was.

The e-mail -> distinct_id lookup (engage) is cached in a second JSON file, so each person
costs one query ever; a person without a profile is looked up again after 24 hours. Both
files are 0600, written atomically, in folders created 0700.

Hosts follow the project's data residency (US, EU, India) unless `url` (query API) or
`export_url` (raw export; falls back to `url`) override them. Export days (`from_date`,
`to_date`) are UTC days, which holds for projects created after 2023-01-01; the events are
then filtered to the exact window by their `time`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from helpctl import credentials
from helpctl.clients.http import EXCERPT_CHARS, ClientBase, html_excerpt, new_client, retry_after_seconds
from helpctl.config.settings import MixpanelSettings
from helpctl.errors import AuthError, ConfigError, NotFound, RateLimited, ServiceError, ServiceTimeout

logger = logging.getLogger(__name__)

SERVICE = "mixpanel"
HOUR_SECONDS = 3600.0
CONCURRENT_BLOCK_SECONDS = 60.0
NEGATIVE_CACHE_SECONDS = 24 * 3600.0
ENGAGE_PAGE_SIZE = 1000  # Mixpanel's engage page size; a full page means there may be more
MAX_ENGAGE_PAGES = 5
TRANSIENT_STATUSES = frozenset({502, 503, 504})
TRANSIENT_RETRIES = 1  # each retry is another query of the hourly budget
RETRY_PAUSE_SECONDS = 2.0
STATE_VERSION = 1

ENGAGE_PATH = "/api/query/engage"
EXPORT_PATH = "/api/2.0/export"

# (query API, raw export API) by data residency; Mixpanel's documented hosts.
RESIDENCY_HOSTS = {
    "us": ("https://mixpanel.com", "https://data.mixpanel.com"),
    "eu": ("https://eu.mixpanel.com", "https://data-eu.mixpanel.com"),
    "in": ("https://in.mixpanel.com", "https://data-in.mixpanel.com"),
}


class BudgetExhausted(RateLimited):
    """No query may be sent before `available_at` (aware UTC)."""

    def __init__(self, message: str, *, available_at: dt.datetime, retry_after: float, hint: str | None = None) -> None:
        super().__init__(message, service=SERVICE, retry_after=retry_after, status=None, hint=hint)
        self.available_at = available_at


@dataclasses.dataclass
class UsageProfile:
    email: str
    distinct_ids: list[str]
    last_seen: str | None = None  # Mixpanel's `$last_seen`, UTC without an offset
    created: str | None = None
    cached: bool = False


@dataclasses.dataclass
class Export:
    """The deduplicated events of an export, within the exact window asked for."""

    events: list[dict[str, Any]]
    from_date: str
    to_date: str
    where: str
    duplicates: int = 0
    malformed_lines: int = 0


def api_urls(settings: MixpanelSettings) -> tuple[str, str]:
    """Return the base URLs of the query API and of the raw export API."""
    query_default, export_default = RESIDENCY_HOSTS[settings.residency]
    query = settings.url or query_default
    export = settings.export_url or settings.url or export_default
    return query.rstrip("/"), export.rstrip("/")


class MixpanelClient(ClientBase):
    def __init__(
        self,
        settings: MixpanelSettings,
        secret: str,
        *,
        ledger_path: Path,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        profile_cache_path: Path | None = None,
    ) -> None:
        if settings.service_account and not settings.project_id:
            raise ConfigError(
                "mixpanel.project_id is required with a service account",
                hint="set mixpanel.project_id in the profile",
            )

        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.query_url, self.export_url = api_urls(settings)
        credentials.register_secret(secret)
        self.ledger = QueryLedger(ledger_path, settings.project_id, settings.hourly_budget, clock)
        cache_path = profile_cache_path or ledger_path.with_name("mixpanel-profiles.json")
        self._profiles = _ProfileCache(cache_path, settings.project_id, clock)

        # A service account signs in with its username and secret; a legacy project
        # secret is the username with an empty password.
        auth = (settings.service_account, secret) if settings.service_account else (secret, "")
        self._http = new_client(
            settings.timeout,
            transport,
            auth=auth,
            headers={"Accept": "application/json", "Accept-Encoding": "gzip"},
        )

    # ----- profiles -----

    def find_profile(self, email: str) -> UsageProfile | None:
        """Return the person's profile, from the cache or one engage query; None without one."""
        email = email.strip().lower()
        hit, profile = self._profiles.get(email)
        if hit:
            return profile

        where = f'properties["$email"] == {json.dumps(email)}'
        results = self._engage(where)
        profile = None
        if results:
            properties = results[0].get("$properties") or {}
            profile = UsageProfile(
                email=email,
                distinct_ids=[str(item["$distinct_id"]) for item in results if item.get("$distinct_id")],
                last_seen=properties.get("$last_seen"),
                created=properties.get("$created"),
            )
        self._profiles.put(email, profile)
        return profile

    def _engage(self, where: str) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        form: dict[str, str] = {"where": where}
        for page in range(MAX_ENGAGE_PAGES):
            form["page"] = str(page)
            body = self._json(self._query("POST", f"{self.query_url}{ENGAGE_PATH}", data=form, endpoint="engage"))
            chunk = body.get("results")
            if not isinstance(chunk, list):
                raise ServiceError("Mixpanel's engage response has no results list", service=SERVICE)

            results += [item for item in chunk if isinstance(item, dict)]
            page_size = body.get("page_size")
            if len(chunk) < (page_size if isinstance(page_size, int) and page_size > 0 else ENGAGE_PAGE_SIZE):
                return results
            form["session_id"] = str(body.get("session_id") or "")
        logger.warning("Mixpanel profiles of one e-mail fill more than %d pages; using the first ones", MAX_ENGAGE_PAGES)
        return results

    # ----- events -----

    def export_events(
        self,
        distinct_ids: list[str],
        since: dt.datetime,
        before: dt.datetime,
        *,
        event_names: list[str] | None = None,
    ) -> Export:
        """Return the people's events with since <= time < before, without duplicates."""
        if not distinct_ids:
            raise ValueError("export_events needs at least one distinct_id")

        # NOTE: the export's `where` property name `distinct_id` is taken from the export's
        # own output; Mixpanel's documentation does not show this filter.
        where = " or ".join(f'properties["distinct_id"] == {json.dumps(identity)}' for identity in distinct_ids)
        export = Export([], _utc_day(since), _utc_day(before), where)
        params = {"from_date": export.from_date, "to_date": export.to_date, "where": where}
        if event_names:
            params["event"] = json.dumps(event_names)

        response = self._query("GET", f"{self.export_url}{EXPORT_PATH}", params=params, endpoint="export")
        self._read_export(response, export, since.timestamp(), before.timestamp())
        return export

    def _read_export(self, response: httpx.Response, export: Export, start: float, end: float) -> None:
        seen: set[tuple[Any, ...]] = set()
        try:
            for line in response.iter_lines():
                event = _event(line)
                if event is None:
                    export.malformed_lines += bool(line.strip())
                    continue

                properties = event["properties"]
                # Mixpanel's export does not deduplicate; these four fields identify an event.
                key = (event.get("event"), properties.get("distinct_id"), properties.get("time"), properties.get("$insert_id"))
                if key in seen:
                    export.duplicates += 1
                    continue
                seen.add(key)
                if start <= float(properties.get("time") or 0) < end:
                    export.events.append(event)
        except httpx.TimeoutException as error:
            raise ServiceTimeout(f"Mixpanel's export timed out after {len(seen)} events", service=SERVICE) from error
        except httpx.HTTPError as error:
            message = f"Mixpanel's export broke off after {len(seen)} events: {type(error).__name__}"
            raise ServiceError(message, service=SERVICE) from error
        finally:
            response.close()

    # ----- HTTP -----

    def _query(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        params: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one query counted in the ledger and return the open (streamed) 200 response."""
        query = dict(params or {})
        if self.settings.project_id:
            query = {"project_id": self.settings.project_id, **query}
        attempt = 0
        while True:
            attempt += 1
            self.ledger.spend(endpoint)
            request = self._http.build_request(method, url, params=query, data=data)
            try:
                response = self._http.send(request, stream=True)
            except httpx.TimeoutException as error:
                message = f"Mixpanel did not respond to the {endpoint} query within {self.settings.timeout:g} s"
                raise ServiceTimeout(message, service=SERVICE) from error
            except httpx.HTTPError as error:
                if attempt <= TRANSIENT_RETRIES:
                    self._pause(endpoint, type(error).__name__)
                    continue
                raise ServiceError(f"could not reach Mixpanel at {url}: {type(error).__name__}", service=SERVICE) from error

            if response.status_code == 200:
                return response
            response.read()
            response.close()
            if response.status_code in TRANSIENT_STATUSES and attempt <= TRANSIENT_RETRIES:
                self._pause(endpoint, f"HTTP {response.status_code}")
                continue
            raise self._error(response, endpoint)

    def _pause(self, endpoint: str, problem: str) -> None:
        logger.info("Mixpanel %s query failed (%s); retrying in %g s", endpoint, problem, RETRY_PAUSE_SECONDS)
        self.sleep(RETRY_PAUSE_SECONDS)

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = json.loads(response.read())
        except ValueError as error:
            raise ServiceError(f"Mixpanel returned a body that is not JSON: {html_excerpt(response.text)}", service=SERVICE) from error
        finally:
            response.close()
        if not isinstance(body, dict):
            raise ServiceError("Mixpanel returned JSON that is not an object", service=SERVICE)
        return body

    def _error(self, response: httpx.Response, endpoint: str) -> Exception:
        status = response.status_code
        detail = _error_text(response)
        if status == 429:
            return self._rate_limited(response, detail)
        if status == 401:
            return AuthError(
                f"Mixpanel rejected the credentials: {detail}",
                hint="check mixpanel.service_account and run 'helpctl auth login mixpanel'",
            )
        if status == 403:
            return AuthError(
                f"Mixpanel denied the {endpoint} query: {detail}",
                hint="give the service account access to mixpanel.project_id",
            )
        if status == 404:
            address = str(response.request.url).split("?")[0]
            return NotFound(
                f"Mixpanel has no {endpoint} API at {address}",
                service=SERVICE,
                status=status,
                hint="check mixpanel.residency, url and export_url",
            )
        return ServiceError(f"Mixpanel returned HTTP {status} to the {endpoint} query: {detail}", service=SERVICE, status=status)

    def _rate_limited(self, response: httpx.Response, detail: str) -> BudgetExhausted:
        concurrent = re.search(r"(\d+)/(\d+) queries running concurrently", detail)
        kind, seconds = "hourly", HOUR_SECONDS
        if concurrent and int(concurrent.group(1)) >= int(concurrent.group(2)):
            kind, seconds = "concurrent", CONCURRENT_BLOCK_SECONDS
        seconds = retry_after_seconds(response, None) or seconds

        available_at = self.ledger.block(seconds)
        return BudgetExhausted(
            f"Mixpanel's {kind} query limit is exhausted ({detail}); queries wait until {_clock_time(available_at)}",
            available_at=available_at,
            retry_after=seconds,
            hint="run the probe again after that time",
        )


class QueryLedger:
    """The Mixpanel queries sent in the last hour, per project, in a JSON file shared by all cases."""

    def __init__(self, path: Path, project_id: str, budget: int, clock: Callable[[], float]) -> None:
        self._state = _StateFile(path)
        self.project_id = project_id or "-"
        self.budget = budget
        self.clock = clock

    def spend(self, endpoint: str) -> None:
        """Record one query now, or raise BudgetExhausted without recording it."""
        now = self.clock()
        with self._state.locked() as data:
            entry = self._entry(data, now)
            blocked_until = float(entry.get("blocked_until") or 0)
            if blocked_until > now:
                raise self._exhausted(endpoint, blocked_until, now, "Mixpanel returned 429 earlier")
            if len(entry["queries"]) >= self.budget:
                oldest = min(entry["queries"])
                cause = f"the hourly budget of {self.budget} queries is used up"
                raise self._exhausted(endpoint, oldest + HOUR_SECONDS, now, cause)
            entry["queries"].append(now)

    def block(self, seconds: float) -> dt.datetime:
        """Send no query for `seconds`; returns the moment queries may run again."""
        now = self.clock()
        with self._state.locked() as data:
            entry = self._entry(data, now)
            entry["blocked_until"] = max(float(entry.get("blocked_until") or 0), now + seconds)
            until = entry["blocked_until"]
        return _moment(until)

    def used(self) -> int:
        """Return the number of queries sent in the last hour."""
        now = self.clock()
        with self._state.locked() as data:
            return len(self._entry(data, now)["queries"])

    def _entry(self, data: dict[str, Any], now: float) -> dict[str, Any]:
        projects = data.setdefault("projects", {})
        entry = projects.setdefault(self.project_id, {"queries": [], "blocked_until": 0})
        entry["queries"] = [moment for moment in entry.get("queries") or [] if now - float(moment) < HOUR_SECONDS]
        return entry

    def _exhausted(self, endpoint: str, available: float, now: float, cause: str) -> BudgetExhausted:
        logger.info("Mixpanel %s query not sent: %s", endpoint, cause)
        return BudgetExhausted(
            f"Mixpanel {endpoint} query not sent: {cause}; it can run at {_clock_time(_moment(available))}",
            available_at=_moment(available),
            retry_after=max(0.0, available - now),
            hint="run the probe again after that time; the budget is mixpanel.hourly_budget",
        )


class _ProfileCache:
    """E-mail -> distinct_ids, per project; found people are kept, missing ones for 24 hours."""

    def __init__(self, path: Path, project_id: str, clock: Callable[[], float]) -> None:
        self._state = _StateFile(path)
        self.project_id = project_id or "-"
        self.clock = clock

    def get(self, email: str) -> tuple[bool, UsageProfile | None]:
        with self._state.locked() as data:
            entry = data.get("projects", {}).get(self.project_id, {}).get(email)
        if not entry:
            return False, None
        if entry.get("distinct_ids"):
            distinct_ids = list(entry["distinct_ids"])
            return True, UsageProfile(email, distinct_ids, entry.get("last_seen"), entry.get("created"), cached=True)
        fresh = self.clock() - float(entry.get("resolved_at") or 0) < NEGATIVE_CACHE_SECONDS
        return fresh, None

    def put(self, email: str, profile: UsageProfile | None) -> None:
        entry: dict[str, Any] = {"distinct_ids": [], "resolved_at": self.clock()}
        if profile is not None:
            entry.update(distinct_ids=profile.distinct_ids, last_seen=profile.last_seen, created=profile.created)
        with self._state.locked() as data:
            data.setdefault("projects", {}).setdefault(self.project_id, {})[email] = entry


class _StateFile:
    """A small JSON document changed under an exclusive lock and replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(f".{path.name}.lock")

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        _ensure_folder(self.path.parent)
        descriptor = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # flock locks belong to an open file description, so this also excludes other threads.
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            data = self._load()
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                self._save(data)
        finally:
            os.close(descriptor)

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"version": STATE_VERSION}
        except (ValueError, UnicodeDecodeError) as error:
            logger.warning("%s is damaged (%s); starting it again", self.path, error)
            return {"version": STATE_VERSION}
        return data if isinstance(data, dict) else {"version": STATE_VERSION}

    def _save(self, data: dict[str, Any]) -> None:
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(data, handle, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise


def _ensure_folder(folder: Path) -> None:
    # New folders are private; an existing folder chosen by the caller keeps its mode.
    if not folder.is_dir():
        folder.mkdir(parents=True, mode=0o700, exist_ok=True)


def _utc_day(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("Mixpanel export times must be timezone-aware")
    return moment.astimezone(dt.timezone.utc).date().isoformat()


def _moment(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc)


def _clock_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%MZ")


def _event(line: str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("properties"), dict):
        return None
    return event


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return html_excerpt(response.text)
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])[:EXCERPT_CHARS * 2]
    return html_excerpt(response.text)
