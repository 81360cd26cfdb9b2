"""The people and the time a case is about, shared by the errors, usage, sessions and mail probes.

The module also builds the findings those probes return when the case names no address or a call failed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from helpctl.cases.model import Case
from helpctl.errors import HelpctlError, RateLimited, ServiceTimeout, UsageError
from helpctl.findings import Finding


def case_addresses(case: Case) -> list[str]:
    """Return the requester's and the case users' e-mail addresses, lowercase, once each.

    The requester comes first and users keep the case's order. Blank addresses are dropped.
    """
    addresses: list[str] = []
    for address in [case.requester.email, *case.subjects.users]:
        address = (address or "").strip().lower()
        if address and address not in addresses:
            addresses.append(address)
    return addresses


def reported_time(case: Case) -> dt.datetime:
    """Return when the request was reported (UTC), or when the case was opened."""
    raw = case.reported_at or case.created_at
    try:
        moment = dt.datetime.fromisoformat(raw)
    except (TypeError, ValueError) as error:
        raise UsageError(
            f"case {case.id} has an invalid reported time {raw!r}",
            hint="set reported_at as ISO 8601 UTC, such as 2026-03-02T13:00:00Z",
        ) from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)


def failure_outcome(error: HelpctlError) -> str:
    """Return the finding outcome for a failed call: timed_out, rate_limited or failed."""
    if isinstance(error, ServiceTimeout):
        return "timed_out"
    if isinstance(error, RateLimited):
        return "rate_limited"
    return "failed"


def failed_finding(
    source: str,
    check: str,
    address: str,
    summary: str,
    *,
    request: dict[str, Any],
    window: dict[str, str],
    outcome: str,
    reason: str,
    signals: dict[str, Any] | None = None,
) -> Finding:
    """Build the finding of an address whose lookup failed."""
    return Finding(
        source=source,
        check=check,
        subject=address,
        outcome=outcome,
        summary=summary,
        request=request,
        signals=dict(signals or {}),
        reason=reason,
        window=window,
    )


def no_address_finding(source: str, check: str, case: Case, service: str) -> Finding:
    """Build the skipped finding of a case that names no e-mail address to look up in `service`."""
    return Finding(
        source=source,
        check=check,
        subject=case.id,
        outcome="skipped",
        summary=f"the case names no requester or user e-mail to look up in {service}",
        reason="no e-mail address",
    )
