"""`helpctl triage CASE`: gather evidence from every source at once."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from helpctl.context import App
from helpctl.errors import PartialResult


def register(app: typer.Typer) -> None:
    app.command("triage")(triage)


def triage(
    context: typer.Context,
    case_id: Annotated[str, typer.Argument(metavar="CASE", help="Case id, or a unique prefix of one.")],
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Run only this probe (repeatable).")] = None,
    skip: Annotated[Optional[list[str]], typer.Option("--skip", help="Do not run this probe (repeatable).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds each probe may take.")] = 120.0,
    cross_profile: Annotated[bool, typer.Option("--cross-profile", help="Run on a case opened under another profile.")] = False,
) -> None:
    """Run every probe that applies to the case concurrently and summarise what they found."""
    from helpctl import triage as triage_flow

    application: App = context.obj
    names = triage_flow.select(only, skip)
    case = application.store.load(case_id)
    application.check_case_profile(case, cross_profile)
    application.announce_profile()
    runs = run_with_progress(application, case, names, timeout, {})
    finish(application, case.id, runs)


def run_with_progress(application: App, case: Any, names: list[str], timeout: float, options: dict[str, Any]) -> dict[str, Any]:
    """Run probes, showing a live table on a terminal and one line per finished probe otherwise."""
    from helpctl import triage as triage_flow

    output = application.output
    if output.json_mode or output.quiet or not sys.stderr.isatty():
        def progress(name: str, state: str, detail: str) -> None:
            if state == "done" and not output.json_mode:
                output.info(f"{name}: {detail}")

        return triage_flow.run_probes(case, application.profile, application.store, names, timeout=timeout, options=options, progress=progress)

    return _run_live(application, case, names, timeout, options)


def _run_live(application: App, case: Any, names: list[str], timeout: float, options: dict[str, Any]) -> dict[str, Any]:
    import time

    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from helpctl import triage as triage_flow

    states = {name: ("waiting", "") for name in names}
    started = time.monotonic()

    def render() -> Table:
        table = Table(title=f"Triage of {case.id}", header_style="bold")
        for column in ("probe", "state", "detail"):
            table.add_column(column)
        for name, (state, detail) in states.items():
            shown = f"running {time.monotonic() - started:.0f} s" if state == "running" else state
            table.add_row(name, shown, detail)
        return table

    with Live(render(), console=Console(stderr=True), refresh_per_second=4, transient=True) as live:
        def progress(name: str, state: str, detail: str) -> None:
            states[name] = (state, detail)
            live.update(render())

        return triage_flow.run_probes(case, application.profile, application.store, names, timeout=timeout, options=options, progress=progress)


def finish(application: App, case_id: str, runs: dict[str, Any]) -> None:
    """Store the findings, print the summary, and exit 3 when a probe did not complete."""
    from helpctl.probing import record_findings

    for name, run in runs.items():
        record_findings(application.store, case_id, name, run.findings, application.actor)
    _check_actor(application, runs)

    output = application.output
    if output.json_mode:
        output.json(
            {
                "case": case_id,
                "probes": {
                    name: {"outcome": run.outcome, "seconds": round(run.seconds, 2), "findings": [finding.to_dict() for finding in run.findings]}
                    for name, run in runs.items()
                },
            }
        )
    else:
        rows = [(name, run.counts, f"{run.seconds:.1f}", run.headline) for name, run in runs.items()]
        output.table(["source", "findings", "seconds", "headline"], rows, title=f"Evidence for {case_id}")

    incomplete = [name for name, run in runs.items() if any(not finding.complete for finding in run.findings)]
    if incomplete:
        raise PartialResult(
            f"{len(incomplete)} of {len(runs)} probes did not complete: {', '.join(incomplete)}",
            hint=f"see 'helpctl case show {case_id}'; rerun them with 'helpctl triage {case_id} --only NAME'",
        )


def _check_actor(application: App, runs: dict[str, Any]) -> None:
    """Warn when the platform token's owner is not the engineer the profile names as the actor."""
    engineer = application.profile.engineer.email.lower()
    run = runs.get("platform")
    for finding in run.findings if run else []:
        owner = str(finding.signals.get("platform.token_email") or "").lower()
        if owner and engineer and owner != engineer:
            application.output.warn(f"the platform token belongs to {owner}, but the profile names {engineer} as the engineer")
