"""Classification rules: grammar, evaluation, ranking and the findings behind each rule."""

from __future__ import annotations

import pytest

from helpctl.classify import classify, compile_condition
from helpctl.config.profiles import load_profile
from helpctl.config.settings import RuleSettings
from helpctl.findings import Finding


def finding(check: str, outcome: str = "ok", **signals) -> Finding:
    return Finding(
        source="platform",
        check=check,
        subject="kiwiapp",
        outcome=outcome,
        summary=check,
        signals={f"platform.{name}": value for name, value in signals.items()},
    )


CASE = {"kind": "problem", "text": "The list is empty", "subject": "List empty", "body": ""}


@pytest.mark.parametrize(
    ("condition", "held"),
    [
        ({"signal": "platform.count", "equals": 3}, True),
        ({"signal": "platform.count", "not_equals": 3}, False),
        ({"signal": "platform.count", "gt": 2}, True),
        ({"signal": "platform.count", "gte": 4}, False),
        ({"signal": "platform.count", "lt": 4}, True),
        ({"signal": "platform.count", "lte": 2}, False),
        ({"signal": "platform.state", "in": ["PENDING", "UNREGISTERED"]}, True),
        ({"signal": "platform.state", "contains": "END"}, True),
        ({"signal": "platform.state", "matches": "^PEND"}, True),
        ({"signal": "platform.state", "exists": True}, True),
        ({"signal": "platform.other", "exists": False}, True),
        ({"signal": "platform.other", "equals": None}, False),
        ({"signal": "platform.state", "gt": 1}, False),
        ({"not": {"signal": "platform.count", "equals": 3}}, False),
        ({"all": [{"signal": "platform.count", "equals": 3}, {"case": "kind", "equals": "problem"}]}, True),
        ({"all": [{"signal": "platform.count", "equals": 3}, {"case": "kind", "equals": "feature-request"}]}, False),
        ({"any": [{"signal": "platform.count", "equals": 9}, {"case": "text", "matches": "(?i)empty"}]}, True),
        ({"outcome": "ok", "source": "platform"}, True),
        ({"outcome": ["failed", "timed_out"], "source": "platform"}, False),
        ({"outcome": "ok", "source": "logs"}, False),
    ],
)
def test_conditions(condition, held):
    findings = [finding("membership", count=3, state="PENDING")]
    ok, _ = compile_condition(condition)(CASE, findings)
    assert ok is held


def test_signal_scoped_to_check():
    findings = [finding("membership", count=3), finding("group", count=1)]
    held, keys = compile_condition({"signal": "platform.count", "gte": 1, "check": "group"})(CASE, findings)
    missed, _ = compile_condition({"signal": "platform.count", "gte": 2, "check": "group"})(CASE, findings)

    assert held
    assert keys == ["platform.group:kiwiapp"]
    assert not missed


def test_booleans_are_not_numbers():
    findings = [finding("group", active=True)]
    ok, _ = compile_condition({"signal": "platform.active", "gte": 1})(CASE, findings)
    assert ok is False


@pytest.mark.parametrize(
    "condition",
    [
        "text",
        {},
        {"signal": "platform.x"},
        {"signal": "platform.x", "equals": 1, "gt": 2},
        {"signal": "nodot", "equals": 1},
        {"signal": "platform.x", "in": "notalist"},
        {"signal": "platform.x", "gt": "3"},
        {"signal": "platform.x", "matches": "("},
        {"all": []},
        {"all": [{"signal": "platform.x", "equals": 1}], "extra": 1},
        {"outcome": "exploded"},
        {"case": "colour", "equals": "red"},
        {"whatever": 1},
    ],
)
def test_invalid_conditions_rejected(condition):
    with pytest.raises(ValueError):
        compile_condition(condition)


def test_findings_behind_rule_are_listed():
    findings = [finding("membership", state="PENDING"), finding("group", state="REGISTERED")]
    ok, keys = compile_condition({"signal": "platform.state", "equals": "PENDING"})(CASE, findings)

    assert ok
    assert keys == ["platform.membership:kiwiapp"]


def rule(name: str, label: str, when) -> RuleSettings:
    return RuleSettings(name=name, label=label, when=when, description=name)


def test_incident_outranks_bug_outranks_feature_outranks_answered():
    findings = [finding("vulnerabilities", mismatch=True, users=2)]
    rules = [
        rule("a", "answered", {"signal": "platform.mismatch", "equals": True}),
        rule("f", "feature", {"case": "kind", "equals": "problem"}),
        rule("b", "bug", {"signal": "platform.mismatch", "equals": True}),
        rule("i", "incident", {"signal": "platform.users", "gte": 2}),
    ]

    result = classify(CASE, findings, rules)

    assert result.label == "incident"
    assert [fired.name for fired in result.fired] == ["i", "b", "f", "a"]


def test_no_rule_fired_gives_no_label():
    result = classify(CASE, [], [rule("b", "bug", {"signal": "platform.x", "equals": 1})])
    assert result.label is None
    assert result.fired == []


def test_shipped_rules_answer_pending_invitation():
    profile = load_profile("sandbox")
    findings = [finding("membership", invitation_state="PENDING", invitation_pending_days=9, member_found=True)]

    result = classify(CASE, findings, profile.classify.rules)

    assert result.label == "answered"
    assert result.fired[0].name == "invitation-pending"


def test_mismatch_ignored_when_case_is_not_about_it():
    profile = load_profile("sandbox")
    case = dict(CASE, text="Carlos cannot log in to kiwiapp")
    findings = [finding("vulnerabilities", open_vulnerabilities_mismatch=True)]

    assert classify(case, findings, profile.classify.rules).label is None


def test_shipped_rules_catch_spanish_feature_request():
    profile = load_profile("sandbox")
    case = dict(CASE, kind="question", text="Hola, nos gustaría exportar los miembros; ¿podrían agregar esa opción?")

    assert classify(case, [], profile.classify.rules).label == "feature"


def test_shipped_rules_bug_beats_feature_wording():
    profile = load_profile("sandbox")
    case = dict(CASE, text="It would be nice if the vulnerabilities list worked")
    findings = [finding("vulnerabilities", open_vulnerabilities_mismatch=True)]

    assert classify(case, findings, profile.classify.rules).label == "bug"
