"""Follow filed issues: record what changed on GitLab in each case, and list owed updates.

`sync_case` reads a case's filed issue (state, labels, assignees, milestone) and the notes
posted since the last sync, and records each change once as a timeline event:
`issue-closed`, `issue-reopened`, `issue-labels`, `issue-assignee`, `issue-milestone` and
`issue-comment`. A note by a developer who was consulted (`helpctl consult`) is recorded
as `consultation-answered` instead. The issue as last seen and the sync cursor are kept in
`case.issue` (`state`, `labels`, `assignees`, `milestone`, `synced_at`, `last_note`), so a
second sync records nothing new. GitLab is read without the case lock, and the changes are
compared and recorded in one locked edit, so two syncs at once record each change once.

Notes that helpctl posts itself end with a hidden `<!-- helpctl-note: ... -->` line and
are never recorded as comments, and system notes (such as "closed") are skipped because
the state change is recorded from the issue itself.

A case is owed an update when the issue changed since the requester's last notification
(`notify.last_notification`), or when a response-time clock (`sla.clocks`) is due soon or
breached. `sync_cases` drafts the message for each (`resolved` when the issue was closed),
and `send_updates` sends the drafts with `notify.send`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from helpctl.cases.model import Case, Event
from helpctl.cases.store import CaseStore
from helpctl.errors import HelpctlError, PreconditionFailed
from helpctl.findings import isoformat, utc_now

if TYPE_CHECKING:
    from helpctl.config.settings import Profile

logger = logging.getLogger(__name__)

NOTE_MARKER_PREFIX = "helpctl-note:"
EXCERPT_CHARS = 200
SOURCE = "gitlab"

# Issue events that mean the requester may be owed news. Only the ones that sync reads
# from GitLab count (detail source "gitlab"); changes that helpctl makes itself do not.
UPDATE_EVENTS = ("issue-closed", "issue-reopened", "issue-labels", "issue-assignee", "issue-milestone", "issue-comment")

# Sentences added to an update's note for each kind of change, in the case's language.
_CHANGE_SENTENCES = {
    "en": {
        "issue-closed": "The development team marked the issue as resolved.",
        "issue-reopened": "The development team reopened the issue and is working on it again.",
        "milestone-set": "The work is planned for milestone {milestone}.",
        "milestone-removed": "The work is no longer planned for a specific milestone.",
        "issue-assignee": "A developer is now assigned to the issue.",
        "issue-labels": "The development team updated the issue's classification.",
        "issue-comment": "The development team added comments to the issue.",
        "no-change": "We are still working on your case and will write to you again as soon as there is news.",
    },
    "es": {
        "issue-closed": "El equipo de desarrollo marcó el issue como resuelto.",
        "issue-reopened": "El equipo de desarrollo reabrió el issue y está trabajando de nuevo en él.",
        "milestone-set": "El trabajo está planeado para el hito {milestone}.",
        "milestone-removed": "El trabajo ya no está planeado para un hito específico.",
        "issue-assignee": "Un desarrollador tiene ahora asignado el issue.",
        "issue-labels": "El equipo de desarrollo actualizó la clasificación del issue.",
        "issue-comment": "El equipo de desarrollo agregó comentarios al issue.",
        "no-change": "Seguimos trabajando en su caso y le escribiremos de nuevo en cuanto haya novedades.",
    },
}


def note_marker(case_id: str) -> str:
    """Return a new hidden line that marks a note as posted by helpctl for `case_id`.

    The random part makes each marker unique, so a note can be found again after a
    request whose effect is unknown.
    """
    return f"<!-- {NOTE_MARKER_PREFIX} {case_id} {secrets.token_hex(4)} -->"


def is_helpctl_note(body: str | None) -> bool:
    return any(line.strip().startswith(f"<!-- {NOTE_MARKER_PREFIX}") for line in (body or "").splitlines())


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """Return `text` on one line, without helpctl's marker lines, cut at `limit` characters."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("<!--")]
    flat = re.sub(r"\s+", " ", " ".join(lines)).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


# ----- results -----


@dataclasses.dataclass
class CaseSync:
    """The events one case's sync recorded, or in `error` why the case could not be synced."""

    case_id: str
    issues: list[int] = dataclasses.field(default_factory=list)
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    error: HelpctlError | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case_id,
            "issues": list(self.issues),
            "events": list(self.events),
            "error": self.error.as_dict() if self.error else None,
        }


@dataclasses.dataclass
class OwedUpdate:
    """A case whose requester is owed a message, with the drafted message or why there is none."""

    case_id: str
    template: str
    reasons: list[str]
    note: str | None = None
    draft: Any = None
    problem: str | None = None
    sent: Any = None
    send_error: HelpctlError | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case_id,
            "template": self.template,
            "reasons": list(self.reasons),
            "note": self.note,
            "draft": _plain(self.draft),
            "problem": self.problem,
            "sent": _plain(self.sent),
            "send_error": self.send_error.as_dict() if self.send_error else None,
        }


@dataclasses.dataclass
class SyncReport:
    synced: list[CaseSync] = dataclasses.field(default_factory=list)
    owed: list[OwedUpdate] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> list[CaseSync]:
        return [item for item in self.synced if item.error is not None]

    @property
    def send_failures(self) -> list[OwedUpdate]:
        return [item for item in self.owed if item.send_error is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "synced": [item.to_dict() for item in self.synced],
            "owed": [item.to_dict() for item in self.owed],
            "failed": [item.case_id for item in self.failed],
        }


def _plain(value: Any) -> Any:
    """Turn a result object from `notify` into JSON-ready data."""
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    if callable(getattr(value, "as_dict", None)):
        return value.as_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return {name: item for name, item in vars(value).items() if not name.startswith("_")}


# ----- choosing the cases -----


def followed_cases(store: CaseStore, references: Iterable[str] = (), *, profile_name: str | None = None) -> list[str]:
    """Resolve `references`, or list every case that is not closed and follows an issue.

    A case follows an issue when it has a filed (or linked) issue or an open consultation.
    With `profile_name`, only the cases opened under that profile are listed, because
    their issues live in that profile's GitLab project.
    """
    references = list(references)
    if references:
        return list(dict.fromkeys(store.resolve(reference) for reference in references))

    found = []
    for case_id in store.ids():
        try:
            case = store.load(case_id)
        except HelpctlError as error:
            logger.warning("case %s is skipped by sync: %s", case_id, error.message)
            continue
        if case.status == "closed" or (profile_name and case.profile != profile_name):
            continue
        if _targets(case):
            found.append(case.id)
    return found


def _targets(case: Case) -> dict[int, str]:
    """Return the issues a case follows: iid to "filed" or "consultation"."""
    targets: dict[int, str] = {}
    consultation_issue = case.extra.get("consultation_issue") or {}
    if consultation_issue.get("iid") and _open_consultations(case, consultation_issue["iid"]):
        targets[int(consultation_issue["iid"])] = "consultation"
    if case.issue and case.issue.get("iid"):
        targets[int(case.issue["iid"])] = "filed"
    return targets


def _open_consultations(case: Case, iid: int) -> list[dict[str, Any]]:
    return [
        item
        for item in case.extra.get("consultations") or []
        if item.get("status") == "open" and int(item.get("issue") or 0) == int(iid)
    ]


# ----- syncing one case -----


def sync_case(store: CaseStore, case_id: str, client: Any, actor: str, *, profile: Profile | None = None) -> CaseSync:
    """Read the issues that case `case_id` follows and record what changed, once.

    Raises PreconditionFailed when the case follows no issue or belongs to another
    profile, and helpctl's service errors when GitLab fails, leaving the case unchanged.
    """
    case = store.load(case_id)
    _check_profile(case, profile)
    targets = _targets(case)
    if not targets:
        raise PreconditionFailed(
            f"case {case.id} follows no GitLab issue",
            hint=f"file it with 'helpctl file {case.id}' or link it with 'helpctl case link {case.id} --issue IID'",
        )

    # Taken before reading, so a note posted while the sync runs is newer than the cursor.
    started = isoformat(utc_now())
    issue = None
    notes: dict[int, list[dict[str, Any]]] = {}
    for iid, role in targets.items():
        if role == "filed":
            issue = client.get_issue(iid)
        cursor = _cursor_holder(case, role)
        notes[iid] = client.issue_notes(iid, after_id=cursor.get("last_note"), since=_since(cursor))

    with store.edit(case.id) as fresh:
        events = _apply(fresh, targets, issue, notes, actor, started)
    return CaseSync(case.id, list(targets), events)


def _check_profile(case: Case, profile: Profile | None) -> None:
    if profile is None or not profile.name or case.profile == profile.name:
        return
    raise PreconditionFailed(
        f"case {case.id} was opened under profile {case.profile!r}, not {profile.name!r}",
        hint=f"sync it with --profile {case.profile}",
    )


def _cursor_holder(case: Case, role: str) -> dict[str, Any]:
    """Return the dict that keeps the sync cursor of the filed or the consultation issue."""
    if role == "filed":
        return case.issue if case.issue is not None else {}
    return case.extra.get("consultation_issue") or {}


def _since(cursor: dict[str, Any]) -> dt.datetime | None:
    """Return the time after which notes are new, for a cursor that has no note id yet."""
    for name in ("synced_at", "linked_at", "filed_at", "created_at"):
        value = cursor.get(name)
        if value:
            try:
                return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                logger.warning("ignoring the unreadable time %s=%r in a case's issue record", name, value)
    return None


def _apply(
    case: Case,
    targets: dict[int, str],
    issue: dict[str, Any] | None,
    notes: dict[int, list[dict[str, Any]]],
    actor: str,
    started: str,
) -> list[dict[str, Any]]:
    """Record the changes against the case as it is now, under the lock.

    `started` is when the sync began reading GitLab, and it becomes `synced_at`.
    """
    events: list[Event] = []
    current = _targets(case)
    if issue is not None and current.get(int(issue["iid"])) == "filed":
        events += _record_issue_changes(case, issue, actor)

    for iid, role in targets.items():
        if current.get(iid) != role:
            logger.info("case %s stopped following issue #%s during the sync; its notes are not recorded", case.id, iid)
            continue
        cursor = _cursor_holder(case, role)
        fresh_notes = [note for note in notes.get(iid, []) if int(note["id"]) > int(cursor.get("last_note") or 0)]
        events += _record_notes(case, iid, fresh_notes, actor)
        if fresh_notes:
            cursor["last_note"] = max(int(note["id"]) for note in fresh_notes)
        cursor["synced_at"] = started
    return [{"event": event.event, **event.detail} for event in events]


def _record_issue_changes(case: Case, issue: dict[str, Any], actor: str) -> list[Event]:
    snapshot = case.issue or {}
    iid = issue["iid"]
    events = []

    before_state = snapshot.get("state") or "opened"
    if issue["state"] != before_state and "closed" in (issue["state"], before_state):
        if issue["state"] == "closed":
            events.append(case.record(actor, "issue-closed", source=SOURCE, iid=iid, closed_at=issue.get("closed_at")))
        else:
            events.append(case.record(actor, "issue-reopened", source=SOURCE, iid=iid))

    before_labels = list(snapshot.get("labels") or [])
    added = [name for name in issue["labels"] if name not in before_labels]
    removed = [name for name in before_labels if name not in issue["labels"]]
    if added or removed:
        events.append(case.record(actor, "issue-labels", source=SOURCE, iid=iid, added=added, removed=removed, labels=issue["labels"]))

    before_assignees = _assignees(snapshot)
    if sorted(before_assignees) != sorted(issue["assignees"]):
        events.append(
            case.record(
                actor, "issue-assignee", source=SOURCE, iid=iid, previous=before_assignees,
                assignees=issue["assignees"], assignee=issue["assignee"],
            )
        )

    if snapshot.get("milestone") != issue.get("milestone"):
        events.append(
            case.record(actor, "issue-milestone", source=SOURCE, iid=iid, previous=snapshot.get("milestone"), milestone=issue.get("milestone"))
        )

    snapshot.update(
        state=issue["state"],
        labels=list(issue["labels"]),
        assignee=issue["assignee"],
        assignees=list(issue["assignees"]),
        milestone=issue.get("milestone"),
    )
    if issue.get("web_url"):
        snapshot["url"] = issue["web_url"]
    return events


def _assignees(snapshot: dict[str, Any]) -> list[str]:
    if "assignees" in snapshot:
        return list(snapshot.get("assignees") or [])
    return [snapshot["assignee"]] if snapshot.get("assignee") else []


def _record_notes(case: Case, iid: int, notes: list[dict[str, Any]], actor: str) -> list[Event]:
    """Record new notes, oldest first. A consulted developer's note is recorded as the consultation's answer.

    Every note the developer posts after the question, within the sync that brings the
    first answer, counts as the answer. Later notes are ordinary comments.
    """
    waiting = _open_consultations(case, iid)
    events = []
    for note in sorted(notes, key=lambda item: int(item["id"])):
        if note.get("system") or is_helpctl_note(note.get("body")):
            continue

        author = str(note.get("author") or "")
        answered = [
            item
            for item in waiting
            if str(item.get("developer", "")).lower() == author.lower() and int(note["id"]) > int(item.get("note_id") or 0)
        ]
        detail = {"source": SOURCE, "iid": iid, "note_id": note["id"], "author": author, "excerpt": excerpt(note.get("body") or "")}
        if answered:
            for item in answered:
                item["status"] = "answered"
                item.setdefault("answered_at", isoformat(utc_now()))
                item.setdefault("answer_notes", []).append(note["id"])
            question_notes = [item.get("note_id") for item in answered]
            events.append(case.record(actor, "consultation-answered", developer=author, question_notes=question_notes, **detail))
        else:
            events.append(case.record(actor, "issue-comment", created_at=note.get("created_at"), **detail))
    return events


# ----- owed updates -----


def owed_update(case: Case, profile: Profile, now: dt.datetime | None = None) -> OwedUpdate | None:
    """Tell whether the requester of `case` is owed a message, and draft it.

    Owed when an issue change was synced after the last notification, or when a clock
    that is running (neither paused nor met) is due soon or breached. Closed cases are
    owed nothing. The template is `resolved` when the issue was closed since then,
    `reopened` when the case was reopened since then, else `update`.
    """
    from helpctl import notify, sla

    if case.status == "closed":
        return None
    now = now or utc_now()
    since = _events_since_notification(case, notify.last_notification(case))
    changes = [event for event in since if event.event in UPDATE_EVENTS and event.detail.get("source") == SOURCE]

    reasons = []
    if changes:
        kinds = ", ".join(dict.fromkeys(event.event for event in changes))
        reasons.append(f"the issue changed since the last notification ({kinds})")
    reasons += _clock_reasons(sla.clocks(case, profile.sla, now))
    if not reasons:
        return None

    owed = OwedUpdate(case.id, _template(case, changes, since), reasons, note=change_note(changes, case.language))
    try:
        owed.draft = notify.draft(case, owed.template, profile, note=owed.note)
    except HelpctlError as error:
        owed.problem = error.message
    return owed


def _events_since_notification(case: Case, last: Event | None) -> list[Event]:
    if last is None:
        return list(case.timeline)
    for index in range(len(case.timeline) - 1, -1, -1):
        if case.timeline[index] is last or case.timeline[index] == last:
            return case.timeline[index + 1 :]
    return list(case.timeline)


def _clock_reasons(clocks: list[Any]) -> list[str]:
    reasons = []
    for clock in clocks:
        if clock.paused or clock.met_at is not None or getattr(clock, "stopped", False):
            continue
        hours = abs(float(clock.remaining_hours or 0.0))
        if clock.breached:
            reasons.append(f"the {clock.name} clock is breached by {hours:.1f} office hours")
        elif clock.due_soon:
            reasons.append(f"the {clock.name} clock is due in {hours:.1f} office hours")
    return reasons


def _template(case: Case, changes: list[Event], since: list[Event]) -> str:
    closed_now = (case.issue or {}).get("state") == "closed"
    if closed_now and any(event.event == "issue-closed" for event in changes):
        return "resolved"
    if any(event.event == "reopened" for event in since):
        return "reopened"
    return "update"


def change_note(changes: list[Event], language: str) -> str:
    """Describe synced issue changes for the requester, without internal names or text.

    With no change to tell (a clock is due), the note states that the work goes on,
    because the `update` template needs a note.
    """
    sentences = _CHANGE_SENTENCES.get(language) or _CHANGE_SENTENCES["en"]
    lines: list[str] = []
    for event in changes:
        key = event.event
        if key == "issue-milestone":
            milestone = event.detail.get("milestone")
            line = sentences["milestone-set"].format(milestone=milestone) if milestone else sentences["milestone-removed"]
        elif key == "issue-assignee" and not event.detail.get("assignees"):
            continue
        else:
            line = sentences[key]
        if line not in lines:
            lines.append(line)
    return " ".join(lines) or sentences["no-change"]


# ----- the whole run -----


def sync_cases(
    store: CaseStore,
    case_ids: Iterable[str],
    profile: Profile,
    actor: str,
    *,
    client: Any = None,
    now: dt.datetime | None = None,
) -> SyncReport:
    """Sync every case, then list the synced cases whose requester is owed an update.

    One case's failure (GitLab errors, a damaged case file) is recorded in its CaseSync
    and the other cases go on. A case that could not be synced is not checked for owed
    updates, because its record may be behind the issue.
    """
    case_ids = list(case_ids)
    report = SyncReport()
    if case_ids and client is None:
        from helpctl import services

        client = services.gitlab_client(profile)

    for case_id in case_ids:
        try:
            check_same_tracker(store.load(case_id), profile)
            result = sync_case(store, case_id, client, actor, profile=profile)
        except HelpctlError as error:
            logger.warning("case %s could not be synced: %s", case_id, error.message)
            result = CaseSync(case_id, error=error)
        report.synced.append(result)

    for result in report.synced:
        if result.error is None:
            owed = _owed_or_problem(store, result.case_id, profile, now)
            if owed is not None:
                report.owed.append(owed)
    return report


def check_same_tracker(case: Any, profile: Profile) -> None:
    """Refuse a case whose issue lives on another GitLab than the profile's.

    Issue numbers repeat across GitLab servers (a sandbox started by the demo files its
    own issue #3), so syncing by number against another server would read someone else's
    issue.
    """
    from urllib.parse import urlsplit

    url = (case.issue or {}).get("url") or ""
    if not url:
        return
    filed, current = urlsplit(url), urlsplit(profile.gitlab.web_url or profile.gitlab.url)
    if (filed.scheme, filed.netloc) != (current.scheme, current.netloc):
        raise PreconditionFailed(
            f"case {case.id}'s issue is on {filed.scheme}://{filed.netloc}, not on {current.scheme}://{current.netloc}",
            hint="sync it with the profile (and sandbox) that filed it",
        )


def _owed_or_problem(store: CaseStore, case_id: str, profile: Profile, now: dt.datetime | None) -> OwedUpdate | None:
    try:
        return owed_update(store.load(case_id), profile, now)
    except HelpctlError as error:
        logger.warning("could not check whether case %s is owed an update: %s", case_id, error.message)
        return OwedUpdate(case_id, "update", ["could not be checked"], problem=error.message)


def send_updates(store: CaseStore, report: SyncReport, profile: Profile, actor: str, *, client: Any = None) -> int:
    """Send every drafted owed update with `notify.send` and return how many were sent.

    A failure (the redaction check blocks, a rejected recipient, Mandrill errors) is kept
    in that update's `send_error`, and the other updates are still sent.
    """
    from helpctl import notify

    ready = [owed for owed in report.owed if owed.draft is not None]
    if not ready:
        return 0
    owns_client = client is None
    if owns_client:
        from helpctl import services

        client = services.mandrill_client(profile)

    sent = 0
    try:
        for owed in ready:
            try:
                owed.sent = notify.send(store, owed.case_id, owed.draft, profile, actor, client=client)
                sent += 1
            except HelpctlError as error:
                logger.warning("the update for case %s was not sent: %s", owed.case_id, error.message)
                owed.send_error = error
    finally:
        if owns_client:
            client.close()
    return sent
