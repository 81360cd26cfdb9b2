"""Messages to the requester: draft from a template, check for leaks, send with Mandrill.

Templates are `string.Template` texts (placeholders such as `$case_id`, never code) in
`templates/<language>/<name>.txt`, shipped in English and Spanish. A profile's
`notify.templates_dir` contains `en/` and `es/` folders whose files replace the shipped
ones of the same name. A template's first line is `Subject: ...`, and the body follows it.

Placeholders: `$case_id`, `$subject` (the case's), `$requester_name`, `$requester_email`,
`$organization`, `$issue_url` (only in a case with a filed issue), `$issue_line` (a line
with the issue link, empty without an issue), `$next_step`, `$note` (the engineer's
`--note`), `$signature`, `$engineer_name` and `$update_due` (when the next update is due).

Before anything is sent, a redaction check lists what blocks the message: internal
evidence copied into the note (finding summaries, query text, signal names, log lines,
raw rows), secrets anywhere in the message (the patterns of `helpctl.redact`), and other
people's personal data (e-mail addresses other than the requester's and the sender's,
phone numbers, IP addresses).

A sent message is threaded under the requester's latest message (In-Reply-To and
References), so their reply comes back into the same case. Each send records a `notified`
event with the per-recipient status and a `mail.sent` audit entry, and stores the text
sent in the case's `mail/` folder.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
import string
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpctl.errors import ConfigError, HelpctlError, PreconditionFailed, ServiceError, ServiceTimeout, UsageError
from helpctl.findings import utc_now

if TYPE_CHECKING:
    from helpctl.cases.model import Case, Event
    from helpctl.cases.store import CaseStore
    from helpctl.config.settings import Profile

logger = logging.getLogger(__name__)

TEMPLATES = ("received", "needs-info", "update", "filed", "access-done", "resolved", "reopened")
LANGUAGES = ("en", "es")
SHIPPED_TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

# Templates whose content is the engineer's note, so they need --note.
NOTE_REQUIRED = frozenset({"needs-info", "update"})
# Mandrill statuses of a recipient whose message was accepted for delivery.
ACCEPTED_STATUSES = frozenset({"sent", "queued", "scheduled"})
# References keeps the thread's first message and the latest ones (RFC 5322, 3.6.4).
MAX_REFERENCES = 20

NEXT_STEPS = {
    "en": {
        "received": "An engineer is looking into your request. We will write to you again by $due at the latest.",
        "needs-info": "Please reply to this message with that information. Your case waits for your reply, and we continue as soon as it arrives.",
        "update": "We will write to you again by $due at the latest.",
        "filed": "Our product team will review the issue. We will write to you again by $due at the latest, or sooner when the issue changes.",
        "access-done": "Please sign in and check that everything works for you. If something is still not right, reply to this message.",
        "resolved": "No action is needed on your side. If the problem comes back, reply to this message and we will reopen the case.",
        "reopened": "We will write to you again by $due at the latest.",
    },
    "es": {
        "received": "Un ingeniero está revisando su solicitud. Le escribiremos de nuevo a más tardar el $due.",
        "needs-info": "Por favor responda a este mensaje con esa información. Su caso queda en espera de su respuesta y continuamos apenas la recibamos.",
        "update": "Le escribiremos de nuevo a más tardar el $due.",
        "filed": "Nuestro equipo de producto revisará la incidencia. Le escribiremos de nuevo a más tardar el $due, o antes si la incidencia cambia.",
        "access-done": "Por favor ingrese y verifique que todo funciona. Si algo aún no está bien, responda a este mensaje.",
        "resolved": "No necesita hacer nada más. Si el problema vuelve a presentarse, responda a este mensaje y reabriremos el caso.",
        "reopened": "Le escribiremos de nuevo a más tardar el $due.",
    },
}
ISSUE_LINES = {"en": "Issue: $url", "es": "Incidencia: $url"}
WEEKDAYS = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
}
MONTHS = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"),
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre"),
}
DATE_FORMATS = {"en": "{weekday} {day} {month} {year}, {time} ({offset})", "es": "{weekday} {day} de {month} de {year}, {time} ({offset})"}

SECRET_KINDS = ("authorization", "cookie", "jwt", "password", "token")
PERSONAL_KINDS = {
    "email": ("e-mail address", "e-mail addresses", " other than the requester's and the sender's"),
    "phone": ("phone number", "phone numbers", ""),
    "ip": ("IP address", "IP addresses", ""),
}

_BLANK_LINES = re.compile(r"\n{3,}")
_WORD = re.compile(r"\w+")
# Shapes of internal evidence that should never reach a requester.
_EVIDENCE_PATTERNS = (
    ("query text", re.compile(r"\b(?:query|mutation)\b\s*\w*\s*(?:\([^)]*\)\s*)?\{")),
    ("query text", re.compile(r"(?im)^\s*fields\s+@\w+|\|\s*(?:filter|stats|sort|parse|display)\s|@(?:timestamp|message|logStream)\b")),
    ("query text", re.compile(r"\bSELECT\b[^\n]*\bFROM\b")),
    ("a log line", re.compile(r"(?m)^\W{0,2}\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}\S*\s.*\b(?:ERROR|WARN|WARNING|INFO|DEBUG|CRITICAL|FATAL|TRACE)\b")),
    ("a log line", re.compile(r"(?m)Traceback \(most recent call last\)|^\s*File \"[^\"]+\", line \d+|^\s*at \S+ \(\S+:\d+:\d+\)")),
)
# Word sequences this long, copied from a finding, count as copied evidence.
SHINGLE_WORDS = 6
MIN_SHINGLE_WORDS = 4
MIN_QUERY_CHARS = 24


@dataclasses.dataclass
class Draft:
    """A message to a case's requester, ready to be shown (`render`) or sent."""

    case_id: str
    template: str
    language: str
    to: str
    to_name: str
    from_email: str
    from_name: str
    reply_to: str | None
    subject: str
    text: str
    in_reply_to: str | None
    references: list[str]
    problems: list[str]
    issue_url: str | None = None
    template_source: str = ""

    def headers(self) -> list[tuple[str, str]]:
        """Return the message's headers in the order a mail client shows them."""
        headers = [("From", _address(self.from_name, self.from_email)), ("To", _address(self.to_name, self.to))]
        if self.reply_to:
            headers.append(("Reply-To", self.reply_to))
        headers.append(("Subject", self.subject))
        headers += self.thread_headers().items()
        return headers

    def thread_headers(self) -> dict[str, str]:
        headers = {}
        if self.in_reply_to:
            headers["In-Reply-To"] = self.in_reply_to
        if self.references:
            headers["References"] = " ".join(self.references)
        return headers

    def render(self) -> str:
        """Return the exact message: headers, a blank line and the text."""
        lines = [f"{name}: {value}" for name, value in self.headers()]
        return "\n".join(lines) + "\n\n" + self.text

    def mandrill_message(self) -> dict[str, Any]:
        """Return the `message` object of Mandrill's messages/send."""
        headers = self.thread_headers()
        if self.reply_to:
            headers["Reply-To"] = self.reply_to
        return {
            "from_email": self.from_email,
            "from_name": self.from_name,
            "to": [{"email": self.to, "name": self.to_name, "type": "to"}],
            "subject": self.subject,
            "text": self.text,
            "headers": headers,
            # Open and click tracking rewrite links and add an image, and a support reply needs neither.
            "track_opens": False,
            "track_clicks": False,
            "auto_html": False,
            "tags": ["helpctl", f"helpctl-{self.template}"],
            "metadata": {"case_id": self.case_id, "template": self.template},
        }

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class RecipientStatus:
    """Mandrill's result for one recipient: sent, queued, scheduled, rejected or invalid."""

    email: str
    status: str
    reject_reason: str | None
    message_id: str | None

    @property
    def accepted(self) -> bool:
        return self.status in ACCEPTED_STATUSES


@dataclasses.dataclass
class SendResult:
    case_id: str
    template: str
    language: str
    statuses: list[RecipientStatus]
    file: str | None = None

    @property
    def ok(self) -> bool:
        """True when every recipient was accepted for delivery."""
        return bool(self.statuses) and all(item.accepted for item in self.statuses)

    @property
    def message_ids(self) -> list[str]:
        return [item.message_id for item in self.statuses if item.message_id]

    def as_dict(self) -> dict[str, Any]:
        return {
            "case": self.case_id,
            "template": self.template,
            "language": self.language,
            "ok": self.ok,
            "statuses": [dataclasses.asdict(item) for item in self.statuses],
            "message_ids": self.message_ids,
            "file": self.file,
        }


# ---------------------------------------------------------------------------------------
# Drafting


def draft(
    case: Case,
    template: str,
    profile: Profile,
    *,
    lang: str | None = None,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> Draft:
    """Render `template` for the case's requester and run the redaction check on it.

    Raises UsageError for an unknown template or language, or a missing note where the
    template needs one, and PreconditionFailed when the template links an issue that the
    case does not have or the case has no requester address.
    """
    _check_request(case, template, lang, note)
    language = pick_language(case, profile, lang)
    note = (note or "").strip()

    body, source = load_template(template, language, profile)
    values = _values(case, template, language, profile, note, now or utc_now())
    subject, text = _render(body, source, values, case, template)

    thread = _thread(case)
    result = Draft(
        case_id=case.id,
        template=template,
        language=language,
        to=case.requester.email,
        to_name=case.requester.name,
        from_email=profile.notify.sender or profile.mandrill.sender,
        from_name=profile.notify.sender_name or profile.mandrill.sender_name,
        reply_to=profile.notify.reply_to,
        subject=subject,
        text=text,
        in_reply_to=thread[-1] if thread else None,
        references=thread,
        problems=[],
        issue_url=_issue_url(case),
        template_source=source,
    )
    result.problems = check_message(case, result, note, profile)
    return result


def _check_request(case: Case, template: str, lang: str | None, note: str | None) -> None:
    if template not in TEMPLATES:
        raise UsageError(f"unknown template {template!r}", hint=f"use one of: {', '.join(TEMPLATES)}")
    if lang is not None and lang not in LANGUAGES:
        raise UsageError(f"--lang: {lang!r} is not supported", hint="use en or es")
    if template in NOTE_REQUIRED and not (note or "").strip():
        raise UsageError(f"the {template} template needs --note with the text for the requester", hint=f"helpctl notify {case.id} {template} --note '...'")
    if not case.requester.email:
        raise PreconditionFailed(f"case {case.id} has no requester e-mail address", hint=f"set one with 'helpctl case edit {case.id} --requester ...'")
    if template == "filed" and not _issue_url(case):
        raise PreconditionFailed(f"case {case.id} has no filed issue to link", hint=f"file it first with 'helpctl file {case.id}'")


def pick_language(case: Case, profile: Profile, lang: str | None = None) -> str:
    """Return the language: `lang`, else the case's (set at intake), else the profile's."""
    for candidate in (lang, case.language, profile.language):
        if candidate in LANGUAGES:
            return str(candidate)
    return "en"


def load_template(name: str, language: str, profile: Profile) -> tuple[str, str]:
    """Return a template's text and its path. A file in the profile's folder wins over the shipped one."""
    path = SHIPPED_TEMPLATES_DIR / language / f"{name}.txt"
    folder = _override_dir(profile)
    if folder is not None and (folder / language / f"{name}.txt").is_file():
        path = folder / language / f"{name}.txt"

    try:
        return path.read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the template {path}: {error}", hint="fix the file or remove it to use the shipped one") from error


def _override_dir(profile: Profile) -> Path | None:
    if not profile.notify.templates_dir:
        return None

    folder = Path(profile.notify.templates_dir).expanduser()
    if not folder.is_absolute() and profile.source:
        # A relative folder is read from the profile file's folder, not the working directory.
        folder = Path(profile.source).parent / folder
    if not folder.is_dir():
        raise ConfigError(f"notify.templates_dir {folder} is not a folder", hint="create it with en/ and es/ inside, or remove the setting")
    return folder


def _values(case: Case, template: str, language: str, profile: Profile, note: str, now: dt.datetime) -> dict[str, str]:
    from helpctl import sla

    due = sla.add_office_hours(now, profile.sla.next_update_hours, profile.sla.calendar)
    due_text = format_moment(due, language, sla.office_calendar(profile.sla.calendar).offset)
    issue_url = _issue_url(case) or ""
    return {
        "case_id": case.id,
        "subject": _one_line(case.subject),
        "requester_name": _one_line(case.requester.name or case.requester.email),
        "requester_email": case.requester.email,
        "organization": case.organization or "",
        "issue_url": issue_url,
        "issue_line": string.Template(ISSUE_LINES[language]).substitute(url=issue_url) if issue_url else "",
        "next_step": string.Template(NEXT_STEPS[language][template]).substitute(due=due_text),
        "note": note,
        "signature": profile.notify.signature,
        "engineer_name": profile.engineer.name,
        "update_due": due_text,
    }


def _render(body: str, source: str, values: dict[str, str], case: Case, template: str) -> tuple[str, str]:
    first, _, rest = body.partition("\n")
    if not first.lower().startswith("subject:"):
        raise ConfigError(f"{source}: the first line must be 'Subject: ...'", hint="put the subject on the template's first line")

    compiled = string.Template(body)
    if "issue_url" in compiled.get_identifiers() and not values["issue_url"]:
        raise PreconditionFailed(f"the {template} template links the filed issue, but case {case.id} has none", hint=f"file it first with 'helpctl file {case.id}'")

    try:
        subject = string.Template(first.partition(":")[2]).substitute(values)
        text = string.Template(rest).substitute(values)
    except KeyError as error:
        known = ", ".join(f"${name}" for name in values)
        raise ConfigError(f"{source}: unknown placeholder ${error.args[0]}", hint=f"use one of: {known}") from error
    except ValueError as error:
        raise ConfigError(f"{source}: invalid placeholder ({error})", hint="write $$ for a dollar sign") from error

    text = "\n".join(line.rstrip() for line in text.strip("\n").splitlines())
    return _one_line(subject), _BLANK_LINES.sub("\n\n", text) + "\n"


def _one_line(text: str) -> str:
    # A line break in a header value would start a new header.
    return " ".join(text.split())


def _issue_url(case: Case) -> str | None:
    url = (case.issue or {}).get("url")
    return str(url) if url else None


def format_moment(moment: dt.datetime, language: str, offset: dt.timezone) -> str:
    """Format a moment in the office's UTC offset, with day and month names in `language`."""
    local = moment.astimezone(offset)
    return DATE_FORMATS[language].format(
        weekday=WEEKDAYS[language][local.weekday()],
        day=local.day,
        month=MONTHS[language][local.month - 1],
        year=local.year,
        time=local.strftime("%H:%M"),
        offset=_offset_name(offset),
    )


def _offset_name(offset: dt.timezone) -> str:
    minutes = int(offset.utcoffset(None).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{minutes:02d}"


def _thread(case: Case) -> list[str]:
    """Return the References of a reply to the requester's latest message, whose own id is last."""
    requester = case.requester.email.lower()
    messages = [entry for entry in case.messages if entry.get("message_id")]
    from_requester = [entry for entry in messages if str((entry.get("from") or {}).get("email") or "").lower() == requester]
    latest = (from_requester or messages or [None])[-1]
    if latest is None:
        return []

    chain = [str(item) for item in latest.get("references") or [] if item]
    if latest.get("in_reply_to") and latest["in_reply_to"] not in chain:
        chain.append(str(latest["in_reply_to"]))
    chain = list(dict.fromkeys(chain + [str(latest["message_id"])]))
    if len(chain) > MAX_REFERENCES:
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1):]
    return chain


# ---------------------------------------------------------------------------------------
# The redaction check


def check_message(case: Case, message: Draft, note: str, profile: Profile) -> list[str]:
    """Return the problems that block sending `message`. An empty list allows it.

    The problems name the kind and the count of what was found, never the value.
    """
    problems = evidence_problems(case, note)
    allowed = {case.requester.email, message.from_email, message.reply_to or "", profile.engineer.email}
    whole = f"{message.subject}\n{message.text}"
    problems += data_problems(whole, allowed, quoted=case.subject)
    return list(dict.fromkeys(problems))


def evidence_problems(case: Case, note: str) -> list[str]:
    """List the internal evidence copied into the note."""
    if not note.strip():
        return []

    problems = []
    for finding in case.findings:
        key = finding.get("key") or f"{finding.get('source')}.{finding.get('check')}"
        if _copied(str(finding.get("summary") or ""), note):
            problems.append(f"the note repeats the summary of finding {key} (internal evidence)")
        if any(_copied(text, note) for text in _query_texts(finding.get("request"))):
            problems.append(f"the note contains the query text of finding {key} (internal evidence)")
        for signal in finding.get("signals") or {}:
            if re.search(rf"(?<![\w.]){re.escape(signal)}(?![\w.])", note):
                problems.append(f"the note names the signal {signal} (internal evidence)")

    for kind, pattern in _EVIDENCE_PATTERNS:
        if pattern.search(note):
            problems.append(f"the note contains {kind} (internal evidence)")
    if _has_raw_row(note):
        problems.append("the note contains a raw data row (internal evidence)")
    return problems


def data_problems(text: str, allowed_emails: set[str], *, quoted: str = "") -> list[str]:
    """List secrets and other people's personal data in `text`.

    Addresses in `allowed_emails` are allowed. Personal data that also appears in
    `quoted` (the requester's own subject line, which the message repeats) is allowed.
    """
    from helpctl.redact import Redactor

    for email in allowed_emails:
        if email:
            text = re.sub(re.escape(email), " ", text, flags=re.IGNORECASE)
    if quoted.strip():
        text = text.replace(_one_line(quoted), " ")

    redactor = Redactor()
    redactor.redact(text)
    found = redactor.report()

    problems = []
    for kind in SECRET_KINDS:
        if found.get(kind):
            problems.append(f"the message contains a secret ({kind})")
    for kind, (singular, plural, scope) in PERSONAL_KINDS.items():
        count = found.get(kind, 0)
        if count:
            problems.append(f"the message contains {count} {singular if count == 1 else plural}{scope} (personal data)")
    return problems


def _shingles(text: str, size: int) -> set[tuple[str, ...]]:
    words = [word.lower() for word in _WORD.findall(text)]
    return {tuple(words[index:index + size]) for index in range(len(words) - size + 1)}


def _copied(source: str, note: str) -> bool:
    """Return whether the note repeats a run of words of `source`. Sources shorter than 4 words never match."""
    words = _WORD.findall(source)
    if len(words) < MIN_SHINGLE_WORDS:
        return False
    size = min(SHINGLE_WORDS, len(words))
    return bool(_shingles(source, size) & _shingles(note, size))


def _query_texts(request: Any) -> list[str]:
    """Return the long strings of a finding's request: query text and the like."""
    if isinstance(request, str):
        return [request] if len(request) >= MIN_QUERY_CHARS else []
    if isinstance(request, dict):
        return [text for value in request.values() for text in _query_texts(value)]
    if isinstance(request, list):
        return [text for value in request for text in _query_texts(value)]
    return []


def _has_raw_row(text: str) -> bool:
    """Return whether a line of `text` is a JSON object or array of objects (an evidence row)."""
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith(("{", "[")):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            if line.count('":') >= 2:
                return True
            continue
        if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(item, dict) for item in value)):
            return True
    return False


# ---------------------------------------------------------------------------------------
# Sending


def send(store: CaseStore, case_id: str, draft: Draft, profile: Profile, actor: str, *, client: Any = None) -> SendResult:
    """Send a checked draft with Mandrill and record the outcome in the case and the audit log.

    Raises PreconditionFailed when the redaction check found problems (nothing is sent)
    and HelpctlError (exit 1) when a recipient was rejected or invalid, after recording.
    Errors of the Mandrill client (ServiceError, AuthError, ...) pass through, audited.
    """
    _check_sendable(store, case_id, draft)
    owns_client = client is None
    if owns_client:
        from helpctl import services

        client = services.mandrill_client(profile)

    try:
        results = client.send(draft.mandrill_message())
    except HelpctlError as error:
        # After a timeout or a 5xx page the mail may have left, so the outcome is unknown.
        unknown = isinstance(error, ServiceTimeout) or (isinstance(error, ServiceError) and (error.status or 0) >= 500)
        _audit(actor, draft, "unknown" if unknown else "failed", {"error": error.kind, "message": error.message})
        raise
    finally:
        if owns_client:
            client.close()

    result = SendResult(case_id=draft.case_id, template=draft.template, language=draft.language, statuses=_statuses(results))
    # The audit entry comes first: the mail left even if recording it in the case fails.
    _audit(actor, draft, _outcome(result), {"message_ids": result.message_ids, "statuses": [dataclasses.asdict(item) for item in result.statuses]})
    _record(store, draft, result, actor)
    if not result.ok:
        raise HelpctlError(_failure_text(draft, result), hint="check the address with the requester; the attempt is recorded in the case")
    logger.info("sent %s to the requester of case %s (Mandrill ids %s)", draft.template, draft.case_id, ", ".join(result.message_ids))
    return result


def _check_sendable(store: CaseStore, case_id: str, message: Draft) -> None:
    if message.problems:
        raise PreconditionFailed(
            f"the message for case {message.case_id} was not sent: " + "; ".join(message.problems),
            hint="reword --note and check the message with --dry-run",
        )

    case = store.load(case_id)
    if case.id != message.case_id or case.requester.email.lower() != message.to.lower():
        raise PreconditionFailed(f"the draft was made for another case or requester than case {case.id} has now", hint="draft the message again")


def _statuses(results: list[dict[str, Any]]) -> list[RecipientStatus]:
    return [
        RecipientStatus(
            email=str(item.get("email") or ""),
            status=str(item.get("status") or "unknown"),
            reject_reason=item.get("reject_reason"),
            message_id=item.get("_id"),
        )
        for item in results
    ]


def _outcome(result: SendResult) -> str:
    if result.ok:
        return result.statuses[0].status
    failed = [item.status for item in result.statuses if not item.accepted]
    return failed[0] if failed else "failed"


def _failure_text(message: Draft, result: SendResult) -> str:
    parts = []
    for item in result.statuses:
        if not item.accepted:
            reason = f" ({item.reject_reason})" if item.reject_reason else ""
            parts.append(f"{item.email}: {item.status}{reason}")
    return f"Mandrill did not accept the {message.template} message for case {message.case_id}: " + ", ".join(parts or ["no recipient result"])


def _record(store: CaseStore, message: Draft, result: SendResult, actor: str) -> None:
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    with store.edit(message.case_id) as case:
        result.file = store.save_file(case.id, "mail", f"{stamp}-sent-{message.template}.txt", message.render().encode("utf-8"))
        case.record(
            actor,
            "notified",
            template=message.template,
            language=message.language,
            recipients=[message.to],
            statuses=[dataclasses.asdict(item) for item in result.statuses],
            message_id=result.message_ids[0] if result.message_ids else None,
            ok=result.ok,
            subject=message.subject,
            in_reply_to=message.in_reply_to,
            file=result.file,
        )
        if message.template == "needs-info" and result.ok and case.status not in ("waiting", "closed"):
            previous, case.status = case.status, "waiting"
            case.record(actor, "status-changed", previous=previous, status="waiting", reason="needs-info sent to the requester")


def _audit(actor: str, message: Draft, outcome: str, detail: dict[str, Any]) -> None:
    from helpctl.audit import AuditLog

    AuditLog().append(
        "mail.sent",
        operator=actor,
        target={"case": message.case_id, "email": message.to},
        outcome=outcome,
        request_id=message.case_id,
        detail={"template": message.template, "language": message.language, "subject": message.subject, **detail},
    )


def last_notification(case: Case, *, include_failed: bool = False) -> Event | None:
    """Return the case's latest `notified` event that reached the requester (any with `include_failed`)."""
    for event in reversed(case.timeline):
        if event.event == "notified" and (include_failed or event.detail.get("ok", True) is not False):
            return event
    return None


def _address(name: str, email: str) -> str:
    """Format `Name <email>` for display, quoting a name with characters special in headers."""
    if not name:
        return email
    if any(char in name for char in '",;:<>@()[]\\'):
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}" <{email}>'
    return f"{name} <{email}>"
