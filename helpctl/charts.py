"""Charts of a timeline's event counts: errors against usage around the reported moment.

`MinuteCounts` counts (time, series) points per minute as they stream by, and its
`histogram` (or the `histogram` function, for a list) puts them in equal time bins. The bin width is the
smallest of `BIN_WIDTHS` that covers the points and the reported moment in at most
`max_bins` bins, and bins start at multiples of the width counted from the Unix epoch. Each
renderer draws one row of bars per series, scaled to that series' largest bin, and marks the
bin of the reported moment. `render_text` uses plain ASCII (or Unicode blocks),
`render_rich` adds colour for a terminal, and `render_svg` returns an `<svg>` fragment for
HTML reports.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

from helpctl.findings import isoformat

SERIES = ("errors", "usage")
BIN_WIDTHS = (
    *(dt.timedelta(minutes=minutes) for minutes in (1, 2, 5, 10, 15, 30)),
    *(dt.timedelta(hours=hours) for hours in (1, 2, 3, 6, 12)),
    *(dt.timedelta(days=days) for days in (1, 2, 7, 14, 30)),
)
# Points further than this from the reported moment are left out of the chart and counted.
DEFAULT_WINDOW = dt.timedelta(hours=24)
DEFAULT_MAX_BINS = 48
ASCII_LEVELS = " .:-=+*#"
UNICODE_LEVELS = " ▁▂▃▄▅▆▇█"
MARK = "^"
SERIES_COLOURS = {"errors": "#c0392b", "usage": "#2874a6"}
RICH_STYLES = {"errors": "red", "usage": "cyan"}
REPORTED_COLOUR = "#9a7d0a"

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MINUTE = dt.timedelta(minutes=1)


@dataclasses.dataclass
class Histogram:
    start: dt.datetime  # start of the first bin (UTC)
    width: dt.timedelta
    counts: dict[str, list[int]]  # per series, one count per bin
    reported: dt.datetime | None = None
    window: dt.timedelta | None = None  # how far from the reported moment points were kept
    outside: int = 0  # points left out because they were further than `window`

    @property
    def bins(self) -> int:
        return len(next(iter(self.counts.values()), []))

    @property
    def end(self) -> dt.datetime:
        return self.start + self.width * self.bins

    def bin_of(self, moment: dt.datetime) -> int:
        return int((moment - self.start) // self.width)

    @property
    def reported_bin(self) -> int | None:
        if self.reported is None or not self.start <= self.reported < self.end:
            return None
        return self.bin_of(self.reported)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": isoformat(self.start),
            "end": isoformat(self.end),
            "bin_seconds": int(self.width.total_seconds()),
            "bins": self.bins,
            "series": {name: list(counts) for name, counts in self.counts.items()},
            "reported": isoformat(self.reported) if self.reported else None,
            "reported_bin": self.reported_bin,
            "window_seconds": int(self.window.total_seconds()) if self.window else None,
            "outside": self.outside,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        reported = data.get("reported")
        return cls(
            start=_parse(data["start"]),
            width=dt.timedelta(seconds=int(data["bin_seconds"])),
            counts={str(name): [int(count) for count in counts] for name, counts in data["series"].items()},
            reported=_parse(reported) if reported else None,
            window=dt.timedelta(seconds=int(data["window_seconds"])) if data.get("window_seconds") else None,
            outside=int(data.get("outside") or 0),
        )


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.timezone.utc)


def align(moment: dt.datetime, width: dt.timedelta) -> dt.datetime:
    """Return the start of the bin of `width` that contains `moment`, counted from the epoch."""
    return _EPOCH + ((moment - _EPOCH) // width) * width


def choose_width(first: dt.datetime, last: dt.datetime, max_bins: int = DEFAULT_MAX_BINS) -> dt.timedelta:
    """Return the smallest bin width that covers `first`..`last` in at most `max_bins` bins."""
    for width in BIN_WIDTHS:
        if (last - align(first, width)) // width + 1 <= max_bins:
            return width
    # Spans of years: whole days, enough of them per bin.
    days = math.ceil((last - first) / dt.timedelta(days=1) / max(1, max_bins - 1))
    return dt.timedelta(days=days)


class MinuteCounts:
    """Counts of (time, series) points per UTC minute, so memory depends on the span, not the points.

    With `reported` and `window`, only points within `window` of the reported moment are
    counted, and the others are counted in `outside`.
    """

    def __init__(
        self,
        reported: dt.datetime | None = None,
        window: dt.timedelta | None = DEFAULT_WINDOW,
        series: Sequence[str] = SERIES,
    ) -> None:
        self.reported = reported
        self.window = window if reported is not None else None
        self.series = tuple(series)
        self.counts: collections.Counter[tuple[int, str]] = collections.Counter()
        self.outside = 0

    def add(self, moment: dt.datetime, name: str) -> None:
        if name not in self.series:
            return
        if self.window is not None and self.reported is not None and abs(moment - self.reported) > self.window:
            self.outside += 1
            return
        self.counts[((moment - _EPOCH) // _MINUTE, name)] += 1

    def histogram(self, max_bins: int = DEFAULT_MAX_BINS) -> Histogram | None:
        """Bin the counts into at most `max_bins` bins, or return None when nothing was counted."""
        if not self.counts:
            return None

        minutes = [minute for minute, _ in self.counts]
        moments = [_EPOCH + _MINUTE * min(minutes), _EPOCH + _MINUTE * max(minutes)]
        if self.reported is not None:
            moments.append(self.reported)
        first, last = min(moments), max(moments)
        width = choose_width(first, last, max_bins)
        start = align(first, width)
        counts = {name: [0] * ((last - start) // width + 1) for name in self.series}
        for (minute, name), count in self.counts.items():
            counts[name][(_EPOCH + _MINUTE * minute - start) // width] += count
        return Histogram(start=start, width=width, counts=counts, reported=self.reported, window=self.window, outside=self.outside)


def histogram(
    points: Iterable[tuple[dt.datetime, str]],
    *,
    reported: dt.datetime | None = None,
    window: dt.timedelta | None = DEFAULT_WINDOW,
    max_bins: int = DEFAULT_MAX_BINS,
    series: Sequence[str] = SERIES,
) -> Histogram | None:
    """Count points per series and bin, or return None when no point falls in the window.

    With `reported` and `window`, only points within `window` of the reported moment are
    binned, and the others are counted in `outside`.
    """
    counter = MinuteCounts(reported, window, series)
    for moment, name in points:
        counter.add(moment, name)
    return counter.histogram(max_bins)


def bar_level(count: int, largest: int, levels: int) -> int:
    """Return the bar height 0..levels-1 of `count`. Any count above zero gets at least 1."""
    if count <= 0 or largest <= 0:
        return 0
    return max(1, math.ceil(count * (levels - 1) / largest))


# ---------------------------------------------------------------------------------------------
# Text


def describe_width(width: dt.timedelta) -> str:
    seconds = int(width.total_seconds())
    if seconds % 86400 == 0:
        days = seconds // 86400
        return "day" if days == 1 else f"{days} days"
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return "hour" if hours == 1 else f"{hours} h"
    return f"{seconds // 60} min"


def _moment_text(moment: dt.datetime, width: dt.timedelta) -> str:
    moment = moment.astimezone(dt.timezone.utc)
    if width >= dt.timedelta(days=1):
        return f"{moment:%Y-%m-%d}"
    return f"{moment:%Y-%m-%d %H:%M}Z"


def title(hist: Histogram, *, with_reported: bool = True) -> str:
    names = " and ".join(hist.counts)
    text = f"{names.capitalize()} per {describe_width(hist.width)}, {_moment_text(hist.start, hist.width)} to {_moment_text(hist.end, hist.width)}"
    if with_reported and hist.reported is not None:
        text += f"; reported {hist.reported.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M}Z"
    return text


def footnote(hist: Histogram) -> str | None:
    if not hist.outside or hist.window is None:
        return None
    hours = hist.window.total_seconds() / 3600
    return f"{hist.outside} more events lie over {hours:g} h from the reported moment and are not charted"


def _bars(counts: list[int], levels: str) -> str:
    largest = max(counts, default=0)
    return "".join(levels[bar_level(count, largest, len(levels))] for count in counts)


def _suffix(counts: list[int]) -> str:
    return f" max {max(counts, default=0)}/bin, {sum(counts)} in all"


def _mark_row(hist: Histogram) -> str:
    row = [" "] * hist.bins
    if hist.reported_bin is not None:
        row[hist.reported_bin] = MARK
    return "".join(row)


def render_text(hist: Histogram, *, levels: str = ASCII_LEVELS) -> list[str]:
    """Draw the chart as lines of text: a title, one bar row per series, the reported mark."""
    names = list(hist.counts)
    pad = max(len(name) for name in names)
    lines = [title(hist)]
    for name in names:
        counts = hist.counts[name]
        lines.append(f"{name.ljust(pad)} |{_bars(counts, levels)}|{_suffix(counts)}")
    if hist.reported_bin is not None:
        lines.append(f"{' ' * pad} |{_mark_row(hist)}| {MARK} reported")
    note = footnote(hist)
    if note:
        lines.append(note)
    return lines


def render_rich(hist: Histogram) -> Any:
    """Draw the chart as a rich Text with Unicode blocks and a colour per series."""
    from rich.text import Text

    names = list(hist.counts)
    pad = max(len(name) for name in names)
    text = Text()
    text.append(title(hist) + "\n", style="bold")
    for name in names:
        counts = hist.counts[name]
        text.append(f"{name.ljust(pad)} │")
        text.append(_bars(counts, UNICODE_LEVELS), style=RICH_STYLES.get(name, ""))
        text.append(f"│{_suffix(counts)}\n", style="dim")
    if hist.reported_bin is not None:
        text.append(f"{' ' * pad} │")
        text.append(_mark_row(hist), style="bold yellow")
        text.append(f"│ {MARK} reported\n", style="yellow")
    note = footnote(hist)
    if note:
        text.append(note + "\n", style="dim")
    return text


# ---------------------------------------------------------------------------------------------
# SVG

# Layout in SVG user units: margins, the height of a series panel and the gap between panels.
_LEFT, _RIGHT, _TOP, _PANEL, _GAP, _BOTTOM = 90, 16, 44, 72, 14, 34


def render_svg(hist: Histogram, *, width: int = 960) -> str:
    """Draw the chart as an inline `<svg>` element: one panel of bars per series.

    The element has no `xmlns` attribute because an HTML5 parser puts an inline `<svg>` in
    the SVG namespace by itself. Standalone .svg files would need it.
    """
    names = list(hist.counts)
    height = _TOP + len(names) * (_PANEL + _GAP) + _BOTTOM
    plot = width - _LEFT - _RIGHT
    # The dashed line's label shows the reported moment, so the drawn title leaves it out.
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{_attr(title(hist))}">',
        f"<title>{_text(title(hist))}</title>",
        f'<text x="{_LEFT}" y="16" class="chart-title">{_text(title(hist, with_reported=False))}</text>',
    ]
    for index, name in enumerate(names):
        parts += _svg_panel(hist, name, _TOP + index * (_PANEL + _GAP), plot)
    parts += _svg_axis(hist, height, plot)
    parts += _svg_reported(hist, height, plot)
    parts.append("</svg>")
    return "\n".join(parts)


def _svg_panel(hist: Histogram, name: str, top: int, plot: int) -> list[str]:
    counts = hist.counts[name]
    largest = max(counts, default=0)
    step = plot / max(1, hist.bins)
    colour = SERIES_COLOURS.get(name, "#555555")
    parts = [
        f'<text x="{_LEFT - 8}" y="{top + _PANEL / 2:.1f}" text-anchor="end" class="chart-series">{_text(name)}</text>',
        f'<text x="{_LEFT - 8}" y="{top + _PANEL / 2 + 14:.1f}" text-anchor="end" class="chart-note">max {largest}</text>',
        f'<line x1="{_LEFT}" y1="{top + _PANEL}" x2="{_LEFT + plot}" y2="{top + _PANEL}" stroke="#999999" stroke-width="1"/>',
    ]
    for number, count in enumerate(counts):
        if count <= 0:
            continue
        bar = (_PANEL - 6) * count / largest
        begin = hist.start + hist.width * number
        label = f"{_moment_text(begin, hist.width)}: {count} {name}"
        parts.append(
            f'<rect x="{_LEFT + number * step + 0.5:.1f}" y="{top + _PANEL - bar:.1f}" width="{max(1.0, step - 1):.1f}" '
            f'height="{bar:.1f}" fill="{colour}"><title>{_text(label)}</title></rect>'
        )
    return parts


def _svg_axis(hist: Histogram, height: int, plot: int) -> list[str]:
    baseline = height - _BOTTOM + 18
    return [
        f'<text x="{_LEFT}" y="{baseline}" class="chart-note">{_text(_moment_text(hist.start, hist.width))}</text>',
        f'<text x="{_LEFT + plot}" y="{baseline}" text-anchor="end" class="chart-note">{_text(_moment_text(hist.end, hist.width))}</text>',
    ]


def _svg_reported(hist: Histogram, height: int, plot: int) -> list[str]:
    if hist.reported is None or hist.reported_bin is None:
        return []
    share = (hist.reported - hist.start) / (hist.end - hist.start)
    x = _LEFT + plot * share
    anchor = "end" if share > 0.8 else "start"
    return [
        f'<line x1="{x:.1f}" y1="{_TOP - 4}" x2="{x:.1f}" y2="{height - _BOTTOM + 4}" stroke="{REPORTED_COLOUR}" '
        f'stroke-width="2" stroke-dasharray="5 3"/>',
        f'<text x="{x + (-4 if anchor == "end" else 4):.1f}" y="{_TOP - 8}" text-anchor="{anchor}" class="chart-mark">'
        f"reported {hist.reported.astimezone(dt.timezone.utc):%H:%M}Z</text>",
    ]


def _text(value: str) -> str:
    return html.escape(value, quote=False)


def _attr(value: str) -> str:
    return html.escape(value, quote=True)
