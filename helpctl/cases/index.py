"""A SQLite index of the cases for fast listing and search.

The case files stay the source of truth: the index is refreshed from any case folder whose
modification time differs from the one recorded, and rows of deleted folders are dropped,
so a store edited by hand or copied from another machine is listed correctly. Saving a
case through the store updates its row at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpctl.cases.model import Case

logger = logging.getLogger(__name__)

INDEX_FILE = ".index.sqlite3"
INDEX_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    id TEXT PRIMARY KEY,
    mtime_ns INTEGER NOT NULL,
    status TEXT, created_at TEXT, updated_at TEXT, requester TEXT, organization TEXT,
    subject TEXT, label TEXT, issue_url TEXT, profile TEXT, search TEXT, damaged TEXT
);
CREATE INDEX IF NOT EXISTS cases_created ON cases (created_at);
"""

COLUMNS = ("id", "status", "created_at", "updated_at", "requester", "organization", "subject", "label", "issue_url", "profile", "damaged")


@dataclass
class ListFilter:
    status: str | None = None
    requester: str | None = None
    organization: str | None = None
    text: str | None = None
    limit: int | None = None


class CaseIndex:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / INDEX_FILE

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        from helpctl.paths import ensure_private_dir

        ensure_private_dir(self.root)
        fresh = not self.path.exists()
        connection = sqlite3.connect(self.path, timeout=10)
        try:
            if fresh:
                os.chmod(self.path, 0o600)
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version != INDEX_VERSION:
                connection.executescript("DROP TABLE IF EXISTS cases;")
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

    def list(self, criteria: ListFilter) -> list[dict[str, Any]]:
        clauses, values = [], []
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

        query = f"SELECT {', '.join(COLUMNS)} FROM cases"
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY created_at DESC, id DESC"
        if criteria.limit:
            query += f" LIMIT {int(criteria.limit)}"

        with self._connect() as connection:
            self.refresh(connection)
            return [dict(zip(COLUMNS, row)) for row in connection.execute(query, values)]
