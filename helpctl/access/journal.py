"""The apply journal: JSON Lines beside the plan, fsynced before each mutation is sent.

Apply makes a `start` record durable before it sends the mutation (for a few operations at a
time), so every mutation that may have reached the platform has one. An `end` record with the
outcome follows the platform's response. After a crash, a kill or Ctrl-C, the journal sets
every operation apart:

- no record: pending, never sent;
- `start` without `end`, or `end` with outcome `unknown`: possibly sent, with no record of
  whether it took effect (settled by reading the platform's state, never by sending it again
  blindly);
- `end` with `applied` or `already_in_effect`: done, never sent again;
- `end` with `failed`: refused by the platform (sent again only by --resume, after its
  precondition is checked);
- `end` with `not_applied` (HTTP 429, throttled, or settled as not applied): pending again.

`audited` records that the operation's audit entry was appended, and `verified` that its
effect was (or was not) visible when apply read the state back.

Several threads append at once. Each durable append waits for an fsync that covers it, and
one fsync covers every record written before it (group commit), so the cost of fsync is
shared. Only one apply may hold a journal: its file is locked while apply runs. A torn last
line (the process died while writing it) is ignored on reading.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpctl import paths
from helpctl.errors import PreconditionFailed
from helpctl.findings import isoformat, utc_now

JOURNAL_VERSION = 1

# Status of each operation, as `JournalState.status` stores it (one byte per operation).
PENDING = 0
UNKNOWN = 1
APPLIED = 2
FAILED = 3
STATUS_NAMES = {PENDING: "pending", UNKNOWN: "unknown", APPLIED: "applied", FAILED: "failed"}

END_STATUS = {
    "applied": APPLIED,
    "already_in_effect": APPLIED,
    "failed": FAILED,
    "not_applied": PENDING,
    "unknown": UNKNOWN,
}


class Journal:
    """An open journal: appends records, with group commit for durable ones."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        paths.ensure_private_dir(self.path.parent)
        self._descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, paths.PRIVATE_FILE_MODE)
        try:
            fcntl.flock(self._descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(self._descriptor)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                raise PreconditionFailed(
                    f"another helpctl process is applying this plan (journal {self.path} is locked)",
                    hint="wait for it to finish, then run with --resume if work remains",
                ) from error
            raise
        _drop_torn_line(self._descriptor, self.path)
        self._condition = threading.Condition()
        self._pending: list[bytes] = []
        self._appended = 0  # records appended so far (numbers them)
        self._durable = 0  # records known to be on disk: every record up to this number
        self._flushing = False
        self._closed = False

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def append(self, record: dict[str, Any], durable: bool = True) -> None:
        """Append one record; with `durable`, return only once it is fsynced."""
        line = json.dumps({"v": JOURNAL_VERSION, "at": isoformat(utc_now()), **record}, ensure_ascii=False)
        with self._condition:
            if self._closed:
                raise ValueError("the journal is closed")
            self._pending.append(line.encode("utf-8") + b"\n")
            self._appended += 1
            number = self._appended
            if not durable:
                return
            while self._durable < number:
                if self._flushing:
                    self._condition.wait()
                    continue
                self._flush_locked()

    def flush(self) -> None:
        """Make every record appended so far durable."""
        with self._condition:
            while self._pending or self._flushing:
                if self._flushing:
                    self._condition.wait()
                    continue
                self._flush_locked()

    def _flush_locked(self) -> None:
        """Write and fsync every pending record. Called with the condition held; releases it while writing."""
        batch, self._pending = self._pending, []
        # Every record appended so far is either on disk already or in this batch.
        target = self._appended
        self._flushing = True
        self._condition.release()
        try:
            os.write(self._descriptor, b"".join(batch))
            os.fsync(self._descriptor)
        finally:
            self._condition.acquire()
            self._flushing = False
            self._condition.notify_all()
        self._durable = target

    def close(self) -> None:
        with self._condition:
            if self._closed:
                return
        self.flush()
        with self._condition:
            self._closed = True
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
            os.close(self._descriptor)


def _drop_torn_line(descriptor: int, path: Path) -> None:
    """Cut a last line that a crash left without its newline, so new records start on a new line."""
    size = os.fstat(descriptor).st_size
    if size == 0:
        return
    with open(path, "rb") as reader:
        position = size
        while position > 0:
            step = min(4096, position)
            reader.seek(position - step)
            chunk = reader.read(step)
            if position == size and chunk.endswith(b"\n"):
                return
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                os.ftruncate(descriptor, position - step + cut + 1)
                return
            position -= step
    os.ftruncate(descriptor, 0)


@dataclasses.dataclass
class JournalState:
    """The status of each operation of a plan, as folded from its journal."""

    operations: int
    status: bytearray
    audited: bytearray
    started: bytearray  # 1 once an operation was sent at least once
    runs: int = 0
    plan_id: str | None = None
    content_hash: str | None = None
    messages: dict[int, str] = dataclasses.field(default_factory=dict)  # last non-empty message of each operation
    not_visible: set[int] = dataclasses.field(default_factory=set)
    already_in_effect: set[int] = dataclasses.field(default_factory=set)  # done, but not by this plan

    @classmethod
    def empty(cls, operations: int) -> JournalState:
        return cls(operations, bytearray(operations), bytearray(operations), bytearray(operations))

    def count(self, status: int) -> int:
        return self.status.count(status)

    def indexes(self, status: int) -> Iterator[int]:
        for index, value in enumerate(self.status):
            if value == status:
                yield index


def records(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the journal's records in order; a torn last line is skipped."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith("\n"):
                # The process died while writing this line, so it was never acknowledged.
                return
            if line.strip():
                yield _parse(line, number, path)


def _parse(line: str, number: int, path: Path) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError as error:
        raise PreconditionFailed(
            f"journal {path} is damaged at line {number}: {error}",
            hint="do not edit journals; restore it from a backup or settle the plan by hand",
        ) from error
    if not isinstance(record, dict):
        raise PreconditionFailed(f"journal {path} is damaged at line {number}: not a record")
    return record


def read_state(path: Path, operations: int) -> JournalState:
    """Fold the journal into one status per operation (memory: a few bytes per operation)."""
    state = JournalState.empty(operations)
    if not path.exists():
        return state

    for record in records(path):
        kind = record.get("type")
        if kind == "run":
            state.runs += 1
            state.plan_id = record.get("plan")
            state.content_hash = record.get("content_hash")
            continue
        index = record.get("op")
        if not isinstance(index, int) or not 0 <= index < operations:
            continue
        _fold(state, kind, index, record)
    return state


def _fold(state: JournalState, kind: Any, index: int, record: dict[str, Any]) -> None:
    if kind == "start":
        state.status[index] = UNKNOWN
        state.started[index] = 1
    elif kind == "end":
        outcome = str(record.get("outcome"))
        state.status[index] = END_STATUS.get(outcome, UNKNOWN)
        if outcome == "already_in_effect":
            state.already_in_effect.add(index)
        else:
            state.already_in_effect.discard(index)
        if record.get("message"):
            state.messages[index] = str(record["message"])
        else:
            state.messages.pop(index, None)
        state.audited[index] = 0
    elif kind == "audited":
        state.audited[index] = 1
    elif kind == "verified":
        if record.get("visible") is False:
            state.not_visible.add(index)
        else:
            state.not_visible.discard(index)
