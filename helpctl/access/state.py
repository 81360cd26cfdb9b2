"""Read who has which access, from the platform, for planning, checking and showing.

`StateReader` wraps a PlatformClient with the three reads access changes need:

- a group's members (role, responsibility, invitation state, logins), with the operator's
  own role and permissions there;
- an organization's members with the groups each can access, and its groups;
- one person at one group or organization, to settle an operation whose outcome is unknown.

Every query stays within the platform's limits (3 root fields, depth 8, 3000 characters).
Roles come back as lowercase values (`user_manager`). A listing the operator may not read
is returned with `members` None and the platform's message in `denied`, not raised, because
planning can go on with less certainty and reports it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from helpctl.errors import NotFound, ServiceError

if TYPE_CHECKING:
    from helpctl.clients.platform import PlatformClient, PlatformResult

logger = logging.getLogger(__name__)

SERVICE = "platform"
GROUP_NOT_FOUND = "Access denied or group not found"
ORGANIZATION_NOT_FOUND = "Access denied or organization not found"
STAKEHOLDER_NOT_FOUND = "Access denied or stakeholder not found"
MANAGE_GROUP_MEMBERS = "api_mutations_grant_stakeholder_access_mutate"
MANAGE_ORGANIZATION_MEMBERS = "api_mutations_grant_stakeholder_organization_access_mutate"
# Roles that manage members, used when the platform returns no permissions.
MANAGING_ROLES = frozenset({"user_manager", "group_manager", "organization_manager", "customer_manager", "admin"})
NEVER = frozenset({"", "-"})
DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d")

MEMBER_FIELDS = "email role responsibility invitationState firstLogin lastLogin"

GROUP_QUERY = """query HelpctlAccessGroup($group: String!) {
  group(groupName: $group) {
    name organization userRole permissions
    stakeholders { %(fields)s }
  }
}"""

ORGANIZATION_FIELDS = """id name userRole permissions groups { name }
    stakeholders { %s }"""
PERSON_GROUPS = " groups { name organization }"

ORGANIZATION_BY_NAME_QUERY = """query HelpctlAccessOrganization($name: String!) {
  organizationId(organizationName: $name) { %s }
}"""

ORGANIZATION_BY_ID_QUERY = """query HelpctlAccessOrganizationById($id: String!) {
  organization(organizationId: $id) { %s }
}"""

GROUP_MEMBER_QUERY = """query HelpctlAccessGroupMember($group: String!, $email: String!) {
  stakeholder(entity: GROUP, groupName: $group, userEmail: $email) { %(fields)s }
}"""

ORGANIZATION_MEMBER_QUERY = """query HelpctlAccessOrganizationMember($organization: String!, $email: String!) {
  stakeholder(entity: ORGANIZATION, organizationId: $organization, userEmail: $email) {
    email role responsibility invitationState firstLogin lastLogin
  }
}"""


@dataclasses.dataclass(slots=True)
class Member:
    """One person's access at one group or organization. `role` is the lowercase value."""

    email: str
    role: str
    invitation_state: str | None = None
    responsibility: str | None = None
    first_login: str | None = None
    last_login: str | None = None
    invitation_date: str | None = None
    # Organization listings only: the person's groups in this organization, and how many
    # groups of other organizations the platform listed for them.
    groups: tuple[str, ...] | None = None
    groups_elsewhere: int = 0

    @property
    def pending(self) -> bool:
        return self.invitation_state == "PENDING"

    def snapshot(self) -> dict[str, Any]:
        """Return the fields a plan records as an operation's precondition."""
        return {
            "member": True,
            "role": self.role,
            "invitation_state": self.invitation_state,
            "responsibility": self.responsibility,
        }

    def pending_days(self, now: dt.datetime) -> float | None:
        """Return the days an invitation has been pending, when the platform gave its date."""
        if not self.pending:
            return None
        sent = parse_date(self.invitation_date)
        if sent is None:
            return None
        return max(0.0, (now - sent).total_seconds() / 86400)


ABSENT: dict[str, Any] = {"member": False, "role": None, "invitation_state": None, "responsibility": None}


@dataclasses.dataclass
class GroupState:
    name: str
    organization: str  # the organization's name
    user_role: str | None
    permissions: frozenset[str]
    members: dict[str, Member] | None  # None when the listing was denied
    denied: str | None = None

    @property
    def operator_can_manage(self) -> bool:
        if self.permissions:
            return MANAGE_GROUP_MEMBERS in self.permissions
        return (self.user_role or "") in MANAGING_ROLES


@dataclasses.dataclass
class OrganizationState:
    id: str
    name: str
    user_role: str | None
    permissions: frozenset[str]
    groups: list[str]
    members: dict[str, Member] | None
    denied: str | None = None

    @property
    def operator_can_manage(self) -> bool:
        if self.permissions:
            return MANAGE_ORGANIZATION_MEMBERS in self.permissions
        return (self.user_role or "") in MANAGING_ROLES


def parse_date(value: str | None) -> dt.datetime | None:
    """Parse the platform's date strings ("2025-03-01 12:00:00", ISO 8601); None for "-" or junk."""
    if value is None or value.strip() in NEVER:
        return None
    text = value.strip()
    for pattern in DATE_FORMATS:
        try:
            moment = dt.datetime.strptime(text, pattern)
        except ValueError:
            continue
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
    return None


class StateReader:
    """The access reads over one PlatformClient. Safe to share between threads."""

    def __init__(self, client: PlatformClient) -> None:
        self.client = client
        self._fields: str | None = None

    def member_fields(self) -> str:
        """Return the Stakeholder fields to ask for; invitationDate only where the schema has it."""
        if self._fields is None:
            extra = " invitationDate" if "invitationDate" in self.client.stakeholder_fields() else ""
            self._fields = MEMBER_FIELDS + extra
        return self._fields

    def group(self, name: str) -> GroupState:
        """Read a group and its members. Raises NotFound when the group does not exist for the operator."""
        result = self.client.execute(GROUP_QUERY % {"fields": self.member_fields()}, {"group": name}, "HelpctlAccessGroup")
        data = result.field("group")
        messages = [error.message for error in result.errors_for("group")]
        if (not isinstance(data, dict) or not data.get("name")) and messages and GROUP_NOT_FOUND not in messages:
            # The group exists, but some of its fields are denied (a plan without the service),
            # and the platform nulls the whole group for a missing required field.
            return GroupState(name, "", None, frozenset(), None, denied="; ".join(dict.fromkeys(messages)))
        if not isinstance(data, dict) or not data.get("name"):
            raise NotFound(f"group {name!r} not found, or the token has no access to it: {_messages(result)}", service=SERVICE)

        listing = data.get("stakeholders")
        members = None
        denied = None
        if isinstance(listing, list):
            members = {member.email: member for member in (_member(item) for item in listing) if member is not None}
        else:
            denied = _messages(result, "group") or "the platform returned no members"
        return GroupState(
            name=str(data["name"]),
            organization=str(data.get("organization") or ""),
            user_role=data.get("userRole"),
            permissions=frozenset(data.get("permissions") or ()),
            members=members,
            denied=denied,
        )

    def organization(self, reference: str, with_groups: bool = True) -> OrganizationState:
        """Read an organization by name or by id (ORG#<uuid>) with its members.

        `with_groups` also reads each member's groups, which planning needs to see who
        leaves the organization; checking preconditions does without.
        """
        person = self.member_fields().replace(" responsibility", "") + (PERSON_GROUPS if with_groups else "")
        fields = ORGANIZATION_FIELDS % person
        if reference.upper().startswith("ORG#"):
            result = self.client.execute(ORGANIZATION_BY_ID_QUERY % fields, {"id": reference}, "HelpctlAccessOrganizationById")
            data = result.field("organization")
        else:
            document = ORGANIZATION_BY_NAME_QUERY % fields
            result = self.client.execute(document, {"name": reference.lower()}, "HelpctlAccessOrganization")
            data = result.field("organizationId")
        if not isinstance(data, dict) or not data.get("id"):
            raise NotFound(
                f"organization {reference!r} not found, or the token has no access to it: {_messages(result)}",
                service=SERVICE,
            )

        name = str(data.get("name") or "")
        listing = data.get("stakeholders")
        members = None
        denied = None
        if isinstance(listing, list):
            members = {}
            for item in listing:
                member = _member(item, organization=name if with_groups else None)
                if member is not None:
                    members[member.email] = member
        else:
            denied = _messages(result) or "the platform returned no members"
        groups = [str(group["name"]) for group in data.get("groups") or [] if isinstance(group, dict) and group.get("name")]
        return OrganizationState(
            id=str(data["id"]),
            name=name,
            user_role=data.get("userRole"),
            permissions=frozenset(data.get("permissions") or ()),
            groups=groups,
            members=members,
            denied=denied,
        )

    def member(self, scope: str, target: str, email: str) -> Member | None:
        """Read one person at a group (by name) or organization (by id); None when they are no member.

        Raises ServiceError when the platform responds with another error.
        """
        if scope == "group":
            document = GROUP_MEMBER_QUERY % {"fields": self.member_fields()}
            result = self.client.execute(document, {"group": target, "email": email}, "HelpctlAccessGroupMember")
        else:
            variables = {"organization": target, "email": email}
            result = self.client.execute(ORGANIZATION_MEMBER_QUERY, variables, "HelpctlAccessOrganizationMember")

        data = result.field("stakeholder")
        if isinstance(data, dict):
            return _member(data)
        messages = [error.message for error in result.errors]
        if STAKEHOLDER_NOT_FOUND in messages:
            return None
        raise ServiceError(
            f"could not read {email} at {scope} {target}: {'; '.join(messages) or 'no data'}", service=SERVICE
        )


def _member(item: Any, organization: str | None = None) -> Member | None:
    if not isinstance(item, dict) or not item.get("email"):
        return None
    member = Member(
        email=str(item["email"]).strip().lower(),
        role=str(item.get("role") or "").lower(),
        invitation_state=item.get("invitationState"),
        responsibility=item.get("responsibility"),
        first_login=item.get("firstLogin"),
        last_login=item.get("lastLogin"),
        invitation_date=item.get("invitationDate"),
    )
    if organization is not None and isinstance(item.get("groups"), list):
        here: list[str] = []
        elsewhere = 0
        for group in item["groups"]:
            if not isinstance(group, dict) or not group.get("name"):
                continue
            if group.get("organization") in (None, organization):
                here.append(str(group["name"]))
            else:
                elsewhere += 1
        member.groups = tuple(sorted(here))
        member.groups_elsewhere = elsewhere
    return member


def _messages(result: PlatformResult, root: str | None = None) -> str:
    errors = result.errors_for(root) if root else result.errors
    return "; ".join(dict.fromkeys(error.message for error in errors))
