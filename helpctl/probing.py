"""Store what a probe found in its case.

Probes run without holding the case lock (they may take a while); their findings are then
written in one locked edit. A finding replaces the earlier one of the same check, and the
earlier outcome and summary stay in the timeline.
"""

from __future__ import annotations

from helpctl.cases.model import Case
from helpctl.cases.store import CaseStore
from helpctl.findings import Finding


def record_findings(store: CaseStore, case_id: str, source: str, findings: list[Finding], actor: str) -> Case:
    with store.edit(case_id) as case:
        replaced = []
        for finding in findings:
            earlier = case.put_finding(finding)
            if earlier is not None:
                replaced.append({"key": earlier.key, "outcome": earlier.outcome, "summary": earlier.summary, "fetched_at": earlier.fetched_at})

        outcomes: dict[str, int] = {}
        for finding in findings:
            outcomes[finding.outcome] = outcomes.get(finding.outcome, 0) + 1
        case.record(actor, "probed", source=source, findings=len(findings), outcomes=outcomes, replaced=replaced)
    return case


def incomplete(findings: list[Finding]) -> list[Finding]:
    return [finding for finding in findings if not finding.complete]
