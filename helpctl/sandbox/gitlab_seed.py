"""The GitLab part of the sandbox story: users, tokens, projects, labels, commits, issues.

Dates are relative to `now` (the moment the sandbox starts, UTC), so the most recent
committers stay inside any routing look-back window however late the sandbox runs.
Nothing here is real: names, addresses and tokens are the sandbox's documented values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import Any

# GitLab access levels.
GUEST = 10
REPORTER = 20
DEVELOPER = 30
MAINTAINER = 40

UNIVERSE_ID = 20741933
UNIVERSE_PATH = "fluidattacks/universe"
DEFAULT_BRANCH = "trunk"


@dataclasses.dataclass
class SeedUser:
    id: int
    username: str
    name: str
    email: str
    title: str = ""


@dataclasses.dataclass
class SeedToken:
    username: str
    scopes: list[str]


@dataclasses.dataclass
class SeedProject:
    id: int
    path: str
    name: str
    visibility: str
    members: dict[str, int]  # username: access level


@dataclasses.dataclass
class SeedCommit:
    author: str  # username of a SeedUser, or "" for `author_name`/`author_email` below
    title: str
    files: list[str]
    days_ago: float
    author_name: str = ""
    author_email: str = ""


@dataclasses.dataclass
class SeedIssue:
    title: str
    description: str
    labels: list[str]
    author: str
    state: str = "opened"
    days_ago: float = 30.0
    confidential: bool = False


USERS = [
    SeedUser(101, "jhead", "Juliana Head", "juliana.head@fluidattacks.com", "Head of Product"),
    SeedUser(102, "imanager", "Iván Manager", "ivan.manager@fluidattacks.com", "Incident Manager"),
    SeedUser(103, "btriager", "Beatriz Triager", "beatriz.triager@fluidattacks.com", "Bug triager"),
    SeedUser(104, "pmorales", "Pablo Morales", "pablo.morales@fluidattacks.com", "Developer"),
    SeedUser(105, "dgarcia", "Diana García", "diana.garcia@fluidattacks.com", "Developer"),
    SeedUser(106, "ltorres", "Leo Torres", "leo.torres@fluidattacks.com", "Developer"),
    SeedUser(107, "ssoporte", "Sandra Soporte", "support.sandbox@fluidattacks.com", "Support engineer"),
]

# `sandbox-gitlab-readonly` lacks the `api` scope, so GitLab rejects every write with 403.
TOKENS = {
    "sandbox-gitlab-token": SeedToken("ssoporte", ["api"]),
    "sandbox-gitlab-readonly": SeedToken("btriager", ["read_api"]),
}

PROJECTS = [
    SeedProject(
        UNIVERSE_ID,
        UNIVERSE_PATH,
        "universe",
        "public",
        {
            "jhead": MAINTAINER,
            "imanager": MAINTAINER,
            "btriager": MAINTAINER,
            "pmorales": DEVELOPER,
            "dgarcia": DEVELOPER,
            "ltorres": DEVELOPER,
            "ssoporte": REPORTER,
        },
    ),
    # A private project the engineer is not a member of. GitLab returns 404 for it, as for
    # a project that does not exist, so that its existence is not revealed.
    SeedProject(20741999, "fluidattacks/infra-secrets", "infra-secrets", "private", {"jhead": MAINTAINER}),
]

LABELS = [
    ("type::bug", "#d9534f", "Something does not work as documented"),
    ("type::feature", "#5cb85c", "A new capability requested by users or the product team"),
    ("incident", "#8e44ad", "A confirmed malfunction that affects or could affect two or more users"),
    ("customer-reported", "#f0ad4e", "Reported by a client through the Help Channel"),
    ("product::integrates", "#428bca", "The platform (Integrates)"),
]

_RESOLVERS = "integrates/back/src/api/resolvers"

COMMITS = [
    SeedCommit("pmorales", "fix(back): count open vulnerabilities per state", [f"{_RESOLVERS}/vulnerability/schema.py"], 2.5),
    SeedCommit("pmorales", "refactor(back): vulnerability loaders by state", ["integrates/back/src/vulnerabilities/domain/core.py"], 4),
    SeedCommit("dgarcia", "feat(back): stakeholder invitation expiry", [f"{_RESOLVERS}/stakeholder/invitation.py"], 3),
    SeedCommit("dgarcia", "fix(back): group access role checks", ["integrates/back/src/group_access/domain.py"], 11),
    SeedCommit("ltorres", "feat(back): event solving reasons", ["integrates/back/src/events/domain.py"], 6),
    SeedCommit("ltorres", "fix(back): vulnerability state history order", ["integrates/back/src/vulnerabilities/types.py"], 45),
    SeedCommit("pmorales", "chore(back): event resolver typing", [f"{_RESOLVERS}/event/schema.py"], 52),
    SeedCommit("dgarcia", "feat(back): vulnerability treatment fields", [f"{_RESOLVERS}/vulnerability/treatment.py"], 240),
    SeedCommit(
        "",
        "chore(deps): update lockfile",
        ["integrates/back/pyproject.toml"],
        1,
        author_name="Dependency Bot",
        author_email="deps-bot@fluidattacks.com",
    ),
]

ISSUES = [
    SeedIssue(
        "[Platform] Exporting vulnerabilities fails for groups with many roots",
        "The CSV export stops at 10,000 rows.",
        ["type::bug", "product::integrates"],
        "btriager",
        state="closed",
        days_ago=40,
    ),
    SeedIssue(
        "[Platform] Typo in the invitation e-mail",
        "The invitation e-mail says 'acces' instead of 'access'.",
        ["type::bug", "customer-reported"],
        "ssoporte",
        days_ago=12,
    ),
]


def user(username: str) -> SeedUser:
    return next(item for item in USERS if item.username == username)


def commit_rows(now: dt.datetime) -> list[dict[str, Any]]:
    """Build the commit records, newest first, with stable ids derived from their content."""
    rows = []
    for seed in COMMITS:
        name, email = seed.author_name, seed.author_email
        if seed.author:
            name, email = user(seed.author).name, user(seed.author).email

        moment = now - dt.timedelta(days=seed.days_ago)
        sha = hashlib.sha1(f"{seed.title}|{seed.files}|{email}".encode("utf-8")).hexdigest()
        rows.append(
            {
                "id": sha,
                "title": seed.title,
                "message": seed.title + "\n",
                "author_name": name,
                "author_email": email,
                "committed_at": moment,
                "files": list(seed.files),
            }
        )
    rows.sort(key=lambda row: row["committed_at"], reverse=True)
    return rows
