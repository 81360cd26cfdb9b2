"""Access plans: requested changes checked against the platform's state, written to a file.

A plan turns intents (one per CSV row and group, or one for a single command) into
operations. Each operation records its precondition (the member's state it was planned
against), its effects in words, and flags for the dangerous ones:

- `leaves_organization`: it removes the person's last group in the organization, and the
  platform then removes them from the organization;
- `leaves_platform`: they also hold no group in another organization as far as the platform
  lists them, so the platform deletes their account;
- `last_group_manager` / `last_organization_manager`: no member other than the operator would
  still manage the group's or organization's members;
- `operator_self`: it changes the operator's own access;
- `effects_unknown`: the organization's members could not be read, so the above is unknown.

Changes that are already true are skipped and listed. Problems (bad roles, unknown groups,
role changes for people who are no members, conflicting rows) are collected for every row and
raised together as InvalidRows, and then nothing is planned.

The plan file is one JSON document (format `helpctl-access-plan`, version 1, mode 0600)
written one operation per line, so that apply can stream a plan of many thousands of
operations without loading it whole. Its content hash (SHA-256 over the canonical JSON of
the header, operations and skipped changes) binds the approval to the content: an edit after
approval changes the hash.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from helpctl import paths
from helpctl.access import roles
from helpctl.access.state import ABSENT, GroupState, Member, OrganizationState, StateReader
from helpctl.errors import HelpctlError, PreconditionFailed, UsageError

logger = logging.getLogger(__name__)

PLAN_FORMAT = "helpctl-access-plan"
PLAN_VERSION = 1
ACTIONS = ("grant", "set-role", "revoke")
SCOPES = ("group", "organization")
DANGEROUS_FLAGS = frozenset(
    {
        "leaves_organization",
        "leaves_platform",
        "last_group_manager",
        "last_organization_manager",
        "operator_self",
        "effects_unknown",
    }
)
# Concurrent state reads while planning: enough to hide latency, few enough to stay polite.
READ_WORKERS = 4


@dataclasses.dataclass
class Intent:
    """One requested change before it is checked against the platform's state.

    For group scope, `group` names the group, or `all_groups` requests every group of the
    person in `organization`. For organization scope, `organization` is a name or an id.
    `role` is as written (a display name or an enum name).
    """

    action: str
    scope: str
    email: str
    group: str | None = None
    organization: str | None = None
    all_groups: bool = False
    role: str | None = None
    responsibility: str | None = None
    line: int | None = None
    resend: bool = False
    note: str | None = None

    def where(self) -> str:
        return f"line {self.line}" if self.line else self.email


@dataclasses.dataclass
class Problem:
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class InvalidRows(UsageError):
    """Some requested changes are invalid; `problems` lists each one with its line."""

    kind = "invalid_rows"

    def __init__(self, problems: list[Problem], source: str) -> None:
        count = len(problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(
            f"{source}: {count} {noun} found, so nothing was planned",
            hint="fix every listed row and plan again",
        )
        self.problems = problems

    def as_dict(self) -> dict[str, object]:
        data = super().as_dict()
        data["problems"] = [{"line": problem.line, "message": problem.message} for problem in self.problems]
        return data


@dataclasses.dataclass
class Draft:
    """A plan before it is written: header, operations (in apply order) and skipped changes."""

    header: dict[str, Any]
    operations: list[dict[str, Any]]
    skipped: list[dict[str, Any]]


# ---------------------------------------------------------------------------------------------
# Planning


class Planner:
    """Check intents against the platform's state and turn them into operations."""

    def __init__(self, reader: StateReader, catalog: roles.RoleCatalog, operator: str) -> None:
        self.reader = reader
        self.catalog = catalog
        self.operator = operator.lower()
        self.problems: list[Problem] = []
        self.groups: dict[str, GroupState | None] = {}
        self.organizations: dict[str, OrganizationState | None] = {}
        self._organization_keys: dict[str, str] = {}

    def plan(self, intents: list[Intent], source: str) -> Draft:
        """Return the operations and skipped changes; raise InvalidRows listing every problem."""
        intents = self._expand(intents)
        self._read_groups({intent.group for intent in intents if intent.scope == "group" and intent.group})
        self._read_organizations({name for name in map(self._group_organization, intents) if name})
        self._read_groups(self._cascaded_groups(intents))

        operations: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        for intent in intents:
            outcome = self._operation(intent)
            if outcome is None:
                continue
            (operations if "precondition" in outcome else skipped).append(outcome)

        operations = self._unique(operations)
        if self.problems:
            self.problems.sort(key=lambda problem: (problem.line or 0, problem.message))
            raise InvalidRows(self.problems, source)

        operations.sort(key=_apply_order)
        _Simulation(self).run(operations)
        for index, operation in enumerate(operations):
            operation["index"] = index
        return Draft({}, operations, skipped)

    # ----- reading state -----

    def _expand(self, intents: list[Intent]) -> list[Intent]:
        """Replace each all-groups intent by one intent per group of the person in the organization."""
        self._read_organizations({intent.organization for intent in intents if intent.organization})

        expanded: list[Intent] = []
        for intent in intents:
            if intent.scope != "group" or not intent.all_groups:
                expanded.append(intent)
                continue
            organization = self.organization(intent.organization)
            if organization is None:
                continue
            expanded += self._one_per_group(intent, organization)
        return expanded

    def _cascaded_groups(self, intents: list[Intent]) -> set[str]:
        """Return the groups an organization removal takes with it, whose roles undo needs."""
        names: set[str] = set()
        for intent in intents:
            organization = self.organization(intent.organization) if intent.scope == "organization" else None
            member = (organization.members or {}).get(intent.email) if organization else None
            if intent.action == "revoke" and member is not None:
                names.update(member.groups or ())
        return names

    def _one_per_group(self, intent: Intent, organization: OrganizationState) -> list[Intent]:
        if intent.action == "grant":
            # Granting in "all groups" means every group of the organization.
            names = list(organization.groups)
        elif organization.members is None:
            self.problems.append(
                Problem(intent.line, f"cannot list the members of {organization.name} ({organization.denied}), so --all-groups is unknown for {intent.email}")
            )
            return []
        else:
            member = organization.members.get(intent.email)
            names = list(member.groups or ()) if member else []

        if not names:
            return [dataclasses.replace(intent, all_groups=False, group=None, organization=organization.name)]
        return [dataclasses.replace(intent, all_groups=False, group=name, organization=organization.name) for name in names]

    def _read_groups(self, names: set[str]) -> None:
        names = {name for name in names if name not in self.groups}
        if not names:
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(READ_WORKERS, len(names))) as pool:
            futures = {pool.submit(self.reader.group, name): name for name in sorted(names)}
            for future in concurrent.futures.as_completed(futures):
                name = futures[future]
                try:
                    self.groups[name] = future.result()
                except HelpctlError as error:
                    if getattr(error, "kind", "") != "not_found":
                        raise
                    self.groups[name] = None

    def _read_organizations(self, references: set[str]) -> None:
        for reference in sorted(references):
            key = reference.lower()
            if key in self._organization_keys:
                continue
            try:
                organization: OrganizationState | None = self.reader.organization(reference)
            except HelpctlError as error:
                if getattr(error, "kind", "") != "not_found":
                    raise
                organization = None
            self._organization_keys[key] = reference
            self.organizations[key] = organization
            if organization is not None:
                self.organizations[organization.name.lower()] = organization
                self.organizations[organization.id.lower()] = organization
                self._organization_keys[organization.name.lower()] = reference
                self._organization_keys[organization.id.lower()] = reference

    def organization(self, reference: str | None) -> OrganizationState | None:
        if not reference:
            return None
        return self.organizations.get(reference.lower())

    def _group_organization(self, intent: Intent) -> str | None:
        if intent.scope == "organization":
            return intent.organization
        group = self.groups.get(intent.group or "")
        return group.organization if group is not None else None

    # ----- one intent -----

    def _operation(self, intent: Intent) -> dict[str, Any] | None:
        """Return an operation, a skipped change, or None after recording a problem."""
        role = self._role(intent)
        if role is False:
            return None
        if intent.scope == "group":
            return self._group_operation(intent, role or None)
        return self._organization_operation(intent, role or None)

    def _role(self, intent: Intent) -> str | bool | None:
        if intent.action == "revoke":
            return None
        if not intent.role:
            self.problems.append(Problem(intent.line, f"a role is required to {intent.action} {intent.email} (add a role column or --role)"))
            return False
        try:
            return self.catalog.resolve(intent.role, intent.scope)
        except ValueError as error:
            self.problems.append(Problem(intent.line, str(error)))
            return False

    def _group_operation(self, intent: Intent, role: str | None) -> dict[str, Any] | None:
        if not intent.group:
            return self._no_group(intent)
        group = self.groups.get(intent.group)
        if group is None:
            self.problems.append(Problem(intent.line, f"group {intent.group!r} not found, or the token has no access to it"))
            return None
        if not self._check_group(intent, group):
            return None

        organization = self.organization(group.organization)
        member = (group.members or {}).get(intent.email)
        organization_member = (organization.members or {}).get(intent.email) if organization else None
        base = {
            "scope": "group",
            "email": intent.email,
            "group": group.name,
            "organization": group.organization,
            "organization_id": organization.id if organization else None,
        }
        planned = self._decide(intent, base, member, role)
        if planned is not None and "precondition" in planned and organization_member is not None:
            # Recorded for undo: leaving the last group also loses this organization role.
            planned["organization_role"] = organization_member.role
        return planned

    def _check_group(self, intent: Intent, group: GroupState) -> bool:
        if intent.organization:
            expected = self.organization(intent.organization)
            if expected is not None and group.organization.lower() != expected.name.lower():
                self.problems.append(
                    Problem(intent.line, f"group {group.name} belongs to organization {group.organization}, not {expected.name}")
                )
                return False
        if group.members is None:
            self.problems.append(
                Problem(intent.line, f"cannot read the members of group {group.name}: {group.denied} (the group's plan may lack the service, or your role cannot list members)")
            )
            return False
        if not group.operator_can_manage:
            self.problems.append(
                Problem(intent.line, f"your role in group {group.name} ({roles.display(group.user_role)}) cannot manage members")
            )
            return False
        return True

    def _organization_operation(self, intent: Intent, role: str | None) -> dict[str, Any] | None:
        organization = self.organization(intent.organization)
        if organization is None:
            self.problems.append(Problem(intent.line, f"organization {intent.organization!r} not found, or the token has no access to it"))
            return None
        if organization.members is None or not organization.operator_can_manage:
            reason = organization.denied or f"your role there is {roles.display(organization.user_role, 'organization')}"
            self.problems.append(Problem(intent.line, f"cannot manage the members of organization {organization.name}: {reason}"))
            return None

        member = organization.members.get(intent.email)
        base = {
            "scope": "organization",
            "email": intent.email,
            "group": None,
            "organization": organization.name,
            "organization_id": organization.id,
        }
        return self._decide(intent, base, member, role)

    def _no_group(self, intent: Intent) -> dict[str, Any] | None:
        if intent.organization and intent.action != "grant":
            # An all-groups intent for someone with no group in the organization.
            return _skip(intent, intent.organization, f"{intent.email} has no group in organization {intent.organization}")
        self.problems.append(Problem(intent.line, "no group given (add a group column, --group or --all-groups --org)"))
        return None

    def _decide(self, intent: Intent, base: dict[str, Any], member: Member | None, role: str | None) -> dict[str, Any] | None:
        """Choose what the intent means given the member's current state."""
        level = base["scope"]
        target = base["group"] or base["organization"]
        if intent.action == "revoke":
            if member is None:
                return _skip(intent, target, f"{intent.email} is not a member of {level} {target}")
            return _operation(intent, base, "revoke", member, None, None)

        assert role is not None
        current = roles.enum_name(member.role) if member else None
        if intent.action == "grant" and member is None:
            return _operation(intent, base, "grant", None, role, intent.responsibility)
        if member is None:
            self.problems.append(
                Problem(intent.line, f"{intent.email} is not a member of {level} {target}, so the role cannot change (use grant)")
            )
            return None

        responsibility = intent.responsibility if intent.responsibility is not None else member.responsibility
        same_role = current == role
        same_responsibility = level == "organization" or intent.responsibility is None or intent.responsibility == member.responsibility
        if intent.action == "grant" and member.pending and same_role and intent.resend:
            return _operation(intent, base, "grant", member, role, responsibility, note="a new invitation replaces the pending one")
        if same_role and same_responsibility:
            state = "already invited (pending)" if member.pending else "already holds"
            return _skip(intent, target, f"{intent.email} {state} {roles.display(role, level)} in {level} {target}")
        note = None
        if intent.action == "grant":
            note = f"already {'invited' if member.pending else 'a member'} as {roles.display(member.role, level)}: planned as a role change"
        return _operation(intent, base, "set-role", member, role, responsibility, note=note)

    def _unique(self, operations: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop repeated operations and report conflicting ones (same person and target)."""
        chosen: dict[tuple[str, str, str], dict[str, Any]] = {}
        for operation in operations:
            key = (operation["scope"], operation["group"] or operation["organization"], operation["email"])
            first = chosen.get(key)
            if first is None:
                chosen[key] = operation
            elif (first["action"], first["role"]) != (operation["action"], operation["role"]):
                where = f"line {first['line']}" if first.get("line") else "another request"
                self.problems.append(
                    Problem(operation.get("line"), f"{operation['email']} in {key[0]} {key[1]} conflicts with {where}")
                )
        return list(chosen.values())


def _apply_order(operation: dict[str, Any]) -> tuple[Any, ...]:
    # Grouped by target, so that apply reads each group's state once per batch.
    return (operation["scope"] == "organization", operation["group"] or operation["organization"], operation["email"])


def _operation(
    intent: Intent,
    base: dict[str, Any],
    action: str,
    member: Member | None,
    role: str | None,
    responsibility: str | None,
    note: str | None = None,
) -> dict[str, Any]:
    notes = [text for text in (note, intent.note) if text]
    return {
        "index": None,
        "line": intent.line,
        "action": action,
        **base,
        "role": role,
        "responsibility": responsibility,
        "resend": bool(intent.resend and action == "grant" and member is not None),
        "precondition": member.snapshot() if member else dict(ABSENT),
        "effects": [],
        "flags": [],
        "dangerous": False,
        "notes": notes,
    }


def _skip(intent: Intent, target: str | None, reason: str) -> dict[str, Any]:
    return {
        "line": intent.line,
        "action": intent.action,
        "scope": intent.scope,
        "email": intent.email,
        "target": target,
        "reason": reason,
    }


class _Simulation:
    """Walk the operations in apply order over a copy of the state and write their effects."""

    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        self.operator = planner.operator
        self._person_groups: dict[tuple[str, str], set[str] | None] = {}
        self._managers: dict[tuple[str, str], set[str]] = {}

    def run(self, operations: list[dict[str, Any]]) -> None:
        for operation in operations:
            if operation["scope"] == "group":
                self._group(operation)
            else:
                self._organization(operation)
            if operation["email"] == self.operator:
                _flag(operation, "operator_self", f"this changes your own access (the operator, {self.operator})")
            operation["dangerous"] = bool(DANGEROUS_FLAGS & set(operation["flags"]))

    def _groups_of(self, organization_name: str, email: str) -> tuple[set[str] | None, Member | None]:
        key = (organization_name.lower(), email)
        organization = self.planner.organization(organization_name)
        member = organization.members.get(email) if organization and organization.members is not None else None
        if key not in self._person_groups:
            if organization is None or organization.members is None:
                self._person_groups[key] = None
            else:
                self._person_groups[key] = set(member.groups or ()) if member else set()
        return self._person_groups[key], member

    def _group_managers(self, name: str) -> set[str]:
        key = ("group", name)
        if key not in self._managers:
            group = self.planner.groups.get(name)
            members = group.members or {} if group else {}
            self._managers[key] = {
                email
                for email, member in members.items()
                if roles.is_manager(member.role, "group") and not member.pending and email != self.operator
            }
        return self._managers[key]

    def _organization_managers(self, organization: OrganizationState) -> set[str]:
        key = ("organization", organization.name)
        if key not in self._managers:
            members = organization.members or {}
            self._managers[key] = {
                email
                for email, member in members.items()
                if roles.is_manager(member.role, "organization") and not member.pending and email != self.operator
            }
        return self._managers[key]

    def _group(self, operation: dict[str, Any]) -> None:
        email, group, organization = operation["email"], operation["group"], operation["organization"]
        action = operation["action"]
        role_before = operation["precondition"]["role"]
        managers = self._group_managers(group)

        if action == "grant":
            self._describe_grant(operation)
            groups, _ = self._groups_of(organization, email)
            if groups is not None:
                if not groups and email not in (self.planner.organization(organization).members or {}):
                    operation["effects"].append(f"{email} also joins organization {organization} (pending, as User)")
                groups.add(group)
            return

        if action == "set-role":
            self._describe_role_change(operation, "group")
            if roles.is_manager(role_before, "group") and not roles.is_manager(operation["role"], "group"):
                self._lose_manager(operation, managers, group, "group")
            return

        operation["effects"].append(f"removes {email} from group {group}")
        if roles.is_manager(role_before, "group"):
            self._lose_manager(operation, managers, group, "group")
        self._leave_group(operation, organization, group)

    def _leave_group(self, operation: dict[str, Any], organization: str, group: str) -> None:
        email = operation["email"]
        groups, member = self._groups_of(organization, email)
        if groups is None:
            denied = self.planner.organization(organization)
            reason = denied.denied if denied else "not readable"
            _flag(
                operation,
                "effects_unknown",
                f"cannot read the members of {organization} ({reason}), so whether this also removes {email} from the organization is unknown",
            )
            return
        groups.discard(group)
        if groups:
            return
        _flag(operation, "leaves_organization", f"{group} is {email}'s last group in {organization}: the platform also removes them from the organization")
        self._maybe_leave_platform(operation, member)

    def _maybe_leave_platform(self, operation: dict[str, Any], member: Member | None) -> None:
        # NOTE: the stand-in lists a person's groups in every organization. Whether the platform
        # lists groups the operator cannot see is not documented, so this flag may be too eager.
        if member is not None and member.groups_elsewhere == 0:
            _flag(
                operation,
                "leaves_platform",
                f"the platform lists no group of {operation['email']} in another organization, so it deletes their account",
            )

    def _lose_manager(self, operation: dict[str, Any], managers: set[str], target: str, level: str) -> None:
        email = operation["email"]
        if email not in managers:
            return
        managers.discard(email)
        if not managers:
            title = "Group Manager" if level == "group" else "Organization Manager"
            _flag(operation, f"last_{level}_manager", f"{email} is the last {title} of {target} besides the operator")

    def _organization(self, operation: dict[str, Any]) -> None:
        email, name = operation["email"], operation["organization"]
        organization = self.planner.organization(name)
        assert organization is not None
        managers = self._organization_managers(organization)

        if operation["action"] == "grant":
            self._describe_grant(operation)
            return
        if operation["action"] == "set-role":
            self._describe_role_change(operation, "organization")
            role_before = operation["precondition"]["role"]
            if roles.is_manager(role_before, "organization") and not roles.is_manager(operation["role"], "organization"):
                self._lose_manager(operation, managers, name, "organization")
            return

        groups, member = self._groups_of(name, email)
        lost = sorted(groups or ())
        text = f"removes {email} from organization {name}"
        if lost:
            text += f" and from its groups {', '.join(lost)}"
        operation["effects"].append(text)
        operation["cascade"] = self._cascade(email, lost)
        for group in lost:
            group_managers = self._group_managers(group)
            if email in group_managers:
                group_managers.discard(email)
                if not group_managers:
                    _flag(operation, "last_group_manager", f"{email} is the last Group Manager of {group} besides the operator")
        if groups is not None:
            groups.clear()
        if roles.is_manager(operation["precondition"]["role"], "organization"):
            self._lose_manager(operation, managers, name, "organization")
        _flag(operation, "leaves_organization", f"{email} leaves organization {name}")
        self._maybe_leave_platform(operation, member)

    def _cascade(self, email: str, groups: list[str]) -> list[dict[str, Any]]:
        """Return the group memberships an organization removal takes with it (for undo)."""
        lost = []
        for name in groups:
            group = self.planner.groups.get(name)
            member = (group.members or {}).get(email) if group else None
            lost.append({"group": name, "role": member.role if member else None, "responsibility": member.responsibility if member else None})
        return lost

    def _describe_grant(self, operation: dict[str, Any]) -> None:
        level = operation["scope"]
        target = operation["group"] or operation["organization"]
        role = roles.display(operation["role"], level)
        if operation["resend"]:
            operation["effects"].append(f"sends {operation['email']} a new invitation to {level} {target} as {role}")
        else:
            operation["effects"].append(
                f"invites {operation['email']} to {level} {target} as {role}; access starts when they accept (PENDING until then)"
            )
        _flag(operation, "new_invitation", None)

    def _describe_role_change(self, operation: dict[str, Any], level: str) -> None:
        target = operation["group"] or operation["organization"]
        before = roles.display(operation["precondition"]["role"], level)
        after = roles.display(operation["role"], level)
        pending = " (on the pending invitation)" if operation["precondition"]["invitation_state"] == "PENDING" else ""
        operation["effects"].append(f"changes {operation['email']}'s role in {level} {target} from {before} to {after}{pending}")


def _flag(operation: dict[str, Any], flag: str, text: str | None) -> None:
    if flag not in operation["flags"]:
        operation["flags"].append(flag)
    if text:
        operation["effects"].append(text)


def summarise(operations: list[dict[str, Any]], skipped: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the counts a plan's header carries, for people and for the approval policy."""
    by_action: dict[str, int] = {}
    flags: dict[str, int] = {}
    for operation in operations:
        key = f"{operation['action']} ({operation['scope']})"
        by_action[key] = by_action.get(key, 0) + 1
        for flag in operation["flags"]:
            flags[flag] = flags.get(flag, 0) + 1
    return {
        "operations": len(operations),
        "dangerous": sum(1 for operation in operations if operation["dangerous"]),
        "skipped": len(skipped),
        "by_action": by_action,
        "flags": flags,
        "roles": sorted({operation["role"] for operation in operations if operation["role"]}),
        "people": len({operation["email"] for operation in operations}),
        "groups": sorted({operation["group"] for operation in operations if operation["group"]}),
        "organizations": sorted({operation["organization"] for operation in operations if operation["organization"]}),
        # For the requester check: each group's organization, each organization's id, and the
        # organizations that organization-level operations change.
        "group_organizations": {operation["group"]: operation["organization"] for operation in operations if operation["group"]},
        "organization_ids": {
            operation["organization"]: operation["organization_id"]
            for operation in operations
            if operation["organization"] and operation["organization_id"]
        },
        "organization_scopes": sorted(
            {operation["organization"] for operation in operations if operation["scope"] == "organization"}
        ),
    }


def prepare(
    planner: Planner,
    intents: list[Intent],
    *,
    kind: str,
    source: dict[str, Any],
    request: dict[str, Any],
    operator: dict[str, str],
    profile: str,
    platform_url: str,
    settings: Any,
    notes: Iterable[str] = (),
    check_requester: bool = True,
) -> Draft:
    """Plan `intents` and fill the header: summary, request checks, policy, notes.

    `request` holds the reference, the requester and the request e-mail, when known. The
    requester's roles are checked through the platform when a requester other than the
    operator is named. Raises InvalidRows when any intent is invalid.
    """
    from helpctl.access.approval import check_requester as check, request_flags, second_approver_reasons
    from helpctl.findings import isoformat, utc_now

    draft = planner.plan(intents, str(source.get("label") or source.get("file") or "the request"))
    summary = summarise(draft.operations, draft.skipped)
    request = dict(request)
    requester = request.get("requester")
    if check_requester and requester and requester != operator.get("email") and draft.operations:
        request["requester_check"] = check(planner.reader, requester, summary)
    draft.header = {
        "id": new_plan_id(),
        "kind": kind,
        "created_at": isoformat(utc_now()),
        "profile": profile,
        "platform_url": platform_url,
        "operator": operator,
        "source": source,
        "request": request,
        "summary": summary,
        "policy": {"second_approver_reasons": second_approver_reasons(summary, settings)},
        "warnings": request_flags(request),
        "notes": list(notes),
    }
    return draft


def new_plan_id() -> str:
    from helpctl.cases.store import new_case_id

    return f"plan-{new_case_id()}"


# ---------------------------------------------------------------------------------------------
# The plan file


def default_plan_path(plan_id: str) -> Path:
    return paths.ensure_private_dir(paths.data_dir() / "access") / f"{plan_id}.json"


def companion(plan_path: Path, suffix: str) -> Path:
    """Return a file beside the plan: `companion(p, ".journal.jsonl")` for plan-x.json is plan-x.journal.jsonl."""
    return plan_path.with_name(plan_path.stem + suffix)


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class _Hasher:
    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def add(self, kind: str, value: Any) -> None:
        self._digest.update(kind.encode("ascii") + b":" + canonical(value) + b"\n")

    def value(self) -> str:
        return "sha256:" + self._digest.hexdigest()


def write_plan(
    path: Path,
    header: dict[str, Any],
    operations: Iterable[dict[str, Any]],
    skipped: Iterable[dict[str, Any]],
    approval: dict[str, Any] | None = None,
) -> str:
    """Write a plan atomically (0600), one operation per line; return its content hash."""
    paths.ensure_private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    hasher = _Hasher()
    hasher.add("header", header)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, paths.PRIVATE_FILE_MODE)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(f'{{"format": "{PLAN_FORMAT}", "version": {PLAN_VERSION},\n')
            handle.write('"header": ' + _line(header) + ",\n")
            _write_list(handle, "operations", operations, hasher, "operation")
            _write_list(handle, "skipped", skipped, hasher, "skipped")
            content_hash = hasher.value()
            handle.write(f'"content_hash": "{content_hash}",\n')
            handle.write('"approval": ' + _line(approval) + "}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_folder(path.parent)
    return content_hash


def _line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _write_list(handle: Any, name: str, items: Iterable[dict[str, Any]], hasher: _Hasher, kind: str) -> None:
    handle.write(f'"{name}": [\n')
    first = True
    for item in items:
        hasher.add(kind, item)
        handle.write(("" if first else ",\n") + _line(item))
        first = False
    handle.write("\n],\n" if not first else "],\n")


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class PlanFile:
    """A plan on disk, read as a stream: the header first, then operations one at a time.

    A file in helpctl's one-operation-per-line layout is streamed; any other valid JSON
    layout (say, after a pretty-printer rewrote it) is read whole.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.header: dict[str, Any] = {}
        self.stored_hash: str | None = None
        self.approval: dict[str, Any] | None = None
        self._whole: dict[str, Any] | None = None
        self._load()

    @property
    def id(self) -> str:
        return str(self.header.get("id", self.path.stem))

    def operations(self) -> Iterator[dict[str, Any]]:
        yield from self._items("operations")

    def skipped(self) -> Iterator[dict[str, Any]]:
        yield from self._items("skipped")

    def computed_hash(self) -> str:
        """Recompute the content hash from the file's content (streamed)."""
        hasher = _Hasher()
        hasher.add("header", self.header)
        for operation in self.operations():
            hasher.add("operation", operation)
        for item in self.skipped():
            hasher.add("skipped", item)
        return hasher.value()

    def check_unchanged(self) -> str:
        """Return the content hash; raise PreconditionFailed when the content does not match it."""
        computed = self.computed_hash()
        if computed != self.stored_hash:
            raise PreconditionFailed(
                f"plan {self.path} was edited: its content does not match its content hash",
                hint="plan again from the source; never edit a plan by hand",
            )
        return computed

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as handle:
                first = handle.readline()
                if first.startswith(f'{{"format": "{PLAN_FORMAT}"') and first.rstrip().endswith(","):
                    self._load_streamed(first, handle)
                else:
                    handle.seek(0)
                    self._load_whole(json.load(handle))
        except FileNotFoundError as error:
            raise UsageError(f"plan {self.path} not found", hint="give the path that 'helpctl access plan' printed") from error
        except (ValueError, KeyError, TypeError) as error:
            raise PreconditionFailed(f"plan {self.path} is damaged: {error}", hint="plan again from the source") from error

    def _load_streamed(self, first: str, handle: Any) -> None:
        opening = json.loads(first.rstrip().rstrip(",") + "}")
        self._check_version(opening)
        header_line = handle.readline()
        if not header_line.startswith('"header": '):
            handle.seek(0)
            self._load_whole(json.load(handle))
            return
        self.header = json.loads("{" + header_line.rstrip().rstrip(",") + "}")["header"]
        tail = _tail_lines(self.path, 2)
        self.stored_hash = json.loads("{" + tail[0].rstrip().rstrip(",") + "}")["content_hash"]
        self.approval = json.loads("{" + tail[1].rstrip()[:-1] + "}")["approval"]

    def _load_whole(self, data: dict[str, Any]) -> None:
        self._check_version(data)
        self._whole = data
        self.header = data["header"]
        self.stored_hash = data.get("content_hash")
        self.approval = data.get("approval")

    def _check_version(self, data: dict[str, Any]) -> None:
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"not an access plan (format {data.get('format')!r})")
        if not isinstance(data.get("version"), int) or data["version"] > PLAN_VERSION:
            raise ValueError(f"plan format version {data.get('version')!r} is newer than this helpctl reads ({PLAN_VERSION})")

    def _items(self, section: str) -> Iterator[dict[str, Any]]:
        if self._whole is not None:
            yield from self._whole.get(section) or []
            return
        marker = f'"{section}": ['
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(marker):
                    break
            if line.rstrip().endswith("],"):
                return
            for line in handle:
                text = line.rstrip()
                if text == "],":
                    return
                yield json.loads(text.rstrip(","))


def _tail_lines(path: Path, count: int) -> list[str]:
    """Read the last `count` lines of a file without reading all of it."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        position = handle.tell()
        chunk = b""
        while position > 0 and chunk.count(b"\n") <= count:
            step = min(65536, position)
            position -= step
            handle.seek(position)
            chunk = handle.read(step) + chunk
    lines = [line for line in chunk.decode("utf-8").splitlines() if line.strip()]
    return lines[-count:]


def set_approval(plan: PlanFile, approval: dict[str, Any] | None) -> str:
    """Rewrite the plan with `approval`; return the content hash (unchanged by an approval)."""
    return write_plan(plan.path, plan.header, plan.operations(), plan.skipped(), approval)
