"""The query language of the Logs Insights stand-in: an event store, a parser and an evaluator.

The subset covers what helpctl and its tests send: `fields` and `display` (with `as`
aliases), `filter` with `=`, `!=`, `<`, `<=`, `>`, `>=`, `like` with a quoted substring or a
`/regex/`, `=~`, `in [...]`, `not in [...]`, `and`/`or`/`not` and parentheses, the functions
`ispresent`, `isempty`, `tolower`, `toupper` and `strlen`, `sort FIELD [asc|desc], ...`
(ascending when no direction is given, a choice of this stand-in),
`limit N` and `stats count(*)|count(f)|count_distinct(f)|sum|avg|min|max(f) [as name], ...
[by FIELD|bin(5m), ...]`. Commands are separated by `|`. String literals take single or
double quotes with backslash escapes, and `#` starts a comment that runs to the end of the line.
A parse error raises `QuerySyntaxError` with the 0-based character offset of the problem.

Events are compact named tuples. JSON messages are flattened once at ingestion (`a.b` for
nested keys, as Insights discovers them), so `filter user = '...'` reads a field and never
parses JSON again.
"""

from __future__ import annotations

import array
import base64
import bisect
import dataclasses
import datetime as dt
import heapq
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

# The account id that `@log` values carry (`<account>:<log group>`), as the real service does.
ACCOUNT_ID = "123456789012"

# Insights extracts at most 100 fields from one JSON event.
MAX_JSON_FIELDS = 100

DEFAULT_FIELDS = ("@timestamp", "@message")

DURATION_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}

KEYWORDS = frozenset({"and", "or", "not", "like", "in", "as", "by", "asc", "desc"})

COMMANDS = ("fields", "display", "filter", "sort", "limit", "stats")

AGGREGATES = ("count", "count_distinct", "sum", "avg", "min", "max")


class QuerySyntaxError(ValueError):
    """A query that does not parse; `start` and `end` are 0-based character offsets."""

    def __init__(self, problem: str, start: int, end: int | None = None) -> None:
        super().__init__(f"{problem} at position {start}")
        self.problem = problem
        self.start = start
        self.end = start if end is None else end


class _Missing:
    """The value of a field that an event does not have."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


# ----- events and their store -----


class LogEvent(NamedTuple):
    timestamp: int  # epoch milliseconds, UTC
    log_stream: str
    keys: tuple[str, ...]  # discovered JSON field names, shared between events of one shape
    values: tuple[Any, ...]
    raw: str | None  # the message as ingested, or None when `keys`/`values` rebuild it exactly
    size: int  # bytes of the message, for the bytesScanned statistic


_SHAPES: dict[tuple[str, ...], tuple[str, ...]] = {}


def _shared_keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    return _SHAPES.setdefault(keys, keys)


def _flatten(value: Any, prefix: str, out: list[tuple[str, Any]]) -> bool:
    """Append `prefix+key` pairs for every leaf; returns whether any nesting was flattened."""
    nested = False
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        name = f"{prefix}{key}"
        if isinstance(item, (dict, list)) and item:
            _flatten(item, name + ".", out)
            nested = True
        else:
            out.append((name, item))
    return nested


def make_event(timestamp_ms: int, message: str | Mapping[str, Any], log_stream: str = "") -> LogEvent:
    """Build an event from a JSON object or a text message (JSON text is parsed once here)."""
    if isinstance(message, Mapping):
        data: Any = dict(message)
        raw = None
    else:
        raw = message
        data = None
        if message.lstrip().startswith("{"):
            try:
                data = json.loads(message)
            except ValueError:
                data = None

    if not isinstance(data, dict):
        text = raw if raw is not None else ""
        return LogEvent(int(timestamp_ms), log_stream, (), (), text, len(text.encode("utf-8")))

    pairs: list[tuple[str, Any]] = []
    nested = _flatten(data, "", pairs)
    pairs = pairs[:MAX_JSON_FIELDS]
    if raw is None and nested:
        raw = json.dumps(data, separators=(",", ":"))
    keys = _shared_keys(tuple(name for name, _ in pairs))
    values = tuple(item for _, item in pairs)
    size = len((raw if raw is not None else _render(keys, values)).encode("utf-8"))
    return LogEvent(int(timestamp_ms), log_stream, keys, values, raw, size)


def _render(keys: tuple[str, ...], values: tuple[Any, ...]) -> str:
    return json.dumps(dict(zip(keys, values)), separators=(",", ":"), ensure_ascii=False)


def event_message(event: LogEvent) -> str:
    return event.raw if event.raw is not None else _render(event.keys, event.values)


class _LogGroup:
    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index
        self.timestamps = array.array("q")
        self.events: list[LogEvent] = []
        self.ordered = True

    def add(self, events: Iterable[LogEvent]) -> int:
        count = 0
        for event in events:
            if self.timestamps and event.timestamp < self.timestamps[-1]:
                self.ordered = False
            self.timestamps.append(event.timestamp)
            self.events.append(event)
            count += 1
        return count

    def window(self, start_ms: int, end_ms: int) -> tuple[int, int]:
        """Return the index range of events with start_ms <= timestamp <= end_ms."""
        if not self.ordered:
            self.events.sort(key=lambda event: event.timestamp)
            self.timestamps = array.array("q", (event.timestamp for event in self.events))
            self.ordered = True
        return bisect.bisect_left(self.timestamps, start_ms), bisect.bisect_right(self.timestamps, end_ms)


# A record flowing through a query before `stats`: (event, log group index, position in group).
Record = tuple[LogEvent, int, int]


class LogStore:
    """Events by log group, kept in timestamp order for range scans."""

    def __init__(self) -> None:
        self._groups: dict[str, _LogGroup] = {}
        self._names: list[str] = []

    def create_group(self, name: str) -> None:
        if name not in self._groups:
            self._groups[name] = _LogGroup(name, len(self._names))
            self._names.append(name)

    def has_group(self, name: str) -> bool:
        return name in self._groups

    def group_names(self) -> list[str]:
        return list(self._groups)

    def add(self, group: str, events: Iterable[LogEvent]) -> int:
        self.create_group(group)
        return self._groups[group].add(events)

    def count(self, group: str) -> int:
        return len(self._groups[group].events)

    def scan(self, groups: Iterable[str], start_ms: int, end_ms: int) -> Iterator[Record]:
        """Yield the records of `groups` with start_ms <= timestamp <= end_ms, oldest first."""
        streams = [self._scan_group(self._groups[name], start_ms, end_ms) for name in dict.fromkeys(groups)]
        if len(streams) == 1:
            return streams[0]
        return heapq.merge(*streams, key=lambda record: record[0].timestamp)

    @staticmethod
    def _scan_group(group: _LogGroup, start_ms: int, end_ms: int) -> Iterator[Record]:
        low, high = group.window(start_ms, end_ms)
        events = group.events
        index = group.index
        for position in range(low, high):
            yield (events[position], index, position)

    def group_by_index(self, index: int) -> str:
        return self._names[index]


# ----- values -----


def format_timestamp(timestamp_ms: int) -> str:
    """Format epoch milliseconds as Insights shows `@timestamp`: `YYYY-MM-DD HH:MM:SS.mmm`."""
    moment = dt.datetime.fromtimestamp(timestamp_ms // 1000, dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{timestamp_ms % 1000:03d}"


class Timestamp(int):
    """Epoch milliseconds that print as Insights prints `@timestamp`."""


def format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Timestamp):
        return format_timestamp(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def compare(operator: str, left: Any, right: Any) -> bool:
    """Compare as numbers when both sides are numeric, else as text; a missing side is false."""
    if left is MISSING or right is MISSING:
        return False
    left_number, right_number = _as_number(left), _as_number(right)
    if left_number is not None and right_number is not None:
        return _COMPARE[operator](left_number, right_number)
    return _COMPARE[operator](format_value(left), format_value(right))


def _sort_key(value: Any) -> tuple[int, Any]:
    # Insights sorts every non-number value before the numbers when ascending. Its natural
    # ordering of digit runs inside text is not modelled: text compares by code point.
    number = _as_number(value)
    if number is not None:
        return (1, number)
    return (0, format_value(value))


# ----- tokens -----


@dataclasses.dataclass(frozen=True)
class Token:
    kind: str  # name, field, string, regex, number, duration, op, punct, end
    text: str
    value: Any
    start: int
    end: int

    def is_word(self, *words: str) -> bool:
        return self.kind == "name" and self.text.lower() in words


_NAME_START = re.compile(r"[A-Za-z_@$]")
_NAME = re.compile(r"[A-Za-z_@$][A-Za-z0-9_@$.]*")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_UNIT = re.compile(r"[A-Za-z]+")
_OPERATORS = ("=~", "!=", "<=", ">=", "=", "<", ">")
_PUNCTUATION = "()[],|*"
_STRING_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(query):
        char = query[position]
        if char.isspace():
            position += 1
        elif char == "#":
            newline = query.find("\n", position)
            position = len(query) if newline < 0 else newline + 1
        else:
            token = _next_token(query, position)
            tokens.append(token)
            position = token.end
    tokens.append(Token("end", "", None, len(query), len(query)))
    return tokens


def _next_token(query: str, position: int) -> Token:
    char = query[position]
    if char in "'\"":
        return _string_token(query, position)
    if char == "/":
        return _regex_token(query, position)
    if char == "`":
        return _backtick_token(query, position)
    if char.isdigit() or (char == "-" and query[position + 1 : position + 2].isdigit()):
        return _number_token(query, position)
    if _NAME_START.match(char):
        match = _NAME.match(query, position)
        assert match is not None
        return Token("name", match.group(), match.group(), position, match.end())
    for operator in _OPERATORS:
        if query.startswith(operator, position):
            return Token("op", operator, operator, position, position + len(operator))
    if char in _PUNCTUATION:
        return Token("punct", char, char, position, position + 1)
    raise QuerySyntaxError(f"unexpected character {char!r}", position, position + 1)


def _string_token(query: str, start: int) -> Token:
    quote = query[start]
    chars: list[str] = []
    position = start + 1
    while position < len(query):
        char = query[position]
        if char == "\\" and position + 1 < len(query):
            following = query[position + 1]
            chars.append(_STRING_ESCAPES.get(following, following))
            position += 2
        elif char == quote:
            return Token("string", query[start : position + 1], "".join(chars), start, position + 1)
        else:
            chars.append(char)
            position += 1
    raise QuerySyntaxError("unterminated string literal", start, len(query))


def _regex_token(query: str, start: int) -> Token:
    chars: list[str] = []
    position = start + 1
    while position < len(query):
        char = query[position]
        if char == "\\" and query[position + 1 : position + 2] == "/":
            chars.append("/")
            position += 2
        elif char == "\\" and position + 1 < len(query):
            chars.append(query[position : position + 2])
            position += 2
        elif char == "/":
            source = "".join(chars)
            try:
                pattern = re.compile(source)
            except re.error as error:
                raise QuerySyntaxError(f"invalid regular expression ({error.msg})", start, position + 1) from error
            return Token("regex", query[start : position + 1], pattern, start, position + 1)
        else:
            chars.append(char)
            position += 1
    raise QuerySyntaxError("unterminated regular expression", start, len(query))


def _backtick_token(query: str, start: int) -> Token:
    close = query.find("`", start + 1)
    if close < 0:
        raise QuerySyntaxError("unterminated backtick field name", start, len(query))
    name = query[start + 1 : close]
    if not name:
        raise QuerySyntaxError("empty backtick field name", start, close + 1)
    return Token("field", query[start : close + 1], name, start, close + 1)


def _number_token(query: str, start: int) -> Token:
    match = _NUMBER.match(query, start)
    assert match is not None
    end = match.end()
    unit = _UNIT.match(query, end)
    if unit is None:
        text = match.group()
        value: float | int = float(text) if match.group(1) else int(text)
        return Token("number", text, value, start, end)

    if match.group(1) or match.group().startswith("-") or unit.group() not in DURATION_UNITS_MS:
        raise QuerySyntaxError(f"invalid duration {query[start:unit.end()]!r}", start, unit.end())
    milliseconds = int(match.group()) * DURATION_UNITS_MS[unit.group()]
    return Token("duration", query[start : unit.end()], milliseconds, start, unit.end())


# ----- compiled queries -----

Getter = Callable[[Any], Any]
Predicate = Callable[[Any], bool]


@dataclasses.dataclass
class _Filter:
    predicate: Predicate


@dataclasses.dataclass
class _Fields:
    names: list[str]  # output names, in order
    getters: list[Getter]


@dataclasses.dataclass
class _Sort:
    keys: list[tuple[Getter, bool]]  # (getter, descending)


@dataclasses.dataclass
class _Limit:
    count: int


@dataclasses.dataclass
class _Aggregate:
    name: str
    function: str
    getter: Getter | None  # None for count(*)


@dataclasses.dataclass
class _Grouping:
    name: str
    getter: Getter
    bin_ms: int | None


@dataclasses.dataclass
class _Stats:
    aggregates: list[_Aggregate]
    groupings: list[_Grouping]


Command = _Filter | _Fields | _Sort | _Limit | _Stats


class _Context:
    """The store that the `@log` and `@ptr` getters read, bound when a query runs."""

    store: LogStore | None = None


@dataclasses.dataclass
class CompiledQuery:
    text: str
    commands: list[Command]
    output: list[str]
    output_getters: list[Getter]
    has_stats: bool
    context: _Context


@dataclasses.dataclass
class QueryOutput:
    rows: list[list[tuple[str, str]]]  # each row: (field, value) pairs, @ptr last for event rows
    records_matched: int
    records_scanned: int
    bytes_scanned: int


def _event_getter(name: str, context: _Context) -> Getter:
    if name == "@timestamp":
        return lambda record: Timestamp(record[0].timestamp)
    if name == "@message":
        return lambda record: event_message(record[0])
    if name == "@logStream":
        return lambda record: record[0].log_stream
    if name == "@log":
        return lambda record: f"{ACCOUNT_ID}:{context.store.group_by_index(record[1])}" if context.store else MISSING
    if name == "@ptr":
        return lambda record: _pointer(record)

    def field(record: Record) -> Any:
        event = record[0]
        try:
            return event.values[event.keys.index(name)]
        except ValueError:
            return MISSING

    return field


def _pointer(record: Record) -> str:
    return base64.b64encode(f"{record[1]}:{record[2]}:{record[0].timestamp}".encode()).decode()


def _row_getter(name: str) -> Getter:
    return lambda row: row.get(name, MISSING)


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.index = 0
        self.context = _Context()
        self.after_stats = False
        self.aliases: dict[str, Getter] = {}

    # token helpers

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def fail(self, problem: str, token: Token | None = None) -> QuerySyntaxError:
        token = token or self.token
        found = "end of query" if token.kind == "end" else repr(token.text)
        return QuerySyntaxError(f"{problem}, found {found}", token.start, token.end)

    def expect_punct(self, char: str) -> Token:
        if self.token.kind == "punct" and self.token.text == char:
            return self.advance()
        raise self.fail(f"expected {char!r}")

    def at_punct(self, char: str) -> bool:
        return self.token.kind == "punct" and self.token.text == char

    def at_command_end(self) -> bool:
        return self.token.kind == "end" or self.at_punct("|")

    # the query

    def parse(self) -> CompiledQuery:
        commands: list[Command] = []
        output: list[str] = list(DEFAULT_FIELDS)
        output_getters = [self.getter(name) for name in output]
        if self.token.kind != "end":
            while True:
                command = self.command()
                commands.append(command)
                if isinstance(command, _Fields):
                    output, output_getters = command.names, command.getters
                elif isinstance(command, _Stats):
                    output = [grouping.name for grouping in command.groupings] + [item.name for item in command.aggregates]
                    output_getters = [_row_getter(name) for name in output]
                if self.token.kind == "end":
                    break
                self.expect_punct("|")
        return CompiledQuery(self.query, commands, output, output_getters, self.after_stats, self.context)

    def command(self) -> Command:
        token = self.token
        if token.kind != "name" or token.text.lower() not in COMMANDS:
            raise self.fail(f"expected a command ({', '.join(COMMANDS)})")
        self.advance()
        name = token.text.lower()
        if name in ("fields", "display"):
            return self.fields_command()
        if name == "filter":
            predicate = self.expression()
            if not self.at_command_end():
                raise self.fail("expected 'and', 'or', '|' or the end of the query")
            return _Filter(predicate)
        if name == "sort":
            return self.sort_command()
        if name == "limit":
            return self.limit_command()
        return self.stats_command()

    def field_name(self) -> Token:
        token = self.token
        if token.kind == "field" or (token.kind == "name" and token.text.lower() not in KEYWORDS):
            return self.advance()
        raise self.fail("expected a field name")

    def getter(self, name: str) -> Getter:
        if name in self.aliases:
            return self.aliases[name]
        if self.after_stats:
            return _row_getter(name)
        return _event_getter(name, self.context)

    def fields_command(self) -> _Fields:
        names: list[str] = []
        getters: list[Getter] = []
        while True:
            token = self.field_name()
            if self.at_punct("("):
                getter = self.operand_after_name(token)
                name = self.query[token.start : self.tokens[self.index - 1].end]
            else:
                getter, name = self.getter(token.value), token.value
            if self.token.is_word("as"):
                self.advance()
                name = self.field_name().value
                self.aliases[name] = getter
            names.append(name)
            getters.append(getter)
            if not self.at_punct(","):
                break
            self.advance()
        if not self.at_command_end():
            raise self.fail("expected ',' or '|' after a field")
        return _Fields(names, getters)

    def sort_command(self) -> _Sort:
        keys: list[tuple[Getter, bool]] = []
        while True:
            getter = self.getter(self.field_name().value)
            descending = False
            if self.token.is_word("asc", "desc"):
                descending = self.advance().text.lower() == "desc"
            keys.append((getter, descending))
            if not self.at_punct(","):
                break
            self.advance()
        if not self.at_command_end():
            raise self.fail("expected 'asc', 'desc', ',' or '|' after a sort field")
        return _Sort(keys)

    def limit_command(self) -> _Limit:
        token = self.token
        if token.kind != "number" or not isinstance(token.value, int) or token.value < 1:
            raise self.fail("expected a positive whole number after 'limit'")
        self.advance()
        if not self.at_command_end():
            raise self.fail("expected '|' or the end of the query after the limit")
        return _Limit(token.value)

    def stats_command(self) -> _Stats:
        aggregates = [self.aggregate()]
        while self.at_punct(","):
            self.advance()
            aggregates.append(self.aggregate())

        groupings: list[_Grouping] = []
        if self.token.is_word("by"):
            self.advance()
            groupings.append(self.grouping())
            while self.at_punct(","):
                self.advance()
                groupings.append(self.grouping())
        if not self.at_command_end():
            raise self.fail("expected ',', 'by', '|' or the end of the query in stats")

        self.after_stats = True
        self.aliases = {}
        return _Stats(aggregates, groupings)

    def aggregate(self) -> _Aggregate:
        token = self.token
        if token.kind != "name" or token.text.lower() not in AGGREGATES:
            raise self.fail(f"expected an aggregate function ({', '.join(AGGREGATES)})")
        self.advance()
        function = token.text.lower()
        self.expect_punct("(")
        getter: Getter | None = None
        if self.at_punct("*") and function == "count":
            self.advance()
        elif self.at_punct(")"):
            raise self.fail(f"{function}() needs a field or '*'")
        else:
            getter = self.getter(self.field_name().value)
        close = self.expect_punct(")")
        name = self.query[token.start : close.end]
        if self.token.is_word("as"):
            self.advance()
            name = self.field_name().value
        return _Aggregate(name, function, getter)

    def grouping(self) -> _Grouping:
        token = self.field_name()
        if token.text.lower() == "bin" and self.at_punct("("):
            self.advance()
            width = self.token
            if width.kind != "duration" or width.value < 1:
                raise self.fail("expected a duration such as 5m or 1h in bin()")
            self.advance()
            close = self.expect_punct(")")
            name = self.query[token.start : close.end]
            getter = self.getter("@timestamp")
            bin_ms: int | None = width.value
        else:
            name, getter, bin_ms = token.value, self.getter(token.value), None
        if self.token.is_word("as"):
            self.advance()
            name = self.field_name().value
        return _Grouping(name, getter, bin_ms)

    # filter expressions

    def expression(self) -> Predicate:
        left = self.conjunction()
        while self.token.is_word("or"):
            self.advance()
            right = self.conjunction()
            left = _either(left, right)
        return left

    def conjunction(self) -> Predicate:
        left = self.negation()
        while self.token.is_word("and"):
            self.advance()
            right = self.negation()
            left = _both(left, right)
        return left

    def negation(self) -> Predicate:
        if self.token.is_word("not"):
            self.advance()
            inner = self.negation()
            return lambda record: not inner(record)
        if self.at_punct("("):
            self.advance()
            inner = self.expression()
            self.expect_punct(")")
            return inner
        return self.predicate()

    def predicate(self) -> Predicate:
        left = self.operand()
        token = self.token
        if token.kind == "op" and token.text == "=~":
            self.advance()
            return _matcher(left, self.pattern(), negate=False)
        if token.kind == "op":
            self.advance()
            right = self.operand()
            operator = token.text
            return lambda record: compare(operator, left(record), right(record))

        negate = False
        if token.is_word("not") and self.tokens[self.index + 1].is_word("like", "in"):
            self.advance()
            negate = True
        if self.token.is_word("like"):
            self.advance()
            return _matcher(left, self.pattern(), negate=negate)
        if self.token.is_word("in"):
            self.advance()
            members = self.literal_list()
            return _membership(left, members, negate)
        if negate:
            raise self.fail("expected 'like' or 'in' after 'not'")
        return lambda record: _truthy(left(record))

    def pattern(self) -> Callable[[str], bool]:
        token = self.token
        if token.kind == "regex":
            self.advance()
            return lambda text: token.value.search(text) is not None
        if token.kind == "string":
            self.advance()
            return lambda text: token.value in text
        raise self.fail("expected a quoted string or a /regular expression/")

    def literal_list(self) -> list[Any]:
        self.expect_punct("[")
        members: list[Any] = []
        while True:
            token = self.token
            if token.kind not in ("string", "number"):
                raise self.fail("expected a string or number in the list")
            members.append(self.advance().value)
            if self.at_punct("]"):
                self.advance()
                return members
            self.expect_punct(",")

    def operand(self) -> Getter:
        token = self.token
        if token.kind in ("string", "number"):
            self.advance()
            value = token.value
            return lambda record: value
        if token.kind == "field" or (token.kind == "name" and token.text.lower() not in KEYWORDS):
            self.advance()
            if self.at_punct("("):
                return self.operand_after_name(token)
            return self.getter(token.value)
        raise self.fail("expected a field, a string or a number")

    def operand_after_name(self, token: Token) -> Getter:
        function = token.text.lower()
        if function not in _FUNCTIONS:
            raise QuerySyntaxError(f"unknown function {token.text!r}", token.start, token.end)
        self.expect_punct("(")
        argument = self.getter(self.field_name().value)
        self.expect_punct(")")
        apply = _FUNCTIONS[function]
        return lambda record: apply(argument(record))


def _either(left: Predicate, right: Predicate) -> Predicate:
    return lambda record: left(record) or right(record)


def _both(left: Predicate, right: Predicate) -> Predicate:
    return lambda record: left(record) and right(record)


def _truthy(value: Any) -> bool:
    return value is not MISSING and value not in (False, 0, "", None)


def _matcher(operand: Getter, test: Callable[[str], bool], *, negate: bool) -> Predicate:
    def match(record: Any) -> bool:
        value = operand(record)
        found = value is not MISSING and test(format_value(value))
        return found != negate

    return match


def _membership(operand: Getter, members: list[Any], negate: bool) -> Predicate:
    def member(record: Any) -> bool:
        value = operand(record)
        found = any(compare("=", value, item) for item in members)
        return found != negate

    return member


def _text_function(convert: Callable[[str], Any]) -> Callable[[Any], Any]:
    return lambda value: MISSING if value is MISSING else convert(format_value(value))


_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "ispresent": lambda value: value is not MISSING,
    "isempty": lambda value: value is MISSING or format_value(value) == "",
    "tolower": _text_function(str.lower),
    "toupper": _text_function(str.upper),
    "strlen": _text_function(len),
}


def compile_query(query: str) -> CompiledQuery:
    """Parse a query; raises QuerySyntaxError with the character offset of the first problem."""
    return _Parser(query).parse()


# ----- execution -----


def run(
    compiled: CompiledQuery,
    store: LogStore,
    groups: list[str],
    start_ms: int,
    end_ms: int,
    row_cap: int,
) -> QueryOutput:
    """Run a compiled query over the events of `groups` in [start_ms, end_ms]; keep `row_cap` rows."""
    compiled.context.store = store
    scanned = _ScanCounter(store.scan(groups, start_ms, end_ms))
    records: Iterable[Any] = scanned
    matched: int | None = None

    for command in compiled.commands:
        if isinstance(command, _Filter):
            records = filter(command.predicate, records)
            continue
        if isinstance(command, _Fields):
            continue
        if matched is None:
            records = list(records)
            matched = len(records)
        records = _apply(command, records)

    if matched is None:
        records = list(records)
        matched = len(records)
    capped = list(records)[:row_cap]
    rows = [_output_row(compiled, record) for record in capped]
    return QueryOutput(rows, matched, scanned.count, scanned.bytes)


class _ScanCounter:
    def __init__(self, records: Iterator[Record]) -> None:
        self._records = records
        self.count = 0
        self.bytes = 0

    def __iter__(self) -> Iterator[Record]:
        for record in self._records:
            self.count += 1
            self.bytes += record[0].size
            yield record


def _apply(command: Command, records: list[Any]) -> list[Any]:
    if isinstance(command, _Limit):
        return records[: command.count]
    if isinstance(command, _Sort):
        return _sorted(records, command.keys)
    if isinstance(command, _Stats):
        return _aggregate(command, records)
    raise TypeError(f"unexpected command {command!r}")


def _sorted(records: list[Any], keys: list[tuple[Getter, bool]]) -> list[Any]:
    # Stable sorts from the last key to the first give a multi-key order; missing values go last.
    for getter, descending in reversed(keys):
        present = [record for record in records if getter(record) is not MISSING]
        absent = [record for record in records if getter(record) is MISSING]
        present.sort(key=lambda record: _sort_key(getter(record)), reverse=descending)
        records = present + absent
    return records


def _aggregate(command: _Stats, records: list[Any]) -> list[dict[str, Any]]:
    buckets: dict[tuple[Any, ...], list[_Accumulator]] = {}
    for record in records:
        key = tuple(_group_key(grouping, record) for grouping in command.groupings)
        accumulators = buckets.get(key)
        if accumulators is None:
            accumulators = buckets[key] = [_Accumulator(item) for item in command.aggregates]
        for accumulator in accumulators:
            accumulator.add(record)

    rows: list[dict[str, Any]] = []
    for key in sorted(buckets, key=lambda item: [_sort_key(part) for part in item]):
        row: dict[str, Any] = {}
        for grouping, part in zip(command.groupings, key):
            if part is not MISSING:
                row[grouping.name] = format_timestamp(part) if grouping.bin_ms else part
        for accumulator in buckets[key]:
            value = accumulator.result()
            if value is not MISSING:
                row[accumulator.aggregate.name] = value
        rows.append(row)
    return rows


def _group_key(grouping: _Grouping, record: Any) -> Any:
    value = grouping.getter(record)
    if grouping.bin_ms and value is not MISSING:
        return value - value % grouping.bin_ms
    return value


class _Accumulator:
    def __init__(self, aggregate: _Aggregate) -> None:
        self.aggregate = aggregate
        self.count = 0
        self.total = 0.0
        self.low: float | None = None
        self.high: float | None = None
        self.distinct: set[str] = set()

    def add(self, record: Any) -> None:
        getter = self.aggregate.getter
        if getter is None:
            self.count += 1
            return
        value = getter(record)
        if value is MISSING:
            return
        self.count += 1
        if self.aggregate.function == "count_distinct":
            self.distinct.add(format_value(value))
            return
        number = _as_number(value)
        if number is not None:
            self.total += number
            self.low = number if self.low is None else min(self.low, number)
            self.high = number if self.high is None else max(self.high, number)

    def result(self) -> Any:
        function = self.aggregate.function
        if function == "count":
            return self.count
        if function == "count_distinct":
            return len(self.distinct)
        if function == "sum":
            return self.total
        if function == "avg":
            return self.total / self.count if self.count else MISSING
        if not self.count:
            return MISSING
        return self.low if function == "min" else self.high


def _output_row(compiled: CompiledQuery, record: Any) -> list[tuple[str, str]]:
    row: list[tuple[str, str]] = []
    for name, getter in zip(compiled.output, compiled.output_getters):
        value = getter(record)
        if value is not MISSING:
            row.append((name, format_value(value)))
    if not isinstance(record, dict):
        row.append(("@ptr", _pointer(record)))
    return row
