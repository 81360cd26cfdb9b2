"""Killing `helpctl access apply` (a subprocess) at seeded random points, then `--resume`.

The platform stand-in runs in this process on 127.0.0.1. Its mutation hook sends SIGKILL to
the apply process that this test started, at a chosen mutation and phase. The phase is the
mutation's arrival (dropped unapplied, or applied after the client died) or the moment right
after it was applied (the response is lost). Each round resumes the plan, and the last one
finishes it. The final state must equal the plan, and the stand-in must have applied every
operation exactly once and seen no operation again after it was applied.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_access_helpers import Kit, make_kit, people_in_groups, revoke, start_service

from helpctl.audit import AuditLog

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parent.parent
OPERATIONS = 48
KILLS = 10
SEED = 20250310
PHASES = ("received-drop", "received", "applied")
ROUND_TIMEOUT = 60.0


class Killer:
    """The stand-in's mutation hook: SIGKILL the current apply process at the chosen arrival."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals = 0
        self.pid: int | None = None
        self.at: int | None = None
        self.phase: str | None = None
        self.fired = threading.Event()

    def arm(self, pid: int, at: int | None, phase: str | None) -> None:
        with self.lock:
            self.pid, self.at, self.phase = pid, at, phase
            self.fired.clear()

    def __call__(self, phase: str, record: dict[str, Any]) -> bool:
        with self.lock:
            if phase == "received":
                self.arrivals += 1
            if self.at is None or self.pid is None or self.arrivals < self.at:
                return False
            wanted = "applied" if self.phase == "applied" else "received"
            if phase != wanted:
                return False
            os.kill(self.pid, signal.SIGKILL)
            self.at = None
            self.fired.set()
            return self.phase == "received-drop"


@pytest.fixture
def kit(tmp_path: Path) -> Any:
    running = start_service()
    try:
        yield make_kit(running, tmp_path)
    finally:
        running.stop()


def environment(kit: Kit) -> dict[str, str]:
    values = dict(os.environ)
    values.update(
        {
            "HELPCTL_PLATFORM_URL": kit.client.url,
            "HELPCTL_PROFILE": "sandbox",
            "HELPCTL_ACCESS_SETTLE_DELAY": "0.05",
            "HELPCTL_ACCESS_MAX_CONCURRENCY": "8",
            "PYTHONPATH": str(REPOSITORY),
        }
    )
    return values


def start_apply(path: Path, env: dict[str, str], resume: bool) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "helpctl", "--json", "access", "apply", str(path), "--yes"]
    if resume:
        command.append("--resume")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPOSITORY)


def planned(kit: Kit) -> tuple[Path, list[tuple[str, str]]]:
    pairs = people_in_groups(kit.service, OPERATIONS)
    kit.settings.second_approver_above = 25
    path = kit.write([revoke(email, group, line=index + 2) for index, (email, group) in enumerate(pairs)])
    kit.approve(path, second_approver="Ana Gómez")
    return path, pairs


def check_exactly_once(kit: Kit, pairs: list[tuple[str, str]]) -> None:
    by_key: dict[tuple[str, str], list[str]] = {}
    for record in kit.service.access.records():
        if record.outcome == "rate_limited":
            continue
        key = (record.arguments.get("groupName") or record.arguments.get("group"), record.arguments.get("userEmail") or record.arguments.get("email"))
        by_key.setdefault(key, []).append(record.outcome)

    for email, group in pairs:
        outcomes = by_key.get((group, email), [])
        assert outcomes.count("applied") == 1, (email, group, outcomes)
        assert outcomes[-1] == "applied", (email, group, outcomes)
        assert set(outcomes[:-1]) <= {"dropped"}, (email, group, outcomes)
        assert email not in kit.service.story.groups[group].members


def test_sigkill_resume_exactly_once(kit: Kit) -> None:
    path, pairs = planned(kit)
    kit.service.apply_knobs({"mutation_latency": 0.02, "mutation_concurrency": 5, "mutation_retry_after": 0.1})
    killer = Killer()
    kit.service.access.hook = killer
    chance = random.Random(SEED)
    points = sorted(chance.sample(range(2, OPERATIONS - 4), KILLS))
    phases = [chance.choice(PHASES) for _ in points]
    env = environment(kit)

    kills = 0
    for round_number, (point, phase) in enumerate(zip(points, phases)):
        process = start_apply(path, env, resume=round_number > 0)
        killer.arm(process.pid, point, phase)
        process.wait(timeout=ROUND_TIMEOUT)
        assert process.returncode == -signal.SIGKILL, (process.stdout.read() + process.stderr.read()).decode()
        kills += 1

    process = start_apply(path, env, resume=True)
    killer.arm(process.pid, None, None)
    stdout, stderr = process.communicate(timeout=ROUND_TIMEOUT)

    assert kills == KILLS
    assert process.returncode == 0, stderr.decode()
    report = json.loads(stdout)
    assert report["complete"] is True
    assert report["done_before"] + report["settled"] + report["applied"] == OPERATIONS
    check_exactly_once(kit, pairs)
    entries = [entry for entry in AuditLog().entries() if entry["action"] == "access.revoke"]
    assert sorted(entry["request_id"] for entry in entries) == sorted({entry["request_id"] for entry in entries})
    assert len(entries) == OPERATIONS
    assert AuditLog().verify().ok
    rows = list(csv.DictReader(open(report["results_path"], encoding="utf-8")))
    assert len(rows) == OPERATIONS
    assert {row["outcome"] for row in rows} == {"applied"}


def test_sigint_exit_130_then_resume(kit: Kit) -> None:
    path, pairs = planned(kit)
    kit.service.apply_knobs({"mutation_latency": 0.05, "mutation_concurrency": 3})
    interrupted = threading.Event()
    holder: dict[str, int] = {}

    def interrupt(phase: str, record: dict[str, Any]) -> bool:
        if phase == "applied" and len(kit.applied()) == 10 and not interrupted.is_set():
            interrupted.set()
            os.kill(holder["pid"], signal.SIGINT)
        return False

    kit.service.access.hook = interrupt
    env = environment(kit)
    process = start_apply(path, env, resume=False)
    holder["pid"] = process.pid
    _, stderr = process.communicate(timeout=ROUND_TIMEOUT)

    assert process.returncode == 130, stderr.decode()
    assert b"interrupted" in stderr
    done = len(kit.applied())
    assert 10 <= done < OPERATIONS

    kit.service.access.hook = None
    started = time.monotonic()
    process = start_apply(path, env, resume=True)
    stdout, stderr = process.communicate(timeout=ROUND_TIMEOUT)

    assert process.returncode == 0, stderr.decode()
    report = json.loads(stdout)
    assert report["done_before"] == done
    assert report["applied"] == OPERATIONS - done
    assert time.monotonic() - started < ROUND_TIMEOUT
    check_exactly_once(kit, pairs)
