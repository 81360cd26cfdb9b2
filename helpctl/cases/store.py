"""The case store: one private folder per case, written atomically under a lock.

Layout of `<cases dir>/<case id>/`: `case.yaml` (the record), `evidence/*.jsonl` (raw rows
of findings), `mail/` (original messages) and `attachments/`. Every file is 0600 and every
folder 0700. A write goes to a temporary file that is fsynced and renamed over the old one,
so a crash leaves either the old or the new record. A second helpctl process that wants to
change the same case waits for the lock for a few seconds and then gives up.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from helpctl import paths
from helpctl.cases.model import SCHEMA_VERSION, Case
from helpctl.errors import HelpctlError, PreconditionFailed, UsageError

logger = logging.getLogger(__name__)

CASE_FILE = "case.yaml"
LOCK_FILE = ".lock"
LOCK_WAIT_SECONDS = 10.0

# Crockford's base32 without the letters people misread (i, l, o, u).
ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
ID_RANDOM_CHARS = 6


class CaseFileError(HelpctlError):
    """A case file exists but cannot be read; it is reported and never overwritten."""

    kind = "case_file"


class CaseNotFound(UsageError):
    kind = "not_found"


def new_case_id(now: float | None = None) -> str:
    """Return `yymmdd-xxxxxx`: the UTC date and 30 random bits.

    Two engineers opening cases in the same second on different machines collide with a
    probability of about one in a billion; `CaseStore.create` also refuses to reuse a
    folder that exists, so a shared store never mixes two cases.
    """
    import secrets

    stamp = time.strftime("%y%m%d", time.gmtime(now))
    suffix = "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_RANDOM_CHARS))
    return f"{stamp}-{suffix}"


def write_private_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically with mode 0600."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, paths.PRIVATE_FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise

    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def dump_case(case: Case) -> bytes:
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = yaml.dump(case.to_dict(), Dumper=dumper, sort_keys=False, allow_unicode=True, width=100)
    return text.encode("utf-8")


def parse_case(path: Path) -> Case:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise CaseNotFound(f"case file {path} not found") from error
    except UnicodeDecodeError as error:
        raise CaseFileError(f"{path}: not UTF-8 text ({error.reason})", hint="restore the file from a backup") from error

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise CaseFileError(
            f"{where}: damaged case file: {error.problem or error.context}",
            hint="fix that line by hand; helpctl will not overwrite a file it cannot read",
        ) from error

    if not isinstance(data, dict) or "id" not in data:
        raise CaseFileError(f"{path}: damaged case file: not a case record", hint="restore the file from a backup")

    from helpctl.cases.migrations import migrate

    try:
        return Case.from_dict(migrate(data, path))
    except (TypeError, ValueError) as error:
        raise CaseFileError(f"{path}: damaged case file: {error}", hint="fix the field by hand") from error


class CaseStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or paths.cases_dir()

    def folder(self, case_id: str) -> Path:
        return self.root / case_id

    def ensure_root(self) -> Path:
        return paths.ensure_private_dir(self.root)

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(entry.name for entry in os.scandir(self.root) if entry.is_dir() and not entry.name.startswith("."))

    def resolve(self, reference: str) -> str:
        """Turn a case id or a unique prefix of one into the full id."""
        reference = reference.strip().lower()
        if not reference:
            raise UsageError("a case id is required", hint="see 'helpctl case list'")
        if (self.folder(reference) / CASE_FILE).is_file():
            return reference

        matches = [case_id for case_id in self.ids() if case_id.startswith(reference)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise CaseNotFound(f"no case matches {reference!r}", hint="see 'helpctl case list'")
        raise UsageError(f"{reference!r} matches {len(matches)} cases: {', '.join(matches[:5])}", hint="type more of the id")

    def create(self, case: Case) -> Case:
        self.ensure_root()
        for _ in range(20):
            try:
                os.mkdir(self.folder(case.id), paths.PRIVATE_DIR_MODE)
                break
            except FileExistsError:
                case.id = new_case_id()
        else:
            raise HelpctlError(f"could not find a free case id in {self.root}")

        case.schema_version = SCHEMA_VERSION
        case.updated_at = case.updated_at or case.created_at
        with self.locked(case.id):
            self._save(case)
        return case

    def load(self, reference: str) -> Case:
        case_id = self.resolve(reference)
        return parse_case(self.folder(case_id) / CASE_FILE)

    @contextlib.contextmanager
    def edit(self, reference: str) -> Iterator[Case]:
        """Lock a case, yield it for changes and save it when the block ends without error."""
        case_id = self.resolve(reference)
        with self.locked(case_id):
            case = parse_case(self.folder(case_id) / CASE_FILE)
            yield case
            self._save(case)

    @contextlib.contextmanager
    def locked(self, case_id: str) -> Iterator[None]:
        lock_path = self.folder(case_id) / LOCK_FILE
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, paths.PRIVATE_FILE_MODE)
        try:
            self._acquire(descriptor, case_id)
            try:
                yield
            finally:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
        finally:
            os.close(descriptor)

    def _acquire(self, descriptor: int, case_id: str) -> None:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                raise PreconditionFailed(
                    f"case {case_id} is being changed by another helpctl process",
                    hint="wait for it to finish and run the command again",
                )
            time.sleep(0.05)

    def _save(self, case: Case) -> None:
        folder = self.folder(case.id)
        write_private_file(folder / CASE_FILE, dump_case(case))
        from helpctl.cases.index import CaseIndex

        CaseIndex(self.root).update(case, folder)

    def private_subdir(self, case_id: str, name: str) -> Path:
        return paths.ensure_private_dir(self.folder(case_id) / name)

    def save_file(self, case_id: str, folder: str, name: str, data: bytes) -> str:
        """Store a file in a subfolder of the case; returns its path relative to the case."""
        target = self.private_subdir(case_id, folder) / _safe_name(name)
        stem, suffix, number = target.stem, target.suffix, 1
        while target.exists():
            number += 1
            target = target.with_name(f"{stem}-{number}{suffix}")
        write_private_file(target, data)
        return str(target.relative_to(self.folder(case_id)))

    def write_rows(self, case_id: str, name: str, rows: Iterable[Any]) -> tuple[str, int]:
        """Stream rows to `evidence/<name>.jsonl`; returns the relative path and the count."""
        folder = self.private_subdir(case_id, "evidence")
        target = folder / f"{_safe_name(name)}.jsonl"
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        count = 0
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, paths.PRIVATE_FILE_MODE)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False, default=str))
                handle.write("\n")
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        return str(target.relative_to(self.folder(case_id))), count


def _safe_name(name: str) -> str:
    cleaned = "".join(char if char.isalnum() or char in "._-@" else "_" for char in name).strip("._")
    return cleaned[:120] or "file"
