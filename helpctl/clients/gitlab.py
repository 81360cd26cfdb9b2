"""The GitLab REST client: python-gitlab with helpctl's retries, limits and errors.

Only the commands that file issues or route cases import this module, because importing
python-gitlab (and requests) costs start-up time.

Retries: python-gitlab retries 429 responses (after Retry-After) and, with
`retry_transient_errors`, 5xx/52x responses, timeouts and dropped connections, up to
`GitlabSettings.max_retries` times. Issue creation is the exception. A create POST is
never retried after a transient failure, because the issue may already exist, so the
caller looks for it by its marker instead. A new note is not retried either: with a
marker line, `add_note` looks for the note after a failure whose effect is unknown.
401, 403 and 404 are never retried.

Errors: every python-gitlab and requests exception is translated into helpctl's errors
here, with a short text excerpt of the response, never a whole HTML page or the token.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import html
import logging
import math
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

import gitlab
import gitlab.exceptions
import requests

from helpctl import __version__, credentials
from helpctl.config.settings import GitlabSettings
from helpctl.errors import AuthError, HelpctlError, NotFound, RateLimited, ServiceError, ServiceTimeout, UsageError

logger = logging.getLogger(__name__)

SERVICE = "gitlab"
EXCERPT_CHARS = 160
# Issues scanned when looking for a case marker: 5 pages of 100, newest first.
MARKER_SEARCH_MAX_PAGES = 5
# Longest Retry-After (seconds) that the client sleeps through before raising RateLimited.
DEFAULT_MAX_RATE_LIMIT_WAIT = 60.0
DEFAULT_LABEL_COLOR = "#428bca"
# Notes read by one `issue_notes` call at most: the newest ones are kept.
MAX_NOTES = 1000
# Notes searched for a marker after `add_note` failed with an unknown effect.
NOTE_MARKER_SEARCH = 100
ISSUE_STATE_EVENTS = ("close", "reopen")


class _WaitTooLong(Exception):
    """Raised from the response hook when a Retry-After exceeds the client's `max_wait`."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class GitlabClient:
    """One GitLab project, reached with one token. Methods return plain dicts."""

    def __init__(self, settings: GitlabSettings, token: str, *, max_wait: float = DEFAULT_MAX_RATE_LIMIT_WAIT) -> None:
        self.settings = settings
        self.max_wait = max_wait
        self._last_retry_after: float | None = None
        self._user: dict[str, Any] | None = None
        self._project: dict[str, Any] | None = None
        credentials.register_secret(token)

        session = requests.Session()
        session.hooks["response"].append(self._on_response)
        self._gitlab = gitlab.Gitlab(
            settings.url,
            private_token=token,
            timeout=settings.timeout,
            retry_transient_errors=True,
            user_agent=f"helpctl/{__version__}",
            session=session,
        )
        # python-gitlab takes max_retries per request, not in its constructor.
        self._options: dict[str, Any] = {"max_retries": settings.max_retries}

    # ----- identity and project -----

    def current_user(self) -> dict[str, Any]:
        """Return the token's owner (`GET /user`), cached for the client's lifetime."""
        if self._user is None:
            # Not `Gitlab.auth()`: it takes no per-request options, so it would retry up
            # to python-gitlab's default of 10 times instead of `max_retries`.
            with self._errors("read the token's user"):
                answer = self._gitlab.http_get("/user", **self._options)
            if not isinstance(answer, dict):
                raise ServiceError("GitLab returned a response that is not JSON while trying to read the token's user", service=SERVICE)
            self._user = _user_dict(answer)
        return self._user

    def project(self) -> dict[str, Any]:
        """Return the configured project; NotFound when it is missing or not visible."""
        if self._project is None:
            with self._errors(f"read project {self.settings.project}", missing="project"):
                found = self._gitlab.projects.get(self.settings.project, **self._options)
            attributes = found.attributes
            self._project = {
                "id": attributes["id"],
                "path_with_namespace": attributes.get("path_with_namespace", self.settings.project),
                "name": attributes.get("name"),
                "web_url": attributes.get("web_url"),
                "default_branch": attributes.get("default_branch"),
            }
        return self._project

    def user_by_username(self, username: str) -> dict[str, Any] | None:
        with self._errors(f"look up GitLab user {username!r}"):
            users = self._gitlab.users.list(username=username, get_all=False, **self._options)
        for found in users:
            if str(found.attributes.get("username", "")).lower() == username.lower():
                return _user_dict(found.attributes)
        return None

    # ----- labels -----

    def label_names(self) -> set[str]:
        with self._errors(f"list the labels of {self.settings.project}", missing="project"):
            labels = self._handle().labels.list(get_all=True, per_page=100, **self._options)
        return {str(label.attributes["name"]) for label in labels}

    def create_label(self, name: str, color: str = DEFAULT_LABEL_COLOR, description: str = "") -> dict[str, Any]:
        if "," in name or not name.strip():
            raise UsageError(f"label {name!r} is invalid: GitLab label names must be non-empty and contain no comma")

        data = {"name": name, "color": color, "description": description or "Created by helpctl"}
        with self._errors(f"create label {name!r} in {self.settings.project}", missing="project"):
            label = self._handle().labels.create(data, **self._options)
        return {"id": label.attributes.get("id"), "name": label.attributes.get("name")}

    # ----- issues -----

    def find_issue_by_marker(self, marker: str) -> dict[str, Any] | None:
        """Return the oldest issue, in any state, whose description has `marker` as a line.

        GitLab's search is fuzzy, so each hit is confirmed against the description. Only
        the newest `MARKER_SEARCH_MAX_PAGES` pages of hits are read.

        NOTE: this assumes GitLab's search finds an issue as soon as it is created, as the
        stand-in does. On an instance whose search lags, a quick retry could file twice.
        """
        term = marker.removeprefix("<!--").removesuffix("-->").strip()
        query = {"search": term, "in": "description", "order_by": "created_at", "sort": "desc"}
        matches = []
        with self._errors("search issues for the case marker", missing="project"):
            pages = self._handle().issues.list(iterator=True, per_page=100, query_parameters=query, **self._options)
            for index, issue in enumerate(pages):
                if index >= MARKER_SEARCH_MAX_PAGES * 100:
                    logger.warning("stopped the marker search after %d issues matching %r", index, term)
                    break
                if has_marker(issue.attributes.get("description"), marker):
                    matches.append(issue.attributes)

        if not matches:
            return None
        if len(matches) > 1:
            logger.warning("%d issues carry the marker %r; using the oldest", len(matches), marker)
        return _issue_dict(min(matches, key=lambda item: item["iid"]))

    def create_issue(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Create an issue; a transient failure is raised, never retried (see module doc)."""
        with self._errors(f"create an issue in {self.settings.project}", missing="project"):
            issue = self._handle().issues.create(dict(payload), retry_transient_errors=False, **self._options)
        return _issue_dict(issue.attributes)

    def get_issue(self, iid: int) -> dict[str, Any]:
        with self._errors(f"read issue #{iid} of {self.settings.project}", missing=f"issue #{iid}"):
            issue = self._handle().issues.get(iid, **self._options)
        return _issue_dict(issue.attributes)

    def list_issues(
        self,
        *,
        state: str | None = "opened",
        labels: Iterable[str] = (),
        search: str | None = None,
        search_in: str = "title,description",
        order_by: str = "updated_at",
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Return at most `limit` issues, newest first by `order_by` (created_at or updated_at).

        `state` is opened, closed or None for both; `labels` must all be on an issue;
        `search` is GitLab's fuzzy text search in the `search_in` fields.
        """
        query: dict[str, Any] = {"order_by": order_by, "sort": "desc"}
        if state:
            query["state"] = state
        if labels:
            query["labels"] = ",".join(labels)
        if search:
            query.update({"search": search, "in": search_in})

        found = []
        with self._errors(f"list the issues of {self.settings.project}", missing="project"):
            pages = self._handle().issues.list(iterator=True, per_page=min(limit, 100), query_parameters=query, **self._options)
            for issue in pages:
                if len(found) >= limit:
                    break
                found.append(_issue_dict(issue.attributes))
        return found

    def set_issue_state(self, iid: int, state_event: str) -> dict[str, Any]:
        """Close or reopen issue `iid` (`state_event` close or reopen); repeating it changes nothing."""
        if state_event not in ISSUE_STATE_EVENTS:
            raise UsageError(f"state_event {state_event!r} is invalid; expected one of {', '.join(ISSUE_STATE_EVENTS)}")

        action = f"{state_event} issue #{iid} of {self.settings.project}"
        with self._errors(action, missing=f"issue #{iid}"):
            answer = self._handle().issues.update(iid, {"state_event": state_event}, **self._options)
        return _issue_dict(answer)

    # ----- notes -----

    def issue_notes(self, iid: int, *, after_id: int | None = None, since: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Return the notes of issue `iid` newer than note `after_id`, or created after `since`, oldest first.

        GitLab gives notes increasing ids, so the newest-first reading stops at the first
        note at or before the cursor and reads only what is new. System notes (state
        changes) are included, marked `system`.

        NOTE: past `MAX_NOTES` new notes only the newest are returned, with a warning.
        """
        query = {"order_by": "created_at", "sort": "desc"}
        found: list[dict[str, Any]] = []
        with self._errors(f"list the notes of issue #{iid}", missing=f"issue #{iid}"):
            notes = self._handle().issues.get(iid, lazy=True).notes
            for note in notes.list(iterator=True, per_page=100, query_parameters=query, **self._options):
                item = _note_dict(note.attributes)
                if _at_or_before(item, after_id, since):
                    break
                if len(found) >= MAX_NOTES:
                    logger.warning("issue #%s has more than %d new notes; only the newest were read", iid, MAX_NOTES)
                    break
                found.append(item)
        return sorted(found, key=lambda item: item["id"])

    def latest_note_id(self, iid: int) -> int | None:
        """Return the id of the newest note on issue `iid` (system notes included), or None."""
        query = {"order_by": "created_at", "sort": "desc"}
        with self._errors(f"read the newest note of issue #{iid}", missing=f"issue #{iid}"):
            notes = self._handle().issues.get(iid, lazy=True).notes
            newest = notes.list(per_page=1, page=1, query_parameters=query, **self._options)
        return int(newest[0].attributes["id"]) if newest else None

    def add_note(self, iid: int, body: str, *, marker: str | None = None) -> dict[str, Any]:
        """Post a note on issue `iid`; a transient failure is never retried, as a retry could post twice.

        With `marker`, the note ends with that line, and after a failure that may have
        posted the note (no response, a 5xx) the newest notes are searched for it.
        """
        text = f"{body.rstrip()}\n\n{marker}" if marker else body
        try:
            with self._errors(f"comment on issue #{iid}", missing=f"issue #{iid}"):
                notes = self._handle().issues.get(iid, lazy=True).notes
                note = notes.create({"body": text}, retry_transient_errors=False, **self._options)
            return _note_dict(note.attributes)
        except ServiceError as error:
            if marker is None or not _effect_unknown(error):
                raise
            posted = self._find_note(iid, marker)
            if posted is None:
                raise
            logger.warning("commenting on issue #%s failed (%s), but the note was posted", iid, error.message)
            return posted

    def _find_note(self, iid: int, marker: str) -> dict[str, Any] | None:
        query = {"order_by": "created_at", "sort": "desc"}
        with self._errors(f"look for the note just posted on issue #{iid}", missing=f"issue #{iid}"):
            notes = self._handle().issues.get(iid, lazy=True).notes
            for index, note in enumerate(notes.list(iterator=True, per_page=100, query_parameters=query, **self._options)):
                if index >= NOTE_MARKER_SEARCH:
                    break
                if has_marker(note.attributes.get("body"), marker):
                    return _note_dict(note.attributes)
        return None

    # ----- commits -----

    def recent_commits(self, paths: Iterable[str], since: dt.datetime, *, limit: int = 100) -> list[dict[str, Any]]:
        """Return commits on the default branch touching any of `paths` since `since`.

        Newest first, without duplicates, at most `limit` per path. Each dict names the
        `path` it was found under.
        """
        found: dict[str, dict[str, Any]] = {}
        for path in paths:
            query = {"path": path, "since": since.astimezone(dt.timezone.utc).isoformat()}
            with self._errors(f"list recent commits on {path}", missing="project"):
                # `path` must go through query_parameters: as a keyword, python-gitlab
                # would take it as the URL path of the request.
                pages = self._handle().commits.list(iterator=True, per_page=min(limit, 100), query_parameters=query, **self._options)
                for index, commit in enumerate(pages):
                    if index >= limit:
                        break
                    found.setdefault(commit.attributes["id"], _commit_dict(commit.attributes, path))
        return sorted(found.values(), key=lambda item: _moment(item["committed_date"]), reverse=True)

    # ----- internals -----

    def _handle(self) -> Any:
        """Build a python-gitlab project object that only builds URLs (it sends no request)."""
        return self._gitlab.projects.get(self.settings.project, lazy=True)

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Normalise rate-limit headers before python-gitlab reads them, and log each wait.

        python-gitlab 8.x parses Retry-After and RateLimit-Reset with `int()`, so a
        fractional value or an HTTP date would crash it with ValueError.
        """
        if response.status_code not in (429, 503):
            return

        seconds = retry_after_seconds(response.headers.get("Retry-After"), time.time())
        if seconds is not None:
            response.headers["Retry-After"] = str(math.ceil(seconds))
        reset = response.headers.get("RateLimit-Reset")
        if reset is not None:
            try:
                response.headers["RateLimit-Reset"] = str(int(float(reset)))
            except ValueError:
                del response.headers["RateLimit-Reset"]

        self._last_retry_after = seconds
        if response.status_code == 429 and seconds is not None and seconds > self.max_wait:
            raise _WaitTooLong(seconds)

        request = response.request
        logger.warning(
            "GitLab returned %d to %s %s; waiting %s s before a retry if any is left",
            response.status_code,
            request.method if request is not None else "?",
            _path_only(request.url if request is not None else ""),
            "?" if seconds is None else f"{math.ceil(seconds)}",
        )

    @contextlib.contextmanager
    def _errors(self, action: str, missing: str = "") -> Iterator[None]:
        """Translate python-gitlab and requests exceptions raised while doing `action`.

        `missing` names what a 404 means ("project" or a thing such as "issue #3").
        """
        self._last_retry_after = None
        try:
            yield
        except gitlab.exceptions.GitlabError as error:
            raise self._translate(error, action, missing) from error
        except _WaitTooLong as error:
            raise RateLimited(
                f"GitLab rate-limited the request to {action} and asked to wait {math.ceil(error.seconds)} s, "
                f"longer than the {self.max_wait:g} s helpctl waits",
                service=SERVICE,
                retry_after=error.seconds,
                hint=f"wait {math.ceil(error.seconds)} s and try again",
            ) from error
        except requests.exceptions.Timeout as error:
            raise ServiceTimeout(
                f"the GitLab request timed out after {self.settings.timeout:g} s while trying to {action}",
                service=SERVICE,
                hint="try again later, or raise gitlab.timeout in the profile",
            ) from error
        except requests.exceptions.RequestException as error:
            raise ServiceError(
                f"the connection to GitLab failed while trying to {action}: {_exception_excerpt(error)}",
                service=SERVICE,
                hint=f"check that {self.settings.url} is reachable, then try again",
            ) from error

    def _translate(self, error: gitlab.exceptions.GitlabError, action: str, missing: str) -> HelpctlError:
        status = error.response_code
        body = error.response_body or b""
        detail = _detail(error.error_message)

        if isinstance(error, gitlab.exceptions.GitlabParsingError) or status is None:
            return ServiceError(f"GitLab returned a response that is not JSON while trying to {action}", service=SERVICE)
        if status == 401:
            return AuthError(
                f"GitLab rejected the token (401 Unauthorized) while trying to {action}",
                hint="the token is missing, expired or revoked: re-enter or rotate it with 'helpctl auth login gitlab'",
            )
        if status == 403:
            return self._forbidden(body, action)
        if status == 404:
            return NotFound(self._not_found_message(missing, action), service=SERVICE, status=404)
        if status == 429:
            wait = self._last_retry_after
            return RateLimited(
                f"GitLab kept answering 429 Too Many Requests while trying to {action}",
                service=SERVICE,
                retry_after=wait,
                hint=f"wait {math.ceil(wait)} s and try again" if wait is not None else "wait a minute and try again",
            )
        if status in (400, 409, 422):
            return ServiceError(f"GitLab rejected the request to {action}: {detail}", service=SERVICE, status=status)
        return ServiceError(
            f"GitLab failed (HTTP {status}) while trying to {action}: {_excerpt(body) or detail}",
            service=SERVICE,
            status=status,
            hint="GitLab or a proxy in front of it failed; try again later" if status >= 500 else None,
        )

    def _forbidden(self, body: bytes, action: str) -> AuthError:
        if b"insufficient_scope" in body:
            return AuthError(
                f"the GitLab token lacks the 'api' scope needed to {action} (403 insufficient_scope)",
                hint="create a token with the 'api' scope and store it with 'helpctl auth login gitlab'",
            )
        return AuthError(
            f"GitLab rejected the request to {action} (403 Forbidden): the token's user has too low a role in "
            f"{self.settings.project}, or the feature is disabled in the project",
            hint="ask a maintainer of the project for the Reporter role or higher",
        )

    def _not_found_message(self, missing: str, action: str) -> str:
        if missing != "project":
            return f"{missing or 'the resource'} not found in {self.settings.project} (while trying to {action})"

        try:
            owner = f"user {self.current_user()['username']}"
        except HelpctlError:
            owner = "its user"
        return f"project {self.settings.project} not found or this token ({owner}) has no access to it"


def has_marker(description: str | None, marker: str) -> bool:
    """Tell whether `marker` is alone on a line of `description`."""
    return any(line.strip() == marker for line in (description or "").splitlines())


def _effect_unknown(error: ServiceError) -> bool:
    """Tell whether a failed write may have been carried out: no response, or a 5xx response."""
    if isinstance(error, (RateLimited, NotFound)):
        return False
    return error.status is None or error.status >= 500


def _at_or_before(note: dict[str, Any], after_id: int | None, since: dt.datetime | None) -> bool:
    if after_id is not None:
        return int(note["id"]) <= after_id
    if since is not None:
        return _moment(note["created_at"] or "") <= since
    return False


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Parse a Retry-After value (seconds or an HTTP date) into seconds from `now`."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass

    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return max(0.0, moment.timestamp() - now)


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def _excerpt(body: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """Shorten an error body to one masked line: an HTML page's title, else its text."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if "<" in text and ">" in text:
        title = _TITLE.search(text)
        text = title.group(1) if title else _TAG.sub(" ", text)
        text = html.unescape(text)
    text = credentials.mask(_SPACE.sub(" ", text).strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _detail(message: Any) -> str:
    """Render GitLab's `message`, which is text or a field map such as {"title": ["is too long"]}."""
    if isinstance(message, dict):
        parts = []
        for field, problems in message.items():
            problems = problems if isinstance(problems, list) else [problems]
            parts.append(f"{field} {', '.join(str(item) for item in problems)}")
        return _excerpt("; ".join(parts), 300)
    if isinstance(message, bytes):
        return _excerpt(message)
    return _excerpt(str(message or ""))


def _exception_excerpt(error: Exception) -> str:
    return _excerpt(type(error).__name__ + ": " + str(error))


def _moment(value: str) -> dt.datetime:
    """Parse an ISO 8601 time from GitLab; an unreadable one sorts as the oldest."""
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _path_only(url: str) -> str:
    return url.split("?", 1)[0]


def _user_dict(attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": attributes.get("id"),
        "username": attributes.get("username"),
        "name": attributes.get("name"),
        "state": attributes.get("state"),
        "web_url": attributes.get("web_url"),
    }


def _issue_dict(attributes: dict[str, Any]) -> dict[str, Any]:
    assignees = [str(item.get("username")) for item in attributes.get("assignees") or [] if item]
    if not assignees and attributes.get("assignee"):
        assignees = [str(attributes["assignee"].get("username"))]
    return {
        "iid": attributes.get("iid"),
        "id": attributes.get("id"),
        "web_url": attributes.get("web_url"),
        "title": attributes.get("title"),
        "description": attributes.get("description") or "",
        "labels": list(attributes.get("labels") or []),
        "assignee": assignees[0] if assignees else None,
        "assignees": assignees,
        "state": attributes.get("state"),
        "confidential": bool(attributes.get("confidential")),
        "issue_type": attributes.get("issue_type") or "issue",
        "created_at": attributes.get("created_at"),
        "updated_at": attributes.get("updated_at"),
        "closed_at": attributes.get("closed_at"),
        "milestone": (attributes.get("milestone") or {}).get("title"),
    }


def _note_dict(attributes: dict[str, Any]) -> dict[str, Any]:
    author = attributes.get("author") or {}
    return {
        "id": attributes.get("id"),
        "body": attributes.get("body") or "",
        "author": author.get("username"),
        "author_name": author.get("name"),
        "created_at": attributes.get("created_at") or "",
        "system": bool(attributes.get("system")),
    }


def _commit_dict(attributes: dict[str, Any], path: str) -> dict[str, Any]:
    return {
        "id": attributes.get("id"),
        "title": attributes.get("title"),
        "author_name": attributes.get("author_name"),
        "author_email": attributes.get("author_email"),
        "committed_date": attributes.get("committed_date") or attributes.get("created_at") or "",
        "path": path,
    }
