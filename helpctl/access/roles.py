"""Role names for access changes: the platform's enums, the names people use, and manager roles.

The platform reads roles as uppercase enum values (`USER_MANAGER`) and returns them as
lowercase values (`user_manager`). Its public documentation renamed the client roles
(User Manager became Group Manager at group level and Organization Manager at organization
level), while no public schema shows the renamed enum values. `RoleCatalog` therefore
resolves a name against the enum values that introspection returned, so "Group Manager",
"group manager", "USER_MANAGER" and "user_manager" all reach the value the platform has.
"""

from __future__ import annotations

import dataclasses
import re

LEVELS = ("group", "organization")

# Lowercase values of the client roles that manage members, at each level.
MANAGER_ROLES: dict[str, frozenset[str]] = {
    "group": frozenset({"user_manager", "group_manager"}),
    "organization": frozenset({"user_manager", "organization_manager"}),
}

# Inputs the platform still maps to current roles (CUSTOMER → user, CUSTOMERADMIN → user_manager).
LEGACY_NAMES = {"CUSTOMER": "USER", "CUSTOMERADMIN": "USER_MANAGER"}


def enum_name(value: str) -> str:
    """Return the enum spelling of a role value: "user_manager" → "USER_MANAGER"."""
    return value.strip().upper()


def value_name(role: str) -> str:
    """Return the lowercase value the platform returns for a role: "USER_MANAGER" → "user_manager"."""
    return role.strip().lower()


def is_manager(role: str | None, level: str) -> bool:
    return bool(role) and value_name(role or "") in MANAGER_ROLES[level]


def display(role: str | None, level: str = "group") -> str:
    """Return the name people read: "user_manager" → "Group Manager" (at group level)."""
    if not role:
        return "-"
    from helpctl.clients.platform import role_display

    return role_display(value_name(role), level)


def label(role: str | None, level: str = "group") -> str:
    """Return the display name with the enum value: "Group Manager (USER_MANAGER)"."""
    if not role:
        return "-"
    return f"{display(role, level)} ({enum_name(role)})"


@dataclasses.dataclass
class RoleCatalog:
    """The role enums of one platform: `enums["group"]` (StakeholderRole) and `enums["organization"]`."""

    enums: dict[str, list[str]]

    @classmethod
    def from_client(cls, client: object) -> RoleCatalog:
        """Read the enums through a PlatformClient (introspection, cached per endpoint)."""
        return cls(client.role_enums())  # type: ignore[attr-defined]

    def resolve(self, text: str, level: str) -> str:
        """Return the enum value for a role written as a display name or an enum name.

        Raises ValueError naming the valid roles when `text` is no role at that level.
        """
        from helpctl.clients.platform import RENAMED_ROLES

        if level not in LEVELS:
            raise ValueError(f"role level {level!r} is invalid; use group or organization")
        key = re.sub(r"[\s\-]+", "_", text.strip()).upper()
        if not key:
            raise ValueError("the role is empty")
        key = LEGACY_NAMES.get(key, key)

        values = self.enums.get(level, [])
        for candidate in RENAMED_ROLES[level].get(key, (key,)):
            if candidate in values:
                return candidate
        raise ValueError(f"role {text.strip()!r} does not exist at {level} level; valid roles: {self.describe(level)}")

    def describe(self, level: str) -> str:
        return ", ".join(label(value, level) for value in self.enums.get(level, []))
