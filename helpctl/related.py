"""Related cases and issues: find duplicates, link cases to each other or to issues, merge.

`find_related` compares a case with the other open cases and with open GitLab issues:

- the same filed issue (score 1.0).
- the same BugSnag error, by the signals `errors.top_error_class` and `errors.top_context`
  (0.9). An issue that names the class but not the context scores 0.5.
- the same log signature: `logs.top_message` with numbers, ids, addresses and quoted
  values replaced by placeholders (0.8).
- for cases, the same organization and a similar subject, and for issues, a title similar
  to the subject. Similarity is the larger of difflib's ratio and the share of common
  words (Jaccard). It counts from `SUBJECT_THRESHOLD`, and the score is 0.9 × similarity.

Several reasons for one match combine as 1 − Π(1 − score), so more evidence ranks higher.

Links are `links` entries kept in both cases. Linking a case to another client's filed
issue posts a redacted comment on it ("another client reports the same"), and the linked
case then follows that issue in `helpctl sync`. When two or more people (distinct
requesters and users concerned) are affected across the linked cases of a bug, the result
carries the `helpctl classify ... --as incident` command to run, and the label is never
changed here.

`merge_cases` moves the messages, attachments, notes, findings and timeline of one case
into another, for a reply threaded to the wrong case. It closes the emptied case with a
pointer to the surviving one. Its docstring gives the order of steps that keeps a crash safe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import errno
import fcntl
import logging
import os
import re
import shlex
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpctl import paths
from helpctl.cases.model import Case, Event
from helpctl.cases.store import CASE_FILE, LOCK_FILE, LOCK_WAIT_SECONDS, CaseStore
from helpctl.errors import HelpctlError, PreconditionFailed, UsageError
from helpctl.findings import isoformat, utc_now
from helpctl.redact import Redactor
from helpctl.sync import note_marker

if TYPE_CHECKING:
    from helpctl.config.settings import Profile

logger = logging.getLogger(__name__)

SUBJECT_THRESHOLD = 0.6
SAME_ISSUE_SCORE = 1.0
SAME_ERROR_SCORE = 0.9
ERROR_CLASS_ONLY_SCORE = 0.5
SAME_LOG_SCORE = 0.8
SUBJECT_WEIGHT = 0.9
# Open issues compared by title: the most recently updated ones.
ISSUES_SCANNED = 100
# Hits read per GitLab text search (error class, log phrase).
SEARCH_HITS = 20
# A log phrase searched on GitLab: its longest constant part, within these lengths.
MIN_PHRASE_CHARS = 8
MAX_PHRASE_CHARS = 80
INCIDENT_THRESHOLD = 2
# Events about a case's own status. They are not copied by a merge, because the response
# clocks would read them as pauses and restarts of the surviving case.
STATUS_EVENTS = frozenset({"closed", "reopened", "status-changed"})

_WORD = re.compile(r"[^\W_]+")
_PRODUCT_PREFIX = re.compile(r"^\s*\[[^\]]*\]\s*")
_REPLY_PREFIX = re.compile(r"^\s*((re|fw|fwd|rv|reenv)\s*:\s*)+", re.IGNORECASE)
# Variable parts of a log message, most specific first.
_LOG_VARIABLES = [
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "<email>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\"[^\"]*\"|'[^']*'"), "<value>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"\d+(\.\d+)*"), "<n>"),
]
# Words too common to make two subjects alike (English and Spanish).
STOP_WORDS = frozenset(
    "a an and are as at be but by can de del do does el en es for from has have hi hola i in is it la las los "
    "me my no not of on or our para por que se the this to un una we with y".split()
)


# ----- signatures -----


@dataclasses.dataclass
class Signatures:
    """The features of a case that matching compares."""

    errors: set[tuple[str, str]]
    logs: dict[str, str]  # log signature: one raw message that has it
    subject: str
    words: set[str]


def log_signature(message: str) -> str:
    """Return `message` with its variable parts replaced, lowercased and on one line."""
    text = message
    for pattern, placeholder in _LOG_VARIABLES:
        text = pattern.sub(placeholder, text)
    return re.sub(r"\s+", " ", text).strip().lower()


def normalise_subject(subject: str) -> str:
    text = _PRODUCT_PREFIX.sub("", _REPLY_PREFIX.sub("", subject))
    return " ".join(_WORD.findall(text.lower()))


def subject_similarity(first: str, second: str) -> float:
    """Return the larger of difflib's ratio and the Jaccard share of words, from 0 to 1."""
    left, right = normalise_subject(first), normalise_subject(second)
    if not left or not right:
        return 0.0
    ratio = difflib.SequenceMatcher(None, left, right).ratio()
    words_left, words_right = _words(left), _words(right)
    union = words_left | words_right
    jaccard = len(words_left & words_right) / len(union) if union else 0.0
    return max(ratio, jaccard)


def _words(text: str) -> set[str]:
    return {word for word in _WORD.findall(text.lower()) if word not in STOP_WORDS and len(word) > 1}


def signatures(case: Case) -> Signatures:
    errors: set[tuple[str, str]] = set()
    logs: dict[str, str] = {}
    for finding in case.findings:
        signals = finding.get("signals") or {}
        error_class = signals.get("errors.top_error_class")
        if error_class:
            errors.add((str(error_class), str(signals.get("errors.top_context") or "")))
        message = signals.get("logs.top_message")
        if message:
            logs.setdefault(log_signature(str(message)), str(message))
    return Signatures(errors, logs, case.subject, _words(normalise_subject(case.subject)))


def log_phrase(message: str) -> str | None:
    """Return the longest constant part of a log message, to search issues for, or None."""
    text = message
    for pattern, _ in _LOG_VARIABLES:
        text = pattern.sub("\x00", text)
    parts = sorted((part.strip(" :,;-=()[]{}") for part in text.split("\x00")), key=len, reverse=True)
    if not parts or len(parts[0]) < MIN_PHRASE_CHARS:
        return None
    phrase = parts[0]
    if len(phrase) > MAX_PHRASE_CHARS:
        phrase = phrase[:MAX_PHRASE_CHARS].rsplit(" ", 1)[0]
    return phrase


# ----- results -----


@dataclasses.dataclass
class Related:
    """A case or open issue that looks like the same problem, with the reasons and a score."""

    kind: str  # "case" or "issue"
    score: float
    reasons: list[str]
    title: str
    case_id: str | None = None
    iid: int | None = None
    url: str | None = None
    status: str | None = None
    requester: str | None = None
    linked: bool = False

    @property
    def reference(self) -> str:
        return self.case_id if self.kind == "case" and self.case_id else f"#{self.iid}"

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(reference=self.reference, reason=self.reason)
        return data


@dataclasses.dataclass
class RelatedReport:
    case_id: str
    related: list[Related]
    problems: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case_id, "related": [item.to_dict() for item in self.related], "problems": list(self.problems)}


class _Matches:
    """Reasons gathered per matching case or issue."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, Any], Related] = {}

    def add(self, key: tuple[str, Any], template: Related, reason: str, score: float) -> None:
        found = self.items.setdefault(key, template)
        if reason not in found.reasons:
            found.reasons.append(reason)
            found.score = round(1 - (1 - found.score) * (1 - score), 3)

    def sorted(self) -> list[Related]:
        return sorted(self.items.values(), key=lambda item: (-item.score, item.reference))


# ----- finding related cases and issues -----


def find_related(store: CaseStore, case: Case, profile: Profile, client: Any = None) -> list[Related]:
    """Return the open cases and open issues that match `case`, best first.

    GitLab failures leave out the issue matches and are logged. `search_related` returns
    them as problems.
    """
    return search_related(store, case, profile, client=client).related


def search_related(
    store: CaseStore,
    case: Case,
    profile: Profile,
    *,
    client: Any = None,
    include_issues: bool = True,
    same_organization_only: bool = False,
) -> RelatedReport:
    """Compare `case` with the other open cases and, with `include_issues`, open GitLab issues.

    `same_organization_only` reads only the open cases of the case's organization from the
    index. It suits a case without findings yet, which can match only by organization and
    subject, and keeps opening a case fast in a store of many thousands.
    """
    own = signatures(case)
    matches = _Matches()
    organization = case.organization if same_organization_only else None
    if same_organization_only and not organization:
        candidates: Iterator[Case] = iter(())
    else:
        candidates = _open_cases(store, case.id, organization)
    for other in candidates:
        _compare_cases(case, own, other, matches)

    problems = []
    if include_issues:
        try:
            _compare_issues(case, own, client or _client(profile), matches)
        except HelpctlError as error:
            # The caller gets the failure in `problems`; the log line is for -v.
            logger.info("open GitLab issues were not compared with case %s: %s", case.id, error.message)
            problems.append(f"open GitLab issues were not compared: {error.message}")
    return RelatedReport(case.id, matches.sorted(), problems)


def _client(profile: Profile) -> Any:
    from helpctl import services

    return services.gitlab_client(profile)


def _open_cases(store: CaseStore, skip: str, organization: str | None = None) -> Iterator[Case]:
    from helpctl.cases.index import CaseIndex, ListFilter

    for row in CaseIndex(store.root).list(ListFilter(organization=organization)):
        if row["id"] == skip or row["status"] in (None, "closed"):
            continue
        try:
            yield store.load(row["id"])
        except HelpctlError as error:
            logger.warning("case %s is not compared: %s", row["id"], error.message)


def _compare_cases(case: Case, own: Signatures, other: Case, matches: _Matches) -> None:
    template = Related(
        "case", 0.0, [], other.subject, case_id=other.id, url=(other.issue or {}).get("url"),
        status=other.status, requester=other.requester.email, linked=_has_link(case, "case", other.id),
    )
    key = ("case", other.id)

    iid, other_iid = _issue_iid(case), _issue_iid(other)
    if iid is not None and iid == other_iid and _project(case) == _project(other):
        matches.add(key, template, f"same GitLab issue #{iid}", SAME_ISSUE_SCORE)

    theirs = signatures(other)
    for error_class, context in sorted(own.errors & theirs.errors):
        where = f" in {context}" if context else ""
        matches.add(key, template, f"same BugSnag error {error_class}{where}", SAME_ERROR_SCORE)
    for signature in sorted(set(own.logs) & set(theirs.logs)):
        matches.add(key, template, f"same log signature {_quote(own.logs[signature])}", SAME_LOG_SCORE)

    if case.organization and case.organization == other.organization:
        similarity = subject_similarity(case.subject, other.subject)
        if similarity >= SUBJECT_THRESHOLD:
            reason = f"same organization {case.organization} and a similar subject ({similarity:.0%})"
            matches.add(key, template, reason, SUBJECT_WEIGHT * similarity)


def _compare_issues(case: Case, own: Signatures, client: Any, matches: _Matches) -> None:
    skip = {iid for iid in (_issue_iid(case), _consultation_iid(case)) if iid is not None}

    def template(issue: dict[str, Any]) -> Related:
        return Related(
            "issue", 0.0, [], issue.get("title") or "", iid=issue["iid"], url=issue.get("web_url"),
            status=issue.get("state"), linked=_has_link(case, "issue", issue["iid"]),
        )

    for error_class, context in sorted(own.errors):
        for issue in client.list_issues(state="opened", search=error_class, limit=SEARCH_HITS):
            text = f"{issue.get('title')}\n{issue.get('description')}"
            if issue["iid"] in skip or error_class not in text:
                continue
            if context and context in text:
                matches.add(("issue", issue["iid"]), template(issue), f"names BugSnag error {error_class} in {context}", SAME_ERROR_SCORE)
            else:
                matches.add(("issue", issue["iid"]), template(issue), f"names error class {error_class}", ERROR_CLASS_ONLY_SCORE)

    for message in own.logs.values():
        phrase = log_phrase(message)
        if phrase is None:
            continue
        for issue in client.list_issues(state="opened", search=phrase, limit=SEARCH_HITS):
            text = f"{issue.get('title')}\n{issue.get('description')}".lower()
            if issue["iid"] not in skip and phrase.lower() in text:
                matches.add(("issue", issue["iid"]), template(issue), f"names the log message {_quote(phrase)}", SAME_LOG_SCORE)

    for issue in client.list_issues(state="opened", limit=ISSUES_SCANNED):
        similarity = subject_similarity(case.subject, issue.get("title") or "")
        if issue["iid"] not in skip and similarity >= SUBJECT_THRESHOLD:
            matches.add(("issue", issue["iid"]), template(issue), f"title similar to the subject ({similarity:.0%})", SUBJECT_WEIGHT * similarity)


def _quote(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


# ----- case helpers -----


def _issue_iid(case: Case) -> int | None:
    iid = (case.issue or {}).get("iid")
    return int(iid) if iid else None


def _consultation_iid(case: Case) -> int | None:
    iid = (case.extra.get("consultation_issue") or {}).get("iid")
    return int(iid) if iid else None


def _project(case: Case) -> str | None:
    return (case.issue or {}).get("project")


def _links(case: Case) -> list[dict[str, Any]]:
    return case.extra.setdefault("links", [])


def _has_link(case: Case, kind: str, target: Any) -> bool:
    field = "case" if kind == "case" else "iid"
    return any(link.get("type") == kind and link.get(field) == target for link in case.extra.get("links") or [])


def _label(case: Case) -> str | None:
    return (case.classification or {}).get("label") or (case.issue or {}).get("label")


# ----- linking -----


@dataclasses.dataclass
class LinkResult:
    case_id: str
    other_case: str | None = None
    iid: int | None = None
    url: str | None = None
    note_id: int | None = None
    follows_issue: bool = False
    already_linked: bool = False
    affected: list[str] = dataclasses.field(default_factory=list)
    cases: list[str] = dataclasses.field(default_factory=list)
    incident_command: str | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def link_cases(store: CaseStore, case_id: str, other_id: str, profile: Profile, actor: str, *, client: Any = None) -> LinkResult:
    """Link case `case_id` to case `other_id`, in both cases.

    When either case has a filed issue (`other_id`'s is preferred), the other client's case
    is announced on it with a redacted comment, and a case without an issue of its own
    starts following it. Linking twice changes nothing.
    """
    case, other = store.load(case_id), store.load(other_id)
    if case.id == other.id:
        raise UsageError("a case cannot be linked to itself", hint="give two different case ids")

    # The issue to announce on: the other case's, else this case's own.
    holder = None
    if _issue_iid(other):
        holder = other
    elif _issue_iid(case):
        holder = case
    newcomer = case if holder is other else other
    result = LinkResult(case.id, other_case=other.id)
    if _has_link(case, "case", other.id):
        result.already_linked = True
        result.iid = _issue_iid(holder) if holder is not None else None
        return _with_affected(store, result, holder, profile)

    issue = None
    latest_note = None
    if holder is not None:
        client = client or _client(profile)
        issue = client.get_issue(_issue_iid(holder))
        result.iid, result.url = issue["iid"], issue.get("web_url")
        result.note_id = _announce(store, newcomer, issue, _label(holder), client, result, profile, actor)
        latest_note = client.latest_note_id(issue["iid"])

    now = isoformat(utc_now())
    with _edit_both(store, case.id, other.id) as (fresh_case, fresh_other):
        for this, that in ((fresh_case, fresh_other), (fresh_other, fresh_case)):
            _links(this).append({"type": "case", "case": that.id, "at": now, "actor": actor, "iid": result.iid, "note_id": result.note_id})
            this.record(actor, "linked", case=that.id, iid=result.iid, note_id=result.note_id)
        follower = fresh_case if newcomer.id == fresh_case.id else fresh_other
        if issue is not None and _issue_iid(follower) is None:
            _follow(follower, issue, profile, now, latest_note, linked_from=holder.id, actor=actor)
            result.follows_issue = True
    return _with_affected(store, result, holder, profile)


def link_issue(store: CaseStore, case_id: str, iid: int, profile: Profile, actor: str, *, client: Any = None) -> LinkResult:
    """Link case `case_id` to GitLab issue `iid`, announce the case on it, and follow it.

    A case that already has another issue of its own keeps following that one, and the
    link is recorded either way.
    """
    case = store.load(case_id)
    result = LinkResult(case.id, iid=iid)
    if _has_link(case, "issue", iid) or _issue_iid(case) == iid:
        result.already_linked = True
        result.url = (case.issue or {}).get("url")
        return _with_affected(store, result, _filer(store, iid, profile), profile)

    client = client or _client(profile)
    issue = client.get_issue(iid)
    result.url = issue.get("web_url")
    filer = _filer(store, iid, profile)
    result.note_id = _announce(store, case, issue, _label(filer) if filer else None, client, result, profile, actor)
    latest_note = client.latest_note_id(iid)

    now = isoformat(utc_now())
    with store.edit(case.id) as fresh:
        _links(fresh).append({"type": "issue", "iid": iid, "url": result.url, "at": now, "actor": actor, "note_id": result.note_id})
        fresh.record(actor, "linked", iid=iid, url=result.url, note_id=result.note_id)
        if _issue_iid(fresh) is None:
            _follow(fresh, issue, profile, now, latest_note, linked_from=None, actor=actor)
            result.follows_issue = True
    return _with_affected(store, result, filer or store.load(case.id), profile)


def _announce(
    store: CaseStore,
    newcomer: Case,
    issue: dict[str, Any],
    label: str | None,
    client: Any,
    result: LinkResult,
    profile: Profile,
    actor: str,
) -> int | None:
    """Comment on `issue` that another client reports the same, unless the requester already reports there."""
    on_issue = _cases_on_issue(store, issue["iid"], profile.gitlab.project)
    requesters = {item.requester.email.lower() for item in on_issue if item.id != newcomer.id}
    if newcomer.requester.email.lower() in requesters:
        result.warnings.append(f"{newcomer.requester.email} already reports through a case on issue #{issue['iid']}; no comment was posted")
        return None

    verb = "asks for" if label == "feature" else "reports"
    organization = f" from organization {newcomer.organization}" if newcomer.organization else ""
    subject = Redactor(newcomer).redact(" ".join(newcomer.subject.split()))
    body = f"Another client {verb} the same: Help Channel case `{newcomer.id}`{organization}: {subject}"
    note = client.add_note(int(issue["iid"]), body, marker=note_marker(newcomer.id))
    _audit("issue.commented", actor, {"case": newcomer.id, "issue": issue["iid"]}, "commented", {"note_id": note["id"]})
    return note["id"]


def _follow(
    case: Case, issue: dict[str, Any], profile: Profile, now: str, latest_note: int | None, *, linked_from: str | None, actor: str
) -> None:
    """Make `case` follow `issue` in sync, from the issue as it is now: older notes are not news."""
    case.issue = {
        "iid": issue["iid"],
        "url": issue.get("web_url"),
        "project": profile.gitlab.project,
        "labels": list(issue.get("labels") or []),
        "assignee": issue.get("assignee"),
        "assignees": list(issue.get("assignees") or []),
        "state": issue.get("state"),
        "milestone": issue.get("milestone"),
        "linked": True,
        "linked_from": linked_from,
        "linked_at": now,
        "synced_at": now,
        "last_note": latest_note,
    }
    if case.status == "open":
        case.status = "filed"
        case.record(actor, "status-changed", previous="open", status="filed", reason=f"follows issue #{issue['iid']}")


def _cases_on_issue(store: CaseStore, iid: int, project: str | None) -> list[Case]:
    """Return the cases, in any status, that follow issue `iid`."""
    found = []
    for case_id in store.ids():
        try:
            case = store.load(case_id)
        except HelpctlError as error:
            logger.warning("case %s is not checked for issue #%s: %s", case_id, iid, error.message)
            continue
        if _issue_iid(case) == iid and (project is None or _project(case) in (None, project)):
            found.append(case)
    return found


def _filer(store: CaseStore, iid: int, profile: Profile) -> Case | None:
    """Return the case that filed issue `iid` (not one that only links it), else None."""
    for case in _cases_on_issue(store, iid, profile.gitlab.project):
        if not (case.issue or {}).get("linked"):
            return case
    return None


def _with_affected(store: CaseStore, result: LinkResult, holder: Case | None, profile: Profile) -> LinkResult:
    """Count the people affected across the linked cases and propose an incident for a bug."""
    group = _linked_group(store, result)
    people: set[str] = set()
    for case in group:
        people.add(case.requester.email.lower())
        people.update(user.lower() for user in case.subjects.users)
    people.discard("")
    result.affected = sorted(people)
    result.cases = sorted(case.id for case in group)

    target = holder or next((case for case in group if case.id == result.case_id), None)
    if target is not None and len(result.affected) >= INCIDENT_THRESHOLD and _label(target) == "bug":
        reason = f"{len(result.affected)} users affected across linked cases {', '.join(result.cases)}"
        result.incident_command = f"helpctl classify {target.id} --as incident --reason {shlex.quote(reason)}"
    return result


def _linked_group(store: CaseStore, result: LinkResult) -> list[Case]:
    """Return the cases linked to the result's cases, and every case on its issue."""
    seeds = [result.case_id] + ([result.other_case] if result.other_case else [])
    group: dict[str, Case] = {}
    for case_id in seeds:
        case = store.load(case_id)
        group[case.id] = case
        for link in case.extra.get("links") or []:
            if link.get("type") == "case" and link.get("case") not in group:
                with contextlib.suppress(HelpctlError):
                    group[link["case"]] = store.load(link["case"])
    iid = result.iid
    if iid is not None:
        for case in _cases_on_issue(store, iid, None):
            group.setdefault(case.id, case)
    return list(group.values())


@contextlib.contextmanager
def _edit_both(store: CaseStore, first_id: str, second_id: str) -> Iterator[tuple[Case, Case]]:
    """Edit two cases under both locks, taken in id order so two processes cannot wait on each other."""
    low, high = sorted((first_id, second_id))
    with store.edit(low) as low_case, store.edit(high) as high_case:
        cases = {low_case.id: low_case, high_case.id: high_case}
        yield cases[first_id], cases[second_id]


# ----- unlinking -----


def unlink(store: CaseStore, case_id: str, actor: str, *, other_id: str | None = None, iid: int | None = None) -> list[dict[str, Any]]:
    """Remove the case's link to `other_id` or to issue `iid`, or every link when neither is given.

    A link to a case is removed from both cases. A case that followed an issue only
    through the removed link stops following it. Returns the removed links.
    """
    case = store.load(case_id)
    other_id = store.resolve(other_id) if other_id else None
    chosen = [link for link in case.extra.get("links") or [] if _matches_link(link, other_id, iid)]
    if not chosen:
        what = "any case or issue"
        if other_id:
            what = f"case {other_id}"
        elif iid is not None:
            what = f"issue #{iid}"
        raise PreconditionFailed(f"case {case.id} is not linked to {what}", hint=f"see 'helpctl case show {case.id}'")

    others = sorted({link["case"] for link in chosen if link.get("type") == "case"})
    with contextlib.ExitStack() as stack:
        edited = {}
        for each in sorted({case.id, *others}):
            if each == case.id:
                edited[each] = stack.enter_context(store.edit(each))
                continue
            try:
                edited[each] = stack.enter_context(store.edit(each))
            except HelpctlError as error:
                logger.warning("the link back from case %s is left in place: %s", each, error.message)
        fresh = edited[case.id]
        for link in chosen:
            _remove_link(fresh, edited, link, actor)
    return chosen


def _matches_link(link: dict[str, Any], other_id: str | None, iid: int | None) -> bool:
    if other_id is not None:
        return link.get("type") == "case" and link.get("case") == other_id
    if iid is not None:
        return link.get("type") == "issue" and link.get("iid") == iid
    return True


def _remove_link(case: Case, edited: dict[str, Case], link: dict[str, Any], actor: str) -> None:
    if link in _links(case):
        _links(case).remove(link)
    if link.get("type") == "case":
        other = edited.get(link["case"])
        if other is not None:
            other.extra["links"] = [item for item in _links(other) if not (item.get("type") == "case" and item.get("case") == case.id)]
            _stop_following(other, linked_from=case.id, iid=None, actor=actor)
            other.record(actor, "unlinked", case=case.id)
        _stop_following(case, linked_from=link["case"], iid=None, actor=actor)
        case.record(actor, "unlinked", case=link["case"])
    else:
        _stop_following(case, linked_from=None, iid=link.get("iid"), actor=actor)
        case.record(actor, "unlinked", iid=link.get("iid"))


def _stop_following(case: Case, *, linked_from: str | None, iid: int | None, actor: str) -> None:
    issue = case.issue or {}
    if not issue.get("linked"):
        return
    through_case = linked_from is not None and issue.get("linked_from") == linked_from
    through_issue = iid is not None and issue.get("linked_from") is None and _issue_iid(case) == iid
    if not (through_case or through_issue):
        return
    case.issue = None
    if case.status == "filed":
        case.status = "open"
        case.record(actor, "status-changed", previous="filed", status="open", reason="no longer follows an issue")


# ----- merging -----


@dataclasses.dataclass
class MergeResult:
    case_id: str
    other_case: str
    messages: int
    attachments: int
    notes: int
    findings: int
    events: int
    files: int
    issue_adopted: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def merge_cases(store: CaseStore, case_id: str, other_id: str, actor: str) -> MergeResult:
    """Move everything of case `other_id` into case `case_id`, and close `other_id` with a pointer.

    Messages, attachments, notes and findings leave the emptied case. Its timeline is
    copied, without its status events (`STATUS_EVENTS`), and the emptied case keeps its
    own history. The intake lock is held throughout, so no reply is threaded meanwhile. Files are
    linked (or copied) into the surviving case first, then the surviving case is saved,
    then the emptied one, and only then are the old files removed. A crash leaves either
    both records complete or extra copies of files, and entries already merged are not
    merged twice when the command is run again. At the end the message-id map points
    every moved message at the surviving case, so later replies thread there.
    """
    case_id, other_id = store.resolve(case_id), store.resolve(other_id)
    if case_id == other_id:
        raise UsageError("a case cannot be merged into itself", hint="give two different case ids")

    from helpctl.intake.threads import MESSAGE_MAP_LOCK, MessageIdMap

    store.ensure_root()
    with _file_lock(store.root / MESSAGE_MAP_LOCK):
        with store.edit(other_id) as other:
            _check_mergeable(other, other_id)
            with store.edit(case_id) as case:
                _check_mergeable(case, case_id)
                moved = _link_files(store, other.id, case.id)
                result = _merge_into(case, other, moved, actor)
            _empty(other, case.id, actor)
        _remove_files(store, other.id, moved)

        message_map = MessageIdMap(store)
        message_map.load()
        message_map.read_case(other.id)
        message_map.read_case(case.id)
        message_map.save()

    _audit("case.merged", actor, {"case": case.id, "merged": other.id}, "merged", result.to_dict())
    return result


def _check_mergeable(case: Case, reference: str) -> None:
    into = case.extra.get("merged_into")
    if into:
        raise PreconditionFailed(f"case {reference} was already merged into case {into}", hint=f"use case {into} instead")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path`, waiting up to the store's lock wait."""
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
                raise PreconditionFailed("another helpctl process is filing an e-mail in this case store", hint="wait for it and run the command again")
            time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def _link_files(store: CaseStore, source_id: str, target_id: str) -> dict[str, str]:
    """Hard-link (or copy) every file of case `source_id` into `target_id` and map old to new relative paths."""
    source = store.folder(source_id)
    moved: dict[str, str] = {}
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if not path.is_file() or str(relative) in (CASE_FILE, LOCK_FILE) or any(part.startswith(".") for part in relative.parts):
            continue
        folder = store.private_subdir(target_id, str(relative.parent)) if relative.parent != Path(".") else store.folder(target_id)
        target = _free_name(folder / relative.name)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
            os.chmod(target, paths.PRIVATE_FILE_MODE)
        moved[str(relative)] = str(target.relative_to(store.folder(target_id)))
    return moved


def _free_name(target: Path) -> Path:
    stem, suffix, number = target.stem, target.suffix, 1
    while target.exists():
        number += 1
        target = target.with_name(f"{stem}-{number}{suffix}")
    return target


def _remove_files(store: CaseStore, source_id: str, moved: dict[str, str]) -> None:
    source = store.folder(source_id)
    for relative in moved:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(source / relative)


def _merge_into(case: Case, other: Case, moved: dict[str, str], actor: str) -> MergeResult:
    def path(value: Any) -> Any:
        return moved.get(value, value) if isinstance(value, str) else value

    known_messages = {_message_key(entry) for entry in case.messages}
    messages = [_moved_message(entry, path) for entry in other.messages if _message_key(entry) not in known_messages]
    case.messages = sorted(case.messages + messages, key=lambda entry: str(entry.get("received_at") or entry.get("date") or ""))

    attachments = [path(item) for item in other.attachments if path(item) not in case.attachments]
    case.attachments += attachments

    known_notes = {(note.get("at"), note.get("text")) for note in case.notes}
    notes = [{**note, "merged_from": other.id} for note in other.notes if (note.get("at"), note.get("text")) not in known_notes]
    case.notes = sorted(case.notes + notes, key=lambda note: str(note.get("at") or ""))

    findings = _merge_findings(case, other, path)
    events = _merge_timeline(case, other, path)
    _merge_subjects(case, other)
    issue_adopted = _merge_issue_and_links(case, other)

    result = MergeResult(case.id, other.id, len(messages), len(attachments), len(notes), findings, events, len(moved), issue_adopted)
    case.record(actor, "merged", case=other.id, messages=result.messages, attachments=result.attachments, notes=result.notes,
                findings=result.findings, events=result.events, files=result.files)
    return result


def _message_key(entry: dict[str, Any]) -> str:
    return str(entry.get("message_id") or entry.get("sha256") or entry.get("file") or id(entry))


def _moved_message(entry: dict[str, Any], path: Any) -> dict[str, Any]:
    moved = dict(entry)
    moved["file"] = path(entry.get("file"))
    moved["attachments"] = [path(item) for item in entry.get("attachments") or []]
    return moved


def _merge_findings(case: Case, other: Case, path: Any) -> int:
    """Add the other case's findings. Of two with the same key, the one fetched later stays."""
    count = 0
    for finding in other.findings:
        moved = {**finding, "raw_ref": path(finding.get("raw_ref"))} if finding.get("raw_ref") else dict(finding)
        current = next((item for item in case.findings if item.get("key") == finding.get("key")), None)
        if current is None:
            case.findings.append(moved)
        elif str(finding.get("fetched_at") or "") > str(current.get("fetched_at") or ""):
            case.findings[case.findings.index(current)] = moved
        else:
            continue
        count += 1
    return count


def _merge_timeline(case: Case, other: Case, path: Any) -> int:
    known = {(event.at, event.event, event.actor, event.detail.get("merged_from")) for event in case.timeline}
    added = []
    for event in other.timeline:
        if event.event in STATUS_EVENTS or (event.at, event.event, event.actor, other.id) in known:
            continue
        detail = {name: path(value) for name, value in event.detail.items()}
        added.append(Event(at=event.at, actor=event.actor, event=event.event, detail={**detail, "merged_from": other.id}))
    case.timeline = sorted(case.timeline + added, key=lambda event: event.at)
    return len(added)


def _merge_subjects(case: Case, other: Case) -> None:
    for field in ("users", "groups", "organizations"):
        current = getattr(case.subjects, field)
        current += [item for item in getattr(other.subjects, field) if item not in current]
    case.organization = case.organization or other.organization
    if case.classification is None and other.classification is not None:
        case.classification = dict(other.classification)


def _merge_issue_and_links(case: Case, other: Case) -> bool:
    """Adopt the other case's issue when this one has none, or keep a different one as a link."""
    adopted = False
    other_iid = _issue_iid(other)
    if other_iid is not None and _issue_iid(case) is None:
        case.issue = dict(other.issue or {})
        adopted = True
    elif other_iid is not None and other_iid != _issue_iid(case) and not _has_link(case, "issue", other_iid):
        _links(case).append({"type": "issue", "iid": other_iid, "url": (other.issue or {}).get("url"), "merged_from": other.id})

    for link in other.extra.get("links") or []:
        pointless = link.get("type") == "case" and link.get("case") == case.id
        if not pointless and link not in _links(case):
            _links(case).append({**link, "merged_from": other.id})
    case.extra["links"] = [link for link in _links(case) if not (link.get("type") == "case" and link.get("case") == other.id)]

    consultations = other.extra.get("consultations") or []
    if consultations:
        case.extra.setdefault("consultations", []).extend({**item, "merged_from": other.id} for item in consultations)
        if "consultation_issue" not in case.extra and other.extra.get("consultation_issue"):
            case.extra["consultation_issue"] = dict(other.extra["consultation_issue"])
    return adopted


def _empty(other: Case, case_id: str, actor: str) -> None:
    previous = other.status
    other.messages, other.attachments, other.notes, other.findings = [], [], [], []
    other.extra["consultations"] = []
    other.extra["merged_into"] = case_id
    other.status = "closed"
    other.resolution = f"merged into {case_id}"
    other.record(actor, "closed", resolution=other.resolution, merged_into=case_id, previous_status=previous)


def _audit(action: str, actor: str, target: dict[str, Any], outcome: str, detail: dict[str, Any]) -> None:
    from helpctl.audit import AuditLog

    try:
        AuditLog().append(action, operator=actor, target=target, outcome=outcome, request_id=str(target.get("case")), detail=detail)
    except (OSError, HelpctlError) as error:
        # The change is made and recorded in the case; a failed audit write must not hide that.
        logger.error("the audit log entry %s for case %s failed: %s", action, target.get("case"), error)
