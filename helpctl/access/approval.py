"""Approvals of access plans: who approved, which request, and the checks around them.

No operation runs without an approval that names the approver and the request it responds to
(a case id; other text opens a case of kind access-request). The approval is bound to the plan's
content hash, recorded in the plan, in the case's timeline and in the audit log.

Rules, checked when approving and again when applying:

- the approver and the second approver differ from the operator (the token's own user, as
  `me` returns it) and from each other;
- the profile's policy can require a second approver: for plans that grant or set one of
  `access.second_approver_roles`, or that hold more than `access.second_approver_above`
  operations;
- when the request comes from a client, the plan says whether the platform shows the
  requester as a manager of every group (Group Manager, or Organization Manager of its
  organization) or organization concerned, and whether the request e-mail failed DKIM or SPF.
  An approval of such a flagged plan needs `override` with a reason.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpctl.access import roles
from helpctl.errors import HelpctlError, PreconditionFailed, UsageError
from helpctl.findings import isoformat, utc_now

if TYPE_CHECKING:
    from helpctl.access.plan import PlanFile
    from helpctl.access.state import StateReader
    from helpctl.cases.store import CaseStore
    from helpctl.config.settings import AccessSettings

logger = logging.getLogger(__name__)

CASE_ID = re.compile(r"^\d{6}-[0-9a-z]{6}$")
SUBJECT_CHARS = 100


@dataclasses.dataclass
class Operator:
    """The token's own user: who runs the changes."""

    email: str
    name: str = ""

    def is_same(self, person: str) -> bool:
        candidate = person.strip().casefold()
        return bool(candidate) and candidate in {self.email.casefold(), self.name.strip().casefold()} - {""}

    def as_dict(self) -> dict[str, str]:
        return {"email": self.email, "name": self.name}


def operator_from_me(me: dict[str, Any]) -> Operator:
    email = str(me.get("userEmail") or "").strip().lower()
    if not email:
        raise HelpctlError("the platform returned no e-mail for the token's user", hint="check the platform token")
    return Operator(email, str(me.get("userName") or ""))


# ----- policy -----


def second_approver_reasons(summary: dict[str, Any], settings: AccessSettings) -> list[str]:
    """Return why the policy wants a second approver for a plan with this summary (empty: it does not)."""
    reasons = []
    wanted = {roles.enum_name(role) for role in settings.second_approver_roles}
    sensitive = sorted(wanted & {roles.enum_name(role) for role in summary.get("roles", [])})
    if sensitive:
        reasons.append(f"it grants or sets {', '.join(sensitive)} (access.second_approver_roles)")
    above = settings.second_approver_above
    if above > 0 and summary.get("operations", 0) > above:
        reasons.append(f"it holds {summary['operations']} operations, more than {above} (access.second_approver_above)")
    return reasons


# ----- the request -----


def read_request_email(path: Path) -> dict[str, Any]:
    """Read the client's request e-mail: sender, subject and the DKIM/SPF results."""
    from helpctl.intake import parse_message

    try:
        raw = Path(path).expanduser().read_bytes()
    except FileNotFoundError as error:
        raise UsageError(f"--request-email: {path} not found", hint="give the path of the saved .eml file") from error
    except OSError as error:
        raise UsageError(f"--request-email: cannot read {path}: {error.strerror}") from error

    message = parse_message(raw)
    return {
        "file": str(path),
        "from": message.from_.email.lower(),
        "subject": message.subject,
        "message_id": message.message_id,
        "dkim_spf_failed": message.dkim_spf_failed,
        "failures": message.authentication_failures,
    }


def check_requester(reader: StateReader, email: str, summary: dict[str, Any]) -> dict[str, Any]:
    """Check through the platform that `email` manages every group and organization of the plan.

    A group is covered by a Group Manager role there (REGISTERED) or by an Organization
    Manager role in its organization. Read failures leave the check unverified, never passed.
    """
    roles_held: dict[str, str] = {}
    missing: list[str] = []
    managed_organizations: set[str] = set()
    identifiers = summary.get("organization_ids", {})
    try:
        for name in summary.get("organizations", []):
            member = reader.member("organization", identifiers.get(name, name), email)
            roles_held[f"organization {name}"] = _held(member)
            if _manages(member, "organization"):
                managed_organizations.add(name)
        for group, organization in sorted(summary.get("group_organizations", {}).items()):
            if organization in managed_organizations:
                continue
            member = reader.member("group", group, email)
            roles_held[f"group {group}"] = _held(member)
            if not _manages(member, "group"):
                missing.append(f"group {group}")
        organization_scopes = summary.get("organization_scopes", [])
        missing += [f"organization {name}" for name in organization_scopes if name not in managed_organizations]
    except HelpctlError as error:
        return {"email": email, "verified": False, "holds": roles_held, "missing": missing, "error": error.message,
                "summary": f"could not check {email}'s roles: {error.message}"}

    verified = not missing
    if verified:
        text = f"{email} manages every group and organization of the plan"
    else:
        text = f"{email} is not a manager of {', '.join(missing)}"
    return {"email": email, "verified": verified, "holds": roles_held, "missing": missing, "error": None, "summary": text}


def _held(member: Any) -> str:
    if member is None:
        return "no member"
    return f"{member.role} ({member.invitation_state or 'state unknown'})"


def _manages(member: Any, level: str) -> bool:
    return member is not None and roles.is_manager(member.role, level) and member.invitation_state != "PENDING"


def request_flags(request: dict[str, Any]) -> list[str]:
    """Return the warnings about a plan's request that an approver must override."""
    flags = []
    check = request.get("requester_check")
    if check is not None and not check.get("verified"):
        flags.append(f"requester not verified as a manager: {check.get('summary')}")
    mail = request.get("email")
    if mail and mail.get("dkim_spf_failed"):
        flags.append(f"the request e-mail failed authentication ({', '.join(mail.get('failures') or [])})")
    return flags


# ----- cases -----


def resolve_case(store: CaseStore, ref: str, *, profile: str, actor: str, requester: str | None, summary: dict[str, Any]) -> tuple[str, bool]:
    """Return the case id the request refers to, opening a case when `ref` is not a case id."""
    text = ref.strip()
    if not text:
        raise UsageError("--ref is empty", hint="give the case id, or the request (ticket, e-mail subject) the change responds to")
    if CASE_ID.match(text.lower()):
        return store.load(text.lower()).id, False

    from helpctl.cases.model import Case, Person, Subjects
    from helpctl.cases.store import new_case_id

    case = Case(
        id=new_case_id(),
        profile=profile,
        subject=f"Access request: {text[:SUBJECT_CHARS]}",
        requester=Person(email=requester or ""),
        kind="access-request",
        body=text,
        subjects=Subjects(
            groups=list(summary.get("groups", []))[:50],
            organizations=list(summary.get("organizations", []))[:10],
        ),
    )
    case.record(actor, "opened", source="access approval", ref=text)
    store.create(case)
    return case.id, True


def note_in_case(store: CaseStore, case_id: str | None, actor: str, event: str, **detail: Any) -> None:
    """Append an event to the case's timeline; a failure is logged, since the audit log has it too."""
    if not case_id:
        return
    try:
        with store.edit(case_id) as case:
            case.record(actor, event, **detail)
    except HelpctlError as error:
        logger.warning("could not record %s in case %s: %s", event, case_id, error.message)


# ----- approving and checking -----


def approve(
    plan: PlanFile,
    *,
    by: str,
    ref: str,
    operator: Operator,
    settings: AccessSettings,
    store: CaseStore,
    profile: str,
    second_approver: str | None = None,
    override: str | None = None,
    reader: StateReader | None = None,
) -> dict[str, Any]:
    """Record an approval in the plan, the audit log and the case; return the approval.

    Raises PreconditionFailed when the plan changed, is already approved, or the approval
    breaks a rule; nothing is recorded then.
    """
    content_hash = plan.check_unchanged()
    if plan.approval:
        raise PreconditionFailed(
            f"plan {plan.id} is already approved by {plan.approval.get('by')} ({plan.approval.get('at')})",
            hint="apply it, or plan again for a new approval",
        )
    _check_people(by, second_approver, operator, plan.header.get("summary", {}), settings)

    request = dict(plan.header.get("request") or {})
    case_id, opened = resolve_case(
        store, ref, profile=profile, actor=operator.email, requester=request.get("requester"), summary=plan.header.get("summary", {})
    )
    requester_check = request.get("requester_check")
    if requester_check is None and reader is not None:
        requester_check = _check_case_requester(store, case_id, reader, operator, plan.header.get("summary", {}))
    flags = request_flags({**request, "requester_check": requester_check})
    if flags and not (override or "").strip():
        raise PreconditionFailed(
            "the request is flagged: " + "; ".join(flags),
            hint="confirm it with the requester's manager, then approve with --override 'REASON'",
        )

    approval = {
        "by": by.strip(),
        "second_approver": (second_approver or "").strip() or None,
        "ref": ref.strip(),
        "case": case_id,
        "case_opened": opened,
        "at": isoformat(utc_now()),
        "operator": operator.email,
        "content_hash": content_hash,
        "requester_check": requester_check,
        "flags": flags,
        "override": (override or "").strip() or None,
    }
    from helpctl.audit import AuditLog

    entry = AuditLog().append(
        "access.approve",
        operator=operator.email,
        target={"plan": plan.id, "operations": plan.header.get("summary", {}).get("operations", 0)},
        outcome="approved",
        approval=audit_approval(approval),
        request_id=plan.id,
        detail={"content_hash": content_hash, "flags": flags, "override": approval["override"]},
    )
    approval["audit_seq"] = entry["seq"]

    from helpctl.access.plan import set_approval

    set_approval(plan, approval)
    plan.approval = approval
    note_in_case(
        store, case_id, operator.email, "access-approved",
        plan=plan.id, by=approval["by"], second_approver=approval["second_approver"],
        operations=plan.header.get("summary", {}).get("operations", 0), content_hash=content_hash,
    )
    return approval


def _check_case_requester(store: CaseStore, case_id: str, reader: StateReader, operator: Operator, summary: dict[str, Any]) -> dict[str, Any] | None:
    requester = store.load(case_id).requester.email.strip().lower()
    if not requester or requester == operator.email:
        return None
    return check_requester(reader, requester, summary)


def _check_people(by: str, second: str | None, operator: Operator, summary: dict[str, Any], settings: AccessSettings) -> None:
    if not by.strip():
        raise UsageError("--by is empty", hint="name the person who approved the change")
    if operator.is_same(by):
        raise PreconditionFailed(
            f"the approver ({by}) is the operator; an approver must differ from the person who applies the plan",
            hint="ask another person to approve it",
        )
    second = (second or "").strip()
    reasons = second_approver_reasons(summary, settings)
    if reasons and not second:
        raise PreconditionFailed(
            "the policy requires a second approver because " + " and ".join(reasons),
            hint="add --second-approver WHO",
        )
    if second and (operator.is_same(second) or second.casefold() == by.strip().casefold()):
        raise PreconditionFailed(
            f"the second approver ({second}) must differ from the approver and from the operator",
            hint="ask a third person",
        )


def audit_approval(approval: dict[str, Any]) -> dict[str, Any]:
    """Return the approval fields an audit entry carries."""
    return {
        "by": approval.get("by"),
        "second_approver": approval.get("second_approver"),
        "ref": approval.get("ref"),
        "case": approval.get("case"),
        "override": approval.get("override"),
    }


def check_approval(plan: PlanFile, content_hash: str, operator: Operator, settings: AccessSettings) -> dict[str, Any]:
    """Return the plan's approval when it is valid for this content and operator; else raise PreconditionFailed."""
    approval = plan.approval
    if not approval:
        raise PreconditionFailed(
            f"plan {plan.id} is not approved, so nothing was changed",
            hint=f"helpctl access approve {plan.path} --by WHO --ref REQUEST",
        )
    if approval.get("content_hash") != content_hash:
        raise PreconditionFailed(
            f"plan {plan.id} was edited after its approval (content hash mismatch), so nothing was changed",
            hint="plan again and have the new plan approved",
        )
    planned_for = (plan.header.get("operator") or {}).get("email")
    if planned_for and planned_for != operator.email:
        raise PreconditionFailed(
            f"plan {plan.id} was made for operator {planned_for}, but the token belongs to {operator.email}",
            hint="plan again with your own token",
        )
    _check_people(str(approval.get("by") or ""), approval.get("second_approver"), operator, plan.header.get("summary", {}), settings)
    if approval.get("flags") and not approval.get("override"):
        raise PreconditionFailed(f"plan {plan.id}'s approval has unresolved flags: {'; '.join(approval['flags'])}")
    return approval
