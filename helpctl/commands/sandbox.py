"""`helpctl sandbox serve`: run the loopback stand-ins in the foreground."""

from __future__ import annotations

import threading
from typing import Annotated

import typer

from helpctl.context import App
from helpctl.errors import HelpctlError

app = typer.Typer(help="Run the loopback stand-ins of every service.", no_args_is_help=True)


@app.command("serve")
def serve(
    context: typer.Context,
    free_ports: Annotated[bool, typer.Option("--free-ports", help="Use free ports instead of the sandbox profile's fixed ones.")] = False,
    bulk: Annotated[
        bool, typer.Option("--bulk/--no-bulk", help="Add the generated organization bigcorp (300 people) for bulk access changes.")
    ] = True,
) -> None:
    """Serve the sandbox on 127.0.0.1 until Ctrl-C; the sandbox profile points at it."""
    from helpctl.sandbox import Sandbox

    application: App = context.obj
    sandbox = Sandbox(fixed_ports=not free_ports, platform={"bigcorp": bulk})
    try:
        sandbox.start()
    except OSError as error:
        raise HelpctlError(
            f"cannot listen on the sandbox ports: {error.strerror}",
            hint="another sandbox may be running; stop it or use --free-ports",
        ) from error

    try:
        _print_endpoints(application, sandbox, free_ports)
        threading.Event().wait()
    except KeyboardInterrupt:
        application.output.info("stopping the sandbox")
    finally:
        sandbox.stop()


def _print_endpoints(application: App, sandbox, free_ports: bool) -> None:
    output = application.output
    environment = sandbox.environment()
    if output.json_mode:
        output.json({"services": {name: sandbox.url(name) for name in sandbox.running}, "environment": environment})
    else:
        output.table(["service", "url"], [(name, sandbox.url(name)) for name in sandbox.running])
        if free_ports:
            output.line("Point the sandbox profile at these servers with:")
            for name, value in environment.items():
                output.line(f"  export {name}={value}")
    output.info("sandbox running on 127.0.0.1; tune faults with POST <url>/_sandbox/knobs; Ctrl-C stops it")
