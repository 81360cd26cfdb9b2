"""Start-up time of helpctl against compiled CLIs.

Times `helpctl --version` and `helpctl case list` over 10,000 generated cases (output to
/dev/null, as when piped) beside `gh --version` (Debian package `gh`) and `aws --version`
where installed, else beside `python3 -c pass`, and prints the ratios against the targets:
`--version` within 1.5 times `gh --version`, `case list` within 2.5 times.

Usage: python bench/startup.py [--cases 10000] [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

TARGETS = {"--version": 1.5, "case list": 2.5}


def generate_cases(home: Path, count: int) -> None:
    """Write `count` realistic case files quickly (no fsync: this is a fixture)."""
    from helpctl.cases.model import Case, Person, Subjects
    from helpctl.cases.store import dump_case, new_case_id

    root = home / "data" / "cases"
    root.mkdir(parents=True, mode=0o700)
    statuses = ["open", "waiting", "filed", "closed"]
    for number in range(count):
        case = Case(
            id=f"{new_case_id()[:7]}{number:06d}",
            profile="sandbox",
            subject=f"Case {number}: cannot see vulnerabilities in group kiwiapp{number % 50}",
            requester=Person(email=f"user{number % 700}@client{number % 40}.example.com", name=f"User {number}"),
            status=statuses[number % 4],
            organization=f"client{number % 40}",
            subjects=Subjects(users=[f"dev{number}@client.example.com"], groups=[f"kiwiapp{number % 50}"]),
            body="The dashboard shows open vulnerabilities but the list is empty. " * 3,
            created_at=f"2026-{1 + number % 12:02d}-{1 + number % 28:02d}T10:00:00Z",
        )
        case.record("support@example.com", "opened")
        folder = root / case.id
        folder.mkdir(mode=0o700)
        (folder / "case.yaml").write_bytes(dump_case(case))


def time_command(command: list[str], runs: int, env: dict[str, str]) -> float:
    """Median wall time in milliseconds, after two warm-up runs."""
    samples = []
    for index in range(runs + 2):
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
        if index >= 2:
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=30)
    options = parser.parse_args()

    helpctl = shutil.which("helpctl") or str(Path(sys.executable).parent / "helpctl")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPOSITORY / "helpctl")], check=True, stdout=subprocess.DEVNULL)

    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        env = dict(os.environ, HELPCTL_HOME=str(home), NO_COLOR="1")
        env.pop("PYTHONDONTWRITEBYTECODE", None)

        started = time.perf_counter()
        generate_cases(home, options.cases)
        subprocess.run([helpctl, "case", "list"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
        print(f"generated and indexed {options.cases} cases in {time.perf_counter() - started:.1f} s")

        baselines = {}
        for name, command in (("gh --version", ["gh", "--version"]), ("aws --version", ["aws", "--version"])):
            if shutil.which(command[0]):
                baselines[name] = time_command(command, options.runs, env)
        if not baselines:
            baselines["python3 -c pass"] = time_command(["python3", "-c", "pass"], options.runs, env)

        measured = {
            "--version": time_command([helpctl, "--version"], options.runs, env),
            "case list": time_command([helpctl, "case", "list"], options.runs, env),
        }

    reference_name, reference = next(iter(baselines.items()))
    for name, value in baselines.items():
        print(f"{name:<22} {value:7.1f} ms")
    for name, value in measured.items():
        ratio = value / reference
        verdict = "ok" if ratio <= TARGETS[name] else "MISSED"
        print(f"helpctl {name:<14} {value:7.1f} ms  {ratio:4.2f}x {reference_name} (target {TARGETS[name]}x: {verdict})")


if __name__ == "__main__":
    main()
