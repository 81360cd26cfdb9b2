"""Attach the engineer's browser evidence to a case.

Screenshots are stored as they are. A HAR file is read, sanitised (cookies, tokens and
credentials removed) and only then stored; its requests become a `browser` finding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpctl.cases.store import CaseStore
from helpctl.probes import browser
from helpctl.probing import record_findings


def attach_files(store: CaseStore, case_id: str, files: list[Path], actor: str, components: dict[str, Any]) -> list[dict[str, Any]]:
    results = []
    findings = []
    for path in files:
        if path.suffix.lower() == ".har":
            result, finding = _attach_har(store, case_id, path, components)
            findings.append(finding)
        else:
            result = {"file": path.name, "stored": store.save_file(case_id, "attachments", path.name, path.read_bytes())}
        results.append(result)

    with store.edit(case_id) as case:
        for result in results:
            case.attachments.append(result["stored"])
            case.record(actor, "attached", file=result["file"], stored=result["stored"])
    if findings:
        record_findings(store, case_id, "browser", findings, actor)
    return results


def _attach_har(store: CaseStore, case_id: str, path: Path, components: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    document = browser.sanitise_har(browser.load_har(path.read_bytes(), path.name))
    stored = store.save_file(case_id, "attachments", path.name, json.dumps(document, ensure_ascii=False).encode("utf-8"))
    rows = list(browser.entry_rows(document))
    raw_ref, _ = store.write_rows(case_id, f"browser-{path.stem}", rows)
    finding = browser.analyse(rows, path.name, raw_ref, components)
    return {"file": path.name, "stored": stored, "finding": finding.to_dict()}, finding
