"""Build service clients from the active profile and the engineer's credentials.

Client modules are imported here on demand, so commands that never talk to a service do
not pay for gql, httpx or python-gitlab at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from helpctl import credentials

if TYPE_CHECKING:
    from helpctl.config.settings import Profile


def platform_client(profile: Profile, token: str | None = None) -> Any:
    from helpctl.clients.platform import PlatformClient

    if token is None:
        token = credentials.require(profile.name, "platform", profile.platform.fixed_token).value
    return PlatformClient(profile.platform, token)


def gitlab_client(profile: Profile, token: str | None = None) -> Any:
    from helpctl.clients.gitlab import GitlabClient

    if token is None:
        token = credentials.require(profile.name, "gitlab", profile.gitlab.fixed_token).value
    return GitlabClient(profile.gitlab, token)


def fixed_token(profile: Profile, service: str) -> str | None:
    section = getattr(profile, service, None)
    return getattr(section, "fixed_token", None)
