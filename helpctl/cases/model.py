"""The case record kept in `case.yaml`.

Fields are added with defaults, never renamed in place: a file written by a newer helpctl
keeps the fields this version does not know in `extra`, and they are written back as
they were. `SCHEMA_VERSION` changes only with a migration in `migrations.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from helpctl.findings import Finding, isoformat, utc_now

from helpctl.cases.vocabulary import KINDS, LANGUAGES, STATUSES

SCHEMA_VERSION = 1
__all__ = ["KINDS", "LANGUAGES", "SCHEMA_VERSION", "STATUSES", "Case", "Event", "Person", "Subjects"]


@dataclasses.dataclass
class Person:
    email: str = ""
    name: str = ""

    def display(self) -> str:
        if self.name and self.email:
            return f"{self.name} <{self.email}>"
        return self.email or self.name


@dataclasses.dataclass
class Subjects:
    """The users, groups and organizations a request is about, besides the requester."""

    users: list[str] = dataclasses.field(default_factory=list)
    groups: list[str] = dataclasses.field(default_factory=list)
    organizations: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Event:
    at: str
    actor: str
    event: str
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Case:
    id: str
    profile: str
    subject: str
    requester: Person
    schema_version: int = SCHEMA_VERSION
    status: str = "open"
    kind: str = "question"
    body: str = ""
    language: str = "en"
    organization: str | None = None
    subjects: Subjects = dataclasses.field(default_factory=Subjects)
    created_at: str = dataclasses.field(default_factory=lambda: isoformat(utc_now()))
    updated_at: str = ""
    reported_at: str | None = None
    messages: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    attachments: list[str] = dataclasses.field(default_factory=list)
    notes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    findings: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    classification: dict[str, Any] | None = None
    issue: dict[str, Any] | None = None
    resolution: str | None = None
    timeline: list[Event] = dataclasses.field(default_factory=list)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def record(self, actor: str, event: str, **detail: Any) -> Event:
        """Append a timeline event; every change to a case goes through here."""
        entry = Event(at=isoformat(utc_now()), actor=actor, event=event, detail=detail)
        self.timeline.append(entry)
        self.updated_at = entry.at
        return entry

    def finding_objects(self) -> list[Finding]:
        return [Finding.from_dict(item) for item in self.findings]

    def put_finding(self, finding: Finding) -> Finding | None:
        """Store a finding, replacing the earlier one of the same check; return that one."""
        data = finding.to_dict()
        for index, existing in enumerate(self.findings):
            if existing.get("key") == finding.key:
                self.findings[index] = data
                return Finding.from_dict(existing)
        self.findings.append(data)
        return None

    def rule_fields(self) -> dict[str, Any]:
        """Return the case fields that classification rules may test."""
        return {
            "kind": self.kind,
            "subject": self.subject,
            "body": self.body,
            "text": f"{self.subject}\n{self.body}",
            "organization": self.organization,
            "requester": self.requester.email,
            "language": self.language,
            "status": self.status,
        }

    def search_text(self) -> str:
        parts = [self.id, self.subject, self.requester.email, self.requester.name, self.organization or ""]
        parts += self.subjects.users + self.subjects.groups + self.subjects.organizations
        parts.append(self.body[:2000])
        return "\n".join(parts).lower()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        extra = data.pop("extra")
        data.update(extra)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Case:
        known = {field.name for field in dataclasses.fields(cls)}
        values = {name: value for name, value in data.items() if name in known and name != "extra"}
        extra = {name: value for name, value in data.items() if name not in known}
        values["requester"] = Person(**_known(Person, values.get("requester") or {}))
        values["subjects"] = Subjects(**_known(Subjects, values.get("subjects") or {}))
        values["timeline"] = [Event(**_known(Event, item)) for item in values.get("timeline") or []]
        return cls(**values, extra=extra)


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {field.name for field in dataclasses.fields(cls)}
    return {name: value for name, value in data.items() if name in names}
