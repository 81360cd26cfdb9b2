"""File a classified case: pick the component and assignee, render, send, record.

The case is read without the lock while GitLab is contacted, then the issue is recorded in
one locked edit. A retry after a crash between the two finds the issue by its case marker
(see `filing.file_issue`), so the case never ends up with two issues.
"""

from __future__ import annotations

from typing import Any

from helpctl.cases.store import CaseStore
from helpctl.config.settings import Profile
from helpctl.errors import PreconditionFailed
from helpctl.findings import isoformat, utc_now


def check_fileable(case_id: str, classification: dict[str, Any] | None) -> str:
    label = (classification or {}).get("label")
    if not label:
        raise PreconditionFailed(f"case {case_id} is not classified", hint=f"run 'helpctl classify {case_id}' first")
    if label == "answered":
        raise PreconditionFailed(
            f"case {case_id} is answered by its evidence: no issue is needed",
            hint=f"tell the requester and run 'helpctl case close {case_id} --resolution ...'",
        )
    return label


def file_case(
    store: CaseStore,
    case_id: str,
    profile: Profile,
    actor: str,
    *,
    dry_run: bool = False,
    allow_new_labels: bool = False,
    client: Any = None,
) -> dict[str, Any]:
    from helpctl import filing, routing, services

    case = store.load(case_id)
    label = check_fileable(case.id, case.classification)
    if client is None:
        client = services.gitlab_client(profile)

    findings = case.finding_objects()
    behind = {key for rule in (case.classification or {}).get("rules", []) for key in rule.get("findings", [])}
    evidence = [finding for finding in findings if finding.key in behind] or findings
    component, component_reason = routing.component_for(case, evidence, profile.routing)
    route = routing.route(label, component, profile.routing, client, utc_now())
    request = filing.build_request(case, profile, label, route, findings)
    result = filing.file_issue(request, client, allow_new_labels=allow_new_labels, dry_run=dry_run)

    outcome = _outcome(case.id, label, component, component_reason, route, result, dry_run, profile)
    if not dry_run:
        _record(store, case.id, actor, outcome)
        _audit(actor, outcome)
    return outcome


def _audit(actor: str, outcome: dict[str, Any]) -> None:
    from helpctl.audit import AuditLog

    AuditLog().append(
        "issue.filed",
        operator=actor,
        target={"case": outcome["case"], "project": outcome["project"], "issue": outcome["iid"]},
        outcome="created" if outcome["created"] else "existing",
        request_id=outcome["case"],
        detail={"label": outcome["label"], "assignee": outcome["assignee"], "url": outcome["url"]},
    )


def _outcome(case_id, label, component, component_reason, route, result, dry_run, profile) -> dict[str, Any]:
    request = result.request
    return {
        "case": case_id,
        "dry_run": dry_run,
        "label": label,
        "component": component,
        "component_reason": component_reason,
        "assignee": route.assignee,
        "route_reason": route.reason,
        "created": bool(result.created) and not dry_run,
        "iid": result.iid,
        "url": result.url,
        "labels": list(result.labels),
        "project": profile.gitlab.project,
        "request": {
            "endpoint": f"{profile.gitlab.url.rstrip('/')}/api/v4/projects/{profile.gitlab.project.replace('/', '%2F')}/issues",
            "title": request.title,
            "labels": list(request.labels),
            "assignee": request.assignee,
            "confidential": request.confidential,
            "issue_type": request.issue_type,
            "description": request.description,
        },
    }


def _record(store: CaseStore, case_id: str, actor: str, outcome: dict[str, Any]) -> None:
    with store.edit(case_id) as case:
        already = case.issue and case.issue.get("iid") == outcome["iid"] and case.status == "filed"
        case.issue = {
            "iid": outcome["iid"],
            "url": outcome["url"],
            "project": outcome["project"],
            "labels": outcome["labels"],
            "assignee": outcome["assignee"],
            "label": outcome["label"],
            "component": outcome["component"],
            "confidential": outcome["request"]["confidential"],
            "issue_type": outcome["request"]["issue_type"],
            "filed_at": (case.issue or {}).get("filed_at") or isoformat(utc_now()),
        }
        if case.status != "closed":
            case.status = "filed"
        if not already:
            case.record(actor, "filed", iid=outcome["iid"], url=outcome["url"], assignee=outcome["assignee"], created=outcome["created"])
