"""Consult a developer about a case on GitLab, and keep the question in the case.

The question is redacted (`helpctl.redact`) and posted as a note that mentions the
developer on the case's filed issue. A case with no filed issue gets one confidential
consultation issue, found again by its hidden marker line, so asking twice never opens a
second one. The `consultation` label is added when the project has it. The consultation
marker differs from filing's case marker on purpose: filing returns any issue that carries
its marker as the case's filed issue, and a consultation is not that issue.

The case records a `consulted` event and an entry in `consultations` (developer, issue,
note id, status). `helpctl sync` brings the developer's later notes back as
`consultation-answered`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import TYPE_CHECKING, Any

from helpctl.cases.model import Case
from helpctl.cases.store import CaseStore
from helpctl.errors import HelpctlError, NotFound, PreconditionFailed, RateLimited, ServiceError, UsageError
from helpctl.findings import isoformat, utc_now
from helpctl.redact import Redactor
from helpctl.sync import note_marker

if TYPE_CHECKING:
    from helpctl.config.settings import Profile

logger = logging.getLogger(__name__)

CONSULTATION_LABEL = "consultation"
CONSULTATION_MARKER_PREFIX = "helpctl-consultation:"
# GitLab usernames: letters, digits, underscores, dots and dashes.
USERNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")
QUESTION_EXCERPT_CHARS = 200


def consultation_marker(case_id: str) -> str:
    """Return the hidden line that ties a consultation issue to its case."""
    return f"<!-- {CONSULTATION_MARKER_PREFIX} {case_id} -->"


@dataclasses.dataclass
class ConsultResult:
    case_id: str
    developer: str
    iid: int
    url: str | None
    note_id: int | None
    issue_created: bool
    confidential: bool
    labels: list[str]
    question: str
    redactions: dict[str, int] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def consult(
    store: CaseStore,
    case_id: str,
    developer: str,
    question: str,
    profile: Profile,
    actor: str,
    *,
    client: Any = None,
) -> ConsultResult:
    """Ask `developer` (a GitLab username) `question` about case `case_id` on GitLab.

    Raises UsageError for an invalid username or an empty question, PreconditionFailed for
    a closed case or an unknown GitLab user, and helpctl's service errors when GitLab
    fails. Nothing is recorded in the case unless the question was posted.
    """
    developer = _check_developer(developer)
    if not question.strip():
        raise UsageError("the question is empty", hint="write it with --question TEXT")

    case = store.load(case_id)
    if case.status == "closed":
        raise PreconditionFailed(f"case {case.id} is closed", hint=f"reopen it first with 'helpctl case reopen {case.id} --reason ...'")
    if client is None:
        from helpctl import services

        client = services.gitlab_client(profile)
    if client.user_by_username(developer) is None:
        raise PreconditionFailed(f"GitLab user {developer!r} not found; nothing was posted", hint="check the username in GitLab")

    redactor = Redactor(case)
    text = redactor.redact(question.strip())
    body = f"@{developer} {text}\n\n_Question from Help Channel case `{case.id}`, asked with helpctl._"
    if case.issue and case.issue.get("iid"):
        result = _ask_on_issue(case, developer, text, body, client)
    else:
        result = _ask_on_consultation_issue(case, developer, text, body, client, profile)
    result.redactions = redactor.report()

    _record(store, result, actor)
    _audit(actor, result)
    return result


def _check_developer(developer: str) -> str:
    name = developer.strip().removeprefix("@")
    if not USERNAME.match(name):
        raise UsageError(f"--developer: {developer!r} is not a GitLab username", hint="give the username without spaces, such as pmorales")
    return name


def _ask_on_issue(case: Case, developer: str, text: str, body: str, client: Any) -> ConsultResult:
    issue = case.issue or {}
    note = client.add_note(int(issue["iid"]), body, marker=note_marker(case.id))
    return ConsultResult(
        case_id=case.id,
        developer=developer,
        iid=int(issue["iid"]),
        url=issue.get("url"),
        note_id=note["id"],
        issue_created=False,
        confidential=bool(issue.get("confidential")),
        labels=list(issue.get("labels") or []),
        question=text,
    )


def _ask_on_consultation_issue(case: Case, developer: str, text: str, body: str, client: Any, profile: Profile) -> ConsultResult:
    """Post on the case's consultation issue, opening it (confidential) on the first question."""
    marker = consultation_marker(case.id)
    existing = client.find_issue_by_marker(marker)
    if existing is not None:
        note = client.add_note(int(existing["iid"]), body, marker=note_marker(case.id))
        return _consultation_result(case, developer, text, existing, note["id"], created=False)

    warnings = []
    labels = [CONSULTATION_LABEL] if CONSULTATION_LABEL in client.label_names() else []
    if not labels:
        warnings.append(f"the project has no {CONSULTATION_LABEL!r} label, so the consultation issue has no label")

    payload = {
        "title": _title(case, profile),
        "description": f"{body}\n\n---\nOpened by helpctl. The case stays with the support engineer.\n{marker}",
        "labels": labels,
        "confidential": True,
        "issue_type": "issue",
    }
    issue = _create_once(client, payload, marker)
    result = _consultation_result(case, developer, text, issue, None, created=True)
    result.warnings += warnings
    return result


def _title(case: Case, profile: Profile) -> str:
    subject = " ".join(Redactor(case).redact(case.subject).split()) or f"Help Channel case {case.id}"
    title = f"[{profile.gitlab.product}] Consultation: {subject}"
    limit = profile.gitlab.title_limit
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"


def _create_once(client: Any, payload: dict[str, Any], marker: str) -> dict[str, Any]:
    """Create the issue, and after a failure with an unknown effect look for its marker."""
    try:
        return client.create_issue(payload)
    except ServiceError as error:
        unknown = not isinstance(error, (RateLimited, NotFound)) and (error.status is None or error.status >= 500)
        if not unknown:
            raise
        found = client.find_issue_by_marker(marker)
        if found is None:
            error.hint = "no consultation issue was opened; run the command again"
            raise
        logger.warning("opening the consultation issue failed (%s), but the issue was created", error.message)
        return found


def _consultation_result(case: Case, developer: str, text: str, issue: dict[str, Any], note_id: int | None, *, created: bool) -> ConsultResult:
    return ConsultResult(
        case_id=case.id,
        developer=developer,
        iid=int(issue["iid"]),
        url=issue.get("web_url"),
        note_id=note_id,
        issue_created=created,
        confidential=bool(issue.get("confidential")),
        labels=list(issue.get("labels") or []),
        question=text,
    )


def _record(store: CaseStore, result: ConsultResult, actor: str) -> None:
    now = isoformat(utc_now())
    with store.edit(result.case_id) as case:
        filed_iid = (case.issue or {}).get("iid")
        if filed_iid is None or int(filed_iid) != result.iid:
            # The cursor starts now: the notes posted before the question are not answers.
            holder = case.extra.setdefault("consultation_issue", {})
            if holder.get("iid") != result.iid:
                holder.clear()
                holder.update(iid=result.iid, url=result.url, created_at=now, synced_at=now)

        case.extra.setdefault("consultations", []).append(
            {
                "developer": result.developer,
                "issue": result.iid,
                "url": result.url,
                "note_id": result.note_id,
                "asked_at": now,
                "actor": actor,
                "status": "open",
                "question": result.question[:QUESTION_EXCERPT_CHARS],
            }
        )
        case.record(
            actor, "consulted", developer=result.developer, iid=result.iid, note_id=result.note_id,
            issue_created=result.issue_created, url=result.url,
        )


def _audit(actor: str, result: ConsultResult) -> None:
    from helpctl.audit import AuditLog

    try:
        AuditLog().append(
            "issue.consulted",
            operator=actor,
            target={"case": result.case_id, "issue": result.iid, "developer": result.developer},
            outcome="issue-created" if result.issue_created else "commented",
            request_id=result.case_id,
            detail={"note_id": result.note_id, "url": result.url, "confidential": result.confidential},
        )
    except (OSError, HelpctlError) as error:
        # The question is posted and recorded in the case; a failed audit write must not hide that.
        logger.error("the audit log entry for the consultation on case %s failed: %s", result.case_id, error)
