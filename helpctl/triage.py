"""Triage: run every probe that applies to a case at once, each within its own time limit.

Each probe runs in its own daemon thread, so a triage takes about as long as its slowest
probe. One probe's failure never stops the others: a probe that raises, lacks credentials
or overruns its time limit ends as a finding with the matching outcome. A probe that
overran keeps running in the background until its own client deadline; its late answer is
dropped, because the process moves on without it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from helpctl import services
from helpctl.cases.model import Case
from helpctl.cases.store import CaseStore
from helpctl.config.settings import Profile
from helpctl.errors import AuthError, HelpctlError
from helpctl.findings import Finding

logger = logging.getLogger(__name__)

# A progress callback receives the probe name, its state (waiting, running, done) and a detail.
ProgressCallback = Callable[[str, str, str], None]


@dataclasses.dataclass
class ProbeSpec:
    name: str
    title: str
    execute: Callable[[Case, Profile, CaseStore, dict[str, Any]], list[Finding]]
    applies: Callable[[Case, Profile], str | None] = lambda case, profile: None


def _platform(case: Case, profile: Profile, store: CaseStore, options: dict[str, Any]) -> list[Finding]:
    from helpctl.probes import platform

    return platform.run(case, services.platform_client(profile), store, options.get("checks"))


def _logs(case: Case, profile: Profile, store: CaseStore, options: dict[str, Any]) -> list[Finding]:
    from helpctl.probes import logs

    arguments = {key: options[key] for key in ("query_names", "query_text", "log_groups", "since", "until") if options.get(key) is not None}
    return logs.run(case, services.logs_client(profile), store, profile.logs, routing=profile.routing, **arguments)


def _mail(case: Case, profile: Profile, store: CaseStore, options: dict[str, Any]) -> list[Finding]:
    from helpctl.probes import mail

    return mail.run(case, services.mandrill_client(profile), store, profile.mandrill)


def _errors(case: Case, profile: Profile, store: CaseStore, options: dict[str, Any]) -> list[Finding]:
    from helpctl.probes import errors

    return errors.run(case, services.bugsnag_client(profile), store, profile.bugsnag, profile.routing)


def _usage(case: Case, profile: Profile, store: CaseStore, options: dict[str, Any]) -> list[Finding]:
    from helpctl.probes import usage

    return usage.run(case, services.mixpanel_client(profile), store, profile.mixpanel, feature=options.get("feature"))


def _sessions(case: Case, profile: Profile, store: CaseStore, options: dict[str, Any]) -> list[Finding]:
    from helpctl.probes import sessions

    previous = [item for item in case.findings if item.get("source") == "sessions"]
    client = services.logrocket_client(profile)
    return sessions.run(case, client, store, profile.logrocket, wait=bool(options.get("wait")), previous_findings=previous)


def _needs_log_groups(case: Case, profile: Profile) -> str | None:
    if not profile.logs.log_groups:
        return "no log groups configured (logs.log_groups in the profile)"
    return None


def _needs(section: str, *fields: str) -> Callable[[Case, Profile], str | None]:
    def check(case: Case, profile: Profile) -> str | None:
        settings = getattr(profile, section)
        missing = [field for field in fields if not getattr(settings, field)]
        if missing:
            return f"{section}.{missing[0]} is not set in the profile"
        return None

    return check


PROBES: dict[str, ProbeSpec] = {
    "platform": ProbeSpec("platform", "Platform API", _platform),
    "logs": ProbeSpec("logs", "CloudWatch Logs Insights", _logs, _needs_log_groups),
    "mail": ProbeSpec("mail", "Mandrill", _mail),
    "errors": ProbeSpec("errors", "BugSnag", _errors, _needs("bugsnag", "project_id")),
    "usage": ProbeSpec("usage", "Mixpanel", _usage, _needs("mixpanel", "project_id")),
    "sessions": ProbeSpec("sessions", "LogRocket", _sessions, _needs("logrocket", "app_id")),
}


@dataclasses.dataclass
class ProbeRun:
    name: str
    state: str = "waiting"
    findings: list[Finding] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    started: float = 0.0
    # Guards `state`: the probe's thread and the waiting thread both try to finish the run.
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def finish(self, findings: list[Finding], seconds: float) -> bool:
        """Record the result unless the run already finished; returns whether this call did."""
        with self.lock:
            if self.state != "running":
                return False
            self.findings, self.seconds, self.state = findings, seconds, "done"
            return True

    @property
    def outcome(self) -> str:
        """The worst outcome among the probe's findings: what the summary table shows."""
        order = ["failed", "timed_out", "rate_limited", "truncated", "partial", "skipped", "empty", "ok"]
        outcomes = [finding.outcome for finding in self.findings] or ["skipped"]
        return min(outcomes, key=order.index)

    @property
    def counts(self) -> str:
        """Outcomes with their counts, worst first, such as "1 failed, 5 ok"."""
        order = ["failed", "timed_out", "rate_limited", "truncated", "partial", "skipped", "empty", "ok"]
        tally: dict[str, int] = {}
        for finding in self.findings:
            tally[finding.outcome] = tally.get(finding.outcome, 0) + 1
        return ", ".join(f"{tally[name]} {name}" for name in order if name in tally)

    @property
    def headline(self) -> str:
        """The finding worth reading first: a problem when there is one, else evidence found."""
        if not self.findings:
            return ""
        incomplete = [finding for finding in self.findings if not finding.complete]
        found = [finding for finding in self.findings if finding.outcome == "ok" and finding.check not in ("token", "probe")]
        return (incomplete or found or self.findings)[0].summary


def select(only: list[str] | None, skip: list[str] | None) -> list[str]:
    names = list(only) if only else list(PROBES)
    unknown = [name for name in names + list(skip or []) if name not in PROBES]
    if unknown:
        from helpctl.errors import UsageError

        raise UsageError(f"unknown probe {unknown[0]!r}", hint=f"use any of: {', '.join(PROBES)}")
    return [name for name in names if name not in (skip or [])]


def whole_probe_finding(name: str, case: Case, outcome: str, summary: str, reason: str | None = None) -> Finding:
    return Finding(source=name, check="probe", subject=case.id, outcome=outcome, summary=summary, reason=reason)


def run_probes(
    case: Case,
    profile: Profile,
    store: CaseStore,
    names: list[str],
    *,
    timeout: float,
    options: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, ProbeRun]:
    """Run the named probes concurrently; returns each probe's run with its findings."""
    options = options or {}
    notify = progress or (lambda name, state, detail: None)
    runs = {name: ProbeRun(name) for name in names}
    threads = {}
    for name in names:
        spec = PROBES[name]
        reason = spec.applies(case, profile)
        if reason:
            runs[name].state = "done"
            runs[name].findings = [whole_probe_finding(name, case, "skipped", f"{spec.title}: not configured", reason)]
            notify(name, "done", reason)
            continue
        thread = threading.Thread(target=_run_one, args=(spec, case, profile, store, options, runs[name], notify), daemon=True, name=f"probe-{name}")
        runs[name].started = time.monotonic()
        runs[name].state = "running"
        notify(name, "running", "")
        thread.start()
        threads[name] = thread

    _wait(threads, runs, case, timeout, notify)
    return runs


def _run_one(spec: ProbeSpec, case: Case, profile: Profile, store: CaseStore, options: dict[str, Any], run: ProbeRun, notify: ProgressCallback) -> None:
    try:
        findings = spec.execute(case, profile, store, options)
    except AuthError as error:
        findings = [whole_probe_finding(spec.name, case, "skipped", f"{spec.title}: no usable credentials", f"{error.message} ({error.hint})")]
    except HelpctlError as error:
        findings = [whole_probe_finding(spec.name, case, "failed", f"{spec.title}: {error.message}", error.hint)]
    except Exception as error:  # a probe bug must not take the other probes down
        logger.exception("probe %s failed on case %s", spec.name, case.id)
        findings = [whole_probe_finding(spec.name, case, "failed", f"{spec.title}: internal error {type(error).__name__}", str(error)[:200])]

    if run.finish(findings, time.monotonic() - run.started):
        notify(spec.name, "done", f"{run.counts} in {run.seconds:.1f} s")


def _wait(threads: dict[str, threading.Thread], runs: dict[str, ProbeRun], case: Case, timeout: float, notify: ProgressCallback) -> None:
    deadline = time.monotonic() + timeout
    for name, thread in threads.items():
        thread.join(max(0.0, deadline - time.monotonic()))
        if not thread.is_alive():
            continue
        late = [whole_probe_finding(name, case, "timed_out", f"{PROBES[name].title}: no answer within {timeout:g} s", "per-probe timeout")]
        if runs[name].finish(late, timeout):
            notify(name, "done", f"timed out after {timeout:g} s")
