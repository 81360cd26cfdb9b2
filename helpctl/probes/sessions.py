"""The sessions probe: LogRocket session highlights of the case's people, or links to them.

With an API key, the probe submits a Highlights request for the requester and each case
user, covering the sessions from a day before the reported time to 2 hours after it. The
result takes minutes, so the finding is `partial` with `sessions.status` pending and the
request id. A later run that is given the case's earlier findings collects the result:
READY becomes `ok` (or `empty` without sessions) with `sessions.count`, and FAILED becomes
`failed`. With `wait=True` the probe polls for up to `wait_seconds`.

Without a key (no client) the probe cannot look, so each finding is `ok` with
`sessions.status` "link" and the deep link to the person's sessions for the engineer to
open by hand.

Raw rows (one per session of a READY result) go to `evidence/sessions-<address>.jsonl`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from helpctl.cases.model import Case
from helpctl.cases.store import CaseStore
from helpctl.config.settings import LogrocketSettings
from helpctl.errors import AuthError, NotFound, ServiceError
from helpctl.findings import Finding, isoformat, utc_now
from helpctl.probes.subjects import case_addresses, failed_finding, failure_outcome, no_address_finding, reported_time

if TYPE_CHECKING:
    from helpctl.clients.logrocket import Highlights, LogrocketClient

logger = logging.getLogger(__name__)

SOURCE = "sessions"
CHECK = "highlights"
RANGE_BEFORE = dt.timedelta(days=1)
RANGE_AFTER = dt.timedelta(hours=2)
PENDING_REASON = "highlights requested; collect them with another run or --wait"
SUMMARY_CHARS = 240


def run(
    case: Case,
    client_or_none: LogrocketClient | None,
    store: CaseStore,
    settings: LogrocketSettings,
    *,
    now: dt.datetime | None = None,
    wait: bool = False,
    previous_findings: Iterable[Finding | dict[str, Any]] = (),
) -> list[Finding]:
    """Return one finding per address of the case; external failures become outcomes."""
    from helpctl.clients.logrocket import deep_link

    addresses = case_addresses(case)
    if not addresses:
        return [no_address_finding(SOURCE, CHECK, case, "LogRocket")]

    reported = reported_time(case)
    probe = _Probe(case, store, settings, reported - RANGE_BEFORE, min(reported + RANGE_AFTER, now or utc_now()), wait)
    pending = pending_requests(previous_findings)
    ready = ready_findings(previous_findings)

    findings: list[Finding] = []
    blocking: str | None = None
    for address in addresses:
        target = _Target(address, deep_link(settings, address), probe.window)
        if client_or_none is None:
            findings.append(_link_finding(target))
            continue

        target.request.update(time_range=probe.window, app_id=settings.app_id)
        if address in ready:
            # The highlights cover the sessions around the report, which do not change:
            # a collected answer is kept rather than paying for a new request.
            findings.append(ready[address])
            continue
        if blocking is not None:
            # The key or app is wrong: the same call would fail again for everyone.
            findings.append(_failed(target, "failed", f"not tried after an earlier call failed: {blocking}"))
            continue

        try:
            finding = _probe_address(probe, client_or_none, target, pending.get(address))
        except (AuthError, NotFound) as error:
            finding = _failed(target, "failed", error.message)
            blocking = error.message
        except ServiceError as error:
            finding = _failed(target, failure_outcome(error), error.message)
        findings.append(finding)
    return findings


def pending_requests(previous_findings: Iterable[Finding | dict[str, Any]]) -> dict[str, str]:
    """Return address -> request id of earlier sessions findings still pending."""
    pending = {}
    for item in previous_findings:
        finding = Finding.from_dict(item) if isinstance(item, dict) else item
        if finding.source != SOURCE or finding.signals.get("sessions.status") != "pending":
            continue
        request_id = finding.signals.get("sessions.request_id")
        if isinstance(request_id, str) and request_id:
            pending[finding.subject.lower()] = request_id
    return pending


def ready_findings(previous_findings: Iterable[Finding | dict[str, Any]]) -> dict[str, Finding]:
    """Return address -> earlier sessions finding whose highlights were collected."""
    ready = {}
    for item in previous_findings:
        finding = Finding.from_dict(item) if isinstance(item, dict) else item
        if finding.source == SOURCE and finding.outcome == "ok" and finding.signals.get("sessions.status") == "ready":
            ready[finding.subject.lower()] = finding
    return ready


@dataclasses.dataclass
class _Probe:
    """The state shared by every address of one run: the case, the settings and the time range."""

    case: Case
    store: CaseStore
    settings: LogrocketSettings
    start: dt.datetime
    end: dt.datetime
    wait: bool

    @property
    def window(self) -> dict[str, str]:
        return {"start": isoformat(self.start), "end": isoformat(self.end)}


@dataclasses.dataclass
class _Target:
    """One address: its deep link and the request recorded in its finding."""

    address: str
    link: str
    window: dict[str, str]
    request: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.request.setdefault("user", self.address)


# ----- one address -----


def _probe_address(probe: _Probe, client: LogrocketClient, target: _Target, request_id: str | None) -> Finding:
    highlights = None
    if request_id is not None:
        try:
            highlights = _collect(client, request_id, probe)
        except NotFound:
            logger.info("LogRocket no longer has highlights request %s; submitting a new one", request_id)
            request_id = None

    if request_id is None:
        request_id = client.request_highlights(target.address, start=probe.start, end=probe.end)
        if probe.wait:
            highlights = client.wait_for_highlights(request_id, timeout=probe.settings.wait_seconds)

    target.request["request_id"] = request_id
    if highlights is None or highlights.status == "PENDING":
        reason = PENDING_REASON
        if probe.wait:
            reason = f"highlights still pending after {probe.settings.wait_seconds:g} s; collect them with another run"
        return _pending(target, request_id, reason)
    if highlights.status == "FAILED":
        finding = _failed(target, "failed", highlights.error or "LogRocket could not generate the highlights")
        finding.signals.update({"sessions.status": "failed", "sessions.request_id": request_id})
        return finding
    return _ready(probe, target, highlights)


def _collect(client: LogrocketClient, request_id: str, probe: _Probe) -> Highlights:
    if probe.wait:
        return client.wait_for_highlights(request_id, timeout=probe.settings.wait_seconds)
    return client.get_highlights(request_id)


def _ready(probe: _Probe, target: _Target, highlights: Highlights) -> Finding:
    count = len(highlights.sessions)
    raw_ref = None
    if count:
        raw_ref, _ = probe.store.write_rows(probe.case.id, f"{SOURCE}-{target.address}", iter(highlights.sessions))

    summary = highlights.summary.strip() or f"{count} sessions"
    if len(summary) > SUMMARY_CHARS:
        summary = summary[: SUMMARY_CHARS - 3] + "..."
    return Finding(
        source=SOURCE,
        check=CHECK,
        subject=target.address,
        outcome="ok" if count else "empty",
        summary=f"LogRocket highlights of {target.address}: {summary}",
        request=target.request,
        signals={
            "sessions.status": "ready",
            "sessions.count": count,
            "sessions.request_id": highlights.request_id,
            "sessions.link": target.link,
        },
        raw_ref=raw_ref,
        window=target.window,
    )


# ----- outcomes without highlights -----


def _pending(target: _Target, request_id: str, reason: str) -> Finding:
    return Finding(
        source=SOURCE,
        check=CHECK,
        subject=target.address,
        outcome="partial",
        summary=f"LogRocket is generating session highlights of {target.address} (request {request_id})",
        request=target.request,
        signals={"sessions.status": "pending", "sessions.request_id": request_id, "sessions.link": target.link},
        reason=reason,
        window=target.window,
    )


def _link_finding(target: _Target) -> Finding:
    target.request["link"] = target.link
    return Finding(
        source=SOURCE,
        check=CHECK,
        subject=target.address,
        outcome="ok",
        summary=f"no LogRocket API key: open {target.address}'s sessions by hand at {target.link}",
        request=target.request,
        signals={"sessions.status": "link", "sessions.link": target.link},
        reason="no LogRocket API key configured",
        window=target.window,
    )


def _failed(target: _Target, outcome: str, reason: str) -> Finding:
    return failed_finding(
        SOURCE,
        CHECK,
        target.address,
        f"could not read LogRocket highlights of {target.address}; sessions: {target.link}",
        request=target.request,
        window=target.window,
        outcome=outcome,
        reason=reason,
        signals={"sessions.link": target.link},
    )
