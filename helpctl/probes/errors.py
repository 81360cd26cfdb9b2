"""The errors probe: what BugSnag recorded for the case's people around the report.

For the requester and each user of the case, the probe lists the BugSnag events of that
address from 6 hours before the reported time to 2 hours after it, never past now. It keeps
only events whose `user.email` is exactly the address, because BugSnag matches the filter as
a substring (`ana@x` also finds `juliana@x`). Then it reads each error those events belong to.

The probe returns one finding per address, with these signals:

- `errors.distinct_errors`: the errors the address hit in the window;
- `errors.events`: all events of those errors, as BugSnag counts them;
- `errors.events_for_user`: the address's events in the window;
- `errors.users_affected`: the largest users count among those errors;
- `errors.top_error_class`, `errors.top_context`: of the error the address hit most;
- `errors.release_stage`: the release stage of most of the address's events;
- `errors.first_seen`, `errors.last_seen`: the address's first and last event in the
  window, ISO UTC.

The component is the routing component whose keyword appears in the error's context
(`VulnerabilitiesView` -> vulnerabilities).

Raw rows (the errors, then the events) go to `evidence/errors-<address>.jsonl`.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from helpctl.cases.model import Case
from helpctl.cases.store import CaseStore
from helpctl.config.settings import BugsnagSettings, RoutingSettings
from helpctl.errors import AuthError, NotFound, ServiceError
from helpctl.findings import Finding, isoformat, utc_now
from helpctl.probes.subjects import case_addresses, failed_finding, failure_outcome, no_address_finding, reported_time

if TYPE_CHECKING:
    from helpctl.clients.bugsnag import BugsnagClient

logger = logging.getLogger(__name__)

SOURCE = "errors"
CHECK = "user-errors"
WINDOW_BEFORE = dt.timedelta(hours=6)
WINDOW_AFTER = dt.timedelta(hours=2)


def run(
    case: Case,
    client: BugsnagClient,
    store: CaseStore,
    settings: BugsnagSettings,
    routing: RoutingSettings,
    *,
    now: dt.datetime | None = None,
) -> list[Finding]:
    """Return one finding per address of the case; external failures become outcomes."""
    addresses = case_addresses(case)
    if not addresses:
        return [no_address_finding(SOURCE, CHECK, case, "BugSnag")]

    reported = reported_time(case)
    probe = _Probe(case, client, store, routing, reported - WINDOW_BEFORE, min(reported + WINDOW_AFTER, now or utc_now()))
    window = probe.window

    findings: list[Finding] = []
    blocking: Finding | None = None
    for address in addresses:
        request = _request(settings, address, window)
        if blocking is not None:
            # The token or project is wrong: the same call would fail again for everyone.
            reason = f"not tried after an earlier call failed: {blocking.reason}"
            findings.append(_failed(address, request, window, blocking.outcome, reason))
            continue

        try:
            finding = _probe_address(probe, address, request)
        except (AuthError, NotFound) as error:
            finding = _failed(address, request, window, "failed", error.message)
            blocking = finding
        except ServiceError as error:
            finding = _failed(address, request, window, failure_outcome(error), error.message)
        findings.append(finding)
    return findings


def component_for(context: str, routing: RoutingSettings) -> str | None:
    """Return the component whose keyword appears in `context`; the longest keyword wins."""
    lowered = context.lower()
    best, best_length = None, 0
    for name, component in routing.components.items():
        for keyword in component.keywords:
            keyword = keyword.strip().lower()
            if keyword and keyword in lowered and len(keyword) > best_length:
                best, best_length = name, len(keyword)
    return best


# ----- one address -----


@dataclasses.dataclass
class _Probe:
    """The state shared by every address of one run: the case, the client and the time window."""

    case: Case
    client: BugsnagClient
    store: CaseStore
    routing: RoutingSettings
    since: dt.datetime
    before: dt.datetime

    @property
    def window(self) -> dict[str, str]:
        return {"start": isoformat(self.since), "end": isoformat(self.before)}


def _probe_address(probe: _Probe, address: str, request: dict[str, Any]) -> Finding:
    client = probe.client
    listing = client.list_events(user_email=address, since=probe.since, before=probe.before)
    events = [event for event in listing.items if _event_email(event) == address]
    others = len(listing.items) - len(events)
    if others:
        logger.info("ignored %d BugSnag events of addresses that contain %s", others, address)

    counts = collections.Counter(str(event.get("error_id")) for event in events)
    errors = [_error_details(client, error_id, events) for error_id, _ in counts.most_common()]
    signals = _signals(events, errors)
    raw_ref = _write_rows(probe, address, errors, events) if events else None

    outcome = "ok" if events else "empty"
    reason = None
    if not listing.complete:
        outcome, reason = "truncated", listing.reason

    return Finding(
        source=SOURCE,
        check=CHECK,
        subject=address,
        outcome=outcome,
        summary=_summary(address, events, errors, probe.window, others),
        request=request,
        signals=signals,
        reason=reason,
        raw_ref=raw_ref,
        window=probe.window,
        component=_component(errors, probe.routing),
    )


def _event_email(event: dict[str, Any]) -> str:
    user = event.get("user") or {}
    return str(user.get("email") or "").strip().lower()


def _error_details(client: BugsnagClient, error_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Read one error; when BugSnag no longer has it, describe it from the address's events."""
    try:
        return client.get_error(error_id)
    except NotFound:
        mine = [event for event in events if str(event.get("error_id")) == error_id]
        exception = (mine[0].get("exceptions") or [{}])[0]
        return {
            "id": error_id,
            "error_class": exception.get("errorClass"),
            "message": exception.get("message"),
            "context": mine[0].get("context"),
            "events": len(mine),
            "users": 1,
        }


def _signals(events: list[dict[str, Any]], errors: list[dict[str, Any]]) -> dict[str, Any]:
    signals: dict[str, Any] = {
        "errors.distinct_errors": len(errors),
        "errors.events": sum(int(error.get("events") or 0) for error in errors),
        "errors.events_for_user": len(events),
        "errors.users_affected": max((int(error.get("users") or 0) for error in errors), default=0),
    }
    if not events:
        return signals

    # `errors` is ordered by the address's event count, so the first is the one hit most.
    top = errors[0]
    stages = collections.Counter(str((event.get("app") or {}).get("releaseStage") or "") for event in events)
    moments = sorted(str(event.get("received_at") or "") for event in events)
    signals.update(
        {
            "errors.top_error_class": top.get("error_class"),
            "errors.top_context": top.get("context"),
            "errors.release_stage": stages.most_common(1)[0][0] or None,
            "errors.first_seen": _iso(moments[0]),
            "errors.last_seen": _iso(moments[-1]),
        }
    )
    return signals


def _component(errors: list[dict[str, Any]], routing: RoutingSettings) -> str | None:
    for error in errors:
        component = component_for(str(error.get("context") or ""), routing)
        if component:
            return component
    return None


def _write_rows(probe: _Probe, address: str, errors: list[dict[str, Any]], events: list[dict[str, Any]]) -> str:
    def rows() -> Iterator[dict[str, Any]]:
        for error in errors:
            yield {"record": "error", "link": probe.client.error_link(str(error.get("id"))), **error}
        for event in events:
            yield {"record": "event", **event}

    path, _ = probe.store.write_rows(probe.case.id, f"{SOURCE}-{address}", rows())
    return path


def _summary(
    address: str, events: list[dict[str, Any]], errors: list[dict[str, Any]], window: dict[str, str], others: int
) -> str:
    ignored = f" ({others} events of other addresses containing it ignored)" if others else ""
    if not events:
        return f"BugSnag has no events for {address} between {window['start']} and {window['end']}{ignored}"

    top = errors[0]
    return (
        f"{address} hit {_count(len(errors), 'error')} {_count(len(events), 'time')}; most often "
        f"{top.get('error_class')}: {top.get('message')} in {top.get('context')} "
        f"({_count(int(top.get('users') or 0), 'user')} affected){ignored}"
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _iso(raw: str) -> str | None:
    try:
        return isoformat(dt.datetime.fromisoformat(raw))
    except ValueError:
        return None


# ----- outcomes without data -----


def _request(settings: BugsnagSettings, address: str, window: dict[str, str]) -> dict[str, Any]:
    return {
        "endpoint": f"GET /projects/{settings.project_id}/events",
        "filters": {"user.email": address, "event.since": window["start"], "event.before": window["end"]},
        "per_page": settings.per_page,
        "max_pages": settings.max_pages,
    }


def _failed(address: str, request: dict[str, Any], window: dict[str, str], outcome: str, reason: str) -> Finding:
    summary = f"could not read BugSnag errors of {address}"
    return failed_finding(SOURCE, CHECK, address, summary, request=request, window=window, outcome=outcome, reason=reason)
