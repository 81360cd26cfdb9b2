"""The object every command receives: global options, the active profile, the case store.

The profile is loaded on first use, so commands that do not talk to a service (such as
`case list`) never parse YAML profiles.
"""

from __future__ import annotations

import getpass
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from helpctl.errors import HelpctlError, PreconditionFailed, UsageError
from helpctl.output import Output

if TYPE_CHECKING:
    from helpctl.cases.model import Case
    from helpctl.cases.store import CaseStore
    from helpctl.config.settings import Profile

logger = logging.getLogger(__name__)


class App:
    def __init__(self, *, profile_name: str | None, output: Output, no_input: bool = False) -> None:
        self.profile_option = profile_name
        self.output = output
        self.no_input = no_input or not sys.stdin.isatty()
        self._profile: Profile | None = None
        self._store: CaseStore | None = None
        self._announced = False

    @property
    def profile_name(self) -> str:
        from helpctl.config.profiles import active_profile_name

        return active_profile_name(self.profile_option)

    @property
    def profile(self) -> Profile:
        if self._profile is None:
            from helpctl.config.profiles import load_profile

            self._profile = load_profile(self.profile_option)
        return self._profile

    def check_profile_exists(self) -> None:
        """Fail early on a mistyped --profile, even in commands that never load it."""
        from helpctl.config.profiles import profile_paths

        name = self.profile_name
        available = profile_paths()
        if name not in available:
            from helpctl.errors import ConfigError

            raise ConfigError(f"profile {name!r} not found (available: {', '.join(sorted(available))})", hint="see 'helpctl profile list'")

    def announce_profile(self) -> None:
        """Say which profile a command that talks to services runs under (once, on stderr)."""
        if not self._announced:
            self._announced = True
            where = "sandbox on 127.0.0.1" if self.profile.is_sandbox else self.profile.platform.url
            self.output.info(f"profile: {self.profile.name} ({where})")

    @property
    def cases_root(self) -> Path:
        """The store's folder, known without loading the store and the case model."""
        if self._store is not None:
            return self._store.root
        from helpctl import paths

        return paths.cases_dir()

    @property
    def store(self) -> CaseStore:
        if self._store is None:
            from helpctl.cases.store import CaseStore

            self._store = CaseStore()
        return self._store

    @property
    def actor(self) -> str:
        """The engineer named in the profile; the OS user when the profile names nobody."""
        engineer = self.profile.engineer
        if engineer.email:
            return engineer.email
        return engineer.name or getpass.getuser()

    def check_case_profile(self, case: Case, cross_profile: bool) -> None:
        """Refuse to run a case under a profile other than the one it was opened with."""
        if case.profile == self.profile.name or cross_profile:
            return
        raise PreconditionFailed(
            f"case {case.id} was opened under profile {case.profile!r}, not {self.profile.name!r}",
            hint=f"use --profile {case.profile}, or --cross-profile if you mean to mix them",
        )

    def confirm(self, question: str, assume_yes: bool = False) -> None:
        """Ask for confirmation; without a terminal (or with --no-input) require --yes."""
        if assume_yes:
            return
        if self.no_input:
            raise UsageError(f"confirmation needed: {question}", hint="rerun with --yes")

        import typer

        if not typer.confirm(question, default=False, err=True):
            raise HelpctlError("cancelled at the confirmation prompt", hint="nothing was changed")
