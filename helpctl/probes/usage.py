"""The usage probe: what Mixpanel recorded of the case's people around the report.

For the requester and each user of the case, the probe finds the Mixpanel profile by e-mail.
The lookup is cached: a person with a profile costs one query ever, and one without is
looked up again after a day. The probe then exports that person's events from
`window_hours / 2` before the reported time to `window_hours / 2` after it, never past now.

When the case names a feature of `mixpanel.feature_events`, the export starts 30 days
earlier instead, and `usage.feature_used` records whether the person sent one of the
feature's events in that time.

Signals:

- `usage.profile_found`;
- `usage.last_seen`: ISO UTC, the latest exported event or the profile's `$last_seen`,
  whichever is later;
- `usage.events_near_report`;
- `usage.feature_used`: only when a feature is named;
- `usage.deferred_until`: when the hourly query budget is used up. Then nothing is sent,
  and the finding is `rate_limited` with a reason such as "deferred until 15:00Z".

A person without a profile (never identified in the product) gives an `empty` finding.

Raw rows (the exported events) go to `evidence/usage-<address>.jsonl`.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from helpctl.cases.model import Case
from helpctl.cases.store import CaseStore
from helpctl.config.settings import MixpanelSettings
from helpctl.errors import AuthError, NotFound, RateLimited, ServiceError, UsageError
from helpctl.findings import Finding, isoformat, utc_now
from helpctl.probes.subjects import case_addresses, failed_finding, failure_outcome, no_address_finding, reported_time

if TYPE_CHECKING:
    from helpctl.clients.mixpanel import MixpanelClient, UsageProfile

logger = logging.getLogger(__name__)

SOURCE = "usage"
CHECK = "user-activity"
FEATURE_LOOKBACK = dt.timedelta(days=30)


def run(
    case: Case,
    client: MixpanelClient,
    store: CaseStore,
    settings: MixpanelSettings,
    *,
    now: dt.datetime | None = None,
    feature: str | None = None,
) -> list[Finding]:
    """Return one finding per address of the case; raise UsageError for an unknown feature."""
    named = resolve_feature(case, settings, feature)
    addresses = case_addresses(case)
    if not addresses:
        return [no_address_finding(SOURCE, CHECK, case, "Mixpanel")]

    reported = reported_time(case)
    half = dt.timedelta(hours=settings.window_hours / 2)
    probe = _Probe(case, client, store, reported - half, min(reported + half, now or utc_now()), named)
    window = probe.window

    findings: list[Finding] = []
    stop: Finding | None = None
    for address in addresses:
        request = _request(settings, address, probe)
        if stop is not None:
            # Same budget or credentials for everyone: later queries would not be sent either.
            findings.append(_copy_failure(stop, address, request))
            continue

        try:
            finding = _probe_address(probe, address, request)
        except RateLimited as error:
            finding = stop = _deferred(address, error, request, window, now or utc_now())
        except (AuthError, NotFound) as error:
            finding = stop = _failed(address, request, window, "failed", error.message)
        except ServiceError as error:
            finding = _failed(address, request, window, failure_outcome(error), error.message)
        findings.append(finding)
    return findings


def resolve_feature(case: Case, settings: MixpanelSettings, feature: str | None = None) -> tuple[str, list[str]] | None:
    """Return the feature (name, events) named by `feature` or by the case text, if any.

    The case names a feature when one of its events appears in the subject or body, or
    when every word of its name does (a plural `s` ignored): "export the member list"
    names `members-export`.
    """
    if feature:
        for name, events in settings.feature_events.items():
            if name.lower() == feature.strip().lower():
                return name, list(events)
        known = ", ".join(settings.feature_events) or "none configured in mixpanel.feature_events"
        raise UsageError(f"unknown feature {feature!r}", hint=f"use one of: {known}")

    text = f"{case.subject}\n{case.body}".lower()
    words = {_singular(word) for word in re.findall(r"\w+", text)}
    for name, events in settings.feature_events.items():
        parts = [_singular(part) for part in re.split(r"[-_\s]+", name.lower()) if part]
        if any(event.lower() in text for event in events) or (parts and all(part in words for part in parts)):
            return name, list(events)
    return None


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


# ----- one address -----


@dataclasses.dataclass
class _Probe:
    """The state shared by every address of one run: the case, the client, the window and the feature."""

    case: Case
    client: MixpanelClient
    store: CaseStore
    start: dt.datetime  # the window around the report
    end: dt.datetime
    named: tuple[str, list[str]] | None  # the feature (name, events), when the case names one

    @property
    def since(self) -> dt.datetime:
        """Return where the export starts: the window, or the feature look-back before it."""
        return self.start - FEATURE_LOOKBACK if self.named else self.start

    @property
    def window(self) -> dict[str, str]:
        return {"start": isoformat(self.start), "end": isoformat(self.end)}


def _probe_address(probe: _Probe, address: str, request: dict[str, Any]) -> Finding:
    profile = probe.client.find_profile(address)
    if profile is None:
        return Finding(
            source=SOURCE,
            check=CHECK,
            subject=address,
            outcome="empty",
            summary=f"Mixpanel has no profile for {address}: the product never identified them",
            request=request,
            signals={"usage.profile_found": False},
            window=probe.window,
        )

    export = probe.client.export_events(profile.distinct_ids, probe.since, probe.end)
    request["export"].update(from_date=export.from_date, to_date=export.to_date)
    nearby = [event for event in export.events if _time(event) >= probe.start]
    signals: dict[str, Any] = {
        "usage.profile_found": True,
        "usage.last_seen": _last_seen(profile, export.events),
        "usage.events_near_report": len(nearby),
    }
    if probe.named is not None:
        signals["usage.feature_used"] = any(event.get("event") in probe.named[1] for event in export.events)

    path, _ = probe.store.write_rows(probe.case.id, f"{SOURCE}-{address}", iter(export.events))
    outcome, reason = "ok", None
    if export.malformed_lines:
        outcome, reason = "partial", f"{export.malformed_lines} export lines were not valid JSON and were skipped"

    return Finding(
        source=SOURCE,
        check=CHECK,
        subject=address,
        outcome=outcome,
        summary=_summary(address, nearby, signals, probe.named),
        request=request,
        signals=signals,
        reason=reason,
        raw_ref=path,
        window=probe.window,
    )


def _time(event: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromtimestamp(float(event["properties"].get("time") or 0), dt.timezone.utc)


def _last_seen(profile: UsageProfile, events: list[dict[str, Any]]) -> str | None:
    moments = [_time(event) for event in events]
    if profile.last_seen:
        try:
            moments.append(dt.datetime.fromisoformat(profile.last_seen).replace(tzinfo=dt.timezone.utc))
        except ValueError:
            logger.info("ignored the unreadable $last_seen %r of a Mixpanel profile", profile.last_seen)
    return isoformat(max(moments)) if moments else None


def _summary(
    address: str, nearby: list[dict[str, Any]], signals: dict[str, Any], named: tuple[str, list[str]] | None
) -> str:
    counts = collections.Counter(str(event.get("event")) for event in nearby)
    common = ", ".join(f"{name} x{count}" for name, count in counts.most_common(3))
    text = f"{address}: {len(nearby)} events near the report" + (f" ({common})" if common else "")
    text += f"; last seen {signals['usage.last_seen'] or 'never'}"
    if named is not None:
        used = "used" if signals["usage.feature_used"] else "never used"
        text += f"; {used} {named[0]} ({', '.join(named[1])}) in the {FEATURE_LOOKBACK.days} days before"
    return text


# ----- outcomes without data -----


def _request(settings: MixpanelSettings, address: str, probe: _Probe) -> dict[str, Any]:
    return {
        "project_id": settings.project_id,
        "engage": {"where": f'properties["$email"] == {json.dumps(address)}'},
        "export": {"since": isoformat(probe.since), "before": isoformat(probe.end)},
        "feature": probe.named[0] if probe.named else None,
    }


def _deferred(
    address: str, error: RateLimited, request: dict[str, Any], window: dict[str, str], now: dt.datetime
) -> Finding:
    # The client's BudgetExhausted carries the exact moment; another RateLimited only a delay.
    available = getattr(error, "available_at", None)
    if available is None:
        available = now + dt.timedelta(seconds=error.retry_after or 3600)
    return Finding(
        source=SOURCE,
        check=CHECK,
        subject=address,
        outcome="rate_limited",
        summary=f"Mixpanel query for {address} not sent: {error.message}",
        request=request,
        signals={"usage.deferred_until": isoformat(available)},
        reason=f"deferred until {available.astimezone(dt.timezone.utc):%H:%M}Z",
        window=window,
    )


def _failed(address: str, request: dict[str, Any], window: dict[str, str], outcome: str, reason: str) -> Finding:
    summary = f"could not read Mixpanel activity of {address}"
    return failed_finding(SOURCE, CHECK, address, summary, request=request, window=window, outcome=outcome, reason=reason)


def _copy_failure(stop: Finding, address: str, request: dict[str, Any]) -> Finding:
    summary = stop.summary.replace(stop.subject, address)
    return Finding(
        source=SOURCE,
        check=CHECK,
        subject=address,
        outcome=stop.outcome,
        summary=summary,
        request=request,
        signals=dict(stop.signals),
        reason=stop.reason,
        window=stop.window,
    )
