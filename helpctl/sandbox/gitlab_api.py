"""A GitLab REST v4 stand-in that python-gitlab talks to unchanged.

It serves the calls helpctl makes (current user, users, projects, members, labels,
milestones, issues, notes, commits) under `/api/v4`, with GitLab's pagination headers and error
bodies: 401 for a missing or unknown token, 403 `insufficient_scope` for writes with a
read-only token, 404 "Project Not Found" for a project that does not exist or that the
token's user cannot see, and 400 with a field map for a title or description over the
limits. Unknown labels on an issue are created on the fly, as GitLab does. Closing or
reopening an issue adds a system note ("closed", "reopened"), and a new note moves the
issue's `updated_at`.

The fault knobs of the base class apply, plus `drop_after_create`: the new issue or note
is stored and the response is an HTML 502 page, as when a proxy loses the upstream's reply
after the write, so a client cannot know whether the write happened.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import math
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

from helpctl.sandbox import gitlab_seed as seed
from helpctl.sandbox.server import HTML_502, Knobs, Request, Response, Service

# Limits of gitlab.com (16.x and later): characters, not bytes.
TITLE_LIMIT = 255
DESCRIPTION_LIMIT = 1_048_576
NOTE_LIMIT = 1_000_000

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
ISSUE_TYPES = ("issue", "incident", "test_case", "task")
NEW_LABEL_COLOR = "#6699cc"
NOTE_ORDER_FIELDS = ("created_at", "updated_at", "id")

# Milestones of the universe project: (title, due in this many days from `now`).
MILESTONES = [("Sprint 2026-50", 7), ("Sprint 2026-51", 21)]
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


@dataclasses.dataclass
class GitlabKnobs(Knobs):
    # Store a created issue or note, then respond with an HTML 502 page instead of 201.
    drop_after_create: bool = False


@dataclasses.dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: str


def _route(method: str, pattern: str, handler: str) -> _Route:
    return _Route(method, re.compile(f"^/api/v4{pattern}$"), handler)


_PROJECT = "/projects/(?P<project>[^/]+)"
_ISSUE = _PROJECT + r"/issues/(?P<iid>\d+)"

ROUTES = [
    _route("GET", "/user", "current_user"),
    _route("GET", "/users", "list_users"),
    _route("GET", r"/users/(?P<user_id>\d+)", "get_user"),
    _route("GET", _PROJECT, "get_project"),
    _route("GET", _PROJECT + "/members/all", "list_members"),
    _route("GET", _PROJECT + "/labels", "list_labels"),
    _route("POST", _PROJECT + "/labels", "create_label"),
    _route("GET", _PROJECT + "/milestones", "list_milestones"),
    _route("GET", _PROJECT + "/issues", "list_issues"),
    _route("POST", _PROJECT + "/issues", "create_issue"),
    _route("GET", _ISSUE, "get_issue"),
    _route("PUT", _ISSUE, "update_issue"),
    _route("GET", _ISSUE + "/notes", "list_notes"),
    _route("POST", _ISSUE + "/notes", "create_note"),
    _route("GET", _PROJECT + "/repository/commits", "list_commits"),
]


class ApiError(Exception):
    """An error response: raised inside a handler, turned into JSON by `handle`."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def gitlab_time(moment: dt.datetime) -> str:
    """Format a moment as GitLab does: UTC with milliseconds and a `Z` suffix."""
    moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class GitlabService(Service):
    name = "gitlab"

    def __init__(self, now: dt.datetime | None = None) -> None:
        super().__init__()
        self.now = now or _utc_now()
        self.reset()

    def reset(self) -> None:
        """Return to the seeded story: default knobs, an empty request log, no new issues."""
        with self.lock:
            self.knobs = GitlabKnobs()
            self.log.clear()
            self.user_agents: collections.Counter[str] = collections.Counter()
            self._next_id = 5000
            self._seed()

    # ----- seed -----

    def _seed(self) -> None:
        self.users = {item.username: item for item in seed.USERS}
        self.tokens = dict(seed.TOKENS)
        self.projects = {item.id: item for item in seed.PROJECTS}
        self.labels: dict[int, list[dict[str, Any]]] = {project_id: [] for project_id in self.projects}
        self.issues: dict[int, list[dict[str, Any]]] = {project_id: [] for project_id in self.projects}
        self.notes: dict[tuple[int, int], list[dict[str, Any]]] = {}
        self.commits = {seed.UNIVERSE_ID: seed.commit_rows(self.now)}

        for name, color, description in seed.LABELS:
            self._add_label(seed.UNIVERSE_ID, name, color, description)

        self.milestones: dict[int, list[dict[str, Any]]] = {project_id: [] for project_id in self.projects}
        for number, (title, due_in_days) in enumerate(MILESTONES, start=1):
            due = (self.now + dt.timedelta(days=due_in_days)).date().isoformat()
            milestone = {"id": self._new_id(), "iid": number, "project_id": seed.UNIVERSE_ID, "title": title}
            milestone.update({"description": "", "state": "active", "due_date": due, "start_date": None})
            self.milestones[seed.UNIVERSE_ID].append(milestone)

        for item in seed.ISSUES:
            created = self.now - dt.timedelta(days=item.days_ago)
            issue = self._new_issue(seed.UNIVERSE_ID, self.users[item.author], created)
            issue.update(title=item.title, description=item.description, state=item.state)
            issue["labels"] = list(item.labels)
            issue["confidential"] = item.confidential
            if item.state == "closed":
                issue["closed_at"] = gitlab_time(created + dt.timedelta(days=2))

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _add_label(self, project_id: int, name: str, color: str, description: str = "") -> dict[str, Any]:
        label = {"id": self._new_id(), "name": name, "color": color, "description": description}
        self.labels[project_id].append(label)
        return label

    def _new_issue(self, project_id: int, author: seed.SeedUser, created: dt.datetime) -> dict[str, Any]:
        issues = self.issues[project_id]
        issue = {
            "id": self._new_id(),
            "iid": max((item["iid"] for item in issues), default=0) + 1,
            "project_id": project_id,
            "title": "",
            "description": "",
            "state": "opened",
            "labels": [],
            "assignee_ids": [],
            "milestone_id": None,
            "author_id": author.id,
            "confidential": False,
            "issue_type": "issue",
            "created_at": gitlab_time(created),
            "updated_at": gitlab_time(created),
            "closed_at": None,
        }
        issues.append(issue)
        return issue

    # ----- dispatch -----

    def handle(self, request: Request) -> Response:
        with self.lock:
            self.user_agents[request.header("user-agent")] += 1

        route, groups, allowed = self._match(request)
        if route is None:
            if allowed:
                return Response.json({"message": "405 Method Not Allowed"}, 405, {"Allow": ", ".join(allowed)})
            return Response.json({"message": "404 Not Found"}, 404)

        try:
            user = self._authenticate(request)
            if "project" in groups:
                groups["project"] = self._visible_project(groups["project"], user)
            handler: Callable[..., Response] = getattr(self, "_" + route.handler)
            with self.lock:
                return handler(request, user, **groups)
        except ApiError as error:
            return Response.json(error.body, error.status)

    def _match(self, request: Request) -> tuple[_Route | None, dict[str, Any], list[str]]:
        allowed = []
        for route in ROUTES:
            found = route.pattern.match(request.path)
            if not found:
                continue
            if route.method == request.method:
                return route, found.groupdict(), []
            allowed.append(route.method)
        return None, {}, allowed

    def _authenticate(self, request: Request) -> seed.SeedUser:
        token = request.header("private-token")
        authorization = request.header("authorization")
        if not token and authorization.lower().startswith("bearer "):
            token = authorization[len("bearer ") :].strip()

        grant = self.tokens.get(token)
        if grant is None:
            raise ApiError(401, {"message": "401 Unauthorized"})

        if request.method != "GET" and "api" not in grant.scopes:
            raise ApiError(
                403,
                {
                    "error": "insufficient_scope",
                    "error_description": "The request requires higher privileges than provided by the access token.",
                    "scope": "api",
                },
            )
        return self.users[grant.username]

    def _visible_project(self, reference: str, user: seed.SeedUser) -> seed.SeedProject:
        # python-gitlab sends a path as `fluidattacks%2Funiverse`; the path stays encoded here.
        reference = unquote(reference)
        for project in self.projects.values():
            if reference in (str(project.id), project.path):
                if project.visibility == "public" or user.username in project.members:
                    return project
        raise ApiError(404, {"message": "404 Project Not Found"})

    # ----- request helpers -----

    def _params(self, request: Request) -> dict[str, Any]:
        """Merge the query string and a JSON or form body, as GitLab accepts both."""
        params: dict[str, Any] = {name: values[-1] for name, values in request.query.items()}
        if not request.body:
            return params

        content_type = request.header("content-type")
        if "json" in content_type:
            try:
                body = request.json()
            except ValueError as error:
                raise ApiError(400, {"error": "The request body is not valid JSON"}) from error
            if not isinstance(body, dict):
                raise ApiError(400, {"error": "The request body must be a JSON object"})
            params.update(body)
        else:
            form = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
            params.update({name: values[-1] for name, values in form.items()})
        return params

    def _base_url(self, request: Request) -> str:
        # Links point back at the address the client used, which is always a loopback one.
        host = request.header("host") or "127.0.0.1"
        if not host.startswith(LOOPBACK_HOSTS):
            host = "127.0.0.1"
        return f"http://{host}"

    def _paginated(self, request: Request, rows: list[dict[str, Any]]) -> Response:
        page = _positive_int(request.arg("page"), "page", 1)
        per_page = min(_positive_int(request.arg("per_page"), "per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)
        total = len(rows)
        total_pages = max(1, math.ceil(total / per_page))
        chunk = rows[(page - 1) * per_page : page * per_page]

        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Total": str(total),
            "X-Total-Pages": str(total_pages),
            "X-Next-Page": str(page + 1) if page < total_pages else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
        }

        links = []
        if page < total_pages:
            links.append(f'<{self._page_url(request, page + 1, per_page)}>; rel="next"')
        if page > 1:
            links.append(f'<{self._page_url(request, page - 1, per_page)}>; rel="prev"')
        links.append(f'<{self._page_url(request, 1, per_page)}>; rel="first"')
        links.append(f'<{self._page_url(request, total_pages, per_page)}>; rel="last"')
        headers["Link"] = ", ".join(links)
        return Response.json(chunk, 200, headers)

    def _page_url(self, request: Request, page: int, per_page: int) -> str:
        query = {name: values for name, values in request.query.items() if name not in ("page", "per_page")}
        query["page"] = [str(page)]
        query["per_page"] = [str(per_page)]
        return f"{self._base_url(request)}{request.path}?{urlencode(query, doseq=True)}"

    # ----- representations -----

    def _user_json(self, request: Request, item: seed.SeedUser) -> dict[str, Any]:
        return {
            "id": item.id,
            "username": item.username,
            "name": item.name,
            "state": "active",
            "avatar_url": None,
            "web_url": f"{self._base_url(request)}/{item.username}",
        }

    def _user_by_id(self, user_id: int) -> seed.SeedUser | None:
        return next((item for item in self.users.values() if item.id == user_id), None)

    def _project_json(self, request: Request, project: seed.SeedProject) -> dict[str, Any]:
        namespace = project.path.rsplit("/", 1)[0]
        return {
            "id": project.id,
            "name": project.name,
            "path": project.path.rsplit("/", 1)[-1],
            "path_with_namespace": project.path,
            "name_with_namespace": project.path.replace("/", " / "),
            "namespace": {"path": namespace, "full_path": namespace, "kind": "group"},
            "visibility": project.visibility,
            "default_branch": seed.DEFAULT_BRANCH,
            "issues_enabled": True,
            "web_url": f"{self._base_url(request)}/{project.path}",
        }

    def _issue_json(self, request: Request, issue: dict[str, Any]) -> dict[str, Any]:
        project = self.projects[issue["project_id"]]
        assignees = [self._user_json(request, found) for found in map(self._user_by_id, issue["assignee_ids"]) if found]
        author = self._user_by_id(issue["author_id"])
        hidden = ("assignee_ids", "author_id", "milestone_id")
        data = {name: value for name, value in issue.items() if name not in hidden}
        data.update(
            {
                "milestone": self._milestone_json(request, project, issue["milestone_id"]),
                "assignees": assignees,
                "assignee": assignees[0] if assignees else None,
                "author": self._user_json(request, author) if author else None,
                "type": issue["issue_type"].upper(),
                "user_notes_count": sum(not note["system"] for note in self.notes.get((project.id, issue["iid"]), [])),
                "references": {"short": f"#{issue['iid']}", "full": f"{project.path}#{issue['iid']}"},
                "web_url": f"{self._base_url(request)}/{project.path}/-/issues/{issue['iid']}",
            }
        )
        return data

    def _milestone_json(self, request: Request, project: seed.SeedProject, milestone_id: int | None) -> dict[str, Any] | None:
        milestone = self._milestone_by_id(project.id, milestone_id)
        if milestone is None:
            return None
        return {**milestone, "web_url": f"{self._base_url(request)}/{project.path}/-/milestones/{milestone['iid']}"}

    def _milestone_by_id(self, project_id: int, milestone_id: int | None) -> dict[str, Any] | None:
        return next((item for item in self.milestones.get(project_id, []) if item["id"] == milestone_id), None)

    # ----- users and projects -----

    def _current_user(self, request: Request, user: seed.SeedUser) -> Response:
        data = self._user_json(request, user)
        data.update({"email": user.email, "public_email": user.email, "job_title": user.title})
        return Response.json(data)

    def _list_users(self, request: Request, user: seed.SeedUser) -> Response:
        wanted = (request.arg("username") or "").lower()
        rows = [self._user_json(request, item) for item in self.users.values() if not wanted or item.username.lower() == wanted]
        return self._paginated(request, rows)

    def _get_user(self, request: Request, user: seed.SeedUser, user_id: str) -> Response:
        found = self._user_by_id(int(user_id))
        if found is None:
            raise ApiError(404, {"message": "404 User Not Found"})
        return Response.json(self._user_json(request, found))

    def _get_project(self, request: Request, user: seed.SeedUser, project: seed.SeedProject) -> Response:
        return Response.json(self._project_json(request, project))

    def _list_members(self, request: Request, user: seed.SeedUser, project: seed.SeedProject) -> Response:
        rows = []
        for username, level in project.members.items():
            row = self._user_json(request, self.users[username])
            row["access_level"] = level
            rows.append(row)
        return self._paginated(request, rows)

    # ----- labels -----

    def _list_labels(self, request: Request, user: seed.SeedUser, project: seed.SeedProject) -> Response:
        return self._paginated(request, list(self.labels[project.id]))

    def _create_label(self, request: Request, user: seed.SeedUser, project: seed.SeedProject) -> Response:
        params = self._params(request)
        name = str(params.get("name") or "").strip()
        color = str(params.get("color") or "").strip()
        if not name:
            raise ApiError(400, {"error": "name is missing"})
        if not color:
            raise ApiError(400, {"error": "color is missing"})
        if "," in name:
            raise ApiError(400, {"message": {"title": ["is invalid"]}})
        if any(label["name"] == name for label in self.labels[project.id]):
            raise ApiError(409, {"message": "Label already exists"})

        label = self._add_label(project.id, name, color, str(params.get("description") or ""))
        return Response.json(label, 201)

    # ----- milestones -----

    def _list_milestones(self, request: Request, user: seed.SeedUser, project: seed.SeedProject) -> Response:
        params = self._params(request)
        state = params.get("state")
        title = params.get("title")
        rows = [
            {**item, "web_url": f"{self._base_url(request)}/{project.path}/-/milestones/{item['iid']}"}
            for item in self.milestones[project.id]
            if (not state or item["state"] == state) and (not title or item["title"] == title)
        ]
        return self._paginated(request, rows)

    def _apply_labels(self, project_id: int, names: list[str]) -> list[str]:
        """Create the labels the project lacks, as GitLab does on issue create and update."""
        known = {label["name"] for label in self.labels[project_id]}
        for name in names:
            if name not in known:
                self._add_label(project_id, name, NEW_LABEL_COLOR)
                known.add(name)
        return list(dict.fromkeys(names))

    # ----- issues -----

    def _list_issues(self, request: Request, user: seed.SeedUser, project: seed.SeedProject) -> Response:
        params = self._params(request)
        rows = [issue for issue in self.issues[project.id] if _issue_matches(issue, params)]
        order_by = params.get("order_by") or "created_at"
        if order_by not in ("created_at", "updated_at"):
            raise ApiError(400, {"error": "order_by does not have a valid value"})
        rows.sort(key=lambda issue: (issue[order_by], issue["iid"]), reverse=params.get("sort", "desc") != "asc")
        return self._paginated(request, [self._issue_json(request, issue) for issue in rows])

    def _create_issue(self, request: Request, user: seed.SeedUser, project: seed.SeedProject) -> Response:
        params = self._params(request)
        title = str(params.get("title") or "")
        description = str(params.get("description") or "")
        issue_type = str(params.get("issue_type") or "issue")
        if not title.strip():
            raise ApiError(400, {"error": "title is missing"})
        if issue_type not in ISSUE_TYPES:
            raise ApiError(400, {"error": "issue_type does not have a valid value"})
        _check_lengths({"title": (title, TITLE_LIMIT), "description": (description, DESCRIPTION_LIMIT)})

        issue = self._new_issue(project.id, user, _utc_now())
        issue.update(title=title, description=description, issue_type=issue_type)
        issue["confidential"] = _flag(params.get("confidential"))
        issue["labels"] = self._apply_labels(project.id, _label_list(params.get("labels")))
        issue["assignee_ids"] = self._assignable(project, _id_list(params.get("assignee_ids")))

        if self.knobs.drop_after_create:
            return Response(502, HTML_502, {"Content-Type": "text/html"})
        return Response.json(self._issue_json(request, issue), 201)

    def _assignable(self, project: seed.SeedProject, user_ids: list[int]) -> list[int]:
        # GitLab drops assignees who are not members of the project instead of failing.
        members = {self.users[name].id for name in project.members}
        return [user_id for user_id in user_ids if user_id in members]

    def _find_issue(self, project: seed.SeedProject, iid: str) -> dict[str, Any]:
        for issue in self.issues[project.id]:
            if issue["iid"] == int(iid):
                return issue
        raise ApiError(404, {"message": "404 Issue Not Found"})

    def _get_issue(self, request: Request, user: seed.SeedUser, project: seed.SeedProject, iid: str) -> Response:
        return Response.json(self._issue_json(request, self._find_issue(project, iid)))

    def _update_issue(self, request: Request, user: seed.SeedUser, project: seed.SeedProject, iid: str) -> Response:
        issue = self._find_issue(project, iid)
        params = self._params(request)
        _check_lengths(
            {
                "title": (str(params.get("title", "")), TITLE_LIMIT),
                "description": (str(params.get("description", "")), DESCRIPTION_LIMIT),
            }
        )

        for name in ("title", "description"):
            if name in params:
                issue[name] = str(params[name])
        if "confidential" in params:
            issue["confidential"] = _flag(params["confidential"])
        if "assignee_ids" in params:
            issue["assignee_ids"] = self._assignable(project, _id_list(params["assignee_ids"]))
        if "milestone_id" in params:
            issue["milestone_id"] = self._milestone_for(project, params["milestone_id"])
        self._update_labels(project, issue, params)
        self._update_state(project, user, issue, params.get("state_event"))

        issue["updated_at"] = gitlab_time(_utc_now())
        return Response.json(self._issue_json(request, issue))

    def _update_labels(self, project: seed.SeedProject, issue: dict[str, Any], params: dict[str, Any]) -> None:
        labels = list(issue["labels"])
        if "labels" in params:
            labels = _label_list(params["labels"])
        labels += [name for name in _label_list(params.get("add_labels")) if name not in labels]
        removed = set(_label_list(params.get("remove_labels")))
        issue["labels"] = self._apply_labels(project.id, [name for name in labels if name not in removed])

    def _milestone_for(self, project: seed.SeedProject, value: Any) -> int | None:
        """Resolve `milestone_id`: 0, null or empty removes the milestone, as on GitLab."""
        if value in (None, "", 0, "0"):
            return None
        try:
            milestone_id = int(value)
        except (TypeError, ValueError) as error:
            raise ApiError(400, {"error": "milestone_id is invalid"}) from error
        if self._milestone_by_id(project.id, milestone_id) is None:
            raise ApiError(404, {"message": "404 Milestone Not Found"})
        return milestone_id

    def _update_state(self, project: seed.SeedProject, user: seed.SeedUser, issue: dict[str, Any], event: Any) -> None:
        if event in (None, ""):
            return
        if event not in ("close", "reopen"):
            raise ApiError(400, {"error": "state_event does not have a valid value"})

        state = "closed" if event == "close" else "opened"
        if issue["state"] == state:
            return
        issue["state"] = state
        issue["closed_at"] = gitlab_time(_utc_now()) if state == "closed" else None
        self._add_note(project, user, issue, "closed" if state == "closed" else "reopened", system=True)

    # ----- notes -----

    def _list_notes(self, request: Request, user: seed.SeedUser, project: seed.SeedProject, iid: str) -> Response:
        """List notes, newest first unless `sort=asc`; `order_by` is created_at (default), updated_at or id."""
        issue = self._find_issue(project, iid)
        order_by = request.arg("order_by") or "created_at"
        if order_by not in NOTE_ORDER_FIELDS:
            raise ApiError(400, {"error": "order_by does not have a valid value"})
        descending = (request.arg("sort") or "desc") != "asc"

        notes = self.notes.get((project.id, issue["iid"]), [])
        rows = sorted(notes, key=lambda note: (note[order_by], note["id"]), reverse=descending)
        return self._paginated(request, [self._note_json(request, note) for note in rows])

    def _create_note(self, request: Request, user: seed.SeedUser, project: seed.SeedProject, iid: str) -> Response:
        issue = self._find_issue(project, iid)
        body = str(self._params(request).get("body") or "")
        if not body.strip():
            raise ApiError(400, {"error": "body is missing"})
        _check_lengths({"note": (body, NOTE_LIMIT)})

        note = self._add_note(project, user, issue, body, system=False)
        if self.knobs.drop_after_create:
            return Response(502, HTML_502, {"Content-Type": "text/html"})
        return Response.json(self._note_json(request, note), 201)

    def _add_note(self, project: seed.SeedProject, user: seed.SeedUser, issue: dict[str, Any], body: str, *, system: bool) -> dict[str, Any]:
        moment = gitlab_time(_utc_now())
        note = {
            "id": self._new_id(),
            "body": body,
            "author_username": user.username,
            "created_at": moment,
            "updated_at": moment,
            "system": system,
            "noteable_type": "Issue",
            "noteable_iid": issue["iid"],
            "confidential": False,
            "internal": False,
        }
        self.notes.setdefault((project.id, issue["iid"]), []).append(note)
        issue["updated_at"] = moment
        return note

    def _note_json(self, request: Request, note: dict[str, Any]) -> dict[str, Any]:
        data = {name: value for name, value in note.items() if name != "author_username"}
        data["author"] = self._user_json(request, self.users[note["author_username"]])
        return data

    # ----- commits -----

    def _list_commits(self, request: Request, user: seed.SeedUser, project: seed.SeedProject) -> Response:
        ref = request.arg("ref_name") or seed.DEFAULT_BRANCH
        if ref != seed.DEFAULT_BRANCH:
            raise ApiError(404, {"message": "404 Reference Not Found"})

        path = (request.arg("path") or "").strip("/")
        since = _parse_time(request.arg("since"), "since")
        until = _parse_time(request.arg("until"), "until")

        rows = []
        for commit in self.commits.get(project.id, []):
            if path and not any(name == path or name.startswith(path + "/") for name in commit["files"]):
                continue
            if since and commit["committed_at"] < since:
                continue
            if until and commit["committed_at"] > until:
                continue
            rows.append(self._commit_json(request, project, commit))
        return self._paginated(request, rows)

    def _commit_json(self, request: Request, project: seed.SeedProject, commit: dict[str, Any]) -> dict[str, Any]:
        moment = gitlab_time(commit["committed_at"])
        return {
            "id": commit["id"],
            "short_id": commit["id"][:8],
            "title": commit["title"],
            "message": commit["message"],
            "parent_ids": [],
            "author_name": commit["author_name"],
            "author_email": commit["author_email"],
            "authored_date": moment,
            "committer_name": commit["author_name"],
            "committer_email": commit["author_email"],
            "committed_date": moment,
            "created_at": moment,
            "web_url": f"{self._base_url(request)}/{project.path}/-/commit/{commit['id']}",
        }


def _positive_int(raw: str | None, name: str, default: int) -> int:
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError as error:
        raise ApiError(400, {"error": f"{name} is invalid"}) from error
    return value if value > 0 else default


def _parse_time(raw: str | None, name: str) -> dt.datetime | None:
    if not raw:
        return None
    try:
        moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as error:
        raise ApiError(400, {"error": f"{name} is invalid"}) from error
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _check_lengths(fields: dict[str, tuple[str, int]]) -> None:
    errors = {
        name: [f"is too long (maximum is {limit} characters)"]
        for name, (value, limit) in fields.items()
        if len(value) > limit
    }
    if errors:
        raise ApiError(400, {"message": errors})


def _label_list(value: Any) -> list[str]:
    """Accept labels as a JSON array or a comma-separated string, as GitLab does."""
    if value in (None, ""):
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def _id_list(value: Any) -> list[int]:
    items = value if isinstance(value, list) else str(value or "").split(",")
    try:
        return [int(item) for item in items if str(item).strip()]
    except ValueError as error:
        raise ApiError(400, {"error": "assignee_ids is invalid"}) from error


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes")


def _issue_matches(issue: dict[str, Any], params: dict[str, Any]) -> bool:
    state = params.get("state") or "all"
    if state != "all" and issue["state"] != state:
        return False

    wanted = _label_list(params.get("labels"))
    if any(name not in issue["labels"] for name in wanted):
        return False

    search = str(params.get("search") or "").lower()
    if not search:
        return True
    fields = [name.strip() for name in str(params.get("in") or "title,description").split(",")]
    return any(search in str(issue.get(name) or "").lower() for name in fields if name in ("title", "description"))
