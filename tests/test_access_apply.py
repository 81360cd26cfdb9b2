"""Approving and applying access plans against the platform stand-in: rules, failures, resume, undo."""

from __future__ import annotations

import csv
import json
import os
import random
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_access_helpers import (  # noqa: F401
    ENGINEER,
    OPERATOR,
    Clock,
    Kit,
    make_client,
    make_kit,
    people_in_groups,
    revoke,
    running,
)

from helpctl.access import journal, plan
from helpctl.access.apply import ApplyRun, ConcurrencyLimit, StalePlan, describe
from helpctl.access.approval import Operator
from helpctl.access.plan import Intent, PlanFile
from helpctl.access.state import StateReader
from helpctl.access.undo import inverse, undo_intents
from helpctl.audit import AuditLog
from helpctl.errors import AuthError, PreconditionFailed


@pytest.fixture
def kit(running, tmp_path: Path) -> Kit:  # noqa: F811
    return make_kit(running, tmp_path)


class SkippingClock:
    """Real monotonic time plus the waits apply asked for, which pass at once."""

    def __init__(self) -> None:
        self.skipped = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return time.monotonic() + self.skipped

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.skipped += max(0.0, seconds)


def apply(kit: Kit, path: Path, **options: Any) -> Any:
    clock = options.pop("clock", SkippingClock())
    run = ApplyRun(
        path,
        mutations=kit.mutations(),
        reader=kit.reader,
        operator=options.pop("operator", OPERATOR),
        settings=kit.settings,
        store=kit.store,
        sleep=clock.sleep,
        clock=clock,
        **options,
    )
    return run.run()


def applied_pairs(kit: Kit) -> list[tuple[str, str]]:
    return [(item.arguments.get("groupName") or item.arguments.get("organizationId"), item.arguments["userEmail"] if "userEmail" in item.arguments else item.arguments["email"]) for item in kit.applied()]


def bulk(kit: Kit, count: int, name: str = "plan.json") -> tuple[Path, list[tuple[str, str]]]:
    pairs = people_in_groups(kit.service, count)
    path = kit.write([revoke(email, group, line=index + 2) for index, (email, group) in enumerate(pairs)], name)
    return path, pairs


# ----- approval rules -----


def test_unapproved_plan_refused(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])

    with pytest.raises(PreconditionFailed) as caught:
        apply(kit, path)

    assert "is not approved" in caught.value.message
    assert kit.service.access.records() == []
    assert kit.member("kiwipay", "pedro.rios@kiwicorp.co") is not None


def test_approver_must_differ(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])

    with pytest.raises(PreconditionFailed) as caught:
        kit.approve(path, by="SUPPORT.sandbox@fluidattacks.com")

    assert "an approver must differ" in caught.value.message
    assert PlanFile(path).approval is None


def test_second_approver_required(kit: Kit) -> None:
    path = kit.write([Intent("set-role", "group", "luisa.fernandez@kiwicorp.co", group="kiwiapp", role="Group Manager")])

    with pytest.raises(PreconditionFailed) as missing:
        kit.approve(path)
    with pytest.raises(PreconditionFailed) as same:
        kit.approve(path, second_approver="jorge mesa")
    approval = kit.approve(path, second_approver="Ana Gómez")

    assert "requires a second approver because it grants or sets USER_MANAGER" in missing.value.message
    assert "must differ from the approver" in same.value.message
    assert approval["second_approver"] == "Ana Gómez"


def test_second_approver_above_count(kit: Kit) -> None:
    kit.settings.second_approver_above = 1
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay"), revoke("luisa.fernandez@kiwicorp.co", "kiwipay")])

    with pytest.raises(PreconditionFailed) as caught:
        kit.approve(path)

    assert "it holds 2 operations, more than 1" in caught.value.message


def test_approval_recorded_everywhere(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])

    approval = kit.approve(path, ref="Ticket 77: remove Pedro")
    case = kit.store.load(approval["case"])
    entries = list(AuditLog().entries())

    assert PlanFile(path).approval == approval
    assert approval["content_hash"] == PlanFile(path).stored_hash
    assert case.kind == "access-request"
    assert case.body == "Ticket 77: remove Pedro"
    assert [event.event for event in case.timeline] == ["opened", "access-approved"]
    assert entries[-1]["action"] == "access.approve"
    assert entries[-1]["approval"]["by"] == "Jorge Mesa"
    assert entries[-1]["detail"]["content_hash"] == approval["content_hash"]
    assert approval["audit_seq"] == entries[-1]["seq"]


def test_approval_uses_existing_case(kit: Kit) -> None:
    first = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")], "first.json")
    case_id = kit.approve(first)["case"]
    second = kit.write([revoke("sofia.lopez@kiwicorp.co", "kiwipay")], "second.json")

    approval = kit.approve(second, ref=case_id.upper())

    assert approval["case"] == case_id
    assert approval["case_opened"] is False


def test_unknown_case_id_rejected(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])

    with pytest.raises(Exception) as caught:
        kit.approve(path, ref="250101-zzzzzz")

    assert "no case matches" in str(caught.value)


def test_flagged_request_needs_override(kit: Kit) -> None:
    request = {"requester": "luisa.fernandez@kiwicorp.co"}
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")], request=request)

    with pytest.raises(PreconditionFailed) as caught:
        kit.approve(path)
    approval = kit.approve(path, override="confirmed by phone with Ana Gómez")

    assert "the request is flagged: requester not verified as a manager" in caught.value.message
    assert approval["override"] == "confirmed by phone with Ana Gómez"


def test_failed_dkim_flagged(kit: Kit) -> None:
    mail = {"from": "ana.gomez@kiwicorp.co", "dkim_spf_failed": True, "failures": ["dkim=fail"]}
    draft = kit.draft([revoke("pedro.rios@kiwicorp.co", "kiwipay")], request={"requester": "ana.gomez@kiwicorp.co", "email": mail})

    assert draft.header["warnings"] == ["the request e-mail failed authentication (dkim=fail)"]


def test_already_approved_refused(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])
    kit.approve(path)

    with pytest.raises(PreconditionFailed) as caught:
        kit.approve(path, by="Ana Gómez")

    assert "already approved by Jorge Mesa" in caught.value.message


def test_edit_after_approval_refused(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])
    kit.approve(path)
    text = path.read_text().replace("pedro.rios@kiwicorp.co", "sofia.lopez@kiwicorp.co")
    path.write_text(text)

    with pytest.raises(PreconditionFailed) as caught:
        apply(kit, path)

    assert "was edited" in caught.value.message
    assert kit.service.access.records() == []


def test_rehashed_edit_refused(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])
    kit.approve(path)
    loaded = PlanFile(path)
    operations = [dict(operation, email="sofia.lopez@kiwicorp.co") for operation in loaded.operations()]
    plan.write_plan(path, loaded.header, operations, [], loaded.approval)

    with pytest.raises(PreconditionFailed) as caught:
        apply(kit, path)

    assert "edited after its approval" in caught.value.message


def test_other_operator_refused(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])
    kit.approve(path)

    with pytest.raises(PreconditionFailed) as caught:
        apply(kit, path, operator=Operator("someone@fluidattacks.com"))

    assert "was made for operator support.sandbox@fluidattacks.com" in caught.value.message


# ----- applying -----


def test_bulk_apply_exactly_once(kit: Kit) -> None:
    path, pairs = bulk(kit, 40)
    kit.approve(path)
    kit.service.apply_knobs({"mutation_concurrency": 4, "mutation_latency": 0.01, "mutation_retry_after": 0})

    report = apply(kit, path)

    assert report.complete
    assert report.applied == 40
    assert sorted(applied_pairs(kit)) == sorted((group, email) for email, group in pairs)
    assert all(kit.member(group, email) is None for email, group in pairs)
    assert report.concurrency["peak"] > 4
    assert report.rate_limited >= 1
    assert report.concurrency["ceiling"] is not None


def test_results_journal_and_audit(kit: Kit) -> None:
    path, _ = bulk(kit, 5)
    kit.approve(path)

    report = apply(kit, path)

    results = list(csv.reader(open(report.results_path, encoding="utf-8")))
    assert results[0] == ["row", "operation", "outcome", "message"]
    assert sorted(int(row[0]) for row in results[1:]) == [2, 3, 4, 5, 6]
    assert {row[2] for row in results[1:]} == {"applied"}
    assert stat.S_IMODE(os.stat(report.journal_path).st_mode) == 0o600
    state = journal.read_state(Path(report.journal_path), 5)
    assert state.count(journal.APPLIED) == 5
    assert all(state.audited)
    entries = [entry for entry in AuditLog().entries() if entry["action"] == "access.revoke"]
    assert len(entries) == 5
    assert entries[0]["operator"] == ENGINEER
    assert entries[0]["approval"]["by"] == "Jorge Mesa"
    assert entries[0]["request_id"].startswith(PlanFile(path).id + "#")
    assert entries[0]["detail"]["previous"]["member"] is True
    assert AuditLog().verify().ok


def test_case_timeline_records_apply(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])
    case_id = kit.approve(path)["case"]

    apply(kit, path)

    timeline = kit.store.load(case_id).timeline
    assert timeline[-1].event == "access-applied"
    assert timeline[-1].detail["applied"] == 1
    assert timeline[-1].detail["complete"] is True


def test_stale_plan_refused(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay", 2), revoke("luisa.fernandez@kiwicorp.co", "kiwipay", 3)])
    kit.approve(path)
    kit.mutations().remove_group("kiwipay", "luisa.fernandez@kiwicorp.co")
    kit.service.access.log.clear()

    with pytest.raises(StalePlan) as caught:
        apply(kit, path)

    assert caught.value.problems == ["row 3: luisa.fernandez@kiwicorp.co is no longer a member of group kiwipay (planned as user)"]
    assert caught.value.exit_code == 5
    assert kit.service.access.records() == []


def test_role_changed_makes_stale(kit: Kit) -> None:
    path = kit.write([revoke("luisa.fernandez@kiwicorp.co", "kiwipay", 2)])
    kit.approve(path)
    kit.member("kiwipay", "luisa.fernandez@kiwicorp.co").role = "vulnerability_manager"

    with pytest.raises(StalePlan) as caught:
        apply(kit, path)

    assert caught.value.problems == ["row 2: luisa.fernandez@kiwicorp.co's role in group kiwipay is now vulnerability_manager, not user"]


def test_confirmation_for_dangerous(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay"), revoke("luisa.fernandez@kiwicorp.co", "kiwipay")])
    kit.approve(path)
    questions: list[str] = []

    def refuse(question: str) -> None:
        questions.append(question)
        raise PreconditionFailed("no")

    with pytest.raises(PreconditionFailed):
        apply(kit, path, confirm=refuse)

    assert questions == ["1 pending operation(s) are dangerous (see 'helpctl access plan show'); apply the plan?"]
    assert kit.service.access.records() == []


def test_refusal_reported_not_retried(kit: Kit) -> None:
    path = kit.write([
        Intent("grant", "group", "new.dev@kiwicorp.co", group="kiwiapp", role="Vulnerability Manager", line=2),
        revoke("luisa.fernandez@kiwicorp.co", "kiwipay", 3),
    ])
    kit.approve(path)

    report = apply(kit, path)

    assert not report.complete
    assert report.failed == 1
    assert report.applied == 1
    assert report.failures == [{
        "row": 2,
        "operation": "grant new.dev@kiwicorp.co to group kiwiapp as VULNERABILITY_MANAGER",
        "outcome": "failed",
        "message": "Exception - Invalid role or not enough permissions to grant role: vulnerability_manager",
    }]
    assert [item.outcome for item in kit.service.access.records("refused")] == ["refused"]


def test_reinvite_within_minute_reported(kit: Kit) -> None:
    pending = next(email for email, member in kit.service.story.groups["bigcorp001"].members.items() if member.invitation_state == "PENDING")
    intent = Intent("grant", "group", pending, group="bigcorp001", role=kit.member("bigcorp001", pending).role, resend=True)
    first = kit.write([intent], "first.json")
    kit.approve(first)
    assert apply(kit, first).applied == 1
    second = kit.write([intent], "second.json")
    kit.approve(second)

    report = apply(kit, second)

    assert report.failed == 1
    assert report.failures[0]["message"] == "Exception - The previous invitation to this user was requested less than a minute ago"
    grants = [item.outcome for item in kit.service.access.records() if item.mutation == "grantStakeholderAccess"]
    assert grants == ["applied", "refused"]


def test_server_errors_settled_then_retried(kit: Kit) -> None:
    path, pairs = bulk(kit, 12)
    kit.approve(path)
    chance = random.Random(3)
    # About a third of the mutations get an HTML 502 from the "proxy" before they run.
    kit.service.access.hook = lambda phase, record: phase == "received" and chance.random() < 0.3

    report = apply(kit, path)

    assert report.complete, report.failures
    assert sorted(applied_pairs(kit)) == sorted((group, email) for email, group in pairs)
    assert report.concurrency["decreases"] >= 1


def test_lost_response_settled_by_state(kit: Kit, tmp_path: Path) -> None:
    (tmp_path / "slow").mkdir()
    slow = make_kit(kit.running, tmp_path / "slow")
    slow.client = make_client(kit.running, read=0.3, retries=0)
    slow.reader = StateReader(make_client(kit.running))
    slow.settings.settle_delay = 0.5
    path = slow.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])
    slow.approve(path)
    kit.service.apply_knobs({"mutation_latency": 0.5})

    report = ApplyRun(path, mutations=slow.mutations(), reader=slow.reader, operator=OPERATOR, settings=slow.settings, store=slow.store).run()

    assert report.complete
    assert report.applied == 1
    assert len(kit.applied()) == 1
    results = list(csv.reader(open(report.results_path, encoding="utf-8")))
    assert "response lost" in results[1][3]


def test_dropped_request_retried_once(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])
    kit.approve(path)
    drops = [True]
    kit.service.access.hook = lambda phase, record: phase == "received" and bool(drops) and drops.pop()

    report = apply(kit, path)

    assert report.complete
    assert [item.outcome for item in kit.service.access.records()] == ["dropped", "applied"]


def test_unanswered_limit_fails_operation(kit: Kit) -> None:
    kit.settings.unknown_retries = 1
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])
    kit.approve(path)
    kit.service.access.hook = lambda phase, record: phase == "received"

    report = apply(kit, path)

    assert report.failed == 1
    assert report.failures[0]["message"].startswith("gave up after 2 attempts")
    assert [item.outcome for item in kit.service.access.records()] == ["dropped", "dropped"]


def test_effect_not_visible_reported(kit: Kit) -> None:
    path = kit.write([revoke("luisa.fernandez@kiwicorp.co", "kiwipay")])
    kit.approve(path)
    story = kit.service.story
    snapshot = kit.member("kiwipay", "luisa.fernandez@kiwicorp.co")

    def restore(phase: str, record: dict) -> bool:
        if phase == "applied":
            story.groups["kiwipay"].members["luisa.fernandez@kiwicorp.co"] = snapshot
        return False

    kit.service.access.hook = restore
    report = apply(kit, path)

    assert report.not_visible == 1
    assert not report.complete
    assert report.failures[0]["outcome"] == "not_visible"


def test_token_rejected_stops_run(kit: Kit) -> None:
    path, pairs = bulk(kit, 6)
    kit.approve(path)
    tokens = kit.service.story.tokens
    saved = dict(tokens)

    def revoke_token(phase: str, record: dict) -> bool:
        if phase == "applied" and len(kit.applied()) >= 2:
            tokens.clear()
        return False

    kit.service.access.hook = revoke_token
    with pytest.raises(AuthError):
        apply(kit, path)
    kit.service.access.hook = None
    tokens.update(saved)
    done = len(kit.applied())

    report = apply(kit, path, resume=True)

    assert report.complete
    assert report.done_before == done
    assert len(kit.applied()) == 6


# ----- journal and resume -----


def test_apply_twice_needs_resume(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])
    kit.approve(path)
    apply(kit, path)

    with pytest.raises(PreconditionFailed) as caught:
        apply(kit, path)
    report = apply(kit, path, resume=True)

    assert "--resume" in caught.value.hint
    assert report.done_before == 1
    assert report.applied == 0
    assert len(kit.applied()) == 1


def test_resume_settles_unknown(kit: Kit) -> None:
    path, pairs = bulk(kit, 3)
    kit.approve(path)
    loaded = PlanFile(path)
    operations = list(loaded.operations())
    journal_path = plan.companion(path, ".journal.jsonl")
    with journal.Journal(journal_path) as writer:
        writer.append({"type": "run", "plan": loaded.id, "content_hash": loaded.stored_hash})
        writer.append({"type": "start", "op": 0})
        writer.append({"type": "start", "op": 1})
    # The first crashed attempt reached the platform; the second never did.
    kit.mutations().remove_group(operations[0]["group"], operations[0]["email"])

    report = apply(kit, path, resume=True)

    assert report.settled == 1
    assert report.applied == 2
    assert report.complete
    emails = [item.arguments["userEmail"] for item in kit.applied()]
    assert sorted(emails) == sorted(operation["email"] for operation in operations)


def test_resume_audits_unaudited(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])
    kit.approve(path)
    loaded = PlanFile(path)
    with journal.Journal(plan.companion(path, ".journal.jsonl")) as writer:
        writer.append({"type": "start", "op": 0})
        writer.append({"type": "end", "op": 0, "outcome": "applied", "message": ""})
    kit.mutations().remove_group("kiwipay", "pedro.rios@kiwicorp.co")

    apply(kit, path, resume=True)

    entries = [entry for entry in AuditLog().entries() if entry["action"] == "access.revoke"]
    assert len(entries) == 1
    assert entries[0]["detail"]["message"].startswith("recorded on resume")
    assert entries[0]["request_id"] == f"{loaded.id}#0"


def test_journal_locked_by_other_apply(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])
    kit.approve(path)

    with journal.Journal(plan.companion(path, ".journal.jsonl")):
        with pytest.raises(PreconditionFailed) as caught:
            apply(kit, path)

    assert "another helpctl process is applying this plan" in caught.value.message


def test_journal_group_commit(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with journal.Journal(path) as writer:
        threads = [threading.Thread(target=lambda number=number: [writer.append({"type": "start", "op": number * 100 + index}) for index in range(100)]) for number in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    state = journal.read_state(path, 800)
    assert state.count(journal.UNKNOWN) == 800
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_journal_torn_line_dropped(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text('{"type": "start", "op": 0}\n{"type": "end", "op": 0, "outc')
    assert journal.read_state(path, 1).status[0] == journal.UNKNOWN

    with journal.Journal(path) as writer:
        writer.append({"type": "end", "op": 0, "outcome": "applied"})

    assert journal.read_state(path, 1).status[0] == journal.APPLIED
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_journal_damage_reported(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text('{"type": "start", "op": 0}\nnot json\n{"type": "start", "op": 0}\n')

    with pytest.raises(PreconditionFailed) as caught:
        journal.read_state(path, 1)

    assert "damaged at line 2" in caught.value.message


# ----- adaptive concurrency -----


def test_limit_slow_start_then_ceiling() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(maximum=64, initial=4, clock=clock)
    for _ in range(20):
        limit.on_success(0.05)
    assert limit.current == 24

    limit.on_rate_limited(still_in_flight=16)

    assert limit.ceiling == 16
    assert limit.current == 14


def test_limit_one_decrease_per_round_trip() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(maximum=64, initial=32, clock=clock)
    limit.on_rate_limited(still_in_flight=20)
    limit.on_rate_limited(still_in_flight=18)
    limit.on_rate_limited(still_in_flight=16)

    assert limit.decreases == 1
    assert limit.ceiling == 16
    assert limit.current == 14


def test_limit_recovers_and_probes() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(maximum=64, initial=20, clock=clock)
    limit.on_rate_limited(still_in_flight=16)
    limit.on_success(0.05)
    assert limit.current == 15

    # Above the ceiling the limit grows by one every four round trips (4 x 16 successes).
    for _ in range(40):
        limit.on_success(0.05)
    assert limit.current == 16
    for _ in range(80):
        limit.on_success(0.05)
    assert limit.current == 17

    for _ in range(200):
        limit.on_success(0.05, probe=False)
    assert limit.current == 17


def test_limit_holds_after_probe() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(maximum=64, initial=20, clock=clock)
    limit.on_rate_limited(still_in_flight=16)
    for _ in range(120):
        limit.on_success(0.05)
    assert limit.current == 17
    clock.now += 1

    limit.on_rate_limited(still_in_flight=16)

    assert limit.current == 16
    assert limit.ceiling == 16


def test_limit_backs_off_when_capacity_drops() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(maximum=64, initial=20, clock=clock)
    limit.on_rate_limited(still_in_flight=16)
    for _ in range(10):
        limit.on_success(0.05)
    clock.now += 1

    limit.on_rate_limited(still_in_flight=8)

    assert limit.ceiling == 8
    assert limit.current == 7


def test_limit_halves_on_errors() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(maximum=64, initial=16, clock=clock)
    limit.on_error()
    limit.on_error()
    clock.now += 1
    limit.on_error()

    assert limit.current == 4
    assert limit.decreases == 2


def test_limit_capped_by_maximum() -> None:
    limit = ConcurrencyLimit(maximum=6, initial=10)
    for _ in range(50):
        limit.on_success(0.01)

    assert limit.current == 6


# ----- undo -----


def test_undo_inverts_applied(kit: Kit) -> None:
    (developer, group), = people_in_groups(kit.service, 1)
    responsibility = kit.member(group, developer).responsibility
    path = kit.write([
        revoke("pedro.rios@kiwicorp.co", "kiwipay", 2),
        Intent("set-role", "group", developer, group=group, role="Vulnerability Manager", responsibility="Tech Lead", line=3),
        Intent("grant", "group", "new.dev@bigcorp.example", group="bigcorp002", role="User", line=4),
        Intent("grant", "group", "new.dev@kiwicorp.co", group="kiwiapp", role="Vulnerability Manager", line=5),
    ])
    kit.approve(path)
    assert apply(kit, path).failed == 1  # the customer_manager may not grant Vulnerability Manager

    request = undo_intents(PlanFile(path))
    draft = kit.draft(request.intents)
    operations = {operation["email"]: operation for operation in draft.operations}

    assert request.undone == 3
    assert request.not_undone == 1
    assert operations["pedro.rios@kiwicorp.co"]["action"] == "grant"
    assert operations["pedro.rios@kiwicorp.co"]["role"] == "USER"
    assert operations["pedro.rios@kiwicorp.co"]["responsibility"] == "Developer"
    assert operations[developer]["action"] == "set-role"
    assert operations[developer]["role"] == "USER"
    assert operations[developer]["responsibility"] == responsibility
    assert operations["new.dev@bigcorp.example"]["action"] == "revoke"
    assert "new.dev@kiwicorp.co" not in operations
    assert any("new PENDING invitation" in note for note in request.notes)
    assert any("deleted their account" in note for note in request.notes)


def test_undo_needs_journal(kit: Kit) -> None:
    path = kit.write([revoke("pedro.rios@kiwicorp.co", "kiwipay")])

    with pytest.raises(PreconditionFailed) as caught:
        undo_intents(PlanFile(path))

    assert "was never applied" in caught.value.message


def test_undo_organization_revoke_regrants_groups(kit: Kit) -> None:
    draft = kit.draft([Intent("revoke", "organization", "luisa.fernandez@kiwicorp.co", organization="kiwicorp")])

    found = inverse(draft.operations[0])

    assert [(intent.action, intent.scope, intent.group, intent.role) for intent in found.intents] == [
        ("grant", "organization", None, "USER"),
        ("grant", "group", "kiwiapp", "USER"),
        ("grant", "group", "kiwipay", "USER"),
    ]


def test_undo_grant_is_revoke() -> None:
    operation = {
        "index": 0, "line": 5, "action": "grant", "scope": "group", "email": "a@b.co", "group": "g1",
        "organization": "o", "organization_id": "ORG#1", "role": "USER", "precondition": {"member": False, "role": None},
    }

    found = inverse(operation)

    assert [(intent.action, intent.group) for intent in found.intents] == [("revoke", "g1")]
    assert describe(operation) == "grant a@b.co to group g1 as USER"
