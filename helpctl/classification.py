"""Classify a stored case and record the result, rules and override in it."""

from __future__ import annotations

from typing import Any

from helpctl.cases.store import CaseStore
from helpctl.classify import classify
from helpctl.config.settings import Profile
from helpctl.findings import isoformat, utc_now


def classify_case(
    store: CaseStore,
    case_id: str,
    profile: Profile,
    actor: str,
    override_label: str | None = None,
    override_reason: str | None = None,
) -> dict[str, Any]:
    """Run the profile's rules over the case's findings; an override wins but keeps the rules' vote."""
    with store.edit(case_id) as case:
        findings = case.finding_objects()
        result = classify(case.rule_fields(), findings, profile.classify.rules)
        record: dict[str, Any] = {
            "label": result.label,
            "rules_label": result.label,
            "rules": [
                {"name": rule.name, "label": rule.label, "description": rule.description, "findings": rule.findings}
                for rule in result.fired
            ],
            "at": isoformat(utc_now()),
            "actor": actor,
            "profile": profile.name,
            # Checks that could not look: the label may lack the evidence they would give.
            "incomplete_findings": [finding.key for finding in findings if not finding.complete],
        }
        if override_label:
            record["label"] = override_label
            record["override"] = {"label": override_label, "reason": override_reason, "actor": actor, "at": record["at"]}

        case.classification = record
        case.record(actor, "classified", label=record["label"], rules=[rule.name for rule in result.fired], override=bool(override_label))

    record["summaries"] = {finding.key: finding.summary for finding in findings}
    return record
