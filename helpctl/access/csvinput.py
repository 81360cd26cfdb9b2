"""Read a CSV of people as spreadsheets and directories export it, reporting every bad row.

Exports differ in ways that must not change the result. They may start with a UTF-8 byte
order mark, use `;` or tab delimiters, and write header names in any case and spacing
("E-mail", "Email Address"). Fields may be quoted and contain commas, and blank rows or rows of
delimiters only often sit at the bottom of a sheet. Cells carry stray spaces, addresses come in
mixed case, as `mailto:` links or as `Name <address>`.

Rules: an `email` column is required; `group`, `role` and `responsibility` columns are
optional. Cells are trimmed and addresses lower-cased for matching (the original spelling is
kept for messages). Blank rows are counted and skipped. A row with more non-empty values than
the header has columns is rejected, while empty trailing values (a trailing delimiter) are
ignored. A repeated row is reported and kept once. The same person and group with different
values is an error. Every problem names its line, and reading never stops at the first one.
"""

from __future__ import annotations

import csv
import dataclasses
import email.utils
import io
import re
from pathlib import Path

from helpctl.errors import UsageError

EMAIL = re.compile(r"^[^@\s,;<>\"']+@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$")
GROUP = re.compile(r"^[a-z0-9]{2,64}$")
DELIMITERS = (",", ";", "\t")

# Header names (after lower-casing and turning spaces, hyphens and dots into "_") for each column.
COLUMN_ALIASES: dict[str, frozenset[str]] = {
    "email": frozenset(
        {"email", "e_mail", "email_address", "e_mail_address", "mail", "user_email", "correo", "correo_electronico"}
    ),
    "group": frozenset({"group", "group_name", "grupo"}),
    "role": frozenset({"role", "rol", "role_name"}),
    "responsibility": frozenset({"responsibility", "responsabilidad"}),
}


@dataclasses.dataclass
class Row:
    """One usable row. `email` is normalised; `written` is the address as the file spells it."""

    line: int
    email: str
    written: str
    group: str | None = None
    role: str | None = None
    responsibility: str | None = None

    def key(self) -> tuple[str, str | None]:
        return (self.email, self.group)


@dataclasses.dataclass
class RowProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclasses.dataclass
class CsvReport:
    """The result of reading a CSV: usable rows, problems, and counts for the summary."""

    source: str
    rows: list[Row]
    problems: list[RowProblem]
    delimiter: str
    columns: list[str]
    ignored_columns: list[str]
    blank_rows: int = 0
    duplicates: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (line, first line)
    encoding: str = "utf-8"

    def summary(self) -> dict[str, object]:
        return {
            "rows": len(self.rows),
            "blank_rows": self.blank_rows,
            "duplicates": len(self.duplicates),
            "invalid_rows": len({problem.line for problem in self.problems}),
            "delimiter": self.delimiter,
            "encoding": self.encoding,
        }


def read_csv(path: Path) -> CsvReport:
    """Read a CSV file. Raises UsageError only when the file cannot be read at all."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise UsageError(f"--csv: {path} not found", hint="give the path of the exported CSV file") from error
    except OSError as error:
        raise UsageError(f"--csv: cannot read {path}: {error.strerror}") from error
    text, encoding = decode(data)
    report = parse_csv_text(text, str(path))
    report.encoding = encoding
    return report


def decode(data: bytes) -> tuple[str, str]:
    """Decode UTF-8 (with or without a byte order mark), UTF-16 with a mark, else Windows-1252."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        # Spreadsheets on Windows save "CSV" in the ANSI code page.
        return data.decode("cp1252", errors="replace"), "cp1252"


def parse_csv_text(text: str, source: str = "<csv>") -> CsvReport:
    text = text.lstrip("\ufeff")
    delimiter = _delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    report = CsvReport(source, [], [], delimiter, [], [])

    header: list[str] | None = None
    previous_end = 0
    seen: dict[tuple[str, str | None], Row] = {}
    try:
        for cells in reader:
            line = previous_end + 1
            previous_end = reader.line_num
            if not any(cell.strip() for cell in cells):
                if header is not None:
                    report.blank_rows += 1
                continue
            if header is None:
                header = _read_header(cells, line, report)
                if "email" not in header:
                    found = ", ".join(report.columns) or "none"
                    report.problems.insert(0, RowProblem(line, f"no email column (columns found: {found}); name one column 'email'"))
                    return report
                continue
            _read_row(cells, line, header, report, seen)
    except csv.Error as error:
        report.problems.append(RowProblem(previous_end + 1, f"the CSV is malformed: {error}"))

    if header is None:
        report.problems.append(RowProblem(1, "the file has no header row; the first row must name the columns, such as email"))
    return report


def _delimiter(text: str) -> str:
    """Pick the delimiter that appears most in the first non-blank line, outside quotes."""
    for line in text.splitlines():
        if line.strip(" ,;\t"):
            unquoted = re.sub(r'"[^"]*"', "", line)
            counts = {delimiter: unquoted.count(delimiter) for delimiter in DELIMITERS}
            best = max(DELIMITERS, key=lambda delimiter: counts[delimiter])
            return best if counts[best] else ","
    return ","


def _normal_header(cell: str) -> str:
    return re.sub(r"[\s\-.]+", "_", cell.strip().strip('"').lower()).strip("_")


def _read_header(cells: list[str], line: int, report: CsvReport) -> list[str]:
    """Map each header cell to a known column name, or "" for a column that is ignored."""
    header: list[str] = []
    for cell in cells:
        name = _normal_header(cell)
        column = next((known for known, aliases in COLUMN_ALIASES.items() if name in aliases), "")
        if column and column in header:
            report.problems.append(RowProblem(line, f"the header names the {column} column twice"))
            column = ""
        header.append(column)
        if column:
            report.columns.append(column)
        elif cell.strip():
            report.ignored_columns.append(cell.strip())
    return header


def _read_row(
    cells: list[str], line: int, header: list[str], report: CsvReport, seen: dict[tuple[str, str | None], Row]
) -> None:
    extra = [cell for cell in cells[len(header):] if cell.strip()]
    if extra:
        report.problems.append(
            RowProblem(line, f"{len(header) + len(extra)} values but the header has {len(header)} columns")
        )
        return

    values = {column: cells[index].strip() for index, column in enumerate(header) if column and index < len(cells)}
    written = values.get("email", "")
    if not written:
        report.problems.append(RowProblem(line, "the email is missing"))
        return
    address = normalise_email(written)
    if address is None:
        report.problems.append(RowProblem(line, f"{written!r} is not an e-mail address"))
        return

    group = values.get("group") or None
    if group is not None:
        group = group.lower()
        if not GROUP.match(group):
            report.problems.append(RowProblem(line, f"{values['group']!r} is not a group name (lowercase letters and digits)"))
            return

    row = Row(line, address, written, group, values.get("role") or None, values.get("responsibility") or None)
    _add_unique(row, report, seen)


def _add_unique(row: Row, report: CsvReport, seen: dict[tuple[str, str | None], Row]) -> None:
    first = seen.get(row.key())
    if first is None:
        seen[row.key()] = row
        report.rows.append(row)
        return

    same_role = (first.role or "").casefold() == (row.role or "").casefold()
    same_responsibility = (first.responsibility or "") == (row.responsibility or "")
    if same_role and same_responsibility:
        report.duplicates.append((row.line, first.line))
        return
    where = f" in group {row.group}" if row.group else ""
    report.problems.append(
        RowProblem(row.line, f"{row.email}{where} is already on line {first.line} with other values; keep one row")
    )


def normalise_email(written: str) -> str | None:
    """Return the address of `written` in lower case, or None when it is no address.

    Accepts `mailto:` links (with or without a query) and `Name <address>` forms.
    """
    value = written.strip()
    if "<" in value or ">" in value:
        _, value = email.utils.parseaddr(value)
    value = value.strip().strip("\"'").strip()
    if value.lower().startswith("mailto:"):
        value = value[len("mailto:"):].split("?", 1)[0]
    value = value.strip().strip("<>").strip().lower()
    return value if EMAIL.match(value) else None
