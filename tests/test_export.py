"""Case reports: redaction, self-contained HTML, Markdown escaping, JSON shape, files and the command."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpctl import export
from helpctl.cases.model import Case, Event, Person, Subjects
from helpctl.cases.store import CaseStore, new_case_id
from helpctl.errors import UsageError
from helpctl.findings import Finding, isoformat

UTC = dt.timezone.utc
REPORTED = dt.datetime(2026, 12, 4, 18, 0, tzinfo=UTC)
ACTOR = "support.sandbox@fluidattacks.com"
TOKEN = "glpat-Zk3xQ9vB7mN2pL5wR8tY"
API_KEY = "sk_live_0123456789abcdef"
BODY = (
    "Hi, the tab lists 4 of 7 vulnerabilities.\n"
    "My colleague marta.vidal@kiwicorp.co sees the same.\n"
    f"Our GitLab token is {TOKEN} and api_key={API_KEY} if you need them.\n"
    "Call me at +57 601 555 0142.\n"
    "~~~\n"
    '<img src="http://127.0.0.1:9/pixel.png"><script>alert(1)</script>\n'
    "![tracker](http://127.0.0.1:9/t.png) | pipe\n"
)
PERSONAL = ("ana.gomez@kiwicorp.co", "marta.vidal@kiwicorp.co", "carlos.ruiz@kiwicorp.co", "Ana Gómez", "601 555 0142")

# Attributes and constructs through which a browser fetches something; an <a href> does not.
RESOURCE_PATTERNS = [
    re.compile(r"""\b(?:src|srcset|data|poster|action|formaction|background|xlink:href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE),
    re.compile(r"<(?:link|img|iframe|object|embed|video|audio|source|frame|base|script)\b", re.IGNORECASE),
    re.compile(r"url\s*\(", re.IGNORECASE),
    re.compile(r"@import", re.IGNORECASE),
    re.compile(r"\bhttp-equiv\s*=\s*[\"']?refresh", re.IGNORECASE),
]
ANCHOR = re.compile(r"<a\s[^>]*>", re.IGNORECASE)


def resource_references(page: str) -> list[str]:
    found = [match.group(0) for pattern in RESOURCE_PATTERNS for match in pattern.finditer(page)]
    for anchor in ANCHOR.findall(page):
        # Only an <a href> may name a URL, and it loads nothing until clicked.
        if re.search(r"\b(?!href\b)[a-z-]+\s*=\s*[\"']?https?://", anchor, re.IGNORECASE):
            found.append(anchor)
    return found


def external_urls(page: str) -> list[str]:
    """Every http(s) URL inside a tag other than an <a href>."""
    urls = []
    for tag in re.findall(r"<[^>]+>", page):
        if ANCHOR.fullmatch(tag):
            continue
        urls += re.findall(r"https?://[^\s\"'<>]+", tag)
    return urls


@pytest.fixture()
def store(tmp_path: Path, monkeypatch) -> CaseStore:
    monkeypatch.setenv("HELPCTL_CASES_DIR", str(tmp_path / "cases"))
    return CaseStore(tmp_path / "cases")


def mixpanel_row(moment: dt.datetime) -> dict:
    return {"event": "View vulnerabilities", "properties": {"time": int(moment.timestamp()), "group": "kiwiapp"}}


def bugsnag_event(moment: dt.datetime, email: str = "ana.gomez@kiwicorp.co") -> dict:
    return {
        "record": "event",
        "received_at": isoformat(moment),
        "exceptions": [{"errorClass": "TypeError", "message": "Cannot read properties of undefined (reading 'edges')"}],
        "context": "VulnerabilitiesView",
        "user": {"email": email},
    }


def make_case(store: CaseStore) -> Case:
    """A classified, filed and notified case with evidence rows, built as the workflow records it."""
    case = Case(
        id=new_case_id(),
        profile="sandbox",
        subject="Vulnerabilities tab lists 4 of 7 | kiwiapp",
        requester=Person(email="ana.gomez@kiwicorp.co", name="Ana Gómez"),
        kind="problem",
        body=BODY,
        organization="kiwicorp",
        subjects=Subjects(users=["carlos.ruiz@kiwicorp.co"], groups=["kiwiapp"], organizations=["kiwicorp"]),
        reported_at=isoformat(REPORTED),
        created_at=isoformat(REPORTED + dt.timedelta(minutes=20)),
    )
    store.create(case)

    minutes = dt.timedelta(minutes=1)
    errors_ref, _ = store.write_rows(case.id, "errors-ana.gomez@kiwicorp.co", [bugsnag_event(REPORTED - offset * minutes) for offset in (40, 25, 10, 5)])
    usage_ref, _ = store.write_rows(case.id, "usage-ana.gomez@kiwicorp.co", [mixpanel_row(REPORTED + offset * minutes) for offset in (-60, -30, -12, 15)])
    mismatch = Finding(
        source="platform", check="vulnerabilities", subject="kiwiapp", outcome="ok",
        summary="kiwiapp reports 7 open vulnerabilities but lists 4 (3 findings, 2 open)",
        signals={"platform.open_vulnerabilities_mismatch": True}, component="vulnerabilities",
    )
    errors = Finding(
        source="errors", check="user-errors", subject="ana.gomez@kiwicorp.co", outcome="ok",
        summary="ana.gomez@kiwicorp.co hit 1 error 4 times; most often TypeError ![x](http://127.0.0.1:9/x.png)", raw_ref=errors_ref,
    )
    usage = Finding(source="usage", check="user-activity", subject="ana.gomez@kiwicorp.co", outcome="partial", summary="4 events", reason="1 line skipped", raw_ref=usage_ref)

    with store.edit(case.id) as editing:
        for finding in (mismatch, errors, usage):
            editing.put_finding(finding)
        editing.notes.append({"at": isoformat(REPORTED + 30 * minutes), "actor": ACTOR, "text": "carlos.ruiz@kiwicorp.co never got the invitation"})
        editing.classification = {
            "label": "bug",
            "rules_label": "bug",
            "rules": [{"name": "vulnerability-count-mismatch", "label": "bug", "description": "The counter disagrees with the listing", "findings": [mismatch.key]}],
            "at": isoformat(REPORTED + 40 * minutes),
            "actor": ACTOR,
        }
        editing.issue = {"iid": 12, "url": "http://127.0.0.1:8702/fluidattacks/universe/-/issues/12", "project": "fluidattacks/universe", "label": "bug", "labels": ["type::bug"], "assignee": "pmorales"}
        editing.status = "filed"
        editing.timeline = [
            Event(at=isoformat(REPORTED + 20 * minutes), actor=ACTOR, event="opened", detail={"source": "typed"}),
            Event(at=isoformat(REPORTED + 40 * minutes), actor=ACTOR, event="classified", detail={"label": "bug", "rules": ["vulnerability-count-mismatch"]}),
            Event(at=isoformat(REPORTED + 50 * minutes), actor=ACTOR, event="filed", detail={"iid": 12, "url": editing.issue["url"], "assignee": "pmorales"}),
            Event(
                at=isoformat(REPORTED + 55 * minutes), actor=ACTOR, event="notified",
                detail={
                    "template": "filed", "language": "en", "recipients": ["ana.gomez@kiwicorp.co"],
                    "statuses": [{"email": "ana.gomez@kiwicorp.co", "status": "sent", "reject_reason": None, "message_id": "m-1"}],
                    "message_id": "m-1",
                },
            ),
        ]
    return store.load(case.id)


def report_text(store: CaseStore, case: Case, fmt: str, internal: bool = False) -> str:
    report = export.build_report(case, store.folder(case.id), internal=internal, now=REPORTED + dt.timedelta(hours=2))
    return export.render(report, fmt)


# ---------------------------------------------------------------------------------------------
# Redaction


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_redacted_by_default(store, fmt):
    case = make_case(store)

    text = report_text(store, case, fmt)

    for secret in (*PERSONAL, TOKEN, API_KEY):
        assert secret not in text, secret
    assert "requester" in text
    assert "user-1" in text
    assert "[redacted:token]" in text
    assert "[redacted:phone]" in text
    assert "Redacted report" in text


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_internal_keeps_everything(store, fmt):
    case = make_case(store)

    text = report_text(store, case, fmt, internal=True)

    assert "ana.gomez@kiwicorp.co" in text
    assert "carlos.ruiz@kiwicorp.co" in text
    assert TOKEN in text
    # The notice comes before any case content.
    assert text.index("INTERNAL REPORT: not redacted") < text.lower().index("request")
    assert "[redacted:" not in text


def test_redaction_counts(store):
    case = make_case(store)

    report = export.build_report(case, store.folder(case.id))

    counts = report["report"]["redactions"]
    assert counts["email"] >= 5
    assert counts["token"] == 2
    assert counts["phone"] == 1
    assert report["case"]["users"] == ["user-1"]
    assert report["request"]["notes"][0]["text"] == "user-1 never got the invitation"


# ---------------------------------------------------------------------------------------------
# HTML


def test_html_self_contained(store):
    case = make_case(store)

    page = report_text(store, case, "html")

    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower()
    assert resource_references(page) == []
    assert external_urls(page) == []
    assert "Content-Security-Policy" in page
    assert "default-src 'none'" in page
    assert "&lt;img src=&quot;http://127.0.0.1:9/pixel.png&quot;&gt;&lt;script&gt;" in page
    assert '<a href="http://127.0.0.1:8702/fluidattacks/universe/-/issues/12" rel="noreferrer noopener">' in page


def test_html_sections_and_chart(store):
    case = make_case(store)

    page = report_text(store, case, "html")

    for heading in ("Summary", "Request", "Classification", "Activity around the report", "Findings", "Issue", "Notifications sent", "Timeline"):
        assert f"<h2>{heading}</h2>" in page
    assert page.count("<svg ") == 1
    assert "vulnerability-count-mismatch" in page
    assert "kiwiapp reports 7 open vulnerabilities but lists 4" in page
    assert "requester: sent" in page
    assert 'class="label">bug<' in page


def test_resource_check_catches_loads():
    pages = [
        '<img src="http://127.0.0.1:9/a.png">',
        '<link rel="stylesheet" href="https://127.0.0.1:9/a.css">',
        "<style>body { background: url(http://127.0.0.1:9/a.png) }</style>",
        "<style>@import 'http://127.0.0.1:9/a.css';</style>",
        '<svg><image xlink:href="http://127.0.0.1:9/a.png"/></svg>',
        '<a href="http://127.0.0.1:9/" ping="http://127.0.0.1:9/ping">x</a>',
    ]

    assert all(resource_references(page) for page in pages)
    assert resource_references('<a href="http://127.0.0.1:9/">issue</a> plain http://127.0.0.1:9/x text') == []


def test_issue_link_needs_http():
    assert export.safe_link("javascript:alert(1)") is None
    assert export.safe_link("http://127.0.0.1:8702/x/-/issues/1") == "http://127.0.0.1:8702/x/-/issues/1"
    assert export.safe_link("http://127.0.0.1:8702/a b\"c") == "http://127.0.0.1:8702/a%20b%22c"
    assert export.safe_link(None) is None


# ---------------------------------------------------------------------------------------------
# Markdown and JSON


def test_markdown_escapes(store):
    case = make_case(store)

    text = report_text(store, case, "md")

    outside_fences = re.sub(r"(?ms)^(~{3,})text$.*?^\1$", "", text)
    assert "~~~~text\nHi, the tab lists" in text
    assert "![" not in outside_fences
    assert "<img" not in outside_fences
    assert "Vulnerabilities tab lists 4 of 7 \\| kiwiapp" in text
    assert "\\!\\[x\\](http://127.0.0.1:9/x.png)" in text
    assert "[#12 in fluidattacks/universe](http://127.0.0.1:8702/fluidattacks/universe/-/issues/12)" in text


def test_markdown_chart_block(store):
    case = make_case(store)

    text = report_text(store, case, "md")

    chart = text.split("## Activity around the report")[1].split("## Findings")[0]
    assert "errors |" in chart
    assert "usage  |" in chart
    assert "^ reported" in chart


def test_json_shape(store):
    case = make_case(store)

    report = json.loads(report_text(store, case, "json"))

    assert report["report"]["internal"] is False
    assert report["case"]["id"] == case.id
    assert report["classification"]["rules"][0]["findings"][0]["summary"].startswith("kiwiapp reports 7")
    assert report["issue"]["iid"] == 12
    assert report["notifications"][0]["statuses"] == ["requester: sent"]
    assert [item["source"] for item in report["timeline"]["items"]].count("errors") == 4
    assert all("ref" not in item for item in report["timeline"]["items"])
    assert sum(report["chart"]["series"]["errors"]) == 4
    assert sum(report["chart"]["series"]["usage"]) == 4
    assert report["chart"]["reported"] == "2026-12-04T18:00:00Z"


def test_unclassified_case(store):
    case = Case(id=new_case_id(), profile="sandbox", subject="Question", requester=Person(email="pedro.rios@kiwicorp.co"))
    case.record(ACTOR, "opened", source="typed")
    store.create(case)

    text = report_text(store, case, "md")

    assert "Not classified." in text
    assert "No issue filed." in text
    assert "No findings." in text


def test_unknown_format(store):
    case = make_case(store)
    report = export.build_report(case, store.folder(case.id))

    with pytest.raises(UsageError):
        export.render(report, "pdf")


# ---------------------------------------------------------------------------------------------
# Files and the command


def test_write_report_private(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old")
    os.chmod(target, 0o644)

    size = export.write_report(target, "<p>new</p>")

    assert size == len("<p>new</p>")
    assert target.read_text() == "<p>new</p>"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


@pytest.mark.parametrize("name", ["missing-folder/report.md", "."])
def test_write_report_bad_path(tmp_path, name):
    with pytest.raises(UsageError):
        export.write_report(tmp_path / name, "text")


def cli():
    from helpctl.app import build_app
    from helpctl.commands import case as case_commands
    from helpctl.commands.case_report import register_case

    if not any(info.name == "export" for info in case_commands.app.registered_commands):
        register_case(case_commands.app)
    return build_app()


def test_export_command_file(store, tmp_path):
    case = make_case(store)
    target = tmp_path / "out" / "report.html"
    target.parent.mkdir()

    result = CliRunner().invoke(cli(), ["--json", "case", "export", case.id, "--format", "html", "-o", str(target)], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["file"] == str(target)
    assert data["bytes"] == target.stat().st_size
    assert data["internal"] is False
    assert data["redactions"]["token"] == 2
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert "ana.gomez@kiwicorp.co" not in target.read_text()


def test_export_command_stdout(store):
    case = make_case(store)

    result = CliRunner().invoke(cli(), ["case", "export", case.id, "--format", "md"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"# Case {case.id}: ")
    assert TOKEN not in result.stdout


def test_export_internal_audited(store):
    from helpctl.audit import AuditLog

    case = make_case(store)

    result = CliRunner().invoke(cli(), ["case", "export", case.id, "--format", "json", "--internal"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["report"]["internal"] is True
    assert "not redacted" in result.stderr
    [entry] = list(AuditLog().entries())
    assert entry["action"] == "case.exported"
    assert entry["target"] == {"case": case.id}
    assert entry["detail"]["internal"] is True


@pytest.mark.parametrize(
    "arguments",
    [["--json", "case", "export", "CASE", "--format", "md"], ["case", "export", "CASE", "--format", "pdf"]],
)
def test_export_command_rejects(store, arguments):
    case = make_case(store)
    arguments = [case.id if word == "CASE" else word for word in arguments]

    result = CliRunner().invoke(cli(), arguments)

    assert isinstance(result.exception, UsageError)
    assert result.exception.exit_code == 2


# ---------------------------------------------------------------------------------------------
# A case built by the real workflow against the sandbox stand-ins on 127.0.0.1


def workflow_case(root: Path) -> tuple[CaseStore, str]:
    """Open the bug scenario's case, probe it, classify, file and notify through the stand-ins."""
    from helpctl import notify, services
    from helpctl.classification import classify_case
    from helpctl.config.profiles import load_profile
    from helpctl.filing_case import file_case
    from helpctl.probing import record_findings
    from helpctl.sandbox import Sandbox
    from helpctl.triage import PROBES, run_probes

    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("HELPCTL_", "AWS_")):
                patch.delenv(name)
        patch.setenv("HELPCTL_HOME", str(root / "home"))
        patch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        patch.setenv("AWS_CONFIG_FILE", str(root / "no-aws-config"))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(root / "no-aws-credentials"))
        with Sandbox() as sandbox:
            for name, value in sandbox.environment().items():
                patch.setenv(name, value)
            sandbox.service("logrocket").knobs.pending_polls = 0
            profile = load_profile("sandbox")
            store = CaseStore(root / "cases")
            now = dt.datetime.now(UTC).replace(microsecond=0)
            case = Case(
                id=new_case_id(),
                profile="sandbox",
                subject="Vulnerabilities tab lists 4 of 7 in kiwiapp",
                requester=Person(email="ana.gomez@kiwicorp.co", name="Ana Gómez"),
                kind="problem",
                body=f"The dashboard of kiwiapp says 7 open vulnerabilities but the tab lists 4. Token: {TOKEN}",
                language="en",
                organization="kiwicorp",
                subjects=Subjects(users=["carlos.ruiz@kiwicorp.co"], groups=["kiwiapp"], organizations=["kiwicorp"]),
                reported_at=isoformat(now - dt.timedelta(hours=2)),
            )
            case.record(ACTOR, "opened", source="typed")
            store.create(case)

            runs = run_probes(case, profile, store, list(PROBES), timeout=60, options={"wait": True})
            for name, run in runs.items():
                record_findings(store, case.id, name, run.findings, ACTOR)
            classify_case(store, case.id, profile, ACTOR)
            file_case(store, case.id, profile, ACTOR, client=services.gitlab_client(profile, profile.gitlab.fixed_token))
            message = notify.draft(store.load(case.id), "filed", profile)
            notify.send(store, case.id, message, profile, ACTOR)
    return store, case.id


@pytest.fixture(scope="module")
def workflow(tmp_path_factory) -> tuple[CaseStore, str]:
    return workflow_case(tmp_path_factory.mktemp("sandbox-export"))


def test_workflow_report_sections(workflow):
    store, case_id = workflow
    case = store.load(case_id)

    report = export.build_report(case, store.folder(case_id))

    rules = {rule["name"]: rule for rule in report["classification"]["rules"]}
    assert report["classification"]["label"] in ("bug", "incident")
    assert rules["vulnerability-count-mismatch"]["findings"][0]["summary"] == "kiwiapp reports 7 open vulnerabilities but lists 4 (3 findings, 2 open)"
    assert report["issue"]["url"].startswith("http://127.0.0.1:")
    assert report["notifications"][0]["template"] == "filed"
    assert report["notifications"][0]["recipients"] == ["requester"]
    assert {item["source"] for item in report["timeline"]["items"]} >= {"case", "platform", "mail", "errors", "usage", "logs"}
    assert sum(report["chart"]["series"]["errors"]) > 0


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_workflow_report_redacted(workflow, fmt):
    store, case_id = workflow
    case = store.load(case_id)

    text = export.render(export.build_report(case, store.folder(case_id)), fmt)

    assert "@kiwicorp.co" not in text
    assert "@fluidattacks.com" not in text
    assert TOKEN not in text
    if fmt == "html":
        assert resource_references(text) == []
        assert external_urls(text) == []
