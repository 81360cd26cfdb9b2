"""Browser evidence: HAR files exported from the developer tools, turned into a finding.

A HAR holds the requester's cookies, bearer tokens and often API keys in query strings and
bodies. Everything is sanitised before any byte is stored: cookies are dropped, sensitive
headers, query parameters and JSON fields are replaced by "[removed]", and token-shaped
strings are masked anywhere. Only the sanitised HAR is saved in the case.

The finding counts failed requests (4xx, 5xx), GraphQL errors inside 200 answers, and slow
requests, and names the GraphQL path of the most frequent error for routing.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from helpctl.errors import UsageError
from helpctl.findings import Finding

REMOVED = "[removed]"
SLOW_REQUEST_MS = 3000.0

SENSITIVE_HEADERS = frozenset(
    {"authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key", "x-auth-token", "x-csrf-token", "x-csrftoken"}
)
SENSITIVE_NAME = re.compile(r"(?i)(token|secret|password|passwd|api[_-]?key|session|auth|credential|signature|jwt)")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
BEARER = re.compile(r"(?i)\b(bearer|token)\s+[A-Za-z0-9._~+/=-]{12,}")


def load_har(data: bytes, name: str) -> dict[str, Any]:
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"{name} is not a HAR file (invalid JSON: {error})", hint="export it with 'Save all as HAR' in the browser's Network tab") from error

    entries = document.get("log", {}).get("entries") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise UsageError(f"{name} is not a HAR file (no log.entries)", hint="export it with 'Save all as HAR' in the browser's Network tab")
    return document


def mask_text(text: str) -> str:
    text = JWT.sub(REMOVED, text)
    return BEARER.sub(lambda match: f"{match.group(1)} {REMOVED}", text)


def sanitise_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return mask_text(url)
    query = [(key, REMOVED if SENSITIVE_NAME.search(key) else value) for key, value in parse_qsl(parts.query, keep_blank_values=True)]
    return mask_text(urlunsplit(parts._replace(query=urlencode(query, safe="[]"))))


def _sanitise_json_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: REMOVED if SENSITIVE_NAME.search(str(key)) else _sanitise_json_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_sanitise_json_value(item) for item in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def sanitise_body(text: str | None) -> str | None:
    if not text:
        return text
    try:
        return json.dumps(_sanitise_json_value(json.loads(text)), ensure_ascii=False)
    except (json.JSONDecodeError, TypeError):
        return mask_text(text)


def _sanitise_headers(headers: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    cleaned = []
    for header in headers or []:
        name = str(header.get("name", ""))
        value = REMOVED if name.lower() in SENSITIVE_HEADERS or SENSITIVE_NAME.search(name) else mask_text(str(header.get("value", "")))
        cleaned.append({"name": name, "value": value})
    return cleaned


def sanitise_entry(entry: dict[str, Any]) -> dict[str, Any]:
    request = dict(entry.get("request") or {})
    response = dict(entry.get("response") or {})
    request["url"] = sanitise_url(str(request.get("url", "")))
    request["headers"] = _sanitise_headers(request.get("headers"))
    request["cookies"] = []
    request["queryString"] = [
        {"name": item.get("name"), "value": REMOVED if SENSITIVE_NAME.search(str(item.get("name", ""))) else mask_text(str(item.get("value", "")))}
        for item in request.get("queryString") or []
    ]
    if isinstance(request.get("postData"), dict):
        post = dict(request["postData"])
        post["text"] = sanitise_body(post.get("text"))
        post.pop("params", None)
        request["postData"] = post

    response["headers"] = _sanitise_headers(response.get("headers"))
    response["cookies"] = []
    if isinstance(response.get("content"), dict):
        content = dict(response["content"])
        if content.get("encoding") != "base64":
            content["text"] = sanitise_body(content.get("text"))
        else:
            content["text"] = REMOVED
        response["content"] = content

    cleaned = {key: value for key, value in entry.items() if key not in ("request", "response")}
    cleaned["request"] = request
    cleaned["response"] = response
    return cleaned


def sanitise_har(document: dict[str, Any]) -> dict[str, Any]:
    log = dict(document["log"])
    log["entries"] = [sanitise_entry(entry) for entry in log["entries"]]
    return {"log": log}


def _graphql_errors(entry: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    """Return the operation name and GraphQL errors of an entry, when it is a GraphQL call."""
    request = entry.get("request") or {}
    post = (request.get("postData") or {}).get("text")
    operation = None
    if post:
        try:
            body = json.loads(post)
            if isinstance(body, dict) and "query" in body:
                operation = body.get("operationName") or "anonymous"
        except json.JSONDecodeError:
            pass
    if operation is None:
        return None, []

    text = ((entry.get("response") or {}).get("content") or {}).get("text")
    try:
        answer = json.loads(text) if text else None
    except json.JSONDecodeError:
        return operation, []
    errors = answer.get("errors") if isinstance(answer, dict) else None
    return operation, [error for error in errors or [] if isinstance(error, dict)]


def entry_rows(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield one evidence row per request of an already sanitised HAR."""
    for entry in document["log"]["entries"]:
        request, response = entry.get("request") or {}, entry.get("response") or {}
        operation, errors = _graphql_errors(entry)
        yield {
            "at": entry.get("startedDateTime"),
            "method": request.get("method"),
            "url": request.get("url"),
            "status": response.get("status"),
            "time_ms": entry.get("time"),
            "graphql_operation": operation,
            "graphql_errors": [{"message": error.get("message"), "path": error.get("path")} for error in errors],
        }


def _component_for_path(path: list[Any] | None, components: dict[str, Any]) -> str | None:
    words = " ".join(str(part) for part in path or []).lower()
    for name, component in components.items():
        keywords = [name] + [str(keyword) for keyword in getattr(component, "keywords", [])]
        if any(keyword.lower() in words for keyword in keywords):
            return name
    return None


def analyse(rows: list[dict[str, Any]], subject: str, raw_ref: str, components: dict[str, Any], slow_ms: float = SLOW_REQUEST_MS) -> Finding:
    failed = [row for row in rows if isinstance(row["status"], int) and row["status"] >= 400]
    server = [row for row in failed if row["status"] >= 500]
    slow = [row for row in rows if isinstance(row["time_ms"], (int, float)) and row["time_ms"] >= slow_ms]
    graphql = [(row, error) for row in rows for error in row["graphql_errors"]]
    messages = Counter(error["message"] for _, error in graphql if error.get("message"))
    times = sorted(str(row["at"]) for row in rows if row["at"])

    signals: dict[str, Any] = {
        "browser.requests": len(rows),
        "browser.failed_requests": len(failed),
        "browser.server_errors": len(server),
        "browser.client_errors": len(failed) - len(server),
        "browser.graphql_errors": len(graphql),
        "browser.slow_requests": len(slow),
    }
    if rows:
        signals["browser.slowest_ms"] = max(float(row["time_ms"] or 0) for row in rows)
    if times:
        signals["browser.first_at"], signals["browser.last_at"] = times[0], times[-1]

    component = None
    if messages:
        top_message = messages.most_common(1)[0][0]
        signals["browser.top_graphql_error"] = top_message
        top_path = next(error.get("path") for _, error in graphql if error.get("message") == top_message)
        if top_path:
            signals["browser.graphql_error_path"] = ".".join(str(part) for part in top_path)
            component = _component_for_path(top_path, components)

    summary = _summary(subject, rows, failed, server, graphql, slow, messages)
    outcome = "ok" if rows else "empty"
    return Finding(
        source="browser", check="har", subject=subject, outcome=outcome, summary=summary,
        request={"file": subject, "slow_request_ms": slow_ms}, signals=signals, raw_ref=raw_ref, component=component,
    )


def _summary(subject: str, rows: list, failed: list, server: list, graphql: list, slow: list, messages: Counter) -> str:
    if not rows:
        return f"{subject} holds no requests"
    parts = [f"{len(rows)} requests", f"{len(failed)} failed ({len(server)} 5xx)", f"{len(graphql)} GraphQL errors", f"{len(slow)} slow"]
    text = f"{subject}: " + ", ".join(parts)
    if messages:
        text += f"; most frequent error: {messages.most_common(1)[0][0][:120]}"
    return text
