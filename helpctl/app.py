"""The Typer application: global options and the command groups.

Each command group lives in its own module under `helpctl/commands/`. Those modules import
only Typer and helpctl's light modules at the top; clients (gql, boto3, python-gitlab,
keyring, httpx) are imported inside the commands that use them.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any, Optional

import typer

from helpctl import __version__
from helpctl.context import App
from helpctl.output import Output

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 1 failure, 2 bad input or usage, 3 partial result, "
    "4 authentication, 5 precondition failed, 130 interrupted."
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"helpctl {__version__}\n")
        raise typer.Exit()


def _configure_logging(verbose: int, quiet: int) -> None:
    """Send log records to stderr with secrets masked; -v shows helpctl's requests."""
    from helpctl.credentials import mask

    class MaskingFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return mask(super().format(record))

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(MaskingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    level = logging.WARNING
    if verbose >= 1:
        level = logging.DEBUG
    elif quiet >= 2:
        level = logging.ERROR
    logging.getLogger("helpctl").setLevel(level)
    # Library request logs (httpx, python-gitlab's urllib3, botocore) only with -vv.
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)


def root_callback(
    context: typer.Context,
    profile: Annotated[
        Optional[str],
        typer.Option("--profile", "-p", envvar="HELPCTL_PROFILE", help="Profile to use (default: sandbox)."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print results as JSON on stdout.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="Show requests (-vv: library logs too).")] = 0,
    quiet: Annotated[int, typer.Option("--quiet", "-q", count=True, help="Fewer messages (-qq: errors only).")] = 0,
    no_input: Annotated[bool, typer.Option("--no-input", help="Never prompt; fail where a confirmation is needed.")] = False,
    traceback: Annotated[bool, typer.Option("--traceback", help="Show tracebacks of errors (secrets masked).")] = False,
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """helpctl: triage cases of the Fluid Attacks Help Channel."""
    _configure_logging(verbose, quiet)
    output = Output(json_mode=json_output, quiet=quiet, verbose=verbose)
    context.obj = App(profile_name=profile, output=output, no_input=no_input)


# Command name: (module under helpctl.commands, whether it is a group of subcommands).
COMMANDS: dict[str, tuple[str, bool]] = {
    "case": ("case", True),
    "probe": ("probe", True),
    "triage": ("triage", False),
    "classify": ("classify", False),
    "file": ("file", False),
    "notify": ("notify", False),
    "sync": ("sync", False),
    "consult": ("consult", False),
    "report": ("report", True),
    "access": ("access", True),
    "profile": ("profile", True),
    "auth": ("auth", True),
    "doctor": ("doctor", False),
    "audit": ("audit", True),
    "sandbox": ("sandbox", True),
    "demo": ("demo", False),
}


def build_app(only: str | None = None, subcommand: str | None = None) -> typer.Typer:
    """Build the app with every command, or with `only` that command (and `subcommand` of it).

    Typer reads the signature of every declared command at start-up, about 3 ms each, so a
    narrow app starts faster.
    """
    import importlib

    app = typer.Typer(
        name="helpctl",
        help="Triage cases of the Fluid Attacks Help Channel.",
        epilog=EXIT_CODES_HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        pretty_exceptions_show_locals=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        rich_markup_mode=None,
    )
    app.callback()(root_callback)
    names = [only] if only in COMMANDS else list(COMMANDS)
    for name in names:
        module_name, is_group = COMMANDS[name]
        module = importlib.import_module(f"helpctl.commands.{module_name}")
        if is_group:
            app.add_typer(_narrow(module.app, subcommand) if only else module.app, name=name)
        else:
            module.register(app)
    return app


def _narrow(group: typer.Typer, subcommand: str | None) -> typer.Typer:
    """Return a copy of `group` that declares only `subcommand`, when the group has it."""
    matches = [info for info in group.registered_commands if info.name == subcommand]
    if not matches:
        return group
    narrowed = typer.Typer(help=group.info.help, no_args_is_help=True)
    narrowed.registered_commands = matches
    return narrowed


def _command_words(arguments: list[str]) -> tuple[str | None, str | None]:
    """Return the first two words of the command line, skipping global options and their values.

    Only the first two positions matter; a later word may be an argument such as a case id.
    """
    takes_value = {"--profile", "-p"}
    words: list[str] = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
        elif argument in takes_value:
            skip = True
        elif argument in ("--help", "-h"):
            break
        elif not argument.startswith("-"):
            words.append(argument)
            if len(words) == 2:
                break
        elif words:
            break
    words += [None, None]
    return words[0], words[1]


def build_command(arguments: list[str] | None = None) -> Any:
    import os

    only = subcommand = None
    if arguments is not None and not os.environ.get("_HELPCTL_COMPLETE"):
        only, subcommand = _command_words(arguments)
    return typer.main.get_command(build_app(only, subcommand))
