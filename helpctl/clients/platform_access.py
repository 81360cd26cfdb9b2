"""The platform's access-management mutations, sent through a PlatformClient and never retried.

Argument names follow the platform's schema, which is not consistent: the group grant and
update take `email`, while the group removal and every organization mutation take
`userEmail`. Roles are sent as the uppercase enum values (`USER_MANAGER`), and an
organization is named by its id (`ORG#<uuid>`), never by its name.

PlatformClient never retries a mutation, and neither does this module. Every call ends in
one of four ways, so that the caller can decide what to do next:

- it returns: the platform applied the change;
- `MutationRefused`: the platform responded and did not apply it (permission, role, the
  one-minute re-invite rule, ...), with the platform's message and a `reason`;
- `RateLimited`: HTTP 429 or the platform's "Too many requests": not applied, and worth
  another attempt after `retry_after` seconds;
- `OutcomeUnknown`: no usable response (timeout, HTTP 5xx, a dropped connection), so the
  change may or may not have happened. Only reading the platform's state can tell.

`AuthError` (the token was rejected) passes through unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from helpctl.errors import RateLimited, ServiceError

if TYPE_CHECKING:
    from helpctl.clients.platform import PlatformClient, PlatformResult

logger = logging.getLogger(__name__)

SERVICE = "platform"

REINVITE_TOO_SOON = "Exception - The previous invitation to this user was requested less than a minute ago"
TOO_MANY_REQUESTS = "Exception - Too many requests"

# Refusal reasons, matched on the platform's messages in this order.
REFUSAL_REASONS: tuple[tuple[str, str], ...] = (
    ("requested less than a minute ago", "reinvite_too_soon"),
    ("granted access to the group previously", "already_member"),
    ("granted access to the organization previously", "already_member"),
    ("not enough permissions to grant role", "role_not_grantable"),
    ("can only be granted to fluid attacks users", "role_not_grantable"),
    ("can only have hackers provided by fluid attacks", "role_not_grantable"),
    ("stakeholder not found", "not_member"),
    ("group not found", "group_not_found"),
    ("organization not found", "organization_not_found"),
    ("only corporate emails are allowed", "invalid_email"),
    ("invalid email", "invalid_email"),
    ("access denied", "permission"),
)

GRANT_GROUP = """mutation HelpctlGrantGroupAccess(
  $group: String!, $email: String!, $role: StakeholderRole!, $responsibility: String
) {
  grantStakeholderAccess(groupName: $group, email: $email, role: $role, responsibility: $responsibility) {
    success
  }
}"""

UPDATE_GROUP = """mutation HelpctlUpdateGroupAccess(
  $group: String!, $email: String!, $role: StakeholderRole!, $responsibility: String!
) {
  updateGroupStakeholder(groupName: $group, email: $email, role: $role, responsibility: $responsibility) {
    success
  }
}"""

REMOVE_GROUP = """mutation HelpctlRemoveGroupAccess($group: String!, $email: String!) {
  removeStakeholderAccess(groupName: $group, userEmail: $email) { success }
}"""

GRANT_ORGANIZATION = """mutation HelpctlGrantOrganizationAccess(
  $organization: String!, $email: String!, $role: OrganizationRole!
) {
  grantStakeholderOrganizationAccess(organizationId: $organization, userEmail: $email, role: $role) { success }
}"""

UPDATE_ORGANIZATION = """mutation HelpctlUpdateOrganizationAccess(
  $organization: String!, $email: String!, $role: OrganizationRole!
) {
  updateOrganizationStakeholder(organizationId: $organization, userEmail: $email, role: $role) { success }
}"""

REMOVE_ORGANIZATION = """mutation HelpctlRemoveOrganizationAccess($organization: String!, $email: String!) {
  removeStakeholderOrganizationAccess(organizationId: $organization, userEmail: $email) { success }
}"""


class MutationRefused(ServiceError):
    """The platform responded and did not apply the change. `reason` is one of the REFUSAL_REASONS
    values, or "refused" for a message this module does not know."""

    kind = "refused"

    def __init__(self, message: str, *, reason: str, platform_message: str, status: int | None = None) -> None:
        super().__init__(message, service=SERVICE, status=status)
        self.reason = reason
        self.platform_message = platform_message


class OutcomeUnknown(ServiceError):
    """No usable response came back, so the change may or may not have been applied."""

    kind = "outcome_unknown"


@dataclasses.dataclass(frozen=True)
class _Mutation:
    document: str
    operation: str
    field: str


_MUTATIONS = {
    ("grant", "group"): _Mutation(GRANT_GROUP, "HelpctlGrantGroupAccess", "grantStakeholderAccess"),
    ("set-role", "group"): _Mutation(UPDATE_GROUP, "HelpctlUpdateGroupAccess", "updateGroupStakeholder"),
    ("revoke", "group"): _Mutation(REMOVE_GROUP, "HelpctlRemoveGroupAccess", "removeStakeholderAccess"),
    ("grant", "organization"): _Mutation(
        GRANT_ORGANIZATION, "HelpctlGrantOrganizationAccess", "grantStakeholderOrganizationAccess"
    ),
    ("set-role", "organization"): _Mutation(
        UPDATE_ORGANIZATION, "HelpctlUpdateOrganizationAccess", "updateOrganizationStakeholder"
    ),
    ("revoke", "organization"): _Mutation(
        REMOVE_ORGANIZATION, "HelpctlRemoveOrganizationAccess", "removeStakeholderOrganizationAccess"
    ),
}


def refusal_reason(message: str) -> str:
    lowered = message.lower()
    for fragment, reason in REFUSAL_REASONS:
        if fragment in lowered:
            return reason
    return "refused"


class AccessMutations:
    """The six access mutations over one PlatformClient. Safe to share between threads."""

    def __init__(self, client: PlatformClient) -> None:
        self.client = client

    def grant_group(self, group: str, email: str, role: str, responsibility: str | None = None) -> None:
        """Invite `email` to `group` with the StakeholderRole enum value `role`."""
        variables = {"group": group, "email": email, "role": role, "responsibility": responsibility}
        self._send("grant", "group", variables)

    def update_group(self, group: str, email: str, role: str, responsibility: str) -> None:
        """Change a member's role; the platform requires the responsibility here ("-" for none)."""
        variables = {"group": group, "email": email, "role": role, "responsibility": responsibility or "-"}
        self._send("set-role", "group", variables)

    def remove_group(self, group: str, email: str) -> None:
        self._send("revoke", "group", {"group": group, "email": email})

    def grant_organization(self, organization_id: str, email: str, role: str) -> None:
        """Invite `email` to the organization `organization_id` (ORG#<uuid>) with an OrganizationRole."""
        self._send("grant", "organization", {"organization": organization_id, "email": email, "role": role})

    def update_organization(self, organization_id: str, email: str, role: str) -> None:
        self._send("set-role", "organization", {"organization": organization_id, "email": email, "role": role})

    def remove_organization(self, organization_id: str, email: str) -> None:
        self._send("revoke", "organization", {"organization": organization_id, "email": email})

    def _send(self, action: str, scope: str, variables: dict[str, Any]) -> None:
        from helpctl.clients.platform import PlatformQueryError
        from helpctl.errors import ServiceTimeout

        mutation = _MUTATIONS[(action, scope)]
        try:
            result = self.client.execute(mutation.document, variables, mutation.operation)
        except PlatformQueryError as error:
            # HTTP 4xx with GraphQL errors: the document was rejected before it ran.
            message = "; ".join(error.messages) or error.message
            raise MutationRefused(
                f"platform rejected {mutation.field}: {message}",
                reason="rejected_request",
                platform_message=message,
                status=error.status,
            ) from error
        except (RateLimited, MutationRefused):
            raise
        except ServiceTimeout as error:
            raise OutcomeUnknown(f"{mutation.field} timed out: {error.message}", service=SERVICE) from error
        except ServiceError as error:
            # A 4xx other than 429 is a deterministic response (endpoint missing, request rejected).
            if error.status is not None and 400 <= error.status < 500:
                raise
            raise OutcomeUnknown(
                f"{mutation.field} got no usable response: {error.message}", service=SERVICE, status=error.status
            ) from error
        _check_result(mutation, result)


def _check_result(mutation: _Mutation, result: PlatformResult) -> None:
    messages = [error.message for error in result.errors]
    if any(TOO_MANY_REQUESTS.lower() in message.lower() for message in messages):
        raise RateLimited(f"platform throttled {mutation.field}: {TOO_MANY_REQUESTS}", service=SERVICE, status=result.status)

    if messages:
        message = messages[0]
        raise MutationRefused(
            f"platform rejected {mutation.field}: {message}",
            reason=refusal_reason(message),
            platform_message=message,
            status=result.status,
        )

    payload = result.field(mutation.field)
    if not isinstance(payload, dict):
        raise OutcomeUnknown(f"platform returned no {mutation.field} payload", service=SERVICE, status=result.status)
    if payload.get("success") is not True:
        raise MutationRefused(
            f"platform returned success {payload.get('success')!r} for {mutation.field}",
            reason="refused",
            platform_message="success: false",
            status=result.status,
        )
    logger.debug("platform applied %s", mutation.field)
