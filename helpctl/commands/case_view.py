"""The readable view of one case, shared by `case show` and the demo."""

from __future__ import annotations

from pathlib import Path

from helpctl.cases.model import Case
from helpctl.output import Output

OUTCOME_MARKS = {
    "ok": "ok",
    "empty": "empty",
    "partial": "PARTIAL",
    "truncated": "TRUNCATED",
    "failed": "FAILED",
    "timed_out": "TIMED OUT",
    "rate_limited": "RATE LIMITED",
    "skipped": "skipped",
}


def render_case(output: Output, case: Case, folder: Path, clocks: list[dict] | None = None) -> None:
    _header(output, case, folder)
    for clock in clocks or []:
        output.line(f"{clock['name']}: {clock['summary']}")
    _request(output, case)
    _findings(output, case)
    _classification(output, case)
    _timeline(output, case)


def _header(output: Output, case: Case, folder: Path) -> None:
    subjects = case.subjects
    output.fields(
        [
            ("case", case.id),
            ("subject", case.subject),
            ("status", case.status + (f" ({case.resolution})" if case.resolution else "")),
            ("requester", case.requester.display()),
            ("kind", case.kind),
            ("language", case.language),
            ("organization", case.organization),
            ("groups", ", ".join(subjects.groups)),
            ("users", ", ".join(subjects.users)),
            ("reported", case.reported_at),
            ("opened", case.created_at),
            ("profile", case.profile),
            ("issue", (case.issue or {}).get("url")),
            ("folder", str(folder)),
        ]
    )


def _request(output: Output, case: Case) -> None:
    if case.body.strip():
        output.line()
        output.line("Request:")
        for line in case.body.strip().splitlines()[:40]:
            output.line(f"  {line}")
    if case.attachments:
        output.line(f"Attachments: {', '.join(case.attachments)}")
    for note in case.notes:
        output.line(f"Note ({note.get('actor')}, {note.get('at')}): {note.get('text')}")


def _findings(output: Output, case: Case) -> None:
    if not case.findings:
        return
    output.line()
    rows = [
        (item.get("source"), item.get("check"), OUTCOME_MARKS.get(item.get("outcome", ""), item.get("outcome")), item.get("summary"))
        for item in case.findings
    ]
    output.table(["source", "check", "outcome", "summary"], rows, title="Findings")


def _classification(output: Output, case: Case) -> None:
    classification = case.classification
    if not classification:
        return
    output.line()
    override = classification.get("override")
    label = classification.get("label") or "none"
    output.line(f"Classification: {label}" + (f" (override: {override.get('reason')})" if override else ""))
    for rule in classification.get("rules", []):
        behind = ", ".join(rule.get("findings") or []) or "case fields"
        output.line(f"  {rule['label']:<9} {rule['name']}: {rule.get('description', '')} [{behind}]")


def _timeline(output: Output, case: Case) -> None:
    output.line()
    output.line("Timeline:")
    for event in case.timeline:
        what = event.event
        if event.event == "probed" and event.detail.get("source"):
            what = f"probed {event.detail['source']}"
        elif event.event in ("classified", "filed") and (event.detail.get("label") or event.detail.get("url")):
            what = f"{event.event} {event.detail.get('label') or event.detail.get('url')}"
        output.line(f"  {event.at}  {event.actor}  {what}")
