"""Routing: who gets a classified case, and which product component it is about.

The profile's `routing` section decides. A feature goes to the Head of Product and an
incident to the Incident Manager. A bug goes to the first expert listed for its
component. Without one, it goes to the most recent committer on the component's paths
within `commit_lookback_days`, whose commit e-mail `routing.committers` maps to a GitLab
username (unmapped e-mails are skipped). Failing both, it goes to the bug triager, who
allocates developers.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import re
from typing import TYPE_CHECKING, Any

from helpctl.cases.model import Case
from helpctl.config.settings import RoutingSettings
from helpctl.errors import PreconditionFailed, ServiceError, UsageError
from helpctl.findings import Finding

if TYPE_CHECKING:
    from helpctl.clients.gitlab import GitlabClient

logger = logging.getLogger(__name__)

ROUTED_LABELS = ("bug", "feature", "incident")


@dataclasses.dataclass
class Route:
    """The assignee chosen for a case, the one-line reason, and every step tried."""

    label: str
    assignee: str
    reason: str
    chain: list[str]
    component: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def route(
    label: str | None,
    component: str | None,
    routing: RoutingSettings,
    client: GitlabClient | None,
    now: dt.datetime,
) -> Route:
    """Choose the assignee for a case classified as `label`.

    Raises PreconditionFailed when the profile leaves the needed routing entry empty,
    naming the key to fill, and for `answered` or missing labels, which are not filed.
    """
    if label in (None, "", "answered"):
        raise PreconditionFailed(
            f"a case classified as {label or 'nothing'!r} is not routed to anyone",
            hint="only bug, feature and incident cases are filed; run 'helpctl classify CASE' first",
        )
    if label not in ROUTED_LABELS:
        raise UsageError(f"unknown label {label!r}; expected one of {', '.join(ROUTED_LABELS)}")

    if label == "feature":
        return _fixed_role(label, component, routing.head_of_product, "head_of_product", "Head of Product")
    if label == "incident":
        return _fixed_role(label, component, routing.incident_manager, "incident_manager", "Incident Manager")
    return _route_bug(component, routing, client, now)


def _fixed_role(label: str, component: str | None, username: str, key: str, role: str) -> Route:
    if not username.strip():
        raise PreconditionFailed(
            f"no one to assign a {label} to: routing.{key} is empty in the profile",
            hint=f"set routing.{key} to the GitLab username of the {role}",
        )
    return Route(label, username.strip(), role, [f"routing.{key}: {username.strip()}"], component)


def _route_bug(component: str | None, routing: RoutingSettings, client: GitlabClient | None, now: dt.datetime) -> Route:
    chain: list[str] = []

    expert = _expert(component, routing, chain)
    if expert:
        return Route("bug", expert, f"expert for {component}", chain, component)

    committer = _recent_committer(component, routing, client, now, chain)
    if committer:
        username, path, email = committer
        return Route("bug", username, f"most recent committer on {path} ({email})", chain, component)

    triager = routing.bug_triager.strip()
    if not triager:
        chain.append("routing.bug_triager: empty")
        raise PreconditionFailed(
            f"no one to assign the bug to ({'; '.join(chain)})",
            hint="set routing.bug_triager (or routing.experts.<component>) in the profile to GitLab usernames",
        )
    chain.append(f"routing.bug_triager: {triager}")
    return Route("bug", triager, "bug triager", chain, component)


def _expert(component: str | None, routing: RoutingSettings, chain: list[str]) -> str | None:
    if component is None:
        chain.append("routing.experts: no component known for the case")
        return None

    experts = [name.strip() for name in routing.experts.get(component) or [] if name.strip()]
    if not experts:
        chain.append(f"routing.experts.{component}: empty")
        return None

    chain.append(f"routing.experts.{component}: {', '.join(experts)}")
    return experts[0]


def _recent_committer(
    component: str | None,
    routing: RoutingSettings,
    client: GitlabClient | None,
    now: dt.datetime,
    chain: list[str],
) -> tuple[str, str, str] | None:
    """Return (username, path, e-mail) of the newest mapped committer on the component's paths."""
    settings = routing.components.get(component) if component else None
    if settings is None or not settings.paths:
        chain.append(f"recent committers: no paths configured for component {component!r}")
        return None
    if client is None:
        chain.append("recent committers: skipped, no GitLab client")
        return None

    since = now - dt.timedelta(days=routing.commit_lookback_days)
    try:
        commits = client.recent_commits(settings.paths, since)
    except ServiceError as error:
        logger.warning("commit look-up for routing failed, falling back: %s", error.message)
        chain.append(f"recent committers: look-up failed ({error.message})")
        return None

    mapping = {email.strip().lower(): username for email, username in routing.committers.items()}
    skipped = []
    for commit in commits:
        email = str(commit.get("author_email") or "").strip().lower()
        username = mapping.get(email)
        if username:
            chain.append(f"recent committers since {since.date().isoformat()}: {email} -> {username}")
            return username, str(commit.get("path")), email
        if email and email not in skipped:
            skipped.append(email)

    detail = f"no mapped committer in {len(commits)} commits since {since.date().isoformat()}"
    if skipped:
        detail += f" (unmapped in routing.committers: {', '.join(skipped)})"
    chain.append(f"recent committers: {detail}")
    return None


def component_for(case: Case, findings: list[Finding], routing: RoutingSettings) -> tuple[str | None, str]:
    """Name the product component a case is about, and why.

    First comes the most frequent `component` among the findings behind the rules that
    gave the case its label, with ties going to the finding seen first. Next comes the
    component with the most of its keywords in the case's subject and body, with ties
    going to the profile's order. Else the component is None.
    """
    behind = _findings_behind_label(case, findings)
    counts = collections.Counter(finding.component for finding in behind if finding.component)
    if counts:
        component, count = counts.most_common(1)[0]
        return component, f"{count} of {len(behind)} findings behind the classification point at {component}"

    text = f"{case.subject}\n{case.body}"
    best: tuple[int, str, str] | None = None
    for name, settings in routing.components.items():
        hits = [word for word in settings.keywords if _mentions(text, word)]
        if hits and (best is None or len(hits) > best[0]):
            best = (len(hits), name, ", ".join(hits))
    if best is not None:
        return best[1], f"the case text mentions {best[2]}"

    return None, "no finding names a component and no component keyword appears in the case"


def _findings_behind_label(case: Case, findings: list[Finding]) -> list[Finding]:
    """Return the findings that the case's winning rules cite, in the order given."""
    classification = case.classification or {}
    label = classification.get("label")
    keys: set[str] = set()
    for rule in classification.get("rules") or []:
        if rule.get("label") == label:
            keys.update(rule.get("findings") or [])
    return [finding for finding in findings if finding.key in keys]


def _mentions(text: str, word: str) -> bool:
    return bool(re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE))
