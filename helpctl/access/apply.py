"""Apply an approved access plan: concurrent, rate-limit aware, resumable, audited.

The steps, in order:

1. Check the plan: content hash, approval, operator (`approval.check_approval`).
2. Open the journal (refused when one exists and `resume` is off). On resume, settle every
   operation whose outcome is unknown by reading the platform's state: visible means done,
   not visible means pending again.
3. Check the precondition of every pending operation against the platform's current state.
   Any that no longer matches makes the plan stale: `StalePlan` lists them, and nothing runs.
4. Ask for confirmation when pending operations are dangerous (the caller's `confirm`).
5. Send the mutations with at most `ConcurrencyLimit.current` in flight (see there), writing
   the journal before and after each one, a row of the results CSV after each, and an audit
   entry for each finished operation (from a background thread).
6. Read the state back and report every applied operation whose effect is not visible.

Outcomes of one attempt:

- applied;
- rejected by the platform: failed, unless the state shows the change is already in effect
  (for example after an earlier attempt whose response was lost);
- HTTP 429 or "Too many requests": not done, so retried after Retry-After;
- no usable response (timeout, 5xx): settled by reading the state, and retried only when
  the effect is not visible, at most `unknown_retries` times;
- a rejected token: the run stops.

Memory stays flat in the plan's size. Operations are streamed from the plan file, and the
journal is folded into a few bytes per operation. State is read in chunks of operations that
share a group, and results and the journal go straight to disk.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpctl.access import journal as journal_module
from helpctl.access.approval import Operator, audit_approval, check_approval, note_in_case
from helpctl.access.plan import PlanFile, companion
from helpctl.access.state import Member, StateReader
from helpctl.errors import AuthError, HelpctlError, PreconditionFailed, RateLimited, ServiceError

if TYPE_CHECKING:
    from helpctl.cases.store import CaseStore
    from helpctl.clients.platform_access import AccessMutations
    from helpctl.config.settings import AccessSettings

logger = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".journal.jsonl"
RESULTS_SUFFIX = ".results.csv"
RESULTS_COLUMNS = ("row", "operation", "outcome", "message")
# Operations checked per batch of state reads; consecutive ones mostly share a group.
CHUNK_OPERATIONS = 500
READ_WORKERS = 4
# Refusals that an earlier attempt of the same operation could have caused, by action: the
# state decides whether the change is already in effect.
SETTLED_BY_STATE = {
    "grant": frozenset({"already_member", "reinvite_too_soon"}),
    "revoke": frozenset({"not_member"}),
    "set-role": frozenset(),
}
# Consecutive attempts without a usable response after which the run stops (resume later).
MAX_CONSECUTIVE_UNANSWERED = 10
MAX_LISTED = 50
PROGRESS_SECONDS = 0.25
# Operations whose `start` records one fsync makes durable before they are sent.
JOURNAL_AHEAD = 8


# ---------------------------------------------------------------------------------------------
# Adaptive concurrency


class ConcurrencyLimit:
    """How many mutations may be in flight, learned from the platform's responses.

    AIMD with a memory of the level the platform accepted:

    - slow start: until the first push-back, each success adds one (doubling per round trip);
    - a 429 or a throttling message: the requests still in flight are what the platform
      accepted, so that becomes the ceiling. The limit drops to 90 % of it, or to the ceiling
      itself when the 429 only rejected a probe above the level accepted before (once per
      round trip, whatever the number of 429s in a burst);
    - a server error or an unanswered request: the limit halves (once per round trip);
    - otherwise the limit climbs back to the ceiling at one per success, then probes above it
      by one every PROBE_ROUND_TRIPS round trips. It probes only while the work left takes
      longer than the last Retry-After, because a late 429 would stretch the run by that wait.

    The platform's limit is never configured: only `maximum` (access.max_concurrency) caps it.
    """

    ACCEPTED_SHARE = 0.9
    ERROR_FACTOR = 0.5
    PROBE_ROUND_TRIPS = 4  # above the ceiling, the limit grows by one every this many round trips

    def __init__(self, maximum: int, initial: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.maximum = max(1, maximum)
        self.value = float(min(max(1, initial), self.maximum))
        self.ceiling: float | None = None
        self.peak = self.value
        self.round_trip = 0.05  # seconds; moving average of successful attempts
        self.decreases = 0
        self._clock = clock
        self._quiet_until = 0.0
        self._holding = False

    @property
    def current(self) -> int:
        return max(1, min(self.maximum, int(self.value)))

    def on_success(self, seconds: float, probe: bool = True) -> None:
        self.round_trip = 0.8 * self.round_trip + 0.2 * max(seconds, 0.001)
        if self.ceiling is None or self.value + 1 <= self.ceiling:
            self.value += 1
        elif probe:
            self.value += 1 / (self.PROBE_ROUND_TRIPS * self.value)
        self.value = min(self.value, float(self.maximum))
        self.peak = max(self.peak, self.value)

    def on_rate_limited(self, still_in_flight: int) -> None:
        """Take a 429: `still_in_flight` counts the other attempts still waiting for a response."""
        accepted = float(max(1, still_in_flight))
        now = self._clock()
        if now < self._quiet_until:
            # Later 429s of the same burst: the in-flight count has shrunk towards what was accepted.
            self.ceiling = min(self.ceiling or accepted, accepted)
            self.value = min(self.value, self.ceiling if self._holding else max(1.0, self.ceiling * self.ACCEPTED_SHARE))
            return
        # A probe just above the level the platform accepted before: hold that level. Anything
        # else (the first push-back, or fewer accepted than before) backs off below it.
        self._holding = self.ceiling is not None and accepted >= self.ceiling
        self.ceiling = accepted
        share = 1.0 if self._holding else self.ACCEPTED_SHARE
        self.value = max(1.0, min(self.value, accepted * share))
        self._after_decrease(now)

    def on_error(self) -> None:
        now = self._clock()
        if now < self._quiet_until:
            return
        self.value = max(1.0, self.value * self.ERROR_FACTOR)
        self._after_decrease(now)

    def _after_decrease(self, now: float) -> None:
        self.decreases += 1
        self._quiet_until = now + 2 * self.round_trip


# ---------------------------------------------------------------------------------------------
# Results


@dataclasses.dataclass
class Progress:
    total: int
    done: int
    applied: int
    failed: int
    in_flight: int
    limit: int
    rate: float  # operations per second in this run
    eta: float | None  # seconds
    rate_limited: int


@dataclasses.dataclass
class ApplyReport:
    plan_id: str
    plan_path: str
    journal_path: str
    results_path: str
    total: int
    done_before: int = 0
    applied: int = 0
    already_in_effect: int = 0
    failed: int = 0
    unknown: int = 0
    not_visible: int = 0
    unverified: int = 0
    pending: int = 0  # operations left for --resume (after Ctrl-C or a stop)
    settled: int = 0
    rate_limited: int = 0
    skipped_in_plan: int = 0
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    concurrency: dict[str, float | None] = dataclasses.field(default_factory=dict)
    failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    stopped: str | None = None
    interrupted: bool = False

    @property
    def complete(self) -> bool:
        problems = self.failed + self.unknown + self.not_visible + self.unverified + self.pending
        return problems == 0 and self.stopped is None and not self.interrupted

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["complete"] = self.complete
        return data

    def note_failure(self, operation: dict[str, Any], outcome: str, message: str) -> None:
        if len(self.failures) < MAX_LISTED:
            self.failures.append({"row": row_number(operation), "operation": describe(operation), "outcome": outcome, "message": message})


class StalePlan(PreconditionFailed):
    """Preconditions of pending operations no longer hold; `problems` lists them."""

    kind = "stale_plan"

    def __init__(self, problems: list[str], count: int) -> None:
        super().__init__(
            f"the plan is stale: {count} pending operation{'s' if count != 1 else ''} no longer match the platform's state, so nothing was changed",
            hint="plan again from the source and have the new plan approved",
        )
        self.problems = problems
        self.count = count

    def as_dict(self) -> dict[str, object]:
        data = super().as_dict()
        data["problems"] = self.problems
        data["count"] = self.count
        return data


def row_number(operation: dict[str, Any]) -> int:
    return int(operation.get("line") or (operation["index"] + 1))


def describe(operation: dict[str, Any]) -> str:
    """Return one line naming the operation: "revoke ana@x.co from group kiwiapp"."""
    target = f"{operation['scope']} {operation['group'] or operation['organization']}"
    role = f" as {operation['role']}" if operation.get("role") else ""
    joiner = {"grant": "to", "set-role": "in", "revoke": "from"}[operation["action"]]
    return f"{operation['action']} {operation['email']} {joiner} {target}{role}"


def effect_visible(operation: dict[str, Any], member: Member | None) -> bool:
    if operation["action"] == "revoke":
        return member is None
    return member is not None and member.role.upper() == str(operation["role"]).upper()


def precondition_problem(operation: dict[str, Any], member: Member | None) -> str | None:
    """Return how the current state differs from the operation's precondition (None: it holds)."""
    before = operation["precondition"]
    target = f"{operation['scope']} {operation['group'] or operation['organization']}"
    email = operation["email"]
    if not before["member"]:
        if member is not None:
            return f"{email} is now a member of {target} as {member.role} (planned as no member)"
        return None
    if member is None:
        return f"{email} is no longer a member of {target} (planned as {before['role']})"
    if member.role != before["role"]:
        return f"{email}'s role in {target} is now {member.role}, not {before['role']}"
    return None


# ---------------------------------------------------------------------------------------------
# Reading state for many operations


class _Targets:
    """Read the state of the targets of a stream of operations, a chunk at a time."""

    def __init__(self, reader: StateReader) -> None:
        self.reader = reader

    def walk(self, operations: Iterable[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], Any]]:
        """Yield each operation with its person's current Member (None: no member), or a message
        saying why the target could not be read."""
        chunk: list[dict[str, Any]] = []
        for operation in operations:
            chunk.append(operation)
            if len(chunk) >= CHUNK_OPERATIONS:
                yield from self._chunk(chunk)
                chunk = []
        if chunk:
            yield from self._chunk(chunk)

    def _chunk(self, chunk: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], Any]]:
        targets = {_target(operation) for operation in chunk}
        states = self._read(targets)
        for operation in chunk:
            members = states[_target(operation)]
            if isinstance(members, str):
                yield operation, members
            else:
                yield operation, members.get(operation["email"])

    def _read(self, targets: set[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        states: dict[tuple[str, str], Any] = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(READ_WORKERS, len(targets))) as pool:
            futures = {pool.submit(self._members, target): target for target in targets}
            for future in concurrent.futures.as_completed(futures):
                states[futures[future]] = future.result()
        return states

    def _members(self, target: tuple[str, str]) -> Any:
        scope, name = target
        try:
            if scope == "group":
                state = self.reader.group(name)
            else:
                state = self.reader.organization(name, with_groups=False)
        except AuthError:
            raise
        except HelpctlError as error:
            return f"cannot read {scope} {name}: {error.message}"
        if state.members is None:
            return f"cannot read the members of {scope} {name}: {state.denied}"
        return state.members


def _target(operation: dict[str, Any]) -> tuple[str, str]:
    if operation["scope"] == "group":
        return ("group", operation["group"])
    return ("organization", operation["organization_id"] or operation["organization"])


# ---------------------------------------------------------------------------------------------
# One apply run


@dataclasses.dataclass
class _Attempt:
    """The outcome of one attempt of one operation, as a worker thread saw it."""

    outcome: str  # applied, already_in_effect, failed, rate_limited, not_applied, unknown, auth
    message: str = ""
    retry_after: float | None = None
    seconds: float = 0.0


@dataclasses.dataclass
class _Flight:
    operation: dict[str, Any]
    sent: float


class ApplyRun:
    """One `access apply` of one plan. Use `run()` once."""

    def __init__(
        self,
        plan_path: Path,
        *,
        mutations: AccessMutations,
        reader: StateReader,
        operator: Operator,
        settings: AccessSettings,
        store: CaseStore | None = None,
        resume: bool = False,
        confirm: Callable[[str], None] | None = None,
        progress: Callable[[Progress], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plan = PlanFile(plan_path)
        self.mutations = mutations
        self.reader = reader
        self.operator = operator
        self.settings = settings
        self.store = store
        self.resume = resume
        self.confirm = confirm
        self.progress = progress
        self.sleep = sleep
        self.clock = clock

        self.journal_path = companion(self.plan.path, JOURNAL_SUFFIX)
        self.results_path = companion(self.plan.path, RESULTS_SUFFIX)
        self.total = int(self.plan.header.get("summary", {}).get("operations", 0))
        self.limit = ConcurrencyLimit(settings.max_concurrency, settings.initial_concurrency, clock)
        self.report = ApplyReport(
            self.plan.id, str(self.plan.path), str(self.journal_path), str(self.results_path), self.total
        )
        self.approval: dict[str, Any] = {}

        self.state = journal_module.JournalState.empty(self.total)
        self._journal: journal_module.Journal | None = None
        self._audited: set[str] = set()  # "request id:outcome" of audit entries written before a resume
        self._audit_queue: queue.Queue[tuple[dict[str, Any], str, str] | None] = queue.Queue(maxsize=1000)
        self._audit_thread: threading.Thread | None = None
        self._audit_error: BaseException | None = None

        self._stopping: str | None = None
        self._auth_error: AuthError | None = None
        self._attempts: dict[int, list[int]] = {}  # index -> [rate limited, unanswered]
        self._unanswered_streak = 0
        self._started = 0.0
        self._finished_in_run = 0
        self._remaining = 0
        self._last_wait = 1.0  # seconds of the last Retry-After (or back-off) asked for
        self._ahead: collections.deque[dict[str, Any]] = collections.deque()  # journaled, not sent yet

    # ----- the steps -----

    def run(self) -> ApplyReport:
        begun = self.clock()
        content_hash = self.plan.check_unchanged()
        self.approval = check_approval(self.plan, content_hash, self.operator, self.settings)
        self.report.skipped_in_plan = int(self.plan.header.get("summary", {}).get("skipped", 0))
        self._open_journal(content_hash)
        try:
            self._start_audit()
            checked = self.clock()
            self._settle_unknown()
            dangerous = self._check_pending()
            if dangerous and self.confirm is not None:
                self.confirm(f"{dangerous} pending operation(s) are dangerous (see 'helpctl access plan show'); apply the plan?")
            self.report.seconds["checks"] = round(self.clock() - checked, 3)

            mutating = self.clock()
            try:
                self._dispatch()
            finally:
                self.report.seconds["mutations"] = round(self.clock() - mutating, 3)
            if self._auth_error is None and not self.report.interrupted:
                verifying = self.clock()
                self._verify()
                self.report.seconds["verify"] = round(self.clock() - verifying, 3)
        finally:
            try:
                self._stop_audit()
            finally:
                self._journal_close()
                self._write_results()
        self._finish(begun)
        if self._auth_error is not None:
            raise self._auth_error
        return self.report

    def _open_journal(self, content_hash: str) -> None:
        self._journal = journal_module.Journal(self.journal_path)
        self.state = journal_module.read_state(self.journal_path, self.total)
        if any(self.state.started) and not self.resume:
            self._journal.close()
            raise PreconditionFailed(
                f"plan {self.plan.id} was already applied, at least in part (journal {self.journal_path})",
                hint="finish it with 'helpctl access apply PLAN --resume'",
            )
        if self.state.content_hash not in (None, content_hash):
            self._journal.close()
            raise PreconditionFailed(f"journal {self.journal_path} belongs to another version of plan {self.plan.id}")
        self.report.done_before = self.state.count(journal_module.APPLIED)
        self._journal.append({"type": "run", "plan": self.plan.id, "content_hash": content_hash, "resume": self.resume})

    def _journal_close(self) -> None:
        if self._journal is not None:
            self._journal.close()

    def _operations(self, selected: Callable[[int], bool]) -> Iterator[dict[str, Any]]:
        for operation in self.plan.operations():
            if selected(operation["index"]):
                yield operation

    def _settle_unknown(self) -> None:
        """Settle operations sent in an earlier run whose outcome was never recorded."""
        unknown = journal_module.UNKNOWN
        if not self.state.count(unknown):
            return
        walker = _Targets(self.reader)
        for operation, member in walker.walk(self._operations(lambda index: self.state.status[index] == unknown)):
            if isinstance(member, str):
                raise PreconditionFailed(
                    f"cannot settle {describe(operation)}: {member}",
                    hint="check the platform and run --resume again; the operation is not sent blindly",
                )
            if effect_visible(operation, member):
                message = "settled on resume: the response to the earlier attempt was lost, and the effect is visible"
                self._end(operation, "applied", message)
                self._audit(operation, "applied", message)
                self.report.settled += 1
            else:
                self._end(operation, "not_applied", "settled on resume: the effect is not visible")

    def _check_pending(self) -> int:
        """Check the preconditions of every pending operation; return how many are dangerous."""
        problems: list[str] = []
        count = 0
        dangerous = 0
        pending = {journal_module.PENDING, journal_module.FAILED}
        walker = _Targets(self.reader)
        for operation, member in walker.walk(self._operations(lambda index: self.state.status[index] in pending)):
            if isinstance(member, str):
                problem = member
            else:
                problem = precondition_problem(operation, member)
            if problem:
                count += 1
                if len(problems) < MAX_LISTED:
                    problems.append(f"row {row_number(operation)}: {problem}")
            elif operation.get("dangerous"):
                dangerous += 1
        if count:
            raise StalePlan(problems, count)
        return dangerous

    # ----- dispatching -----

    def _pending_operations(self) -> Iterator[dict[str, Any]]:
        pending = {journal_module.PENDING, journal_module.FAILED}
        return self._operations(lambda index: self.state.status[index] in pending)

    def _dispatch(self) -> None:
        source = self._pending_operations()
        delayed: list[tuple[float, int, dict[str, Any]]] = []
        flights: dict[concurrent.futures.Future[_Attempt], _Flight] = {}
        self._remaining = sum(1 for value in self.state.status if value in (journal_module.PENDING, journal_module.FAILED))
        self._started = self.clock()
        last_progress = 0.0
        exhausted = False
        # Workers hand finished attempts over through this queue (cheaper than futures.wait).
        completions: queue.SimpleQueue[concurrent.futures.Future[_Attempt]] = queue.SimpleQueue()
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.limit.maximum, thread_name_prefix="helpctl-apply")
        try:
            while True:
                exhausted = self._fill(pool, flights, delayed, source, exhausted, completions)
                if not flights:
                    if self._stopping or (exhausted and not delayed):
                        break
                    self.sleep(max(0.0, min(delayed[0][0] - self.clock(), PROGRESS_SECONDS)))
                    continue
                timeout = PROGRESS_SECONDS
                if delayed:
                    timeout = max(0.0, min(timeout, delayed[0][0] - self.clock()))
                for future in _finished(completions, timeout):
                    flight = flights.pop(future)
                    self._handle(flight, future.result(), len(flights), delayed)
                if self.clock() - last_progress >= PROGRESS_SECONDS:
                    last_progress = self.clock()
                    self._report_progress(len(flights))
        except KeyboardInterrupt:
            self.report.interrupted = True
            self._stopping = "interrupted"
            self._drain(flights, delayed)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._unsent()
            self._report_progress(0)

    def _fill(
        self, pool: Any, flights: dict[Any, _Flight], delayed: list[Any], source: Iterator[dict[str, Any]], exhausted: bool, completions: Any
    ) -> bool:
        while not self._stopping and len(flights) < self.limit.current:
            operation = None
            if delayed and delayed[0][0] <= self.clock():
                operation = heapq.heappop(delayed)[2]
                self._start([operation])
            else:
                if not self._ahead and not exhausted:
                    exhausted = self._journal_ahead(source)
                if self._ahead:
                    operation = self._ahead.popleft()
            if operation is None:
                break
            future = pool.submit(self._attempt, operation)
            flights[future] = _Flight(operation, self.clock())
            future.add_done_callback(completions.put)
        return exhausted

    def _journal_ahead(self, source: Iterator[dict[str, Any]]) -> bool:
        """Take the next operations from the plan and make their `start` records durable at once.

        One fsync then covers JOURNAL_AHEAD operations instead of one. An operation journaled
        here but never sent (a crash, a stop) is settled on resume like any unanswered one, or
        marked not applied when the run stops normally. Return whether the plan is exhausted.
        """
        batch = list(itertools.islice(source, JOURNAL_AHEAD))
        self._start(batch)
        self._ahead.extend(batch)
        return len(batch) < JOURNAL_AHEAD

    def _start(self, operations: list[dict[str, Any]]) -> None:
        assert self._journal is not None
        for position, operation in enumerate(operations):
            record = {"type": "start", "op": operation["index"], "before": operation["precondition"]}
            self._journal.append(record, durable=position == len(operations) - 1)

    def _unsent(self) -> None:
        """Record the journaled operations that were never sent as not applied."""
        while self._ahead:
            self._end(self._ahead.popleft(), "not_applied", "not sent: the run stopped first")

    def _drain(self, flights: dict[Any, _Flight], delayed: list[Any]) -> None:
        """Wait for the attempts in flight and record them, after Ctrl-C."""
        for future in concurrent.futures.as_completed(list(flights)):
            flight = flights.pop(future)
            self._handle(flight, future.result(), len(flights), delayed)

    def _attempt(self, operation: dict[str, Any]) -> _Attempt:
        """Send one operation (in a worker thread) and classify what happened."""
        from helpctl.clients.platform_access import MutationRefused, OutcomeUnknown

        started = self.clock()
        try:
            self._send(operation)
        except RateLimited as error:
            return _Attempt("rate_limited", error.message, error.retry_after)
        except MutationRefused as error:
            return self._refused(operation, error)
        except OutcomeUnknown as error:
            return self._settle(operation, error.message)
        except AuthError as error:
            return _Attempt("auth", error.message)
        except ServiceError as error:
            return _Attempt("failed", error.message)
        return _Attempt("applied", seconds=self.clock() - started)

    def _send(self, operation: dict[str, Any]) -> None:
        action, scope = operation["action"], operation["scope"]
        email, role = operation["email"], operation["role"]
        if scope == "group":
            group = operation["group"]
            if action == "grant":
                self.mutations.grant_group(group, email, role, operation.get("responsibility"))
            elif action == "set-role":
                self.mutations.update_group(group, email, role, operation.get("responsibility") or "-")
            else:
                self.mutations.remove_group(group, email)
            return
        organization_id = operation["organization_id"]
        if action == "grant":
            self.mutations.grant_organization(organization_id, email, role)
        elif action == "set-role":
            self.mutations.update_organization(organization_id, email, role)
        else:
            self.mutations.remove_organization(organization_id, email)

    def _refused(self, operation: dict[str, Any], error: Any) -> _Attempt:
        reasons = SETTLED_BY_STATE[operation["action"]]
        if error.reason in reasons and not operation.get("resend"):
            member = self._read_member(operation)
            if not isinstance(member, str) and effect_visible(operation, member):
                return _Attempt("already_in_effect", error.platform_message)
        return _Attempt("failed", error.platform_message)

    def _settle(self, operation: dict[str, Any], message: str) -> _Attempt:
        """Decide an unanswered attempt by reading the state (never by sending it again blindly)."""
        if self.settings.settle_delay > 0:
            self.sleep(self.settings.settle_delay)
        member = self._read_member(operation)
        if isinstance(member, str):
            return _Attempt("unknown", f"{message}; {member}")
        if effect_visible(operation, member):
            return _Attempt("applied", f"response lost ({message}); the effect is visible")
        return _Attempt("not_applied", f"{message}; the effect is not visible")

    def _read_member(self, operation: dict[str, Any]) -> Member | None | str:
        scope, target = _target(operation)
        try:
            return self.reader.member(scope, target, operation["email"])
        except HelpctlError as error:
            return f"could not read the state: {error.message}"

    # ----- outcomes -----

    def _handle(self, flight: _Flight, attempt: _Attempt, still_in_flight: int, delayed: list[Any]) -> None:
        operation = flight.operation
        index = operation["index"]
        counts = self._attempts.setdefault(index, [0, 0]) if attempt.outcome in ("rate_limited", "not_applied") else None

        if attempt.outcome in ("applied", "already_in_effect", "failed"):
            self._unanswered_streak = 0
            self.limit.on_success(self.clock() - flight.sent, probe=self._may_probe())
            self._finish_operation(operation, attempt.outcome, attempt.message)
        elif attempt.outcome == "rate_limited":
            self.report.rate_limited += 1
            self.limit.on_rate_limited(still_in_flight)
            self._retry_later(operation, attempt, counts, 0, self.settings.rate_limit_retries, delayed)
        elif attempt.outcome == "not_applied":
            self._unanswered(attempt)
            self._retry_later(operation, attempt, counts, 1, self.settings.unknown_retries, delayed)
        elif attempt.outcome == "unknown":
            self._unanswered(attempt)
            self._end(operation, "unknown", attempt.message)
            self.report.note_failure(operation, "unknown", attempt.message)
        else:
            self._auth_error = AuthError(f"the platform rejected the token during apply: {attempt.message}")
            self._stopping = "the platform rejected the token"
            self._end(operation, "not_applied", attempt.message)

    def _unanswered(self, attempt: _Attempt) -> None:
        self.limit.on_error()
        self._unanswered_streak += 1
        if self._unanswered_streak >= MAX_CONSECUTIVE_UNANSWERED and not self._stopping:
            self._stopping = f"{self._unanswered_streak} attempts in a row got no usable answer (last: {attempt.message})"
            logger.warning("access apply stops: %s", self._stopping)

    def _retry_later(
        self, operation: dict[str, Any], attempt: _Attempt, counts: list[int] | None, slot: int, allowed: int, delayed: list[Any]
    ) -> None:
        assert counts is not None
        counts[slot] += 1
        self._end(operation, "not_applied", attempt.message)
        if counts[slot] > allowed:
            message = f"gave up after {counts[slot]} attempts: {attempt.message}"
            self._finish_operation(operation, "failed", message)
            return
        wait = attempt.retry_after if attempt.retry_after is not None else min(0.5 * 2 ** (counts[slot] - 1), 8.0)
        wait = min(wait, self.settings.max_retry_wait)
        self._last_wait = wait
        heapq.heappush(delayed, (self.clock() + wait, operation["index"], operation))

    def _may_probe(self) -> bool:
        """Probe above the ceiling only while the work left outlasts the last Retry-After."""
        elapsed = self.clock() - self._started
        rate = self._finished_in_run / elapsed if elapsed > 0 else 0.0
        remaining = self._remaining - self._finished_in_run
        if rate <= 0:
            return True
        return remaining / rate > self._last_wait

    def _finish_operation(self, operation: dict[str, Any], outcome: str, message: str) -> None:
        self._end(operation, outcome, message)
        self._finished_in_run += 1
        if outcome == "applied":
            self.report.applied += 1
        elif outcome == "already_in_effect":
            self.report.already_in_effect += 1
        else:
            self.report.failed += 1
            self.report.note_failure(operation, outcome, message)
        self._audit(operation, outcome, message)

    def _end(self, operation: dict[str, Any], outcome: str, message: str) -> None:
        index = operation["index"]
        assert self._journal is not None
        self._journal.append({"type": "end", "op": index, "outcome": outcome, "message": message}, durable=False)
        self.state.status[index] = journal_module.END_STATUS[outcome]
        if message:
            self.state.messages[index] = message
        else:
            self.state.messages.pop(index, None)
        if outcome == "already_in_effect":
            self.state.already_in_effect.add(index)

    # ----- results, audit and progress -----

    def _write_results(self) -> None:
        """Write the results CSV from the journal's state: one row per operation, its final outcome.

        Written whole after each run (streaming the plan), so a crash or a resume never leaves
        an operation missing or listed twice.
        """
        import os

        from helpctl import paths

        temporary = self.results_path.with_name(f".{self.results_path.name}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, paths.PRIVATE_FILE_MODE)
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(RESULTS_COLUMNS)
            for operation in self.plan.operations():
                index = operation["index"]
                writer.writerow((row_number(operation), describe(operation), self._outcome(index), self.state.messages.get(index, "")))
        os.replace(temporary, self.results_path)

    def _outcome(self, index: int) -> str:
        status = self.state.status[index]
        if status == journal_module.APPLIED:
            return "already_in_effect" if index in self.state.already_in_effect else "applied"
        if status == journal_module.PENDING:
            return "not_done"
        return journal_module.STATUS_NAMES[status]

    def _start_audit(self) -> None:
        if self.state.runs:
            self._audited = _audited_request_ids(self.plan.id)
        self._audit_thread = threading.Thread(target=self._audit_loop, name="helpctl-audit", daemon=True)
        self._audit_thread.start()
        audited = self.state.audited
        finished = (journal_module.APPLIED, journal_module.FAILED)
        if any(self.state.status[index] in finished and not audited[index] for index in range(self.total)):
            for operation in self._operations(lambda index: self.state.status[index] in finished and not audited[index]):
                outcome = "applied" if self.state.status[operation["index"]] == journal_module.APPLIED else "failed"
                self._audit(operation, outcome, "recorded on resume: the earlier run ended before its audit entry")

    def _audit(self, operation: dict[str, Any], outcome: str, message: str) -> None:
        self.state.audited[operation["index"]] = 1
        self._audit_queue.put((operation, outcome, message))

    def _audit_loop(self) -> None:
        from helpctl.audit import AuditLog

        log = AuditLog()
        approval = audit_approval(self.approval)
        while True:
            item = self._audit_queue.get()
            if item is None:
                return
            operation, outcome, message = item
            request_id = f"{self.plan.id}#{operation['index']}"
            if f"{request_id}:{outcome}" in self._audited:
                # An earlier run wrote this entry but died before the journal recorded it.
                continue
            try:
                log.append(
                    f"access.{operation['action']}",
                    operator=self.operator.email,
                    target=_audit_target(operation),
                    outcome=outcome,
                    approval=approval,
                    request_id=request_id,
                    detail={
                        "role": operation.get("role"),
                        "responsibility": operation.get("responsibility"),
                        "previous": operation["precondition"],
                        "flags": operation.get("flags", []),
                        "message": message,
                    },
                )
                assert self._journal is not None
                self._journal.append({"type": "audited", "op": operation["index"]}, durable=False)
            except Exception as error:  # the audit failing must stop the run, never pass silently
                self._audit_error = error
                self._stopping = f"the audit log failed: {error}"
                logger.error("access apply: audit append failed for %s: %s", describe(operation), error)

    def _stop_audit(self) -> None:
        if self._audit_thread is None:
            return
        self._audit_queue.put(None)
        self._audit_thread.join()
        if self._audit_error is not None:
            raise HelpctlError(
                f"the audit log failed while applying plan {self.plan.id}: {self._audit_error}",
                hint="fix the audit folder, then run --resume: finished operations get their audit entries then",
            )

    def _report_progress(self, in_flight: int) -> None:
        if self.progress is None:
            return
        elapsed = max(self.clock() - self._started, 1e-9)
        done = self._finished_in_run
        rate = done / elapsed
        remaining = self._remaining - done
        eta = remaining / rate if rate > 0 else None
        self.progress(
            Progress(
                total=self._remaining,
                done=done,
                applied=self.report.applied + self.report.already_in_effect,
                failed=self.report.failed,
                in_flight=in_flight,
                limit=self.limit.current,
                rate=rate,
                eta=eta,
                rate_limited=self.report.rate_limited,
            )
        )

    # ----- after the run -----

    def _verify(self) -> None:
        applied = journal_module.APPLIED
        walker = _Targets(self.reader)
        for operation, member in walker.walk(self._operations(lambda index: self.state.status[index] == applied)):
            if isinstance(member, str):
                self.report.unverified += 1
                self.report.note_failure(operation, "unverified", member)
                continue
            visible = effect_visible(operation, member)
            assert self._journal is not None
            if not visible or operation["index"] in self.state.not_visible:
                self._journal.append({"type": "verified", "op": operation["index"], "visible": visible}, durable=False)
            if not visible:
                self.report.not_visible += 1
                self.report.note_failure(operation, "not_visible", "applied, but the platform does not show the change")

    def _finish(self, begun: float) -> None:
        self.report.stopped = self._stopping if self._stopping != "interrupted" else None
        self.report.seconds["total"] = round(self.clock() - begun, 3)
        self.report.concurrency = {
            "initial": self.settings.initial_concurrency,
            "maximum": self.limit.maximum,
            "peak": round(self.limit.peak, 2),
            "final": self.limit.current,
            "ceiling": self.limit.ceiling,
            "decreases": self.limit.decreases,
        }
        self.report.unknown = self.state.count(journal_module.UNKNOWN)
        self.report.pending = self.state.count(journal_module.PENDING)
        if self.store is not None and self.approval.get("case"):
            note_in_case(
                self.store, self.approval["case"], self.operator.email, "access-applied",
                plan=self.plan.id, applied=self.report.applied, failed=self.report.failed,
                unknown=self.report.unknown, not_visible=self.report.not_visible,
                complete=self.report.complete, interrupted=self.report.interrupted,
            )


def _finished(completions: Any, timeout: float) -> list[Any]:
    """Wait up to `timeout` seconds for a finished attempt; return it with any others already finished."""
    try:
        finished = [completions.get(timeout=timeout)]
    except queue.Empty:
        return []
    while True:
        try:
            finished.append(completions.get_nowait())
        except queue.Empty:
            return finished


def _audited_request_ids(plan_id: str) -> set[str]:
    """Return "request id:outcome" of the audit entries an earlier run of this plan wrote."""
    from helpctl.audit import AuditLog

    prefix = plan_id + "#"
    found = set()
    for entry in AuditLog().entries():
        request_id = entry.get("request_id") or ""
        if request_id.startswith(prefix):
            found.add(f"{request_id}:{entry.get('outcome')}")
    return found


def _audit_target(operation: dict[str, Any]) -> dict[str, Any]:
    target = {"email": operation["email"], "scope": operation["scope"], "organization": operation["organization"]}
    if operation["group"]:
        target["group"] = operation["group"]
    return target
