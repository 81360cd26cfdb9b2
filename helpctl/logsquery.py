"""Build Logs Insights query strings from templates without letting case data change them.

A template names the case's subjects with placeholders: `{email}`, `{user}`, `{group}` and
`{request_id}`. Each value must first pass a strict pattern (an e-mail address must be an
e-mail address, a group is lowercase letters and digits, a request id is letters, digits and
`-`). It is then escaped for the literal it lands in:

- bare (`user = {email}`): it becomes a single-quoted string literal;
- inside quotes (`@message like "{request_id}"`): backslashes and that quote are escaped;
- inside a regex (`@message like /{email}/`): regex metacharacters and `/` are escaped.

A placeholder inside a backtick field name or a comment is rejected. AWS does not document
backslash escapes inside Insights literals, so the allow-list patterns are the main guard:
they keep quotes, backslashes, `/`, `|` and newlines out of every value.

The module also reads the pipeline of a finished query (commands split at `|` outside
literals), which the Logs client needs to find a `limit` command, the sort order and the
filters to count matches with.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from helpctl.errors import UsageError

EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,63}$")
GROUP = re.compile(r"^[a-z0-9]+$")
REQUEST_ID = re.compile(r"^[A-Za-z0-9-]+$")
USER = re.compile(r"^[A-Za-z0-9._%+@-]+$")

# name: (pattern, what a valid value is)
PLACEHOLDERS: dict[str, tuple[re.Pattern[str], str]] = {
    "email": (EMAIL, "an e-mail address"),
    "user": (USER, "a user name or e-mail address (letters, digits and . _ % + @ -)"),
    "group": (GROUP, "a group name (lowercase letters and digits)"),
    "request_id": (REQUEST_ID, "a request id (letters, digits and -)"),
}

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

MAX_VALUE_LENGTH = 256

# Commands whose result over a whole window differs from the union of its parts.
UNSPLITTABLE_COMMANDS = frozenset({"stats", "dedup", "pattern", "diff"})

# Commands that shape the output rows but not which events match.
OUTPUT_COMMANDS = frozenset({"sort", "limit", "display"})


# ----- values -----


def validate(name: str, value: str) -> str:
    """Return `value` when it is valid for placeholder `name`; raise UsageError otherwise."""
    if name not in PLACEHOLDERS:
        raise UsageError(f"unknown query placeholder {{{name}}}", hint=f"use one of: {_known()}")
    pattern, description = PLACEHOLDERS[name]
    if len(value) > MAX_VALUE_LENGTH or not pattern.match(value):
        excerpt = value if len(value) <= 80 else value[:77] + "..."
        raise UsageError(f"invalid value for {{{name}}}: {excerpt!r} is not {description}")
    return value


def _known() -> str:
    return ", ".join("{" + name + "}" for name in PLACEHOLDERS)


def _check_printable(value: str) -> None:
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise UsageError(f"query values must not contain control characters or newlines: {value!r}")


def escape_in_string(value: str, quote: str = "'") -> str:
    """Escape `value` for the inside of a string literal delimited by `quote`."""
    _check_printable(value)
    return value.replace("\\", "\\\\").replace(quote, "\\" + quote)


def quote_string(value: str) -> str:
    """Return `value` as a single-quoted Insights string literal."""
    return "'" + escape_in_string(value, "'") + "'"


def escape_in_regex(value: str) -> str:
    """Escape `value` so that it matches itself inside a `/.../` regex literal."""
    _check_printable(value)
    return re.escape(value).replace("/", "\\/")


# ----- scanning -----


@dataclasses.dataclass(frozen=True)
class Span:
    kind: str  # code, single, double, regex, field, comment
    start: int
    end: int


def scan(text: str) -> list[Span]:
    """Split a query into code, literal and comment spans.

    A `/` opens a regex literal after `like`, `=~`, `(`, `,` or `[`, and after the field of a
    `parse` command. Elsewhere it is code (division). String literals end at the first
    unescaped matching quote; `#` outside literals starts a comment up to the newline.
    """
    spans: list[Span] = []
    position = code_start = 0
    while position < len(text):
        char = text[position]
        kind = _literal_kind(text, position, char)
        if kind is None:
            position += 1
            continue
        if position > code_start:
            spans.append(Span("code", code_start, position))
        end = _literal_end(text, position, kind)
        spans.append(Span(kind, position, end))
        position = code_start = end
    if code_start < len(text):
        spans.append(Span("code", code_start, len(text)))
    return spans


_REGEX_AFTER = re.compile(r"(?:\blike|=~|[(,\[])\s*$", re.IGNORECASE)
_PARSE_FIELD = re.compile(r"(?:^|\|)\s*parse\s+[^\s|]+\s*$", re.IGNORECASE)


def _literal_kind(text: str, position: int, char: str) -> str | None:
    if char == "'":
        return "single"
    if char == '"':
        return "double"
    if char == "`":
        return "field"
    if char == "#":
        return "comment"
    if char == "/":
        before = text[max(0, position - 200) : position]
        if _REGEX_AFTER.search(before) or _PARSE_FIELD.search(before):
            return "regex"
    return None


def _literal_end(text: str, start: int, kind: str) -> int:
    if kind == "comment":
        newline = text.find("\n", start)
        return len(text) if newline < 0 else newline
    closing = {"single": "'", "double": '"', "regex": "/", "field": "`"}[kind]
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == "\\" and kind != "field":
            position += 2
            continue
        if char == closing:
            return position + 1
        position += 1
    # An unterminated literal runs to the end; the service reports it as malformed.
    return len(text)


# ----- templates -----


def placeholders(template: str) -> list[str]:
    """Return the placeholder names of a template, in order of first use."""
    names: list[str] = []
    for match in PLACEHOLDER.finditer(template):
        name = match.group(1)
        if name not in PLACEHOLDERS:
            raise UsageError(f"unknown query placeholder {{{name}}} in {template!r}", hint=f"use one of: {_known()}")
        if name not in names:
            names.append(name)
    return names


def render(template: str, values: Mapping[str, str], *, strict: bool = True) -> str:
    """Fill a template's placeholders with escaped values.

    With `strict` (the default) each value must match its placeholder's pattern. Without it
    only the escaping applies, so tests can show that escaping alone keeps a hostile value
    inside its literal.
    """
    placeholders(template)
    parts: list[str] = []
    for span in scan(template):
        text = template[span.start : span.end]
        parts.append(PLACEHOLDER.sub(lambda match: _fill(match.group(1), span.kind, values, strict), text))
    return "".join(parts)


def _fill(name: str, kind: str, values: Mapping[str, str], strict: bool) -> str:
    if name not in values:
        raise UsageError(f"no value for query placeholder {{{name}}}")
    value = values[name]
    if strict:
        validate(name, value)
    if kind == "code":
        return quote_string(value)
    if kind == "single":
        return escape_in_string(value, "'")
    if kind == "double":
        return escape_in_string(value, '"')
    if kind == "regex":
        return escape_in_regex(value)
    raise UsageError(f"query placeholder {{{name}}} cannot be used inside a {'field name' if kind == 'field' else kind}")


# ----- reading a query's pipeline -----


@dataclasses.dataclass(frozen=True)
class Command:
    name: str  # the command word, lowercase
    text: str  # the command without comments, stripped


def split_commands(query: str) -> list[Command]:
    """Split a query at `|` outside literals; comments are dropped."""
    commands: list[Command] = []
    current: list[str] = []
    for span in scan(query):
        text = query[span.start : span.end]
        if span.kind == "comment":
            current.append(" ")
            continue
        if span.kind != "code":
            current.append(text)
            continue
        pieces = text.split("|")
        current.append(pieces[0])
        for piece in pieces[1:]:
            commands.append(_command("".join(current)))
            current = [piece]
    commands.append(_command("".join(current)))
    return [command for command in commands if command.text]


def _command(text: str) -> Command:
    text = text.strip()
    word = text.split(None, 1)[0].lower() if text else ""
    return Command(word, text)


def query_limit(query: str) -> int | None:
    """Return the smallest `limit N` of the query, or None when it has none."""
    limits = []
    for command in split_commands(query):
        if command.name == "limit":
            argument = command.text[len("limit") :].strip()
            if argument.isdigit():
                limits.append(int(argument))
    return min(limits) if limits else None


def timestamp_order(query: str) -> str | None:
    """Return "asc" or "desc" when the last sort is by @timestamp first, else None."""
    order = None
    for command in split_commands(query):
        if command.name != "sort":
            continue
        first_key = command.text[len("sort") :].split(",", 1)[0].split()
        if first_key and first_key[0] == "@timestamp":
            order = "desc" if len(first_key) > 1 and first_key[1].lower() == "desc" else "asc"
        else:
            order = None
    return order


def is_splittable(query: str) -> bool:
    """Return whether the query's rows over a window equal the union of its rows over parts."""
    return not any(command.name in UNSPLITTABLE_COMMANDS for command in split_commands(query))


def count_query(query: str, *, bin_seconds: int | None = None, extra_filter: str | None = None) -> str | None:
    """Return a query that counts the events `query` matches (per time bin when asked).

    Output-only commands (sort, limit, display) are dropped. Returns None for a query whose
    matches cannot be counted this way (one with stats, dedup, pattern or diff).
    """
    if not is_splittable(query):
        return None
    filters = [command.text for command in split_commands(query) if command.name not in OUTPUT_COMMANDS]
    if extra_filter:
        filters.append(f"filter {extra_filter}")
    stats = "stats count(*) as n"
    if bin_seconds:
        stats += f" by bin({int(bin_seconds)}s)"
    return " | ".join(filters + [stats])
