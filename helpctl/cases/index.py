"""A SQLite index of the cases for fast listing and search.

The case files stay the source of truth. Saving a case through the store updates its row
at once. Changes made behind helpctl's back (a case.yaml edited by hand, folders copied
from another machine) are found by a scan that compares every case folder's modification
time with the one recorded, re-reads the changed ones and drops rows of deleted folders.
A scan stats every folder (about 25 ms for 10,000 cases), so it runs when cases were added
or removed (the store folder's own modification time changed), when the last scan is
older than SCAN_INTERVAL_SECONDS, or when asked (`case list --refresh`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from helpctl.cases.model import Case

logger = logging.getLogger(__name__)

# In a folder of its own: SQLite creates and deletes journal files beside the database,
# which would otherwise change the store folder's modification time on every write.
INDEX_FILE = ".index/cases.sqlite3"
INDEX_VERSION = 2
SCAN_INTERVAL_SECONDS = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    id TEXT PRIMARY KEY,
    mtime_ns INTEGER NOT NULL,
    status TEXT, created_at TEXT, updated_at TEXT, requester TEXT, organization TEXT,
    subject TEXT, label TEXT, issue_url TEXT, profile TEXT, search TEXT, damaged TEXT
);
CREATE INDEX IF NOT EXISTS cases_created ON cases (created_at);
CREATE TABLE IF NOT EXISTS scan (id INTEGER PRIMARY KEY CHECK (id = 1), root_mtime_ns INTEGER, scanned_at REAL);
"""

COLUMNS = ("id", "status", "created_at", "updated_at", "requester", "organization", "subject", "label", "issue_url", "profile", "damaged")


@dataclass
class ListFilter:
    status: str | None = None
    requester: str | None = None
    organization: str | None = None
    text: str | None = None
    limit: int | None = None
    refresh: bool = False


class CaseIndex:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / INDEX_FILE

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        from helpctl.paths import ensure_private_dir

        ensure_private_dir(self.path.parent)
        fresh = not self.path.exists()
        connection = sqlite3.connect(self.path, timeout=10)
        try:
            if fresh:
                os.chmod(self.path, 0o600)
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version != INDEX_VERSION:
                connection.executescript("DROP TABLE IF EXISTS cases; DROP TABLE IF EXISTS scan;")
                connection.executescript(_SCHEMA)
                connection.execute(f"PRAGMA user_version = {INDEX_VERSION}")
            yield connection
            connection.commit()
        finally:
            connection.close()

    def update(self, case: Case, folder: Path) -> None:
        with self._connect() as connection:
            self._upsert(connection, case, folder.stat().st_mtime_ns)

    @staticmethod
    def _upsert(connection: sqlite3.Connection, case: Case, mtime_ns: int, damaged: str | None = None) -> None:
        label = (case.classification or {}).get("label")
        issue_url = (case.issue or {}).get("url")
        connection.execute(
            "INSERT OR REPLACE INTO cases VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                case.id, mtime_ns, case.status, case.created_at, case.updated_at, case.requester.email,
                case.organization, case.subject, label, issue_url, case.profile, case.search_text(), damaged,
            ),
        )

    def refresh_if_stale(self, connection: sqlite3.Connection, force: bool = False) -> int:
        """Scan the store when cases were added or removed, the last scan is old, or forced."""
        import time

        root_mtime_ns = self.root.stat().st_mtime_ns if self.root.is_dir() else 0
        recorded = connection.execute("SELECT root_mtime_ns, scanned_at FROM scan WHERE id = 1").fetchone()
        fresh = recorded is not None and recorded[0] == root_mtime_ns and time.time() - recorded[1] < SCAN_INTERVAL_SECONDS
        if fresh and not force:
            return 0

        changed = self.refresh(connection)
        connection.execute("INSERT OR REPLACE INTO scan VALUES (1, ?, ?)", (root_mtime_ns, time.time()))
        return changed

    def refresh(self, connection: sqlite3.Connection) -> int:
        """Re-read the case folders whose modification time changed; returns how many."""
        if not self.root.is_dir():
            return 0

        known = dict(connection.execute("SELECT id, mtime_ns FROM cases"))
        seen: set[str] = set()
        changed = 0
        for entry in os.scandir(self.root):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            seen.add(entry.name)
            mtime_ns = entry.stat().st_mtime_ns
            if known.get(entry.name) != mtime_ns:
                self._reindex(connection, entry.name, Path(entry.path), mtime_ns)
                changed += 1

        gone = set(known) - seen
        connection.executemany("DELETE FROM cases WHERE id = ?", [(case_id,) for case_id in gone])
        return changed + len(gone)

    def _reindex(self, connection: sqlite3.Connection, case_id: str, folder: Path, mtime_ns: int) -> None:
        from helpctl.cases.store import CASE_FILE, parse_case
        from helpctl.errors import HelpctlError

        try:
            case = parse_case(folder / CASE_FILE)
        except HelpctlError as error:
            logger.warning("case %s is not listed correctly: %s", case_id, error.message)
            connection.execute(
                "INSERT OR REPLACE INTO cases (id, mtime_ns, subject, damaged) VALUES (?,?,?,?)",
                (case_id, mtime_ns, "", error.message),
            )
            return
        self._upsert(connection, case, mtime_ns)

    def count(self, criteria: ListFilter) -> int:
        """Count the matching cases, ignoring the limit (the index was refreshed by `list`)."""
        clauses, values = self._where(criteria)
        query = "SELECT count(*) FROM cases" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        with self._connect() as connection:
            return int(connection.execute(query, values).fetchone()[0])

    @staticmethod
    def _where(criteria: ListFilter) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        values: list[Any] = []
        if criteria.status:
            clauses.append("status = ?")
            values.append(criteria.status)
        if criteria.requester:
            clauses.append("requester LIKE ?")
            values.append(f"%{criteria.requester.lower()}%")
        if criteria.organization:
            clauses.append("lower(organization) = ?")
            values.append(criteria.organization.lower())
        if criteria.text:
            clauses.append("search LIKE ? ESCAPE '\\'")
            escaped = criteria.text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            values.append(f"%{escaped}%")
        return clauses, values

    def list(self, criteria: ListFilter) -> list[dict[str, Any]]:
        clauses, values = self._where(criteria)
        query = f"SELECT {', '.join(COLUMNS)} FROM cases"
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY created_at DESC, id DESC"
        if criteria.limit:
            query += f" LIMIT {int(criteria.limit)}"

        with self._connect() as connection:
            self.refresh_if_stale(connection, force=criteria.refresh)
            return [dict(zip(COLUMNS, row)) for row in connection.execute(query, values)]
