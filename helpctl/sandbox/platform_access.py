"""Access-management mutations of the platform stand-in, and generated organizations.

The six mutations follow the platform's 2023 resolvers:

- `grantStakeholderAccess` and `grantStakeholderOrganizationAccess` send an invitation: the
  person is PENDING until they accept. Inviting the same person to the same group or
  organization again within a minute is refused. Inviting someone who already accepted is
  refused too.
- `updateGroupStakeholder` and `updateOrganizationStakeholder` change a role (on a pending
  invitation they change the invitation).
- `removeStakeholderAccess` removes a group membership. With it, the person's last group in
  the organization also removes their organization membership, and their last group anywhere
  removes their account from the platform. `removeStakeholderOrganizationAccess` removes the
  organization membership with every group of that organization, with the same account rule.

Who may grant which role comes from the platform's authorization model. At group level a
user_manager grants user, user_manager and vulnerability_manager, while a customer_manager
grants the Fluid Attacks staff roles and user_manager. Refusals carry the platform's messages.

`AccessDesk` holds the mutation knobs (`mutation_concurrency`: mutations in flight beyond it
get HTTP 429 with Retry-After; `mutation_latency`: seconds each mutation takes), a log of
every mutation request with its outcome, and a test hook. `generate_organization` adds an
organization with many members to a story, for bulk work and benchmarks.

Run alone with `python -m helpctl.sandbox.platform_access --port 8701`: the platform
stand-in with the bigcorp organization, on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from graphql import GraphQLError

from helpctl.sandbox import platform_seed as seed

LOGIN_REQUIRED = "Login required"
ACCESS_DENIED = "Access denied"
GROUP_NOT_FOUND = "Access denied or group not found"
ORGANIZATION_NOT_FOUND = "Access denied or organization not found"
STAKEHOLDER_NOT_FOUND = "Access denied or stakeholder not found"
INVALID_ROLE = "Exception - Invalid role or not enough permissions to grant role: {role}"
FLUID_ONLY_ROLE = "Exception - This role can only be granted to Fluid Attacks users"
FLUID_ONLY_HACKERS = (
    "Exception - Groups with any active Fluid Attacks service can only have Hackers provided by Fluid Attacks"
)
GROUP_ACCESS_EXISTS = "Exception - The stakeholder has been granted access to the group previously"
ORGANIZATION_ACCESS_EXISTS = "Exception - The stakeholder has been granted access to the organization previously"
REINVITE_TOO_SOON = "Exception - The previous invitation to this user was requested less than a minute ago"
CORPORATE_EMAIL_ONLY = "Exception - Only corporate emails are allowed"
INVALID_EMAIL = "Exception - Invalid email address"

# Seconds before the same person may be invited again to the same group or organization.
REINVITE_SECONDS = 60.0
FLUID_DOMAIN = "@fluidattacks.com"
FREE_MAIL_DOMAINS = frozenset({"gmail.com", "hotmail.com", "outlook.com", "yahoo.com", "live.com", "icloud.com"})

GROUP_MANAGE_ACTION = "api_mutations_grant_stakeholder_access_mutate"
ORGANIZATION_MANAGE_ACTION = "api_mutations_grant_stakeholder_organization_access_mutate"

_STAFF_GRANTS = frozenset({"architect", "customer_manager", "hacker", "reattacker", "resourcer", "reviewer", "user_manager"})
_ALL_GROUP_ROLES = frozenset(
    {
        "admin", "architect", "customer_manager", "hacker", "internal_manager", "reattacker", "resourcer",
        "reviewer", "service_forces", "user", "user_manager", "vulnerability_manager",
    }
)
# Roles each group role may grant, from the platform's authorization model.
GROUP_GRANTS: dict[str, frozenset[str]] = {
    "user_manager": frozenset({"user", "user_manager", "vulnerability_manager"}),
    "customer_manager": _STAFF_GRANTS,
    "admin": _ALL_GROUP_ROLES,
}
ORGANIZATION_GRANTS: dict[str, frozenset[str]] = {
    "user_manager": frozenset({"user", "user_manager"}),
    "customer_manager": frozenset({"user_manager", "customer_manager"}),
    "admin": frozenset({"user", "user_manager", "customer_manager"}),
}
# Roles that only Fluid Attacks staff may hold, and the hacker-type roles that groups with
# a Fluid Attacks service accept only from Fluid Attacks.
FLUID_ONLY_ROLES = frozenset({"admin", "architect", "customer_manager", "internal_manager", "service_forces"})
HACKER_ROLES = frozenset({"hacker", "reattacker", "resourcer", "reviewer"})

# Test hook: called with a phase ("received" before the mutation runs, "applied" after it
# ran) and the mutation's record. Returning True at "received" drops the request unapplied.
MutationHook = Callable[[str, dict[str, Any]], bool]


@dataclasses.dataclass
class AccessKnobs:
    mutation_concurrency: int = 0  # mutations in flight beyond this get 429; 0 means no limit
    mutation_latency: float = 0.0  # seconds each mutation takes before it is applied
    mutation_retry_after: float = 1.0  # seconds announced in Retry-After with a 429

    def update(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            setattr(self, name, type(getattr(self, name))(value))


KNOB_NAMES = frozenset(field.name for field in dataclasses.fields(AccessKnobs))


@dataclasses.dataclass
class MutationRecord:
    """One mutation request as the stand-in saw it.

    `outcome` is applied, refused (a GraphQL error), rate_limited (HTTP 429 before it ran)
    or dropped (by the test hook, never applied).
    """

    at: float
    mutation: str
    arguments: dict[str, Any]
    outcome: str
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class AccessDesk:
    """The access-management side of one platform stand-in."""

    def __init__(self, story: seed.Story, clock: Callable[[], float] = time.monotonic) -> None:
        self.story = story
        self.clock = clock
        self.knobs = AccessKnobs()
        self.log: list[MutationRecord] = []
        self.hook: MutationHook | None = None
        self.lock = threading.Lock()
        self._in_flight = 0
        self._started = clock()
        # (scope, group name or organization id, email) -> clock reading of the last invitation
        self._invited: dict[tuple[str, str, str], float] = {}

    # ----- admission, latency and the log -----

    def admit(self) -> bool:
        """Take a mutation slot; False when `mutation_concurrency` mutations are in flight."""
        with self.lock:
            limit = self.knobs.mutation_concurrency
            if limit and self._in_flight >= limit:
                return False
            self._in_flight += 1
            return True

    def release(self) -> None:
        with self.lock:
            self._in_flight -= 1

    def record(self, mutation: str, arguments: dict[str, Any], outcome: str, message: str | None = None) -> None:
        with self.lock:
            self.log.append(MutationRecord(time.time(), mutation, dict(arguments), outcome, message))

    def records(self, outcome: str | None = None) -> list[MutationRecord]:
        with self.lock:
            return [item for item in self.log if outcome is None or item.outcome == outcome]

    def call_hook(self, phase: str, mutation: str, arguments: dict[str, Any]) -> bool:
        hook = self.hook
        if hook is None:
            return False
        return bool(hook(phase, {"mutation": mutation, "arguments": dict(arguments)}))

    def now(self) -> dt.datetime:
        """Return the story's time: its start plus the clock's elapsed seconds."""
        return self.story.now + dt.timedelta(seconds=self.clock() - self._started)

    # ----- invitations -----

    def invite(self, scope: str, target: str, email: str) -> None:
        """Record an invitation, or raise the platform's refusal for one within a minute."""
        key = (scope, target, email)
        moment = self.clock()
        last = self._invited.get(key)
        if last is not None and moment - last < REINVITE_SECONDS:
            raise GraphQLError(REINVITE_TOO_SOON)
        self._invited[key] = moment


# ---------------------------------------------------------------------------------------------
# Resolvers. `info.context` is platform_api's _Context (story, caller, access desk).


def _desk(info: Any) -> AccessDesk:
    return info.context.access


def _check_email(email: str) -> str:
    address = email.strip().lower()
    local, _, domain = address.partition("@")
    if not local or "." not in domain or " " in address:
        raise GraphQLError(INVALID_EMAIL)
    if domain in FREE_MAIL_DOMAINS:
        raise GraphQLError(CORPORATE_EMAIL_ONLY)
    return address


def _managed_group(info: Any, name: str | None) -> tuple[seed.Group, str]:
    """Return the group and the caller's role there, when the caller may manage its members."""
    story: seed.Story = info.context.story
    group = story.groups.get((name or "").strip().lower())
    caller = group.members.get(info.context.caller) if group else None
    if group is None or caller is None:
        raise GraphQLError(GROUP_NOT_FOUND)
    from helpctl.sandbox.platform_api import GROUP_ACTIONS

    if GROUP_MANAGE_ACTION not in GROUP_ACTIONS.get(caller.role, ()) or not group.has_asm:
        raise GraphQLError(ACCESS_DENIED)
    return group, caller.role


def _managed_organization(info: Any, organization_id: str) -> tuple[seed.Organization, str]:
    story: seed.Story = info.context.story
    organization = story.organization_by_id(organization_id.strip())
    caller = organization.members.get(info.context.caller) if organization else None
    if organization is None or caller is None:
        raise GraphQLError(ORGANIZATION_NOT_FOUND)
    from helpctl.sandbox.platform_api import ORGANIZATION_ACTIONS

    if ORGANIZATION_MANAGE_ACTION not in ORGANIZATION_ACTIONS.get(caller.role, ()):
        raise GraphQLError(ACCESS_DENIED)
    return organization, caller.role


def _check_grant(grants: dict[str, frozenset[str]], caller_role: str, role: str, email: str, group: seed.Group | None) -> None:
    if role not in grants.get(caller_role, frozenset()):
        raise GraphQLError(INVALID_ROLE.format(role=role))
    fluid = email.endswith(FLUID_DOMAIN)
    if role in FLUID_ONLY_ROLES and not fluid:
        raise GraphQLError(FLUID_ONLY_ROLE)
    if group is not None and role in HACKER_ROLES and not fluid and (group.has_squad or group.has_machine):
        raise GraphQLError(FLUID_ONLY_HACKERS)


def _ensure_user(story: seed.Story, email: str) -> None:
    if email not in story.users:
        user_role = "hacker" if email.endswith(FLUID_DOMAIN) else "user"
        story.users[email] = seed.User(email, email.split("@")[0].replace(".", " ").title(), user_role)


def _organization_of(story: seed.Story, group: seed.Group) -> seed.Organization:
    return story.organizations[group.organization]


def _pending(desk: AccessDesk, email: str, role: str, responsibility: str | None = None) -> seed.Membership:
    return seed.Membership(email, role, "PENDING", responsibility, invited_at=desk.now())


def grant_group(_root: Any, info: Any, groupName: str, email: str, role: str, responsibility: str | None = None) -> dict[str, Any]:
    desk, story = _desk(info), info.context.story
    group, caller_role = _managed_group(info, groupName)
    address = _check_email(email)
    value = role.lower()
    _check_grant(GROUP_GRANTS, caller_role, value, address, group)

    existing = group.members.get(address)
    if existing is not None and existing.invitation_state != "PENDING":
        raise GraphQLError(GROUP_ACCESS_EXISTS)
    desk.invite("group", group.name, address)

    _ensure_user(story, address)
    group.members[address] = _pending(desk, address, value, (responsibility or "").strip() or "-")
    organization = _organization_of(story, group)
    if address not in organization.members:
        # The platform adds the organization membership with the group's invitation.
        organization.members[address] = _pending(desk, address, "user")
    return {"success": True, "grantedStakeholder": {"email": address}}


def update_group(_root: Any, info: Any, groupName: str, email: str, role: str, responsibility: str) -> dict[str, Any]:
    group, caller_role = _managed_group(info, groupName)
    address = email.strip().lower()
    member = group.members.get(address)
    if member is None:
        raise GraphQLError(STAKEHOLDER_NOT_FOUND)
    value = role.lower()
    _check_grant(GROUP_GRANTS, caller_role, value, address, group)

    member.role = value
    member.responsibility = responsibility.strip() or "-"
    return {"success": True, "modifiedStakeholder": {"email": address}}


def remove_group(_root: Any, info: Any, userEmail: str, groupName: str | None = None) -> dict[str, Any]:
    story: seed.Story = info.context.story
    group, _ = _managed_group(info, groupName)
    address = userEmail.strip().lower()
    if address not in group.members:
        raise GraphQLError(STAKEHOLDER_NOT_FOUND)

    del group.members[address]
    organization = _organization_of(story, group)
    if not any(address in story.groups[name].members for name in organization.groups):
        organization.members.pop(address, None)
    _forget_if_homeless(story, address)
    return {"success": True, "removedEmail": address}


def grant_organization(_root: Any, info: Any, organizationId: str, userEmail: str, role: str) -> dict[str, Any]:
    desk, story = _desk(info), info.context.story
    organization, caller_role = _managed_organization(info, organizationId)
    address = _check_email(userEmail)
    value = role.lower()
    _check_grant(ORGANIZATION_GRANTS, caller_role, value, address, None)

    existing = organization.members.get(address)
    if existing is not None and existing.invitation_state != "PENDING":
        raise GraphQLError(ORGANIZATION_ACCESS_EXISTS)
    desk.invite("organization", organization.id, address)

    _ensure_user(story, address)
    organization.members[address] = _pending(desk, address, value)
    return {"success": True, "grantedStakeholder": {"email": address}}


def update_organization(_root: Any, info: Any, organizationId: str, userEmail: str, role: str) -> dict[str, Any]:
    organization, caller_role = _managed_organization(info, organizationId)
    address = userEmail.strip().lower()
    member = organization.members.get(address)
    if member is None:
        raise GraphQLError(STAKEHOLDER_NOT_FOUND)
    value = role.lower()
    _check_grant(ORGANIZATION_GRANTS, caller_role, value, address, None)

    member.role = value
    return {"success": True, "modifiedStakeholder": {"email": address}}


def remove_organization(_root: Any, info: Any, organizationId: str, userEmail: str) -> dict[str, Any]:
    story: seed.Story = info.context.story
    organization, _ = _managed_organization(info, organizationId)
    address = userEmail.strip().lower()
    if address not in organization.members:
        raise GraphQLError(STAKEHOLDER_NOT_FOUND)

    del organization.members[address]
    for name in organization.groups:
        story.groups[name].members.pop(address, None)
    _forget_if_homeless(story, address)
    return {"success": True}


def _forget_if_homeless(story: seed.Story, email: str) -> None:
    """Remove the account of someone left with no group and no organization anywhere."""
    if any(email in group.members for group in story.groups.values()):
        return
    if any(email in organization.members for organization in story.organizations.values()):
        return
    story.users.pop(email, None)
    for token, owner in list(story.tokens.items()):
        if owner == email:
            del story.tokens[token]


MUTATION_RESOLVERS: dict[str, Callable[..., Any]] = {
    "grantStakeholderAccess": grant_group,
    "updateGroupStakeholder": update_group,
    "removeStakeholderAccess": remove_group,
    "grantStakeholderOrganizationAccess": grant_organization,
    "updateOrganizationStakeholder": update_organization,
    "removeStakeholderOrganizationAccess": remove_organization,
}


def logged_resolver(name: str, resolver: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a mutation resolver so that the desk's log records what it did."""

    def resolve(root: Any, info: Any, **arguments: Any) -> Any:
        desk = _desk(info)
        try:
            answer = resolver(root, info, **arguments)
        except GraphQLError as error:
            desk.record(name, arguments, "refused", error.message)
            raise
        desk.record(name, arguments, "applied")
        return answer

    return resolve


# ---------------------------------------------------------------------------------------------
# Generated organizations

_FIRST_NAMES = (
    "ana", "andres", "camila", "carlos", "daniela", "diego", "elena", "felipe", "gabriela", "hugo",
    "isabel", "javier", "julia", "laura", "lucas", "manuel", "maria", "mateo", "natalia", "oscar",
    "paula", "ricardo", "sara", "tomas", "valentina",
)
_LAST_NAMES = (
    "acosta", "benitez", "castro", "diaz", "escobar", "flores", "garcia", "herrera", "jimenez", "lopez",
    "martinez", "navarro", "ortiz", "perez", "quintero", "ramirez", "suarez", "torres", "vargas", "zapata",
)
_RESPONSIBILITIES = ("Developer", "Developer", "Developer", "QA Analyst", "DevOps Engineer", "Tech Lead")


@dataclasses.dataclass
class OrganizationSpec:
    """An organization to generate: `members` people spread over `groups` groups."""

    name: str
    members: int
    groups: int
    seed: int = 11
    country: str = "Colombia"


def generate_organization(story: seed.Story, spec: OrganizationSpec) -> seed.Organization:
    """Add a deterministic organization to `story` and return it.

    Each person belongs to one group (60 %), two (30 %) or three (10 %). Every group gets one
    or two Group Managers (user_manager), a few Vulnerability Managers and Users; about 8 % of
    memberships are pending invitations. The sandbox engineer is user_manager on every group
    and on the organization, so the engineer's token may manage every member.
    """
    rng = random.Random(f"{spec.name}/{spec.seed}")
    now = story.now
    group_names = [f"{spec.name}{index:03d}" for index in range(1, max(1, spec.groups) + 1)]
    organization = seed.Organization(
        id=f"ORG#{seed.stable_id('organization', spec.name)}",
        name=spec.name,
        country=spec.country,
        inactivity_period=90,
        groups=list(group_names),
    )
    groups = {name: _generated_group(name, spec.name) for name in group_names}

    for number in range(1, spec.members + 1):
        email = _generated_email(number, spec.name)
        story.users[email] = seed.User(email, email.split("@")[0].replace(".", " ").title(), "user")
        count = 1
        if rng.random() >= 0.6:
            count = 2 if rng.random() < 0.75 else 3
        for name in rng.sample(group_names, min(count, len(group_names))):
            groups[name].members[email] = _generated_membership(rng, now, email)
        organization.members[email] = _organization_membership(rng, now, email)

    for group in groups.values():
        _appoint_managers(rng, group)
        group.members[seed.ENGINEER_EMAIL] = _engineer_membership(now, "user_manager")
    organization.members[seed.ENGINEER_EMAIL] = _engineer_membership(now, "user_manager")

    story.groups.update(groups)
    story.organizations[organization.name] = organization
    return organization


def _generated_email(number: int, organization: str) -> str:
    first = _FIRST_NAMES[number % len(_FIRST_NAMES)]
    last = _LAST_NAMES[(number // len(_FIRST_NAMES)) % len(_LAST_NAMES)]
    return f"{first}.{last}{number}@{organization}.example"


def _generated_group(name: str, organization: str) -> seed.Group:
    return seed.Group(
        name=name,
        organization=organization,
        description=f"Generated group {name}",
        service="WHITE",
        subscription="continuous",
        tier="MACHINE",
        has_asm=True,
        has_machine=True,
        has_squad=False,
        open_findings=0,
        open_vulnerabilities=0,
        closed_vulnerabilities=0,
    )


def _generated_membership(rng: random.Random, now: dt.datetime, email: str) -> seed.Membership:
    role = "vulnerability_manager" if rng.random() < 0.05 else "user"
    responsibility = rng.choice(_RESPONSIBILITIES)
    if rng.random() < 0.08:
        invited = now - dt.timedelta(days=rng.uniform(0.5, 20))
        return seed.Membership(email, role, "PENDING", responsibility, invited_at=invited)
    first = now - dt.timedelta(days=rng.uniform(30, 700))
    last = now - dt.timedelta(days=rng.uniform(0, 30))
    return seed.Membership(email, role, "REGISTERED", responsibility, first_login=first, last_login=last)


def _organization_membership(rng: random.Random, now: dt.datetime, email: str) -> seed.Membership:
    role = "user_manager" if rng.random() < 0.03 else "user"
    first = now - dt.timedelta(days=rng.uniform(30, 700))
    return seed.Membership(email, role, "REGISTERED", None, first_login=first, last_login=now - dt.timedelta(days=1))


def _appoint_managers(rng: random.Random, group: seed.Group) -> None:
    registered = [member for member in group.members.values() if member.invitation_state == "REGISTERED"]
    for member in rng.sample(registered, min(len(registered), 1 if rng.random() < 0.5 else 2)):
        member.role = "user_manager"
        member.responsibility = "Product Owner"


def _engineer_membership(now: dt.datetime, role: str) -> seed.Membership:
    return seed.Membership(
        seed.ENGINEER_EMAIL,
        role,
        "REGISTERED",
        "Customer Manager",
        first_login=now - dt.timedelta(days=400),
        last_login=now - dt.timedelta(hours=1),
    )


BIGCORP = OrganizationSpec("bigcorp", members=300, groups=20)


def parse_spec(text: str) -> OrganizationSpec:
    """Read NAME:MEMBERS:GROUPS, as in `bigcorp:300:20`."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0].isalnum() or not parts[0].islower():
        raise ValueError(f"organization spec {text!r} is invalid; write it as name:members:groups, such as bigcorp:300:20")
    return OrganizationSpec(parts[0], int(parts[1]), int(parts[2]))


# ---------------------------------------------------------------------------------------------
# Entry point: the platform stand-in alone, in the foreground.


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the platform stand-in alone on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8701, help="TCP port on 127.0.0.1 (0 picks a free one).")
    parser.add_argument(
        "--organization",
        action="append",
        default=None,
        help="Generated organization as name:members:groups (repeatable; default bigcorp:300:20).",
    )
    parser.add_argument("--knobs", default="{}", help="JSON object of knobs to set at start.")
    arguments = parser.parse_args(argv)

    from helpctl.sandbox.platform_api import PlatformService
    from helpctl.sandbox.server import RunningService

    try:
        specs = [parse_spec(text) for text in arguments.organization or ["bigcorp:300:20"]]
    except ValueError as error:
        parser.error(str(error))
    service = PlatformService(organizations=specs)
    service.apply_knobs(json.loads(arguments.knobs))
    running = RunningService(service, arguments.port).start()
    sys.stdout.write(json.dumps({"url": running.base_url + "/api", "pid": _pid()}) + "\n")
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
    return 0


def _pid() -> int:
    import os

    return os.getpid()


if __name__ == "__main__":
    raise SystemExit(main())
