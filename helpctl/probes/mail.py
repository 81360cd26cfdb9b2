"""The mail probe: what happened to the mail Mandrill sent to the case's people.

For the requester and each user of the case, the probe searches Mandrill's activity over
a window that starts `window_days` before the report and ends now. It then reads the
details of at most `max_messages` messages (`messages/info`, undelivered ones first, then
the newest) and the address's active rejects-list entries. It returns one finding per
address, with the `mail.*` signals that classification rules test, and streams the raw
responses to `evidence/mail-<address>.jsonl`.

Mandrill keeps message activity for a limited time (`retention_days`). When the window
starts before that, the older part is not searched and the finding is `partial` with the
reason "outside retention: cannot tell ...": no mail found there does not mean none was
sent. "Not found within the window" is `empty`.

A rejected or bounced message is not a delivery, even though Mandrill accepted the call
that sent it with HTTP 200.

Failed Mandrill calls never raise, because the client turns every httpx error into a
helpctl error. They give findings with outcome failed, timed_out or rate_limited. After an auth failure or a rate limit that outlasted the client's budget,
the remaining addresses are not tried and get the same outcome.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from collections.abc import Iterator
from typing import Any

from helpctl.cases.model import Case
from helpctl.errors import AuthError, HelpctlError, NotFound, RateLimited, UsageError
from helpctl.findings import Finding, isoformat, utc_now
from helpctl.probes.subjects import case_addresses, failed_finding, failure_outcome

logger = logging.getLogger(__name__)

SOURCE = "mail"
CHECK = "delivery"
SEARCH_LIMIT = 1000  # Mandrill's maximum, so a search that returns this many may be cut short
MAX_INFO_MESSAGES = 5
INVITATION_COMPONENT = "members"

# Message states that mean the mail did not (yet) reach the inbox.
UNDELIVERED_STATES = ("bounced", "soft-bounced", "rejected", "spam", "unsub", "deferred")
STATE_WORDS = {
    "bounced": "hard-bounced",
    "soft-bounced": "soft-bounced",
    "rejected": "was rejected",
    "spam": "was reported as spam",
    "unsub": "was not sent because the recipient unsubscribed",
    "deferred": "is deferred while Mandrill retries the delivery",
}

_INVITED_TO = re.compile(r"invited to (\S+)", re.IGNORECASE)
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclasses.dataclass
class Window:
    """The search window in UTC. `searched_from` is `requested_from` clipped to retention."""

    requested_from: dt.datetime
    searched_from: dt.datetime
    to: dt.datetime
    retention_days: int

    @property
    def outside_retention(self) -> bool:
        return self.requested_from < self.searched_from

    def contains(self, moment: dt.datetime) -> bool:
        return self.searched_from <= moment <= self.to

    def as_dict(self) -> dict[str, str]:
        window = {"from": isoformat(self.searched_from), "to": isoformat(self.to)}
        if self.outside_retention:
            window["requested_from"] = isoformat(self.requested_from)
        return window


@dataclasses.dataclass
class Evidence:
    """Mandrill's responses for one address."""

    address: str
    query: str
    found: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # raw search rows
    messages: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # in the window, newest first
    details: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # messages/info by _id
    rejects: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)  # calls after the search that failed

    @property
    def truncated(self) -> bool:
        return len(self.found) >= SEARCH_LIMIT


def run(
    case: Case,
    client: Any,
    store: Any,
    settings: Any,
    *,
    now: dt.datetime | None = None,
    max_messages: int = MAX_INFO_MESSAGES,
) -> list[Finding]:
    """Check mail delivery to the requester and each user of the case, one finding each.

    `client` is a `MandrillClient`, `store` a `CaseStore`, and `settings` the profile's
    `MandrillSettings` (a whole `Profile` is accepted too). Raises UsageError only when
    the case's report time is not an ISO date.
    """
    settings = getattr(settings, "mandrill", settings)
    now = (now or utc_now()).astimezone(dt.timezone.utc)
    window = search_window(case, settings.window_days, settings.retention_days, now)
    addresses = case_addresses(case)
    if not addresses:
        return [_skipped(case.id, window, "the case names no requester or user address")]

    findings = []
    stop: HelpctlError | None = None
    for address in addresses:
        if not _ADDRESS.match(address):
            findings.append(_skipped(address, window, f"{address!r} is not an email address"))
        elif stop is not None:
            findings.append(_error_finding(address, window, stop, "not tried after an earlier call failed: "))
        else:
            finding, error = _probe_address(case, client, store, address, window, max_messages)
            findings.append(finding)
            if isinstance(error, (AuthError, RateLimited)):
                stop = error
    return findings


def search_window(case: Case, window_days: int, retention_days: int, now: dt.datetime) -> Window:
    """Build the window from `window_days` before the report to now, clipped to retention."""
    reported = _case_time(case)
    requested_from = reported - dt.timedelta(days=window_days)
    retained_from = now - dt.timedelta(days=retention_days)
    return Window(
        requested_from=requested_from,
        searched_from=max(requested_from, retained_from),
        to=max(now, reported),
        retention_days=retention_days,
    )


def search_query(address: str) -> str:
    """Return the Lucene query for mail to `address`, quoted as Mandrill requires."""
    escaped = address.replace("\\", "\\\\").replace('"', '\\"')
    return f'email:"{escaped}"'


def _case_time(case: Case) -> dt.datetime:
    text = case.reported_at or case.created_at
    try:
        moment = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError) as error:
        raise UsageError(f"case {case.id} has an invalid report time {text!r}", hint="use ISO 8601 in UTC, such as 2026-12-04T10:00:00Z") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)


# ----- gathering -----


def _probe_address(
    case: Case, client: Any, store: Any, address: str, window: Window, max_messages: int
) -> tuple[Finding, HelpctlError | None]:
    try:
        evidence = collect(client, address, window, max_messages)
    except HelpctlError as error:
        logger.warning("mail probe: search for %s failed: %s", address, error.message)
        return _error_finding(address, window, error), error

    raw_ref, _ = store.write_rows(case.id, f"mail-{address}", _rows(evidence, window))
    return build_finding(evidence, window, raw_ref), None


def collect(client: Any, address: str, window: Window, max_messages: int = MAX_INFO_MESSAGES) -> Evidence:
    """Search, read message details and the rejects list for one address.

    A failed search raises the client's error; failures after it are kept in
    `Evidence.problems`, except AuthError, which always raises.
    """
    evidence = Evidence(address=address, query=search_query(address))
    evidence.found = client.search(evidence.query, window.searched_from.date(), window.to.date(), SEARCH_LIMIT)
    evidence.messages = _in_window(evidence.found, address, window)

    for message in _relevant(evidence.messages, max_messages):
        try:
            evidence.details[message["_id"]] = client.info(message["_id"])
        except NotFound:
            # The message left retention between the search and this call.
            logger.info("mail probe: message %s is no longer in Mandrill", message["_id"])
        except AuthError:
            raise
        except HelpctlError as error:
            evidence.problems.append(f"message details: {error.message}")
            break

    try:
        entries = client.rejects(address)
    except AuthError:
        raise
    except HelpctlError as error:
        evidence.problems.append(f"rejects list: {error.message}")
    else:
        evidence.rejects = [entry for entry in entries if str(entry.get("email", "")).lower() == address]
    return evidence


def _in_window(found: list[dict[str, Any]], address: str, window: Window) -> list[dict[str, Any]]:
    # `email:` also matches parts of an address, so keep only mail to exactly this one.
    messages = [
        message
        for message in found
        if str(message.get("email", "")).lower() == address and window.contains(_sent_at(message))
    ]
    return sorted(messages, key=lambda message: message.get("ts") or 0, reverse=True)


def _relevant(messages: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Return undelivered messages first, then delivered ones, each newest first."""
    undelivered = [message for message in messages if message.get("state") in UNDELIVERED_STATES]
    delivered = [message for message in messages if message.get("state") not in UNDELIVERED_STATES]
    return (undelivered + delivered)[: max(0, limit)]


def _rows(evidence: Evidence, window: Window) -> Iterator[dict[str, Any]]:
    yield {"kind": "request", "address": evidence.address, "query": evidence.query, "window": window.as_dict()}
    for message in evidence.found:
        yield {"kind": "search", "message": message}
    for detail in evidence.details.values():
        yield {"kind": "info", "message": detail}
    for entry in evidence.rejects:
        yield {"kind": "reject", "entry": entry}


# ----- findings -----


def build_finding(evidence: Evidence, window: Window, raw_ref: str | None) -> Finding:
    """Turn one address's evidence into its finding."""
    headline = _headline(evidence)
    outcome, reason = _outcome(evidence, window)
    component = INVITATION_COMPONENT if headline is not None and _is_invitation(headline) else None
    return Finding(
        source=SOURCE,
        check=CHECK,
        subject=evidence.address,
        outcome=outcome,
        summary=_summary(evidence, window, headline),
        request=_request(evidence, window),
        signals=signals(evidence, window),
        reason=reason,
        raw_ref=raw_ref,
        window=window.as_dict(),
        component=component,
    )


def signals(evidence: Evidence, window: Window) -> dict[str, Any]:
    """Compute the `mail.*` signals of one address."""
    states = {message.get("state") for message in evidence.messages}
    reasons = {entry.get("reason") for entry in evidence.rejects}
    problem = _first_undelivered(evidence.messages)
    return {
        "mail.messages_found": len(evidence.messages),
        "mail.delivered": "sent" in states,
        "mail.opened": any((message.get("opens") or 0) > 0 for message in evidence.messages),
        "mail.soft_bounce": "soft-bounced" in states or "soft-bounce" in reasons,
        "mail.hard_bounce": "bounced" in states or "hard-bounce" in reasons,
        "mail.rejected": "rejected" in states or bool(evidence.rejects),
        "mail.reject_reason": _reject_reason(evidence),
        "mail.smtp_diagnostic": _diagnostic(evidence, problem),
        "mail.unsubscribed": "unsub" in states or "unsub" in reasons,
        "mail.outside_retention": window.outside_retention,
    }


def _outcome(evidence: Evidence, window: Window) -> tuple[str, str | None]:
    reasons = []
    if window.outside_retention:
        reasons.append(
            f"outside retention: cannot tell what was sent before {window.searched_from:%Y-%m-%d} "
            f"(Mandrill keeps {window.retention_days} days of activity)"
        )
    reasons.extend(evidence.problems)
    if reasons:
        return "partial", "; ".join(reasons)

    if evidence.truncated:
        return "truncated", f"the search returned Mandrill's maximum of {SEARCH_LIMIT} messages, so older ones were not read"
    if evidence.messages or evidence.rejects:
        return "ok", None
    return "empty", None


def _request(evidence: Evidence, window: Window) -> dict[str, Any]:
    return {
        "method": "messages/search",
        "query": evidence.query,
        "date_from": window.searched_from.date().isoformat(),
        "date_to": window.to.date().isoformat(),
        "limit": SEARCH_LIMIT,
        "info_ids": list(evidence.details),
        "rejects_email": evidence.address,
    }


def _headline(evidence: Evidence) -> dict[str, Any] | None:
    """Return the message the summary is about: the newest undelivered one, else the newest."""
    problem = _first_undelivered(evidence.messages)
    if problem is not None:
        return evidence.details.get(problem["_id"], problem)
    if evidence.messages:
        newest = evidence.messages[0]
        return evidence.details.get(newest["_id"], newest)
    return None


def _first_undelivered(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    # A bounce explains more than a later rejection caused by that bounce, so it comes first.
    for states in (("bounced", "soft-bounced", "spam", "unsub"), ("rejected", "deferred")):
        for message in messages:
            if message.get("state") in states:
                return message
    return None


def _reject_reason(evidence: Evidence) -> str | None:
    for entry in evidence.rejects:
        if entry.get("reason"):
            return str(entry["reason"])
    for message in evidence.messages:
        reject = message.get("reject")
        if message.get("state") == "rejected" and isinstance(reject, dict) and reject.get("reason"):
            return str(reject["reason"])
    return None


def _diagnostic(evidence: Evidence, problem: dict[str, Any] | None) -> str | None:
    if problem is not None:
        detail = evidence.details.get(problem["_id"], problem)
        for event in reversed(detail.get("smtp_events") or []):
            if event.get("diag") and event.get("type") != "sent":
                return _plain_diag(event["diag"])
        if detail.get("diag"):
            return _plain_diag(detail["diag"])
    for entry in evidence.rejects:
        if entry.get("detail"):
            return _plain_diag(entry["detail"])
    return None


def _plain_diag(diag: str) -> str:
    # Mandrill prefixes the remote server's reply with the protocol, as in "smtp;550 5.1.1 ...".
    return re.sub(r"^smtp;\s*", "", str(diag).strip(), flags=re.IGNORECASE)


def _summary(evidence: Evidence, window: Window, headline: dict[str, Any] | None) -> str:
    address = evidence.address
    parts = []
    if headline is not None and headline.get("state") in UNDELIVERED_STATES:
        parts.append(_undelivered_sentence(evidence, headline))
    elif evidence.messages:
        parts.append(_delivered_sentence(evidence, window, headline))
    elif not evidence.rejects:
        parts.append(f"no mail to {address} found between {window.searched_from:%Y-%m-%d} and {window.to:%Y-%m-%d}")

    for entry in evidence.rejects:
        since = str(entry.get("created_at") or "")[:10]
        parts.append(f"{address} is on the rejects list ({entry.get('reason')} since {since}), so Mandrill rejects new mail to it")

    if window.outside_retention:
        parts.append(f"outside retention: cannot tell before {window.searched_from:%Y-%m-%d}")
    return "; ".join(parts)


def _undelivered_sentence(evidence: Evidence, message: dict[str, Any]) -> str:
    state = str(message.get("state"))
    sentence = f"{_label(message)} sent to {evidence.address} on {_sent_at(message):%Y-%m-%d} {STATE_WORDS[state]}"
    if state == "rejected" and _reject_reason(evidence):
        sentence += f" ({_reject_reason(evidence)})"
    diagnostic = _diagnostic(evidence, message) if state != "rejected" else None
    if diagnostic:
        sentence += f": {diagnostic}"

    others = [item for item in evidence.messages if item.get("state") in UNDELIVERED_STATES and item["_id"] != message["_id"]]
    if others:
        noun = "mail" if len(others) == 1 else "mails"
        sentence += f"; {len(others)} other {noun} to the address not delivered"
    return sentence


def _delivered_sentence(evidence: Evidence, window: Window, newest: dict[str, Any] | None) -> str:
    count = len(evidence.messages)
    delivered = sum(1 for message in evidence.messages if message.get("state") == "sent")
    opened = sum(1 for message in evidence.messages if (message.get("opens") or 0) > 0)
    noun = "mail" if count == 1 else "mails"
    sentence = (
        f"{count} {noun} to {evidence.address} between {window.searched_from:%Y-%m-%d} and {window.to:%Y-%m-%d}: "
        f"{delivered} delivered, {opened} opened"
    )
    if newest is not None:
        sentence += f"; latest: {_label(newest)} on {_sent_at(newest):%Y-%m-%d}"
    return sentence


def _label(message: dict[str, Any]) -> str:
    if _is_invitation(message):
        metadata = message.get("metadata") or {}
        found = _INVITED_TO.search(str(message.get("subject") or ""))
        group = metadata.get("group") or (found.group(1) if found else None)
        return f"the invitation to {group}" if group else "the invitation"
    return f"the mail \"{message.get('subject') or '(no subject)'}\""


def _is_invitation(message: dict[str, Any]) -> bool:
    tags = [str(tag).lower() for tag in message.get("tags") or []]
    template = str(message.get("template") or "").lower()
    subject = str(message.get("subject") or "").lower()
    return "invitation" in tags or "invitation" in template or "invit" in subject


def _sent_at(message: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(message.get("ts") or 0), dt.timezone.utc)


def _skipped(subject: str, window: Window, reason: str) -> Finding:
    return Finding(
        source=SOURCE,
        check=CHECK,
        subject=subject,
        outcome="skipped",
        summary=f"mail not checked: {reason}",
        reason=reason,
        window=window.as_dict(),
    )


def _error_finding(address: str, window: Window, error: HelpctlError, prefix: str = "") -> Finding:
    reason = prefix + error.message
    if error.hint:
        reason += f" ({error.hint})"
    return failed_finding(
        SOURCE,
        CHECK,
        address,
        f"could not check mail to {address}: {error.message}",
        request={"method": "messages/search", "query": search_query(address), "date_from": window.searched_from.date().isoformat(), "date_to": window.to.date().isoformat()},
        window=window.as_dict(),
        outcome=failure_outcome(error),
        reason=reason,
    )
