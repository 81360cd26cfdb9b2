"""Reopen a case together with its filed issue, and follow up on cases that intake reopened.

`reopen_with_issue` keeps the case's classification and issue, records a `reopened` event
with the reason (the event that restarts the response clocks in `helpctl.sla`), and acts
on the GitLab issue as asked: `reopen` reopens a closed issue and comments why,
`comment` only comments, `none` leaves GitLab alone. GitLab is called first, so when it
fails the case stays closed and the command can simply be run again.

Intake reopens a closed case by itself when the requester replies by e-mail.
`follow_up_reopened` (or `after_intake`, given intake's result) then comments on the
issue, or reopens it, once per reopening.

Comments are redacted (`helpctl.redact`) and end with helpctl's note marker, so
`helpctl sync` does not record them as developer comments. The issue's stored state is
updated at once, so `helpctl sync` records no change for a reopening that helpctl made.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from helpctl.cases.model import Case
from helpctl.cases.store import CaseStore
from helpctl.errors import HelpctlError, PreconditionFailed, UsageError
from helpctl.redact import Redactor
from helpctl.sync import note_marker

if TYPE_CHECKING:
    from helpctl.config.settings import Profile
    from helpctl.intake.threads import IntakeResult

logger = logging.getLogger(__name__)

ISSUE_ACTIONS = ("none", "reopen", "comment")
# Events that show a reopening was already followed up on GitLab.
FOLLOW_UP_EVENTS = ("issue-commented", "issue-reopened")
SOURCE = "helpctl"


@dataclasses.dataclass
class ReopenResult:
    case_id: str
    status: str
    issue_action: str
    iid: int | None = None
    url: str | None = None
    note_id: int | None = None
    issue_state: str | None = None
    issue_reopened: bool = False
    already_done: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def reopen_with_issue(
    store: CaseStore,
    case_id: str,
    reason: str,
    profile: Profile,
    actor: str,
    *,
    issue_action: str = "comment",
    client: Any = None,
) -> ReopenResult:
    """Reopen closed case `case_id`, and reopen or comment on its issue as `issue_action` requests.

    Raises UsageError for an empty reason or an unknown action, PreconditionFailed when
    the case is not closed, and helpctl's service errors when GitLab fails (the case is
    then unchanged).
    """
    _check_action(issue_action)
    if not reason.strip():
        raise UsageError("the reason is empty", hint="say why the case is reopened")

    case = store.load(case_id)
    _check_closed(case)
    gitlab = _act_on_issue(case, reason.strip(), issue_action, profile, client, actor)

    with store.edit(case.id) as fresh:
        _check_closed(fresh)
        fresh.status = "open"
        fresh.record(actor, "reopened", reason=reason.strip(), resolution=fresh.resolution, issue_action=issue_action)
        fresh.resolution = None
        _record_issue_action(fresh, gitlab, actor)
    return _result(fresh, issue_action, gitlab)


def follow_up_reopened(
    store: CaseStore,
    case_id: str,
    profile: Profile,
    actor: str,
    *,
    issue_action: str = "comment",
    client: Any = None,
) -> ReopenResult:
    """Comment on (or reopen) the issue of a case that was reopened without doing so.

    Does nothing when the case has no issue, the action is `none`, or the last reopening
    was already followed up. Raises PreconditionFailed when the case was never reopened.
    """
    _check_action(issue_action)
    case = store.load(case_id)
    index = _last_reopening(case)
    if index is None:
        raise PreconditionFailed(f"case {case.id} was never reopened, so there is nothing to follow up")

    later = case.timeline[index + 1 :]
    done = any(event.event in FOLLOW_UP_EVENTS and event.detail.get("source") == SOURCE for event in later)
    if done or issue_action == "none" or not _issue_iid(case):
        return ReopenResult(case.id, case.status, issue_action, iid=_issue_iid(case), already_done=done)

    reason = str(case.timeline[index].detail.get("reason") or "the requester wrote again")
    gitlab = _act_on_issue(case, reason, issue_action, profile, client, actor)
    with store.edit(case.id) as fresh:
        _record_issue_action(fresh, gitlab, actor)
    return _result(fresh, issue_action, gitlab)


def after_intake(
    store: CaseStore,
    result: IntakeResult,
    profile: Profile,
    actor: str,
    *,
    issue_action: str = "comment",
    client: Any = None,
) -> ReopenResult | None:
    """Follow up on the issue when intake reopened a case (`result.action == "reopened"`)."""
    if result.action != "reopened":
        return None
    return follow_up_reopened(store, result.case.id, profile, actor, issue_action=issue_action, client=client)


def _check_action(issue_action: str) -> None:
    if issue_action not in ISSUE_ACTIONS:
        raise UsageError(f"issue action {issue_action!r} is invalid", hint=f"use one of: {', '.join(ISSUE_ACTIONS)}")


def _check_closed(case: Case) -> None:
    if case.status != "closed":
        raise PreconditionFailed(f"case {case.id} is {case.status}, not closed", hint="only closed cases can be reopened")


def _issue_iid(case: Case) -> int | None:
    iid = (case.issue or {}).get("iid")
    return int(iid) if iid else None


def _last_reopening(case: Case) -> int | None:
    for index in range(len(case.timeline) - 1, -1, -1):
        if case.timeline[index].event == "reopened":
            return index
    return None


def _act_on_issue(case: Case, reason: str, issue_action: str, profile: Profile, client: Any, actor: str) -> dict[str, Any] | None:
    """Reopen and comment, or only comment, and return what GitLab did (None when nothing was requested)."""
    iid = _issue_iid(case)
    if issue_action == "none" or iid is None:
        return None
    if client is None:
        from helpctl import services

        client = services.gitlab_client(profile)

    reopened = False
    state = None
    if issue_action == "reopen":
        issue = client.get_issue(iid)
        state = issue["state"]
        if state == "closed":
            state = client.set_issue_state(iid, "reopen")["state"]
            reopened = True

    note = client.add_note(iid, _comment(case, reason, reopened), marker=note_marker(case.id))
    outcome = {"iid": iid, "note_id": note["id"], "state": state, "reopened": reopened, "action": issue_action}
    _audit(case, outcome, actor)
    return outcome


def _comment(case: Case, reason: str, reopened: bool) -> str:
    redacted = Redactor(case).redact(reason)
    opening = "Reopened because the requester" if reopened else "The requester"
    return f"{opening} of Help Channel case `{case.id}` reports the problem again: {redacted}"


def _record_issue_action(case: Case, gitlab: dict[str, Any] | None, actor: str) -> None:
    if gitlab is None:
        return
    iid = gitlab["iid"]
    if gitlab["reopened"]:
        case.record(actor, "issue-reopened", source=SOURCE, iid=iid)
    case.record(actor, "issue-commented", source=SOURCE, iid=iid, note_id=gitlab["note_id"], action=gitlab["action"])
    if gitlab["state"] is not None and case.issue is not None and int(case.issue.get("iid") or 0) == iid:
        case.issue["state"] = gitlab["state"]


def _result(case: Case, issue_action: str, gitlab: dict[str, Any] | None) -> ReopenResult:
    issue = case.issue or {}
    return ReopenResult(
        case_id=case.id,
        status=case.status,
        issue_action=issue_action,
        iid=_issue_iid(case),
        url=issue.get("url"),
        note_id=(gitlab or {}).get("note_id"),
        issue_state=(gitlab or {}).get("state") or issue.get("state"),
        issue_reopened=bool((gitlab or {}).get("reopened")),
    )


def _audit(case: Case, outcome: dict[str, Any], actor: str) -> None:
    from helpctl.audit import AuditLog

    try:
        AuditLog().append(
            "issue.reopened" if outcome["reopened"] else "issue.commented",
            operator=actor,
            target={"case": case.id, "issue": outcome["iid"]},
            outcome="reopened" if outcome["reopened"] else "commented",
            request_id=case.id,
            detail={"note_id": outcome["note_id"], "action": outcome["action"]},
        )
    except (OSError, HelpctlError) as error:
        # GitLab was changed already; the case record must still follow.
        logger.error("the audit log entry for issue #%s of case %s failed: %s", outcome["iid"], case.id, error)
