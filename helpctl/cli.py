"""Entry point and the single error boundary.

`helpctl --version` is answered before Typer is imported, so it starts about as fast as
Python itself. Everything else builds the Typer app (`helpctl.app`) and runs it here, where
expected failures (HelpctlError) become one line on stderr, or a JSON error object under
`--json`, and the exit code declared in `helpctl.errors.ExitCode`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from helpctl import __version__
from helpctl.errors import ExitCode, HelpctlError

logger = logging.getLogger("helpctl")

# Options that change how errors are shown; read from argv before parsing, so that a
# parse error is also reported the way the engineer asked.
_JSON_FLAG = "--json"
_TRACEBACK_FLAG = "--traceback"


# Global options that people also type after the command (`helpctl case list --json`).
# They are moved in front of it, where Typer expects them. The value tells whether the
# option takes an argument.
_GLOBAL_OPTIONS = {
    "--json": False, "--no-input": False, "--traceback": False, "--verbose": False, "-v": False,
    "-vv": False, "--quiet": False, "-q": False, "-qq": False, "--profile": True, "-p": True,
}


def hoist_global_options(arguments: list[str]) -> list[str]:
    """Move global options found after the command word in front of it."""
    leading: list[str] = []
    rest: list[str] = []
    seen_command = False
    index = 0
    while index < len(arguments):
        argument = arguments[index]
        if argument == "--":
            rest += arguments[index:]
            break
        takes_value = _GLOBAL_OPTIONS.get(argument.split("=", 1)[0])
        if seen_command and takes_value is not None:
            leading.append(argument)
            if takes_value and "=" not in argument and index + 1 < len(arguments):
                leading.append(arguments[index + 1])
                index += 1
        else:
            if not argument.startswith("-"):
                seen_command = True
            rest.append(argument)
        index += 1
    return leading + rest


def main(argv: Sequence[str] | None = None) -> int:
    arguments = hoist_global_options(list(sys.argv[1:] if argv is None else argv))
    if arguments in (["--version"], ["-V"]):
        sys.stdout.write(f"helpctl {__version__}\n")
        return ExitCode.OK

    from helpctl import output

    output.make_streams_safe()
    output.json_written = False
    json_errors = _JSON_FLAG in arguments
    show_traceback = _TRACEBACK_FLAG in arguments or bool(os.environ.get("HELPCTL_TRACEBACK"))
    try:
        return _run(arguments)
    except HelpctlError as error:
        return _report(error, json_errors, show_traceback)
    except KeyboardInterrupt:
        sys.stderr.write("helpctl: interrupted\n")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except Exception as error:  # the boundary: a bug still ends in one masked line
        return _report_bug(error, json_errors, show_traceback)


def _run(arguments: list[str]) -> int:
    import typer

    from helpctl.app import build_command
    from helpctl.errors import UsageError

    command = build_command(arguments)
    stdout = sys.stdout
    try:
        # Without standalone mode Typer returns an exit code instead of raising, such as
        # 130 after Ctrl-C.
        result = command.main(args=arguments, prog_name="helpctl", standalone_mode=False)
        if isinstance(result, int) and result == ExitCode.INTERRUPTED:
            sys.stderr.write("helpctl: interrupted\n")
            return ExitCode.INTERRUPTED
    except typer.Exit as done:
        return int(done.exit_code)
    except SystemExit:
        # Typer turns a write to a closed pipe into exit 1 and wraps the streams; a reader
        # that stopped early (`| head`) is not a failure.
        if sys.stdout is not stdout and type(sys.stdout).__name__ == "PacifyFlushWrapper":
            sys.stdout, sys.stderr = stdout, sys.__stderr__
            return _quiet_broken_pipe()
        raise
    except typer.Abort as error:
        raise KeyboardInterrupt from error
    except typer.TyperException as error:
        if type(error).__name__ == "NoArgsIsHelpError":
            sys.stdout.write(error.format_message() + "\n")
            return ExitCode.OK
        if getattr(error, "exit_code", 1) != ExitCode.USAGE:
            raise HelpctlError(error.format_message()) from error
        context = getattr(error, "ctx", None)
        where = context.command_path if context is not None else "helpctl"
        raise UsageError(error.format_message(), hint=f"see '{where} --help'") from error
    finally:
        _flush_stdout()
    return ExitCode.OK


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_broken_pipe()
        raise


def _quiet_broken_pipe() -> int:
    """Stop quietly when the reader (`head`, a pager) went away, with no shutdown noise."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return ExitCode.OK


def _report(error: HelpctlError, json_errors: bool, show_traceback: bool) -> int:
    from helpctl.credentials import mask

    if show_traceback:
        _print_traceback()
    from helpctl import output

    if json_errors and not output.json_written:
        import json

        payload = {name: mask(value) if isinstance(value, str) else value for name, value in error.as_dict().items()}
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    line = f"helpctl: error: {mask(error.message)}"
    if error.hint:
        line += f" ({mask(error.hint)})"
    sys.stderr.write(line + "\n")
    return int(error.exit_code)


def _report_bug(error: Exception, json_errors: bool, show_traceback: bool) -> int:
    from helpctl.credentials import mask

    if show_traceback:
        _print_traceback()
    message = mask(f"{type(error).__name__}: {error}")
    if json_errors:
        import json

        sys.stdout.write(json.dumps({"error": "internal", "message": message, "exit_code": 1}) + "\n")
    sys.stderr.write(f"helpctl: internal error: {message} (rerun with --traceback and report it)\n")
    return ExitCode.FAILURE


def _print_traceback() -> None:
    import traceback

    from helpctl.credentials import mask

    sys.stderr.write(mask(traceback.format_exc()))


if __name__ == "__main__":
    raise SystemExit(main())
