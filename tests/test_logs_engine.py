"""The Logs Insights stand-in's query language, and helpctl's query building (logsquery)."""

from __future__ import annotations

import datetime as dt

import pytest

from helpctl import logsquery
from helpctl.errors import UsageError
from helpctl.sandbox import logs_engine as engine

T0 = 1_736_500_000_000  # 2025-01-10 09:06:40 UTC, in epoch milliseconds


def _store() -> engine.LogStore:
    store = engine.LogStore()
    users = ["ana@kiwicorp.co", "luisa@kiwicorp.co", "marta@kiwicorp.co", "pedro@kiwicorp.co"]
    events = []
    for index in range(20):
        fields = {
            "level": "ERROR" if index % 3 == 0 else "INFO",
            "user": users[index % 4],
            "group": "kiwiapp" if index % 2 else "kiwipay",
            "operation": "GroupFindings" if index < 10 else "GroupVulnerabilities",
            "message": f"Request {index % 5} done",
            "request_id": f"req-{index:03d}",
            "n": index,
        }
        events.append(engine.make_event(T0 + index * 60_000, fields, f"stream-{index % 2}"))
    store.add("/api", events)
    store.add("/web", [engine.make_event(T0 + 30_000, "GET /orgs/kiwicorp 200 | done", "web-1")])
    store.add("/web", [engine.make_event(T0 + 90_000, {"http": {"status": 502, "path": "/x"}, "user": "ana@kiwicorp.co"}, "web-1")])
    return store


def _run(query: str, groups: tuple[str, ...] = ("/api",), cap: int = 10_000, start: int = 0, end: int = 2**62) -> engine.QueryOutput:
    return engine.run(engine.compile_query(query), _store(), list(groups), start, end, cap)


def _rows(query: str, **options: object) -> list[dict[str, str]]:
    return [dict(row) for row in _run(query, **options).rows]  # type: ignore[arg-type]


def _values(query: str, field: str, **options: object) -> list[str]:
    return [row[field] for row in _rows(query, **options) if field in row]


# ----- fields and output -----


def test_default_fields_timestamp_message_ptr() -> None:
    rows = _rows("filter n = 0")

    assert len(rows) == 1
    assert list(rows[0]) == ["@timestamp", "@message", "@ptr"]
    assert rows[0]["@timestamp"] == "2025-01-10 09:06:40.000"
    assert '"user":"ana@kiwicorp.co"' in rows[0]["@message"]


def test_fields_alias_stream_and_log() -> None:
    rows = _rows("fields user as who, @logStream, @log | filter n = 1")

    assert rows[0]["who"] == "luisa@kiwicorp.co"
    assert rows[0]["@logStream"] == "stream-1"
    assert rows[0]["@log"] == f"{engine.ACCOUNT_ID}:/api"
    assert rows[0]["@ptr"]


def test_ptr_unique_per_event() -> None:
    pointers = _values("fields @ptr", "@ptr")

    assert len(pointers) == 20
    assert len(set(pointers)) == 20


def test_missing_fields_give_ragged_rows() -> None:
    rows = _rows("fields user, http.status", groups=("/web",))

    assert rows[0] == {"@ptr": rows[0]["@ptr"]}
    assert rows[1]["http.status"] == "502"
    assert rows[1]["user"] == "ana@kiwicorp.co"


def test_nested_json_flattened_with_dots() -> None:
    rows = _rows("fields http.path | filter http.status >= 500", groups=("/web",))

    assert [row["http.path"] for row in rows] == ["/x"]


def test_text_message_is_searchable() -> None:
    rows = _rows("fields @message | filter @message like 'GET /orgs'", groups=("/web",))

    assert [row["@message"] for row in rows] == ["GET /orgs/kiwicorp 200 | done"]


def test_display_picks_output_columns() -> None:
    rows = _rows("fields user, n | display n | filter n < 2")

    assert [list(row) for row in rows] == [["n", "@ptr"], ["n", "@ptr"]]


def test_functions_in_fields_and_filter() -> None:
    rows = _rows("fields toupper(user) as loud, strlen(user) as size | filter ispresent(request_id) and tolower(level) = 'error' and n < 4")

    assert [row["loud"] for row in rows] == ["ANA@KIWICORP.CO", "PEDRO@KIWICORP.CO"]
    assert rows[0]["size"] == "15"


def test_isempty_on_missing_field() -> None:
    assert _values("fields n | filter isempty(nothing) and n = 3", "n") == ["3"]


# ----- filter -----


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("n = 5", ["5"]),
        ("n != 5 and n < 3", ["0", "1", "2"]),
        ("n < 2", ["0", "1"]),
        ("n <= 1", ["0", "1"]),
        ("n > 17", ["18", "19"]),
        ("n >= 18", ["18", "19"]),
        ("n = '7'", ["7"]),
        ("request_id = 'req-004'", ["4"]),
        ("request_id > 'req-017'", ["18", "19"]),
    ],
)
def test_filter_comparisons(condition: str, expected: list[str]) -> None:
    assert _values(f"fields n | filter {condition} | sort n asc", "n") == expected


def test_like_string_case_sensitive() -> None:
    assert len(_rows("filter message like 'Request 1'")) == 4
    assert _rows("filter message like 'request 1'") == []


def test_like_regex_and_match_operator() -> None:
    assert len(_rows("filter user like /^(ana|marta)@/")) == 10
    assert len(_rows("filter user =~ /(?i)^ANA@/")) == 5
    assert len(_rows('filter user =~ "marta"')) == 5


def test_regex_escaped_slash() -> None:
    assert _values(r"fields @message | filter @message like /GET \/orgs\//", "@message", groups=("/web",)) == ["GET /orgs/kiwicorp 200 | done"]


def test_not_like() -> None:
    assert len(_rows("filter user not like 'ana'")) == 15


def test_in_and_not_in() -> None:
    assert _values("fields n | filter n in [1, 2, 30] | sort n", "n") == ["1", "2"]
    assert len(_rows("filter user not in ['ana@kiwicorp.co', \"luisa@kiwicorp.co\"]")) == 10


def test_and_binds_tighter_than_or() -> None:
    assert _values("fields n | filter n = 1 or n = 2 and level = 'ERROR' | sort n", "n") == ["1"]
    assert _values("fields n | filter (n = 1 or n = 3) and level = 'ERROR' | sort n", "n") == ["3"]


def test_not_with_parentheses() -> None:
    assert len(_rows("filter not (level = 'ERROR' or group = 'kiwiapp')")) == 6


def test_missing_field_never_matches() -> None:
    assert _rows("filter nothing = 1 or nothing != 1") == []


def test_filters_chain() -> None:
    assert _values("fields n | filter group = 'kiwiapp' | filter level = 'ERROR' | sort n", "n") == ["3", "9", "15"]


# ----- sort and limit -----


def test_sort_desc_then_limit() -> None:
    assert _values("fields n | sort n desc | limit 3", "n") == ["19", "18", "17"]


def test_sort_defaults_to_ascending() -> None:
    assert _values("fields n | sort n | limit 2", "n") == ["0", "1"]


def test_sort_multiple_keys() -> None:
    values = _values("fields user, n | filter n < 8 | sort user asc, n desc", "n")

    assert values == ["4", "0", "5", "1", "6", "2", "7", "3"]


def test_sort_missing_values_last() -> None:
    rows = _rows("fields user, http.status | sort http.status desc", groups=("/web",))

    assert rows[0]["http.status"] == "502"
    assert "http.status" not in rows[1]


def test_timestamp_sort_both_groups() -> None:
    stamps = _values("fields @timestamp | sort @timestamp desc", "@timestamp", groups=("/api", "/web"))

    assert len(stamps) == 22
    assert stamps == sorted(stamps, reverse=True)


# ----- stats -----


def test_stats_count_by_field_with_alias() -> None:
    rows = _rows("filter level = 'ERROR' | stats count(*) as errors by user")

    assert rows == [
        {"user": "ana@kiwicorp.co", "errors": "2"},
        {"user": "luisa@kiwicorp.co", "errors": "1"},
        {"user": "marta@kiwicorp.co", "errors": "2"},
        {"user": "pedro@kiwicorp.co", "errors": "2"},
    ]


def test_stats_default_names() -> None:
    rows = _rows("stats count(*), count(nothing), count_distinct(user)")

    assert rows == [{"count(*)": "20", "count(nothing)": "0", "count_distinct(user)": "4"}]


def test_stats_sum_avg_min_max() -> None:
    rows = _rows("filter n < 4 | stats sum(n) as total, avg(n) as mean, min(n) as low, max(n) as high")

    assert rows == [{"total": "6", "mean": "1.5", "low": "0", "high": "3"}]


def test_stats_by_bin_aligned() -> None:
    rows = _rows("stats count(*) as n by bin(5m)")

    assert rows[0] == {"bin(5m)": "2025-01-10 09:05:00.000", "n": "4"}
    assert sum(int(row["n"]) for row in rows) == 20
    assert all(row["bin(5m)"].endswith(("0:00.000", "5:00.000")) for row in rows)


def test_stats_by_bin_hour_and_field_sorted_after() -> None:
    rows = _rows("stats count(*) as n by bin(1h), operation | sort n desc")

    assert [(row["operation"], row["n"]) for row in rows] == [("GroupFindings", "10"), ("GroupVulnerabilities", "10")]
    assert rows[0]["bin(1h)"] == "2025-01-10 09:00:00.000"


def test_stats_rows_have_no_ptr() -> None:
    assert "@ptr" not in _rows("stats count(*)")[0]


# ----- literals, pipes and comments -----


def test_pipe_inside_string_is_not_a_command() -> None:
    assert len(_rows("filter @message like '| done'", groups=("/web",))) == 1


def test_comment_lines_ignored() -> None:
    query = "# errors only\nfields n\n| filter level = 'ERROR' # not INFO\n| sort n | limit 2"

    assert _values(query, "n") == ["0", "3"]


def test_hash_inside_string_is_text() -> None:
    assert _rows("filter message = 'a # b'") == []


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        (r"'it\'s'", "it's"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'back\\slash'", "back\\slash"),
        (r"'tab\tnew\nline'", "tab\tnew\nline"),
        ('"single \' inside"', "single ' inside"),
    ],
)
def test_string_escapes(literal: str, expected: str) -> None:
    token = engine.tokenize(literal)[0]

    assert token.kind == "string"
    assert token.value == expected


def test_backtick_field_name() -> None:
    store = engine.LogStore()
    store.add("/g", [engine.make_event(T0, {"request-id": "abc"})])

    output = engine.run(engine.compile_query("fields `request-id` | filter `request-id` = 'abc'"), store, ["/g"], 0, 2**62, 10)

    assert output.rows[0][0] == ("request-id", "abc")


def test_keywords_case_insensitive() -> None:
    assert _values("FIELDS n | FILTER n = 1 OR n = 2 | SORT n DESC", "n") == ["2", "1"]


# ----- window, cap and statistics -----


def test_time_range_inclusive() -> None:
    rows = _rows("fields n", start=T0 + 60_000, end=T0 + 180_000)

    assert sorted(int(row["n"]) for row in rows) == [1, 2, 3]


def test_row_cap_and_smaller_limit() -> None:
    assert len(_rows("fields n", cap=7)) == 7
    assert len(_rows("fields n | limit 3", cap=7)) == 3
    assert len(_rows("fields n | limit 50", cap=7)) == 7


def test_statistics_count_matches_beyond_cap() -> None:
    output = _run("filter level = 'INFO' | limit 2", cap=1)

    assert len(output.rows) == 1
    assert output.records_matched == 13
    assert output.records_scanned == 20
    assert output.bytes_scanned > 20 * 100


def test_unsorted_inserts_are_ordered() -> None:
    store = engine.LogStore()
    store.add("/g", [engine.make_event(T0 + 2000, "late"), engine.make_event(T0, "early")])
    store.add("/g", [engine.make_event(T0 + 1000, "middle")])

    output = engine.run(engine.compile_query("fields @message"), store, ["/g"], 0, 2**62, 10)

    assert [row[0][1] for row in output.rows] == ["early", "middle", "late"]


# ----- syntax errors -----


@pytest.mark.parametrize(
    ("query", "position"),
    [
        ("fitler level = 'ERROR'", 0),
        ("fields a | filter", 17),
        ("stats count()", 12),
        ("filter x = 'abc", 11),
        ("filter x like /[/", 14),
        ("limit 0", 6),
        ("limit 2.5", 6),
        ("filter a = 1 b", 13),
        ("stats count(*) by bin(5q)", 22),
        ("stats count(*) by bin(user)", 22),
        ("stats median(n)", 6),
        ("fields `a", 7),
        ("filter frobnicate(x)", 7),
        ("filter x not = 1", 9),
        ("filter x in 1", 12),
        ("fields a | | fields b", 11),
        ("sort", 4),
        ("fields a ~ b", 9),
        ("filter x like 5", 14),
    ],
)
def test_syntax_error_positions(query: str, position: int) -> None:
    with pytest.raises(engine.QuerySyntaxError) as caught:
        engine.compile_query(query)

    assert caught.value.start == position
    assert f"at position {position}" in str(caught.value)


def test_empty_query_lists_everything() -> None:
    assert len(_rows("")) == 20


# ----- query building (helpctl.logsquery) -----

INJECTION = "x' or user like /./ | limit 1 #"


def test_render_quotes_bare_placeholder() -> None:
    query = logsquery.render("filter user = {email} | sort @timestamp desc", {"email": "ana.gomez@kiwicorp.co"})

    assert query == "filter user = 'ana.gomez@kiwicorp.co' | sort @timestamp desc"


def test_render_inside_quotes_and_regex() -> None:
    template = "filter @message like \"{request_id}\" or @message like /{email}/"

    query = logsquery.render(template, {"request_id": "abc-123", "email": "o.brien+vip@kiwicorp.co"})

    assert query == r"filter @message like " + '"abc-123"' + r" or @message like /o\.brien\+vip@kiwicorp\.co/"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("email", INJECTION),
        ("email", "ana@kiwicorp"),
        ("email", "ana@kiwicorp.co\n| limit 1"),
        ("group", "KiwiApp"),
        ("group", "kiwi app"),
        ("request_id", "abc/123"),
        ("user", "ana'@kiwicorp.co"),
    ],
)
def test_render_rejects_invalid_values(name: str, value: str) -> None:
    with pytest.raises(UsageError) as caught:
        logsquery.render("filter x = {" + name + "}", {name: value})

    assert "invalid value" in caught.value.message


def test_render_rejects_unknown_placeholder() -> None:
    with pytest.raises(UsageError) as caught:
        logsquery.render("filter x = {customer}", {"customer": "a"})

    assert "{customer}" in caught.value.message


def test_render_rejects_placeholder_in_field_name() -> None:
    with pytest.raises(UsageError):
        logsquery.render("fields `{group}`", {"group": "kiwiapp"})


def test_injection_matched_literally() -> None:
    store = _store()
    store.add("/api", [engine.make_event(T0 + 5, {"user": INJECTION, "level": "INFO"})])
    safe = logsquery.render("fields user | filter user = {email}", {"email": INJECTION}, strict=False)
    naive = "fields user | filter user = '" + INJECTION + "'"

    rows = engine.run(engine.compile_query(safe), store, ["/api"], 0, 2**62, 100).rows
    widened = engine.run(engine.compile_query(naive), store, ["/api"], 0, 2**62, 100).rows

    assert [dict(row)["user"] for row in rows] == [INJECTION]
    assert len(widened) == 1
    assert dict(widened[0])["user"] != INJECTION


def test_injection_in_quotes_and_regex() -> None:
    store = _store()
    hostile = 'a" | fields * | limit 10000 | filter "/'
    store.add("/api", [engine.make_event(T0 + 5, {"user": hostile})])

    for template in ('fields user | filter user = "{user}"', "fields user | filter user like /^{user}$/"):
        query = logsquery.render(template, {"user": hostile}, strict=False)
        rows = engine.run(engine.compile_query(query), store, ["/api"], 0, 2**62, 100).rows
        assert [dict(row)["user"] for row in rows] == [hostile], query


def test_escape_rejects_newline() -> None:
    with pytest.raises(UsageError):
        logsquery.quote_string("a\n| limit 1")


def test_split_commands_respects_literals() -> None:
    query = "fields @message # a | comment\n| filter @message like 'a|b' and x like /c|d/ | limit 5"

    commands = logsquery.split_commands(query)

    assert [command.name for command in commands] == ["fields", "filter", "limit"]
    assert commands[1].text == "filter @message like 'a|b' and x like /c|d/"


def test_query_limit_and_order() -> None:
    assert logsquery.query_limit("fields a | limit 50 | filter x = 'limit 2' | limit 20") == 20
    assert logsquery.query_limit("fields a") is None
    assert logsquery.timestamp_order("fields a | sort @timestamp desc") == "desc"
    assert logsquery.timestamp_order("fields a | sort @timestamp") == "asc"
    assert logsquery.timestamp_order("sort @timestamp desc | sort user") is None


def test_count_query_keeps_filters_only() -> None:
    counting = logsquery.count_query("fields a | filter x = 1 | sort a | display a | limit 3", bin_seconds=37, extra_filter="level = 'ERROR'")

    assert counting == "fields a | filter x = 1 | filter level = 'ERROR' | stats count(*) as n by bin(37s)"
    assert logsquery.count_query("filter x = 1 | stats count(*) by user") is None


def test_count_query_runs_on_engine() -> None:
    counting = logsquery.count_query("fields n | filter level = 'ERROR' | sort n desc | limit 1", bin_seconds=300)
    assert counting is not None

    rows = _rows(counting)

    assert sum(int(row["n"]) for row in rows) == 7


def test_epoch_window_helper_matches_engine_format() -> None:
    moment = dt.datetime.fromtimestamp(T0 / 1000, dt.timezone.utc)

    assert engine.format_timestamp(T0 + 7) == moment.strftime("%Y-%m-%d %H:%M:%S") + ".007"
