"""The audit log: every change helpctl makes, as JSON Lines chained by hashes.

Each entry carries its sequence number, the hash of the entry before it and its own hash
(SHA-256 of the entry's canonical JSON without the `hash` field). Editing, deleting,
inserting or reordering an entry breaks the chain at that line. Cutting the tail (or the
whole file) is caught by the anchor: a small file beside the log that records the last
sequence number and hash, signed with HMAC-SHA256 under a key kept in the OS keyring (or
given in HELPCTL_AUDIT_KEY). Without a key the anchor is unsigned, and `verify` says that
someone able to rewrite both files could go unnoticed.

Writers take an exclusive lock on `audit.lock`, so concurrent helpctl processes append in
order. Entries are fsynced before the anchor moves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpctl import paths
from helpctl.findings import isoformat, utc_now

AUDIT_VERSION = 1
LOG_FILE = "audit.jsonl"
ANCHOR_FILE = "audit.anchor.json"
LOCK_FILE = "audit.lock"
KEY_ENV = "HELPCTL_AUDIT_KEY"
KEYRING_ENTRY = "audit-key"
GENESIS = "0" * 64


def audit_dir() -> Path:
    return paths.data_dir() / "audit"


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(entry: dict[str, Any]) -> str:
    body = {key: value for key, value in entry.items() if key != "hash"}
    return hashlib.sha256(_canonical(body)).hexdigest()


def _signature(key: bytes | None, sequence: int, head: str) -> str | None:
    if key is None:
        return None
    return hmac.new(key, f"{sequence}:{head}".encode(), hashlib.sha256).hexdigest()


def load_key(create: bool = False) -> bytes | None:
    """Return the anchor's signing key: HELPCTL_AUDIT_KEY, else the keyring (made on first use)."""
    value = os.environ.get(KEY_ENV, "").strip()
    if value:
        return value.encode("utf-8")

    from helpctl import credentials

    try:
        keyring = credentials.keyring_backend()
        stored = keyring.get_password(credentials.KEYRING_SERVICE, KEYRING_ENTRY)
        if stored:
            return stored.encode("utf-8")
        if create:
            import secrets

            stored = secrets.token_hex(32)
            keyring.set_password(credentials.KEYRING_SERVICE, KEYRING_ENTRY, stored)
            # Some backends (the null keyring) accept a password and keep nothing; a key
            # that cannot be read back would make every later check fail.
            if keyring.get_password(credentials.KEYRING_SERVICE, KEYRING_ENTRY) == stored:
                return stored.encode("utf-8")
    except credentials.KeyringUnavailable:
        return None
    except Exception:  # a locked or broken keyring leaves the anchor unsigned
        return None
    return None


@dataclasses.dataclass
class Problem:
    line: int | None
    message: str


@dataclasses.dataclass
class Verification:
    entries: int
    problems: list[Problem]
    signed: bool

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog:
    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or audit_dir()
        self.path = self.folder / LOG_FILE
        self.anchor_path = self.folder / ANCHOR_FILE

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        paths.ensure_private_dir(self.folder)
        descriptor = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, paths.PRIVATE_FILE_MODE)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)

    def _last_entry(self) -> dict[str, Any] | None:
        """Read the last line without reading the whole log (the log only grows)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        with open(self.path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            position = handle.tell()
            chunk = b""
            while position > 0 and chunk.count(b"\n") < 2:
                step = min(4096, position)
                position -= step
                handle.seek(position)
                chunk = handle.read(step) + chunk
        lines = [line for line in chunk.splitlines() if line.strip()]
        return json.loads(lines[-1]) if lines else None

    def append(
        self,
        action: str,
        *,
        operator: str,
        target: dict[str, Any],
        outcome: str,
        approval: dict[str, Any] | None = None,
        request_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append one entry; returns it with its sequence number and hash."""
        with self._locked():
            last = self._last_entry()
            entry: dict[str, Any] = {
                "v": AUDIT_VERSION,
                "seq": (last["seq"] + 1) if last else 1,
                "at": isoformat(utc_now()),
                "operator": operator,
                "action": action,
                "target": target,
                "outcome": outcome,
                "approval": approval,
                "request_id": request_id,
                "detail": detail or {},
                "prev": last["hash"] if last else GENESIS,
            }
            entry["hash"] = entry_hash(entry)
            self._write_line(entry)
            self._write_anchor(entry["seq"], entry["hash"])
        return entry

    def _write_line(self, entry: dict[str, Any]) -> None:
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, paths.PRIVATE_FILE_MODE)
        with os.fdopen(descriptor, "ab") as handle:
            handle.write(_canonical(entry) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _write_anchor(self, sequence: int, head: str) -> None:
        from helpctl.cases.store import write_private_file

        key = load_key(create=True)
        anchor = {"v": AUDIT_VERSION, "seq": sequence, "hash": head, "at": isoformat(utc_now()), "signature": _signature(key, sequence, head)}
        write_private_file(self.anchor_path, json.dumps(anchor, sort_keys=True).encode("utf-8"))

    def entries(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)

    def verify(self) -> Verification:
        """Check the chain line by line and the anchor; the first problem names its line."""
        problems: list[Problem] = []
        previous_hash, expected_seq, count = GENESIS, 1, 0
        if self.path.exists():
            with open(self.path, encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    problem = _check_line(line, number, previous_hash, expected_seq)
                    if problem:
                        problems.append(problem)
                        break
                    entry = json.loads(line)
                    previous_hash, expected_seq, count = entry["hash"], entry["seq"] + 1, count + 1

        signed = self._check_anchor(problems, count, previous_hash)
        return Verification(count, problems, signed)

    def _check_anchor(self, problems: list[Problem], count: int, head: str) -> bool:
        if not self.anchor_path.exists():
            if count:
                problems.append(Problem(None, f"the anchor {self.anchor_path} is missing"))
            return False
        try:
            anchor = json.loads(self.anchor_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            problems.append(Problem(None, f"the anchor {self.anchor_path} cannot be read: {error}"))
            return False

        key = load_key()
        signature = anchor.get("signature")
        if signature is not None and (key is None or not hmac.compare_digest(signature, _signature(key, anchor["seq"], anchor["hash"]) or "")):
            problems.append(Problem(None, "the anchor's signature does not match (wrong key, or the anchor was rewritten)"))
        if problems:
            return signature is not None
        if anchor.get("seq", 0) > count:
            problems.append(Problem(count + 1, f"the log ends at entry {count} but the anchor records {anchor['seq']}: entries were cut from the end"))
        elif anchor.get("seq") != count or anchor.get("hash") != head:
            problems.append(Problem(anchor.get("seq", 0) + 1, f"entries after {anchor.get('seq')} are not covered by the anchor"))
        return signature is not None


def _check_line(line: str, number: int, previous_hash: str, expected_seq: int) -> Problem | None:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return Problem(number, "not valid JSON")
    if not isinstance(entry, dict) or "hash" not in entry:
        return Problem(number, "not an audit entry")
    if entry_hash(entry) != entry["hash"]:
        return Problem(number, "the entry was edited (its hash does not match its content)")
    if entry.get("prev") != previous_hash:
        return Problem(number, "the chain is broken here: an entry before it was deleted, inserted or moved")
    if entry.get("seq") != expected_seq:
        return Problem(number, f"sequence number {entry.get('seq')} where {expected_seq} was expected")
    return None
