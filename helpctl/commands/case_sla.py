"""Response-time clocks in `case show` and `case list --due/--breached`.

This module adds no `case` subcommand. `case show` shows `clock_rows`, and `case list`
narrows its index rows with `due_filter`.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from helpctl.errors import HelpctlError

if TYPE_CHECKING:
    import typer

    from helpctl.cases.model import Case
    from helpctl.cases.store import CaseStore
    from helpctl.config.settings import Profile
    from helpctl.sla import Clock

logger = logging.getLogger(__name__)

# Statuses whose clocks can still run. Closed cases have none.
CLOCKED_STATUSES = ("open", "waiting", "filed")


def register_case(case_app: typer.Typer) -> None:
    """Add nothing: the clocks show up through `clock_rows` and `due_filter`."""
    return None


def clock_rows(case: Case, profile: Profile, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Return one row per clock of the case, with a short `summary` for people."""
    from helpctl import sla
    from helpctl.findings import utc_now

    rows = []
    for clock in sla.clocks(case, profile.sla, now or utc_now()):
        row = clock.as_dict()
        row["summary"] = describe(clock)
        rows.append(row)
    return rows


def describe(clock: Clock) -> str:
    """Say a clock's state in a few words, in office hours."""
    remaining = clock.remaining_hours
    if clock.state == "met":
        verdict = f"{-remaining:.1f} h late" if clock.breached else f"{remaining:.1f} h to spare"
        return f"met ({verdict})"
    if clock.state == "stopped":
        return "stopped: the case is closed"
    if clock.state == "paused":
        return f"paused while waiting on the requester ({remaining:.1f} h left)"
    if clock.breached:
        return f"breached by {-remaining:.1f} office h"
    return f"due in {remaining:.1f} office h" + (" (due soon)" if clock.due_soon else "")


def due_filter(
    rows: list[dict[str, Any]],
    profile: Profile,
    now: dt.datetime,
    due: bool,
    breached: bool,
    *,
    store: CaseStore | None = None,
) -> list[dict[str, Any]]:
    """Keep the index rows whose open clocks are due soon (`due`) or breached (`breached`).

    With both flags a row that matches either is kept. With neither, `rows` is returned
    unchanged. Only open, waiting and filed cases are loaded from their files. Each kept row is a
    copy with a `clocks` list added. A case file that cannot be read is left out.
    """
    if not (due or breached):
        return rows

    from helpctl import sla
    from helpctl.cases.store import CaseStore

    store = store or CaseStore()
    kept = []
    for row in rows:
        if row.get("status") not in CLOCKED_STATUSES:
            continue
        try:
            case = store.load(row["id"])
        except HelpctlError as error:
            logger.warning("case %s is left out of the due list: %s", row["id"], error.message)
            continue

        running = [clock for clock in sla.clocks(case, profile.sla, now) if clock.is_open]
        if any((due and clock.due_soon) or (breached and clock.breached) for clock in running):
            kept.append({**row, "clocks": [clock.as_dict() for clock in running]})
    return kept
