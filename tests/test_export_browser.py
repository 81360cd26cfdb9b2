"""The HTML report in headless Chromium: it renders offline and the page is not blank."""

from __future__ import annotations

import collections
import datetime as dt
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from helpctl import export
from helpctl.cases.model import Case, Event, Person, Subjects
from helpctl.cases.store import CaseStore, new_case_id
from helpctl.findings import Finding, isoformat

CHROMIUM = Path("/usr/bin/chromium")
UTC = dt.timezone.utc
REPORTED = dt.datetime(2026, 12, 4, 18, 0, tzinfo=UTC)
ACTOR = "support.sandbox@fluidattacks.com"
# Flags that keep Chromium off the network: no background fetches, updates, sync or QUIC.
OFFLINE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WINDOW = (1200, 1600)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (apt-get install -y chromium)")


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB or RGBA PNG into its width, height and rows of pixel bytes."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    position, header, compressed = 8, b"", bytearray()
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            compressed += body
        position += 12 + length

    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8, f"unsupported PNG bit depth {depth}"
    assert colour in (2, 6), f"unsupported PNG colour type {colour}"
    assert interlace == 0, "interlaced PNG is not supported"
    channels = 4 if colour == 6 else 3
    return width, height, unfilter(zlib.decompress(bytes(compressed)), width * channels, height, channels)


def unfilter(raw: bytes, stride: int, height: int, channels: int) -> list[bytes]:
    """Undo the PNG scanline filters (None, Sub, Up, Average, Paeth)."""
    rows: list[bytes] = []
    previous = bytearray(stride)
    for number in range(height):
        start = number * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for index in range(channels, stride):
                line[index] = (line[index] + line[index - channels]) & 0xFF
        elif kind == 2:
            line = bytearray((value + above) & 0xFF for value, above in zip(line, previous))
        elif kind == 3:
            for index in range(stride):
                left = line[index - channels] if index >= channels else 0
                line[index] = (line[index] + ((left + previous[index]) >> 1)) & 0xFF
        elif kind == 4:
            for index in range(stride):
                left = line[index - channels] if index >= channels else 0
                upper_left = previous[index - channels] if index >= channels else 0
                line[index] = (line[index] + paeth(left, previous[index], upper_left)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return rows


def paeth(left: int, above: int, upper_left: int) -> int:
    estimate = left + above - upper_left
    distances = (abs(estimate - left), abs(estimate - above), abs(estimate - upper_left))
    if distances[0] <= distances[1] and distances[0] <= distances[2]:
        return left
    return above if distances[1] <= distances[2] else upper_left


def colour_counts(rows: list[bytes], channels: int) -> collections.Counter[bytes]:
    counts: collections.Counter[bytes] = collections.Counter()
    for row in rows:
        counts.update(row[index : index + 3] for index in range(0, len(row), channels))
    return counts


def make_case(store: CaseStore) -> Case:
    case = Case(
        id=new_case_id(),
        profile="sandbox",
        subject="Vulnerabilities tab lists 4 of 7 in kiwiapp",
        requester=Person(email="ana.gomez@kiwicorp.co", name="Ana Gómez"),
        kind="problem",
        body="The dashboard of kiwiapp says 7 open vulnerabilities but the tab lists only 4.",
        organization="kiwicorp",
        subjects=Subjects(groups=["kiwiapp"], organizations=["kiwicorp"]),
        reported_at=isoformat(REPORTED),
        created_at=isoformat(REPORTED + dt.timedelta(minutes=20)),
    )
    store.create(case)

    minutes = dt.timedelta(minutes=1)
    errors = [
        {"record": "event", "received_at": isoformat(REPORTED - offset * minutes), "exceptions": [{"errorClass": "TypeError", "message": "edges"}], "context": "VulnerabilitiesView"}
        for offset in (50, 41, 40, 22, 21, 20, 6)
    ]
    usage = [{"event": "View vulnerabilities", "properties": {"time": int((REPORTED + offset * minutes).timestamp())}} for offset in (-70, -45, -44, -12, 9, 30)]
    errors_ref, _ = store.write_rows(case.id, "errors-ana", errors)
    usage_ref, _ = store.write_rows(case.id, "usage-ana", usage)
    with store.edit(case.id) as editing:
        editing.put_finding(Finding(source="errors", check="user-errors", subject="ana", outcome="ok", summary="7 TypeError events", raw_ref=errors_ref))
        editing.put_finding(Finding(source="usage", check="user-activity", subject="ana", outcome="ok", summary="6 events", raw_ref=usage_ref))
        editing.classification = {"label": "bug", "rules_label": "bug", "rules": [], "at": isoformat(REPORTED), "actor": ACTOR}
        editing.timeline = [Event(at=isoformat(REPORTED + 20 * minutes), actor=ACTOR, event="opened", detail={"source": "typed"})]
    return store.load(case.id)


def screenshot(page: Path, folder: Path) -> Path:
    shot = folder / "shot.png"
    command = [
        str(CHROMIUM),
        *OFFLINE_FLAGS,
        f"--user-data-dir={folder / 'profile'}",
        f"--screenshot={shot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        page.resolve().as_uri(),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=folder)
    assert shot.exists(), f"Chromium wrote no screenshot (exit {completed.returncode}): {completed.stderr[-800:]}"
    return shot


def test_report_renders_in_chromium(tmp_path):
    store = CaseStore(tmp_path / "cases")
    case = make_case(store)
    page = tmp_path / "report.html"
    export.write_report(page, export.render(export.build_report(case, store.folder(case.id)), "html"))

    shot = screenshot(page, tmp_path)
    width, height, rows = read_png(shot)

    assert (width, height) == WINDOW
    channels = len(rows[0]) // width
    counts = colour_counts(rows, channels)
    background, background_pixels = counts.most_common(1)[0]
    assert len(counts) > 50
    assert background_pixels < width * height * 0.97
    # The chart's bar colours (#c0392b errors, #2874a6 usage) are drawn.
    assert counts[bytes((0xC0, 0x39, 0x2B))] > 20
    assert counts[bytes((0x28, 0x74, 0xA6))] > 20
    assert background == b"\xff\xff\xff"
