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


def _token(profile: Profile, service: str) -> str:
    return credentials.require(profile.name, service, fixed_token(profile, service)).value


def mandrill_client(profile: Profile, token: str | None = None) -> Any:
    from helpctl.clients.mandrill import MandrillClient

    return MandrillClient(profile.mandrill, token or _token(profile, "mandrill"))


def bugsnag_client(profile: Profile, token: str | None = None) -> Any:
    from helpctl.clients.bugsnag import BugsnagClient

    return BugsnagClient(profile.bugsnag, token or _token(profile, "bugsnag"))


def mixpanel_client(profile: Profile, token: str | None = None) -> Any:
    """Mixpanel's hourly query budget is counted in one ledger per machine, shared by all cases."""
    from helpctl import paths
    from helpctl.clients.mixpanel import MixpanelClient

    folder = paths.ensure_private_dir(paths.cache_dir() / "mixpanel")
    return MixpanelClient(profile.mixpanel, token or _token(profile, "mixpanel"), ledger_path=folder / f"{profile.name}-ledger.json")


def logrocket_client(profile: Profile, token: str | None = None) -> Any:
    """Return None when no LogRocket key is configured, so that the sessions probe stores a link."""
    from helpctl.clients.logrocket import LogrocketClient

    if token is None:
        found = credentials.find(profile.name, "logrocket", fixed_token(profile, "logrocket"))
        if found is None:
            return None
        token = found.value
    return LogrocketClient(profile.logrocket, token)


def logs_client(profile: Profile) -> Any:
    from helpctl.clients.logs import LogsClient

    return LogsClient(profile.logs)
