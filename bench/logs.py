"""Benchmark: fetch 250,000 matching Logs Insights events through a 10,000-row cap.

The Logs Insights stand-in runs in its own process (multiprocessing, spawn) on 127.0.0.1
with generated events. This process fetches them all with `LogsClient.fetch_all` over
boto3. It prints the rows retrieved, the queries run against the minimum
(ceil(events / cap)), the wall time and this process's peak resident memory. It exits with
status 1 when a row is missing, the query ratio exceeds 1.3 or the peak memory reaches 200 MB.

    python bench/logs.py [--events 250000] [--cap 10000] [--hours 4]
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import multiprocessing
import os
import resource
import sys
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

ANCHOR = dt.datetime(2025, 6, 3, 15, 0, tzinfo=dt.timezone.utc)
GROUP = "/aws/lambda/integrates-api"
USER = "bench.user@kiwicorp.co"
QUERY = f"fields @timestamp, @message, user | filter user = '{USER}' | sort @timestamp desc"
MAX_RATIO = 1.3
MAX_PEAK_MB = 200
SERVER_START_TIMEOUT = 300  # seconds to generate the events and start listening


def serve(events: int, cap: int, hours: float, connection: Connection, stop: Event) -> None:
    """Run the stand-in with `events` matching events until `stop` is set (child process)."""
    from helpctl.sandbox.logs_api import LogsService
    from helpctl.sandbox.logs_seed import generate_events
    from helpctl.sandbox.server import RunningService

    service = LogsService(ANCHOR, seed_story=True)
    service.knobs.row_cap = cap
    started = time.perf_counter()
    service.add_events(generate_events(events, ANCHOR - dt.timedelta(hours=hours), ANCHOR, user=USER), log_group=GROUP)
    running = RunningService(service).start()
    connection.send((running.port, time.perf_counter() - started))
    stop.wait()
    running.stop()


def peak_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fetch(port: int, events: int, cap: int, hours: float) -> dict[str, float]:
    from helpctl.clients.logs import LogsClient
    from helpctl.config.settings import LogsSettings

    settings = LogsSettings(
        endpoint_url=f"http://127.0.0.1:{port}",
        sandbox_credentials=True,
        row_cap=cap,
        max_rows=events * 2,
        poll_interval=0.05,
        poll_interval_max=0.2,
        deadline=120.0,
    )
    client = LogsClient(settings)
    start = int((ANCHOR - dt.timedelta(hours=hours + 1)).timestamp())
    end = int(ANCHOR.timestamp())

    began = time.perf_counter()
    result = client.fetch_all(QUERY, [GROUP], start, end)
    rows = 0
    previous = "9999"
    out_of_order = 0
    for row in result:
        rows += 1
        stamp = row.get("@timestamp", "")
        out_of_order += stamp > previous
        previous = stamp
    elapsed = time.perf_counter() - began

    return {
        "rows": rows,
        "matched": result.matched or 0,
        "complete": result.complete,
        "queries": result.queries_run,
        "minimum": math.ceil(events / cap),
        "seconds": elapsed,
        "out_of_order": out_of_order,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=250_000, help="matching events to generate")
    parser.add_argument("--cap", type=int, default=10_000, help="rows one query returns at most")
    parser.add_argument("--hours", type=float, default=4.0, help="hours the events are spread over")
    options = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    stop = context.Event()
    server = context.Process(target=serve, args=(options.events, options.cap, options.hours, sender, stop), daemon=True)
    server.start()
    try:
        if not receiver.poll(SERVER_START_TIMEOUT):
            print(f"the stand-in did not start within {SERVER_START_TIMEOUT} s", file=sys.stderr)
            return 1
        port, seed_seconds = receiver.recv()
        baseline = peak_mb()
        numbers = fetch(port, options.events, options.cap, options.hours)
    finally:
        stop.set()
        server.join(timeout=30)
        if server.is_alive():
            server.terminate()
            server.join(timeout=5)

    ratio = numbers["queries"] / numbers["minimum"]
    peak = peak_mb()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"stand-in: {options.events:,} matching events over {options.hours:g} h, row cap {options.cap:,}, generated in {seed_seconds:.1f} s")
    print(f"rows retrieved: {numbers['rows']:,} (matched {numbers['matched']:,}, complete {numbers['complete']}, out of order {numbers['out_of_order']})")
    print(f"queries run: {numbers['queries']} vs minimum {numbers['minimum']} (ratio {ratio:.2f}, limit {MAX_RATIO})")
    print(f"wall time: {numbers['seconds']:.1f} s")
    print(f"client peak memory: {peak:.0f} MB (before the client started {baseline:.0f} MB, limit {MAX_PEAK_MB} MB)")

    ok = numbers["rows"] == options.events and numbers["complete"] and ratio <= MAX_RATIO and peak < MAX_PEAK_MB
    print("result: ok" if ok else "result: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
