"""Shareable reports of a case in Markdown, HTML or JSON.

`build_report` gathers the request, subjects, classification with the rules and findings
behind it, the findings, the filed issue, the notifications sent, the timeline and the chart
data in one dict. Unless the report is internal, every string in it goes through
`Redactor(case)`: e-mail addresses become placeholders (`requester`, `user-1`, ...), the
requester's name becomes `requester`, and tokens, phone numbers and IP addresses become
`[redacted:<kind>]`. An internal report keeps everything and states so at the top.

The HTML report is one self-contained file: inline CSS, charts as inline SVG, no scripts
and nothing loaded from the network (no fonts, images, style sheets or frames). Its
Content-Security-Policy `default-src 'none'` makes a browser block any load that slips in.
The only URL that becomes a link is the filed issue's, as an `<a>` that loads nothing.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from helpctl import __version__
from helpctl.cases.model import Case
from helpctl.errors import UsageError
from helpctl.findings import isoformat, utc_now

FORMATS = ("md", "html", "json")
REPORT_VERSION = 1
# A report lists at most this many timeline items, the newest. The chart counts all of them.
MAX_TIMELINE_ITEMS = 1000

NOTICE_INTERNAL = (
    "INTERNAL REPORT: not redacted. It contains personal data and may contain secrets; "
    "do not share it outside the support team."
)
NOTICE_REDACTED = (
    "Redacted report: e-mail addresses are placeholders (requester, user-1, ...); "
    "names of the requester, tokens, phone numbers and IP addresses are replaced."
)


# ---------------------------------------------------------------------------------------------
# The report's content


def build_report(
    case: Case, folder: Path, *, internal: bool = False, now: dt.datetime | None = None, max_items: int = MAX_TIMELINE_ITEMS
) -> dict[str, Any]:
    """Collect everything a report shows; redacted unless `internal`."""
    from helpctl.timeline import TimelineFilter, build

    timeline = build(case, folder, TimelineFilter(limit=max_items))
    chart = timeline.chart_counts.histogram()
    report: dict[str, Any] = {
        "report": {
            "version": REPORT_VERSION,
            "generated_at": isoformat(now or utc_now()),
            "generator": f"helpctl {__version__}",
            "internal": internal,
            "notice": NOTICE_INTERNAL if internal else NOTICE_REDACTED,
        },
        "case": _case_fields(case),
        "request": {"body": case.body, "attachments": list(case.attachments), "notes": _notes(case)},
        "classification": _classification(case),
        "findings": [_finding(item) for item in case.findings],
        "issue": _issue(case),
        "notifications": _notifications(case),
        "timeline": _timeline(timeline),
        "chart": chart.to_dict() if chart else None,
    }
    if internal:
        return report

    from helpctl.redact import Redactor

    redactor = Redactor(case)
    redacted = _redact(report, redactor)
    redacted["report"]["redactions"] = redactor.report()
    return redacted


def _redact(value: Any, redactor: Any) -> Any:
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, dict):
        return {key: _redact(item, redactor) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item, redactor) for item in value]
    return value


def _timeline(timeline: Any) -> dict[str, Any]:
    data = timeline.to_dict()
    # Evidence file names are internal detail, and e-mail addresses in them would redact badly.
    for item in data["items"]:
        item.pop("ref", None)
    data["missing"] = len(data["missing"])
    return data


def _case_fields(case: Case) -> dict[str, Any]:
    return {
        "id": case.id,
        "subject": case.subject,
        "status": case.status,
        "resolution": case.resolution,
        "kind": case.kind,
        "language": case.language,
        "profile": case.profile,
        "requester_name": case.requester.name,
        "requester_email": case.requester.email,
        "organization": case.organization,
        "groups": list(case.subjects.groups),
        "users": list(case.subjects.users),
        "organizations": list(case.subjects.organizations),
        "reported_at": case.reported_at,
        "created_at": case.created_at,
        "updated_at": case.updated_at,
    }


def _notes(case: Case) -> list[dict[str, Any]]:
    return [{"at": note.get("at"), "actor": note.get("actor"), "text": note.get("text")} for note in case.notes]


def _finding(item: dict[str, Any]) -> dict[str, Any]:
    names = ("key", "source", "check", "subject", "outcome", "summary", "reason", "fetched_at", "component")
    return {name: item.get(name) for name in names}


def _classification(case: Case) -> dict[str, Any] | None:
    record = case.classification
    if not record:
        return None

    by_key = {item.get("key"): item for item in case.findings}
    rules = []
    for rule in record.get("rules") or []:
        behind = [
            {"key": key, "outcome": (by_key.get(key) or {}).get("outcome"), "summary": (by_key.get(key) or {}).get("summary")}
            for key in rule.get("findings") or []
        ]
        rules.append({"name": rule.get("name"), "label": rule.get("label"), "description": rule.get("description"), "findings": behind})

    override = record.get("override") or None
    return {
        "label": record.get("label"),
        "rules_label": record.get("rules_label"),
        "override": {"label": override.get("label"), "reason": override.get("reason")} if override else None,
        "at": record.get("at"),
        "actor": record.get("actor"),
        "rules": rules,
    }


def _issue(case: Case) -> dict[str, Any] | None:
    if not case.issue:
        return None
    names = ("iid", "url", "project", "state", "label", "labels", "assignee", "component", "confidential", "filed_at", "synced_at")
    return {name: case.issue.get(name) for name in names if case.issue.get(name) is not None}


def _notifications(case: Case) -> list[dict[str, Any]]:
    sent = []
    for event in case.timeline:
        if event.event != "notified":
            continue
        detail = event.detail or {}
        sent.append(
            {
                "at": event.at,
                "actor": event.actor,
                "template": detail.get("template"),
                "language": detail.get("language"),
                "recipients": [str(item) for item in detail.get("recipients") or []],
                "statuses": [_status_text(item) for item in detail.get("statuses") or []],
                "message_id": detail.get("message_id"),
            }
        )
    return sent


def _status_text(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    text = f"{item.get('email') or item.get('recipient') or '?'}: {item.get('status')}"
    reason = item.get("reject_reason") or item.get("reason")
    return text + (f" ({reason})" if reason else "")


# ---------------------------------------------------------------------------------------------
# Writing


def render(report: dict[str, Any], fmt: str) -> str:
    """Render a built report as md, html or json text."""
    if fmt == "md":
        return render_markdown(report)
    if fmt == "html":
        return render_html(report)
    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    raise UsageError(f"--format: {fmt!r} is not a report format", hint=f"use one of: {', '.join(FORMATS)}")


def write_report(path: Path, text: str) -> int:
    """Write the report to `path` atomically with mode 0600 and return the bytes written."""
    from helpctl.cases.store import write_private_file

    target = path.expanduser()
    if target.is_dir():
        raise UsageError(f"-o: {target} is a folder", hint="give a file name, such as report.html")
    if not target.parent.is_dir():
        raise UsageError(f"-o: folder {target.parent} not found", hint="create it first or write elsewhere")

    data = text.encode("utf-8")
    try:
        write_private_file(target, data)
    except OSError as error:
        raise UsageError(f"-o: failed to write {target}: {error.strerror}", hint="choose a writable place") from error
    return len(data)


def _chart(report: dict[str, Any]) -> Any:
    from helpctl.charts import Histogram

    return Histogram.from_dict(report["chart"]) if report.get("chart") else None


def safe_link(url: Any) -> str | None:
    """Return `url` when it is an absolute http(s) address fit for a link, else None."""
    if not isinstance(url, str):
        return None
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return quote(url.strip(), safe=":/?#[]@!$&'*+,;=%-._~")


def _outcome_counts(report: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for finding in report["findings"]:
        counts[str(finding.get("outcome"))] = counts.get(str(finding.get("outcome")), 0) + 1
    return ", ".join(f"{count} {outcome}" for outcome, count in counts.items()) or "none"


def _skipped_note(timeline: dict[str, Any]) -> str | None:
    parts = []
    if timeline["matched"] > timeline["shown"]:
        parts.append(f"{timeline['matched'] - timeline['shown']} older items not listed")
    untimed = sum(timeline["untimed"].values())
    if untimed:
        parts.append(f"{untimed} evidence rows without a time")
    unreadable = sum(timeline["unreadable"].values())
    if unreadable:
        parts.append(f"{unreadable} unreadable evidence rows")
    if timeline["missing"]:
        parts.append(f"{timeline['missing']} evidence files missing")
    return "; ".join(parts) or None


def _person(name: str, email: str) -> str:
    # Redaction turns both the requester's name and address into "requester".
    if not name or name == email:
        return email
    return f"{name} <{email}>" if email else name


def _summary_fields(report: dict[str, Any]) -> list[tuple[str, Any]]:
    case = report["case"]
    classification = report["classification"] or {}
    status = case["status"] + (f" ({case['resolution']})" if case.get("resolution") else "")
    return [
        ("Case", case["id"]),
        ("Status", status),
        ("Kind", case["kind"]),
        ("Requester", _person(case["requester_name"], case["requester_email"])),
        ("Organization", case["organization"]),
        ("Groups", ", ".join(case["groups"])),
        ("Users", ", ".join(case["users"])),
        ("Language", case["language"]),
        ("Reported", case["reported_at"]),
        ("Opened", case["created_at"]),
        ("Classification", classification.get("label")),
        ("Findings", _outcome_counts(report)),
        ("Profile", case["profile"]),
    ]


# ---------------------------------------------------------------------------------------------
# Markdown

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|!#~])")


def md(text: Any) -> str:
    """Escape text for a Markdown line or table cell: no markup, links, images or raw HTML."""
    flat = " ".join(str("" if text is None else text).split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", flat)


def _md_table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(md(cell) for cell in row) + " |" for row in rows]
    return lines


def _md_block(text: str, info: str = "text") -> list[str]:
    """Fence `text` with tildes longer than any run of tildes inside it."""
    longest = max((len(run) for run in re.findall(r"~+", text)), default=0)
    fence = "~" * max(3, longest + 1)
    return [f"{fence}{info}", text.rstrip("\n"), fence]


def render_markdown(report: dict[str, Any]) -> str:
    case = report["case"]
    meta = report["report"]
    lines = [f"# Case {md(case['id'])}: {md(case['subject'])}", "", f"> **{md(meta['notice'])}**"]
    if meta.get("redactions"):
        lines.append(f"> Replaced: {md(_redaction_counts(meta['redactions']))}")
    lines += ["", f"Generated {md(meta['generated_at'])} by {md(meta['generator'])}.", ""]

    lines += ["## Summary", ""] + _md_table(["Field", "Value"], [[name, value] for name, value in _summary_fields(report) if value])
    lines += _md_request(report["request"])
    lines += _md_classification(report["classification"])
    lines += _md_chart(report)
    lines += _md_findings(report["findings"])
    lines += _md_issue(report["issue"])
    lines += _md_notifications(report["notifications"])
    lines += _md_timeline(report["timeline"])
    return "\n".join(lines) + "\n"


def _md_request(request: dict[str, Any]) -> list[str]:
    lines = ["", "## Request", ""] + _md_block(request["body"] or "(no text)")
    if request["attachments"]:
        lines += ["", "Attachments: " + md(", ".join(request["attachments"]))]
    for note in request["notes"]:
        lines += ["", f"- Note by {md(note['actor'])} at {md(note['at'])}: {md(note['text'])}"]
    return lines


def _md_classification(classification: dict[str, Any] | None) -> list[str]:
    lines = ["", "## Classification", ""]
    if not classification:
        return lines + ["Not classified."]

    lines.append(f"Label: **{md(classification['label'] or 'none')}** (rules voted {md(classification['rules_label'] or 'none')})")
    if classification["override"]:
        lines.append(f"Override: {md(classification['override']['label'])}, because {md(classification['override']['reason'])}")
    lines.append("")
    for rule in classification["rules"]:
        lines.append(f"- Rule {md(rule['name'])} ({md(rule['label'])}): {md(rule['description'])}")
        for finding in rule["findings"]:
            lines.append(f"  - {md(finding['key'])} [{md(finding['outcome'])}]: {md(finding['summary'])}")
    if not classification["rules"]:
        lines.append("No rule fired.")
    return lines


def _md_findings(findings: list[dict[str, Any]]) -> list[str]:
    lines = ["", "## Findings", ""]
    if not findings:
        return lines + ["No findings."]
    rows = [[item["source"], item["check"], item["subject"], item["outcome"], _finding_text(item)] for item in findings]
    return lines + _md_table(["Source", "Check", "Subject", "Outcome", "Summary"], rows)


def _finding_text(item: dict[str, Any]) -> str:
    return item["summary"] + (f" (reason: {item['reason']})" if item.get("reason") else "")


def _md_issue(issue: dict[str, Any] | None) -> list[str]:
    lines = ["", "## Issue", ""]
    if not issue:
        return lines + ["No issue filed."]
    link = safe_link(issue.get("url"))
    where = f"[#{md(issue.get('iid'))} in {md(issue.get('project'))}]({link})" if link else md(issue.get("url"))
    lines.append(f"Filed as {where}, label {md(issue.get('label'))}, assignee {md(issue.get('assignee') or 'nobody')}.")
    if issue.get("labels"):
        lines.append(f"GitLab labels: {md(', '.join(issue['labels']))}.")
    return lines


def _md_notifications(notifications: list[dict[str, Any]]) -> list[str]:
    lines = ["", "## Notifications sent", ""]
    if not notifications:
        return lines + ["None."]
    rows = [[item["at"], item["template"], item["language"], ", ".join(item["recipients"]), "; ".join(item["statuses"])] for item in notifications]
    return lines + _md_table(["Sent", "Template", "Language", "Recipients", "Status"], rows)


def _md_chart(report: dict[str, Any]) -> list[str]:
    from helpctl.charts import render_text

    lines = ["", "## Activity around the report", ""]
    chart = _chart(report)
    if chart is None:
        return lines + ["No errors or usage events near the reported moment."]
    return lines + _md_block("\n".join(render_text(chart)))


def _md_timeline(timeline: dict[str, Any]) -> list[str]:
    lines = ["", "## Timeline", ""]
    rows = [[item["at"], item["source"], item["event"], item["label"]] for item in timeline["items"]]
    lines += _md_table(["Time (UTC)", "Source", "Event", "Detail"], rows) if rows else ["No events."]
    note = _skipped_note(timeline)
    return lines + (["", md(note) + "."] if note else [])


def _redaction_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in counts.items())


# ---------------------------------------------------------------------------------------------
# HTML

CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: #1c2833; background: #ffffff; margin: 2rem auto; max-width: 1100px; padding: 0 1.5rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.3rem; }
h2 { font-size: 1.2rem; border-bottom: 2px solid #d5dbdb; padding-bottom: 0.2rem; margin-top: 2rem; }
.banner { padding: 0.6rem 0.9rem; border-radius: 4px; font-weight: 600; }
.banner.internal { background: #fdedec; border: 2px solid #c0392b; color: #922b21; }
.banner.redacted { background: #eaf2f8; border: 1px solid #2874a6; color: #1b4f72; }
.meta { color: #5d6d7e; font-size: 0.9rem; }
table { border-collapse: collapse; width: 100%; font-size: 0.88rem; }
th, td { border: 1px solid #d5dbdb; padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f4f6f6; }
table.fields th { width: 11rem; }
pre { background: #f8f9f9; border: 1px solid #d5dbdb; padding: 0.8rem; white-space: pre-wrap; word-wrap: break-word; }
.outcome { font-weight: 600; }
.outcome-ok { color: #1e8449; } .outcome-empty { color: #5d6d7e; }
.outcome-failed, .outcome-timed_out, .outcome-rate_limited { color: #c0392b; }
.outcome-partial, .outcome-truncated, .outcome-skipped { color: #b9770e; }
.label { display: inline-block; padding: 0.1rem 0.5rem; border-radius: 3px; background: #1b4f72; color: #ffffff; font-weight: 600; }
tr.case td { background: #fef9e7; }
tr.series-errors td:nth-child(4) { color: #922b21; }
svg.chart { max-width: 100%; height: auto; font-family: inherit; }
.chart-title { font-size: 13px; font-weight: 600; fill: #1c2833; }
.chart-series { font-size: 13px; fill: #1c2833; }
.chart-note { font-size: 11px; fill: #5d6d7e; }
.chart-mark { font-size: 11px; fill: #9a7d0a; font-weight: 600; }
"""


def h(text: Any) -> str:
    return html.escape(str("" if text is None else text), quote=True)


def _html_table(columns: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{h(column)}</th>" for column in columns)
    body = []
    for index, row in enumerate(rows):
        css = f' class="{h(classes[index])}"' if classes and classes[index] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _outcome(outcome: Any) -> str:
    return f'<span class="outcome outcome-{h(outcome)}">{h(outcome)}</span>'


def render_html(report: dict[str, Any]) -> str:
    case = report["case"]
    meta = report["report"]
    banner = "internal" if meta["internal"] else "redacted"
    replaced = f"<br>Replaced: {h(_redaction_counts(meta['redactions']))}" if meta.get("redactions") else ""
    sections = [
        f'<p class="banner {banner}">{h(meta["notice"])}{replaced}</p>',
        f"<h1>Case {h(case['id'])}: {h(case['subject'])}</h1>",
        f'<p class="meta">Generated {h(meta["generated_at"])} by {h(meta["generator"])}.</p>',
        _html_summary(report),
        _html_request(report["request"]),
        _html_classification(report["classification"]),
        _html_chart(report),
        _html_findings(report["findings"]),
        _html_issue(report["issue"]),
        _html_notifications(report["notifications"]),
        _html_timeline(report["timeline"]),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Case {h(case['id'])}: {h(case['subject'])}</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(sections) + "\n</body>\n</html>\n"
    )


def _html_summary(report: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{h(name)}</th><td>{h(value)}</td></tr>" for name, value in _summary_fields(report) if value)
    return f'<section><h2>Summary</h2><table class="fields">{rows}</table></section>'


def _html_request(request: dict[str, Any]) -> str:
    parts = ["<section><h2>Request</h2>", f"<pre>{h(request['body'] or '(no text)')}</pre>"]
    if request["attachments"]:
        parts.append(f"<p>Attachments: {h(', '.join(request['attachments']))}</p>")
    for note in request["notes"]:
        parts.append(f"<p>Note by {h(note['actor'])} at {h(note['at'])}: {h(note['text'])}</p>")
    return "".join(parts) + "</section>"


def _html_classification(classification: dict[str, Any] | None) -> str:
    if not classification:
        return "<section><h2>Classification</h2><p>Not classified.</p></section>"

    parts = [
        "<section><h2>Classification</h2>",
        f'<p>Label: <span class="label">{h(classification["label"] or "none")}</span> '
        f"(rules voted {h(classification['rules_label'] or 'none')})</p>",
    ]
    if classification["override"]:
        override = classification["override"]
        parts.append(f"<p>Override: {h(override['label'])}, because {h(override['reason'])}</p>")
    items = []
    for rule in classification["rules"]:
        behind = "".join(
            f"<li>{h(finding['key'])} {_outcome(finding['outcome'])}: {h(finding['summary'])}</li>" for finding in rule["findings"]
        )
        items.append(
            f"<li><strong>{h(rule['name'])}</strong> ({h(rule['label'])}): {h(rule['description'])}"
            + (f"<ul>{behind}</ul>" if behind else "")
            + "</li>"
        )
    parts.append(f"<ul>{''.join(items)}</ul>" if items else "<p>No rule fired.</p>")
    return "".join(parts) + "</section>"


def _html_findings(findings: list[dict[str, Any]]) -> str:
    if not findings:
        return "<section><h2>Findings</h2><p>No findings.</p></section>"
    rows = [[h(item["source"]), h(item["check"]), h(item["subject"]), _outcome(item["outcome"]), h(_finding_text(item))] for item in findings]
    return "<section><h2>Findings</h2>" + _html_table(["Source", "Check", "Subject", "Outcome", "Summary"], rows) + "</section>"


def _html_issue(issue: dict[str, Any] | None) -> str:
    if not issue:
        return "<section><h2>Issue</h2><p>No issue filed.</p></section>"
    link = safe_link(issue.get("url"))
    text = f"#{h(issue.get('iid'))} in {h(issue.get('project'))}"
    where = f'<a href="{h(link)}" rel="noreferrer noopener">{text}</a> ({h(link)})' if link else h(issue.get("url"))
    labels = f" GitLab labels: {h(', '.join(issue['labels']))}." if issue.get("labels") else ""
    return (
        f"<section><h2>Issue</h2><p>Filed as {where}, label {h(issue.get('label'))}, "
        f"assignee {h(issue.get('assignee') or 'nobody')}.{labels}</p></section>"
    )


def _html_notifications(notifications: list[dict[str, Any]]) -> str:
    if not notifications:
        return "<section><h2>Notifications sent</h2><p>None.</p></section>"
    rows = [
        [h(item["at"]), h(item["template"]), h(item["language"]), h(", ".join(item["recipients"])), h("; ".join(item["statuses"]))]
        for item in notifications
    ]
    return "<section><h2>Notifications sent</h2>" + _html_table(["Sent", "Template", "Language", "Recipients", "Status"], rows) + "</section>"


def _html_chart(report: dict[str, Any]) -> str:
    from helpctl.charts import footnote, render_svg

    chart = _chart(report)
    if chart is None:
        return "<section><h2>Activity around the report</h2><p>No errors or usage events near the reported moment.</p></section>"
    note = footnote(chart)
    return "<section><h2>Activity around the report</h2>" + render_svg(chart) + (f"<p class=\"meta\">{h(note)}.</p>" if note else "") + "</section>"


def _html_timeline(timeline: dict[str, Any]) -> str:
    items = timeline["items"]
    if not items:
        return "<section><h2>Timeline</h2><p>No events.</p></section>"
    rows = [[h(item["at"]), h(item["source"]), h(item["event"]), h(item["label"])] for item in items]
    classes = ["case" if item["kind"] == "case" else f"series-{item.get('series') or 'none'}" for item in items]
    note = _skipped_note(timeline)
    table = _html_table(["Time (UTC)", "Source", "Event", "Detail"], rows, classes)
    return "<section><h2>Timeline</h2>" + table + (f'<p class="meta">{h(note)}.</p>' if note else "") + "</section>"
