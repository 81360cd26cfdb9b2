"""`helpctl file` end to end: python-gitlab against the GitLab stand-in over a socket."""

from __future__ import annotations

import json

import pytest

from helpctl.audit import AuditLog
from helpctl.cli import main
from helpctl.sandbox import Sandbox


@pytest.fixture()
def gitlab(monkeypatch):
    with Sandbox(services=["gitlab"]) as sandbox:
        for name, value in sandbox.environment().items():
            monkeypatch.setenv(name, value)
        yield sandbox.service("gitlab")


def classified_case(capsys, label: str = "bug") -> str:
    assert main(["case", "new", "-r", "ana.gomez@kiwicorp.co", "-s", "Vulnerabilities tab is empty", "-g", "kiwiapp",
                 "-b", "The vulnerabilities list of kiwiapp is empty. Call me at +57 300 555 1234."]) == 0
    case_id = capsys.readouterr().out.strip()
    assert main(["classify", case_id, "--as", label, "--reason", "reproduced by the engineer"]) == 0
    capsys.readouterr()
    return case_id


def test_dry_run_sends_nothing(capsys, gitlab):
    case_id = classified_case(capsys)

    assert main(["--json", "file", case_id, "--dry-run"]) == 0
    outcome = json.loads(capsys.readouterr().out)

    assert outcome["dry_run"] is True
    assert outcome["request"]["title"].startswith("[Platform] ")
    assert outcome["request"]["labels"] == ["type::bug", "customer-reported"]
    assert outcome["request"]["confidential"] is True
    assert f"helpctl-case: {case_id}" in outcome["request"]["description"]
    assert "ana.gomez@kiwicorp.co" not in outcome["request"]["description"]
    assert "300 555 1234" not in outcome["request"]["description"]
    assert gitlab.requests_to("/issues", "POST") == []


def test_file_twice_gives_one_issue(capsys, gitlab):
    case_id = classified_case(capsys)

    assert main(["--json", "file", case_id]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["--json", "file", case_id]) == 0
    second = json.loads(capsys.readouterr().out)

    assert first["created"] is True
    assert second["created"] is False
    assert first["iid"] == second["iid"]
    assert first["assignee"] == "pmorales"
    assert first["component"] == "vulnerabilities"
    assert len(gitlab.requests_to("/issues", "POST")) == 1

    main(["--json", "case", "show", case_id])
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "filed"
    assert record["issue"]["iid"] == first["iid"]
    assert [event["event"] for event in record["timeline"]].count("filed") == 1

    actions = [(entry["action"], entry["outcome"]) for entry in AuditLog().entries()]
    assert actions == [("issue.filed", "created"), ("issue.filed", "existing")]


def test_feature_goes_to_head_of_product(capsys, gitlab):
    case_id = classified_case(capsys, "feature")
    assert main(["--json", "file", case_id]) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["assignee"] == "jhead"
    assert outcome["labels"] == ["type::feature", "customer-reported"]


def test_incident_filed_as_incident(capsys, gitlab):
    case_id = classified_case(capsys, "incident")
    assert main(["--json", "file", case_id]) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["assignee"] == "imanager"
    assert outcome["request"]["issue_type"] == "incident"


def test_missing_label_stops_before_writing(capsys, gitlab, monkeypatch, isolated_environment):
    profiles = isolated_environment / "config" / "profiles"
    profiles.mkdir(parents=True)
    (profiles / "strict.yaml").write_text("extends: sandbox\nlabels:\n  bug: [type::bug, no-such-label]\n")
    monkeypatch.setenv("HELPCTL_PROFILE", "strict")
    case_id = classified_case(capsys)

    assert main(["file", case_id]) == 5
    assert "no-such-label" in capsys.readouterr().err
    assert gitlab.requests_to("/issues", "POST") == []
    assert gitlab.requests_to("/labels", "POST") == []


def test_gitlab_unreachable_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("HELPCTL_GITLAB_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("HELPCTL_GITLAB_MAX_RETRIES", "0")
    case_id = classified_case(capsys)

    code = main(["file", case_id])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 2
    assert "127.0.0.1:9" in err


def test_already_filed_problem_offers_link(capsys, gitlab):
    first = classified_case(capsys)
    assert main(["file", first]) == 0
    capsys.readouterr()
    second = classified_case(capsys)

    assert main(["file", second]) == 5
    err = capsys.readouterr().err
    assert "looks like a problem already filed" in err
    assert f"helpctl case link {second}" in err
    assert len(gitlab.requests_to("/issues", "POST")) == 1

    assert main(["--json", "file", second, "--new-issue"]) == 0
    assert json.loads(capsys.readouterr().out)["created"] is True


def test_case_new_mentions_related_case(capsys):
    opening = ["case", "new", "-r", "ana.gomez@kiwicorp.co", "-s", "Vulnerabilities tab is empty", "--org", "kiwicorp"]
    assert main(opening) == 0
    first = capsys.readouterr().out.strip()
    assert main(opening) == 0
    err = capsys.readouterr().err
    assert f"related: case {first}" in err
