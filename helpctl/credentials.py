"""Service tokens: where they come from, and how they are kept out of every output.

Lookup order: the environment variable `HELPCTL_<SERVICE>_TOKEN`, then the OS keyring
(entry `helpctl` / `<profile>:<service>`), then a 0600 file under the config folder that
exists only if the engineer opted in with `auth login --store file`, then a profile's
`fixed_token` (allowed for loopback sandbox services only). Every token found is
registered with `mask()`, which the CLI's log filter and error boundary apply.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from pathlib import Path

from helpctl import paths
from helpctl.errors import AuthError, HelpctlError

KEYRING_SERVICE = "helpctl"
SERVICES = ("platform", "gitlab", "mandrill", "bugsnag", "mixpanel", "logrocket")

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class Credential:
    service: str
    source: str
    value: str = dataclasses.field(repr=False)


class KeyringUnavailable(HelpctlError):
    kind = "keyring"


def environment_variable(service: str) -> str:
    return f"HELPCTL_{service.upper()}_TOKEN"


def register_secret(value: str | None) -> None:
    if value and len(value) >= 6:
        with _secrets_lock:
            _secrets.add(value)


def mask(text: str) -> str:
    """Replace every registered secret, and anything shaped like a bearer token, by '***'."""
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, "***")
    return _BEARER.sub(r"\1***", text)


_BEARER = re.compile(r"((?:Bearer|token|PRIVATE-TOKEN:?)\s+)[A-Za-z0-9._~+/=-]{12,}", re.IGNORECASE)


def secrets_file(profile: str, service: str) -> Path:
    return paths.config_dir() / "secrets" / f"{profile}-{service}.token"


def keyring_entry(profile: str, service: str) -> str:
    return f"{profile}:{service}"


def keyring_backend():
    """Return the keyring module when a usable backend exists, else raise KeyringUnavailable."""
    import keyring
    import keyring.backends.fail

    try:
        backend = keyring.get_keyring()
    except Exception as error:  # keyring raises many types while choosing a backend
        raise KeyringUnavailable(f"the OS keyring failed to load: {error}") from error

    names = {type(backend).__module__}
    chained = getattr(backend, "backends", None)
    if chained is not None and not chained:
        names.add("keyring.backends.fail")
    if isinstance(backend, keyring.backends.fail.Keyring) or "keyring.backends.fail" in names:
        raise KeyringUnavailable("no OS keyring backend is available on this machine")
    return keyring


def find(profile: str, service: str, fixed_token: str | None = None) -> Credential | None:
    """Look a token up in the documented order; None when there is none."""
    value = os.environ.get(environment_variable(service), "").strip()
    if value:
        register_secret(value)
        return Credential(service, f"environment ({environment_variable(service)})", value)

    value = _from_keyring(profile, service)
    if value:
        register_secret(value)
        return Credential(service, "keyring", value)

    path = secrets_file(profile, service)
    if path.is_file():
        value = path.read_text(encoding="utf-8").strip()
        if value:
            register_secret(value)
            return Credential(service, f"file ({path})", value)

    if fixed_token:
        return Credential(service, "profile (sandbox's public token)", fixed_token)
    return None


def _from_keyring(profile: str, service: str) -> str | None:
    try:
        keyring = keyring_backend()
        return keyring.get_password(KEYRING_SERVICE, keyring_entry(profile, service))
    except KeyringUnavailable:
        return None
    except Exception:  # a locked or broken keyring is treated as holding nothing
        return None


def require(profile: str, service: str, fixed_token: str | None = None) -> Credential:
    credential = find(profile, service, fixed_token)
    if credential is None:
        raise AuthError(
            f"no {service} token for profile {profile!r}",
            hint=f"run 'helpctl auth login {service}' or set {environment_variable(service)}",
        )
    return credential


def store(profile: str, service: str, token: str, where: str) -> str:
    """Save a token in the keyring or, when the engineer chose it, in a 0600 file."""
    register_secret(token)
    if where == "file":
        path = secrets_file(profile, service)
        paths.ensure_private_dir(path.parent)
        from helpctl.cases.store import write_private_file

        write_private_file(path, token.encode("utf-8"))
        return f"file ({path})"

    try:
        keyring = keyring_backend()
    except KeyringUnavailable as error:
        raise KeyringUnavailable(
            error.message,
            hint=(
                f"set {environment_variable(service)} instead, install a backend such as keyrings.alt "
                "(or choose one with PYTHON_KEYRING_BACKEND), or rerun with '--store file' "
                "to keep the token in a 0600 file"
            ),
        ) from error
    keyring.set_password(KEYRING_SERVICE, keyring_entry(profile, service), token)
    return "keyring"


def forget(profile: str, service: str) -> list[str]:
    removed = []
    path = secrets_file(profile, service)
    if path.exists():
        path.unlink()
        removed.append(f"file ({path})")
    try:
        keyring = keyring_backend()
        if keyring.get_password(KEYRING_SERVICE, keyring_entry(profile, service)):
            keyring.delete_password(KEYRING_SERVICE, keyring_entry(profile, service))
            removed.append("keyring")
    except KeyringUnavailable:
        pass
    return removed
