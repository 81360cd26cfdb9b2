"""Reading exported CSV files of people: dirty rows, delimiters, headers and line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpctl.access.csvinput import normalise_email, parse_csv_text, read_csv
from helpctl.errors import UsageError

DATA = Path(__file__).parent / "data" / "csv"


def test_dirty_rows_normalised() -> None:
    report = read_csv(DATA / "dirty-rows.csv")

    assert [row.email for row in report.rows] == [
        "luisa.fernandez@kiwicorp.co",
        "marta.vidal@kiwicorp.co",
        "nico.paez@kiwicorp.co",
    ]
    assert [row.line for row in report.rows] == [2, 6, 7]
    assert report.rows[0].written == "Luisa.Fernandez@KiwiCorp.co"
    assert report.rows[0].role == "User"
    assert report.rows[1].role is None
    assert report.problems == []


def test_dirty_rows_counted() -> None:
    report = read_csv(DATA / "dirty-rows.csv")

    assert report.blank_rows == 3
    assert report.duplicates == [(3, 2), (9, 6)]
    assert report.summary()["duplicates"] == 2
    assert report.delimiter == ","


def test_bom_semicolon_quoted() -> None:
    report = read_csv(DATA / "bom-semicolon.csv")

    assert report.delimiter == ";"
    assert report.columns == ["email", "group", "role", "responsibility"]
    assert [(row.email, row.group) for row in report.rows] == [
        ("ana.gomez@kiwicorp.co", "kiwiapp"),
        ("carlos.ruiz@kiwicorp.co", "kiwiapp"),
    ]
    assert report.rows[0].responsibility == "Product Owner; mobile"
    assert report.rows[1].responsibility == "Developer, backend"
    assert report.blank_rows == 1


def test_missing_email_column() -> None:
    report = read_csv(DATA / "missing-email.csv")

    assert report.rows == []
    assert str(report.problems[0]) == "line 1: no email column (columns found: group); name one column 'email'"
    assert report.ignored_columns == ["Name"]


def test_bad_rows_all_listed() -> None:
    report = read_csv(DATA / "bad-rows.csv")
    messages = [str(problem) for problem in report.problems]

    assert messages == [
        "line 3: 'not-an-address' is not an e-mail address",
        "line 5: 4 values but the header has 3 columns",
        "line 6: 'kiwi-app' is not a group name (lowercase letters and digits)",
        "line 7: luisa.fernandez@kiwicorp.co in group kiwiapp is already on line 2 with other values; keep one row",
        "line 8: the email is missing",
    ]
    # Rows whose problems only the platform can see (unknown role, unknown group) pass here.
    assert [row.line for row in report.rows] == [2, 4, 9]


def test_trailing_delimiter_ignored() -> None:
    report = parse_csv_text("email,role\r\nbob@example.com,User,\r\n")

    assert report.problems == []
    assert report.rows[0].email == "bob@example.com"


def test_tab_delimiter_and_header_spaces() -> None:
    report = parse_csv_text("  E Mail \tGROUP\nAna@Example.com\tkiwiapp\n")

    assert report.delimiter == "\t"
    assert [(row.email, row.group) for row in report.rows] == [("ana@example.com", "kiwiapp")]


def test_multiline_quoted_line_numbers() -> None:
    text = 'email,responsibility\na@example.com,"two\nlines"\nbad,x\n'
    report = parse_csv_text(text)

    assert report.rows[0].responsibility == "two\nlines"
    assert [str(problem) for problem in report.problems] == ["line 4: 'bad' is not an e-mail address"]


def test_empty_file_reported() -> None:
    report = parse_csv_text("\n\n")

    assert [str(problem) for problem in report.problems] == [
        "line 1: the file has no header row; the first row must name the columns, such as email"
    ]


def test_windows_1252_decoded(tmp_path: Path) -> None:
    path = tmp_path / "ansi.csv"
    path.write_bytes("email,responsibility\r\nana@example.com,Dise\xf1o\r\n".encode("latin-1"))

    report = read_csv(path)

    assert report.encoding == "cp1252"
    assert report.rows[0].responsibility == "Diseño"


def test_missing_file_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        read_csv(tmp_path / "nope.csv")

    assert "not found" in caught.value.message


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("  Alice@Example.COM ", "alice@example.com"),
        ("mailto:Bob@Example.com", "bob@example.com"),
        ("MAILTO:bob@example.com?subject=hi", "bob@example.com"),
        ("Bob Smith <Bob@Example.com>", "bob@example.com"),
        ('"Smith, Bob" <bob@example.com>', "bob@example.com"),
        ("<bob@example.com>", "bob@example.com"),
        ("bob@example", None),
        ("bob", None),
        ("bob@@example.com", None),
        ("", None),
    ],
)
def test_normalise_email(written: str, expected: str | None) -> None:
    assert normalise_email(written) == expected
