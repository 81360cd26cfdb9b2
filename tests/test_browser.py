"""Browser evidence: HAR files are sanitised before storage and become a finding."""

from __future__ import annotations

import json
import os
import stat

from helpctl.cli import main
from helpctl.config.settings import ComponentSettings

JWT = "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhbmFAa2l3aWNvcnAuY28ifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
COOKIE = "session=8f14e45fceea167a5a36dedd4bea2543"


def entry(url, status, time_ms=120.0, request_body=None, response_body="{}", headers=None):
    return {
        "startedDateTime": "2026-12-03T14:12:00.000Z",
        "time": time_ms,
        "request": {
            "method": "POST" if request_body else "GET",
            "url": url,
            "headers": [{"name": "Authorization", "value": f"Bearer {JWT}"}, {"name": "Cookie", "value": COOKIE}] + (headers or []),
            "cookies": [{"name": "session", "value": "8f14e45fceea167a5a36dedd4bea2543"}],
            "queryString": [],
            "postData": {"mimeType": "application/json", "text": request_body} if request_body else None,
        },
        "response": {
            "status": status,
            "headers": [{"name": "Set-Cookie", "value": COOKIE}],
            "cookies": [{"name": "session", "value": "8f14e45fceea167a5a36dedd4bea2543"}],
            "content": {"mimeType": "application/json", "text": response_body},
        },
    }


def write_har(path):
    query = json.dumps({"operationName": "GroupVulnerabilities", "query": "query GroupVulnerabilities { group { name } }", "variables": {"token": "abc"}})
    error_answer = json.dumps({"data": {"group": None}, "errors": [{"message": "Exception - Unexpected error", "path": ["group", "vulnerabilities"]}]})
    entries = [
        entry("https://app.fluidattacks.com/api", 200, request_body=query, response_body=error_answer),
        entry("https://app.fluidattacks.com/api", 200, request_body=query, response_body=error_answer),
        entry("https://app.fluidattacks.com/orgs/kiwicorp?api_key=sk_live_1234567890abcdef&page=2", 500, response_body="<html>oops</html>"),
        entry("https://app.fluidattacks.com/missing", 404),
        entry("https://app.fluidattacks.com/slow", 200, time_ms=5400.0, response_body=json.dumps({"access_token": JWT})),
    ]
    path.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "Firefox"}, "entries": entries}}))


def open_case(capsys) -> str:
    assert main(["case", "new", "-r", "ana.gomez@kiwicorp.co", "-s", "Vulnerabilities fail", "-g", "kiwiapp"]) == 0
    return capsys.readouterr().out.strip()


def test_har_attached_without_secrets(capsys, tmp_path, isolated_environment):
    case_id = open_case(capsys)
    har = tmp_path / "session.har"
    write_har(har)

    assert main(["--json", "case", "attach", case_id, str(har)]) == 0
    result = json.loads(capsys.readouterr().out)

    folder = isolated_environment / "data" / "cases" / case_id
    stored = (folder / result["attached"][0]["stored"]).read_text()
    evidence = "".join(path.read_text() for path in (folder / "evidence").iterdir())
    for secret in (JWT, "8f14e45fceea167a5a36dedd4bea2543", "sk_live_1234567890abcdef"):
        assert secret not in stored
        assert secret not in evidence
        assert secret not in (folder / "case.yaml").read_text()
    assert "page=2" in stored
    assert stat.S_IMODE(os.stat(folder / result["attached"][0]["stored"]).st_mode) == 0o600


def test_har_finding_signals(capsys, tmp_path):
    case_id = open_case(capsys)
    har = tmp_path / "session.har"
    write_har(har)
    main(["case", "attach", case_id, str(har)])
    capsys.readouterr()

    main(["--json", "case", "show", case_id])
    record = json.loads(capsys.readouterr().out)
    finding = record["findings"][0]
    signals = finding["signals"]

    assert finding["source"] == "browser"
    assert finding["outcome"] == "ok"
    assert signals["browser.requests"] == 5
    assert signals["browser.failed_requests"] == 2
    assert signals["browser.server_errors"] == 1
    assert signals["browser.client_errors"] == 1
    assert signals["browser.graphql_errors"] == 2
    assert signals["browser.slow_requests"] == 1
    assert signals["browser.top_graphql_error"] == "Exception - Unexpected error"
    assert signals["browser.graphql_error_path"] == "group.vulnerabilities"
    assert finding["component"] == "vulnerabilities"
    assert "session.har" in record["attachments"][0]


def test_screenshot_attached_as_is(capsys, tmp_path):
    case_id = open_case(capsys)
    image = tmp_path / "screen.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nfake")

    assert main(["case", "attach", case_id, str(image)]) == 0
    capsys.readouterr()
    main(["--json", "case", "show", case_id])
    record = json.loads(capsys.readouterr().out)
    assert record["attachments"] == ["attachments/screen.png"]
    assert record["findings"] == []
    assert record["timeline"][-1]["event"] == "attached"


def test_invalid_har_is_one_line(capsys, tmp_path):
    case_id = open_case(capsys)
    har = tmp_path / "broken.har"
    har.write_text("{not json")

    assert main(["case", "attach", case_id, str(har)]) == 2
    err = capsys.readouterr().err
    assert "broken.har is not a HAR file" in err
    assert len(err.strip().splitlines()) == 1


def test_unsupported_file_rejected(capsys, tmp_path):
    case_id = open_case(capsys)
    other = tmp_path / "notes.docx"
    other.write_bytes(b"x")
    assert main(["case", "attach", case_id, str(other)]) == 2


def test_component_from_graphql_path():
    from helpctl.probes.browser import _component_for_path

    components = {"vulnerabilities": ComponentSettings(keywords=["vulnerability"]), "events": ComponentSettings(keywords=["event"])}
    assert _component_for_path(["group", "vulnerabilities", "edges"], components) == "vulnerabilities"
    assert _component_for_path(["me"], components) is None
