"""A LogRocket Highlights API stand-in: session highlights of one app, generated asynchronously.

- `POST /v1/orgs/<org>/apps/<app>/highlights/` with `Authorization: token <key>` and a JSON
  body with `userEmail` or `userID` and an optional `timeRange {startMs, endMs}` (epoch
  milliseconds) returns `{"id": <request id>}`. A `webhookURL` is accepted and never called.
- `GET /v1/orgs/<org>/apps/<app>/highlights/?id=<request id>` returns `status` PENDING for
  the first `pending_polls` polls, and until `pending_seconds` have passed since the request.
  Then it returns READY with a summary and the highlights of the user's 10 most recent
  sessions in the range, each with a link. With the knob `fail` it returns FAILED.
- `GET /app/<org>/<app>/sessions?u=<user>` is a small HTML page of the user's sessions, the
  target of helpctl's deep links.

A bad key gets 401, an unknown org or app 404, a bad body 400, all as `{"error": "..."}`.
NOTE: LogRocket documents the request and the PENDING/READY/FAILED states, but not the
exact fields of a READY response. The `summary` and `sessions[]` fields are this sandbox's
own shape.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import re
import time
from collections.abc import Callable
from typing import Any

from helpctl.sandbox import observability_seed as seed
from helpctl.sandbox.server import Knobs, Request, Response, Service

MAX_SESSIONS = 10
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")

_HIGHLIGHTS = re.compile(r"^/v1/orgs/(?P<org>[^/]+)/apps/(?P<app>[^/]+)/highlights/?$")
_SESSIONS_PAGE = re.compile(r"^/app/(?P<org>[^/]+)/(?P<app>[^/]+)/sessions/?$")


@dataclasses.dataclass
class LogrocketKnobs(Knobs):
    pending_polls: int = 1  # polls that get PENDING before READY
    pending_seconds: float = 0.0  # and seconds after the request before READY
    fail: bool = False  # return FAILED instead of READY


@dataclasses.dataclass
class _Job:
    id: str
    user: str
    start: dt.datetime | None
    end: dt.datetime | None
    created: float
    polls: int = 0


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LogrocketService(Service):
    name = "logrocket"

    def __init__(self, anchor: dt.datetime | None = None, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.knobs = LogrocketKnobs()
        self.anchor = anchor or dt.datetime.now(dt.timezone.utc)
        self.clock = clock
        self.sessions = seed.logrocket_sessions(self.anchor)
        self.jobs: dict[str, _Job] = {}

    def reset(self) -> None:
        """Restore the default knobs and forget requests and highlights jobs, for tests that share a server."""
        with self.lock:
            self.knobs = LogrocketKnobs()
            self.log.clear()
            self.jobs.clear()

    def handle(self, request: Request) -> Response:
        try:
            page = _SESSIONS_PAGE.match(request.path)
            if page is not None and request.method == "GET":
                self._check_app(page.group("org"), page.group("app"))
                return self._sessions_page(request)

            found = _HIGHLIGHTS.match(request.path)
            if found is None:
                raise ApiError(404, "Not found")
            self._authenticate(request)
            self._check_app(found.group("org"), found.group("app"))
            with self.lock:
                if request.method == "POST":
                    return self._create(request)
                if request.method == "GET":
                    return self._poll(request)
            raise ApiError(405, "Method not allowed")
        except ApiError as error:
            return Response.json({"error": error.message}, error.status)

    def _authenticate(self, request: Request) -> None:
        scheme, _, key = request.header("authorization").partition(" ")
        if scheme.lower() != "token" or key.strip() != seed.LOGROCKET_KEY:
            raise ApiError(401, "Unauthorized: invalid API key")

    def _check_app(self, org: str, app: str) -> None:
        if (org, app) != (seed.LOGROCKET_ORGANIZATION, seed.LOGROCKET_APP):
            raise ApiError(404, f"App {org}/{app} not found")

    # ----- highlights -----

    def _create(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError as error:
            raise ApiError(400, "The body must be JSON") from error
        if not isinstance(body, dict):
            raise ApiError(400, "The body must be a JSON object")

        user = body.get("userEmail") or body.get("userID")
        if not isinstance(user, str) or not user.strip():
            raise ApiError(400, "userEmail or userID is required")
        start, end = _time_range(body.get("timeRange"))

        job_id = seed.stable_hex("logrocket-highlights", len(self.jobs), user, length=20)
        self.jobs[job_id] = _Job(job_id, user.strip().lower(), start, end, self.clock())
        return Response.json({"id": job_id})

    def _poll(self, request: Request) -> Response:
        job = self.jobs.get(request.arg("id") or "")
        if job is None:
            raise ApiError(404, "Highlights request not found")

        job.polls += 1
        waiting = job.polls <= self.knobs.pending_polls or self.clock() - job.created < self.knobs.pending_seconds
        if waiting:
            return Response.json({"id": job.id, "status": "PENDING"})
        if self.knobs.fail:
            return Response.json({"id": job.id, "status": "FAILED", "error": "Cancelled: highlight generation failed"})
        return Response.json(self._ready(request, job))

    def _ready(self, request: Request, job: _Job) -> dict[str, Any]:
        sessions = self._sessions_of(job.user, job.start, job.end)
        items = [
            {
                "sessionID": session.id,
                "url": self._session_url(request, session),
                "startedAt": int(session.started_at.timestamp() * 1000),
                "durationMinutes": session.minutes,
                "highlights": f"{session.highlights} [Watch]({self._session_url(request, session)})",
            }
            for session in sessions
        ]
        summary = f"{len(items)} sessions of {job.user}." if items else "No sessions found for this user in the time range."
        if items:
            summary += " Most recent: " + sessions[0].highlights
        return {"id": job.id, "status": "READY", "summary": summary, "sessions": items}

    def _sessions_of(self, user: str, start: dt.datetime | None, end: dt.datetime | None) -> list[seed.Session]:
        found = [
            session
            for session in self.sessions
            if user in (session.email, seed.distinct_id(session.email))
            and (start is None or session.started_at >= start)
            and (end is None or session.started_at < end)
        ]
        found.sort(key=lambda session: session.started_at, reverse=True)
        return found[:MAX_SESSIONS]

    def _session_url(self, request: Request, session: seed.Session) -> str:
        return f"{self._base_url(request)}/app/{seed.LOGROCKET_ORGANIZATION}/{seed.LOGROCKET_APP}/sessions/{session.id}"

    def _base_url(self, request: Request) -> str:
        # Links point back at the address the client used, which is always a loopback one.
        host = request.header("host") or "127.0.0.1"
        if not host.startswith(LOOPBACK_HOSTS):
            host = "127.0.0.1"
        return f"http://{host}"

    # ----- the web page behind deep links -----

    def _sessions_page(self, request: Request) -> Response:
        user = (request.arg("u") or "").strip().lower()
        rows = "".join(
            f"<li>{session.started_at:%Y-%m-%d %H:%M}Z, {session.minutes} min: {html.escape(session.highlights)}</li>"
            for session in self._sessions_of(user, None, None)
        )
        body = f"<html><head><title>Sessions of {html.escape(user)}</title></head><body><ul>{rows}</ul></body></html>"
        return Response.text(body, content_type="text/html; charset=utf-8")


def _time_range(value: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise ApiError(400, "timeRange must be an object with startMs and endMs")
    try:
        start = _from_ms(value.get("startMs"))
        end = _from_ms(value.get("endMs"))
    except (TypeError, ValueError) as error:
        raise ApiError(400, "timeRange startMs and endMs must be epoch milliseconds") from error
    if start and end and end <= start:
        raise ApiError(400, "timeRange endMs must be after startMs")
    return start, end


def _from_ms(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    return dt.datetime.fromtimestamp(int(value) / 1000, dt.timezone.utc)
