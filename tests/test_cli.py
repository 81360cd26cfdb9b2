"""The command line: commands, exit codes, the error boundary and terminal behaviour."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from helpctl.app import build_app
from helpctl.cli import main

HEAVY_MODULES = ("boto3", "botocore", "gql", "gitlab", "keyring", "httpx")


def run(*arguments: str, stdin: str | None = None) -> CliRunner:
    result = CliRunner().invoke(build_app(), list(arguments), input=stdin, catch_exceptions=False)
    return result


def run_main(capsys, *arguments: str) -> tuple[int, str, str]:
    code = main(list(arguments))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def new_case(capsys, *extra: str) -> str:
    code, out, err = run_main(
        capsys, "case", "new", "-r", "ana.gomez@kiwicorp.co", "-s", "Vulnerabilities tab is empty", "-g", "kiwiapp", *extra
    )
    assert code == 0, err
    return out.strip()


def test_version_fast_path(capsys):
    code, out, _ = run_main(capsys, "--version")
    assert code == 0
    assert out.startswith("helpctl ")


@pytest.mark.parametrize("arguments", [["--version"], ["--help"], ["case", "list"]])
def test_startup_imports_no_heavy_library(arguments):
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "helpctl", *arguments],
        capture_output=True, text=True, env=subprocess_env(), timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    imported = {line.split("|")[-1].strip() for line in completed.stderr.splitlines() if line.startswith("import time:")}
    heavy = sorted(name for name in imported if name.split(".")[0] in HEAVY_MODULES)
    assert heavy == []


def test_case_lifecycle(capsys):
    case_id = new_case(capsys, "-u", "Carlos.Ruiz@kiwicorp.co", "--org", "KiwiCorp")

    code, out, _ = run_main(capsys, "--json", "case", "show", case_id[:9])
    record = json.loads(out)
    assert code == 0
    assert record["subjects"] == {"users": ["carlos.ruiz@kiwicorp.co"], "groups": ["kiwiapp"], "organizations": ["kiwicorp"]}
    assert record["profile"] == "sandbox"
    assert record["timeline"][0]["actor"] == "support.sandbox@fluidattacks.com"

    assert run_main(capsys, "case", "edit", case_id, "--add-group", "kiwipay", "--lang", "es", "--reported", "2026-12-03T09:12:00-05:00")[0] == 0
    assert run_main(capsys, "case", "note", case_id, "Called the requester")[0] == 0
    assert run_main(capsys, "case", "close", case_id, "--resolution", "explained")[0] == 0
    assert run_main(capsys, "case", "close", case_id, "--resolution", "again")[0] == 5
    assert run_main(capsys, "case", "reopen", case_id, "--reason", "came back")[0] == 0

    record = json.loads(run_main(capsys, "--json", "case", "show", case_id)[1])
    events = [event["event"] for event in record["timeline"]]
    assert events == ["opened", "edited", "note", "closed", "reopened"]
    assert record["status"] == "open"
    assert record["language"] == "es"
    assert record["reported_at"] == "2026-12-03T14:12:00Z"
    assert record["subjects"]["groups"] == ["kiwiapp", "kiwipay"]


def test_case_show_readable(capsys):
    case_id = new_case(capsys)
    code, out, _ = run_main(capsys, "case", "show", case_id)
    assert code == 0
    assert "Vulnerabilities tab is empty" in out
    assert "Timeline:" in out


def test_case_list_filters_and_json(capsys):
    first = new_case(capsys)
    run_main(capsys, "case", "new", "-r", "pedro.rios@kiwicorp.co", "-s", "Export members to CSV", "--kind", "feature-request")

    code, out, _ = run_main(capsys, "case", "list", "--text", "vulnerabilities")
    assert code == 0
    assert first in out
    assert "Export members" not in out

    rows = json.loads(run_main(capsys, "--json", "case", "list", "-r", "pedro")[1])
    assert [row["subject"] for row in rows] == ["Export members to CSV"]


def test_typer_runner_lists_cases(capsys):
    new_case(capsys)
    result = run("case", "list")
    assert result.exit_code == 0
    assert "Vulnerabilities tab is empty" in result.output


@pytest.mark.parametrize(
    ("arguments", "code", "fragment"),
    [
        (["case", "new", "-s", "no requester"], 2, "--requester is required"),
        (["case", "new", "-r", "not-an-email", "-s", "x"], 2, "is not an e-mail address"),
        (["case", "new", "-r", "a@b.co", "-s", "x", "--kind", "rant"], 2, "is not a kind"),
        (["case", "new", "-r", "a@b.co", "-s", "x", "--reported", "yesterday"], 2, "is not a date and time"),
        (["case", "list", "--status", "lost"], 2, "is not a status"),
        (["case", "show", "991231-zzzzzz"], 2, "no case matches"),
        (["case", "frobnicate"], 2, "No such command"),
        (["--no-such-option"], 2, "No such option"),
        (["classify", "991231-zzzzzz", "--as", "urgent", "--reason", "x"], 2, "is not a label"),
        (["--profile", "missing", "doctor"], 2, "profile 'missing' not found"),
    ],
)
def test_bad_input_exit_codes(capsys, arguments, code, fragment):
    result, out, err = run_main(capsys, *arguments)
    assert result == code
    assert fragment in err
    assert err.startswith("helpctl: error: ")
    assert len(err.strip().splitlines()) == 1


def test_json_error_object(capsys):
    code, out, err = run_main(capsys, "--json", "case", "show", "991231-zzzzzz")
    payload = json.loads(out)
    assert code == 2
    assert payload["error"] == "not_found"
    assert payload["exit_code"] == 2
    assert "no case matches" in payload["message"]


def test_unclassified_case_cannot_be_filed(capsys):
    case_id = new_case(capsys)
    code, _, err = run_main(capsys, "file", case_id)
    assert code == 5
    assert f"helpctl classify {case_id}" in err


def test_answered_case_cannot_be_filed(capsys):
    case_id = new_case(capsys)
    assert run_main(capsys, "classify", case_id, "--as", "answered", "--reason", "invitation pending")[0] == 0
    code, _, err = run_main(capsys, "file", case_id)
    assert code == 5
    assert "case close" in err


def test_override_needs_reason(capsys):
    case_id = new_case(capsys)
    code, _, err = run_main(capsys, "classify", case_id, "--as", "bug")
    assert code == 2
    assert "--as needs --reason" in err


def test_classify_records_override(capsys):
    case_id = new_case(capsys)
    code, out, _ = run_main(capsys, "--json", "classify", case_id, "--as", "feature", "--reason", "asked for CSV export")
    result = json.loads(out)
    assert code == 0
    assert result["label"] == "feature"
    assert result["override"]["reason"] == "asked for CSV export"
    record = json.loads(run_main(capsys, "--json", "case", "show", case_id)[1])
    assert record["classification"]["label"] == "feature"
    assert record["timeline"][-1]["event"] == "classified"


def test_case_bound_to_its_profile(capsys):
    case_id = new_case(capsys)
    code, _, err = run_main(capsys, "--profile", "fluidattacks", "classify", case_id)
    assert code == 5
    assert "opened under profile 'sandbox'" in err
    assert run_main(capsys, "--profile", "fluidattacks", "classify", case_id, "--cross-profile")[0] == 0


def test_broken_pipe_is_quiet(tmp_path):
    for number in range(40):
        subprocess.run(
            [sys.executable, "-m", "helpctl", "case", "new", "-r", f"user{number}@kiwicorp.co", "-s", f"case {number}"],
            check=True, capture_output=True, env=subprocess_env(), timeout=60,
        )
    command = f"{sys.executable} -m helpctl case list | head -n 1"
    completed = subprocess.run(
        command, shell=True, capture_output=True, text=True, env=subprocess_env(PYTHONUNBUFFERED="1"), timeout=60
    )
    assert completed.stdout.startswith("ID")
    assert "BrokenPipeError" not in completed.stderr
    assert "Traceback" not in completed.stderr


def test_piped_output_has_no_colour_and_survives_cp1252(capsys):
    subject = "Zoë can't log in 😀"
    subprocess.run(
        [sys.executable, "-m", "helpctl", "case", "new", "-r", "zoe@kiwicorp.co", "-s", subject],
        check=True, capture_output=True, env=subprocess_env(), timeout=60,
    )
    env = subprocess_env(PYTHONIOENCODING="cp1252")
    env.pop("NO_COLOR", None)
    completed = subprocess.run([sys.executable, "-m", "helpctl", "case", "list"], capture_output=True, env=env, timeout=60)
    assert completed.returncode == 0
    assert b"\x1b[" not in completed.stdout
    assert "Zoë".encode("cp1252") in completed.stdout


def test_json_output_is_plain_json(capsys):
    new_case(capsys)
    env = subprocess_env()
    env.pop("NO_COLOR", None)
    completed = subprocess.run([sys.executable, "-m", "helpctl", "--json", "case", "list"], capture_output=True, text=True, env=env, timeout=60)
    assert json.loads(completed.stdout)[0]["subject"] == "Vulnerabilities tab is empty"


def test_secret_never_printed_even_with_traceback(tmp_path):
    secret = "glpat-SuperSecretValue1234567890"
    env = subprocess_env(HELPCTL_GITLAB_TOKEN=secret, HELPCTL_GITLAB_URL="http://127.0.0.1:9/")
    completed = subprocess.run(
        [sys.executable, "-m", "helpctl", "--traceback", "-vv", "auth", "login", "gitlab", "--with-token"],
        input=secret + "\n", capture_output=True, text=True, env=env, timeout=120,
    )
    assert completed.returncode != 0
    assert secret not in completed.stdout
    assert secret not in completed.stderr


def test_no_prompt_without_terminal(capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, err = run_main(capsys, "auth", "login", "platform", "--skip-check")
    assert code == 2
    assert "the token is empty" in err


def test_profile_list_and_show(capsys):
    code, out, _ = run_main(capsys, "profile", "list")
    assert code == 0
    assert "fluidattacks" in out
    code, out, _ = run_main(capsys, "--json", "profile", "show", "sandbox")
    data = json.loads(out)
    assert data["platform"]["fixed_token"] == "(the sandbox's public token)"
    assert "sandbox-platform-token" not in out


def test_auth_status_never_shows_values(capsys, monkeypatch):
    monkeypatch.setenv("HELPCTL_GITLAB_TOKEN", "glpat-value-that-must-stay-hidden")
    code, out, _ = run_main(capsys, "--json", "auth", "status")
    data = json.loads(out)
    sources = {row["service"]: row["source"] for row in data["services"]}
    assert code == 0
    assert sources["gitlab"] == "environment (HELPCTL_GITLAB_TOKEN)"
    assert "glpat-value" not in out


def test_completion_script_available():
    completed = subprocess.run(
        [sys.executable, "-m", "helpctl", "--show-completion", "bash"],
        capture_output=True, text=True, env=subprocess_env(_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1"), timeout=60,
    )
    assert completed.returncode == 0
    assert "complete" in completed.stdout


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["case", "list", "--json"], ["--json", "case", "list"]),
        (["case", "show", "x", "-p", "fluidattacks", "-v"], ["-p", "fluidattacks", "-v", "case", "show", "x"]),
        (["--json", "case", "list"], ["--json", "case", "list"]),
        (["case", "list", "--profile=sandbox"], ["--profile=sandbox", "case", "list"]),
        (["case", "note", "x", "--", "--json"], ["case", "note", "x", "--", "--json"]),
    ],
)
def test_global_options_after_command(arguments, expected):
    from helpctl.cli import hoist_global_options

    assert hoist_global_options(arguments) == expected


def test_json_after_command(capsys):
    new_case(capsys)
    assert main(["case", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["subject"] == "Vulnerabilities tab is empty"


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "Usage: helpctl" in out


def test_show_piped_to_head_exits_zero(capsys):
    case_id = new_case(capsys)
    command = f"{sys.executable} -m helpctl case show {case_id} | head -n 1; exit ${{PIPESTATUS[0]}}"
    completed = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, env=subprocess_env(PYTHONUNBUFFERED="1"), timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr


def test_case_list_rejects_unknown_profile(capsys):
    assert main(["-p", "mien", "case", "list"]) == 2
    assert "profile 'mien' not found" in capsys.readouterr().err


def test_ctrl_c_exits_130(capsys):
    import signal
    import time

    case_id = new_case(capsys)
    process = subprocess.Popen(
        [sys.executable, "-m", "helpctl", "case", "note", case_id, "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
    )
    time.sleep(1.5)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    process.stdin.close() if process.stdin else None

    assert process.returncode == 130
    assert "interrupted" in err
    assert "Traceback" not in err
