"""Shared set-up for the access tests: the platform stand-in, a real client, plans and approvals.

It contains no tests itself, and its name only lets the other access test modules import it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpctl.access import approval, plan
from helpctl.access.roles import RoleCatalog
from helpctl.access.state import StateReader
from helpctl.cases.store import CaseStore
from helpctl.clients.platform import PlatformClient
from helpctl.clients.platform_access import AccessMutations
from helpctl.config.settings import AccessSettings, PlatformSettings, Timeouts
from helpctl.sandbox.platform_api import PlatformService
from helpctl.sandbox.server import RunningService

NOW = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.timezone.utc)
ENGINEER = "support.sandbox@fluidattacks.com"
ENGINEER_TOKEN = "sandbox-platform-token"
KIWICORP = "ORG#6c1f2f4e-2b7a-4c8e-9a51-3d0e5b7f9a10"
OPERATOR = approval.Operator(ENGINEER, "Sandra Soporte")


class Clock:
    """A settable monotonic clock."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def start_service(**options: Any) -> RunningService:
    return RunningService(PlatformService(now=NOW, bigcorp=True, **options)).start()


@pytest.fixture
def running() -> Iterator[RunningService]:
    service = start_service()
    try:
        yield service
    finally:
        service.stop()


def make_client(running: RunningService, read: float = 5.0, retries: int = 2) -> PlatformClient:
    settings = PlatformSettings(url=running.base_url + "/api", timeouts=Timeouts(connect=1.0, read=read, total=10.0), retries=retries)
    return PlatformClient(settings, ENGINEER_TOKEN, sleep=lambda _seconds: None)


def access_settings(**overrides: Any) -> AccessSettings:
    values: dict[str, Any] = {"max_concurrency": 16, "initial_concurrency": 2, "settle_delay": 0.0, "second_approver_above": 0}
    values.update(overrides)
    return AccessSettings(**values)


@dataclasses.dataclass
class Kit:
    """What a test needs to plan, approve and apply against one running stand-in."""

    running: RunningService
    client: PlatformClient
    reader: StateReader
    catalog: RoleCatalog
    store: CaseStore
    folder: Path
    settings: AccessSettings

    @property
    def service(self) -> PlatformService:
        return self.running.service  # type: ignore[return-value]

    def planner(self) -> plan.Planner:
        return plan.Planner(self.reader, self.catalog, ENGINEER)

    def draft(self, intents: list[plan.Intent], request: dict[str, Any] | None = None) -> plan.Draft:
        return plan.prepare(
            self.planner(),
            intents,
            kind="bulk",
            source={"label": "test"},
            request=request or {},
            operator=OPERATOR.as_dict(),
            profile="sandbox",
            platform_url=self.client.url,
            settings=self.settings,
        )

    def write(self, intents: list[plan.Intent], name: str = "plan.json", request: dict[str, Any] | None = None) -> Path:
        draft = self.draft(intents, request)
        path = self.folder / name
        plan.write_plan(path, draft.header, draft.operations, draft.skipped)
        return path

    def approve(self, path: Path, by: str = "Jorge Mesa", ref: str = "ticket 1", **options: Any) -> dict[str, Any]:
        return approval.approve(
            plan.PlanFile(path),
            by=by,
            ref=ref,
            operator=OPERATOR,
            settings=self.settings,
            store=self.store,
            profile="sandbox",
            reader=self.reader,
            **options,
        )

    def mutations(self) -> AccessMutations:
        return AccessMutations(self.client)

    def member(self, group: str, email: str) -> Any:
        return self.service.story.groups[group].members.get(email)

    def applied(self) -> list[Any]:
        return self.service.access.records("applied")


def make_kit(running: RunningService, tmp_path: Path, **settings: Any) -> Kit:
    client = make_client(running)
    reader = StateReader(client)
    store = CaseStore(tmp_path / "cases")
    folder = tmp_path / "plans"
    folder.mkdir()
    return Kit(running, client, reader, RoleCatalog.from_client(client), store, folder, access_settings(**settings))


def revoke(email: str, group: str, line: int | None = None) -> plan.Intent:
    return plan.Intent("revoke", "group", email, group=group, line=line)


def people_in_groups(service: PlatformService, count: int, organization: str = "bigcorp") -> list[tuple[str, str]]:
    """Return (email, group) pairs of registered, non-manager members of the organization."""
    pairs = []
    for name in service.story.organizations[organization].groups:
        for email, member in service.story.groups[name].members.items():
            if email != ENGINEER and member.role == "user" and member.invitation_state == "REGISTERED":
                pairs.append((email, name))
                if len(pairs) == count:
                    return pairs
    return pairs
