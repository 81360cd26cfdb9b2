"""Triage over every stand-in: concurrency, per-probe limits, and one label per scenario."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time

import pytest

from helpctl.cli import main
from helpctl.commands.demo import SCENARIOS, demo_message
from helpctl.sandbox import Sandbox


@pytest.fixture()
def sandbox(monkeypatch):
    with Sandbox() as running:
        for name, value in running.environment().items():
            monkeypatch.setenv(name, value)
        yield running


def open_scenario(capsys, name: str) -> str:
    """Open the scenario's demo e-mail as a case, dated to line up with the sandbox's story."""
    import tempfile

    raw = demo_message(SCENARIOS[name], dt.datetime.now(dt.timezone.utc))
    with tempfile.NamedTemporaryFile(suffix=".eml") as handle:
        handle.write(raw)
        handle.flush()
        assert main(["case", "new", "--from-email", handle.name]) == 0
    return capsys.readouterr().out.strip()


def triage_json(capsys, *arguments: str) -> tuple[int, dict]:
    code = main(["--json", "triage", *arguments])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("scenario", "label"), [("bug", "bug"), ("incident", "incident"), ("feature", "feature"), ("answered", "answered")])
def test_scenario_classified(capsys, sandbox, scenario, label):
    case_id = open_scenario(capsys, scenario)

    code, result = triage_json(capsys, case_id)
    assert code in (0, 3)
    assert set(result["probes"]) == {"platform", "logs", "mail", "errors", "usage", "sessions"}
    assert all(probe["outcome"] not in ("failed", "timed_out") for probe in result["probes"].values())

    assert main(["--json", "classify", case_id]) == 0
    classification = json.loads(capsys.readouterr().out)
    assert classification["label"] == label


def test_probe_failure_does_not_stop_others(capsys, sandbox, monkeypatch):
    case_id = open_scenario(capsys, "bug")
    sandbox.service("platform").knobs.error_rate = 1.0
    monkeypatch.setenv("HELPCTL_PLATFORM_RETRIES", "0")

    code, result = triage_json(capsys, case_id, "--only", "platform", "--only", "mail")

    assert code == 3
    assert result["probes"]["platform"]["outcome"] == "failed"
    assert result["probes"]["mail"]["outcome"] == "ok"


def test_slow_probe_times_out_alone(capsys, sandbox):
    case_id = open_scenario(capsys, "bug")
    sandbox.service("mandrill").knobs.latency = 3.0

    started = time.monotonic()
    code, result = triage_json(capsys, case_id, "--skip", "sessions", "--timeout", "1")
    elapsed = time.monotonic() - started

    assert code == 3
    assert result["probes"]["mail"]["outcome"] == "timed_out"
    assert result["probes"]["platform"]["outcome"] == "ok"
    assert elapsed < 2.5


def test_rerun_replaces_finding_and_keeps_history(capsys, sandbox):
    case_id = open_scenario(capsys, "bug")
    sandbox.service("mandrill").knobs.error_rate = 1.0
    triage_json(capsys, case_id, "--only", "mail")
    sandbox.service("mandrill").knobs.error_rate = 0.0
    code, _ = triage_json(capsys, case_id, "--only", "mail")

    main(["--json", "case", "show", case_id])
    record = json.loads(capsys.readouterr().out)
    mail = [finding for finding in record["findings"] if finding["source"] == "mail"]
    probed = [event for event in record["timeline"] if event["event"] == "probed"]

    assert code == 0
    assert len(mail) == 2
    assert all(finding["outcome"] == "ok" for finding in mail)
    assert probed[-1]["detail"]["replaced"][0]["outcome"] == "failed"


def test_unknown_probe_rejected(capsys, sandbox):
    case_id = open_scenario(capsys, "bug")
    assert main(["triage", case_id, "--only", "telepathy"]) == 2
    assert "unknown probe 'telepathy'" in capsys.readouterr().err


def test_probe_command_for_one_source(capsys, sandbox):
    case_id = open_scenario(capsys, "answered")
    assert main(["--json", "probe", "mail", case_id]) == 0
    result = json.loads(capsys.readouterr().out)
    carlos = [item for item in result["probes"]["mail"]["findings"] if "carlos" in item["subject"]]
    assert carlos[0]["signals"]["mail.hard_bounce"] is True


def test_unconfigured_source_is_skipped(capsys, sandbox, monkeypatch, isolated_environment):
    profiles = isolated_environment / "config" / "profiles"
    profiles.mkdir(parents=True)
    (profiles / "nobugsnag.yaml").write_text("extends: sandbox\nbugsnag:\n  project_id: ''\n")
    monkeypatch.setenv("HELPCTL_PROFILE", "nobugsnag")
    case_id = open_scenario(capsys, "bug")

    code, result = triage_json(capsys, case_id, "--only", "errors")
    assert code == 0
    assert result["probes"]["errors"]["outcome"] == "skipped"


@pytest.mark.slow
def test_demo_runs_as_a_subprocess(tmp_path):
    env = {"HELPCTL_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"}
    completed = subprocess.run([sys.executable, "-m", "helpctl", "demo"], capture_output=True, text=True, env=env, timeout=120)

    assert completed.returncode == 0, completed.stderr
    assert "/fluidattacks/universe/-/issues/" in completed.stdout
    assert "Classification: bug" in completed.stdout
    assert "issue-closed" in completed.stderr
    assert "resolved (es) to the requester: sent" in completed.stderr
    assert "case folder:" in completed.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("scenario", "routed"), [("incident", "imanager"), ("feature", "jhead"), ("answered", None)])
def test_demo_scenarios(tmp_path, scenario, routed):
    env = {"HELPCTL_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"}
    command = [sys.executable, "-m", "helpctl", "demo", "--scenario", scenario]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)

    assert completed.returncode == 0, completed.stderr
    assert f"Classification: {scenario}" in completed.stdout
    if routed:
        assert f"assigned to {routed}" in completed.stderr
    else:
        assert "no issue needed" in completed.stderr
        assert "status: closed" in completed.stdout
