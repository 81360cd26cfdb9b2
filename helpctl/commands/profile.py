"""`helpctl profile ...`: see which profiles exist and what the active one says."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Optional

import typer

from helpctl import paths
from helpctl.context import App

app = typer.Typer(help="List and show profiles.", no_args_is_help=True)


@app.command("list")
def list_profiles(context: typer.Context) -> None:
    """List the shipped profiles and your own; the active one is marked."""
    from helpctl.config.profiles import active_profile_name, profile_paths

    application: App = context.obj
    active = active_profile_name(application.profile_option)
    rows = []
    for name, path in sorted(profile_paths().items()):
        origin = "shipped" if path.parent == paths.SHIPPED_PROFILES_DIR else "user"
        rows.append({"name": name, "active": name == active, "origin": origin, "path": str(path)})

    output = application.output
    if output.json_mode:
        output.json(rows)
        return
    output.table(["", "name", "origin", "path"], [("*" if row["active"] else "", row["name"], row["origin"], row["path"]) for row in rows])
    output.info(f"your profiles go in {paths.user_profiles_dir()}")


@app.command("show")
def show(
    context: typer.Context,
    name: Annotated[Optional[str], typer.Argument(help="Profile name (default: the active one).")] = None,
) -> None:
    """Show a profile's effective settings after 'extends' and environment overrides."""
    from helpctl.config.profiles import load_profile

    application: App = context.obj
    profile = load_profile(name or application.profile_option)
    data = public_settings(profile)
    output = application.output
    if output.json_mode:
        output.json(data)
        return

    import yaml

    output.line(f"# {profile.name} ({profile.source})")
    output.line(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())


def public_settings(profile: Any) -> dict[str, Any]:
    """Return the profile as a dict, with fixed tokens replaced by a note.

    The sandbox's tokens are public, but printing token-shaped strings teaches people to paste them.
    """
    data = dataclasses.asdict(profile)
    for section in ("platform", "gitlab"):
        if data.get(section, {}).get("fixed_token"):
            data[section]["fixed_token"] = "(the sandbox's public token)"
    return data
