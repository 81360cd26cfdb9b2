"""Triage time against its slowest probe and against running the probes one after another.

The sandbox runs in its own process with service latencies set through its knobs over HTTP:
about 0.3 s per platform request, 2 s of Running for each Logs Insights query, 0.4 s per
Mandrill call, 0.5 s per BugSnag call and 0.7 s per Mixpanel call. The script opens the bug
scenario's case, times each probe alone, then triage with every probe at once, and prints
triage / slowest probe (target: at most 1.15) beside the sequential sum.

Usage: python bench/triage.py [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

PROBES = ("platform", "logs", "mail", "errors", "usage")
TARGET = 1.15
KNOBS = {
    "platform": {"latency": 0.3},
    "mandrill": {"latency": 0.4},
    "bugsnag": {"latency": 0.5},
    "mixpanel": {"latency": 0.7},
}
LOGS_RUNNING_SECONDS = 2.0


def start_sandbox(env: dict[str, str]) -> tuple[subprocess.Popen, dict[str, str]]:
    """Start `helpctl sandbox serve --free-ports` and read the URLs it prints."""
    process = subprocess.Popen(
        [sys.executable, "-m", "helpctl", "--json", "sandbox", "serve", "--free-ports"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
    )
    lines = []
    while True:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the sandbox exited before printing its endpoints")
        lines.append(line)
        try:
            return process, json.loads("".join(lines))["environment"]
        except json.JSONDecodeError:
            continue


def set_knobs(urls: dict[str, str]) -> None:
    bases = {
        "platform": urls["HELPCTL_PLATFORM_URL"].removesuffix("/api"),
        "mandrill": urls["HELPCTL_MANDRILL_URL"].removesuffix("/api/1.0"),
        "bugsnag": urls["HELPCTL_BUGSNAG_URL"],
        "mixpanel": urls["HELPCTL_MIXPANEL_URL"],
        "logs": urls["HELPCTL_LOGS_ENDPOINT_URL"],
    }
    knobs = dict(KNOBS, logs={"running_seconds": LOGS_RUNNING_SECONDS, "scheduled_seconds": 0.0})
    for service, values in knobs.items():
        request = urllib.request.Request(
            bases[service] + "/_sandbox/knobs", data=json.dumps(values).encode(), headers={"Content-Type": "application/json"}
        )
        urllib.request.urlopen(request, timeout=5).read()


def open_case(env: dict[str, str]) -> str:
    from helpctl.commands.demo import SCENARIOS, demo_message

    raw = demo_message(SCENARIOS["bug"], dt.datetime.now(dt.timezone.utc))
    with tempfile.NamedTemporaryFile(suffix=".eml") as handle:
        handle.write(raw)
        handle.flush()
        completed = subprocess.run(
            [sys.executable, "-m", "helpctl", "case", "new", "--from-email", handle.name],
            capture_output=True, text=True, env=env, check=True,
        )
    return completed.stdout.strip()


def time_triage(env: dict[str, str], case_id: str, probes: tuple[str, ...]) -> float:
    """Wall time of `helpctl triage` with these probes, process start and case writes included."""
    arguments = [sys.executable, "-m", "helpctl", "--json", "triage", case_id]
    for name in probes:
        arguments += ["--only", name]
    started = time.perf_counter()
    completed = subprocess.run(arguments, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if completed.returncode not in (0, 3):
        raise RuntimeError(completed.stderr)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, HELPCTL_HOME=home, NO_COLOR="1")
        sandbox, urls = start_sandbox(env)
        try:
            env.update(urls)
            set_knobs(urls)
            case_id = open_case(env)
            alone = {name: statistics.median(time_triage(env, case_id, (name,)) for _ in range(options.runs)) for name in PROBES}
            together = statistics.median(time_triage(env, case_id, PROBES) for _ in range(options.runs))
        finally:
            sandbox.send_signal(signal.SIGINT)
            sandbox.wait(10)

    slowest_name = max(alone, key=alone.get)
    slowest = alone[slowest_name]
    sequential = sum(alone.values())
    for name, seconds in alone.items():
        print(f"{name:<10} alone {seconds:6.2f} s")
    ratio = together / slowest
    verdict = "ok" if ratio <= TARGET else "MISSED"
    print(f"triage     {together:6.2f} s  = {ratio:.2f} x the slowest probe ({slowest_name}, target {TARGET}: {verdict})")
    print(f"sequential {sequential:6.2f} s  = {sequential / together:.1f} x the triage time")


if __name__ == "__main__":
    main()
