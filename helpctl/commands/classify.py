"""`helpctl classify CASE`: label a case from its evidence, with the reasons shown."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from helpctl.context import App
from helpctl.errors import UsageError

LABELS = ("incident", "bug", "feature", "answered")


def register(app: typer.Typer) -> None:
    app.command("classify")(classify)


def classify(
    context: typer.Context,
    case_id: Annotated[str, typer.Argument(metavar="CASE", help="Case id, or a unique prefix of one.")],
    label: Annotated[Optional[str], typer.Option("--as", help=f"Override the label: {', '.join(LABELS)}.")] = None,
    reason: Annotated[Optional[str], typer.Option("--reason", help="Why the override (required with --as).")] = None,
    cross_profile: Annotated[bool, typer.Option("--cross-profile", help="Run on a case opened under another profile.")] = False,
) -> None:
    """Classify a case as incident, bug, feature or answered with the profile's rules."""
    from helpctl.classification import classify_case

    application: App = context.obj
    if label is not None and label not in LABELS:
        raise UsageError(f"--as: {label!r} is not a label", hint=f"use one of: {', '.join(LABELS)}")
    if label is not None and not (reason or "").strip():
        raise UsageError("--as needs --reason", hint="say why the rules' label is overridden")
    if reason is not None and label is None:
        raise UsageError("--reason goes with --as", hint="add --as LABEL")

    case = application.store.load(case_id)
    application.check_case_profile(case, cross_profile)
    result = classify_case(application.store, case.id, application.profile, application.actor, label, reason)
    _show(application, case.id, result)


def _show(application: App, case_id: str, result: dict) -> None:
    output = application.output
    if output.json_mode:
        output.json({"case": case_id, **result})
        return

    label = result["label"]
    override = result.get("override")
    incomplete = result.get("incomplete_findings") or []
    if incomplete:
        output.warn(
            f"{len(incomplete)} findings did not complete ({', '.join(incomplete[:3])}"
            f"{', ...' if len(incomplete) > 3 else ''}): the label may lack their evidence; rerun 'helpctl triage {case_id}'"
        )
    if label is None:
        output.line(f"{case_id}: no rule fired")
        output.info("gather more evidence (helpctl probe platform), or set the label with --as LABEL --reason TEXT")
        return

    output.line(f"{case_id}: {label}" + (f" (override by {override['actor']}: {override['reason']})" if override else ""))
    for rule in result["rules"]:
        output.line(f"  {rule['label']:<9} {rule['name']}: {rule['description']}")
        for key in rule["findings"]:
            summary = result["summaries"].get(key, "")
            output.line(f"      {key}: {summary}")
    if label == "answered":
        output.info(f"the evidence answers the request: tell the requester and close with 'helpctl case close {case_id} --resolution ...'")
    else:
        output.info(f"next: helpctl file {case_id} --dry-run")
