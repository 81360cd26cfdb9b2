"""`helpctl auth ...`: store, check and remove service tokens."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from helpctl import credentials
from helpctl.context import App
from helpctl.errors import UsageError

app = typer.Typer(help="Manage service tokens (keyring, environment or an opt-in 0600 file).", no_args_is_help=True)

ServiceName = Annotated[str, typer.Argument(help=f"Service: {', '.join(credentials.SERVICES)}.")]


def _check_service(service: str) -> str:
    service = service.strip().lower()
    if service not in credentials.SERVICES:
        raise UsageError(f"unknown service {service!r}", hint=f"use one of: {', '.join(credentials.SERVICES)}")
    return service


@app.command("login")
def login(
    context: typer.Context,
    service: ServiceName,
    store: Annotated[str, typer.Option("--store", help="Where to keep the token: keyring, or file (0600, opt-in).")] = "keyring",
    with_token: Annotated[bool, typer.Option("--with-token", help="Read the token from stdin instead of a prompt.")] = False,
    skip_check: Annotated[bool, typer.Option("--skip-check", help="Store without checking the token against the service.")] = False,
) -> None:
    """Check a token against the service, then store it for the active profile."""
    application: App = context.obj
    service = _check_service(service)
    if store not in ("keyring", "file"):
        raise UsageError(f"--store: {store!r} is not a store", hint="use keyring or file")

    token = _read_token(application, service, with_token)
    profile = application.profile
    application.announce_profile()
    if not skip_check:
        who = verify_token(profile, service, token)
        application.output.info(f"{service} accepted the token (user {who})")

    where = credentials.store(profile.name, service, token, store)
    application.output.success(f"stored the {service} token for profile {profile.name} in the {where}")


def _read_token(application: App, service: str, with_token: bool) -> str:
    if with_token or not sys.stdin.isatty():
        token = sys.stdin.readline().strip()
    elif application.no_input:
        raise UsageError("a token is needed and --no-input forbids the prompt", hint="pipe it with --with-token")
    else:
        token = typer.prompt(f"{service} token", hide_input=True, err=True).strip()
    if not token:
        raise UsageError("the token is empty", hint=f"create one in {service}'s settings and paste it")
    credentials.register_secret(token)
    return token


def verify_token(profile, service: str, token: str) -> str:
    """Call the service with the token; returns who it belongs to or raises AuthError."""
    from helpctl import services

    if service == "platform":
        me = services.platform_client(profile, token).me()
        return str(me.get("userEmail", "?"))
    user = services.gitlab_client(profile, token).current_user()
    return str(user.get("username", "?"))


@app.command("status")
def status(context: typer.Context) -> None:
    """Show which services have a token and where it comes from (never the value)."""
    application: App = context.obj
    profile = application.profile
    rows = []
    for service in credentials.SERVICES:
        fixed = getattr(getattr(profile, service), "fixed_token", None)
        found = credentials.find(profile.name, service, fixed)
        rows.append({"service": service, "configured": found is not None, "source": found.source if found else None})

    output = application.output
    if output.json_mode:
        output.json({"profile": profile.name, "services": rows})
        return
    output.info(f"profile: {profile.name}")
    hint = "run 'helpctl auth login {}' or set {}"
    output.table(
        ["service", "token", "source"],
        [
            (row["service"], "yes" if row["configured"] else "missing",
             row["source"] or hint.format(row["service"], credentials.environment_variable(row["service"])))
            for row in rows
        ],
    )


@app.command("logout")
def logout(context: typer.Context, service: ServiceName) -> None:
    """Remove a stored token (keyring and opt-in file) for the active profile."""
    application: App = context.obj
    service = _check_service(service)
    removed = credentials.forget(application.profile.name, service)
    if not removed:
        application.output.info(f"no stored {service} token for profile {application.profile.name}")
        return
    application.output.success(f"removed the {service} token from: {', '.join(removed)}")
