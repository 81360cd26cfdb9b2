"""File a parsed message in the case store as a new case, a reply to a case or a duplicate.

A reply finds its case through the Message-ID map in `<cases dir>/.message-ids.json`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpctl import paths
from helpctl.cases.model import Case, Subjects
from helpctl.cases.store import (
    CASE_FILE,
    LOCK_WAIT_SECONDS,
    CaseFileError,
    CaseNotFound,
    CaseStore,
    new_case_id,
    parse_case,
    write_private_file,
)
from helpctl.errors import PreconditionFailed
from helpctl.findings import isoformat, utc_now
from helpctl.intake.message import IncomingMessage
from helpctl.intake.text import extract_subjects, guess_kind

logger = logging.getLogger(__name__)

MESSAGE_MAP_FILE = ".message-ids.json"
MESSAGE_MAP_LOCK = ".message-ids.lock"
MESSAGE_MAP_VERSION = 1

# The values of `IntakeResult.action`.
ACTIONS = ("opened", "threaded", "reopened", "duplicate")
REOPEN_REASON = "reply received by e-mail"


@dataclasses.dataclass
class IntakeResult:
    """What `open_or_thread` did. `saved` lists the files written, relative to the case folder."""

    case: Case
    action: str
    saved: list[str] = dataclasses.field(default_factory=list)


# ---------------------------------------------------------------------------------------
# The Message-ID map


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`, waiting up to LOCK_WAIT_SECONDS for it."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, paths.PRIVATE_FILE_MODE)
    try:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                raise PreconditionFailed(
                    "another helpctl process is filing an e-mail in this case store",
                    hint="wait for it to finish and run the command again",
                )
            time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


class MessageIdMap:
    """Message-ID to case id for every message recorded in a case store.

    The file `.message-ids.json` stores `message_ids` (id to case id) and `cases` (case id
    to the size and modification time of its case.yaml when it was read). `refresh`
    re-reads every case file that changed, appeared or disappeared since, so the map
    follows the case files even when another command or a person edits them. Callers
    hold the intake lock while they use it.
    """

    def __init__(self, store: CaseStore) -> None:
        self.store = store
        self.path = store.root / MESSAGE_MAP_FILE
        self.message_ids: dict[str, str] = {}
        self.cases: dict[str, list[int]] = {}

    def load(self) -> None:
        """Read the map file. A missing or damaged file leaves the map empty, so `refresh` rebuilds it."""
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:
            logger.warning("rebuilding %s because it cannot be read: %s", self.path, error)
            return

        valid = (
            isinstance(data, dict)
            and data.get("version") == MESSAGE_MAP_VERSION
            and isinstance(data.get("message_ids"), dict)
            and isinstance(data.get("cases"), dict)
        )
        if not valid:
            logger.warning("rebuilding %s because its format is not version %d", self.path, MESSAGE_MAP_VERSION)
            return
        self.message_ids = {str(key): str(value) for key, value in data["message_ids"].items()}
        self.cases = {str(key): list(value) for key, value in data["cases"].items() if isinstance(value, list)}

    def refresh(self) -> bool:
        """Re-read the case files that changed since the map was written and return whether any did."""
        on_disk = {case_id: self._stamp(case_id) for case_id in self.store.ids()}
        on_disk = {case_id: stamp for case_id, stamp in on_disk.items() if stamp is not None}
        deleted = [case_id for case_id in self.cases if case_id not in on_disk]
        changed = [case_id for case_id, stamp in on_disk.items() if self.cases.get(case_id) != stamp]
        orphans = {case_id for case_id in self.message_ids.values() if case_id not in on_disk}

        for case_id in deleted:
            self._forget(case_id)
        for case_id in orphans:
            self._forget(case_id)
        for case_id in changed:
            self.read_case(case_id)
        return bool(deleted or changed or orphans)

    def rebuild(self) -> None:
        self.message_ids.clear()
        self.cases.clear()
        self.refresh()

    def read_case(self, case_id: str) -> None:
        """Record the message ids of one case as its file is now."""
        self._forget(case_id)
        stamp = self._stamp(case_id)
        if stamp is None:
            return

        try:
            case = parse_case(self.store.folder(case_id) / CASE_FILE)
        except (CaseFileError, CaseNotFound) as error:
            # Left out of `cases`, so the next refresh tries the file again.
            logger.warning("case %s is left out of the message-id map: %s", case_id, error.message)
            return

        for entry in case.messages:
            key = _entry_key(entry)
            if key:
                self.message_ids[key] = case_id
        self.cases[case_id] = stamp

    def find(self, message_id: str) -> str | None:
        return self.message_ids.get(message_id)

    def save(self) -> None:
        data = {"version": MESSAGE_MAP_VERSION, "message_ids": self.message_ids, "cases": self.cases}
        write_private_file(self.path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))

    def _forget(self, case_id: str) -> None:
        self.cases.pop(case_id, None)
        for key in [key for key, value in self.message_ids.items() if value == case_id]:
            del self.message_ids[key]

    def _stamp(self, case_id: str) -> list[int] | None:
        try:
            status = os.stat(self.store.folder(case_id) / CASE_FILE)
        except FileNotFoundError:
            return None
        return [status.st_size, status.st_mtime_ns]


def _entry_key(entry: dict[str, Any]) -> str | None:
    if entry.get("message_id"):
        return str(entry["message_id"])
    if entry.get("sha256"):
        return f"sha256:{entry['sha256']}"
    return None


# ---------------------------------------------------------------------------------------
# Opening and threading cases


def open_or_thread(
    store: CaseStore,
    message: IncomingMessage,
    raw: bytes,
    *,
    profile: str,
    actor: str,
    received_at: dt.datetime | None = None,
    known_groups: set[str] | None = None,
) -> IntakeResult:
    """File a parsed message in the store: a new case, a reply to a case, or a duplicate.

    A message is a reply to a case when its In-Reply-To or one of its References is the
    Message-ID of a message recorded in that case. A reply to a closed case reopens it,
    and a reply to a case waiting on the requester sets it back to open. A message whose
    own Message-ID (or, without one, whose content) is already recorded changes nothing
    and returns action "duplicate". `raw` is saved as the message's .eml file.
    """
    received_at = received_at or utc_now()
    store.ensure_root()
    with _exclusive_lock(store.root / MESSAGE_MAP_LOCK):
        message_map = MessageIdMap(store)
        message_map.load()
        if message_map.refresh() or not message_map.path.exists():
            message_map.save()

        duplicate_of = message_map.find(message.key())
        if duplicate_of:
            logger.info("message %s is already in case %s", message.key(), duplicate_of)
            return IntakeResult(case=store.load(duplicate_of), action="duplicate")

        thread_case_id = None
        for thread_id in message.thread_ids():
            thread_case_id = message_map.find(thread_id)
            if thread_case_id:
                break

        if thread_case_id:
            result = _add_to_case(store, thread_case_id, message, raw, actor=actor, received_at=received_at, known_groups=known_groups)
        else:
            result = _open_case(store, message, raw, profile=profile, actor=actor, received_at=received_at, known_groups=known_groups)

        message_map.read_case(result.case.id)
        message_map.save()
    logger.info("message %s %s case %s", message.key(), result.action, result.case.id)
    return result


def _request_text(message: IncomingMessage) -> str:
    """Return the text a request is read from: a forward's or an empty reply's quoted text counts."""
    text = message.body
    if message.forwarded or not text:
        text = f"{text}\n\n{message.quoted}".strip()
    return text


def _subjects_of(message: IncomingMessage, known_groups: set[str] | None) -> Subjects:
    text = f"{message.subject}\n{_request_text(message)}"
    return extract_subjects(text, known_groups, exclude=[message.from_.email])


def _open_case(
    store: CaseStore,
    message: IncomingMessage,
    raw: bytes,
    *,
    profile: str,
    actor: str,
    received_at: dt.datetime,
    known_groups: set[str] | None,
) -> IntakeResult:
    subjects = _subjects_of(message, known_groups)
    body = _request_text(message)
    case = Case(
        id=new_case_id(),
        profile=profile,
        subject=message.subject or "(no subject)",
        requester=message.from_,
        kind=guess_kind(f"{message.subject}\n{body}"),
        body=body,
        language=message.language,
        organization=subjects.organizations[0] if len(subjects.organizations) == 1 else None,
        subjects=subjects,
        reported_at=isoformat(message.date or received_at),
    )

    # The entry goes in before the files are saved, so a crash in between still leaves
    # the Message-ID recorded and a second import is reported as a duplicate.
    case.messages.append(_message_entry(message, received_at))
    case.record(actor, "opened", source="email", message_id=message.message_id)
    case = store.create(case)

    with store.edit(case.id) as case:
        saved = _save_message_files(store, case, message, raw)
    return IntakeResult(case=case, action="opened", saved=saved)


def _add_to_case(
    store: CaseStore,
    case_id: str,
    message: IncomingMessage,
    raw: bytes,
    *,
    actor: str,
    received_at: dt.datetime,
    known_groups: set[str] | None,
) -> IntakeResult:
    with store.edit(case_id) as case:
        action = "threaded"
        if case.status == "closed":
            case.record(actor, "reopened", reason=REOPEN_REASON, message_id=message.message_id, previous_resolution=case.resolution)
            case.status = "open"
            case.resolution = None
            action = "reopened"
        elif case.status == "waiting":
            case.record(actor, "status-changed", previous="waiting", status="open", reason=REOPEN_REASON)
            case.status = "open"

        added = _merge_subjects(case, _subjects_of(message, known_groups))
        case.messages.append(_message_entry(message, received_at))
        saved = _save_message_files(store, case, message, raw)
        case.record(actor, "message-added", source="email", message_id=message.message_id, file=saved[0], subjects_added=added)
    return IntakeResult(case=case, action=action, saved=saved)


def _merge_subjects(case: Case, found: Subjects) -> dict[str, list[str]]:
    """Add newly mentioned users, groups and organizations to a case and return what was added."""
    added: dict[str, list[str]] = {}
    for field in ("users", "groups", "organizations"):
        current = getattr(case.subjects, field)
        new = [item for item in getattr(found, field) if item not in current]
        current.extend(new)
        if new:
            added[field] = new

    if case.organization is None and len(case.subjects.organizations) == 1:
        case.organization = case.subjects.organizations[0]
    return added


def _message_entry(message: IncomingMessage, received_at: dt.datetime) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "in_reply_to": message.in_reply_to,
        "references": list(message.references),
        "from": {"name": message.from_.name, "email": message.from_.email},
        "to": [person.email for person in message.to],
        "cc": [person.email for person in message.cc],
        "date": isoformat(message.date) if message.date else None,
        "received_at": isoformat(received_at),
        "subject": message.subject,
        "file": None,
        "attachments": [],
        "dkim_spf_failed": message.dkim_spf_failed,
        "authentication_failures": message.authentication_failures,
        "sha256": message.sha256,
    }


def _save_message_files(store: CaseStore, case: Case, message: IncomingMessage, raw: bytes) -> list[str]:
    """Save the .eml file and the attachments of the case's last message entry and return their paths."""
    entry = case.messages[-1]
    number = len(case.messages)
    mail_file = store.save_file(case.id, "mail", f"{number}-{_safe_message_id(message.message_id)}.eml", raw)
    attachment_files = [store.save_file(case.id, "attachments", item.filename, item.data) for item in message.attachments]

    entry["file"] = mail_file
    entry["attachments"] = attachment_files
    case.attachments.extend(attachment_files)
    return [mail_file, *attachment_files]


def _safe_message_id(message_id: str | None) -> str:
    if not message_id:
        return "message"
    cleaned = re.sub(r"[^A-Za-z0-9._@-]+", "_", message_id.strip("<>")).strip("._")
    return cleaned[:80] or "message"
