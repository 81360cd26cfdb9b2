"""Bulk revocations through `helpctl access apply` against the platform stand-in in its own process.

What it measures, on 127.0.0.1 only:

1. Speed: `--operations` (1,000) revocations with `--latency` (50 ms) per mutation and a
   stand-in that responds with HTTP 429 beyond `--server-limit` (16) mutations in flight.
   Apply is not given that limit: it starts at the profile's `access.initial_concurrency`
   and adapts.
   The ideal is operations × latency / limit (3.125 s); the target is 1.25 times that. The
   mutation phase (as apply reports it) is compared with the target, and the whole command's
   wall time is printed beside it. Afterwards the stand-in's mutation log must show every
   operation applied exactly once and none failed.
2. The same mutations in a plain sequential loop (one PlatformClient call after another, no
   journal or audit), on other people of the same organization.
3. Memory: peak RSS of the apply process (VmHWM, polled every 50 ms) for plans of 2,000 and
   20,000 operations (no latency, no server limit), which should stay about the same because
   operations stream from the plan file and the journal and results stream to disk.

The figures depend on the machine's load: both processes need a CPU core each at full speed.

Usage: python bench/access.py [--operations 1000] [--sequential 1000] [--skip-speed] [--skip-memory]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

ORGANIZATION = "megacorp"
MEMBERS = 20000
GROUPS = 200
TARGET_RATIO = 1.25


class StandIn:
    """The platform stand-in alone, in a subprocess, on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        spec = f"{ORGANIZATION}:{MEMBERS}:{GROUPS}"
        command = [sys.executable, "-m", "helpctl.sandbox.platform_access", "--port", "0", "--organization", spec]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPOSITORY)
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            self.process.kill()
            raise SystemExit("the platform stand-in did not start")
        self.url = json.loads(line)["url"]
        self.base = self.url.removesuffix("/api")

    def knobs(self, **values: Any) -> None:
        import httpx

        httpx.post(self.base + "/_sandbox/knobs", json=values, timeout=10).raise_for_status()

    def mutations(self) -> list[dict[str, Any]]:
        import httpx

        return httpx.get(self.base + "/_sandbox/mutations", timeout=60).json()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def memberships() -> list[tuple[str, str]]:
    """Return (email, group) pairs of plain registered members, as the stand-in generates them."""
    from helpctl.sandbox import platform_access, platform_seed

    story = platform_seed.build_story(dt.datetime.now(dt.timezone.utc))
    platform_access.generate_organization(story, platform_access.OrganizationSpec(ORGANIZATION, MEMBERS, GROUPS))
    pairs = []
    for name in story.organizations[ORGANIZATION].groups:
        for email, member in story.groups[name].members.items():
            if member.role == "user" and member.invitation_state == "REGISTERED" and email.endswith(".example"):
                pairs.append((email, name))
    return pairs


def environment(home: Path, url: str) -> dict[str, str]:
    values = {name: value for name, value in os.environ.items() if not name.startswith(("HELPCTL_", "AWS_"))}
    values.update(
        {
            "HELPCTL_HOME": str(home),
            "HELPCTL_PROFILE": "sandbox",
            "HELPCTL_PLATFORM_URL": url,
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "NO_COLOR": "1",
        }
    )
    return values


def helpctl(arguments: list[str], env: dict[str, str]) -> tuple[dict[str, Any], float, int]:
    """Run helpctl with --json; return its JSON output, wall seconds and peak RSS in MiB."""
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "helpctl", "--json", *arguments], stdout=stdout, stderr=stderr, env=env, cwd=REPOSITORY
        )
        peak = 0
        while process.poll() is None:
            peak = max(peak, _peak_rss(process.pid))
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        stdout.seek(0)
        stderr.seek(0)
        output, errors = stdout.read(), stderr.read()
    if process.returncode != 0:
        raise SystemExit(f"helpctl {' '.join(arguments)} failed ({process.returncode}): {errors.decode()[-2000:]}")
    return json.loads(output or b"{}"), seconds, peak


def _peak_rss(pid: int) -> int:
    """Return the process's peak RSS so far (VmHWM, in MiB), read from /proc.

    Not `wait4`'s ru_maxrss: that also counts the moment between fork and exec, when the child
    still maps this (large) benchmark process.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return 0


def write_csv(path: Path, pairs: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "group"])
        writer.writerows(pairs)


def plan_and_approve(folder: Path, name: str, pairs: list[tuple[str, str]], env: dict[str, str]) -> Path:
    source = folder / f"{name}.csv"
    plan = folder / f"{name}.json"
    write_csv(source, pairs)
    helpctl(["access", "plan", "--csv", str(source), "--action", "revoke", "--org", ORGANIZATION, "-o", str(plan)], env)
    helpctl(["access", "approve", str(plan), "--by", "Bench Approver", "--second-approver", "Bench Reviewer", "--ref", "bench"], env)
    return plan


def check_log(stand_in: StandIn, pairs: list[tuple[str, str]]) -> tuple[int, int, int]:
    """Return (operations applied exactly once, applied more than once, 429 responses) for `pairs`."""
    wanted = {(group, email) for email, group in pairs}
    counts: dict[tuple[str, str], int] = {}
    rate_limited = 0
    for record in stand_in.mutations():
        if record["outcome"] == "rate_limited":
            rate_limited += 1
        if record["outcome"] != "applied":
            continue
        key = (record["arguments"]["groupName"], record["arguments"]["userEmail"])
        if key in wanted:
            counts[key] = counts.get(key, 0) + 1
    once = sum(1 for key in wanted if counts.get(key) == 1)
    repeated = sum(1 for value in counts.values() if value > 1)
    return once, repeated, rate_limited


def speed(stand_in: StandIn, pairs: list[tuple[str, str]], folder: Path, latency: float, limit: int) -> None:
    env = environment(folder / "home-speed", stand_in.url)
    plan = plan_and_approve(folder, "speed", pairs, env)
    stand_in.knobs(mutation_latency=latency, mutation_concurrency=limit, mutation_retry_after=1)
    report, wall, _ = helpctl(["access", "apply", str(plan), "--yes"], env)
    stand_in.knobs(mutation_latency=0, mutation_concurrency=0)

    ideal = len(pairs) * latency / limit
    mutations = report["seconds"]["mutations"]
    once, repeated, rate_limited = check_log(stand_in, pairs)
    verdict = "within" if mutations <= ideal * TARGET_RATIO and report["failed"] == 0 and repeated == 0 and once == len(pairs) else "MISSED"
    print(f"apply, {len(pairs)} revocations, {latency * 1000:g} ms each, stand-in limit {limit} (not told to apply):")
    print(f"  mutation phase  {mutations:7.3f} s   ideal {ideal:.3f} s, target <= {ideal * TARGET_RATIO:.3f} s: {verdict}")
    print(f"  whole command   {wall:7.3f} s   (start-up, checks {report['seconds']['checks']:.2f} s, verification {report['seconds']['verify']:.2f} s)")
    print(f"  applied {report['applied']}, failed {report['failed']}; stand-in log: {once} applied exactly once, {repeated} repeated, {rate_limited} rejected with 429")
    concurrency = report["concurrency"]
    print(f"  concurrency: started {concurrency['initial']}, peak {concurrency['peak']}, learned ceiling {concurrency['ceiling']}, final {concurrency['final']}")
    print(f"  throughput {len(pairs) / mutations:.0f} operations/s")


def sequential(stand_in: StandIn, pairs: list[tuple[str, str]], latency: float, limit: int) -> None:
    from helpctl.clients.platform import PlatformClient
    from helpctl.clients.platform_access import AccessMutations
    from helpctl.config.settings import PlatformSettings

    stand_in.knobs(mutation_latency=latency, mutation_concurrency=limit)
    client = PlatformClient(PlatformSettings(url=stand_in.url), "sandbox-platform-token")
    mutations = AccessMutations(client)
    started = time.perf_counter()
    for email, group in pairs:
        mutations.remove_group(group, email)
    seconds = time.perf_counter() - started
    client.close()
    stand_in.knobs(mutation_latency=0, mutation_concurrency=0)
    print(f"plain sequential loop, same mutations on {len(pairs)} other people: {seconds:.3f} s ({len(pairs) / seconds:.0f} operations/s)")


def memory(pairs: list[tuple[str, str]], folder: Path, sizes: list[int]) -> None:
    print("peak RSS of 'helpctl access apply' (no latency, no stand-in limit):")
    for size in sizes:
        stand_in = StandIn()
        try:
            env = environment(folder / f"home-memory-{size}", stand_in.url)
            planned = time.perf_counter()
            plan = plan_and_approve(folder, f"memory-{size}", pairs[:size], env)
            planning = time.perf_counter() - planned
            report, wall, peak = helpctl(["access", "apply", str(plan), "--yes"], env)
            print(
                f"  {size:6d} operations: peak RSS {peak:4d} MiB; apply {wall:5.1f} s "
                f"(mutations {report['seconds']['mutations']:.1f} s), applied {report['applied']}, failed {report['failed']}; "
                f"plan and approve {planning:.1f} s"
            )
        finally:
            stand_in.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--operations", type=int, default=1000)
    parser.add_argument("--sequential", type=int, default=1000, help="Operations in the sequential loop (0 skips it).")
    parser.add_argument("--latency", type=float, default=0.05, help="Seconds per mutation.")
    parser.add_argument("--server-limit", type=int, default=16, help="Mutations in flight before the stand-in responds with 429.")
    parser.add_argument("--memory-sizes", default="2000,20000")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    arguments = parser.parse_args()

    pairs = memberships()
    needed = arguments.operations + arguments.sequential
    if needed > len(pairs):
        raise SystemExit(f"the generated organization has {len(pairs)} plain memberships, fewer than {needed}")
    print(f"machine: {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; stand-in {ORGANIZATION} with {MEMBERS} members in {GROUPS} groups")

    with tempfile.TemporaryDirectory(prefix="helpctl-bench-access-") as name:
        folder = Path(name)
        if not arguments.skip_speed:
            stand_in = StandIn()
            try:
                speed(stand_in, pairs[: arguments.operations], folder, arguments.latency, arguments.server_limit)
                if arguments.sequential:
                    sequential(stand_in, pairs[arguments.operations : needed], arguments.latency, arguments.server_limit)
            finally:
                stand_in.stop()
        if not arguments.skip_memory:
            sizes = [int(size) for size in arguments.memory_sizes.split(",")]
            memory(pairs, folder, sizes)


if __name__ == "__main__":
    main()
