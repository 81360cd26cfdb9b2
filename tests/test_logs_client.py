"""LogsClient over real sockets: boto3 against the Logs Insights stand-in on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections.abc import Iterator

import pytest

from helpctl.clients import logs as logs_client
from helpctl.clients.logs import LogsClient, Part
from helpctl.config.settings import LogsSettings
from helpctl.errors import AuthError, ConfigError, RateLimited, ServiceError, ServiceTimeout, UsageError
from helpctl.sandbox.logs_api import LogsService
from helpctl.sandbox.logs_seed import API_GROUP, WEB_GROUP, generate_events
from helpctl.sandbox.server import HTML_502, RunningService, ScriptedResponse

ANCHOR = dt.datetime(2025, 1, 10, 12, 0, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)
START = int((ANCHOR - 3 * HOUR).timestamp())
END = int(ANCHOR.timestamp())
BULK = "bulk@kiwicorp.co"
BULK_QUERY = f"fields @timestamp, @message, user | filter user = '{BULK}' | sort @timestamp desc"


class FakeTime:
    """A clock that moves only when the client sleeps, so backoff costs no real time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def service() -> Iterator[LogsService]:
    service = LogsService(ANCHOR, seed_story=False)
    service.knobs.scheduled_seconds = 0.0
    service.knobs.running_seconds = 0.0
    service.add_events(generate_events(40, ANCHOR - 2 * HOUR, ANCHOR - HOUR, user=BULK))
    service.add_events(generate_events(10, ANCHOR - 2 * HOUR, ANCHOR - HOUR, user="other@kiwicorp.co", seed=9))
    running = RunningService(service).start()
    service.url = running.base_url  # type: ignore[attr-defined]
    yield service
    running.stop()


def settings_for(service: LogsService, **overrides: object) -> LogsSettings:
    values: dict[str, object] = {
        "endpoint_url": service.url,  # type: ignore[attr-defined]
        "sandbox_credentials": True,
        "log_groups": [API_GROUP],
        "poll_interval": 0.01,
        "poll_interval_max": 0.02,
        "deadline": 5.0,
        "retry_budget": 60.0,
    }
    values.update(overrides)
    return LogsSettings(**values)  # type: ignore[arg-type]


def client_for(service: LogsService, fake: FakeTime | None = None, **overrides: object) -> LogsClient:
    settings = settings_for(service, **overrides)
    if fake is None:
        return LogsClient(settings)
    return LogsClient(settings, sleep=fake.sleep, clock=fake.clock)


# ----- one query -----


def test_run_query_rows_and_statistics(service: LogsService) -> None:
    result = client_for(service).run_query(BULK_QUERY, [API_GROUP], START, END)

    assert result.status == "Complete"
    assert len(result.rows) == 40
    assert {row["user"] for row in result.rows} == {BULK}
    assert all(row["@ptr"] for row in result.rows)
    assert result.statistics["recordsMatched"] == 40
    assert result.statistics["recordsScanned"] == 50
    assert not result.truncated


def test_run_query_sends_epoch_seconds(service: LogsService) -> None:
    inside = client_for(service).run_query(BULK_QUERY, [API_GROUP], ANCHOR - 2 * HOUR, ANCHOR - HOUR)
    outside = client_for(service).run_query(BULK_QUERY, [API_GROUP], ANCHOR - HOUR + dt.timedelta(seconds=1), ANCHOR)

    assert len(inside.rows) == 40
    assert outside.rows == []


def test_lifecycle_scheduled_running_complete(service: LogsService) -> None:
    service.knobs.scheduled_seconds = 0.03
    service.knobs.running_seconds = 0.08

    result = client_for(service).run_query(BULK_QUERY, [API_GROUP], START, END)

    assert result.statuses[0] == "Scheduled"
    assert "Running" in result.statuses
    assert result.statuses[-1] == "Complete"
    assert service.calls["GetQueryResults"] == result.polls


def test_running_rows_are_not_final(service: LogsService) -> None:
    service.knobs.running_seconds = 0.1
    client = client_for(service)
    query_id = client._call("start_query", logGroupNames=[API_GROUP], startTime=START, endTime=END, queryString=BULK_QUERY)["queryId"]
    first = client._call("get_query_results", queryId=query_id)

    result = client.run_query(BULK_QUERY, [API_GROUP], START, END)

    assert first["status"] == "Running"
    assert len(first["results"]) < 40
    assert result.status == "Complete"
    assert len(result.rows) == 40


def test_terminal_statuses_distinct(service: LogsService) -> None:
    service.knobs.final_statuses = ["Failed", "Cancelled", "Timeout", "Unknown"]
    client = client_for(service)

    results = [client.run_query(BULK_QUERY, [API_GROUP], START, END) for _ in range(4)]

    assert [result.status for result in results] == ["Failed", "Cancelled", "Timeout", "Unknown"]
    assert not any(result.complete for result in results)
    assert len(results[2].rows) == 20  # Timeout keeps the rows found so far
    assert results[0].rows == []


def test_deadline_stops_query(service: LogsService) -> None:
    service.knobs.running_seconds = 5.0
    client = client_for(service, deadline=0.15)

    with pytest.raises(ServiceTimeout) as caught:
        client.run_query(BULK_QUERY, [API_GROUP], START, END)

    assert "stopped it" in caught.value.message
    assert service.calls["StopQuery"] == 1
    (query,) = service.queries.values()
    assert query.status(query.created + 1) == "Cancelled"


def test_interrupt_stops_query(service: LogsService) -> None:
    service.knobs.running_seconds = 5.0

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    client = LogsClient(settings_for(service), sleep=interrupted)

    with pytest.raises(KeyboardInterrupt):
        client.run_query(BULK_QUERY, [API_GROUP], START, END)

    assert service.calls["StopQuery"] == 1
    assert service.running_count() == 0


def test_limit_exceeded_then_success(service: LogsService) -> None:
    service.knobs.reject_starts = 2
    fake = FakeTime()

    result = client_for(service, fake).run_query(BULK_QUERY, [API_GROUP], START, END)

    assert result.status == "Complete"
    assert service.calls["StartQuery"] == 3
    assert len(fake.sleeps) == 2
    assert 0.5 <= fake.sleeps[0] <= 1.0
    assert 1.0 <= fake.sleeps[1] <= 2.0


def test_quota_exhausted_is_rate_limited(service: LogsService) -> None:
    service.knobs.reject_starts = 1000
    fake = FakeTime()

    with pytest.raises(RateLimited) as caught:
        client_for(service, fake, retry_budget=30.0).run_query(BULK_QUERY, [API_GROUP], START, END)

    assert "concurrency quota exhausted" in caught.value.message
    assert "shared with other users" in caught.value.message
    assert sum(fake.sleeps) <= 30.0
    assert service.calls["StartQuery"] == len(fake.sleeps) + 1


def test_throttled_poll_retried(service: LogsService) -> None:
    service.knobs.throttle_polls = 2
    fake = FakeTime()

    result = client_for(service, fake).run_query(BULK_QUERY, [API_GROUP], START, END)

    assert result.status == "Complete"
    assert service.calls["GetQueryResults"] == 3


def test_own_concurrency_bounded(service: LogsService) -> None:
    service.knobs.running_seconds = 0.1
    client = client_for(service, max_concurrent_queries=2)
    results: list[str] = []

    def worker() -> None:
        results.append(client.run_query(BULK_QUERY, [API_GROUP], START, END).status)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert results == ["Complete"] * 5
    assert service.peak_running == 2


def test_html_502_retried(service: LogsService) -> None:
    service.knobs.script = [ScriptedResponse(502, HTML_502, {"Content-Type": "text/html"})]
    fake = FakeTime()

    result = client_for(service, fake).run_query(BULK_QUERY, [API_GROUP], START, END)

    assert result.status == "Complete"
    assert service.calls["StartQuery"] == 1
    assert len(fake.sleeps) == 1


def test_html_502_exhausts_budget(service: LogsService) -> None:
    service.knobs.error_rate = 1.0
    fake = FakeTime()

    with pytest.raises(ServiceError) as caught:
        client_for(service, fake, retry_budget=5.0).run_query(BULK_QUERY, [API_GROUP], START, END)

    assert caught.value.status == 502
    assert "gave up after" in caught.value.message


def test_read_timeout_is_service_timeout(service: LogsService) -> None:
    service.knobs.latency = 0.6
    client = LogsClient(settings_for(service, retry_budget=0.0), read_timeout=0.2)

    with pytest.raises(ServiceTimeout):
        client.run_query(BULK_QUERY, [API_GROUP], START, END)


def test_malformed_query_position(service: LogsService) -> None:
    with pytest.raises(UsageError) as caught:
        client_for(service).run_query("fields @message | stats count() by user", [API_GROUP], START, END)

    assert "position 30" in caught.value.message
    assert caught.value.hint is not None and ") by user" in caught.value.hint
    assert service.calls["StartQuery"] == 1


def test_unknown_log_group_names_it(service: LogsService) -> None:
    with pytest.raises(UsageError) as caught:
        client_for(service).run_query(BULK_QUERY, ["/aws/lambda/missing"], START, END)

    assert "/aws/lambda/missing" in caught.value.message


def test_empty_window_rejected(service: LogsService) -> None:
    with pytest.raises(UsageError):
        client_for(service).run_query(BULK_QUERY, [API_GROUP], END, START)


def _no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    # Point the credential chain at nothing: no variables, no files, no metadata service.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", f"{tmp_path}/no-aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", f"{tmp_path}/no-aws-credentials")


def test_missing_credentials_auth_error(service: LogsService, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    _no_aws_credentials(monkeypatch, tmp_path)
    client = client_for(service, sandbox_credentials=False)

    with pytest.raises(AuthError) as caught:
        client.run_query(BULK_QUERY, [API_GROUP], START, END)

    assert "aws sso login" in (caught.value.hint or "")
    assert service.calls["StartQuery"] == 0


def test_unknown_aws_profile_auth_error(service: LogsService, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    _no_aws_credentials(monkeypatch, tmp_path)
    client = client_for(service, sandbox_credentials=False, aws_profile="no-such-profile")

    with pytest.raises(AuthError) as caught:
        client.run_query(BULK_QUERY, [API_GROUP], START, END)

    assert "no-such-profile" in caught.value.message


def test_unsigned_request_rejected(service: LogsService) -> None:
    import httpx

    answer = httpx.post(service.url, headers={"X-Amz-Target": "Logs_20140328.DescribeQueries"}, content=b"{}")  # type: ignore[attr-defined]

    assert answer.status_code == 400
    assert answer.json()["__type"] == "MissingAuthenticationTokenException"


def test_unknown_target_aws_error_shape(service: LogsService) -> None:
    import boto3

    client = boto3.client("logs", region_name="us-east-1", endpoint_url=service.url, aws_access_key_id="sandbox", aws_secret_access_key="sandbox")  # type: ignore[attr-defined]

    with pytest.raises(client.exceptions.ClientError) as caught:
        client.describe_log_groups()

    assert caught.value.response["Error"]["Code"] == "UnknownOperationException"


def test_sandbox_credentials_need_loopback() -> None:
    with pytest.raises(ConfigError):
        LogsClient(LogsSettings(sandbox_credentials=True, endpoint_url=None))


def test_describe_queries_lists_status(service: LogsService) -> None:
    import boto3

    client = client_for(service)
    client.run_query(BULK_QUERY, [API_GROUP], START, END)
    raw = boto3.client("logs", region_name="us-east-1", endpoint_url=service.url, aws_access_key_id="sandbox", aws_secret_access_key="sandbox")  # type: ignore[attr-defined]

    queries = raw.describe_queries(logGroupName=API_GROUP, status="Complete")["queries"]

    assert [item["queryString"] for item in queries] == [BULK_QUERY]


# ----- complete results -----


def _bulk_service(service: LogsService, count: int, cap: int) -> None:
    service.knobs.row_cap = cap
    service.add_events(generate_events(count, ANCHOR - 2 * HOUR, ANCHOR, user="many@kiwicorp.co", seed=4))


MANY_QUERY = "fields @timestamp, @message | filter user = 'many@kiwicorp.co' | sort @timestamp desc"


def test_fetch_small_result_one_query(service: LogsService) -> None:
    fetch = client_for(service).fetch_all(BULK_QUERY, [API_GROUP], START, END)
    rows = list(fetch)

    assert len(rows) == 40
    assert fetch.complete
    assert fetch.queries_run == 1
    assert fetch.matched == 40


def test_split_retrieves_every_row(service: LogsService) -> None:
    _bulk_service(service, 2500, 100)
    client = client_for(service, row_cap=100)

    fetch = client.fetch_all(MANY_QUERY, [API_GROUP], START, END)
    rows = list(fetch)

    assert len(rows) == 2500
    assert len({row["@ptr"] for row in rows}) == 2500
    assert fetch.complete
    assert not fetch.truncated
    assert fetch.matched == 2500
    assert fetch.queries_run == service.calls["StartQuery"]
    minimum = math.ceil(2500 / 100)
    assert fetch.queries_run <= 1.3 * minimum, fetch.queries_run


def test_split_keeps_descending_order(service: LogsService) -> None:
    _bulk_service(service, 600, 100)

    rows = list(client_for(service, row_cap=100).fetch_all(MANY_QUERY, [API_GROUP], START, END))

    stamps = [row["@timestamp"] for row in rows]
    assert len(stamps) == 600
    assert stamps == sorted(stamps, reverse=True)


def test_split_without_sort(service: LogsService) -> None:
    _bulk_service(service, 700, 100)
    query = "fields @message | filter user = 'many@kiwicorp.co'"

    fetch = client_for(service, row_cap=100).fetch_all(query, [API_GROUP], START, END)
    rows = list(fetch)

    assert len({row["@ptr"] for row in rows}) == 700
    assert fetch.complete


def test_burst_bin_split_again(service: LogsService) -> None:
    service.knobs.row_cap = 100
    service.add_events(generate_events(450, ANCHOR - HOUR, ANCHOR - HOUR + dt.timedelta(seconds=20), user="many@kiwicorp.co", seed=5))

    fetch = client_for(service, row_cap=100).fetch_all(MANY_QUERY, [API_GROUP], START, END)
    rows = list(fetch)

    assert len({row["@ptr"] for row in rows}) == 450
    assert fetch.complete


def test_one_second_over_cap_truncated(service: LogsService) -> None:
    service.knobs.row_cap = 100
    second = logs_client.epoch_seconds(ANCHOR - HOUR) * 1000
    service.add_events({"timestamp": second + index, "message": {"user": "many@kiwicorp.co", "n": index}} for index in range(150))

    fetch = client_for(service, row_cap=100).fetch_all(MANY_QUERY, [API_GROUP], START, END)
    rows = list(fetch)

    assert len(rows) == 100
    assert fetch.truncated
    assert not fetch.complete
    assert any("in the second" in note or "did not allow a split" in note for note in fetch.notes)


def test_query_limit_wins_and_reported(service: LogsService) -> None:
    _bulk_service(service, 500, 10_000)
    query = MANY_QUERY + " | limit 20"

    fetch = client_for(service).fetch_all(query, [API_GROUP], START, END)
    rows = list(fetch)

    assert len(rows) == 20
    assert fetch.truncated
    assert not fetch.complete
    assert "limit 20" in fetch.notes[0]
    assert fetch.matched == 500


def test_max_rows_truncates(service: LogsService) -> None:
    _bulk_service(service, 500, 100)

    fetch = client_for(service, row_cap=100).fetch_all(MANY_QUERY, [API_GROUP], START, END, max_rows=150)
    rows = list(fetch)

    assert len(rows) == 150
    assert fetch.rows_retrieved == 150
    assert fetch.truncated
    assert not fetch.complete
    assert fetch.matched == 500


def test_stats_query_not_split(service: LogsService) -> None:
    _bulk_service(service, 300, 100)
    query = "filter user = 'many@kiwicorp.co' | stats count(*) by request_id"

    fetch = client_for(service, row_cap=100).fetch_all(query, [API_GROUP], START, END)
    rows = list(fetch)

    assert len(rows) == 100
    assert fetch.truncated
    assert "cannot be split" in fetch.notes[0]
    assert fetch.queries_run == 1


def test_next_token_pages_followed(service: LogsService) -> None:
    service.knobs.page_size = 15

    result = client_for(service).run_query(BULK_QUERY, [API_GROUP], START, END)

    assert len(result.rows) == 40
    assert len({row["@ptr"] for row in result.rows}) == 40
    assert service.calls["GetQueryResults"] == 1 + 2


def test_failed_part_stops_fetch(service: LogsService) -> None:
    _bulk_service(service, 500, 100)
    service.knobs.final_statuses = ["Complete", "Complete", "Complete", "Failed"]

    fetch = client_for(service, row_cap=100).fetch_all(MANY_QUERY, [API_GROUP], START, END)
    rows = list(fetch)

    assert fetch.status == "Failed"
    assert not fetch.complete
    assert len(rows) < 500


def test_first_query_error_recorded(service: LogsService) -> None:
    service.knobs.reject_starts = 1000
    fake = FakeTime()

    fetch = client_for(service, fake, retry_budget=3.0).fetch_all(BULK_QUERY, [API_GROUP], START, END)

    assert list(fetch) == []
    assert isinstance(fetch.error, RateLimited)
    assert not fetch.complete


def test_fetch_raises_usage_error_up_front(service: LogsService) -> None:
    with pytest.raises(UsageError):
        client_for(service).fetch_all("filter x = ", [API_GROUP], START, END)


def test_fetch_two_log_groups(service: LogsService) -> None:
    service.add_events(generate_events(5, ANCHOR - 2 * HOUR, ANCHOR - HOUR, user=BULK, seed=11), log_group=WEB_GROUP)

    rows = list(client_for(service).fetch_all(BULK_QUERY, [API_GROUP, WEB_GROUP], START, END))

    assert len(rows) == 45


# ----- planning helpers -----


def test_bin_width_keeps_bins_under_cap() -> None:
    for start, end, cap in [(0, 10_799, 100), (7, 10_806, 100), (1_736_489_200, 1_736_500_000, 10_000), (5, 6, 2)]:
        width = logs_client.bin_width(start, end, cap)
        bins = end // width - start // width + 1
        assert bins <= max(2, cap - 1), (start, end, cap, width)
        if width > 1:
            narrower = width - 1
            assert end // narrower - start // narrower + 1 > max(2, cap - 1)


def test_pack_covers_window_without_gaps() -> None:
    pieces = [Part(10, 19, 40), Part(20, 29, 50), Part(50, 59, 30), Part(60, 69, 90), Part(90, 99, 5)]

    parts = logs_client.pack(pieces, 0, 120, 99)

    assert parts == [Part(0, 49, 90), Part(50, 59, 30), Part(60, 120, 95)]


def test_complete_span_drops_edge_second() -> None:
    rows = [{"@timestamp": "2025-01-10 11:00:05.100"}, {"@timestamp": "2025-01-10 11:00:04.900"}, {"@timestamp": "2025-01-10 11:00:04.100"}]
    edge = logs_client.parse_timestamp("2025-01-10 11:00:04.000") // 1000

    kept, window = logs_client.complete_span(rows, "desc", 100, edge + 10)

    assert kept == rows[:1]
    assert window == (100, edge)
    assert logs_client.complete_span(rows, None, 100, 200) == ([], (100, 200))


def test_parse_timestamp_both_formats() -> None:
    assert logs_client.parse_timestamp("2025-01-10 12:00:00.250") == int(ANCHOR.timestamp() * 1000) + 250
    assert logs_client.parse_timestamp("1736510400250") == int(ANCHOR.timestamp() * 1000) + 250


# ----- late ingestion -----


def test_late_event_seen_on_rerun(service: LogsService) -> None:
    recent = {"timestamp": ANCHOR - dt.timedelta(seconds=10), "message": {"user": "late@kiwicorp.co", "level": "ERROR"}}
    service.add_events([recent], after_queries=1)
    query = "fields @timestamp, user | filter user = 'late@kiwicorp.co'"
    client = client_for(service)

    first = client.run_query(query, [API_GROUP], START, END)
    second = client.run_query(query, [API_GROUP], START, END)

    assert first.status == "Complete"
    assert first.rows == []
    assert [row["user"] for row in second.rows] == ["late@kiwicorp.co"]


def test_late_events_overfill_part_split_again(service: LogsService) -> None:
    _bulk_service(service, 700, 100)
    late = generate_events(150, ANCHOR - dt.timedelta(minutes=50), ANCHOR - dt.timedelta(minutes=40), user="many@kiwicorp.co", seed=8)
    service.add_events(late, after_queries=2)

    fetch = client_for(service, row_cap=100).fetch_all(MANY_QUERY, [API_GROUP], START, END)
    rows = list(fetch)

    assert len({row["@ptr"] for row in rows}) == 850
    assert len(rows) == 850
    assert fetch.complete
