"""Undo an applied plan: the inverse operations of what the journal shows as done.

The journal records which operations took effect, and the plan records what each person held
before (its precondition). The inverse of each:

- revoke → grant with the old role and responsibility. This is a new PENDING invitation that
  the person must accept, not the old access; a person whose last group was removed rejoins
  the organization as User when they accept (an organization role above User must be set
  again afterwards), and a person the platform deleted signs up again as a new account;
- grant of a new invitation → revoke (the invitation e-mail was already sent);
- set-role → set-role back to the old role and responsibility;
- organization revoke → organization grant with the old role, plus a grant for every group
  membership that went with it.

Operations that failed or never ran are not undone, and neither are changes that were already
in effect. The inverse intents go through the same planner as any other request, against the
platform's current state, so the undo plan has its own preconditions and needs its own
approval.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpctl.access import journal as journal_module
from helpctl.access import roles
from helpctl.access.plan import Intent, PlanFile, companion
from helpctl.errors import PreconditionFailed

JOURNAL_SUFFIX = ".journal.jsonl"


@dataclasses.dataclass
class UndoRequest:
    """The inverse intents of a plan, and what cannot be restored as it was."""

    intents: list[Intent]
    notes: list[str]
    undone: int
    not_undone: int


def undo_intents(plan: PlanFile) -> UndoRequest:
    """Build the inverse intents of every operation of `plan` that the journal shows as applied."""
    journal_path = companion(plan.path, JOURNAL_SUFFIX)
    if not journal_path.exists():
        raise PreconditionFailed(f"plan {plan.id} was never applied (no journal {journal_path}), so there is nothing to undo")
    total = int(plan.header.get("summary", {}).get("operations", 0))
    state = journal_module.read_state(journal_path, total)
    if state.count(journal_module.UNKNOWN):
        raise PreconditionFailed(
            f"{state.count(journal_module.UNKNOWN)} operation(s) of plan {plan.id} have an unknown outcome",
            hint="settle them first with 'helpctl access apply PLAN --resume'",
        )

    intents: list[Intent] = []
    notes: list[str] = []
    undone = 0
    for operation in _applied(plan, state):
        found = inverse(operation)
        intents += found.intents
        notes += found.notes
        undone += 1
    not_undone = total - undone
    if state.already_in_effect:
        notes.append(f"{len(state.already_in_effect)} operation(s) were already in effect before the plan ran, so they are not undone")
    return UndoRequest(intents, notes, undone, not_undone)


def _applied(plan: PlanFile, state: journal_module.JournalState) -> Iterator[dict[str, Any]]:
    for operation in plan.operations():
        index = operation["index"]
        if state.status[index] == journal_module.APPLIED and index not in state.already_in_effect:
            yield operation


def inverse(operation: dict[str, Any]) -> UndoRequest:
    """Return the intents that restore what `operation` changed, with what stays different."""
    before = operation["precondition"]
    email, scope = operation["email"], operation["scope"]
    target = operation["group"] or operation["organization"]
    reference = operation["organization_id"] or operation["organization"]
    common = {"email": email, "scope": scope, "group": operation["group"], "organization": reference}
    source = f"undo of row {operation.get('line') or operation['index'] + 1}"

    if operation["action"] == "set-role":
        intent = Intent("set-role", role=roles.enum_name(before["role"]), responsibility=before.get("responsibility"), note=source, **common)
        return UndoRequest([intent], [], 1, 0)

    if operation["action"] == "grant":
        if before["member"]:
            note = f"{email}: the re-sent invitation to {scope} {target} cannot be taken back; the earlier pending invitation stays"
            return UndoRequest([], [note], 1, 0)
        intent = Intent("revoke", note=f"{source}; the invitation e-mail was already sent", **common)
        return UndoRequest([intent], [], 1, 0)

    return _regrant(operation, before, common, source)


def _regrant(operation: dict[str, Any], before: dict[str, Any], common: dict[str, Any], source: str) -> UndoRequest:
    email, scope = operation["email"], operation["scope"]
    target = operation["group"] or operation["organization"]
    flags = set(operation.get("flags", []))
    notes = [f"{email}: a re-grant in {scope} {target} is a new PENDING invitation; they must accept it again"]
    if "leaves_platform" in flags:
        notes.append(f"{email}: the platform deleted their account, so they sign up again and their login history is gone")
    organization_role = operation.get("organization_role")
    if "leaves_organization" in flags and organization_role and organization_role != "user":
        notes.append(
            f"{email}: they rejoin organization {operation['organization']} as User; set their organization role "
            f"back to {roles.display(organization_role, 'organization')} after they accept"
        )

    intent = Intent(
        "grant",
        role=roles.enum_name(before["role"]),
        responsibility=before.get("responsibility") if scope == "group" else None,
        note=source,
        **common,
    )
    intents = [intent]
    for lost in operation.get("cascade") or []:
        if not lost.get("role"):
            notes.append(f"{email}: their role in group {lost['group']} was not readable when planning, so it is not restored")
            continue
        intents.append(
            Intent(
                "grant",
                "group",
                email,
                group=lost["group"],
                role=roles.enum_name(lost["role"]),
                responsibility=lost.get("responsibility"),
                note=f"{source} (group membership removed with the organization)",
            )
        )
    return UndoRequest(intents, notes, 1, 0)


def default_undo_path(plan_path: Path) -> Path:
    return companion(plan_path, ".undo.json")
