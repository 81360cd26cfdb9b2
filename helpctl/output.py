"""Terminal output: data on stdout, messages on stderr.

On a terminal, tables and colour come from rich; when stdout is piped, plain text with no
escape codes (rich is not even imported). `--json` prints one JSON document on stdout and
nothing else there. `NO_COLOR` (any non-empty value) turns colour off everywhere.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any


# Set once a command has printed its JSON document, so that the error boundary does not
# print a second document on stdout for a partial result.
json_written = False


def colour_allowed(stream: Any) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def make_streams_safe() -> None:
    """Replace, instead of raising on, characters the console's encoding lacks (cp1252, LANG=C)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="replace")
            except (ValueError, OSError):
                pass


class Output:
    def __init__(self, *, json_mode: bool = False, quiet: int = 0, verbose: int = 0) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.verbose = verbose
        self._stdout_console: Any = None
        self._stderr_console: Any = None

    @property
    def is_terminal(self) -> bool:
        return colour_allowed(sys.stdout)

    def _console(self, stderr: bool) -> Any:
        from rich.console import Console

        if stderr:
            if self._stderr_console is None:
                self._stderr_console = Console(stderr=True, no_color=not colour_allowed(sys.stderr), highlight=False)
            return self._stderr_console
        if self._stdout_console is None:
            self._stdout_console = Console(highlight=False)
        return self._stdout_console

    # Data (stdout)

    def json(self, data: Any) -> None:
        global json_written

        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        sys.stdout.write("\n")
        sys.stdout.flush()
        json_written = True

    def line(self, text: str = "") -> None:
        sys.stdout.write(text + "\n")

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
        if self.is_terminal:
            from rich.table import Table

            table = Table(title=title, header_style="bold", show_lines=False)
            for column in columns:
                table.add_column(column, overflow="fold")
            for row in rows:
                table.add_row(*["" if cell is None else str(cell) for cell in row])
            self._console(stderr=False).print(table)
            return

        self._plain_table(columns, rows)

    def _plain_table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Columns padded to their widest cell (at most 60), the last one left free."""
        cells = [[("" if cell is None else str(cell)).replace("\n", " ") for cell in row] for row in rows]
        widths = [len(column) for column in columns]
        if cells:
            widths = [min(max(width, *map(len, column)), 60) for width, column in zip(widths, zip(*cells))]
        header = [column.upper() for column in columns]
        lines = []
        for row in [header] + cells:
            padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths)] + row[-1:]
            lines.append("  ".join(padded).rstrip())
        sys.stdout.write("\n".join(lines) + "\n")

    def fields(self, pairs: Sequence[tuple[str, Any]]) -> None:
        """Print `name: value` lines for a record, skipping empty values."""
        shown = [(name, value) for name, value in pairs if value not in (None, "", [], {})]
        width = max((len(name) for name, _ in shown), default=0)
        for name, value in shown:
            self.line(f"{name.rjust(width)}: {value}")

    # Messages (stderr)

    def info(self, text: str) -> None:
        if self.quiet < 1:
            self._emit(text)

    def success(self, text: str) -> None:
        if self.quiet < 1:
            self._emit(f"[green]✓[/green] {text}" if colour_allowed(sys.stderr) else f"✓ {text}", markup=True)

    def warn(self, text: str) -> None:
        if self.quiet < 2:
            self._emit(f"[yellow]warning:[/yellow] {text}" if colour_allowed(sys.stderr) else f"warning: {text}", markup=True)

    def _emit(self, text: str, markup: bool = False) -> None:
        if colour_allowed(sys.stderr) and markup:
            self._console(stderr=True).print(text)
            return
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
