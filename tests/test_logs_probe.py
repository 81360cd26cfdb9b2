"""The logs probe on the seeded scenarios, over boto3 and the stand-in on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpctl.cases.model import Case, Person, Subjects
from helpctl.cases.store import CaseStore
from helpctl.clients.logs import LogsClient
from helpctl.config.profiles import load_profile
from helpctl.config.settings import LogsSettings, Profile
from helpctl.errors import UsageError
from helpctl.findings import Finding, isoformat
from helpctl.probes import logs as probe
from helpctl.sandbox import Sandbox
from helpctl.sandbox import logs_seed as seed

ANCHOR = dt.datetime(2025, 6, 3, 15, 0, tzinfo=dt.timezone.utc)
REPORTED = ANCHOR - dt.timedelta(hours=2)
# The incident was reported a day before the other scenarios.
INCIDENT_REPORTED = ANCHOR - dt.timedelta(hours=26)

ANA = "ana.gomez@kiwicorp.co"
CARLOS = "carlos.ruiz@kiwicorp.co"
MARTA = "marta.vidal@kiwicorp.co"
PEDRO = "pedro.rios@kiwicorp.co"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with Sandbox(services=["logs"], logs={"anchor": ANCHOR}) as running:
        service = running.service("logs")
        service.knobs.scheduled_seconds = 0.0
        service.knobs.running_seconds = 0.0
        for name, value in running.environment().items():
            monkeypatch.setenv(name, value)
        yield running


@pytest.fixture
def profile(sandbox: Sandbox) -> Profile:
    profile = load_profile("sandbox")
    profile.logs.poll_interval = 0.01
    profile.logs.poll_interval_max = 0.02
    profile.logs.deadline = 5.0
    return profile


@pytest.fixture
def store(tmp_path: Path) -> CaseStore:
    return CaseStore(tmp_path / "cases")


def make_case(store: CaseStore, requester: str, *, users: list[str] | None = None, groups: list[str] | None = None, reported: str | None = isoformat(REPORTED)) -> Case:
    case = Case(
        id=f"250603-{requester.split('.')[0][:6]}",
        profile="sandbox",
        subject="seeded scenario",
        requester=Person(requester),
        subjects=Subjects(users=users or [], groups=groups or []),
        reported_at=reported,
        created_at=isoformat(REPORTED + dt.timedelta(minutes=30)),
    )
    return store.create(case)


def run_probe(case: Case, store: CaseStore, profile: Profile, settings: LogsSettings | None = None, **options: object) -> dict[str, Finding]:
    settings = settings or profile.logs
    client = LogsClient(settings)
    options.setdefault("now", ANCHOR)
    findings = probe.run(case, client, store, settings, routing=profile.routing, **options)  # type: ignore[arg-type]
    return {f"{finding.check}:{finding.subject}": finding for finding in findings}


def evidence(store: CaseStore, case: Case, finding: Finding) -> list[dict[str, str]]:
    assert finding.raw_ref is not None
    lines = (store.folder(case.id) / finding.raw_ref).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


# ----- the four scenarios -----


def test_bug_errors_for_ana(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, ANA, groups=["kiwiapp"])

    finding = run_probe(case, store, profile)[f"user-errors:{ANA}"]

    assert finding.outcome == "ok"
    assert finding.signals["logs.error_events"] == seed.BUG_ERRORS
    assert finding.signals["logs.matching_events"] == seed.BUG_ERRORS
    assert finding.signals["logs.top_message"] == seed.BUG_MESSAGE
    assert finding.signals["logs.distinct_users"] == 1
    assert finding.signals["logs.complete"] is True
    assert finding.component == "vulnerabilities"
    first = dt.datetime.fromisoformat(str(finding.signals["logs.first_at"]))
    last = dt.datetime.fromisoformat(str(finding.signals["logs.last_at"]))
    assert ANCHOR - dt.timedelta(hours=2, minutes=30) <= first < last <= ANCHOR - dt.timedelta(hours=1, minutes=30)
    rows = evidence(store, case, finding)
    assert len(rows) == seed.BUG_ERRORS
    assert all(row["operation"] == seed.BUG_OPERATION for row in rows)


def test_bug_activity_mixes_info_lines(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, ANA, groups=["kiwiapp"])

    finding = run_probe(case, store, profile)[f"user-activity:{ANA}"]

    assert finding.outcome == "ok"
    assert finding.signals["logs.error_events"] == seed.BUG_ERRORS
    assert int(finding.signals["logs.matching_events"]) > 2 * seed.BUG_ERRORS  # type: ignore[arg-type]
    assert finding.signals["logs.top_message"] == seed.BUG_MESSAGE


def test_incident_error_rate_high(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, MARTA, groups=["kiwiapp", "kiwipay"], reported=isoformat(INCIDENT_REPORTED))

    findings = run_probe(case, store, profile)

    for group in ("kiwiapp", "kiwipay"):
        finding = findings[f"group-errors:{group}"]
        assert finding.outcome == "ok"
        assert float(finding.signals["logs.error_rate_ratio"]) > 10, group  # type: ignore[arg-type]
        assert int(finding.signals["logs.distinct_users"]) >= 2  # type: ignore[arg-type]
        assert finding.signals["logs.top_message"] == seed.INCIDENT_MESSAGE
        assert finding.signals["logs.queries_run"] == 3
        assert finding.request["baseline"]["end"] == finding.request["start"] - 1
        assert finding.request["baseline"]["errors"] >= 5


def test_incident_user_errors_for_marta(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, MARTA, groups=["kiwiapp"], reported=isoformat(INCIDENT_REPORTED))

    finding = run_probe(case, store, profile, query_names=["user-errors"])[f"user-errors:{MARTA}"]

    assert finding.outcome == "ok"
    assert finding.signals["logs.top_message"] == seed.INCIDENT_MESSAGE
    assert "logs.error_rate_ratio" not in finding.signals


def test_bug_group_query_stays_below_incident(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, ANA, groups=["kiwiapp"])

    finding = run_probe(case, store, profile, query_names=["group-errors"])["group-errors:kiwiapp"]

    assert finding.signals["logs.distinct_users"] == 1
    assert finding.signals["logs.top_message"] == seed.BUG_MESSAGE


def test_feature_pedro_has_no_errors(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, PEDRO, groups=["kiwipay"])

    finding = run_probe(case, store, profile, query_names=["user-errors"])[f"user-errors:{PEDRO}"]

    assert finding.outcome == "empty"


def test_feature_pedro_has_regular_activity(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, PEDRO, groups=["kiwipay"])

    finding = run_probe(case, store, profile, query_names=["user-activity"])[f"user-activity:{PEDRO}"]
    rows = evidence(store, case, finding)

    assert finding.outcome == "ok"
    assert any('"level":"INFO"' in row["@message"] for row in rows)
    assert not any("Export" in row.get("operation", "") for row in rows)


def test_answered_empty_for_carlos(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, ANA, users=[CARLOS], groups=["kiwiapp"])

    findings = run_probe(case, store, profile)

    for check in ("user-activity", "user-errors"):
        finding = findings[f"{check}:{CARLOS}"]
        assert finding.outcome == "empty"
        assert finding.signals["logs.complete"] is True
        assert finding.signals["logs.matching_events"] == 0
        assert finding.reason is None
        assert evidence(store, case, finding) == []
    assert findings[f"user-activity:{ANA}"].outcome == "ok"


# ----- window and request -----


def test_window_from_reported_time(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, ANA)

    finding = run_probe(case, store, profile, query_names=["user-errors"])[f"user-errors:{ANA}"]

    start = REPORTED - dt.timedelta(minutes=profile.logs.margin_before_minutes)
    end = REPORTED + dt.timedelta(minutes=profile.logs.margin_after_minutes)
    assert finding.window == {"start": isoformat(start), "end": isoformat(end)}
    assert finding.request["start"] == int(start.timestamp())
    assert finding.request["end"] == int(end.timestamp())
    assert finding.request["log_groups"] == profile.logs.log_groups
    assert finding.request["query"].endswith(f"filter user = '{ANA}' and level = 'ERROR' | sort @timestamp desc")


def test_created_at_when_not_reported(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, ANA, reported=None)

    finding = run_probe(case, store, profile, query_names=["user-errors"])[f"user-errors:{ANA}"]

    created = REPORTED + dt.timedelta(minutes=30)
    assert finding.window["start"] == isoformat(created - dt.timedelta(minutes=120))  # type: ignore[index]


def test_recent_window_warns_ingestion(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, ANA, reported=isoformat(ANCHOR - dt.timedelta(minutes=10)))

    finding = run_probe(case, store, profile, query_names=["user-errors"])[f"user-errors:{ANA}"]

    assert finding.window["end"] == isoformat(ANCHOR)  # type: ignore[index]
    assert finding.reason is not None
    assert "recent events may not be ingested yet" in finding.reason


def test_since_and_until(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, ANA)
    since = ANCHOR - dt.timedelta(hours=2, minutes=31)
    until = "2025-06-03T12:50:00Z"

    finding = run_probe(case, store, profile, query_names=["user-errors"], since=since, until=until)[f"user-errors:{ANA}"]

    assert finding.window == {"start": isoformat(since), "end": "2025-06-03T12:50:00Z"}
    assert 0 < int(finding.signals["logs.error_events"]) < seed.BUG_ERRORS  # type: ignore[arg-type]


def test_naive_since_rejected(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, ANA)

    with pytest.raises(UsageError):
        run_probe(case, store, profile, since="2025-06-03T10:00:00")


# ----- subjects and queries -----


def test_group_query_skipped_without_group(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, ANA)

    finding = run_probe(case, store, profile, query_names=["group-errors"])["group-errors:all"]

    assert finding.outcome == "skipped"
    assert finding.reason is not None and "{group}" in finding.reason


def test_invalid_subject_skipped(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, ANA, users=["carlos' or user like /./"])

    findings = run_probe(case, store, profile, query_names=["user-errors"])

    odd = findings["user-errors:carlos' or user like /./"]
    assert odd.outcome == "skipped"
    assert odd.reason is not None and "not an e-mail address" in odd.reason
    assert findings[f"user-errors:{ANA}"].outcome == "ok"


def test_unknown_query_name(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, ANA)

    with pytest.raises(UsageError) as caught:
        run_probe(case, store, profile, query_names=["nope"])

    assert "user-errors" in (caught.value.hint or "")


def test_adhoc_query_with_placeholder(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, ANA)

    findings = run_probe(case, store, profile, query_text="fields @timestamp, operation | filter user = {email} and operation = 'GroupVulnerabilities' and level = 'ERROR'")

    assert list(findings) == [f"adhoc:{ANA}"]
    assert findings[f"adhoc:{ANA}"].signals["logs.matching_events"] == seed.BUG_ERRORS


def test_adhoc_malformed_query(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, ANA)

    with pytest.raises(UsageError) as caught:
        run_probe(case, store, profile, query_text="fields @message | filter user = ")

    assert "position 32" in caught.value.message


def test_log_groups_option_overrides(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, ANA)

    finding = run_probe(case, store, profile, query_names=["user-activity"], log_groups=[seed.WEB_GROUP])[f"user-activity:{ANA}"]

    assert finding.request["log_groups"] == [seed.WEB_GROUP]
    assert finding.signals["logs.error_events"] == 0


# ----- outcomes of failures -----


def test_failed_status_outcome(sandbox: Sandbox, store: CaseStore, profile: Profile) -> None:
    sandbox.service("logs").knobs.final_status = "Failed"
    case = make_case(store, ANA)

    finding = run_probe(case, store, profile, query_names=["user-errors"])[f"user-errors:{ANA}"]

    assert finding.outcome == "failed"
    assert finding.reason is not None and "Failed" in finding.reason
    assert finding.signals["logs.complete"] is False


def test_cancelled_status_outcome(sandbox: Sandbox, store: CaseStore, profile: Profile) -> None:
    sandbox.service("logs").knobs.final_status = "Cancelled"
    case = make_case(store, ANA)

    finding = run_probe(case, store, profile, query_names=["user-errors"])[f"user-errors:{ANA}"]

    assert finding.outcome == "failed"
    assert finding.reason is not None and "Cancelled" in finding.reason


def test_timeout_status_outcome(sandbox: Sandbox, store: CaseStore, profile: Profile) -> None:
    sandbox.service("logs").knobs.final_status = "Timeout"
    case = make_case(store, ANA)

    finding = run_probe(case, store, profile, query_names=["user-errors"])[f"user-errors:{ANA}"]

    assert finding.outcome == "timed_out"
    assert finding.reason is not None and "status Timeout" in finding.reason
    assert "partial rows kept" in finding.reason


def test_deadline_outcome(sandbox: Sandbox, store: CaseStore, profile: Profile) -> None:
    sandbox.service("logs").knobs.running_seconds = 5.0
    profile.logs.deadline = 0.1
    case = make_case(store, ANA)

    finding = run_probe(case, store, profile, query_names=["user-errors"])[f"user-errors:{ANA}"]

    assert finding.outcome == "timed_out"
    assert finding.reason is not None and "stopped it" in finding.reason
    assert sandbox.service("logs").calls["StopQuery"] == 1


def test_rate_limited_outcome(sandbox: Sandbox, store: CaseStore, profile: Profile) -> None:
    sandbox.service("logs").knobs.reject_starts = 1000
    profile.logs.retry_budget = 0.0
    case = make_case(store, ANA)

    finding = run_probe(case, store, profile, query_names=["user-errors"])[f"user-errors:{ANA}"]

    assert finding.outcome == "rate_limited"
    assert finding.reason is not None and "quota exhausted" in finding.reason
    assert finding.raw_ref is None


def test_truncated_outcome(store: CaseStore, profile: Profile) -> None:
    settings = dataclasses.replace(profile.logs, max_rows=5)
    case = make_case(store, ANA)

    finding = run_probe(case, store, profile, settings, query_names=["user-activity"])[f"user-activity:{ANA}"]

    assert finding.outcome == "truncated"
    assert finding.signals["logs.rows_retrieved"] == 5
    assert finding.signals["logs.complete"] is False
    assert int(finding.signals["logs.matching_events"]) > 5  # type: ignore[arg-type]
    assert len(evidence(store, case, finding)) == 5


def test_missing_credentials_outcome(store: CaseStore, profile: Profile, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    settings = dataclasses.replace(profile.logs, sandbox_credentials=False)
    case = make_case(store, ANA)

    finding = run_probe(case, store, profile, settings, query_names=["user-errors"])[f"user-errors:{ANA}"]

    assert finding.outcome == "failed"
    assert finding.reason is not None and "aws sso login" in finding.reason


# ----- streaming signals -----


def test_top_counter_keeps_heavy_hitter() -> None:
    counter = probe.TopCounter(capacity=4)
    for index in range(1000):
        counter.add("frequent" if index % 3 == 0 else f"rare-{index}")

    assert counter.top() == "frequent"
    assert len(counter.counts) == 4


def test_tally_reads_json_message() -> None:
    tally = probe.Tally()
    message = json.dumps({"level": "ERROR", "user": ANA, "operation": "GroupVulnerabilities", "message": "boom"})

    rows = list(tally.observe([{"@timestamp": "2025-06-03 12:00:00.000", "@message": message}, {"@timestamp": "1748952060000", "@message": "plain"}]))

    assert len(rows) == 2
    signals = tally.signals()
    assert signals["logs.error_events"] == 1
    assert signals["logs.distinct_users"] == 1
    assert signals["logs.top_message"] == "boom"
    assert signals["logs.first_at"] == "2025-06-03T12:00:00Z"
    assert signals["logs.last_at"] == "2025-06-03T12:01:00Z"
    assert tally.top_operation() == "GroupVulnerabilities"


# ----- more window and input cases -----


def test_since_alone_runs_to_now(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, ANA)

    finding = run_probe(case, store, profile, query_names=["user-errors"], since="2025-06-03T12:00:00+00:00")[f"user-errors:{ANA}"]

    assert finding.window == {"start": "2025-06-03T12:00:00Z", "end": isoformat(ANCHOR)}


def test_until_alone_keeps_span(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, ANA)
    until = ANCHOR - dt.timedelta(hours=1)

    finding = run_probe(case, store, profile, query_names=["user-errors"], until=until)[f"user-errors:{ANA}"]

    assert finding.window == {"start": isoformat(until - dt.timedelta(minutes=180)), "end": isoformat(until)}


@pytest.mark.parametrize(("since", "until"), [("yesterday", None), (ANCHOR, ANCHOR - dt.timedelta(hours=1))])
def test_bad_window_rejected(store: CaseStore, profile: Profile, since: object, until: object) -> None:
    case = make_case(store, ANA)

    with pytest.raises(UsageError):
        run_probe(case, store, profile, since=since, until=until)


def test_empty_adhoc_query_rejected(store: CaseStore, profile: Profile) -> None:
    case = make_case(store, ANA)

    with pytest.raises(UsageError):
        run_probe(case, store, profile, query_text="   ")


def test_no_log_groups_skipped(store: CaseStore, profile: Profile) -> None:
    settings = dataclasses.replace(profile.logs, log_groups=[])
    case = make_case(store, ANA)

    finding = run_probe(case, store, profile, settings, query_names=["user-errors"])["user-errors:all"]

    assert finding.outcome == "skipped"
    assert finding.reason is not None and "log groups" in finding.reason


def test_service_errors_become_failed(sandbox: Sandbox, store: CaseStore, profile: Profile) -> None:
    sandbox.service("logs").knobs.error_rate = 1.0
    profile.logs.retry_budget = 0.0
    case = make_case(store, ANA)

    finding = run_probe(case, store, profile, query_names=["user-errors"])[f"user-errors:{ANA}"]

    assert finding.outcome == "failed"
    assert finding.reason is not None and "502" in finding.reason


def test_baseline_failure_noted(sandbox: Sandbox, store: CaseStore, profile: Profile) -> None:
    # The main query and the window count complete; the baseline count fails.
    sandbox.service("logs").knobs.final_statuses = ["Complete", "Complete", "Failed"]
    case = make_case(store, MARTA, groups=["kiwiapp"])

    finding = run_probe(case, store, profile, query_names=["group-errors"])["group-errors:kiwiapp"]

    assert finding.outcome == "ok"
    assert "logs.error_rate_ratio" not in finding.signals
    assert finding.reason is not None and "no error rate" in finding.reason
    assert finding.signals["logs.queries_run"] == 3
