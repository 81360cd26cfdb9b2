"""LogsClient against moto's server mode on 127.0.0.1: the boto3 plumbing only.

moto 5.2 runs a query synchronously (always Complete), ignores `filter` and `stats`, and
returns `@timestamp` as epoch milliseconds, so these tests check start, poll and the shape
of the rows, not the query language.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest

from helpctl.clients.logs import LogsClient
from helpctl.config.settings import LogsSettings
from helpctl.findings import isoformat
from helpctl.probes.logs import Tally

moto_server = pytest.importorskip("moto.server")

GROUP = "/aws/lambda/integrates-api"
# PutLogEvents rejects events older than 14 days, so the events are placed near the real now.
ANCHOR = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)


@pytest.fixture
def moto_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    url = f"http://{host}:{port}"
    yield url
    # moto keeps its state per process: clear it for the next test.
    httpx.post(f"{url}/moto-api/reset")
    server.stop()


@pytest.fixture
def seeded(moto_url: str) -> str:
    import boto3

    raw = boto3.client("logs", region_name="us-east-1", endpoint_url=moto_url, aws_access_key_id="sandbox", aws_secret_access_key="sandbox")
    raw.create_log_group(logGroupName=GROUP)
    raw.create_log_stream(logGroupName=GROUP, logStreamName="stream-1")
    first = int((ANCHOR - dt.timedelta(hours=1)).timestamp() * 1000)
    events = [{"timestamp": first + index * 60_000, "message": f'{{"level":"INFO","user":"ana.gomez@kiwicorp.co","n":{index}}}'} for index in range(6)]
    answer = raw.put_log_events(logGroupName=GROUP, logStreamName="stream-1", logEvents=events)
    assert "rejectedLogEventsInfo" not in answer
    return moto_url


def _client(url: str) -> LogsClient:
    settings = LogsSettings(endpoint_url=url, sandbox_credentials=True, log_groups=[GROUP], poll_interval=0.01, poll_interval_max=0.02, deadline=5.0, retry_budget=0.0)
    return LogsClient(settings)


def test_moto_run_query_plumbing(seeded: str) -> None:
    start = int((ANCHOR - dt.timedelta(hours=2)).timestamp())
    end = int(ANCHOR.timestamp())

    result = _client(seeded).run_query("fields @timestamp, @message | sort @timestamp desc", [GROUP], start, end)

    assert result.status == "Complete"
    assert result.statuses == ["Complete"]
    assert len(result.rows) == 6
    assert all(set(row) >= {"@timestamp", "@message", "@ptr"} for row in result.rows)
    assert all(row["@message"].startswith('{"level":"INFO"') for row in result.rows)


def test_moto_rows_feed_the_tally(seeded: str) -> None:
    start = int((ANCHOR - dt.timedelta(hours=2)).timestamp())
    tally = Tally()

    fetch = _client(seeded).fetch_all("fields @timestamp, @message", [GROUP], start, int(ANCHOR.timestamp()))
    rows = list(tally.observe(fetch))

    assert len(rows) == 6
    assert fetch.complete
    assert fetch.queries_run == 1
    signals = tally.signals()
    assert signals["logs.distinct_users"] == 1
    assert signals["logs.first_at"] == isoformat(ANCHOR - dt.timedelta(hours=1))
    assert signals["logs.last_at"] == isoformat(ANCHOR - dt.timedelta(minutes=55))


def test_moto_time_window_in_seconds(seeded: str) -> None:
    start = int((ANCHOR - dt.timedelta(minutes=57)).timestamp())

    result = _client(seeded).run_query("fields @timestamp", [GROUP], start, int(ANCHOR.timestamp()))

    assert len(result.rows) == 3
